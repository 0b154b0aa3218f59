/* tpdecode-bench --plot-serving FILE[,FILE...] --out-dir DIR: the serving
 * benchmark's rows (launch/tools/serve_bench.py, serve_bench.json) on the
 * latency/throughput Pareto plot, DIR/serving.svg.
 *
 * Each file is one sweep (one server, e.g. TP 1 or TP 2): its rows, one per
 * arrival rate, are markers labelled by the rate and joined in the file's
 * order; the grey band is the Pareto frontier over every file's rows.
 *   x: tokens/s per user, the median over requests of 1 / TPOT (tok_s_user_p50)
 *   y: system output tokens/s (tok_s_sys), or tokens/s per W when every row
 *      has tok_s_w (the client reads no energy: it writes null, and then the
 *      plot says so).
 * A file of another kind or version, a row without a finite positive x or y,
 * or a tok_s_w that is neither null nor a finite positive number is an error
 * naming the file, the row and the field. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/bench/bench.h"
#include "launch/tools/pareto.h"
#include "launch/tools/plot_svg.h"

#define SP_MAX_FILES 8
#define SP_MAX_ROWS 64 /* rows per file */

typedef struct {
  char label[64], model[64], date[32];
  int n;
  double x[SP_MAX_ROWS], y_sys[SP_MAX_ROWS], y_w[SP_MAX_ROWS];
  int have_w[SP_MAX_ROWS];
  char rate[SP_MAX_ROWS][24];
} sp_file;

static tpd_status read_text(const char *path, char **out) {
  FILE *f = fopen(path, "rb");
  if (!f) return TPD_FAIL(TPD_ERR_IO, "--plot-serving: cannot open '%s'", path);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    n += fread(buf + n, 1, cap - 1 - n, f);
    if (n < cap - 1) break;
    char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
    if (!nb) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = nb, cap *= 2;
  }
  const int err = ferror(f);
  fclose(f);
  if (!buf) return TPD_FAIL(TPD_ERR_IO, "--plot-serving: '%s' is too large (64 MiB at most) or memory is short", path);
  if (err) {
    free(buf);
    return TPD_FAIL(TPD_ERR_IO, "--plot-serving: error reading '%s'", path);
  }
  buf[n] = 0;
  *out = buf;
  return TPD_OK;
}

/* a finite number > 0 in field `name` of row i */
static tpd_status positive(const char *path, int i, const cJSON *row, const char *name, double *v) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(row, name);
  if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble <= 0)
    return TPD_FAIL(TPD_ERR_FORMAT, "--plot-serving: '%s' row %d: %s is %s (expected a finite number > 0)", path, i,
                    name, !it ? "missing" : cJSON_IsNull(it) ? "null" : cJSON_IsNumber(it) ? "not > 0" : "not a number");
  *v = it->valuedouble;
  return TPD_OK;
}

static tpd_status parse_file(const char *path, const char *text, sp_file *f) {
  memset(f, 0, sizeof *f);
  cJSON *doc = cJSON_Parse(text);
  if (!doc) return TPD_FAIL(TPD_ERR_FORMAT, "--plot-serving: '%s' is not JSON", path);
  tpd_status st = TPD_OK;
  const cJSON *kind = cJSON_GetObjectItemCaseSensitive(doc, "kind");
  const cJSON *ver = cJSON_GetObjectItemCaseSensitive(doc, "version");
  const cJSON *rows = cJSON_GetObjectItemCaseSensitive(doc, "rows");
  const cJSON *label = cJSON_GetObjectItemCaseSensitive(doc, "label");
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(doc, "model");
  const cJSON *date = cJSON_GetObjectItemCaseSensitive(doc, "date");
  if (!cJSON_IsString(kind) || strcmp(kind->valuestring, "tpdecode-serve-bench")) {
    st = TPD_FAIL(TPD_ERR_FORMAT, "--plot-serving: '%s' is not a serve_bench.py file (\"kind\" is not "
                  "\"tpdecode-serve-bench\")", path);
    goto done;
  }
  if (!cJSON_IsNumber(ver) || ver->valuedouble != 1) {
    st = TPD_FAIL(TPD_ERR_FORMAT, "--plot-serving: '%s': version is not 1 (the only one this build reads)", path);
    goto done;
  }
  if (!cJSON_IsArray(rows) || cJSON_GetArraySize(rows) < 1 || cJSON_GetArraySize(rows) > SP_MAX_ROWS) {
    st = TPD_FAIL(TPD_ERR_FORMAT, "--plot-serving: '%s': \"rows\" is not an array of 1 to %d rows", path, SP_MAX_ROWS);
    goto done;
  }
  snprintf(f->label, sizeof f->label, "%s", cJSON_IsString(label) ? label->valuestring : path);
  snprintf(f->model, sizeof f->model, "%s", cJSON_IsString(model) ? model->valuestring : "?");
  snprintf(f->date, sizeof f->date, "%.10s", cJSON_IsString(date) ? date->valuestring : "");
  const cJSON *row;
  cJSON_ArrayForEach(row, rows) {
    const int i = f->n;
    if ((st = positive(path, i, row, "tok_s_user_p50", &f->x[i])) != TPD_OK) goto done;
    if ((st = positive(path, i, row, "tok_s_sys", &f->y_sys[i])) != TPD_OK) goto done;
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(row, "tok_s_w");
    if (!w) {
      st = TPD_FAIL(TPD_ERR_FORMAT, "--plot-serving: '%s' row %d: tok_s_w is missing (null when energy is not read)",
                    path, i);
      goto done;
    }
    if (!cJSON_IsNull(w)) {
      if ((st = positive(path, i, row, "tok_s_w", &f->y_w[i])) != TPD_OK) goto done;
      f->have_w[i] = 1;
    }
    const cJSON *rate = cJSON_GetObjectItemCaseSensitive(row, "rate");
    if (cJSON_IsString(rate) && !strcmp(rate->valuestring, "inf")) snprintf(f->rate[i], sizeof f->rate[0], "inf");
    else if (cJSON_IsNumber(rate) && isfinite(rate->valuedouble) && rate->valuedouble > 0)
      snprintf(f->rate[i], sizeof f->rate[0], "%g/s", rate->valuedouble);
    else {
      st = TPD_FAIL(TPD_ERR_FORMAT, "--plot-serving: '%s' row %d: rate is not a number > 0 or \"inf\"", path, i);
      goto done;
    }
    f->n++;
  }
done:
  cJSON_Delete(doc);
  return st;
}

