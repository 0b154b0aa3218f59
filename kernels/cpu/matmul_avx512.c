/* AVX-512F kernel: weights of any dtype widened to fp32, fp32 FMA against
 * fp32 activations, 16 lanes; a 32-wide chunk is two vectors per row. */
#include <immintrin.h>

#include "kernels/cpu/mm_tile.h"

/* 16 weights at w as fp32 */
TPD_INLINE __m512 load_w(const void *w, tpd_dtype wt) {
  switch (wt) {
    case TPD_BF16:
      return _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)w)), 16));
    case TPD_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w));
    default: return _mm512_loadu_ps((const float *)w);
  }
}

TPD_INLINE void tile_fma(const tpd_mm *p, const char *w, int n, int m, int nr, const int MR, const tpd_dtype wt) {
  const size_t esz = wt == TPD_F32 ? 4 : 2;
  const float *x = p->x + (size_t)m * p->ldx;
  __m512 acc[TPD_TILE_N][TPD_MR_MAX];
  for (int r = 0; r < TPD_TILE_N; r++)
    for (int j = 0; j < MR; j++) acc[r][j] = _mm512_setzero_ps();
  for (int k = 0; k < p->Kp; k += TPD_TILE_K, w += TPD_TILE_N * TPD_TILE_K * esz) {
    for (int half = 0; half < 2; half++) {
      __m512 wv[TPD_TILE_N];
      for (int r = 0; r < TPD_TILE_N; r++) wv[r] = load_w(w + (r * TPD_TILE_K + half * 16) * esz, wt);
      for (int j = 0; j < MR; j++) {
        const __m512 xv = _mm512_loadu_ps(x + (size_t)j * p->ldx + k + half * 16);
        for (int r = 0; r < TPD_TILE_N; r++) acc[r][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][j]);
      }
    }
  }
#define SUM(r, j) _mm512_reduce_add_ps(acc[r][j])
  TPD_MM_STORE(p, n, m, nr, MR, SUM)
#undef SUM
}

#define TILE_F32(p, w, n, m, nr, MR) tile_fma(p, w, n, m, nr, MR, TPD_F32)
#define TILE_BF16(p, w, n, m, nr, MR) tile_fma(p, w, n, m, nr, MR, TPD_BF16)
#define TILE_F16(p, w, n, m, nr, MR) tile_fma(p, w, n, m, nr, MR, TPD_F16)

void tpd_mm_avx512(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  switch (p->wt) {
    case TPD_BF16: TPD_MM_WALK(TILE_BF16, p, m0, m1, n0, n1, 4, 2) break;
    case TPD_F16: TPD_MM_WALK(TILE_F16, p, m0, m1, n0, n1, 4, 2) break;
    default: TPD_MM_WALK(TILE_F32, p, m0, m1, n0, n1, 4, 4) break;
  }
}
