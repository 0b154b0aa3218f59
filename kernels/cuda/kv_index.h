/* Where each token of a step sits in the paged KV cache, as the kernels read
 * it on the device: the step metadata (tpd_step_meta) without its host-only
 * fields, shared by rope_kv.cu (appends to the cache) and attention.cu
 * (reads it).  The caches are [n_blocks, Hkv, block_size, Dh]; position pos
 * of token t's sequence is row pos % block_size of block
 * block_table[slot[t]][pos / block_size].  Include from .cu files only. */
#ifndef TPD_CUDA_KV_INDEX_H
#define TPD_CUDA_KV_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

typedef struct {
  const int32_t *pos;         /* [T] position of each token in its sequence */
  const int32_t *slot;        /* [T] sequence slot of each token */
  const int32_t *block_table; /* [n_slots, max_blocks] KV block ids per slot */
  int max_blocks;
  int block_size; /* tokens per KV block */
} tpd_kv_index;

static inline tpd_kv_index tpd_kv_index_of(const tpd_step_meta *mt) {
  const tpd_kv_index ix = {mt->pos, mt->slot, mt->block_table, mt->max_blocks, mt->block_size};
  return ix;
}

/* The block-table row (KV block ids) of token t's sequence. */
static __device__ __forceinline__ const int32_t *tpd_kv_blocks(const tpd_kv_index &ix, int t) {
  return ix.block_table + (size_t)ix.slot[t] * ix.max_blocks;
}

/* Element offset of row `off` of KV head g in block blk of a cache. */
static __device__ __forceinline__ size_t tpd_kv_row(int blk, int g, int off, int Hkv, int block_size, int Dh) {
  return (((size_t)blk * Hkv + g) * block_size + off) * Dh;
}

#endif
