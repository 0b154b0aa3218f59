/* Checks what tpdecode-bench wrote; exit status is the verdict.
 *   bench_check dir DIR [--configs N] [--predicted] [--comm]
 *       bench.json (parsed with cJSON, fields and their relations),
 *       bench.csv (same column count on every line, the named columns),
 *       pareto.svg (well-formed, required elements, no overlapping texts,
 *       legend samples in the curves' colours, the caption naming what is
 *       measured and what predicted), comm.json (no wrong values, busbw
 *       formula; no bandwidth at one rank)
 *   bench_check jsonl FILE [--configs N]
 *       every line of --json output is a JSON object; N "decode" rows;
 *       "allreduce" rows as in comm.json; "ctx_growth" objects (also in
 *       bench.json) against the decode rows they name
 * Relations every decode row must keep: a measured / floor ratio below 1 is
 * flagged in "fault"; the floor's read bandwidth (best pass) is at least the
 * median pass; host comm time and exposed comm are numbers or null with a
 * reason, exposed = step - step without all-reduces; peak resident memory
 * per rank, the row's figure their largest. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "runtime/base/fileio.h"
#include "tests/bench/svg_check.h"
#include "tests/bench/xml_check.h"

/* dir/name ("." and a path: the path itself), or NULL counted as a failure */
static char *slurp(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (!strcmp(dir, ".")) snprintf(path, sizeof path, "%s", name);
  char *t = NULL;
  size_t n = 0;
  if (tpd_read_text_file(path, &t, &n) != TPD_OK) {
    fprintf(stderr, "bench_check: cannot read %s: %s\n", path, tpd_last_error());
    tu_failures++;
    return NULL;
  }
  return t;
}

static double num(const cJSON *o, const char *k, int *ok) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(v)) {
    *ok = 0;
    return NAN;
  }
  return v->valuedouble;
}

static int near(double a, double b, double rel) { return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)); }

/* a number, or null with a non-empty reason field */
static void num_or_null(const cJSON *o, const char *k, const char *reason_key, int i) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (cJSON_IsNumber(v)) return;
  CHECK(cJSON_IsNull(v), "config %d: %s is neither a number nor null", i, k);
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, reason_key);
  CHECK(cJSON_IsString(r) && r->valuestring[0], "config %d: %s is null without %s", i, k, reason_key);
}

/* peak resident memory: one figure per rank (the first 64), each above zero,
 * and the row's figure their largest */
static void check_rss(const cJSON *c, int i, int tp) {
  int ok = 1;
  const double rss = num(c, "peak_rss_mib", &ok);
  const cJSON *per = cJSON_GetObjectItemCaseSensitive(c, "peak_rss_mib_per_rank");
  CHECK(ok && rss > 0, "config %d: peak_rss_mib is not a positive number", i);
  CHECK(cJSON_IsArray(per) && cJSON_GetArraySize(per) == (tp < 64 ? tp : 64),
        "config %d: peak_rss_mib_per_rank does not hold one value per rank (tp %d)", i, tp);
  double most = 0;
  for (int k = 0; cJSON_IsArray(per) && k < cJSON_GetArraySize(per); k++) {
    const cJSON *v = cJSON_GetArrayItem(per, k);
    CHECK(cJSON_IsNumber(v) && v->valuedouble > 0, "config %d: peak_rss_mib_per_rank[%d]", i, k);
    if (cJSON_IsNumber(v) && v->valuedouble > most) most = v->valuedouble;
  }
  CHECK(most == rss, "config %d: peak_rss_mib %g is not the largest of the ranks' (%g)", i, rss, most);
}

