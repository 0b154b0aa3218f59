/* Paged KV cache bookkeeping (host side).
 *
 * The cache is a pool of fixed-size blocks (block_size tokens each); every
 * sequence slot owns a list of block ids (its row of the block table), grown
 * as tokens arrive and returned to the pool when the slot is released.  The
 * backend holds the storage: per layer [n_blocks, Hkv, block_size, Dh]. */
#ifndef TPD_KVCACHE_H
#define TPD_KVCACHE_H

#include <stdint.h>

#include "runtime/base/error.h"

typedef struct {
  int block_size;
  int n_blocks;
  int max_slots;
  int max_blocks; /* per slot: ceil(max_ctx / block_size) */
  int max_ctx;
  int32_t *table; /* [max_slots, max_blocks] */
  int *n_tokens;  /* tokens stored per slot */
  int *n_alloc;   /* blocks held per slot */
  unsigned char *in_use;
  int32_t *free_blocks;
  int n_free;
} tpd_kv_pool;

/* max_slots, max_ctx, block_size >= 1; n_blocks >= 0 (0: max_slots full
 * contexts).  The block table (max_slots x ceil(max_ctx / block_size)
 * entries) must fit int32 ids; anything else is TPD_ERR_ARG naming it. */
tpd_status tpd_kv_init(tpd_kv_pool *kv, int max_slots, int max_ctx, int block_size, int n_blocks);
void tpd_kv_free(tpd_kv_pool *kv);
/* Claims a free slot. */
tpd_status tpd_kv_acquire(tpd_kv_pool *kv, int *slot);
/* Returns the slot and its blocks to the pool. */
void tpd_kv_release(tpd_kv_pool *kv, int slot);
/* Ensures room for n_new more tokens in the slot (allocating blocks); a
 * negative n_new, or one taking the slot past max_ctx, is TPD_ERR_ARG and
 * changes nothing.  The caller advances n_tokens[slot] afterwards. */
tpd_status tpd_kv_reserve(tpd_kv_pool *kv, int slot, int n_new);

#endif
