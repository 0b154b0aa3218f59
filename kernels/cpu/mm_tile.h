/* Internal to the CPU matmul: the tiled weight layout and the problem
 * description shared by the per-ISA kernels (matmul_avx2.c,
 * matmul_avx512.c, matmul_avx512bf16.c).
 *
 * Y[M, N] = X[M, K] . W[N, K]^T + bias, fp32 accumulation.
 *
 * Weight layout (chosen at load time): rows in tiles of TPD_TILE_N = 4, each
 * tile stored chunk by chunk, a chunk being TPD_TILE_K = 32 consecutive k of
 * the 4 rows, row after row:
 *     W_tiled[N/4][Kp/32][4][32]      (Kp = K rounded up to 32, zero padded;
 *                                      N rounded up to 4 with zero rows)
 * so a thread streams its share of W as one linear run of memory, which the
 * hardware prefetcher follows at full bandwidth (row-major rows restart the
 * prefetcher at every 4 KiB page).
 *
 * Every kernel computes each output y[m, n] as one dot product over k in
 * ascending chunks, the same way whatever the tile it sits in, so results do
 * not depend on the batch size, the batch composition or the thread count. */
#ifndef TPD_CPU_MM_TILE_H
#define TPD_CPU_MM_TILE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/dtype.h"

#define TPD_TILE_N 4
#define TPD_TILE_K 32

static inline int tpd_tile_kp(int K) { return (K + TPD_TILE_K - 1) / TPD_TILE_K * TPD_TILE_K; }
static inline size_t tpd_tiled_elems(int N, int K) {
  return (size_t)((N + TPD_TILE_N - 1) / TPD_TILE_N * TPD_TILE_N) * (size_t)tpd_tile_kp(K);
}
/* Index of element (n, k) in the tiled layout. */
static inline size_t tpd_tiled_index(int n, int k, int Kp) {
  return (((size_t)(n / TPD_TILE_N) * (Kp / TPD_TILE_K) + (size_t)(k / TPD_TILE_K)) * TPD_TILE_N + n % TPD_TILE_N) *
             TPD_TILE_K + (size_t)(k % TPD_TILE_K);
}
/* Row-major [N, K] -> tiled (dst holds tpd_tiled_elems(N, K) elements). */
void tpd_tile_weight(void *dst, const void *src, tpd_dtype dt, int N, int K);

typedef struct {
  int M, N, K, Kp;
  const float *x; /* [M, ldx], ldx >= Kp with zeros in [K, Kp) */
  int ldx;
  const uint16_t *xb; /* [M, Kp] x rounded to bf16, zero padded (opt-in bf16 dot path), else NULL */
  const void *w;           /* tiled */
  tpd_dtype wt;
  const float *bias; /* [N] or NULL */
  float *y;          /* [M, ldy] */
  int ldy;
} tpd_mm;

/* Each computes y[m0:m1, n0:n1]; n0 is a multiple of TPD_TILE_N. */
void tpd_mm_scalar(const tpd_mm *p, int m0, int m1, int n0, int n1);
void tpd_mm_avx2(const tpd_mm *p, int m0, int m1, int n0, int n1);
void tpd_mm_avx512(const tpd_mm *p, int m0, int m1, int n0, int n1);
void tpd_mm_avx512bf16(const tpd_mm *p, int m0, int m1, int n0, int n1);
/* out[i] = bf16(x[i]), round to nearest even */
void tpd_bf16_round_avx512bf16(const float *x, int n, uint16_t *out);

/* Calls TILE(p, tile_ptr, n, m, nr, MR) with compile-time MR in 1..6 for
 * each 4-row tile of [n0, n1) and each MR-row block of [m0, m1). */
#define TPD_MM_WALK(TILE, p, m0, m1, n0, n1, MRMAX, ESZ)                              \
  for (int n_ = (n0); n_ < (n1); n_ += TPD_TILE_N) {                                  \
    const int nr_ = (n1) - n_ < TPD_TILE_N ? (n1) - n_ : TPD_TILE_N;                   \
    const char *w_ = (const char *)(p)->w + (size_t)n_ * (size_t)(p)->Kp * (ESZ);      \
    for (int m_ = (m0); m_ < (m1); m_ += (MRMAX)) {                                   \
      switch ((m1) - m_ < (MRMAX) ? (m1) - m_ : (MRMAX)) {                            \
        case 1: TILE(p, w_, n_, m_, nr_, 1); break;                                   \
        case 2: TILE(p, w_, n_, m_, nr_, 2); break;                                   \
        case 3: TILE(p, w_, n_, m_, nr_, 3); break;                                   \
        case 4: TILE(p, w_, n_, m_, nr_, 4); break;                                   \
        case 5: TILE(p, w_, n_, m_, nr_, 5); break;                                   \
        default: TILE(p, w_, n_, m_, nr_, 6); break;                                  \
      }                                                                               \
    }                                                                                 \
  }

/* Stores the 4 x MR tile sums (only the nr valid rows). */
#define TPD_MM_STORE(p, n, m, nr, MR, SUM)                                  \
  for (int j_ = 0; j_ < (MR); j_++)                                         \
    for (int r_ = 0; r_ < (nr); r_++) {                                     \
      float s_ = SUM(r_, j_);                                               \
      if ((p)->bias) s_ += (p)->bias[(n) + r_];                             \
      (p)->y[(size_t)((m) + j_) * (p)->ldy + (n) + r_] = s_;                \
    }

#define TPD_MR_MAX 6

#define TPD_INLINE static inline __attribute__((always_inline))

#endif