static void check_config(const cJSON *c, int i) {
  int ok = 1;
  check_rss(c, i, (int)num(c, "tp", &ok));
  const double tp = num(c, "tp", &ok), batch = num(c, "batch", &ok), ctx = num(c, "ctx", &ok);
  const double med = num(c, "ms_per_token_median", &ok), p90 = num(c, "ms_per_token_p90", &ok);
  const double user = num(c, "tokens_per_s_user", &ok), sys = num(c, "tokens_per_s_system", &ok);
  const double rank = num(c, "tokens_per_s_rank", &ok);
  const double bpt = num(c, "bytes_per_token", &ok), gbs = num(c, "achieved_gbs", &ok);
  CHECK(ok, "config %d: a required number is missing", i);
  if (!ok) return;
  CHECK(tp >= 1 && batch >= 1 && ctx >= 0, "config %d: tp/batch/ctx out of range", i);
  CHECK(med > 0 && p90 >= med, "config %d: median %g, p90 %g", i, med, p90);
  CHECK(near(user, 1e3 / med, 1e-9), "config %d: tokens/s per user != 1000 / ms", i);
  CHECK(near(sys, batch * user, 1e-9), "config %d: system tokens/s != batch x per user", i);
  CHECK(near(rank, sys / tp, 1e-9), "config %d: tokens/s per rank != system / tp", i);
  CHECK(bpt > 0 && gbs > 0, "config %d: bytes per token / GB/s", i);
  /* host time inside comm calls: a share of the step, or null with a reason */
  num_or_null(c, "host_comm_ms", "host_comm_reason", i);
  num_or_null(c, "comm_bytes_per_step", "host_comm_reason", i);
  const cJSON *hc = cJSON_GetObjectItemCaseSensitive(c, "host_comm_ms");
  if (cJSON_IsNumber(hc))
    CHECK(hc->valuedouble >= 0 && hc->valuedouble <= med * 1.0001, "config %d: host comm %g ms of a %g ms step", i,
          hc->valuedouble, med);
  /* exposed comm: step - step without all-reduces at TP > 1; null with a reason at TP 1 */
  num_or_null(c, "exposed_comm_ms", "exposed_comm_reason", i);
  const cJSON *ex = cJSON_GetObjectItemCaseSensitive(c, "exposed_comm_ms");
  if (tp == 1) CHECK(cJSON_IsNull(ex), "config %d: exposed comm at TP 1 must be null", i);
  if (cJSON_IsNumber(ex)) {
    int ok3 = 1;
    const double without = num(c, "ms_per_token_without_comm", &ok3);
    CHECK(ok3 && near(ex->valuedouble, med - without, 1e-9) , "config %d: exposed %g != %g - %g", i, ex->valuedouble,
          med, without);
  }
  CHECK(cJSON_GetObjectItemCaseSensitive(c, "comm_ms_per_token") == NULL,
        "config %d: comm_ms_per_token (host time mislabelled as exposed) is back", i);
  /* the floor's bandwidth is the best probe pass: never below the median pass */
  const cJSON *rb = cJSON_GetObjectItemCaseSensitive(c, "read_bw_gbs");
  if (cJSON_IsNumber(rb)) {
    int ok4 = 1;
    const double medbw = num(c, "read_bw_median_gbs", &ok4);
    CHECK(ok4 && rb->valuedouble >= medbw, "config %d: floor bandwidth %g below the median pass %g", i,
          rb->valuedouble, medbw);
  }
  /* a measurement faster than the floor is flagged, and only then */
  const cJSON *fault = cJSON_GetObjectItemCaseSensitive(c, "fault");
  CHECK(cJSON_IsNull(fault) || cJSON_IsString(fault), "config %d: fault is neither null nor a string", i);
  const cJSON *ratio_j = cJSON_GetObjectItemCaseSensitive(c, "measured_over_floor");
  const cJSON *best_j = cJSON_GetObjectItemCaseSensitive(c, "measured_best_over_floor");
  if (cJSON_IsNumber(ratio_j)) {
    CHECK(cJSON_IsNumber(best_j), "config %d: measured_over_floor without measured_best_over_floor", i);
    const double lo = cJSON_IsNumber(best_j) && best_j->valuedouble < ratio_j->valuedouble ? best_j->valuedouble
                                                                                            : ratio_j->valuedouble;
    if (lo < 1)
      CHECK(cJSON_IsString(fault) && !strncmp(fault->valuestring, "measured faster than floor", 26),
            "config %d: measured / floor %g (best step %g) < 1 without a fault", i, ratio_j->valuedouble, lo);
    else
      CHECK(cJSON_IsNull(fault), "config %d: fault must be null at measured / floor %g (best step %g)", i,
            ratio_j->valuedouble, lo);
  }
  /* the fastest step: above zero, at most the median */
  const double best = num(c, "ms_per_step_best", &ok);
  CHECK(ok && best > 0 && best <= med, "config %d: best step %g ms, median %g", i, best, med);
  num_or_null(c, "floor_ms_per_token", "floor_reason", i);
  num_or_null(c, "measured_over_floor", "floor_reason", i);
  num_or_null(c, "measured_best_over_floor", "floor_reason", i);
  num_or_null(c, "achieved_gflops", "floor_reason", i);
  num_or_null(c, "fraction_of_peak_flops", "floor_reason", i);
  /* the compute fraction is the floor's flops per measured second over the
   * probe's peak: floor_t_compute / median step time */
  const cJSON *fp = cJSON_GetObjectItemCaseSensitive(c, "fraction_of_peak_flops");
  if (cJSON_IsNumber(fp)) {
    int ok5 = 1;
    const double tc = num(c, "floor_t_compute_ms", &ok5);
    CHECK(ok5 && near(fp->valuedouble, tc / med, 1e-9), "config %d: fraction_of_peak_flops %g != %g / %g", i,
          fp->valuedouble, tc, med);
  }
  num_or_null(c, "energy_j_per_token", "energy_reason", i);
  num_or_null(c, "tokens_per_s_per_w", "energy_reason", i);
  const cJSON *fl = cJSON_GetObjectItemCaseSensitive(c, "floor_ms_per_token");
  if (cJSON_IsNumber(fl)) {
    int ok2 = 1;
    const double ratio = num(c, "measured_over_floor", &ok2);
    CHECK(ok2 && fl->valuedouble > 0 && near(ratio, med / fl->valuedouble, 1e-9), "config %d: measured/floor", i);
    const double rbest = num(c, "measured_best_over_floor", &ok2);
    CHECK(ok2 && near(rbest, best / fl->valuedouble, 1e-9), "config %d: measured_best_over_floor %g != %g / %g", i,
          rbest, best, fl->valuedouble);
    const cJSON *bound = cJSON_GetObjectItemCaseSensitive(c, "floor_bound");
    CHECK(cJSON_IsString(bound) && (!strcmp(bound->valuestring, "memory") || !strcmp(bound->valuestring, "compute")),
          "config %d: floor_bound", i);
  }
}

