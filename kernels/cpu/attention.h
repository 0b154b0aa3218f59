/* CPU decode/prefill attention over the paged KV cache, flash-decoding style
 * (kernels/cpu/attention.c drives it; the per-ISA files hold the chunk
 * kernels).
 *
 * Work item = (token t, KV head g, chunk c): the positions of t's sequence
 * in [c * TPD_ATT_CHUNK, (c + 1) * TPD_ATT_CHUNK) that t attends to.  An
 * item reads the chunk's K and V rows once for all G = Hq / Hkv query heads
 * of group g and leaves, per query head, a partial: the scores' maximum m,
 * the sum l of exp(score - m), and acc[Dh] = sum exp(score - m) v.  A combine
 * per (t, query head) then merges the chunks in chunk order.  The chunk is a
 * fixed number of positions, so every result is the same whatever the
 * thread count.  Threads share out (t, c) pairs; the SIMD kernels take a
 * pair's KV heads in one item and read its KV blocks whole, one after the
 * other (the heads of a block lie side by side), the scalar one runs the
 * items of every KV head of a pair in turn. */
#ifndef TPD_CPU_ATTENTION_H
#define TPD_CPU_ATTENTION_H

#include <stddef.h>

#include "runtime/base/dtype.h"

#if defined(__GNUC__)
#define TPD_ATT_INLINE static inline __attribute__((always_inline))
#else
#define TPD_ATT_INLINE static inline
#endif

/* Positions per chunk: 256 rows of K and V are 32-64 KB per KV head at
 * Dh 64-128 (f32), long enough that the per-item partial (G (Dh + 2)
 * floats written, then read by the combine) is under 1% of the KV bytes the
 * item reads, short enough that a single sequence of 1k positions already
 * gives 4 items per KV head to spread over the threads. */
#define TPD_ATT_CHUNK 256
/* Rows ahead of use the SIMD kernels prefetch, into L1: K by the scores pass,
 * V by the values pass.  Each stream runs on past the item's end: the last
 * K rows' prefetches take V's first rows (read after the softmax), the last V
 * rows' the thread's next item's first K rows (tpd_att_ahead_k, _v), so no
 * pass starts on cold rows (docs/performance.md, "Prefetch across the
 * passes"). */
#define TPD_ATT_PREFETCH 16

/* One item for the chunk kernels.  Rows are pointers (a chunk crosses KV
 * blocks, which the block table scatters). */
typedef struct {
  int G;                   /* query heads sharing this KV head */
  int Dh;                  /* head dim */
  int n;                   /* positions in the chunk, 1..TPD_ATT_CHUNK */
  const float *q;          /* [G nkv, Dh] the group's query heads, contiguous */
  const void *const *k;    /* [n] K rows (Dh elements of kv each) */
  const void *const *v;    /* [n] V rows */
  tpd_dtype kv;            /* TPD_F32 or TPD_BF16 */
  float scale;             /* applied to q.k */
  float *s;                /* scratch [G nkv, TPD_ATT_CHUNK]: scores, then exp(score - m) */
  float *qd;               /* scratch [G nkv, Dh]: q in the order a kernel reads K (avx512, bf16 KV) */
  float *part;             /* out: G nkv partials, `stride` floats apart: acc[Dh], m, l */
  int stride;
  /* KV heads in the item (1 for the scalar kernel): KV head g's
   * query heads are q's heads [g G, (g + 1) G), its row j lies hstride bytes
   * after head g - 1's (k and v point at head 0's rows), and s and qd hold
   * G nkv heads.  The SIMD kernels read such an item a KV block of every
   * head at a time (seg0 rows to the end of the first block, then seg, the
   * block size; a whole chunk, TPD_ATT_CHUNK, for blocks that are not a
   * multiple of 4 rows), so that they read whole blocks in address order;
   * the scalar kernel takes nkv = 1 only. */
  int nkv;
  int seg0, seg;
  size_t hstride;
  /* The first K row of the thread's next item (its head 0, rows hstride
   * bytes apart per head as here) and its rows to the end of their KV block;
   * NULL for the thread's last item. */
  const unsigned char *next_k;
  int next_rows;
} tpd_att_item;

