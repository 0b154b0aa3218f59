/* Internal to the CPU matmul: the panel weight layout and the problem
 * description shared by the per-ISA kernels (matmul_avx2.c,
 * matmul_avx512.c, matmul_avx512bf16.c).
 *
 * Y[M, N] = X[M, K] . W[N, K]^T + bias, fp32 accumulation.
 *
 * Weight layout (chosen at load time): rows in panels of TPD_PANEL = 16, each
 * panel stored as Kp/2 chunks of 16 rows x 2 consecutive k (Kp = K rounded
 * up to 2, N up to 16, padding zero):
 *     W_panel[N/16][Kp/2][chunk]
 *     chunk, bf16:     [16 rows][2 k]  one 32-bit lane per row holds (k, k+1):
 *                                      the operand of vdpbf16ps, and widened
 *                                      to fp32 by a shift (k) and a mask (k+1)
 *     chunk, f16, f32: [2 k][16 rows]  one vector of 16 rows per k
 * A panel is one linear run of memory, so a thread streams its share of W at
 * the prefetcher's full rate, and the 16 rows are the 16 lanes of a vector:
 * the kernels broadcast x[m, k] and accumulate outer products, one lane per
 * output, with no horizontal sums; a weight vector loaded once serves every
 * row of X in the block.
 *
 * Every kernel computes each output y[m, n] as one fp32 sum in ascending k
 * (acc = fma(w[n,k], x[m,k], acc), k = 0, 1, ..., then + bias), the same
 * whatever the block it sits in, so results do not depend on the batch
 * size, the batch composition or the thread count.  The bf16 paths (bf16
 * activations, kernels/cpu/cpu_isa.h) round x to bf16: vdpbf16ps adds one k pair per step, also in ascending
 * order; AMX (matmul_amx.c) adds 32-k blocks in ascending order, within a
 * block in the hardware's order, the same for every row. */
#ifndef TPD_CPU_MM_TILE_H
#define TPD_CPU_MM_TILE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/cpu_isa.h"
#include "runtime/base/dtype.h"

#define TPD_PANEL 16

static inline int tpd_tile_kp(int K) { return (K + 1) / 2 * 2; }
static inline size_t tpd_tiled_elems(int N, int K) {
  return (size_t)((N + TPD_PANEL - 1) / TPD_PANEL * TPD_PANEL) * (size_t)tpd_tile_kp(K);
}
/* Index of element (n, k) in the panel layout of dtype dt. */
static inline size_t tpd_tiled_index(int n, int k, int Kp, tpd_dtype dt) {
  const size_t chunk = ((size_t)(n / TPD_PANEL) * (size_t)(Kp / 2) + (size_t)(k / 2)) * (2 * TPD_PANEL);
  return chunk + (dt == TPD_BF16 ? (size_t)(n % TPD_PANEL) * 2 + (size_t)(k % 2)
                                 : (size_t)(k % 2) * TPD_PANEL + (size_t)(n % TPD_PANEL));
}
/* Row-major [N, K] -> panels (dst holds tpd_tiled_elems(N, K) elements). */
void tpd_tile_weight(void *dst, const void *src, tpd_dtype dt, int N, int K);

typedef struct {
  int M, N, K, Kp;
  const float *x; /* [M, ldx] */
  int ldx;
  const uint16_t *xb; /* [M, ldxb] x rounded to bf16, zero padded (the bf16 paths), else NULL */
  int ldxb;           /* Kp, or for AMX tpd_amx_ld(Kp) with rows to tpd_amx_rows(M) */
  const void *w;      /* panels */
  tpd_dtype wt;
  const float *bias; /* [N] or NULL */
  float *y;          /* [M, ldy] */
  int ldy;
  int pf; /* tpd_cpu_prefetch(): bytes ahead of each weight stream, 0: none, or TPD_CPU_PREFETCH_AUTO */
} tpd_mm;

/* The distance ahead of each of a block's `streams` weight streams, in
 * bytes; 0: no software prefetch.  TPD_CPU_PREFETCH_AUTO shares
 * TPD_CPU_PREFETCH_SPAN among the streams, in whole lines. */
static inline int tpd_mm_pf(const tpd_mm *p, int streams) {
  return p->pf == TPD_CPU_PREFETCH_AUTO ? TPD_CPU_PREFETCH_SPAN / streams / 64 * 64 : p->pf;
}

/* The outputs a matmul thread takes next when `left` are untaken (a share
 * for nth threads, guided): the whole panel pairs left over the thread
 * count, rounded up, at least one pair; nth = 1 takes everything at once.
 * matmul.c, mm_task. */
static inline long tpd_mm_share(int left, int nth) {
  const long unit = 2 * TPD_PANEL, pairs = ((long)left + unit - 1) / unit;
  return (pairs + nth - 1) / nth * unit;
}

/* Each computes y[m0:m1, n0:n1]; n0 is a multiple of TPD_PANEL. */
void tpd_mm_scalar(const tpd_mm *p, int m0, int m1, int n0, int n1);
void tpd_mm_avx2(const tpd_mm *p, int m0, int m1, int n0, int n1);
void tpd_mm_avx512(const tpd_mm *p, int m0, int m1, int n0, int n1);
void tpd_mm_avx512bf16(const tpd_mm *p, int m0, int m1, int n0, int n1);
/* bf16 weights and p->xb only; m0 a multiple of 16 (matmul_amx.c) */
void tpd_mm_amx(const tpd_mm *p, int m0, int m1, int n0, int n1);
/* The AMX kernel's x: k padded to whole 32-k tiles, rows to whole 16-row
 * tiles, with zeros; a row stride that is a multiple of 1 KB gets 64 bytes
 * more, so that a tile's 16 rows do not all fall in one L1 set. */
static inline int tpd_amx_ld(int Kp) {
  const int ld = (Kp + 31) / 32 * 32;
  return ld % 512 ? ld : ld + 32;
}
static inline int tpd_amx_rows(int M) { return (M + 15) / 16 * 16; }
/* out[i] = bf16(x[i]), round to nearest even */
void tpd_bf16_round_avx512bf16(const float *x, int n, uint16_t *out);

/* Bytes of one chunk (16 rows x 2 k) and of one panel. */
static inline size_t tpd_chunk_bytes(tpd_dtype wt) { return 2 * TPD_PANEL * tpd_dtype_size(wt); }
static inline const char *tpd_panel_ptr(const tpd_mm *p, int n) {
  return (const char *)p->w + (size_t)(n / TPD_PANEL) * (size_t)(p->Kp / 2) * tpd_chunk_bytes(p->wt);
}

/* Splits [m0, m1) into blocks of at most MRMAX rows, as even as possible,
 * and calls BODY(m, mr) with each. */
#define TPD_MM_MBLOCKS(m0, m1, MRMAX, BODY)                                   \
  do {                                                                        \
    const int nm_ = (m1) - (m0), nb_ = (nm_ + (MRMAX)-1) / (MRMAX);           \
    for (int b_ = 0, m_ = (m0); b_ < nb_; b_++) {                             \
      const int mr_ = nm_ / nb_ + (b_ < nm_ % nb_ ? 1 : 0);                   \
      BODY(m_, mr_);                                                          \
      m_ += mr_;                                                              \
    }                                                                         \
  } while (0)

#define TPD_INLINE static inline __attribute__((always_inline))

#endif