static int same_str(const cJSON *a, const cJSON *b, const char *k) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, k), *y = cJSON_GetObjectItemCaseSensitive(b, k);
  return cJSON_IsString(x) && cJSON_IsString(y) && !strcmp(x->valuestring, y->valuestring);
}

/* One "ctx_growth" object against the decode rows: it names the smallest
 * and the largest context measured at its batch (and backend, TP), its
 * growths are the differences of those rows' median and best steps, its
 * ratios those over the floor's growth (positive), and its fault is set
 * exactly when a ratio is below 1 (or not a number) or, on a measured
 * floor, the two rows' best probe passes differ by more than 10 %.  Where
 * both rows' floors are memory-bound, the floor's growth is the bytes'
 * growth over the bandwidth named: on a measured floor the better of the
 * two rows' best probe passes. */
static void check_growth(const cJSON *g, const cJSON *const *rows, int n_rows, int k) {
  int ok = 1;
  const double tp = num(g, "tp", &ok), batch = num(g, "batch", &ok), from = num(g, "ctx_from", &ok);
  const double to = num(g, "ctx_to", &ok), gm = num(g, "ms_growth_median", &ok), gb = num(g, "ms_growth_best", &ok);
  const double fg = num(g, "floor_ms_growth", &ok), bw = num(g, "floor_read_bw_gbs", &ok);
  CHECK(ok, "ctx_growth %d: a required number is missing", k);
  if (!ok) return;
  const cJSON *lo = NULL, *hi = NULL;
  double cmin = INFINITY, cmax = -INFINITY;
  for (int i = 0; i < n_rows; i++) {
    int ok2 = 1;
    const double c = num(rows[i], "ctx", &ok2);
    if (!ok2 || num(rows[i], "tp", &ok2) != tp || num(rows[i], "batch", &ok2) != batch || !same_str(rows[i], g, "backend"))
      continue;
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(rows[i], "floor_ms_per_token"))) continue;
    cmin = fmin(cmin, c);
    cmax = fmax(cmax, c);
    if (c == from && !lo) lo = rows[i]; /* the first row of the smallest context, the last of the */
    if (c == to) hi = rows[i];          /* largest, as the bench takes them */
  }
  CHECK(lo && hi && from == cmin && to == cmax && from < to,
        "ctx_growth %d: batch %g, ctx %g -> %g, but the rows with a floor at that batch run from ctx %g to %g", k, batch,
        from, to, cmin, cmax);
  if (!lo || !hi) return;
  const double lm = num(lo, "ms_per_step_median", &ok), hm = num(hi, "ms_per_step_median", &ok);
  const double lb = num(lo, "ms_per_step_best", &ok), hb = num(hi, "ms_per_step_best", &ok);
  CHECK(ok && fabs(gm - (hm - lm)) <= 1e-9 * (hm + lm) && fabs(gb - (hb - lb)) <= 1e-9 * (hb + lb),
        "ctx_growth %d: growth %g / %g ms, the rows' steps %g - %g / %g - %g", k, gm, gb, hm, lm, hb, lb);
  /* a measured floor (the CPU's probe) is on the better of the rows' probes; a --hw one on the preset's */
  const cJSON *hw = cJSON_GetObjectItemCaseSensitive(hi, "floor_hw");
  const int measured = cJSON_IsString(hw) && !strcmp(hw->valuestring, "this machine");
  int okr = 1;
  const double lr = measured ? num(lo, "read_bw_gbs", &okr) : 0, hr = measured ? num(hi, "read_bw_gbs", &okr) : 0;
  CHECK(fg > 0 && bw > 0 && (!measured || (okr && near(bw, fmax(lr, hr), 1e-9))),
        "ctx_growth %d: floor growth %g ms at %g GB/s (rows' probes %g, %g)", k, fg, bw, lr, hr);
  const cJSON *rm = cJSON_GetObjectItemCaseSensitive(g, "ratio_median"), *rb = cJSON_GetObjectItemCaseSensitive(g, "ratio_best");
  const int finite = cJSON_IsNumber(rm) && cJSON_IsNumber(rb);
  if (finite)
    CHECK(near(rm->valuedouble, gm / fg, 1e-9) && near(rb->valuedouble, gb / fg, 1e-9),
          "ctx_growth %d: ratios %g / %g, growths %g / %g over %g", k, rm->valuedouble, rb->valuedouble, gm, gb, fg);
  const cJSON *fault = cJSON_GetObjectItemCaseSensitive(g, "fault");
  const int drift = measured && !(fmax(lr, hr) / fmin(lr, hr) <= 1.10); /* BENCH_GROWTH_DRIFT */
  const int below = !finite || !(rm->valuedouble >= 1) || !(rb->valuedouble >= 1) || drift;
  CHECK(below ? cJSON_IsString(fault) && fault->valuestring[0] : cJSON_IsNull(fault),
        "ctx_growth %d: ratios %g / %g with fault %s", k, finite ? rm->valuedouble : NAN, finite ? rb->valuedouble : NAN,
        cJSON_IsString(fault) ? fault->valuestring : "null");
  const cJSON *bl = cJSON_GetObjectItemCaseSensitive(lo, "floor_bound"), *bh = cJSON_GetObjectItemCaseSensitive(hi, "floor_bound");
  if (cJSON_IsString(bl) && cJSON_IsString(bh) && !strcmp(bl->valuestring, "memory") && !strcmp(bh->valuestring, "memory")) {
    const double by = num(hi, "floor_bytes_per_step", &ok) - num(lo, "floor_bytes_per_step", &ok);
    CHECK(ok && near(fg, by / (bw * 1e9) * 1e3, 1e-6), "ctx_growth %d: floor growth %g ms, the bytes' %g B at %g GB/s",
          k, fg, by, bw);
  }
}

