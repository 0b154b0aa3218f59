/* AVX-512F attention chunk kernel (kernels/cpu/attention.h): Dh a multiple
 * of 32; K and V f32 or bf16 (widened as read), f32 FMA throughout; an item
 * of one or several KV heads (it->nkv), read a KV block at a time.
 * Rows are read 32 elements at a time as two vectors: for bf16 one 64-byte
 * load gives the even elements (a shift) and the odd ones (a mask), one
 * instruction per vector of 16; q is reordered to match once per item, and
 * the V accumulators are put back in order once per item.
 * Scores: four positions at a time, each K row widened once for up to 4
 * heads, the four dot products of a head reduced together; softmax
 * numerator with a vector exp; then the V rows once per group of up to 4
 * heads, accumulators in registers.  Each pass prefetches its own rows
 * TPD_ATT_PREFETCH ahead (one KV block): K in the scores pass, V in the
 * values pass (docs/performance.md, "V prefetched by the values pass"), each
 * on past the item's end (tpd_att_ahead_k, _v). */
#include <immintrin.h>
#include <math.h>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/vexp.h"

/* Elements [32 b, 32 b + 32) of a row as two f32 vectors: bf16, the even and
 * the odd ones; f32, the first and the second 16. */
TPD_ATT_INLINE void load_pair(const void *row, int b, const int bf16, __m512 *lo, __m512 *hi) {
  if (bf16) {
    const __m512i v = _mm512_loadu_si512((const uint16_t *)row + 32 * b);
    *lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    *hi = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
  } else {
    *lo = _mm512_loadu_ps((const float *)row + 32 * b);
    *hi = _mm512_loadu_ps((const float *)row + 32 * b + 16);
  }
}

/* the four lane sums of a, b, c, d */
TPD_ATT_INLINE __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
  __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
  u = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(2, 3, 0, 1)));
  u = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), u));
}

/* scores of rows [j0, j1) of KV head g against its
 * query heads [h0, h0 + NH): the K rows widened once for the NH heads (qd:
 * q in load_pair's order), each head's four dot products reduced together
 * and stored as 4 consecutive scores */
TPD_ATT_INLINE void scores(const tpd_att_item *it, const float *qd, int g, int h0, const int NH, const int bf16, int j0,
                           int j1) {
  const int n = it->n, Dh = it->Dh, NB = Dh / 32, row_bytes = Dh * (bf16 ? 2 : 4), hq = g * it->G + h0;
  const size_t off = (size_t)g * it->hstride;
  for (int j = j0; j < j1; j += 4) {
    const void *k[4];
    for (int u = 0; u < 4; u++) k[u] = tpd_att_row(it->k, j + u < n ? j + u : n - 1, off); /* the last block repeats its last row */
    if (h0 == 0)
      for (int u = j + TPD_ATT_PREFETCH; u < j + TPD_ATT_PREFETCH + 4; u++) {
        const char *r = tpd_att_ahead_k(it, u, off);
        if (r)
          for (int b = 0; b < row_bytes; b += 64) _mm_prefetch(r + b, _MM_HINT_T0);
      }
    __m512 acc[4][4];
    for (int h = 0; h < NH; h++)
      for (int u = 0; u < 4; u++) acc[h][u] = _mm512_setzero_ps();
    for (int b = 0; b < NB; b++) {
      __m512 lo[4], hi[4];
      for (int u = 0; u < 4; u++) load_pair(k[u], b, bf16, &lo[u], &hi[u]);
      for (int h = 0; h < NH; h++) {
        const __m512 ql = _mm512_loadu_ps(qd + (size_t)(hq + h) * Dh + 32 * b);
        const __m512 qh = _mm512_loadu_ps(qd + (size_t)(hq + h) * Dh + 32 * b + 16);
        for (int u = 0; u < 4; u++) {
          acc[h][u] = _mm512_fmadd_ps(ql, lo[u], acc[h][u]);
          acc[h][u] = _mm512_fmadd_ps(qh, hi[u], acc[h][u]);
        }
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

/* scores of each head -> exp(score - m); returns nothing, writes m and l */
static void softmax_rows(const tpd_att_item *it) {
  const int n = it->n;
  for (int h = 0; h < it->G * it->nkv; h++) {
    float *sc = it->s + h * TPD_ATT_CHUNK, *part = it->part + (size_t)h * it->stride;
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < n; j += 16) {
      const __mmask16 k = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
      mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, sc + j));
    }
    const float m = _mm512_reduce_max_ps(mx);
    const __m512 mv = _mm512_set1_ps(m);
    __m512 l = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
      const __mmask16 k = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
      const __m512 e = tpd_exp_neg512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, sc + j), mv));
      _mm512_mask_storeu_ps(sc + j, k, e);
      l = _mm512_add_ps(l, _mm512_maskz_mov_ps(k, e));
    }
    part[it->Dh] = m;
    part[it->Dh + 1] = _mm512_reduce_add_ps(l);
  }
}

/* acc[h][32 b0 .. 32 (b0 + NS)) += sum_j w[h][j] v[j][...] over rows [j0, j1)
 * of KV head g for its query heads [h0, h0 + NH): the sums start at zero on
 * the first segment, else from the partial (kept in load_pair's order until
 * the last segment); bf16 rows: on the last segment each pair of
 * accumulators (even, odd elements) is put back in order as it is stored.
 * pf: prefetch each row's successor TPD_ATT_PREFETCH rows on (the first
 * call of a segment and KV head; the others read the same rows). */
