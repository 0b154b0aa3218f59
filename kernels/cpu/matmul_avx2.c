/* AVX2 + FMA + F16C kernel: 8-wide fp32 FMA; the K tail (K % 8) is added
 * after the vector sum, in ascending k, for every output the same way. */
#include <immintrin.h>

#include "kernels/cpu/matmul_impl.h"

TPD_INLINE __m256 load_w8(const void *w, tpd_dtype wt, size_t off) {
  switch (wt) {
    case TPD_BF16: {
      __m128i b = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + off));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
    }
    case TPD_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + off)));
    default: return _mm256_loadu_ps((const float *)w + off);
  }
}

TPD_INLINE float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

TPD_INLINE void tile8(const tpd_mm *p, int n, int m, const int NR, const int MR, const tpd_dtype wt) {
  const int K = p->K, K8 = K & ~7;
  const float *x = p->x + (size_t)m * p->ldx;
  __m256 acc[4][4];
  for (int r = 0; r < NR; r++)
    for (int j = 0; j < MR; j++) acc[r][j] = _mm256_setzero_ps();
  for (int k = 0; k < K8; k += 8) {
    __m256 wv[4];
    for (int r = 0; r < NR; r++) wv[r] = load_w8(p->w, wt, (size_t)(n + r) * K + k);
    for (int j = 0; j < MR; j++) {
      const __m256 xv = _mm256_loadu_ps(x + (size_t)j * p->ldx + k);
      for (int r = 0; r < NR; r++) acc[r][j] = _mm256_fmadd_ps(wv[r], xv, acc[r][j]);
    }
  }
  for (int j = 0; j < MR; j++)
    for (int r = 0; r < NR; r++) {
      float s = hsum8(acc[r][j]);
      for (int k = K8; k < K; k++) s += tpd_load_f32(p->w, wt, (size_t)(n + r) * K + k) * x[(size_t)j * p->ldx + k];
      if (p->bias) s += p->bias[n + r];
      p->y[(size_t)(m + j) * p->ldy + n + r] = s;
    }
}

#define TILE_F32(p, n, m, NR, MR) tile8(p, n, m, NR, MR, TPD_F32)
#define TILE_BF16(p, n, m, NR, MR) tile8(p, n, m, NR, MR, TPD_BF16)
#define TILE_F16(p, n, m, NR, MR) tile8(p, n, m, NR, MR, TPD_F16)

void tpd_mm_avx2(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  switch (p->wt) {
    case TPD_BF16: TPD_MM_WALK(TILE_BF16, p, m0, m1, n0, n1, 4, 2) break;
    case TPD_F16: TPD_MM_WALK(TILE_F16, p, m0, m1, n0, n1, 4, 2) break;
    default: TPD_MM_WALK(TILE_F32, p, m0, m1, n0, n1, 4, 2) break;
  }
}