/* the decode rows' growth objects: one per (backend, TP, batch) measured at
 * two contexts or more with a floor, each checked */
static void check_growths(const cJSON *const *rows, int n_rows, const cJSON *const *gs, int n_gs) {
  int want = 0;
  for (int i = 0; i < n_rows; i++) {
    int ok = 1, first = 1, other_ctx = 0;
    const double tp = num(rows[i], "tp", &ok), b = num(rows[i], "batch", &ok), c = num(rows[i], "ctx", &ok);
    if (!ok || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(rows[i], "floor_ms_per_token"))) continue;
    for (int j = 0; j < n_rows; j++) {
      int ok2 = 1;
      if (num(rows[j], "tp", &ok2) != tp || num(rows[j], "batch", &ok2) != b || !same_str(rows[i], rows[j], "backend") ||
          !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(rows[j], "floor_ms_per_token")))
        continue;
      if (j < i) first = 0;
      if (num(rows[j], "ctx", &ok2) != c) other_ctx = 1;
    }
    want += first && other_ctx;
  }
  CHECK(n_gs == want, "%d ctx_growth objects, expected %d (one per batch measured at two contexts or more)", n_gs, want);
  for (int k = 0; k < n_gs; k++) check_growth(gs[k], rows, n_rows, k);
}

