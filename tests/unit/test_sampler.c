/* The sampler (runtime/engine/sampler.c) against an independent float64 reference
 * of the distribution it must draw from: softmax(logits / T), then top-k
 * (every logit >= the k-th largest), then the top-p nucleus (tokens whose
 * preceding mass in descending order is below p).  Edge cases first (few
 * candidates, ties, top-k 1, top-p 1, temperature near 0, bad input), then a
 * statistical test on fresh random logits: no token outside the nucleus is
 * ever drawn, and every frequency is within a Hoeffding bound of its exact
 * probability. */
#include <math.h>

#include "runtime/engine/sampler.h"
#include "testutil.h"

static tpd_sampler_scratch g_sc;

/* counts[V] of n draws (counter 0..n-1, stream `stream`); -1 if a call failed */
static int draw_counts(const float *logits, int V, const tpd_sampling *s, uint64_t stream, int n, long *counts) {
  for (int v = 0; v < V; v++) counts[v] = 0;
  for (int i = 0; i < n; i++) {
    int32_t tok = -1;
    const tpd_status st = tpd_sample(logits, V, s, stream, (uint64_t)i, &g_sc, &tok);
    if (st != TPD_OK) {
      fprintf(stderr, "tpd_sample failed: %s\n", tpd_last_error());
      return -1;
    }
    if (tok < 0 || tok >= V) return -1;
    counts[tok]++;
  }
  return 0;
}

/* ---- the reference: exact (float64) target distribution ---- */

/* pi[V] = the probability the sampler must give each token; returns the
 * smallest distance between a token's preceding mass and p (how close the
 * nucleus boundary is to being decided by rounding), or INFINITY. */
static double reference(const float *logits, int V, const tpd_sampling *s, double *pi) {
  int *ord = malloc(sizeof(int) * (size_t)V);
  /* descending logit, equal logits by ascending id (insertion sort: small V) */
  for (int i = 0; i < V; i++) {
    int j = i;
    while (j > 0 && (logits[ord[j - 1]] < logits[i] || (logits[ord[j - 1]] == logits[i] && ord[j - 1] > i))) {
      ord[j] = ord[j - 1];
      j--;
    }
    ord[j] = i;
  }
  int n = V; /* survivors of top-k: every logit >= the k-th largest */
  if (s->top_k > 0 && s->top_k < V) {
    const float kth = logits[ord[s->top_k - 1]];
    n = s->top_k;
    while (n < V && logits[ord[n]] == kth) n++;
  }
  while (n > 0 && isinf(logits[ord[n - 1]])) n--; /* -inf never drawn */
  double z = 0;
  for (int v = 0; v < V; v++) pi[v] = 0;
  for (int i = 0; i < n; i++) z += (pi[ord[i]] = exp(((double)logits[ord[i]] - logits[ord[0]]) / s->temperature));
  double margin = INFINITY;
  int keep = n;
  if (s->top_p > 0 && s->top_p < 1) {
    double before = 0;
    keep = 0;
    while (keep < n && before / z < s->top_p) {
      if (fabs(before / z - s->top_p) < margin) margin = fabs(before / z - s->top_p);
      before += pi[ord[keep++]];
    }
    if (keep < n && fabs(before / z - s->top_p) < margin) margin = fabs(before / z - s->top_p);
    while (keep < n && logits[ord[keep]] == logits[ord[keep - 1]]) before += pi[ord[keep++]];
    z = before;
  }
  for (int i = 0; i < n; i++) pi[ord[i]] = i < keep ? pi[ord[i]] / z : 0.0;
  free(ord);
  return margin;
}

/* ---- edge cases ---- */

/* The reported case: a flat distribution and a small p.  P = (0.30, 0.36,
 * 0.34): the nucleus of 0.2 is {1}, and token 0 is the least likely. */
