/* AVX-512F kernel: weights of any dtype widened to fp32, fp32 FMA against
 * fp32 activations; a panel's 16 rows are the 16 lanes, x[m, k] is
 * broadcast (outer products, kernels/cpu/mm_tile.h).  Blocks: up to 4 rows
 * of X against 4 panels (GEMV-like: four weight streams, four independent
 * accumulator chains per row), 5-8 rows against 3 panels (three streams,
 * 24 accumulators: 2-3 % faster than two streams at batch 8 on Zen 5,
 * docs/performance.md "Three panels for 5-8 rows"), or up to 12 rows
 * against 2 panels (the compute-bound shape: 24 accumulators, each weight
 * vector used 12 times). */
#include <immintrin.h>

#include "kernels/cpu/mm_tile.h"

/* The 16 rows of one chunk at k (e) and k + 1 (o), as fp32. */
TPD_INLINE void load_pair(const char *c, tpd_dtype wt, __m512 *e, __m512 *o) {
  if (wt == TPD_BF16) {
    const __m512i v = _mm512_loadu_si512(c);
    *e = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    *o = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
  } else if (wt == TPD_F16) {
    *e = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)c));
    *o = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(c + 32)));
  } else {
    *e = _mm512_loadu_ps(c);
    *o = _mm512_loadu_ps(c + 64);
  }
}


TPD_INLINE __mmask16 lanes(int n_left) { return n_left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n_left) - 1); }

/* y[m .. m+MR, n .. n+16 NR) from the NR panels at w (ps bytes apart):
 * every k pair in ascending order, the odd last k, then the bias.  (Blocks
 * of k, to keep x and W in L1, were measured no faster on the Xeon at
 * hand.) */
TPD_INLINE void block(const tpd_mm *p, const char *w, size_t ps, int n, int m, const int MR, const int NR,
                      const tpd_dtype wt) {
  const size_t cb = tpd_chunk_bytes(wt);
  const int pf = tpd_mm_pf(p, NR);
  const float *x = p->x + (size_t)m * p->ldx;
  __m512 acc[12][4];
  for (int r = 0; r < NR; r++)
    for (int j = 0; j < MR; j++) acc[j][r] = _mm512_setzero_ps();
  const int K2 = p->K / 2;
  for (int kp = 0; kp < K2; kp++, w += cb) {
    __m512 we[4], wo[4];
    if (pf > 0) /* each stream's chunk pf bytes ahead (f32 chunks are two lines) */
      for (int r = 0; r < NR; r++) {
        _mm_prefetch(w + r * ps + pf, _MM_HINT_T0);
        if (cb > 64) _mm_prefetch(w + r * ps + pf + 64, _MM_HINT_T0);
      }
    for (int r = 0; r < NR; r++) load_pair(w + r * ps, wt, &we[r], &wo[r]);
    for (int j = 0; j < MR; j++) {
      const __m512 xe = _mm512_set1_ps(x[(size_t)j * p->ldx + 2 * kp]);
      const __m512 xo = _mm512_set1_ps(x[(size_t)j * p->ldx + 2 * kp + 1]);
      for (int r = 0; r < NR; r++) {
        acc[j][r] = _mm512_fmadd_ps(we[r], xe, acc[j][r]);
        acc[j][r] = _mm512_fmadd_ps(wo[r], xo, acc[j][r]);
      }
    }
  }
  if (p->K & 1) { /* the last k alone (its pair partner is padding) */
    __m512 we[4], wo[4];
    for (int r = 0; r < NR; r++) load_pair(w + r * ps, wt, &we[r], &wo[r]);
    for (int j = 0; j < MR; j++) {
      const __m512 xe = _mm512_set1_ps(x[(size_t)j * p->ldx + 2 * K2]);
      for (int r = 0; r < NR; r++) acc[j][r] = _mm512_fmadd_ps(we[r], xe, acc[j][r]);
    }
    (void)wo;
  }
  for (int r = 0; r < NR; r++) {
    const int col = n + TPD_PANEL * r;
    if (col >= p->N) break;
    const __mmask16 k = lanes(p->N - col);
    const int add = p->bias != NULL;
    const __m512 b = add ? _mm512_maskz_loadu_ps(k, p->bias + col) : _mm512_setzero_ps();
    for (int j = 0; j < MR; j++) {
      const __m512 v = add ? _mm512_add_ps(acc[j][r], b) : acc[j][r];
      _mm512_mask_storeu_ps(p->y + (size_t)(m + j) * p->ldy + col, k, v);
    }
  }
}

