/* tpdecode-bench: the predicted curve (--predict), the Pareto frontier of
 * each (backend, context) group of measured rows (--sweep), and pareto.svg. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "launch/bench/bench.h"
#include "launch/tools/pareto.h"
#include "launch/tools/plot_svg.h"
#include "launch/tools/sol.h"
#include "runtime/base/dtype.h"

/* ------------------------------------------------------------------ */
/* the predicted curve                                                  */

void bench_predict(const bopts *o, bpredict *p) {
  memset(p, 0, sizeof *p);
  tpd_sol_hw_preset(o->predict, &p->hw);
  tpd_sol_model_preset(o->predict_model, &p->model);
  if (o->predict_hop_us >= 0) {
    p->hw.link_alpha = o->predict_hop_us * 1e-6;
    snprintf(p->hw.source, sizeof p->hw.source, "datasheet, hop latency %g us given", o->predict_hop_us);
  }
  int skipped_fit = 0;
  for (int t = 0; t < o->n_predict_tp; t++) {
    const int tp = o->predict_tp[t];
    if (p->hw.max_tp && tp > p->hw.max_tp) {
      if (p->n_notes < 4)
        snprintf(p->notes[p->n_notes++], sizeof p->notes[0], "TP %d left out: %d GPUs per node", tp, p->hw.max_tp);
      continue;
    }
    for (int b = 0; b < o->n_predict_batch; b++) {
      tpd_sol_result r;
      if (tpd_sol_eval(&p->model, &p->hw, tp, o->predict_batch[b], (double)o->predict_ctx, &r) != TPD_OK) {
        if (p->n_notes < 4) snprintf(p->notes[p->n_notes++], sizeof p->notes[0], "TP %d left out: %s", tp, tpd_last_error());
        tpd_clear_error();
        break;
      }
      if (!r.fits) {
        skipped_fit++;
        continue;
      }
      p->pts[p->n++] = r;
    }
  }
  if (skipped_fit && p->n_notes < 4)
    snprintf(p->notes[p->n_notes++], sizeof p->notes[0],
             "%d (TP, batch) points left out: weights + KV exceed %.0f GiB per GPU", skipped_fit,
             p->hw.mem_bytes / 1073741824.0);
  /* every GPU draws the same power, so tokens/s/W and tokens/s per GPU share one frontier */
  double x[BENCH_MAX_LIST * BENCH_MAX_LIST], y[BENCH_MAX_LIST * BENCH_MAX_LIST];
  for (int i = 0; i < p->n; i++) x[i] = p->pts[i].tok_s_user, y[i] = p->pts[i].tok_s_rank;
  p->n_front = tpd_pareto_frontier(x, y, p->n, p->front);
  for (int i = 0; i < p->n_front; i++) p->on_front[p->front[i]] = 1;
}

/* ------------------------------------------------------------------ */
/* Pareto frontiers and the plot                                        */

static double row_y(const brow *r, int use_energy) { return use_energy ? r->tok_s_w : r->tok_s_rank; }

void bench_pareto_mark(bresults *res, bpareto *pp) {
  memset(pp, 0, sizeof *pp);
  pp->use_energy = res->n_rows > 0;
  for (int i = 0; i < res->n_rows; i++) pp->use_energy &= res->rows[i].have_energy;
  /* groups: one frontier per (backend, context) -- different workloads */
  int key_backend[16], key_ctx[16];
  for (int i = 0; i < res->n_rows; i++) {
    const brow *r = &res->rows[i];
    int g = 0;
    for (; g < pp->n_groups; g++)
      if (!strcmp(res->rows[key_backend[g]].backend, r->backend) && key_ctx[g] == r->ctx) break;
    if (g == pp->n_groups) {
      if (g == 16) g = 15;
      else {
        key_backend[g] = i, key_ctx[g] = r->ctx;
        pp->n_groups++;
      }
    }
    pp->groups[i] = g;
  }
  int off = 0;
  for (int g = 0; g < pp->n_groups; g++) {
    double xs[BENCH_MAX_ROWS], ys[BENCH_MAX_ROWS];
    int map[BENCH_MAX_ROWS], k = 0, idx[BENCH_MAX_ROWS];
    for (int i = 0; i < res->n_rows; i++)
      if (pp->groups[i] == g) {
        xs[k] = res->rows[i].tok_s_user, ys[k] = row_y(&res->rows[i], pp->use_energy);
        map[k++] = i;
      }
    const int nf = tpd_pareto_frontier(xs, ys, k, idx);
    pp->front_off[g] = off;
    pp->n_front[g] = nf;
    for (int f = 0; f < nf; f++) {
      pp->front[off + f] = map[idx[f]];
      res->rows[map[idx[f]]].on_frontier = 1;
    }
    off += nf;
  }
}

