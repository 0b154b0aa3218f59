/* AVX-512 BF16 kernel (bf16 activations: the default on CPUs whose
 * vdpbf16ps outruns their FMA, kernels/cpu/cpu_isa.h): bf16 weights against
 * activations rounded to bf16, one vdpbf16ps per chunk (16 rows x a k pair)
 * and row of X: twice the multiply rate of the fp32 FMA kernel per
 * instruction, at bf16 activation precision (the precision class of the GPU
 * path).  The f32 path (matmul_avx512.c) is the reference the other
 * backends are checked against.
 * Blocks: up to 4 rows x 4 panels, or 12 rows x 2 (the f32 kernel of
 * matmul_avx512.c also takes 5-8 rows 3 panels at a time). */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/mm_tile.h"

void tpd_bf16_round_avx512bf16(const float *x, int n, uint16_t *out) {
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i *)(out + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
  for (; i < n; i++) out[i] = tpd_f32_to_bf16(x[i]);
}

TPD_INLINE __mmask16 lanes(int n_left) { return n_left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n_left) - 1); }

TPD_INLINE void block(const tpd_mm *p, const char *w, size_t ps, int n, int m, const int MR, const int NR) {
  const uint16_t *xb = p->xb + (size_t)m * p->ldxb;
  const int pf = tpd_mm_pf(p, NR);
  __m512 acc[12][4];
  for (int j = 0; j < MR; j++)
    for (int r = 0; r < NR; r++) acc[j][r] = _mm512_setzero_ps();
  const int K2 = p->Kp / 2; /* xb and the weights are zero padded to Kp */
  for (int kp = 0; kp < K2; kp++, w += 2 * TPD_PANEL * sizeof(uint16_t)) {
    __m512i wv[4];
    if (pf > 0)
      for (int r = 0; r < NR; r++) _mm_prefetch(w + r * ps + pf, _MM_HINT_T0);
    for (int r = 0; r < NR; r++) wv[r] = _mm512_loadu_si512(w + r * ps);
    for (int j = 0; j < MR; j++) {
      int32_t pair;
      memcpy(&pair, xb + (size_t)j * p->ldxb + 2 * kp, sizeof pair);
      const __m512i xv = _mm512_set1_epi32(pair);
      for (int r = 0; r < NR; r++) acc[j][r] = _mm512_dpbf16_ps(acc[j][r], (__m512bh)wv[r], (__m512bh)xv);
    }
  }
  for (int r = 0; r < NR; r++) {
    const int col = n + TPD_PANEL * r;
    if (col >= p->N) break;
    const __mmask16 k = lanes(p->N - col);
    const __m512 b = p->bias ? _mm512_maskz_loadu_ps(k, p->bias + col) : _mm512_setzero_ps();
    for (int j = 0; j < MR; j++) {
      const __m512 v = p->bias ? _mm512_add_ps(acc[j][r], b) : acc[j][r];
      _mm512_mask_storeu_ps(p->y + (size_t)(m + j) * p->ldy + col, k, v);
    }
  }
}

#define MR_CASES4(NR)                                \
  case 1: block(p, w, ps, n, m, 1, NR); break;       \
  case 2: block(p, w, ps, n, m, 2, NR); break;       \
  case 3: block(p, w, ps, n, m, 3, NR); break;       \
  case 4: block(p, w, ps, n, m, 4, NR); break;
#define MR_CASES12(NR)                               \
  MR_CASES4(NR)                                      \
  case 5: block(p, w, ps, n, m, 5, NR); break;       \
  case 6: block(p, w, ps, n, m, 6, NR); break;       \
  case 7: block(p, w, ps, n, m, 7, NR); break;       \
  case 8: block(p, w, ps, n, m, 8, NR); break;       \
  case 9: block(p, w, ps, n, m, 9, NR); break;       \
  case 10: block(p, w, ps, n, m, 10, NR); break;     \
  case 11: block(p, w, ps, n, m, 11, NR); break;     \
  default: block(p, w, ps, n, m, 12, NR); break;

void tpd_mm_avx512bf16(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  if (p->wt != TPD_BF16 || !p->xb) {
    tpd_mm_avx512(p, m0, m1, n0, n1);
    return;
  }
  const size_t ps = (size_t)(p->Kp / 2) * tpd_chunk_bytes(TPD_BF16);
  const int small = m1 - m0 <= 4;
  for (int n = n0; n < n1;) {
    const int left = (n1 - n + TPD_PANEL - 1) / TPD_PANEL;
    const char *w = tpd_panel_ptr(p, n);
    if (small && left >= 4) {
      const int m = m0;
      switch (m1 - m0) { MR_CASES4(4) }
      n += 4 * TPD_PANEL;
    } else if (left >= 2) {
#define BODY2(m_, mr_) { const int m = m_; switch (mr_) { MR_CASES12(2) } }
      TPD_MM_MBLOCKS(m0, m1, 12, BODY2);
#undef BODY2
      n += 2 * TPD_PANEL;
    } else {
#define BODY1(m_, mr_) { const int m = m_; switch (mr_) { MR_CASES12(1) } }
      TPD_MM_MBLOCKS(m0, m1, 12, BODY1);
#undef BODY1
      n += TPD_PANEL;
    }
  }
}