static void test_reported_case(void) {
  const float logits[3] = {0.0f, 0.18232f, 0.12516f};
  tpd_sampling s = {.temperature = 1.0f, .top_p = 0.2f, .seed = 1234};
  long c[3];
  CHECK(draw_counts(logits, 3, &s, 0, 1000, c) == 0);
  CHECK(c[1] == 1000, "top-p 0.2 of (0, 0.18232, 0.12516): token 0 %ld, 1 %ld, 2 %ld of 1000 (want all 1)", c[0],
        c[1], c[2]);
  /* any p in (0, P(1)] gives the same nucleus; p just above P(1) adds token 2 */
  const double p1 = exp(0.18232) / (1 + exp(0.18232) + exp(0.12516));
  const float ps[4] = {1e-6f, 0.01f, 0.1f, (float)p1 - 1e-4f};
  for (int i = 0; i < 4; i++) {
    s.top_p = ps[i];
    CHECK(draw_counts(logits, 3, &s, 1, 500, c) == 0);
    CHECK(c[1] == 500, "top-p %g: drew %ld, %ld, %ld", (double)ps[i], c[0], c[1], c[2]);
  }
  s.top_p = (float)p1 + 1e-3f;
  CHECK(draw_counts(logits, 3, &s, 2, 2000, c) == 0);
  CHECK(c[0] == 0 && c[1] > 0 && c[2] > 0, "top-p %g: drew %ld, %ld, %ld (want tokens 1 and 2)", (double)s.top_p,
        c[0], c[1], c[2]);
}

static void test_few_candidates(void) {
  long c[4];
  /* one token: every setting draws it */
  const float one[1] = {-3.5f};
  const tpd_sampling settings[4] = {{.temperature = 1.0f, .seed = 1},
                                    {.temperature = 0.5f, .top_p = 0.01f, .seed = 2},
                                    {.temperature = 2.0f, .top_k = 5, .seed = 3},
                                    {.temperature = 1e-20f, .top_k = 1, .top_p = 0.5f, .seed = 4}};
  for (int i = 0; i < 4; i++) {
    CHECK(draw_counts(one, 1, &settings[i], 0, 200, c) == 0);
    CHECK(c[0] == 200, "V = 1, setting %d", i);
  }
  /* two tokens, -inf on the other: never drawn at any temperature */
  const float two[2] = {-INFINITY, 0.25f};
  tpd_sampling hot = {.temperature = 1e30f, .seed = 5};
  CHECK(draw_counts(two, 2, &hot, 0, 500, c) == 0);
  CHECK(c[0] == 0 && c[1] == 500, "a -inf logit was drawn %ld times", c[0]);
  hot.top_p = 0.999f;
  CHECK(draw_counts(two, 2, &hot, 0, 500, c) == 0);
  CHECK(c[0] == 0 && c[1] == 500, "a -inf logit was drawn %ld times under top-p", c[0]);
  /* four tokens with -inf among them and a huge temperature: uniform over the finite ones */
  const float four[4] = {-INFINITY, 0.0f, 5.0f, -INFINITY};
  CHECK(draw_counts(four, 4, &hot, 1, 4000, c) == 0);
  CHECK(c[0] == 0 && c[3] == 0 && labs(c[1] - 2000) < 200, "T = 1e30: drew %ld %ld %ld %ld", c[0], c[1], c[2], c[3]);
}

