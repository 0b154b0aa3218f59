/* AVX2 + FMA + F16C kernel: 8-wide fp32 FMA; a 32-wide chunk is four vectors
 * per row; at most 2 rows of X per tile (16 registers). */
#include <immintrin.h>

#include "kernels/cpu/mm_tile.h"

TPD_INLINE __m256 load_w8(const void *w, tpd_dtype wt) {
  switch (wt) {
    case TPD_BF16:
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w)), 16));
    case TPD_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w));
    default: return _mm256_loadu_ps((const float *)w);
  }
}

TPD_INLINE float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

TPD_INLINE void tile8(const tpd_mm *p, const char *w, int n, int m, int nr, const int MR, const tpd_dtype wt) {
  const size_t esz = wt == TPD_F32 ? 4 : 2;
  const float *x = p->x + (size_t)m * p->ldx;
  __m256 acc[TPD_TILE_N][TPD_MR_MAX];
  for (int r = 0; r < TPD_TILE_N; r++)
    for (int j = 0; j < MR; j++) acc[r][j] = _mm256_setzero_ps();
  for (int k = 0; k < p->Kp; k += TPD_TILE_K, w += TPD_TILE_N * TPD_TILE_K * esz) {
    for (int q = 0; q < 4; q++) {
      __m256 wv[TPD_TILE_N];
      for (int r = 0; r < TPD_TILE_N; r++) wv[r] = load_w8(w + (r * TPD_TILE_K + q * 8) * esz, wt);
      for (int j = 0; j < MR; j++) {
        const __m256 xv = _mm256_loadu_ps(x + (size_t)j * p->ldx + k + q * 8);
        for (int r = 0; r < TPD_TILE_N; r++) acc[r][j] = _mm256_fmadd_ps(wv[r], xv, acc[r][j]);
      }
    }
  }
#define SUM(r, j) hsum8(acc[r][j])
  TPD_MM_STORE(p, n, m, nr, MR, SUM)
#undef SUM
}

#define TILE_F32(p, w, n, m, nr, MR) tile8(p, w, n, m, nr, MR, TPD_F32)
#define TILE_BF16(p, w, n, m, nr, MR) tile8(p, w, n, m, nr, MR, TPD_BF16)
#define TILE_F16(p, w, n, m, nr, MR) tile8(p, w, n, m, nr, MR, TPD_F16)

void tpd_mm_avx2(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  switch (p->wt) {
    case TPD_BF16: TPD_MM_WALK(TILE_BF16, p, m0, m1, n0, n1, 2, 2) break;
    case TPD_F16: TPD_MM_WALK(TILE_F16, p, m0, m1, n0, n1, 2, 2) break;
    default: TPD_MM_WALK(TILE_F32, p, m0, m1, n0, n1, 2, 4) break;
  }
}