TPD_ATT_INLINE void vacc(const tpd_att_item *it, int g, int h0, int b0, const int NH, const int NS, const int bf16,
                         int j0, int j1, int pf) {
  const int hq = g * it->G + h0, first = j0 == 0, last = j1 == it->n, row_bytes = it->Dh * (bf16 ? 2 : 4);
  const size_t off = (size_t)g * it->hstride;
  __m512 acc[4][4];
  for (int h = 0; h < NH; h++)
    for (int s = 0; s < 2 * NS; s++)
      acc[h][s] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(it->part + (size_t)(hq + h) * it->stride + 32 * b0 + 16 * s);
  const float *w = it->s + hq * TPD_ATT_CHUNK;
  for (int j = j0; j < j1; j++) {
    const char *r = pf ? tpd_att_ahead_v(it, j + TPD_ATT_PREFETCH, off, row_bytes) : NULL;
    if (r)
      for (int b = 0; b < row_bytes; b += 64) _mm_prefetch(r + b, _MM_HINT_T0);
    __m512 x[4];
    for (int s = 0; s < NS; s++) load_pair(tpd_att_row(it->v, j, off), b0 + s, bf16, &x[2 * s], &x[2 * s + 1]);
    for (int h = 0; h < NH; h++) {
      const __m512 wh = _mm512_set1_ps(w[h * TPD_ATT_CHUNK + j]);
      for (int s = 0; s < 2 * NS; s++) acc[h][s] = _mm512_fmadd_ps(wh, x[s], acc[h][s]);
    }
  }
  const __m512i first_half = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i second_half = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int h = 0; h < NH; h++)
    for (int s = 0; s < NS; s++) {
      float *dst = it->part + (size_t)(hq + h) * it->stride + 32 * (b0 + s);
      const __m512 lo = acc[h][2 * s], hi = acc[h][2 * s + 1];
      _mm512_storeu_ps(dst, bf16 && last ? _mm512_permutex2var_ps(lo, first_half, hi) : lo);
      _mm512_storeu_ps(dst + 16, bf16 && last ? _mm512_permutex2var_ps(lo, second_half, hi) : hi);
    }
}

#define VACC_NS(NH, BF)                                                  \
  switch (ns) {                                                          \
    case 1: vacc(it, g, h0, b0, NH, 1, BF, j0, j1, pf); break;           \
    default: vacc(it, g, h0, b0, NH, 2, BF, j0, j1, pf); break;          \
  }

TPD_ATT_INLINE void values(const tpd_att_item *it, const int bf16) {
  const int blocks = it->Dh / 32;
  for (int j0 = 0, j1; j0 < it->n; j0 = j1) {
    j1 = tpd_att_seg_end(it, j0);
    for (int g = 0; g < it->nkv; g++)
      for (int h0 = 0; h0 < it->G; h0 += 4) {
        const int nh = it->G - h0 < 4 ? it->G - h0 : 4;
        for (int b0 = 0; b0 < blocks; b0 += 2) {
          const int ns = blocks - b0 < 2 ? blocks - b0 : 2, pf = h0 == 0 && b0 == 0;
          switch (nh) {
            case 1: VACC_NS(1, bf16) break;
            case 2: VACC_NS(2, bf16) break;
            case 3: VACC_NS(3, bf16) break;
            default: VACC_NS(4, bf16) break;
          }
        }
      }
  }
}

#define SCORES_NH(BF)                                                                 \
  for (int j0 = 0, j1 = tpd_att_seg_end(it, 0); j0 < it->n; j0 = j1, j1 = tpd_att_seg_end(it, j1)) \
    for (int g = 0; g < it->nkv; g++)                                                   \
      for (int h0 = 0; h0 < it->G; h0 += 4) switch (it->G - h0) {                     \
          case 1: scores(it, qd, g, h0, 1, BF, j0, j1); break;                        \
          case 2: scores(it, qd, g, h0, 2, BF, j0, j1); break;                        \
          case 3: scores(it, qd, g, h0, 3, BF, j0, j1); break;                        \
          default: scores(it, qd, g, h0, 4, BF, j0, j1); break;                       \
        }

void tpd_att_item_avx512(const tpd_att_item *it) {
  if (it->kv == TPD_BF16) {
    /* q in load_pair's bf16 order: per 32 elements the even ones, then the odd ones */
    float *qd = it->qd;
    for (int h = 0; h < it->G * it->nkv; h++)
      for (int b = 0; b < it->Dh; b += 32)
        for (int i = 0; i < 16; i++) {
          qd[(size_t)h * it->Dh + b + i] = it->q[(size_t)h * it->Dh + b + 2 * i];
          qd[(size_t)h * it->Dh + b + 16 + i] = it->q[(size_t)h * it->Dh + b + 2 * i + 1];
        }
    SCORES_NH(1)
    softmax_rows(it);
    values(it, 1);
  } else {
    const float *qd = it->q;
    SCORES_NH(0)
    softmax_rows(it);
    values(it, 0);
  }
}