static void test_ties(void) {
  long c[8];
  /* greedy and top-k 1: the lowest id among equal maxima */
  const float t3[3] = {1.0f, 3.0f, 3.0f};
  tpd_sampling g = {0};
  CHECK(draw_counts(t3, 3, &g, 0, 10, c) == 0 && c[1] == 10, "greedy tie: %ld %ld %ld", c[0], c[1], c[2]);
  tpd_sampling k1 = {.temperature = 1.0f, .top_k = 1, .seed = 9};
  CHECK(draw_counts(t3, 3, &k1, 0, 50, c) == 0 && c[1] == 50, "top-k 1 tie: %ld %ld %ld", c[0], c[1], c[2]);
  /* top-k 2 with a tie at the 2nd logit: all three tied-or-above survive, token 3 never */
  const float k4[4] = {3.0f, 2.0f, 2.0f, 1.0f};
  tpd_sampling k2 = {.temperature = 1.0f, .top_k = 2, .seed = 10};
  CHECK(draw_counts(k4, 4, &k2, 0, 6000, c) == 0);
  CHECK(c[3] == 0 && c[1] > 0 && c[2] > 0, "top-k 2 over (3,2,2,1): %ld %ld %ld %ld", c[0], c[1], c[2], c[3]);
  /* a flat distribution with a small p: every token is tied with the most
   * likely one, so the nucleus is all of them (it does not depend on ids) */
  const float flat[5] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  tpd_sampling p3 = {.temperature = 0.8f, .top_p = 0.3f, .seed = 11};
  CHECK(draw_counts(flat, 5, &p3, 0, 10000, c) == 0);
  for (int v = 0; v < 5; v++) CHECK(labs(c[v] - 2000) < 250, "flat, top-p 0.3: token %d drawn %ld of 10000", v, c[v]);
  /* the boundary on a tie: P ~ (0.534, 0.197, 0.197, 0.072), p = 0.6: tokens
   * 1 and 2 tie, so both are in the nucleus, and token 3 is not */
  const float b4[4] = {2.0f, 1.0f, 1.0f, 0.0f};
  tpd_sampling p6 = {.temperature = 1.0f, .top_p = 0.6f, .seed = 12};
  CHECK(draw_counts(b4, 4, &p6, 0, 20000, c) == 0);
  CHECK(c[3] == 0, "token 3 is outside the nucleus but was drawn %ld times", c[3]);
  CHECK(c[2] > 3000 && labs(c[1] - c[2]) < 600, "tied tokens 1, 2 drawn %ld and %ld times", c[1], c[2]);
}

static void test_top_p_one_and_cold(void) {
  long c[6], d[6];
  /* top-p 1 is the same as no top-p, draw for draw */
  const float l6[6] = {1.0f, 2.0f, 0.5f, 2.0f, -1.0f, 0.0f};
  tpd_sampling off = {.temperature = 0.7f, .seed = 42}, one = off;
  one.top_p = 1.0f;
  CHECK(draw_counts(l6, 6, &off, 3, 3000, c) == 0 && draw_counts(l6, 6, &one, 3, 3000, d) == 0);
  CHECK(!memcmp(c, d, sizeof c), "top-p 1.0 differs from top-p off");
  CHECK(c[4] > 0, "top-p 1.0 never drew token 4 (P = 0.013) in 3000 draws");
  /* temperature near 0: the maximum only, or an even split between equal maxima */
  const float near[4] = {0.1f, 0.1001f, -2.0f, 0.0999f};
  const float temps[3] = {1e-6f, 1e-20f, 1e-38f};
  for (int i = 0; i < 3; i++) {
    tpd_sampling cold = {.temperature = temps[i], .top_p = 0.9f, .seed = 13};
    CHECK(draw_counts(near, 4, &cold, 0, 500, c) == 0 && c[1] == 500, "T = %g: drew %ld %ld %ld %ld",
          (double)temps[i], c[0], c[1], c[2], c[3]);
    cold.top_p = 0;
    CHECK(draw_counts(near, 4, &cold, 0, 500, c) == 0 && c[1] == 500, "T = %g, no top-p", (double)temps[i]);
  }
  const float two_max[3] = {4.0f, -1.0f, 4.0f};
  tpd_sampling cold = {.temperature = 1e-30f, .top_p = 0.3f, .seed = 14};
  CHECK(draw_counts(two_max, 3, &cold, 0, 4000, c) == 0);
  CHECK(c[1] == 0 && labs(c[0] - 2000) < 250, "T = 1e-30 over equal maxima: %ld %ld %ld", c[0], c[1], c[2]);
}