/* one all-reduce row: no wrong values; algbw = size / time and the busbw
 * formula with more than one rank; no bandwidth (null, a reason) at one */
static void check_allreduce(const cJSON *r, int k) {
  int ok = 1;
  const double ranks = num(r, "ranks", &ok), wrong = num(r, "wrong", &ok), size = num(r, "size_bytes", &ok);
  const double us = num(r, "time_us", &ok);
  CHECK(ok && wrong == 0, "allreduce row %d: %g wrong values", k, wrong);
  if (!ok) return;
  if (ranks == 1) {
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "algbw_gbs")) &&
              cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "busbw_gbs")),
          "allreduce row %d: a bandwidth at one rank", k);
    const cJSON *why = cJSON_GetObjectItemCaseSensitive(r, "bw_reason");
    CHECK(cJSON_IsString(why) && why->valuestring[0], "allreduce row %d: null bandwidth without bw_reason", k);
    return;
  }
  const double alg = num(r, "algbw_gbs", &ok), bus = num(r, "busbw_gbs", &ok);
  CHECK(ok && near(alg, size / (us * 1e-6) / 1e9, 1e-9), "allreduce row %d: algbw", k);
  CHECK(ok && near(bus, alg * 2 * (ranks - 1) / ranks, 1e-9), "allreduce row %d: busbw", k);
}

