#include "runtime/sampler.h"

#include <math.h>
#include <stdlib.h>

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

void tpd_sampler_scratch_free(tpd_sampler_scratch *s) {
  free(s->idx);
  free(s->prob);
  free(s->tmp);
  s->idx = NULL;
  s->prob = NULL;
  s->tmp = NULL;
  s->cap = 0;
}

static tpd_status reserve(tpd_sampler_scratch *s, int n) {
  if (n <= s->cap) return TPD_OK;
  int32_t *i = realloc(s->idx, sizeof *i * (size_t)n);
  if (i) s->idx = i;
  double *p = realloc(s->prob, sizeof *p * (size_t)n);
  if (p) s->prob = p;
  float *t = realloc(s->tmp, sizeof *t * (size_t)n);
  if (t) s->tmp = t;
  if (!i || !p || !t) return TPD_FAIL(TPD_ERR_OOM, "out of memory in the sampler");
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

static int cmp_desc(const void *a, const void *b, void *ctx) {
  const double *prob = ctx;
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  const double px = prob[x], py = prob[y];
  if (px != py) return px > py ? -1 : 1;
  return x < y ? -1 : x > y; /* ties: lower token id first */
}

tpd_status tpd_sample(const float *logits, int V, const tpd_sampling *s, uint64_t stream, uint64_t counter,
                      tpd_sampler_scratch *sc, int32_t *token) {
  if (tpd_sampling_is_greedy(s)) {
    int best = 0;
    for (int v = 1; v < V; v++)
      if (logits[v] > logits[best]) best = v;
    *token = best;
    return TPD_OK;
  }
  TPD_TRY(reserve(sc, V));
  /* 1. top-k threshold on raw logits (temperature does not change the order) */
  float thresh = -INFINITY;
  if (s->top_k > 0 && s->top_k < V) {
    thresh = kth_largest(logits, V, s->top_k, sc->tmp);
  }
  /* 2. softmax(logits / T) over the survivors */
  float mx = -INFINITY;
  for (int v = 0; v < V; v++)
    if (logits[v] >= thresh && logits[v] > mx) mx = logits[v];
  const double invT = 1.0 / s->temperature;
  double total = 0.0;
  int n = 0;
  for (int v = 0; v < V; v++) {
    if (logits[v] >= thresh && !isnan(logits[v])) {
      sc->prob[v] = exp(((double)logits[v] - mx) * invT);
      total += sc->prob[v];
      sc->idx[n++] = v;
    } else {
      sc->prob[v] = 0.0;
    }
  }
  if (n == 0 || !(total > 0)) return TPD_FAIL(TPD_ERR_INTERNAL, "sampler: no finite logits");
  const double u = tpd_rng_uniform(s->seed, stream, counter);
  /* 3. top-p: the smallest high-probability set whose mass reaches p */
  if (s->top_p > 0.0f && s->top_p < 1.0f) {
    /* a token below (1-p)/(n-1) of the mass can never be inside the nucleus */
    const double cut = (1.0 - s->top_p) / (n > 1 ? n - 1 : 1) * total;
    int m = 0;
    for (int i = 0; i < n; i++)
      if (sc->prob[sc->idx[i]] >= cut) sc->idx[m++] = sc->idx[i];
    qsort_r(sc->idx, (size_t)m, sizeof *sc->idx, cmp_desc, sc->prob);
    double cum = 0.0;
    int keep = 0;
    while (keep < m && cum < s->top_p * total) cum += sc->prob[sc->idx[keep++]];
    if (keep == 0) keep = 1;
    double mass = 0.0;
    for (int i = 0; i < keep; i++) mass += sc->prob[sc->idx[i]];
    const double r = u * mass;
    double acc = 0.0;
    for (int i = 0; i < keep; i++) {
      acc += sc->prob[sc->idx[i]];
      if (r < acc) {
        *token = sc->idx[i];
        return TPD_OK;
      }
    }
    *token = sc->idx[keep - 1];
    return TPD_OK;
  }
  /* 4. inverse CDF in token order */
  const double r = u * total;
  double acc = 0.0;
  for (int i = 0; i < n; i++) {
    acc += sc->prob[sc->idx[i]];
    if (r < acc) {
      *token = sc->idx[i];
      return TPD_OK;
    }
  }
  *token = sc->idx[n - 1];
  return TPD_OK;
}