static void test_bad_input(void) {
  float l[4] = {0.5f, 1.0f, -1.0f, 2.0f};
  int32_t tok = -7;
  tpd_sampling ok = {.temperature = 1.0f, .top_p = 0.9f, .seed = 1}, greedy = {0};
  l[2] = NAN;
  CHECK(tpd_sample(l, 4, &ok, 0, 0, &g_sc, &tok) != TPD_OK && strstr(tpd_last_error(), "NaN"), "a NaN logit: %s",
        tpd_last_error());
  CHECK(tpd_sample(l, 4, &greedy, 0, 0, &g_sc, &tok) != TPD_OK, "a NaN logit, greedy, gave token %d", tok);
  l[2] = INFINITY;
  CHECK(tpd_sample(l, 4, &ok, 0, 0, &g_sc, &tok) != TPD_OK && strstr(tpd_last_error(), "+inf"), "a +inf logit: %s",
        tpd_last_error());
  const float none[3] = {-INFINITY, -INFINITY, -INFINITY};
  CHECK(tpd_sample(none, 3, &ok, 0, 0, &g_sc, &tok) == TPD_ERR_ARG, "every logit -inf");
  CHECK(tpd_sample(none, 3, &greedy, 0, 0, &g_sc, &tok) == TPD_ERR_ARG, "every logit -inf, greedy");
  const float fine[2] = {0.0f, 1.0f};
  tpd_sampling bad = ok;
  bad.temperature = NAN;
  CHECK(tpd_sample(fine, 2, &bad, 0, 0, &g_sc, &tok) == TPD_ERR_ARG && strstr(tpd_last_error(), "temperature"),
        "NaN temperature: %s", tpd_last_error());
  bad = ok;
  bad.top_p = -0.5f;
  CHECK(tpd_sample(fine, 2, &bad, 0, 0, &g_sc, &tok) == TPD_ERR_ARG && strstr(tpd_last_error(), "top_p"),
        "negative top_p: %s", tpd_last_error());
  bad.top_p = NAN;
  CHECK(tpd_sample(fine, 2, &bad, 0, 0, &g_sc, &tok) == TPD_ERR_ARG, "NaN top_p");
  CHECK(tpd_sample(fine, 0, &ok, 0, 0, &g_sc, &tok) == TPD_ERR_ARG, "V = 0");
}

/* ---- the statistical test ----
 * R cases of fresh random logits and settings, N draws each.  For a token of
 * exact probability pi, the frequency f of N independent draws satisfies
 * P(|f - pi| >= t) <= 2 exp(-2 N t^2) (Hoeffding).  Over at most R * Vmax
 * tokens, t = sqrt(ln(2 R Vmax / alpha) / (2 N)) makes the chance that a
 * correct sampler fails at most alpha = 1e-6.  Independently of that bound,
 * a token outside the nucleus (pi = 0) must never be drawn. */
enum { R_CASES = 40, N_DRAWS = 50000, V_MAX = 48 };

static void test_statistics(void) {
  const double alpha = 1e-6;
  const double t = sqrt(log(2.0 * R_CASES * V_MAX / alpha) / (2.0 * N_DRAWS));
  float logits[V_MAX];
  double pi[V_MAX];
  long c[V_MAX];
  double worst = 0;
  int redrawn = 0, outside_total = 0, nucleus_sizes = 0;
  for (int r = 0; r < R_CASES; r++) {
    tpd_sampling s;
    int V;
    double margin;
    do {
      V = tu_int(2, V_MAX);
      s = (tpd_sampling){.temperature = (float)tu_uniform(0.3, 2.0), .seed = tu_next()};
      s.top_k = tu_int(0, 2) == 0 ? tu_int(2, V) : 0;
      const int kind = tu_int(0, 3);
      s.top_p = kind == 0 ? 1.0f : kind == 1 ? (float)tu_uniform(0.005, 0.3) : (float)tu_uniform(0.3, 0.99);
      double spread = r % 3 == 1 ? 0.3 : 6.0;
      if (r % 3 == 0) {
        /* nearly flat (every P within 1% of 1/n) with p < 1/n: where a
         * pre-filter that assumes members hold more than (1 - p)/(n - 1)
         * drops the whole nucleus (here the single most likely token) */
        spread = 0.004 * s.temperature;
        s.top_k = 0;
        s.top_p = (float)(tu_uniform(0.1, 0.9) / V);
      }
      for (int v = 0; v < V; v++) logits[v] = (float)tu_uniform(-spread, spread);
      margin = reference(logits, V, &s, pi);
      /* a boundary within 1e-9 of p is decided by rounding: draw again */
    } while (margin < 1e-9 && ++redrawn);
    if (draw_counts(logits, V, &s, (uint64_t)r, N_DRAWS, c) != 0) {
      CHECK(0, "case %d: the sampler failed", r);
      continue;
    }
    int outside = 0, in = 0;
    double dev = 0;
    for (int v = 0; v < V; v++) {
      if (pi[v] == 0) outside += c[v];
      in += pi[v] > 0;
      const double d = fabs((double)c[v] / N_DRAWS - pi[v]);
      if (d > dev) dev = d;
    }
    nucleus_sizes += in;
    outside_total += outside;
    if (dev > worst) worst = dev;
    CHECK(outside == 0, "case %d (V %d, T %.3f, top-k %d, top-p %.4f): %d draws outside the nucleus of %d", r, V,
          (double)s.temperature, s.top_k, (double)s.top_p, outside, in);
    CHECK(dev <= t, "case %d (V %d, T %.3f, top-k %d, top-p %.4f): frequency off by %.4f > bound %.4f", r, V,
          (double)s.temperature, s.top_k, (double)s.top_p, dev, t);
  }
  printf("statistics: %d cases x %d draws, mean nucleus %.1f tokens, max |freq - p| %.4f (bound %.4f, alpha %g), "
         "%d outside the nucleus, %d cases redrawn\n",
         R_CASES, N_DRAWS, nucleus_sizes / (double)R_CASES, worst, t, alpha, outside_total, redrawn);
}