tpd_status bench_plot_serving(const char *files, const char *out_dir) {
  static sp_file fs[SP_MAX_FILES];
  int nf = 0;
  char list[4096];
  if (snprintf(list, sizeof list, "%s", files) >= (int)sizeof list)
    return TPD_FAIL(TPD_ERR_ARG, "--plot-serving: the list of files is too long");
  for (char *save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
    if (nf == SP_MAX_FILES) return TPD_FAIL(TPD_ERR_ARG, "--plot-serving: at most %d files", SP_MAX_FILES);
    char *text = NULL;
    TPD_TRY(read_text(p, &text));
    const tpd_status st = parse_file(p, text, &fs[nf]);
    free(text);
    TPD_TRY(st);
    nf++;
  }
  if (!nf) return TPD_FAIL(TPD_ERR_ARG, "--plot-serving '%s': no file named", files);
  int use_w = 1;
  for (int k = 0; k < nf; k++)
    for (int i = 0; i < fs[k].n; i++) use_w &= fs[k].have_w[i];

  static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#7f7f7f"};
  tpd_plot_series se[2 * SP_MAX_FILES + 1];
  static double ys[SP_MAX_FILES][SP_MAX_ROWS];
  static const char *labs[SP_MAX_FILES][SP_MAX_ROWS];
  static char names[SP_MAX_FILES][200];
  double ax[SP_MAX_FILES * SP_MAX_ROWS], ay[SP_MAX_FILES * SP_MAX_ROWS], fx[SP_MAX_FILES * SP_MAX_ROWS],
      fy[SP_MAX_FILES * SP_MAX_ROWS];
  int idx[SP_MAX_FILES * SP_MAX_ROWS], na = 0, ns = 0;
  for (int k = 0; k < nf; k++) {
    sp_file *f = &fs[k];
    for (int i = 0; i < f->n; i++) {
      ys[k][i] = use_w ? f->y_w[i] : f->y_sys[i];
      labs[k][i] = f->rate[i];
      ax[na] = f->x[i], ay[na++] = ys[k][i];
    }
    if (snprintf(names[k], sizeof names[0], "%s: model %s, %s (labels: arrival rate, requests/s)", f->label, f->model,
                 f->date) >= (int)sizeof names[0])
      memcpy(names[k] + sizeof names[0] - 4, "...", 4); /* a long legend is cut, visibly */
    se[ns++] = (tpd_plot_series){names[k], f->x, ys[k], labs[k], f->n, TPD_PLOT_POINTS, (tpd_plot_marker)(k % 3),
                                 colors[k % 8]};
    if (f->n > 1)
      se[ns++] = (tpd_plot_series){NULL, f->x, ys[k], NULL, f->n, TPD_PLOT_LINE, TPD_MARK_CIRCLE, colors[k % 8]};
  }
  const int nfront = tpd_pareto_frontier(ax, ay, na, idx);
  for (int i = 0; i < nfront; i++) fx[i] = ax[idx[i]], fy[i] = ay[idx[i]];
  if (nfront > 1)
    se[ns++] = (tpd_plot_series){"Pareto frontier over every sweep", fx, fy, NULL, nfront, TPD_PLOT_WIDE,
                                 TPD_MARK_CIRCLE, "#444444"};
  char cap[1200];
  snprintf(cap, sizeof cap,
           "Measured by launch/tools/serve_bench.py against an OpenAI-compatible server: each marker is one arrival "
           "rate (Poisson, seeded; inf: every request at once), streamed completions. x: the median over requests of "
           "1 / time per output token. y: %s",
           use_w ? "output tokens/s of the whole server per W."
                 : "output tokens/s of the whole server. Energy was not read for these rows (tok_s_w is null), so "
                   "the plot has no per-watt axis.");
  tpd_plot_opts po = {"tpdecode serving: latency vs throughput", "served requests at increasing arrival rates",
                      "tokens/s per user (median of 1 / TPOT)",
                      use_w ? "system output tokens/s per W" : "system output tokens/s", 1, 1, 960, 620, cap};
  char *svg = NULL;
  TPD_TRY(tpd_plot_svg(&po, se, ns, &svg));
  tpd_status st = bench_ensure_dir(out_dir);
  if (st == TPD_OK) st = bench_write_text(out_dir, "serving.svg", svg);
  free(svg);
  return st;
}
