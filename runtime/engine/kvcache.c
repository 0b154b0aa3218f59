#include "runtime/engine/kvcache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The host arrays, in one block: int32 arrays first, then the byte flags. */
static size_t layout(tpd_kv_pool *kv, uint8_t *base) {
  const size_t table = (size_t)kv->max_slots * (size_t)kv->max_blocks, slots = (size_t)kv->max_slots;
  size_t off = 0;
#define KV_TAKE(field, n_elems)                                       \
  do {                                                                \
    if (base) kv->field = (void *)(base + off);                       \
    off += (size_t)(n_elems) * sizeof *kv->field;                     \
  } while (0)
  KV_TAKE(table, table);
  KV_TAKE(free_blocks, kv->n_blocks);
  KV_TAKE(n_tokens, slots);
  KV_TAKE(n_alloc, slots);
  KV_TAKE(in_use, slots);
  KV_TAKE(dirty, slots);
#undef KV_TAKE
  return (off + 7) / 8 * 8;
}

tpd_status tpd_kv_plan(tpd_kv_pool *kv, int max_slots, int max_ctx, int block_size, int n_blocks,
                       size_t *host_bytes) {
  memset(kv, 0, sizeof *kv);
  if (max_slots < 1) return TPD_FAIL(TPD_ERR_ARG, "KV cache: max_slots = %d (need >= 1)", max_slots);
  if (max_ctx < 1) return TPD_FAIL(TPD_ERR_ARG, "KV cache: max_ctx = %d (need >= 1)", max_ctx);
  if (block_size < 1) return TPD_FAIL(TPD_ERR_ARG, "KV cache: block_size = %d (need >= 1)", block_size);
  if (n_blocks < 0)
    return TPD_FAIL(TPD_ERR_ARG, "KV cache: n_blocks = %d (need >= 0; 0: enough for every slot)", n_blocks);
  /* sizes in int64: each factor is below 2^31, so no product of two overflows */
  const int64_t max_blocks = ((int64_t)max_ctx + block_size - 1) / block_size;
  const int64_t table = (int64_t)max_slots * max_blocks;
  /* block ids and per-slot counts are int32, and the table is indexed by them */
  if (table > INT32_MAX)
    return TPD_FAIL(TPD_ERR_ARG,
                    "KV cache: max_slots = %d x ceil(max_ctx = %d / block_size = %d) = %lld block-table entries "
                    "exceed %d",
                    max_slots, max_ctx, block_size, (long long)table, INT32_MAX);
  kv->block_size = block_size;
  kv->max_slots = max_slots;
  kv->max_ctx = max_ctx;
  kv->max_blocks = (int)max_blocks;
  kv->n_blocks = n_blocks > 0 ? n_blocks : (int)table;
  *host_bytes = layout(kv, NULL);
  return TPD_OK;
}

void tpd_kv_attach(tpd_kv_pool *kv, void *mem) {
  layout(kv, mem);
  /* hand out low block ids first */
  for (int i = 0; i < kv->n_blocks; i++) kv->free_blocks[i] = kv->n_blocks - 1 - i;
  kv->n_free = kv->n_blocks;
  kv->n_dirty = 0;
}

tpd_status tpd_kv_init(tpd_kv_pool *kv, int max_slots, int max_ctx, int block_size, int n_blocks) {
  size_t n_bytes = 0;
  TPD_TRY(tpd_kv_plan(kv, max_slots, max_ctx, block_size, n_blocks, &n_bytes));
  void *mem = calloc(1, n_bytes);
  if (!mem) {
    const int64_t table = (int64_t)kv->max_slots * kv->max_blocks, n = kv->n_blocks;
    memset(kv, 0, sizeof *kv);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory for the KV block table (%lld entries) and free list (%lld blocks)",
                    (long long)table, (long long)n);
  }
  tpd_kv_attach(kv, mem);
  kv->own = mem;
  return TPD_OK;
}

void tpd_kv_free(tpd_kv_pool *kv) {
  free(kv->own);
  memset(kv, 0, sizeof *kv);
}

static void mark(tpd_kv_pool *kv, int slot) {
  if (!kv->dirty[slot]) {
    kv->dirty[slot] = 1;
    kv->n_dirty++;
  }
}

