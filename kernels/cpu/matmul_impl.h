/* Internal to the CPU matmul: one problem description shared by the
 * per-ISA kernels (matmul_avx2.c, matmul_avx512.c, matmul_avx512bf16.c).
 *
 * Y[M, N] = X[M, K] . W[N, K]^T + bias, fp32 accumulation.
 * Every kernel computes each output y[m, n] as one dot product over k in
 * ascending chunks, the same way whatever the tile it sits in, so results do
 * not depend on the batch size, the batch composition or the thread count. */
#ifndef TPD_CPU_MATMUL_IMPL_H
#define TPD_CPU_MATMUL_IMPL_H

#include <stdint.h>

#include "runtime/dtype.h"

typedef struct {
  int M, N, K;
  const float *x; /* [M, ldx] */
  int ldx;
  const uint16_t *xh, *xl; /* [M, ldxb] bf16 hi/lo split of x, zero padded to ldxb (bf16 dot path) */
  int ldxb;
  const void *w; /* [N, K] */
  tpd_dtype wt;
  const float *bias; /* [N] or NULL */
  float *y;          /* [M, ldy] */
  int ldy;
} tpd_mm;

/* Each computes y[m0:m1, n0:n1]. */
void tpd_mm_scalar(const tpd_mm *p, int m0, int m1, int n0, int n1);
void tpd_mm_avx2(const tpd_mm *p, int m0, int m1, int n0, int n1);
void tpd_mm_avx512(const tpd_mm *p, int m0, int m1, int n0, int n1);
void tpd_mm_avx512bf16(const tpd_mm *p, int m0, int m1, int n0, int n1);
/* x[n] -> hi = bf16(x), lo = bf16(x - hi), both round-to-nearest-even */
void tpd_bf16_split_avx512bf16(const float *x, int n, uint16_t *hi, uint16_t *lo);

/* Calls TILE(p, n, m, NR, MR) with compile-time NR <= 4, MR <= 4. */
#define TPD_MM_DISPATCH(TILE, p, n, m, nr, mr)          \
  switch ((nr) * 8 + (mr)) {                           \
    case 8 + 1: TILE(p, n, m, 1, 1); break;            \
    case 8 + 2: TILE(p, n, m, 1, 2); break;            \
    case 8 + 3: TILE(p, n, m, 1, 3); break;            \
    case 8 + 4: TILE(p, n, m, 1, 4); break;            \
    case 16 + 1: TILE(p, n, m, 2, 1); break;           \
    case 16 + 2: TILE(p, n, m, 2, 2); break;           \
    case 16 + 3: TILE(p, n, m, 2, 3); break;           \
    case 16 + 4: TILE(p, n, m, 2, 4); break;           \
    case 24 + 1: TILE(p, n, m, 3, 1); break;           \
    case 24 + 2: TILE(p, n, m, 3, 2); break;           \
    case 24 + 3: TILE(p, n, m, 3, 3); break;           \
    case 24 + 4: TILE(p, n, m, 3, 4); break;           \
    case 32 + 1: TILE(p, n, m, 4, 1); break;           \
    case 32 + 2: TILE(p, n, m, 4, 2); break;           \
    case 32 + 3: TILE(p, n, m, 4, 3); break;           \
    default: TILE(p, n, m, 4, 4); break;               \
  }

/* Walks y[m0:m1, n0:n1] in NR x MR tiles (MR rows of X, NR rows of W). */
#define TPD_MM_WALK(TILE, p, m0, m1, n0, n1, NRMAX, MRMAX)             \
  for (int n_ = (n0); n_ < (n1); n_ += (NRMAX)) {                      \
    const int nr_ = (n1) - n_ < (NRMAX) ? (n1) - n_ : (NRMAX);         \
    for (int m_ = (m0); m_ < (m1); m_ += (MRMAX)) {                    \
      const int mr_ = (m1) - m_ < (MRMAX) ? (m1) - m_ : (MRMAX);       \
      TPD_MM_DISPATCH(TILE, p, n_, m_, nr_, mr_)                       \
    }                                                                  \
  }

#define TPD_INLINE static inline __attribute__((always_inline))

#endif