#define MR_CASES4(NR, WT)                                  \
  case 1: block(p, wk, ps, n, m, 1, NR, WT); break;         \
  case 2: block(p, wk, ps, n, m, 2, NR, WT); break;         \
  case 3: block(p, wk, ps, n, m, 3, NR, WT); break;         \
  case 4: block(p, wk, ps, n, m, 4, NR, WT); break;
#define MR_CASES7(NR, WT)                                  \
  MR_CASES4(NR, WT)                                        \
  case 5: block(p, wk, ps, n, m, 5, NR, WT); break;         \
  case 6: block(p, wk, ps, n, m, 6, NR, WT); break;         \
  case 7: block(p, wk, ps, n, m, 7, NR, WT); break;
#define MR_CASES8(NR, WT)                                  \
  MR_CASES7(NR, WT)                                        \
  default: block(p, wk, ps, n, m, 8, NR, WT); break;
#define MR_CASES12(NR, WT)                                 \
  MR_CASES7(NR, WT)                                        \
  case 8: block(p, wk, ps, n, m, 8, NR, WT); break;         \
  case 9: block(p, wk, ps, n, m, 9, NR, WT); break;         \
  case 10: block(p, wk, ps, n, m, 10, NR, WT); break;       \
  case 11: block(p, wk, ps, n, m, 11, NR, WT); break;       \
  default: block(p, wk, ps, n, m, 12, NR, WT); break;

/* y[m0:m1, n0:n1]: 4 panels at a time for up to 4 rows, 3 for 5-8 rows
 * (24 accumulators, three weight streams), else 2 panels for blocks of up
 * to 12 rows */
TPD_INLINE void run(const tpd_mm *p, int m0, int m1, int n0, int n1, const tpd_dtype wt) {
  const size_t ps = (size_t)(p->Kp / 2) * tpd_chunk_bytes(wt);
  const int small = m1 - m0 <= 4;
  for (int n = n0; n < n1;) {
    const int left = (n1 - n + TPD_PANEL - 1) / TPD_PANEL; /* panels left */
    const char *wk = tpd_panel_ptr(p, n);
    if (small && left >= 4) {
      const int m = m0;
      switch (m1 - m0) { MR_CASES4(4, wt) }
      n += 4 * TPD_PANEL;
    } else if (m1 - m0 <= 8 && left >= 3) {
#define BODY3(m_, mr_) { const int m = m_; switch (mr_) { MR_CASES8(3, wt) } }
      TPD_MM_MBLOCKS(m0, m1, 8, BODY3);
#undef BODY3
      n += 3 * TPD_PANEL;
    } else if (left >= 2) {
#define BODY2(m_, mr_) { const int m = m_; switch (mr_) { MR_CASES12(2, wt) } }
      TPD_MM_MBLOCKS(m0, m1, 12, BODY2);
#undef BODY2
      n += 2 * TPD_PANEL;
    } else {
#define BODY1(m_, mr_) { const int m = m_; switch (mr_) { MR_CASES12(1, wt) } }
      TPD_MM_MBLOCKS(m0, m1, 12, BODY1);
#undef BODY1
      n += TPD_PANEL;
    }
  }
}

void tpd_mm_avx512(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  switch (p->wt) {
    case TPD_BF16: run(p, m0, m1, n0, n1, TPD_BF16); break;
    case TPD_F16: run(p, m0, m1, n0, n1, TPD_F16); break;
    default: run(p, m0, m1, n0, n1, TPD_F32); break;
  }
}