void tpd_kv_clean(tpd_kv_pool *kv) {
  if (!kv->n_dirty) return;
  memset(kv->dirty, 0, (size_t)kv->max_slots);
  kv->n_dirty = 0;
}

tpd_status tpd_kv_acquire(tpd_kv_pool *kv, int *slot) {
  for (int s = 0; s < kv->max_slots; s++)
    if (!kv->in_use[s]) {
      kv->in_use[s] = 1;
      kv->n_tokens[s] = 0;
      kv->n_alloc[s] = 0;
      *slot = s;
      return TPD_OK;
    }
  return TPD_FAIL(TPD_ERR_NO_SLOT, "all %d sequence slots are in use", kv->max_slots);
}

tpd_status tpd_kv_acquire_slot(tpd_kv_pool *kv, int slot) {
  if (slot < 0 || slot >= kv->max_slots) return TPD_FAIL(TPD_ERR_SLOT, "sequence slot %d is out of range [0, %d)", slot, kv->max_slots);
  if (kv->in_use[slot]) return TPD_FAIL(TPD_ERR_SLOT, "sequence slot %d is already open", slot);
  kv->in_use[slot] = 1;
  kv->n_tokens[slot] = 0;
  kv->n_alloc[slot] = 0;
  return TPD_OK;
}

int tpd_kv_blocks_needed(const tpd_kv_pool *kv, int slot, int n_new) {
  if (slot < 0 || slot >= kv->max_slots || !kv->in_use[slot] || n_new < 0) return -1;
  const int64_t want = (int64_t)kv->n_tokens[slot] + n_new;
  const int64_t blocks = (want + kv->block_size - 1) / kv->block_size;
  return blocks > kv->n_alloc[slot] ? (int)(blocks - kv->n_alloc[slot]) : 0;
}

void tpd_kv_release(tpd_kv_pool *kv, int slot) {
  if (slot < 0 || slot >= kv->max_slots || !kv->in_use[slot]) return;
  int32_t *row = kv->table + (size_t)slot * kv->max_blocks;
  for (int i = kv->n_alloc[slot] - 1; i >= 0; i--) kv->free_blocks[kv->n_free++] = row[i];
  if (kv->n_alloc[slot] > 0) {
    memset(row, 0, sizeof *row * (size_t)kv->n_alloc[slot]);
    mark(kv, slot);
  }
  kv->n_alloc[slot] = 0;
  kv->n_tokens[slot] = 0;
  kv->in_use[slot] = 0;
}

tpd_status tpd_kv_reserve(tpd_kv_pool *kv, int slot, int n_new) {
  if (slot < 0 || slot >= kv->max_slots || !kv->in_use[slot])
    return TPD_FAIL(TPD_ERR_SLOT, "sequence slot %d is not open", slot);
  if (n_new < 0) return TPD_FAIL(TPD_ERR_ARG, "KV cache: n_new = %d tokens is negative", n_new);
  const int64_t want = (int64_t)kv->n_tokens[slot] + n_new; /* both in [0, 2^31): no overflow */
  if (want > kv->max_ctx)
    return TPD_FAIL(TPD_ERR_TOO_LONG, "sequence needs %lld tokens (%d held + n_new = %d) but the context holds %d",
                    (long long)want, kv->n_tokens[slot], n_new, kv->max_ctx);
  /* want <= max_ctx, so blocks <= max_blocks: the row has room */
  const int blocks = (int)((want + kv->block_size - 1) / kv->block_size);
  if (blocks - kv->n_alloc[slot] > kv->n_free)
    return TPD_FAIL(TPD_ERR_KV_FULL, "KV cache pool exhausted: %d free blocks, %d needed", kv->n_free,
                    blocks - kv->n_alloc[slot]);
  int32_t *row = kv->table + (size_t)slot * kv->max_blocks;
  if (kv->n_alloc[slot] < blocks) mark(kv, slot);
  while (kv->n_alloc[slot] < blocks) row[kv->n_alloc[slot]++] = kv->free_blocks[--kv->n_free];
  return TPD_OK;
}
