/* Paged KV cache bookkeeping (host side).
 *
 * The cache is a pool of fixed-size blocks (block_size tokens each); every
 * sequence slot owns a list of block ids (its row of the block table), grown
 * as tokens arrive and returned to the pool when the slot is released.  The
 * backend holds the storage: per layer [n_blocks, Hkv, block_size, Dh].
 *
 * Memory: all of the pool's host arrays live in one block, either its own
 * (tpd_kv_init) or a caller's (tpd_kv_plan, then tpd_kv_attach: the engine
 * places it in its host arena).  Nothing is allocated after that.
 *
 * Changed rows: a row of the block table changes when its slot takes blocks
 * (tpd_kv_reserve) or is released (the row is cleared); each such row is
 * marked in dirty[] until the owner of a device copy of the table has
 * uploaded it and called tpd_kv_clean. */
#ifndef TPD_KVCACHE_H
#define TPD_KVCACHE_H

#include <stddef.h>
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
  unsigned char *dirty; /* [max_slots] row changed since the last tpd_kv_clean */
  int n_dirty;          /* rows marked in dirty[] */
  int32_t *free_blocks;
  int n_free;
  void *own; /* the block tpd_kv_init allocated, or NULL (caller memory) */
} tpd_kv_pool;

/* max_slots, max_ctx, block_size >= 1; n_blocks >= 0 (0: max_slots full
 * contexts).  The block table (max_slots x ceil(max_ctx / block_size)
 * entries) must fit int32 ids; anything else is TPD_ERR_ARG naming it. */
tpd_status tpd_kv_init(tpd_kv_pool *kv, int max_slots, int max_ctx, int block_size, int n_blocks);
/* The same checks and dimensions as tpd_kv_init without memory: *host_bytes
 * is what tpd_kv_attach needs. */
tpd_status tpd_kv_plan(tpd_kv_pool *kv, int max_slots, int max_ctx, int block_size, int n_blocks,
                       size_t *host_bytes);
/* Places the arrays of a planned pool in mem (host_bytes, 8-byte aligned,
 * caller-owned and zeroed) and fills the free list. */
void tpd_kv_attach(tpd_kv_pool *kv, void *mem);
void tpd_kv_free(tpd_kv_pool *kv);
/* Claims the lowest free slot (TPD_ERR_NO_SLOT when none is). */
tpd_status tpd_kv_acquire(tpd_kv_pool *kv, int *slot);
/* Claims a given free slot (a follower replaying its leader's opens). */
tpd_status tpd_kv_acquire_slot(tpd_kv_pool *kv, int slot);
/* Blocks the slot must take for n_new more tokens; -1 for a slot that is not
 * open or a negative n_new. */
int tpd_kv_blocks_needed(const tpd_kv_pool *kv, int slot, int n_new);
/* Returns the slot and its blocks to the pool (its row is cleared). */
void tpd_kv_release(tpd_kv_pool *kv, int slot);
/* Ensures room for n_new more tokens in the slot (allocating blocks); a slot
 * that is not open is TPD_ERR_SLOT, a negative n_new TPD_ERR_ARG, one taking
 * the slot past max_ctx TPD_ERR_TOO_LONG, too few free blocks
 * TPD_ERR_KV_FULL; a failure changes nothing.  The caller advances n_tokens[slot] afterwards. */
tpd_status tpd_kv_reserve(tpd_kv_pool *kv, int slot, int n_new);
/* Forgets the changed-row marks (after uploading those rows). */
void tpd_kv_clean(tpd_kv_pool *kv);

#endif