static int cmp_desc_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x > y ? -1 : x < y;
}

/* A large vocabulary, where the pre-filter does real work: every draw is
 * in the exact nucleus, and the nucleus's top tokens come up. */
static void test_large_vocab(void) {
  const int V = 20000, n = 1000;
  float *logits = malloc(sizeof(float) * (size_t)V);
  double *pi = malloc(sizeof(double) * (size_t)V);
  long *c = malloc(sizeof(long) * (size_t)V);
  for (int v = 0; v < V; v++) logits[v] = (float)(tu_uniform(-3, 3) + tu_uniform(-3, 3));
  tpd_sampling s = {.temperature = 0.9f, .top_p = 0.8f, .seed = tu_next()};
  /* reference() sorts by insertion, O(V^2): here the probabilities are sorted with qsort */
  int ok_margin = 1, outside = 0, members = 0;
  {
    double z = 0, mx = -INFINITY;
    for (int v = 0; v < V; v++)
      if (logits[v] > mx) mx = logits[v];
    for (int v = 0; v < V; v++) z += (pi[v] = exp((logits[v] - mx) / s.temperature));
    /* token v is a member iff the mass of tokens above it is below p */
    double *sorted = malloc(sizeof(double) * (size_t)V);
    for (int v = 0; v < V; v++) sorted[v] = pi[v];
    qsort(sorted, (size_t)V, sizeof *sorted, cmp_desc_double);
    double before = 0, pmin = INFINITY;
    for (int i = 0; i < V && before / z < s.top_p; i++) {
      if (fabs(before / z - s.top_p) < 1e-9) ok_margin = 0;
      before += sorted[i];
      pmin = sorted[i];
    }
    if (fabs(before / z - s.top_p) < 1e-9) ok_margin = 0; /* the first token left out */
    for (int v = 0; v < V; v++) {
      pi[v] = pi[v] >= pmin ? 1 : 0;
      members += pi[v] > 0;
    }
    free(sorted);
  }
  if (ok_margin && draw_counts(logits, V, &s, 77, n, c) == 0) {
    for (int v = 0; v < V; v++)
      if (pi[v] == 0) outside += c[v];
    CHECK(outside == 0, "V = %d, top-p 0.8: %d of %d draws outside the nucleus of %d", V, outside, n, members);
    printf("large vocab: V %d, nucleus %d tokens, %d draws, %d outside\n", V, members, n, outside);
  } else if (!ok_margin) {
    printf("large vocab: skipped, the nucleus boundary is within 1e-9 of p (decided by rounding)\n");
  }
  free(logits), free(pi), free(c);
}

int main(void) {
  tu_seed("test_sampler");
  test_reported_case();
  test_few_candidates();
  test_ties();
  test_top_p_one_and_cold();
  test_bad_input();
  test_statistics();
  test_large_vocab();
  tpd_sampler_scratch_free(&g_sc);
  return tu_finish("test_sampler");
}
