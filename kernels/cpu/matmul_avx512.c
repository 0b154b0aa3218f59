/* AVX-512F kernel: weights of any dtype widened to fp32, fp32 FMA against
 * fp32 activations.  Masked loads handle the K tail. */
#include <immintrin.h>

#include "kernels/cpu/matmul_impl.h"

/* 16 weights starting at w[k] as fp32; `mk` masks the tail. */
TPD_INLINE __m512 load_w(const void *w, tpd_dtype wt, size_t off, __mmask16 mk) {
  switch (wt) {
    case TPD_BF16: {
      __m256i b = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + off);
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
    }
    case TPD_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + off));
    default: return _mm512_maskz_loadu_ps(mk, (const float *)w + off);
  }
}

TPD_INLINE void tile_fma(const tpd_mm *p, int n, int m, const int NR, const int MR, const tpd_dtype wt) {
  const int K = p->K;
  const float *x = p->x + (size_t)m * p->ldx;
  __m512 acc[4][4];
  for (int r = 0; r < NR; r++)
    for (int j = 0; j < MR; j++) acc[r][j] = _mm512_setzero_ps();
  __m512 wv[4];
  int k = 0;
  const __mmask16 all = 0xffff;
  for (; k + 16 <= K; k += 16) {
    for (int r = 0; r < NR; r++) wv[r] = load_w(p->w, wt, (size_t)(n + r) * K + k, all);
    for (int j = 0; j < MR; j++) {
      const __m512 xv = _mm512_loadu_ps(x + (size_t)j * p->ldx + k);
      for (int r = 0; r < NR; r++) acc[r][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][j]);
    }
  }
  if (k < K) {
    const __mmask16 mk = (__mmask16)((1u << (K - k)) - 1u);
    for (int r = 0; r < NR; r++) wv[r] = load_w(p->w, wt, (size_t)(n + r) * K + k, mk);
    for (int j = 0; j < MR; j++) {
      const __m512 xv = _mm512_maskz_loadu_ps(mk, x + (size_t)j * p->ldx + k);
      for (int r = 0; r < NR; r++) acc[r][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][j]);
    }
  }
  for (int j = 0; j < MR; j++)
    for (int r = 0; r < NR; r++) {
      float s = _mm512_reduce_add_ps(acc[r][j]);
      if (p->bias) s += p->bias[n + r];
      p->y[(size_t)(m + j) * p->ldy + n + r] = s;
    }
}

#define TILE_F32(p, n, m, NR, MR) tile_fma(p, n, m, NR, MR, TPD_F32)
#define TILE_BF16(p, n, m, NR, MR) tile_fma(p, n, m, NR, MR, TPD_BF16)
#define TILE_F16(p, n, m, NR, MR) tile_fma(p, n, m, NR, MR, TPD_F16)

void tpd_mm_avx512(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  switch (p->wt) {
    case TPD_BF16: TPD_MM_WALK(TILE_BF16, p, m0, m1, n0, n1, 4, 4) break;
    case TPD_F16: TPD_MM_WALK(TILE_F16, p, m0, m1, n0, n1, 4, 4) break;
    default: TPD_MM_WALK(TILE_F32, p, m0, m1, n0, n1, 4, 4) break;
  }
}