static void check_dir(const char *dir, int want_configs, int want_predicted, int want_comm) {
  char *t = slurp(dir, "bench.json");
  if (!t) return;
  cJSON *doc = cJSON_Parse(t);
  free(t);
  CHECK(doc != NULL, "bench.json does not parse");
  if (!doc) return;
  const cJSON *configs = cJSON_GetObjectItemCaseSensitive(doc, "configs");
  CHECK(cJSON_IsArray(configs), "bench.json: no configs array");
  const int n = cJSON_GetArraySize(configs);
  CHECK(want_configs < 0 ? n > 0 : n == want_configs, "bench.json: %d configs, expected %d", n, want_configs);
  int n_front = 0;
  const cJSON *growth = cJSON_GetObjectItemCaseSensitive(doc, "ctx_growth");
  CHECK(cJSON_IsArray(growth), "bench.json: no ctx_growth array");
  if (cJSON_IsArray(growth) && n > 0) {
    const int ng = cJSON_GetArraySize(growth);
    const cJSON **rs = calloc((size_t)n, sizeof *rs), **gs = calloc((size_t)ng + 1, sizeof *gs);
    for (int i = 0; rs && i < n; i++) rs[i] = cJSON_GetArrayItem(configs, i);
    for (int k = 0; gs && k < ng; k++) gs[k] = cJSON_GetArrayItem(growth, k);
    CHECK(rs && gs, "out of memory");
    if (rs && gs) check_growths(rs, n, gs, ng);
    free(rs);
    free(gs);
  }
  for (int i = 0; i < n; i++) {
    const cJSON *c = cJSON_GetArrayItem(configs, i);
    check_config(c, i);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "on_frontier");
    CHECK(cJSON_IsBool(f), "config %d: on_frontier", i);
    n_front += cJSON_IsTrue(f);
  }
  const cJSON *machines = cJSON_GetObjectItemCaseSensitive(doc, "machines");
  CHECK(cJSON_IsArray(machines) && cJSON_GetArraySize(machines) >= 1, "bench.json: machines");
  const cJSON *m0 = cJSON_GetArrayItem(machines, 0);
  const cJSON *en = cJSON_GetObjectItemCaseSensitive(m0, "energy");
  CHECK(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(en, "available")), "machine: energy.available");
  if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(en, "available")))
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(en, "reason")), "machine: energy.reason");
  /* the frontier indices name exactly the configs marked on it */
  const cJSON *pareto = cJSON_GetObjectItemCaseSensitive(doc, "pareto");
  const cJSON *idx = cJSON_GetObjectItemCaseSensitive(pareto, "frontier_config_indices");
  CHECK(cJSON_IsArray(idx) && cJSON_GetArraySize(idx) == n_front && n_front > 0, "pareto: frontier indices");
  for (int k = 0; cJSON_IsArray(idx) && k < cJSON_GetArraySize(idx); k++) {
    const cJSON *v = cJSON_GetArrayItem(idx, k);
    const int j = cJSON_IsNumber(v) ? v->valueint : -1;
    CHECK(j >= 0 && j < n && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(configs, j), "on_frontier")),
          "pareto: index %d", j);
  }
  if (want_predicted) {
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "predicted"), "points");
    CHECK(cJSON_IsArray(pts) && cJSON_GetArraySize(pts) > 0, "bench.json: predicted points");
    for (int k = 0; cJSON_IsArray(pts) && k < cJSON_GetArraySize(pts); k++) {
      int ok = 1;
      const cJSON *p = cJSON_GetArrayItem(pts, k);
      CHECK(num(p, "tokens_per_s_per_w", &ok) > 0 && num(p, "floor_ms_per_token", &ok) > 0 && ok, "predicted %d", k);
    }
  }
  cJSON_Delete(doc);

  /* CSV: one header, n rows, the same number of fields everywhere */
  t = slurp(dir, "bench.csv");
  if (t) {
    int lines = 0, fields0 = -1;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
      int f = 1;
      for (const char *p = line; *p; p++) f += *p == ',';
      if (fields0 < 0) {
        fields0 = f;
        static const char *cols[] = {"host_comm_ms", "exposed_comm_ms", "measured_over_floor", "fault",
                                     "peak_rss_mib_per_rank", "fraction_of_peak_flops", "ms_per_step_best",
                                     "measured_best_over_floor"};
        for (int c = 0; c < 8; c++) CHECK(strstr(line, cols[c]) != NULL, "bench.csv: no %s column", cols[c]);
      }
      CHECK(f == fields0, "bench.csv line %d: %d fields, header has %d", lines + 1, f, fields0);
      lines++;
    }
    CHECK(lines == n + 1, "bench.csv: %d lines for %d configs", lines, n);
    free(t);
  }

  t = slurp(dir, "pareto.svg");
  if (t) {
    char why[256] = "";
    const int bad = xml_check(t, why, sizeof why);
    CHECK(!bad, "pareto.svg is not well-formed: %s", why);
    CHECK(strstr(t, "<svg xmlns=\"http://www.w3.org/2000/svg\"") != NULL, "pareto.svg: svg root");
    CHECK(strstr(t, "<polyline") != NULL && strstr(t, "<circle") != NULL, "pareto.svg: frontier and points");
    CHECK(strstr(t, "tokens/s per user") != NULL, "pareto.svg: x label");
    CHECK(strstr(t, "measured Pareto frontier") != NULL, "pareto.svg: legend");
    if (want_predicted)
      CHECK(strstr(t, "predicted (speed-of-light") != NULL && strstr(t, "stroke-dasharray") != NULL,
            "pareto.svg: the predicted curve");
    CHECK(svg_text_check(t, why, sizeof why) == 0, "pareto.svg: %s", why);
    CHECK(svg_legend_check(t, why, sizeof why) == 0, "pareto.svg: %s", why);
    char *cap = svg_group_text(t, "caption");
    CHECK(cap && strstr(cap, "Measured (") && strstr(cap, " preset "), "pareto.svg: the caption does not say what is measured");
    if (want_predicted)
      CHECK(cap && strstr(cap, "Predicted, not measured"), "pareto.svg: the caption does not say what is predicted");
    free(cap);
    free(t);
  }

  if (want_comm) {
    t = slurp(dir, "comm.json");
    cJSON *a = t ? cJSON_Parse(t) : NULL;
    free(t);
    CHECK(cJSON_IsArray(a), "comm.json does not parse as an array");
    int timed = 0;
    for (int k = 0; cJSON_IsArray(a) && k < cJSON_GetArraySize(a); k++) {
      const cJSON *r = cJSON_GetArrayItem(a, k);
      if (cJSON_GetObjectItemCaseSensitive(r, "skipped")) continue;
      check_allreduce(r, k);
      timed++;
    }
    CHECK(timed > 0, "comm.json: no timed sizes");
    cJSON_Delete(a);
  }
}

