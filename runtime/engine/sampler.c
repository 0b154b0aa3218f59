#include "runtime/engine/sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* exponent bins of the top-p pre-filter; smaller probabilities share the last */
#define TPD_SAMPLER_BINS 96

static uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double tpd_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
  uint64_t h = mix64(seed);
  h = mix64(h ^ mix64(stream + 0x632be59bd9b4e019ull));
  h = mix64(h ^ mix64(counter + 0x8cb92ba72f3d8dd7ull));
  return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

size_t tpd_sampler_scratch_bytes(int V) {
  const size_t n = V > 0 ? (size_t)V : 0;
  return n * (sizeof(double) + 2 * sizeof(int32_t) + sizeof(float));
}

void tpd_sampler_scratch_attach(tpd_sampler_scratch *s, void *mem, int V) {
  const size_t n = V > 0 ? (size_t)V : 0;
  s->prob = mem; /* doubles first: mem is 8-byte aligned */
  s->idx = (int32_t *)(s->prob + n);
  s->idx2 = s->idx + n;
  s->tmp = (float *)(s->idx2 + n);
  s->cap = (int)n;
  s->fixed = 1;
}

void tpd_sampler_scratch_free(tpd_sampler_scratch *s) {
  if (!s->fixed) {
    free(s->idx);
    free(s->idx2);
    free(s->prob);
    free(s->tmp);
  }
  memset(s, 0, sizeof *s);
}

static tpd_status reserve(tpd_sampler_scratch *s, int n) {
  if (n <= s->cap) return TPD_OK;
  if (s->fixed)
    return TPD_FAIL(TPD_ERR_INTERNAL, "sampler: a vocabulary of %d tokens exceeds the scratch planned for %d", n,
                    s->cap);
  int32_t *i = realloc(s->idx, sizeof *i * (size_t)n);
  if (i) s->idx = i;
  int32_t *i2 = realloc(s->idx2, sizeof *i2 * (size_t)n);
  if (i2) s->idx2 = i2;
  double *p = realloc(s->prob, sizeof *p * (size_t)n);
  if (p) s->prob = p;
  float *t = realloc(s->tmp, sizeof *t * (size_t)n);
  if (t) s->tmp = t;
  if (!i || !i2 || !p || !t) return TPD_FAIL(TPD_ERR_OOM, "out of memory in the sampler");
  s->cap = n;
  return TPD_OK;
}