/* "host (CPU model)" of this machine, as far as Linux tells */
static void machine_desc(char *out, size_t cap) {
  char host[128] = "this machine", cpu[160] = "";
  if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "this machine");
  host[sizeof host - 1] = 0;
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[512];
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "model name", 10)) {
      const char *v = strchr(line, ':');
      if (v) {
        v++;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(cpu, sizeof cpu, "%s", v);
        cpu[strcspn(cpu, "\n")] = 0;
      }
      break;
    }
  if (f) fclose(f);
  snprintf(out, cap, "%s%s%s%s", host, cpu[0] ? " (" : "", cpu, cpu[0] ? ")" : "");
}

/* The plot's subtitle and caption: which points are measured (which model,
 * which machine, when) and which are predicted (which shape, which
 * hardware, from what). */
static void plot_caption(const bopts *o, const bresults *res, const bpareto *pp, const bpredict *pr, char *sub,
                         size_t sub_cap, char *cap, size_t cap_cap) {
  size_t at = 0;
  cap[0] = 0;
  char ctxs[160] = "";
  for (int i = 0, n = 0; i < o->n_ctxs; i++)
    n += snprintf(ctxs + n, sizeof ctxs - (size_t)n, "%s%d", i ? ", " : "", o->ctxs[i]);
  if (res->n_rows) {
    const bmachine *mc = &res->mach[0];
    char where[400], date[32] = "";
    machine_desc(where, sizeof where);
    const time_t now = time(NULL);
    struct tm tmv;
    if (localtime_r(&now, &tmv)) strftime(date, sizeof date, "%Y-%m-%d", &tmv);
    char pred[200] = "";
    if (pr && pr->n)
      snprintf(pred, sizeof pred, "; predicted (not measured): the %s shape's speed-of-light floor on %s", pr->model.name,
               pr->hw.name);
    snprintf(sub, sub_cap, "measured: %s preset on %s, TP %d%s", mc->model_name,
             strcmp(mc->backend, "cpu") ? mc->backend : "CPU", mc->tp, pred);
    for (int m = 0; m < res->n_mach; m++) {
      const bmachine *k = &res->mach[m];
      at += (size_t)snprintf(cap + at, cap_cap - at,
                             "%sMeasured (solid markers and lines): the %s preset (%.3g %s parameters, %s weights) "
                             "decoding on %s, %s backend (%s kernels), TP %d = %d rank%s x %d thread%s, context %s, "
                             "%s; each marker one (batch, TP) configuration.",
                             at ? "\n" : "", k->model_name, k->n_params >= 1e9 ? k->n_params / 1e9 : k->n_params / 1e6,
                             k->n_params >= 1e9 ? "B" : "M", tpd_dtype_name(k->weight_dtype), where, k->backend,
                             k->kernels, k->tp, k->tp, k->tp == 1 ? "" : "s", k->threads, k->threads == 1 ? "" : "s",
                             ctxs, date);
      if (at >= cap_cap) at = cap_cap - 1;
    }
    if (!pp->use_energy && at < cap_cap)
      at += (size_t)snprintf(cap + at, cap_cap - at, " y is tokens/s per rank: %s.", mc->energy_reason);
  } else {
    snprintf(sub, sub_cap, "PREDICTED, not measured: speed-of-light floor at %.0f W per GPU (TDP, assumed)",
             pr ? pr->hw.power_w : 0.0);
  }
  if (at >= cap_cap) at = cap_cap - 1;
  if (pr && pr->n && at < cap_cap)
    at += (size_t)snprintf(cap + at, cap_cap - at,
                           "%sPredicted, not measured (dashed curves, grey band: their frontier): the speed-of-light "
                           "floor of the %s shape (bf16) on up to %dx %s from %s figures, context %ld, at %.0f W per "
                           "GPU; no GPU ran.%s",
                           at ? "\n" : "", pr->model.name, pr->hw.max_tp, pr->hw.name, pr->hw.source, o->predict_ctx,
                           pr->hw.power_w,
                           res->n_rows ? " Measured and predicted are different models on different hardware: the "
                                         "plot shows the shape of the trade, not a comparison."
                                       : "");
}