/* Row j of KV head g of an item (its rows point at head 0's): rows[j] +
 * g hstride bytes. */
TPD_ATT_INLINE const void *tpd_att_row(const void *const *rows, int j, size_t off) { return (const char *)rows[j] + off; }

/* What the scores pass prefetches for row u = j + TPD_ATT_PREFETCH of KV head
 * g (off = g hstride): K row u, past the item's end V row u - n; NULL after
 * those. */
TPD_ATT_INLINE const void *tpd_att_ahead_k(const tpd_att_item *it, int u, size_t off) {
  return u < it->n ? tpd_att_row(it->k, u, off) : u - it->n < it->n ? tpd_att_row(it->v, u - it->n, off) : NULL;
}

/* What the values pass prefetches for row u: V row u, past the item's end the
 * next item's K row u - n of its first block; NULL after those. */
TPD_ATT_INLINE const void *tpd_att_ahead_v(const tpd_att_item *it, int u, size_t off, int row_bytes) {
  if (u < it->n) return tpd_att_row(it->v, u, off);
  return it->next_k && u - it->n < it->next_rows ? it->next_k + off + (size_t)(u - it->n) * row_bytes : NULL;
}

/* The SIMD kernels go segment by segment, every KV head in turn in each
 * pass: the first segment is it->seg0 rows (to the end of the first KV
 * block), the next ones it->seg (a block), so an item of several KV heads
 * reads its blocks ([head][row] each) whole and in address order; one KV
 * head's item is one segment.  The end of the segment that starts at row
 * j0.  A 4-row group of scores may run past a segment's end into the next
 * segment's rows (the same rows of the same head, recomputed there). */
static inline int tpd_att_seg_end(const tpd_att_item *it, int j0) {
  const int e = it->nkv <= 1 ? it->n : j0 == 0 ? it->seg0 : j0 + it->seg;
  return e < it->n ? e : it->n;
}

/* Partial layout: acc at [0, Dh), m at Dh, l at Dh + 1. */
static inline int tpd_att_part_stride(int Dh) { return Dh + 2; }

/* A chunk kernel. */
typedef void (*tpd_att_item_fn)(const tpd_att_item *it);
/* Tests: hook(it, kernel, t0) runs in place of kernel(it) for every item of
 * the later attention calls (the hook must run kernel(it) for the results),
 * so a test sees each item as the driver built it; t0: the first token of
 * the item's wave.  NULL: none.  Not to be changed while an attention call
 * runs. */
typedef void (*tpd_att_hook_fn)(const tpd_att_item *it, tpd_att_item_fn kernel, int t0);
void tpd_att_set_hook(tpd_att_hook_fn hook);

void tpd_att_item_scalar(const tpd_att_item *it);
#ifdef TPD_HAVE_X86_SIMD
/* Dh a multiple of 8 (avx2) or 32 (avx512); others take the scalar kernel. */
void tpd_att_item_avx2(const tpd_att_item *it);
void tpd_att_item_avx512(const tpd_att_item *it);
#endif

/* The attention workspace of the cpu backend for a plan (or one call): per
 * thread a score scratch and the chunk's row pointers, the partials of up to
 * part_chunks (token, chunk) pairs (all Hq heads each), and a chunk index
 * per token of a wave.  Tokens are processed in waves that fit the partials,
 * so prefill of long prompts does not need max_rows x max_chunks of them. */
typedef struct {
  size_t thread_bytes;  /* per thread, a multiple of 64 */
  size_t part_chunks;   /* (token, chunk) partial rows, each Hq * stride floats */
  size_t part_bytes;
  size_t rows;          /* tokens per wave at most (chunk index entries - 1) */
  size_t index_bytes;
  size_t total_bytes;   /* n_threads * thread_bytes + part_bytes + index_bytes */
} tpd_att_sizes;

/* Chunks a token at position < max_ctx can touch. */
static inline int tpd_att_max_chunks(int max_ctx) {
  return max_ctx < 1 ? 1 : (max_ctx + TPD_ATT_CHUNK - 1) / TPD_ATT_CHUNK;
}
void tpd_att_sizes_for(int max_rows, int max_ctx, int n_q_heads, int n_kv_heads, int head_dim, int n_threads,
                       tpd_att_sizes *out);

#endif