static void check_jsonl(const char *path, int want_configs) {
  char *t = slurp(".", path);
  if (!t) return;
  int decode = 0, lines = 0, n_gs = 0;
  cJSON *keep = cJSON_CreateArray(); /* the decode and ctx_growth objects, for check_growths */
  const cJSON *rows[512], *gs[512];
  for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
    cJSON *o = cJSON_Parse(line);
    CHECK(cJSON_IsObject(o), "line %d is not a JSON object: %.60s", lines + 1, line);
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "kind");
    CHECK(cJSON_IsString(kind), "line %d: no kind", lines + 1);
    int kept = 0;
    if (cJSON_IsString(kind) && !strcmp(kind->valuestring, "decode")) {
      check_config(o, decode);
      if (decode < 512) rows[decode] = o, kept = 1;
      decode++;
    }
    if (cJSON_IsString(kind) && !strcmp(kind->valuestring, "ctx_growth") && n_gs < 512) gs[n_gs++] = o, kept = 1;
    if (cJSON_IsString(kind) && !strcmp(kind->valuestring, "allreduce")) check_allreduce(o, lines);
    if (kept) cJSON_AddItemToArray(keep, o);
    else cJSON_Delete(o);
    lines++;
  }
  free(t);
  check_growths(rows, decode < 512 ? decode : 512, gs, n_gs);
  cJSON_Delete(keep);
  CHECK(want_configs < 0 ? decode > 0 : decode == want_configs, "%d decode rows, expected %d", decode, want_configs);
}

/* tpdecode-bench --kernels --json: want rows (matmul and attention), each
 * self-consistent; one model, so every matmul row reads the same bytes and
 * an attention row's bytes grow as batch x (ctx + 1) */