tpd_status bench_write_plot(const bopts *o, const bresults *res, const bpareto *pp, const bpredict *pr,
                             const char *dir) {
  /* measured and predicted never share a colour; every curve has its own legend entry */
  static const char *colors[] = {"#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#7f7f7f", "#393b79"};
  static const char *pcolors[] = {"#d62728", "#ff7f0e", "#e377c2", "#bcbd22", "#8c564b", "#843c39"};
  tpd_plot_series se[64];
  int ns = 0;
  /* storage for labels and coordinates */
  static char lab[BENCH_MAX_ROWS + BENCH_MAX_LIST * BENCH_MAX_LIST][32];
  static const char *labp[BENCH_MAX_ROWS + BENCH_MAX_LIST * BENCH_MAX_LIST];
  static double xs[BENCH_MAX_ROWS * 2 + BENCH_MAX_LIST * BENCH_MAX_LIST * 2], ys[BENCH_MAX_ROWS * 2 + BENCH_MAX_LIST * BENCH_MAX_LIST * 2];
  static char names[64][200];
  int used = 0, used_lab = 0;
  const int y_energy = res->n_rows ? pp->use_energy : 1; /* predicted alone: tokens/s/W */

  for (int g = 0; g < pp->n_groups && ns < 60; g++) {
    const double *gx = xs + used, *gy = ys + used;
    const char **gl = labp + used_lab;
    int k = 0;
    const brow *first = NULL;
    for (int i = 0; i < res->n_rows; i++)
      if (pp->groups[i] == g) {
        const brow *r = &res->rows[i];
        if (!first) first = r;
        xs[used + k] = r->tok_s_user, ys[used + k] = row_y(r, pp->use_energy);
        snprintf(lab[used_lab + k], sizeof lab[0], "b%d tp%d", r->batch, r->tp);
        labp[used_lab + k] = lab[used_lab + k];
        k++;
      }
    used += k, used_lab += k;
    snprintf(names[ns], sizeof names[0], "measured: %s %s, %s, TP=%d, ctx %d (labels: batch, TP)",
             first->backend, bench_machine_of(res, first)->model_name, tpd_dtype_name(bench_machine_of(res, first)->weight_dtype),
             first->tp, first->ctx);
    se[ns] = (tpd_plot_series){names[ns], gx, gy, gl, k, TPD_PLOT_POINTS, (tpd_plot_marker)(g % 3), colors[g % 6]};
    ns++;
    /* its frontier */
    const double *fx = xs + used, *fy = ys + used;
    for (int f = 0; f < pp->n_front[g]; f++) {
      const brow *r = &res->rows[pp->front[pp->front_off[g] + f]];
      xs[used + f] = r->tok_s_user, ys[used + f] = row_y(r, pp->use_energy);
    }
    used += pp->n_front[g];
    snprintf(names[ns], sizeof names[0], "measured Pareto frontier, ctx %d", first->ctx);
    se[ns] = (tpd_plot_series){names[ns], fx, fy, NULL, pp->n_front[g], TPD_PLOT_LINE, TPD_MARK_CIRCLE, colors[g % 6]};
    ns++;
  }
  if (pr && pr->n) {
    for (int t = 0, c = 0; t < o->n_predict_tp && ns < 62; t++) {
      const double *px = xs + used, *py = ys + used;
      const char **pl = labp + used_lab;
      int k = 0, b_first = 0, b_last = 0;
      for (int i = 0; i < pr->n; i++) {
        const tpd_sol_result *r = &pr->pts[i];
        if (r->tp != o->predict_tp[t]) continue;
        if (!k) b_first = r->batch;
        b_last = r->batch;
        xs[used + k] = r->tok_s_user, ys[used + k] = y_energy ? r->tok_s_per_w : r->tok_s_rank;
        if (k == 0) snprintf(lab[used_lab + k], sizeof lab[0], "TP%d b%d", r->tp, r->batch);
        else snprintf(lab[used_lab + k], sizeof lab[0], "b%d", r->batch);
        labp[used_lab + k] = lab[used_lab + k];
        k++;
      }
      if (!k) continue;
      used += k, used_lab += k;
      snprintf(names[ns], sizeof names[0], "predicted (speed-of-light), %s %s on %s, TP %d: batch %d..%d along the curve",
               pr->model.name, "bf16", pr->hw.name, o->predict_tp[t], b_first, b_last);
      se[ns] = (tpd_plot_series){names[ns], px, py, pl, k, TPD_PLOT_DASHED, TPD_MARK_CIRCLE, pcolors[c % 6]};
      ns++, c++;
    }
    if (pr->n_front > 1) {
      const double *px = xs + used, *py = ys + used;
      for (int f = 0; f < pr->n_front; f++) {
        const tpd_sol_result *r = &pr->pts[pr->front[f]];
        xs[used + f] = r->tok_s_user, ys[used + f] = y_energy ? r->tok_s_per_w : r->tok_s_rank;
      }
      used += pr->n_front;
      snprintf(names[ns], sizeof names[0], "predicted Pareto frontier over every TP and batch");
      se[ns] = (tpd_plot_series){names[ns], px, py, NULL, pr->n_front, TPD_PLOT_WIDE, TPD_MARK_CIRCLE, "#444444"};
      ns++;
    }
  }
  char title[200], sub[900], xl[120], yl[200], cap[2400];
  snprintf(title, sizeof title, "tpdecode decode: latency vs efficiency");
  plot_caption(o, res, pp, pr, sub, sizeof sub, cap, sizeof cap);
  snprintf(xl, sizeof xl, "tokens/s per user (1 / time per output token)");
  snprintf(yl, sizeof yl, "%s", y_energy ? "system tokens/s per W" : "system tokens/s per rank (GPU for predicted)");
  tpd_plot_opts po = {title, sub, xl, yl, 1, 1, 960, 620, cap};
  char *svg = NULL;
  TPD_TRY(tpd_plot_svg(&po, se, ns, &svg));
  const tpd_status s = bench_write_text(dir, "pareto.svg", svg);
  free(svg);
  return s;
}