/* k-th largest of v[0..n) (1-based k), by quickselect on a copy. */
static float kth_largest(const float *src, int n, int k, float *tmp) {
  for (int i = 0; i < n; i++) tmp[i] = src[i];
  int lo = 0, hi = n - 1, want = k - 1;
  while (lo < hi) {
    const float pivot = tmp[lo + (hi - lo) / 2];
    int i = lo, j = hi;
    while (i <= j) {
      while (tmp[i] > pivot) i++;
      while (tmp[j] < pivot) j--;
      if (i <= j) {
        float t = tmp[i];
        tmp[i] = tmp[j];
        tmp[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else break;
  }
  return tmp[want];
}

/* Token a ranks before token b: higher probability first, equal
 * probabilities by lower id (a total order, so any correct sort gives the
 * same sequence). */
static int before(const double *prob, int32_t a, int32_t b) {
  return prob[a] > prob[b] || (prob[a] == prob[b] && a < b);
}

/* Sorts a[0..n) by `before`, using tmp[n]: insertion sort of runs of 16,
 * then bottom-up merges.  No allocation (glibc's qsort_r mallocs a merge
 * buffer above 1 KB). */
static void sort_desc(int32_t *a, int32_t *tmp, int n, const double *prob) {
  enum { RUN = 16 };
  for (int lo = 0; lo < n; lo += RUN) {
    const int hi = n - lo < RUN ? n : lo + RUN;
    for (int i = lo + 1; i < hi; i++) {
      const int32_t v = a[i];
      int j = i;
      for (; j > lo && before(prob, v, a[j - 1]); j--) a[j] = a[j - 1];
      a[j] = v;
    }
  }
  int32_t *src = a, *dst = tmp;
  for (int w = RUN; w < n; w = w > n / 2 ? n : 2 * w) {
    for (int lo = 0; lo < n; lo += 2 * w) {
      const int mid = n - lo < w ? n : lo + w, hi = n - lo < 2 * w ? n : lo + 2 * w;
      int i = lo, j = mid, k = lo;
      while (i < mid && j < hi) dst[k++] = before(prob, src[j], src[i]) ? src[j++] : src[i++];
      while (i < mid) dst[k++] = src[i++];
      while (j < hi) dst[k++] = src[j++];
    }
    int32_t *t = src;
    src = dst;
    dst = t;
  }
  if (src != a) memcpy(a, src, sizeof *a * (size_t)n);
}

/* Inverse CDF over idx[0..n) with weights prob[idx[i]] summing (in this
 * order) to `mass`.  u < 1, so r < mass and some token is found; should
 * rounding leave r at the end, the last token of nonzero weight is taken,
 * never one that has probability zero. */
static int32_t draw(const int32_t *idx, const double *prob, int n, double mass, double u) {
  const double r = u * mass;
  double acc = 0.0;
  int last = 0;
  for (int i = 0; i < n; i++) {
    const double w = prob[idx[i]];
    if (w > 0) last = i;
    acc += w;
    if (r < acc) return idx[i];
  }
  return idx[last];
}

tpd_status tpd_sample(const float *logits, int V, const tpd_sampling *s, uint64_t stream, uint64_t counter,
                      tpd_sampler_scratch *sc, int32_t *token) {
  if (!logits || !token || V < 1) return TPD_FAIL(TPD_ERR_ARG, "sampler: no logits (V = %d)", V);
  if (s && isnan(s->temperature)) return TPD_FAIL(TPD_ERR_ARG, "sampler: temperature is NaN");
  if (s && !(s->top_p >= 0.0f)) return TPD_FAIL(TPD_ERR_ARG, "sampler: top_p = %g is not >= 0", (double)s->top_p);
  /* a NaN or +inf logit means the forward went wrong: refuse to pick from it */
  for (int v = 0; v < V; v++)
    if (isnan(logits[v]) || logits[v] == INFINITY)
      return TPD_FAIL(TPD_ERR_INTERNAL, "sampler: logit of token %d is %s", v, isnan(logits[v]) ? "NaN" : "+inf");
  if (tpd_sampling_is_greedy(s)) { /* first maximum: the lowest id among equal logits */
    int best = 0;
    for (int v = 1; v < V; v++)
      if (logits[v] > logits[best]) best = v;
    if (logits[best] == -INFINITY) return TPD_FAIL(TPD_ERR_ARG, "sampler: every logit is -inf");
    *token = best;
    return TPD_OK;
  }
  TPD_TRY(reserve(sc, V));
  /* 1. top-k on raw logits (temperature > 0 keeps their order): every token
   *    whose logit is at least the k-th largest survives, so equal logits at
   *    the boundary are all kept */
  float thresh = -INFINITY;
  if (s->top_k > 0 && s->top_k < V) thresh = kth_largest(logits, V, s->top_k, sc->tmp);
  /* 2. softmax(logits / T) over the survivors; -inf logits are never candidates */
  float mx = -INFINITY;
  for (int v = 0; v < V; v++)
    if (logits[v] >= thresh && logits[v] > mx) mx = logits[v];
  if (mx == -INFINITY) return TPD_FAIL(TPD_ERR_ARG, "sampler: every logit is -inf");
  const double invT = 1.0 / s->temperature;
  double total = 0.0;
  int n = 0;
  for (int v = 0; v < V; v++) {
    if (logits[v] >= thresh && logits[v] > -INFINITY) {
      sc->prob[v] = exp(((double)logits[v] - mx) * invT); /* the maximum gives exactly 1 */
      total += sc->prob[v];
      sc->idx[n++] = v;
    } else {
      sc->prob[v] = 0.0;
    }
  }
  const double u = tpd_rng_uniform(s->seed, stream, counter);
  if (!(s->top_p > 0.0f && s->top_p < 1.0f)) {
    /* 3a. no top-p (0 or >= 1): inverse CDF in token order */
    *token = draw(sc->idx, sc->prob, n, total, u);
    return TPD_OK;
  }
  /* 3b. top-p.  Candidates in descending probability (equal: lower id
   * first); token i is in the nucleus when the mass before it is below
   * p * total, so the most likely token always is, and every token tied
   * with the last one taken is taken too (the set does not depend on ids).
   *
   * Only plausible candidates are sorted.  If the tokens of probability >= c
   * hold at least p * total, a token below c comes after all of them, with
   * that much mass before it: it is not in the nucleus.  So the
   * probabilities (the maximum is exactly 1) are binned by binary exponent,
   * bin b = [2^-b, 2^(1-b)), and c is the lower edge of the first bin at
   * which the mass from the top reaches p * total plus 4 n eps * total (a
   * bound on the rounding of sums of n positive terms, so that rounding
   * cannot drop a member).  The dropped tokens all rank below every kept
   * one, so the prefix sums over the kept tokens are those over all. */
  const double target = (double)s->top_p * total;
  const double slack = 4.0 * (double)n * DBL_EPSILON * total;
  double bin_mass[TPD_SAMPLER_BINS + 1] = {0};
  for (int i = 0; i < n; i++) {
    const double q = sc->prob[sc->idx[i]];
    const int b = q > 0 ? -ilogb(q) : TPD_SAMPLER_BINS; /* q in [2^-b, 2^(1-b)) */
    bin_mass[b < TPD_SAMPLER_BINS ? b : TPD_SAMPLER_BINS] += q;
  }
  double cut = 0.0, above = 0.0;
  for (int b = 0; b < TPD_SAMPLER_BINS; b++) {
    above += bin_mass[b];
    if (above >= target + slack) {
      cut = ldexp(1.0, -b);
      break;
    }
  }
  int m = 0;
  for (int i = 0; i < n; i++)
    if (sc->prob[sc->idx[i]] >= cut) sc->idx[m++] = sc->idx[i];
  if (m == 0) return TPD_FAIL(TPD_ERR_INTERNAL, "sampler: top-p pre-filter kept no token");
  sort_desc(sc->idx, sc->idx2, m, sc->prob);
  double cum = 0.0;
  int keep = 0;
  while (keep < m && cum < target) cum += sc->prob[sc->idx[keep++]];
  while (keep < m && sc->prob[sc->idx[keep]] == sc->prob[sc->idx[keep - 1]]) keep++; /* ties at the edge */
  double mass = 0.0;
  for (int i = 0; i < keep; i++) mass += sc->prob[sc->idx[i]];
  *token = draw(sc->idx, sc->prob, keep, mass, u);
  return TPD_OK;
}
