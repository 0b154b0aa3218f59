/* AVX2 + FMA attention chunk kernel (kernels/cpu/attention.h): Dh a
 * multiple of 8; the steps of the AVX-512 kernel with 8 lanes, K rows
 * widened once for 2 heads (16 registers), 8 consecutive elements at a
 * time; an item of one or several KV heads (it->nkv), read a KV block at a
 * time. */
#include <immintrin.h>
#include <math.h>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/vexp.h"

TPD_ATT_INLINE __m256 load_row(const void *row, int d, const int bf16) {
  if (bf16)
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + d))), 16));
  return _mm256_loadu_ps((const float *)row + d);
}

/* the four lane sums of a, b, c, d */
TPD_ATT_INLINE __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* scores of rows [j0, j1) of KV head g against its
 * query heads [h0, h0 + NH): the K rows widened once for the NH heads (2 at
 * most: 16 registers), each head's four dot products reduced together and
 * stored as 4 consecutive scores */
TPD_ATT_INLINE void scores(const tpd_att_item *it, int g, int h0, const int NH, const int bf16, int j0, int j1) {
  const int Dh = it->Dh, n = it->n, row_bytes = Dh * (bf16 ? 2 : 4), hq = g * it->G + h0;
  const size_t off = (size_t)g * it->hstride;
  for (int j = j0; j < j1; j += 4) {
    const void *k[4];
    for (int u = 0; u < 4; u++) k[u] = tpd_att_row(it->k, j + u < n ? j + u : n - 1, off); /* the last block repeats its last row */
    /* the rows are scattered over KV blocks: prefetch K TPD_ATT_PREFETCH rows ahead, past
     * the end V's first rows (V is prefetched by the values pass, as it reads) */
    if (h0 == 0)
      for (int u = j + TPD_ATT_PREFETCH; u < j + TPD_ATT_PREFETCH + 4; u++) {
        const char *r = tpd_att_ahead_k(it, u, off);
        if (r)
          for (int b = 0; b < row_bytes; b += 64) _mm_prefetch(r + b, _MM_HINT_T0);
      }
    __m256 acc[2][4];
    for (int h = 0; h < NH; h++)
      for (int u = 0; u < 4; u++) acc[h][u] = _mm256_setzero_ps();
    for (int d = 0; d < Dh; d += 8) {
      __m256 kr[4];
      for (int u = 0; u < 4; u++) kr[u] = load_row(k[u], d, bf16);
      for (int h = 0; h < NH; h++) {
        const __m256 qv = _mm256_loadu_ps(it->q + (size_t)(hq + h) * Dh + d);
        for (int u = 0; u < 4; u++) acc[h][u] = _mm256_fmadd_ps(qv, kr[u], acc[h][u]);
      }
    }
    for (int h = 0; h < NH; h++) {
      const __m128 r = _mm_mul_ps(reduce4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]), _mm_set1_ps(it->scale));
      float *dst = it->s + (hq + h) * TPD_ATT_CHUNK + j;
      if (n - j >= 4) {
        _mm_storeu_ps(dst, r);
      } else {
        float t[4];
        _mm_storeu_ps(t, r);
        for (int u = 0; u < n - j; u++) dst[u] = t[u];
      }
    }
  }
}

static float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

static float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static void softmax_rows(const tpd_att_item *it) {
  const int n = it->n, n8 = n / 8 * 8;
  for (int h = 0; h < it->G * it->nkv; h++) {
    float *sc = it->s + h * TPD_ATT_CHUNK, *part = it->part + (size_t)h * it->stride;
    __m256 mx = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < n8; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(sc + j));
    float m = hmax(mx);
    for (int j = n8; j < n; j++)
      if (sc[j] > m) m = sc[j];
    const __m256 mv = _mm256_set1_ps(m);
    __m256 l = _mm256_setzero_ps();
    for (int j = 0; j < n8; j += 8) {
      const __m256 e = tpd_exp_neg256(_mm256_sub_ps(_mm256_loadu_ps(sc + j), mv));
      _mm256_storeu_ps(sc + j, e);
      l = _mm256_add_ps(l, e);
    }
    float ls = hsum(l);
    for (int j = n8; j < n; j++) {
      sc[j] = expf(sc[j] - m);
      ls += sc[j];
    }
    part[it->Dh] = m;
    part[it->Dh + 1] = ls;
  }
}

