/* AVX-512 BF16 kernel: bf16 weights against x split into bf16 hi + lo parts,
 * two vdpbf16ps per weight vector, so activations keep ~16 bits of mantissa
 * (fp32-level accuracy) while the weights stream in their file format. */
#include <immintrin.h>

#include "kernels/cpu/matmul_impl.h"

void tpd_bf16_split_avx512bf16(const float *x, int n, uint16_t *hi, uint16_t *lo) {
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    __m256bh h = _mm512_cvtneps_pbh(v);
    __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)h), 16));
    __m256bh l = _mm512_cvtneps_pbh(_mm512_sub_ps(v, hf));
    _mm256_storeu_si256((__m256i *)(hi + i), (__m256i)h);
    _mm256_storeu_si256((__m256i *)(lo + i), (__m256i)l);
  }
  for (; i < n; i++) {
    hi[i] = tpd_f32_to_bf16(x[i]);
    lo[i] = tpd_f32_to_bf16(x[i] - tpd_bf16_to_f32(hi[i]));
  }
}

#ifndef MR_BLOCK
#define MR_BLOCK 6
#endif

TPD_INLINE void tile_dp(const tpd_mm *p, const char *wt, int n, int m, int nr, const int MR) {
  const uint16_t *w = (const uint16_t *)wt;
  const uint16_t *xh = p->xh + (size_t)m * p->Kp, *xl = p->xl + (size_t)m * p->Kp;
  __m512 acc[TPD_TILE_N][TPD_MR_MAX];
  for (int r = 0; r < TPD_TILE_N; r++)
    for (int j = 0; j < MR; j++) acc[r][j] = _mm512_setzero_ps();
  for (int k = 0; k < p->Kp; k += TPD_TILE_K, w += TPD_TILE_N * TPD_TILE_K) {
    __m512i wv[TPD_TILE_N];
    for (int r = 0; r < TPD_TILE_N; r++) wv[r] = _mm512_loadu_si512(w + r * TPD_TILE_K);
    for (int j = 0; j < MR; j++) {
      const __m512i h = _mm512_loadu_si512(xh + (size_t)j * p->Kp + k);
      const __m512i l = _mm512_loadu_si512(xl + (size_t)j * p->Kp + k);
      for (int r = 0; r < TPD_TILE_N; r++) {
        acc[r][j] = _mm512_dpbf16_ps(acc[r][j], (__m512bh)wv[r], (__m512bh)h);
        acc[r][j] = _mm512_dpbf16_ps(acc[r][j], (__m512bh)wv[r], (__m512bh)l);
      }
    }
  }
#define SUM(r, j) _mm512_reduce_add_ps(acc[r][j])
  TPD_MM_STORE(p, n, m, nr, MR, SUM)
#undef SUM
}

void tpd_mm_avx512bf16(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  if (p->wt != TPD_BF16 || !p->xh) {
    tpd_mm_avx512(p, m0, m1, n0, n1);
    return;
  }
  TPD_MM_WALK(tile_dp, p, m0, m1, n0, n1, MR_BLOCK, sizeof(uint16_t))
}
