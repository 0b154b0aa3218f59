/* AVX-512 BF16 kernel (opt-in, TPD_CPU_BF16_DOT=1): bf16 weights against
 * activations rounded to bf16, one vdpbf16ps per 32 products: twice the
 * multiply rate of the fp32 FMA kernel, at bf16 activation precision (the
 * precision class of the GPU path).  The default CPU path keeps fp32
 * activations (matmul_avx512.c), which is as fast while memory-bound and is
 * the reference the other backends are checked against. */
#include <immintrin.h>

#include "kernels/cpu/mm_tile.h"

void tpd_bf16_round_avx512bf16(const float *x, int n, uint16_t *out) {
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i *)(out + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
  for (; i < n; i++) out[i] = tpd_f32_to_bf16(x[i]);
}

TPD_INLINE void tile_dp(const tpd_mm *p, const char *wt, int n, int m, int nr, const int MR) {
  const uint16_t *w = (const uint16_t *)wt;
  const uint16_t *xb = p->xb + (size_t)m * p->Kp;
  __m512 acc[TPD_TILE_N][TPD_MR_MAX];
  for (int r = 0; r < TPD_TILE_N; r++)
    for (int j = 0; j < MR; j++) acc[r][j] = _mm512_setzero_ps();
  for (int k = 0; k < p->Kp; k += TPD_TILE_K, w += TPD_TILE_N * TPD_TILE_K) {
    __m512i wv[TPD_TILE_N];
    for (int r = 0; r < TPD_TILE_N; r++) wv[r] = _mm512_loadu_si512(w + r * TPD_TILE_K);
    for (int j = 0; j < MR; j++) {
      const __m512i xv = _mm512_loadu_si512(xb + (size_t)j * p->Kp + k);
      for (int r = 0; r < TPD_TILE_N; r++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], (__m512bh)wv[r], (__m512bh)xv);
    }
  }
#define SUM(r, j) _mm512_reduce_add_ps(acc[r][j])
  TPD_MM_STORE(p, n, m, nr, MR, SUM)
#undef SUM
}

void tpd_mm_avx512bf16(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  if (p->wt != TPD_BF16 || !p->xb) {
    tpd_mm_avx512(p, m0, m1, n0, n1);
    return;
  }
  TPD_MM_WALK(tile_dp, p, m0, m1, n0, n1, 6, sizeof(uint16_t))
}