/* acc[h][d0 .. d0 + 8 NS) += sum_j w[h][j] v[j][...] over rows [j0, j1) of
 * KV head g for its query heads [h0, h0 + NH), from zero on the first
 * segment, else from the partial; pf: prefetch each row's successor
 * TPD_ATT_PREFETCH rows on (the first call of a segment and KV head) */
TPD_ATT_INLINE void vacc(const tpd_att_item *it, int g, int h0, int d0, const int NH, const int NS, const int bf16,
                         int j0, int j1, int pf) {
  const int hq = g * it->G + h0, row_bytes = it->Dh * (bf16 ? 2 : 4);
  const size_t off = (size_t)g * it->hstride;
  __m256 acc[4][4];
  for (int h = 0; h < NH; h++)
    for (int s = 0; s < NS; s++)
      acc[h][s] = j0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(it->part + (size_t)(hq + h) * it->stride + d0 + 8 * s);
  const float *w = it->s + hq * TPD_ATT_CHUNK;
  for (int j = j0; j < j1; j++) {
    const char *r = pf ? tpd_att_ahead_v(it, j + TPD_ATT_PREFETCH, off, row_bytes) : NULL;
    if (r)
      for (int b = 0; b < row_bytes; b += 64) _mm_prefetch(r + b, _MM_HINT_T0);
    __m256 x[4];
    for (int s = 0; s < NS; s++) x[s] = load_row(tpd_att_row(it->v, j, off), d0 + 8 * s, bf16);
    for (int h = 0; h < NH; h++) {
      const __m256 wh = _mm256_set1_ps(w[h * TPD_ATT_CHUNK + j]);
      for (int s = 0; s < NS; s++) acc[h][s] = _mm256_fmadd_ps(wh, x[s], acc[h][s]);
    }
  }
  for (int h = 0; h < NH; h++)
    for (int s = 0; s < NS; s++) _mm256_storeu_ps(it->part + (size_t)(hq + h) * it->stride + d0 + 8 * s, acc[h][s]);
}

#define VACC_NS(NH, BF)                                      \
  switch (ns) {                                              \
    case 1: vacc(it, g, h0, d0, NH, 1, BF, j0, j1, pf); break;  \
    case 2: vacc(it, g, h0, d0, NH, 2, BF, j0, j1, pf); break;  \
    case 3: vacc(it, g, h0, d0, NH, 3, BF, j0, j1, pf); break;  \
    default: vacc(it, g, h0, d0, NH, 4, BF, j0, j1, pf); break; \
  }

TPD_ATT_INLINE void values(const tpd_att_item *it, const int bf16) {
  const int strips = it->Dh / 8;
  for (int j0 = 0, j1; j0 < it->n; j0 = j1) {
    j1 = tpd_att_seg_end(it, j0);
    for (int g = 0; g < it->nkv; g++)
      for (int h0 = 0; h0 < it->G; h0 += 3) { /* 3 heads x 4 strips: 12 accumulators of 16 registers */
        const int nh = it->G - h0 < 3 ? it->G - h0 : 3;
        for (int s0 = 0; s0 < strips; s0 += 4) {
          const int ns = strips - s0 < 4 ? strips - s0 : 4, d0 = 8 * s0, pf = h0 == 0 && s0 == 0;
          switch (nh) {
            case 1: VACC_NS(1, bf16) break;
            case 2: VACC_NS(2, bf16) break;
            default: VACC_NS(3, bf16) break;
          }
        }
      }
  }
}

void tpd_att_item_avx2(const tpd_att_item *it) {
  for (int j0 = 0, j1; j0 < it->n; j0 = j1) {
    j1 = tpd_att_seg_end(it, j0);
    for (int g = 0; g < it->nkv; g++)
      for (int h0 = 0; h0 < it->G; h0 += 2) {
        const int two = it->G - h0 >= 2;
        if (it->kv == TPD_BF16) two ? scores(it, g, h0, 2, 1, j0, j1) : scores(it, g, h0, 1, 1, j0, j1);
        else two ? scores(it, g, h0, 2, 0, j0, j1) : scores(it, g, h0, 1, 0, j0, j1);
      }
  }
  softmax_rows(it);
  if (it->kv == TPD_BF16) values(it, 1);
  else values(it, 0);
}