static void check_kernels(const char *path, int want) {
  char *t = slurp(".", path);
  if (!t) return;
  int rows = 0, n_mm = 0, n_att = 0;
  double mm_bytes = 0, att_per = 0;
  for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n"), rows++) {
    cJSON *o = cJSON_Parse(line);
    CHECK(cJSON_IsObject(o), "line %d is not a JSON object: %.60s", rows + 1, line);
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "kind"), *k = cJSON_GetObjectItemCaseSensitive(o, "kernel");
    CHECK(cJSON_IsString(kind) && !strcmp(kind->valuestring, "kernel") && cJSON_IsString(k), "line %d: kind/kernel",
          rows + 1);
    if (!cJSON_IsString(k)) {
      cJSON_Delete(o);
      continue;
    }
    const int mm = !strcmp(k->valuestring, "matmul"), att = !strcmp(k->valuestring, "attention");
    CHECK(mm || att, "line %d: kernel '%s'", rows + 1, k->valuestring);
    int ok = 1;
    const double batch = num(o, "batch", &ok), bytes = num(o, "bytes_per_pass", &ok);
    const double flops = num(o, "flops_per_pass", &ok), best = num(o, "ms_best", &ok), med = num(o, "ms_median", &ok);
    const double rd = num(o, "read_bw_gbs", &ok), rdm = num(o, "read_bw_median_gbs", &ok);
    const double gbs = num(o, "achieved_gbs", &ok), fr = num(o, "fraction_of_read_bw", &ok);
    const double frm = num(o, "fraction_of_read_bw_median", &ok), gfl = num(o, "achieved_gflops", &ok);
    const double frp = num(o, "fraction_of_read_bw_paired", &ok);
    CHECK(ok, "line %d: a required number is missing", rows + 1);
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(o, "ctx");
    CHECK(mm ? cJSON_IsNull(ctx) : cJSON_IsNumber(ctx) && ctx->valuedouble >= 0, "line %d: ctx", rows + 1);
    CHECK(batch >= 1 && bytes > 0 && flops > 0 && best > 0 && med >= best && rd >= rdm && rdm > 0,
          "line %d: batch %g, bytes %g, flops %g, best %g ms, median %g ms, probe %g / %g GB/s", rows + 1, batch, bytes,
          flops, best, med, rd, rdm);
    CHECK(near(gbs, bytes / best / 1e6, 1e-6) && near(fr, gbs / rd, 1e-6) && near(frm, bytes / med / 1e6 / rdm, 1e-6),
          "line %d: GB/s %g, of read %g, median of read %g do not follow from the bytes and times", rows + 1, gbs, fr,
          frm);
    CHECK(near(gfl, flops / best / 1e6, 1e-6), "line %d: GFLOP/s %g != flops / best time", rows + 1, gfl);
    CHECK(frp > 0 && frp < 1e3, "line %d: paired fraction of read %g", rows + 1, frp);
    const cJSON *peak = cJSON_GetObjectItemCaseSensitive(o, "peak_gflops");
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(o, "fraction_of_peak_flops");
    if (cJSON_IsNumber(peak))
      CHECK(cJSON_IsNumber(fp) && near(fp->valuedouble, gfl / peak->valuedouble, 1e-6), "line %d: of peak", rows + 1);
    else CHECK(cJSON_IsNull(peak) && cJSON_IsNull(fp), "line %d: peak / of peak", rows + 1);
    const cJSON *fault = cJSON_GetObjectItemCaseSensitive(o, "fault");
    CHECK(fr > 1 || frp > 1 ? cJSON_IsString(fault) : cJSON_IsNull(fault), "line %d: of read %g, paired %g with fault %s",
          rows + 1, fr, frp, cJSON_IsString(fault) ? fault->valuestring : "null");
    if (mm) {
      if (n_mm++) CHECK(bytes == mm_bytes, "line %d: matmul bytes %g, an earlier row %g", rows + 1, bytes, mm_bytes);
      mm_bytes = bytes;
    } else if (cJSON_IsNumber(ctx)) {
      const double per = bytes / (batch * (ctx->valuedouble + 1));
      if (n_att++) CHECK(near(per, att_per, 1e-12), "line %d: attention bytes per position %g, earlier %g", rows + 1, per, att_per);
      att_per = per;
    }
    cJSON_Delete(o);
  }
  free(t);
  CHECK(n_mm > 0 && n_att > 0, "%d matmul and %d attention rows", n_mm, n_att);
  CHECK(want < 0 || rows == want, "%d kernel rows, expected %d", rows, want);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_check dir DIR [--configs N] [--predicted] [--comm] | jsonl FILE [--configs N] | kernels FILE "
            "[--configs N]\n");
    return 2;
  }
  int want = -1, predicted = 0, comm = 0;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--configs") && i + 1 < argc) want = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--predicted")) predicted = 1;
    else if (!strcmp(argv[i], "--comm")) comm = 1;
    else {
      fprintf(stderr, "bench_check: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (!strcmp(argv[1], "dir")) check_dir(argv[2], want, predicted, comm);
  else if (!strcmp(argv[1], "jsonl")) check_jsonl(argv[2], want);
  else if (!strcmp(argv[1], "kernels")) check_kernels(argv[2], want);
  else return 2;
  if (tu_failures) {
    fprintf(stderr, "bench_check: %d problem(s)\n", tu_failures);
    return 1;
  }
  printf("bench_check: ok (%s)\n", argv[2]);
  return 0;
}
