/* AVX2 + FMA + F16C kernel: fp32 FMA, 8 lanes, so a panel's 16 rows are two
 * vectors (kernels/cpu/mm_tile.h).  16 registers: one row of X against 2
 * panels (four independent accumulator chains), or up to 4 rows against
 * 1 panel. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/mm_tile.h"

/* Rows 8h .. 8h+7 of one chunk at k (e) and k + 1 (o), as fp32. */
TPD_INLINE void load_pair8(const char *c, int h, tpd_dtype wt, __m256 *e, __m256 *o) {
  if (wt == TPD_BF16) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)(c + 32 * h));
    *e = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *o = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
  } else if (wt == TPD_F16) {
    *e = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(c + 16 * h)));
    *o = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(c + 32 + 16 * h)));
  } else {
    *e = _mm256_loadu_ps((const float *)c + 8 * h);
    *o = _mm256_loadu_ps((const float *)c + 16 + 8 * h);
  }
}

TPD_INLINE void block(const tpd_mm *p, const char *w, size_t ps, int n, int m, const int MR, const int NR,
                      const tpd_dtype wt) {
  const size_t cb = tpd_chunk_bytes(wt);
  const int pf = tpd_mm_pf(p, NR);
  const float *x = p->x + (size_t)m * p->ldx;
  __m256 acc[4][4]; /* [row][panel half]: NR * 2 <= 4 */
  for (int j = 0; j < MR; j++)
    for (int v = 0; v < 2 * NR; v++) acc[j][v] = _mm256_setzero_ps();
  const int K2 = p->K / 2;
  for (int kp = 0; kp < K2; kp++, w += cb) {
    __m256 we[4], wo[4];
    if (pf > 0) /* each stream's chunk pf bytes ahead (f32 chunks are two lines) */
      for (int r = 0; r < NR; r++) {
        _mm_prefetch(w + r * ps + pf, _MM_HINT_T0);
        if (cb > 64) _mm_prefetch(w + r * ps + pf + 64, _MM_HINT_T0);
      }
    for (int v = 0; v < 2 * NR; v++) load_pair8(w + (v / 2) * ps, v % 2, wt, &we[v], &wo[v]);
    for (int j = 0; j < MR; j++) {
      const __m256 xe = _mm256_set1_ps(x[(size_t)j * p->ldx + 2 * kp]);
      const __m256 xo = _mm256_set1_ps(x[(size_t)j * p->ldx + 2 * kp + 1]);
      for (int v = 0; v < 2 * NR; v++) {
        acc[j][v] = _mm256_fmadd_ps(we[v], xe, acc[j][v]);
        acc[j][v] = _mm256_fmadd_ps(wo[v], xo, acc[j][v]);
      }
    }
  }
  if (p->K & 1) {
    __m256 we[4], wo[4];
    for (int v = 0; v < 2 * NR; v++) load_pair8(w + (v / 2) * ps, v % 2, wt, &we[v], &wo[v]);
    for (int j = 0; j < MR; j++) {
      const __m256 xe = _mm256_set1_ps(x[(size_t)j * p->ldx + 2 * K2]);
      for (int v = 0; v < 2 * NR; v++) acc[j][v] = _mm256_fmadd_ps(we[v], xe, acc[j][v]);
    }
    (void)wo;
  }
  for (int v = 0; v < 2 * NR; v++) {
    const int col = n + 8 * v;
    if (col >= p->N) break;
    const int cnt = p->N - col < 8 ? p->N - col : 8;
    float b[8] = {0};
    if (p->bias) memcpy(b, p->bias + col, sizeof(float) * (size_t)cnt);
    const __m256 bv = _mm256_loadu_ps(b);
    for (int j = 0; j < MR; j++) {
      const __m256 s = p->bias ? _mm256_add_ps(acc[j][v], bv) : acc[j][v];
      float *y = p->y + (size_t)(m + j) * p->ldy + col;
      if (cnt == 8) {
        _mm256_storeu_ps(y, s);
      } else {
        float t[8];
        _mm256_storeu_ps(t, s);
        memcpy(y, t, sizeof(float) * (size_t)cnt);
      }
    }
  }
}

TPD_INLINE void run(const tpd_mm *p, int m0, int m1, int n0, int n1, const tpd_dtype wt) {
  const size_t ps = (size_t)(p->Kp / 2) * tpd_chunk_bytes(wt);
  for (int n = n0; n < n1;) {
    const int left = (n1 - n + TPD_PANEL - 1) / TPD_PANEL;
    const char *w = tpd_panel_ptr(p, n);
    if (m1 - m0 == 1 && left >= 2) {
      block(p, w, ps, n, m0, 1, 2, wt);
      n += 2 * TPD_PANEL;
      continue;
    }
#define BODY(m_, mr_)                                            \
  switch (mr_) {                                                 \
    case 1: block(p, w, ps, n, m_, 1, 1, wt); break;             \
    case 2: block(p, w, ps, n, m_, 2, 1, wt); break;             \
    case 3: block(p, w, ps, n, m_, 3, 1, wt); break;             \
    default: block(p, w, ps, n, m_, 4, 1, wt); break;            \
  }
    TPD_MM_MBLOCKS(m0, m1, 4, BODY);
#undef BODY
    n += TPD_PANEL;
  }
}

void tpd_mm_avx2(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  switch (p->wt) {
    case TPD_BF16: run(p, m0, m1, n0, n1, TPD_BF16); break;
    case TPD_F16: run(p, m0, m1, n0, n1, TPD_F16); break;
    default: run(p, m0, m1, n0, n1, TPD_F32); break;
  }
}
