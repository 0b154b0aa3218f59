/* tpdecode-bench: the output, on rank 0.  stdout: the tables (default), JSON
 * lines (--json) or CSV (--csv); --out-dir: bench.json, bench.csv,
 * comm.json, comm.csv (and pareto.svg from bench_plot.c). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "launch/bench/bench.h"
#include "runtime/base/fileio.h"

#define ONE_RANK_BW "one rank: the all-reduce moves no data, so no bandwidth"

static const char *null_if(int cond, char *buf, size_t cap, const char *fmt, double v) {
  if (!cond) return "n/a";
  snprintf(buf, cap, fmt, v);
  return buf;
}

static void print_machine(const bopts *o, const bmachine *mc) {
  printf("%s: %s, %.3g %s params (%s weights), TP=%d, %s/%s, %d thread%s per rank%s%s\n", BENCH_PROG, mc->model_name,
         mc->n_params >= 1e9 ? mc->n_params / 1e9 : mc->n_params / 1e6, mc->n_params >= 1e9 ? "B" : "M",
         tpd_dtype_name(mc->weight_dtype), mc->tp, mc->backend, mc->kernels, mc->threads,
         mc->threads == 1 ? "" : "s", mc->tp > 1 ? ", comm " : "", mc->tp > 1 ? mc->comm_name : "");
  if (!strcmp(mc->hw.source, "measured")) {
    printf("floor: memory read bandwidth, %ld MB read by %d thread%s, one pass before each step; each row's floor\n"
           "       uses the best pass of its steps (slowest rank's best)\n",
           o->membw_mb, mc->threads, mc->threads == 1 ? "" : "s");
    printf("this machine (measured, per rank): read %.2f GB/s (best pass), copy %.2f GB/s, peak %.1f GFLOP/s (%s)",
           mc->hw.mem_bw / 1e9, mc->copy_gbs, mc->hw.peak_flops / 1e9, mc->peak_what);
    if (mc->tp > 1)
      printf(", all-reduce %.2f us per hop + %.2f GB/s", mc->hw.link_alpha * 1e6, mc->hw.link_bw / 1e9);
    printf("\n");
  } else if (mc->hw.name[0]) {
    printf("floor hardware: %s (%s)\n", mc->hw.name, mc->hw.source);
  }
  if (mc->comm_note[0]) printf("comm: %s\n", mc->comm_note);
  if (mc->have_energy) printf("energy: %s\n", mc->energy_source);
  else printf("energy: null (%s)\n", mc->energy_reason);
}

static void print_table(const bopts *o, const bresults *res) {
  for (int m = 0; m < res->n_mach; m++) {
    const bmachine *mc = &res->mach[m];
    print_machine(o, mc);
    printf("%3s %6s %6s %9s %9s %9s %10s %10s %10s %9s %8s %8s %8s %9s %7s %8s %7s %9s %4s %9s %8s %8s %8s %9s\n",
           "tp", "batch", "ctx", "ms/tok", "p90", "best", "tok/s/user", "tok/s sys", "tok/s/rank", "host comm",
           "exposed", "MB/tok", "GB/s", "read GB/s", "of read", "GFLOP/s", "of peak", "floor ms", "by", "meas/flr",
           "best/flr", "J/tok", "tok/s/W", "peak MiB");
    if (o->sweep) printf("(* on the Pareto frontier of its context)\n");
    int faults = 0, graph = 0;
    for (int i = 0; i < res->n_rows; i++) {
      const brow *r = &res->rows[i];
      if (r->backend != mc->backend) continue;
      char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], b7[32], b8[32], b9[32], b10[32], b11[32];
      printf("%3d %6d %6d %9.3f %9.3f %9.3f %10.2f %10.2f %10.2f %9s %8s %8.2f %8.2f %9s %7s %8s %7s %9s %4s %9s "
             "%8s %8s %8s %9.1f%s%s%s\n",
             r->tp, r->batch, r->ctx, r->ms_med, r->ms_p90, r->ms_best, r->tok_s_user, r->tok_s_sys, r->tok_s_rank,
             null_if(r->have_host_comm, b7, 32, "%.3f", r->host_comm_ms),
             null_if(r->have_exposed, b8, 32, "%.3f", r->exposed_ms), r->bytes_step / r->batch / 1e6, r->gbs,
             null_if(r->read_gbs > 0, b1, 32, "%.2f", r->read_gbs), null_if(r->read_gbs > 0, b2, 32, "%.3f", r->frac),
             null_if(r->have_floor, b9, 32, "%.1f", r->gflops), null_if(r->have_floor, b10, 32, "%.3f", r->frac_peak),
             null_if(r->have_floor, b3, 32, "%.3f", r->sol.t_step * 1e3),
             r->have_floor ? (r->sol.compute_bound ? "flop" : "mem") : "n/a",
             null_if(r->have_floor, b4, 32, "%.2f", r->ratio), null_if(r->have_floor, b11, 32, "%.2f", r->ratio_best),
             null_if(r->have_energy, b5, 32, "%.4f", r->j_per_tok),
             null_if(r->have_energy, b6, 32, "%.2f", r->tok_s_w), r->rss_max_mib, r->on_frontier ? " *" : "",
             r->fault[0] ? "  FAULT: " : "", r->fault);
      faults += r->fault[0] != 0;
      graph += !r->have_host_comm;
    }
    if (faults)
      printf("FAULT: %d row%s measured faster than the speed-of-light floor: the floor's inputs read too low in this\n"
             "run, so those rows' floor, meas/flr and of-read figures are not valid measurements\n",
             faults, faults == 1 ? "" : "s");
    printf("host comm: host time inside the communicator's calls per step; exposed: step time minus the same steps\n"
           "without all-reduces (n/a at TP 1%s)\n", graph ? "; host comm n/a: all-reduces inside a replayed graph" : "");
    /* batch B / batch 1, per context */
    for (int ci = 0; ci < o->n_ctxs; ci++) {
      const brow *first = NULL, *last = NULL;
      for (int i = 0; i < res->n_rows; i++) {
        const brow *r = &res->rows[i];
        if (r->backend != mc->backend || r->ctx != o->ctxs[ci]) continue;
        if (!first) first = r;
        last = r;
      }
      if (first && last && first != last) {
        if (o->n_ctxs > 1) printf("ctx %d: ", first->ctx);
        printf("batch %d / batch %d system tokens/s: %.2fx\n", last->batch, first->batch,
               last->tok_s_sys / first->tok_s_sys);
      }
    }
    /* ms/token against context, per batch */
    for (int i = 0; i < res->n_rows; i++) {
      const brow *r = &res->rows[i];
      if (r->backend != mc->backend || !r->have_growth) continue;
      printf("batch %d, ctx %d -> %d: ms/token %+.3f (best steps %+.3f), floor +%.3f at %.2f GB/s: %.2fx the "
             "floor's growth (best %.2fx)%s%s\n", r->batch, r->growth_from_ctx, r->ctx, r->growth_ms, r->growth_best_ms,
             r->growth_floor_ms, r->growth_bw_gbs, r->growth_ratio, r->growth_ratio_best,
             r->growth_fault[0] ? "  FAULT: " : "", r->growth_fault);
    }
  }
  int any = 0;
  for (int i = 0; i < res->n_rows; i++) {
    const brow *r = &res->rows[i];
    if (!r->have_exposed) continue;
    if (!any++)
      printf("exposed communication per token (step time minus the step without all-reduces; overlap: micro-batch\n"
             "ping-pong at batch >= 2, chunked all-reduce at batch 1):\n%8s %3s %6s %6s %12s %14s %15s\n", "backend",
             "tp", "batch", "ctx", "no-comm ms", "overlap on ms", "overlap off ms");
    printf("%8s %3d %6d %6d %12.3f %14.3f %15.3f%s\n", r->backend, r->tp, r->batch, r->ctx, r->nocomm_ms,
           r->exposed_on_ms, r->exposed_off_ms, r->overlap ? "  (on in the rows above)" : "  (off in the rows above)");
  }
  for (int i = 0; i < res->n_skipped; i++) printf("skipped: %s\n", res->skipped[i]);
}

static void json_num_or_null(cJSON *j, const char *k, int have, double v) {
  if (have && isfinite(v)) cJSON_AddNumberToObject(j, k, v);
  else cJSON_AddNullToObject(j, k);
}

static cJSON *row_json(const brow *r, const bmachine *mc, int sweep) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "kind", "decode");
  cJSON_AddStringToObject(j, "backend", r->backend);
  cJSON_AddStringToObject(j, "model", mc->model_name);
  cJSON_AddNumberToObject(j, "tp", r->tp);
  cJSON_AddNumberToObject(j, "batch", r->batch);
  cJSON_AddNumberToObject(j, "ctx", r->ctx);
  cJSON_AddNumberToObject(j, "ctx_attended", r->ctx_attended);
  cJSON_AddNumberToObject(j, "steps", r->steps);
  cJSON_AddNumberToObject(j, "threads_per_rank", r->threads);
  /* a step gives every user one token: per step = per output token */
  cJSON_AddNumberToObject(j, "ms_per_token_median", r->ms_med);
  cJSON_AddNumberToObject(j, "ms_per_token_p90", r->ms_p90);
  cJSON_AddNumberToObject(j, "ms_per_step_median", r->ms_med);
  cJSON_AddNumberToObject(j, "ms_per_step_p90", r->ms_p90);
  cJSON_AddNumberToObject(j, "ms_per_step_best", r->ms_best);
  cJSON_AddNumberToObject(j, "tokens_per_s_user", r->tok_s_user);
  cJSON_AddNumberToObject(j, "tokens_per_s_system", r->tok_s_sys);
  cJSON_AddNumberToObject(j, "tokens_per_s_rank", r->tok_s_rank);
  json_num_or_null(j, "host_comm_ms", r->have_host_comm, r->host_comm_ms);
  json_num_or_null(j, "host_comm_fraction", r->have_host_comm, r->host_comm_frac);
  json_num_or_null(j, "comm_bytes_per_step", r->have_host_comm, r->comm_bytes);
  if (!r->have_host_comm) cJSON_AddStringToObject(j, "host_comm_reason", r->host_comm_reason);
  json_num_or_null(j, "exposed_comm_ms", r->have_exposed, r->exposed_ms);
  if (r->have_exposed) {
    cJSON_AddBoolToObject(j, "overlap", r->overlap);
    cJSON_AddNumberToObject(j, "ms_per_token_without_comm", r->nocomm_ms);
    cJSON_AddNumberToObject(j, "exposed_comm_ms_overlap_on", r->exposed_on_ms);
    cJSON_AddNumberToObject(j, "exposed_comm_ms_overlap_off", r->exposed_off_ms);
  } else {
    cJSON_AddStringToObject(j, "exposed_comm_reason", r->exposed_reason);
  }
  cJSON_AddNumberToObject(j, "bytes_per_step", r->bytes_step);
  cJSON_AddNumberToObject(j, "bytes_per_token", r->bytes_step / r->batch);
  cJSON_AddNumberToObject(j, "achieved_gbs", r->gbs);
  json_num_or_null(j, "read_bw_gbs", r->read_gbs > 0, r->read_gbs);
  json_num_or_null(j, "read_bw_median_gbs", r->read_med_gbs > 0, r->read_med_gbs);
  json_num_or_null(j, "fraction_of_read_bw", r->read_gbs > 0, r->frac);
  json_num_or_null(j, "achieved_gflops", r->have_floor, r->gflops);
  json_num_or_null(j, "fraction_of_peak_flops", r->have_floor, r->frac_peak);
  json_num_or_null(j, "floor_ms_per_token", r->have_floor, r->sol.t_step * 1e3);
  json_num_or_null(j, "measured_over_floor", r->have_floor, r->ratio);
  json_num_or_null(j, "measured_best_over_floor", r->have_floor, r->ratio_best);
  if (r->fault[0]) cJSON_AddStringToObject(j, "fault", r->fault);
  else cJSON_AddNullToObject(j, "fault");
  if (r->have_floor) {
    cJSON_AddStringToObject(j, "floor_bound", r->sol.compute_bound ? "compute" : "memory");
    cJSON_AddStringToObject(j, "floor_hw", mc->hw.name);
    cJSON_AddNumberToObject(j, "floor_t_mem_ms", r->sol.t_mem * 1e3);
    cJSON_AddNumberToObject(j, "floor_t_compute_ms", r->sol.t_compute * 1e3);
    cJSON_AddNumberToObject(j, "floor_t_comm_ms", r->sol.t_comm * 1e3);
    cJSON_AddNumberToObject(j, "floor_bytes_per_step", r->sol.bytes);
    cJSON_AddNumberToObject(j, "floor_flops_per_step", r->sol.flops);
  } else {
    cJSON_AddStringToObject(j, "floor_reason", r->floor_reason);
  }
  json_num_or_null(j, "energy_j_per_token", r->have_energy, r->j_per_tok);
  json_num_or_null(j, "tokens_per_s_per_w", r->have_energy, r->tok_s_w);
  json_num_or_null(j, "power_w", r->have_energy, r->watts);
  if (r->have_energy) cJSON_AddStringToObject(j, "energy_source", mc->energy_source);
  else cJSON_AddStringToObject(j, "energy_reason", mc->have_energy ? "counter did not advance" : mc->energy_reason);
  if (sweep) cJSON_AddBoolToObject(j, "on_frontier", r->on_frontier);
  cJSON_AddNumberToObject(j, "peak_rss_mib", r->rss_max_mib);
  cJSON *rss = cJSON_AddArrayToObject(j, "peak_rss_mib_per_rank");
  for (int k = 0; k < r->n_rss; k++) cJSON_AddItemToArray(rss, cJSON_CreateNumber(r->rss_mib[k]));
  return j;
}

/* the growth of ms/token with context at one batch (brow: have_growth) */
static cJSON *growth_json(const brow *r) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "kind", "ctx_growth");
  cJSON_AddStringToObject(j, "backend", r->backend);
  cJSON_AddNumberToObject(j, "tp", r->tp);
  cJSON_AddNumberToObject(j, "batch", r->batch);
  cJSON_AddNumberToObject(j, "ctx_from", r->growth_from_ctx);
  cJSON_AddNumberToObject(j, "ctx_to", r->ctx);
  cJSON_AddNumberToObject(j, "ms_growth_median", r->growth_ms);
  cJSON_AddNumberToObject(j, "ms_growth_best", r->growth_best_ms);
  cJSON_AddNumberToObject(j, "floor_ms_growth", r->growth_floor_ms);
  cJSON_AddNumberToObject(j, "floor_read_bw_gbs", r->growth_bw_gbs);
  json_num_or_null(j, "ratio_median", 1, r->growth_ratio);
  json_num_or_null(j, "ratio_best", 1, r->growth_ratio_best);
  if (r->growth_fault[0]) cJSON_AddStringToObject(j, "fault", r->growth_fault);
  else cJSON_AddNullToObject(j, "fault");
  return j;
}

static cJSON *machine_json(const bmachine *mc) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "backend", mc->backend);
  cJSON_AddStringToObject(j, "kernels", mc->kernels);
  cJSON_AddStringToObject(j, "model", mc->model_name);
  cJSON_AddNumberToObject(j, "params", mc->n_params);
  cJSON_AddStringToObject(j, "weight_dtype", tpd_dtype_name(mc->weight_dtype));
  cJSON_AddNumberToObject(j, "tp", mc->tp);
  cJSON_AddNumberToObject(j, "threads_per_rank", mc->threads);
  cJSON_AddStringToObject(j, "comm", mc->comm_name);
  if (mc->comm_note[0]) cJSON_AddStringToObject(j, "comm_note", mc->comm_note);
  cJSON *h = cJSON_AddObjectToObject(j, "floor_hw");
  cJSON_AddStringToObject(h, "name", mc->hw.name);
  cJSON_AddStringToObject(h, "source", mc->hw.source);
  json_num_or_null(h, "mem_bw_gbs", mc->hw.mem_bw > 0, mc->hw.mem_bw / 1e9);
  json_num_or_null(h, "peak_gflops", mc->hw.peak_flops > 0, mc->hw.peak_flops / 1e9);
  if (mc->peak_what) cJSON_AddStringToObject(h, "peak_instruction", mc->peak_what);
  json_num_or_null(h, "link_bw_gbs", mc->hw.link_bw > 0, mc->hw.link_bw / 1e9);
  json_num_or_null(h, "link_alpha_us", mc->tp > 1, mc->hw.link_alpha * 1e6);
  json_num_or_null(h, "power_w", mc->hw.power_w > 0, mc->hw.power_w);
  json_num_or_null(j, "copy_gbs", mc->copy_gbs > 0, mc->copy_gbs);
  cJSON *e = cJSON_AddObjectToObject(j, "energy");
  cJSON_AddBoolToObject(e, "available", mc->have_energy);
  if (mc->have_energy) cJSON_AddStringToObject(e, "source", mc->energy_source);
  else cJSON_AddStringToObject(e, "reason", mc->energy_reason);
  return j;
}

static cJSON *predicted_json(const tpd_sol_result *r, const bpredict *p, int on_front) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "kind", "predicted");
  cJSON_AddStringToObject(j, "hw", p->hw.name);
  cJSON_AddStringToObject(j, "hw_source", p->hw.source);
  cJSON_AddStringToObject(j, "model", p->model.name);
  cJSON_AddNumberToObject(j, "tp", r->tp);
  cJSON_AddNumberToObject(j, "batch", r->batch);
  cJSON_AddNumberToObject(j, "ctx", r->ctx);
  cJSON_AddNumberToObject(j, "floor_ms_per_token", r->t_step * 1e3);
  cJSON_AddStringToObject(j, "floor_bound", r->compute_bound ? "compute" : "memory");
  cJSON_AddNumberToObject(j, "floor_t_mem_ms", r->t_mem * 1e3);
  cJSON_AddNumberToObject(j, "floor_t_compute_ms", r->t_compute * 1e3);
  cJSON_AddNumberToObject(j, "floor_t_comm_ms", r->t_comm * 1e3);
  cJSON_AddNumberToObject(j, "bytes_per_step_per_rank", r->bytes);
  cJSON_AddNumberToObject(j, "tokens_per_s_user", r->tok_s_user);
  cJSON_AddNumberToObject(j, "tokens_per_s_system", r->tok_s_system);
  cJSON_AddNumberToObject(j, "tokens_per_s_rank", r->tok_s_rank);
  json_num_or_null(j, "tokens_per_s_per_w", r->tok_s_per_w > 0, r->tok_s_per_w);
  json_num_or_null(j, "energy_j_per_token", r->j_per_token > 0, r->j_per_token);
  cJSON_AddBoolToObject(j, "on_frontier", on_front);
  return j;
}

static cJSON *comm_json(const char *backend, const bench_comm_row *r, int n_ranks) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "kind", "allreduce");
  cJSON_AddStringToObject(j, "comm", backend);
  cJSON_AddNumberToObject(j, "ranks", n_ranks);
  cJSON_AddNumberToObject(j, "size_bytes", (double)r->n_bytes);
  cJSON_AddNumberToObject(j, "count", (double)r->count);
  cJSON_AddStringToObject(j, "type", r->dtype == TPD_F32 ? "float" : "bf16");
  cJSON_AddNumberToObject(j, "time_us", r->us);
  json_num_or_null(j, "algbw_gbs", r->have_bw, r->algbw);
  json_num_or_null(j, "busbw_gbs", r->have_bw, r->busbw);
  if (!r->have_bw) cJSON_AddStringToObject(j, "bw_reason", ONE_RANK_BW);
  cJSON_AddNumberToObject(j, "wrong", (double)r->wrong);
  return j;
}

static void print_json_line(cJSON *j) {
  char *t = cJSON_PrintUnformatted(j);
  if (t) puts(t);
  free(t);
  cJSON_Delete(j);
}

static const char CSV_HEADER[] =
    "batch,ctx,tp,ms_per_step_median,ms_per_step_p90,tokens_per_s_user,tokens_per_s_system,bytes_per_step,"
    "achieved_gbs,read_bw_gbs,fraction_of_read_bw,backend,steps,threads_per_rank,ctx_attended,tokens_per_s_rank,"
    "host_comm_ms,host_comm_fraction,comm_bytes_per_step,bytes_per_token,floor_ms_per_token,floor_bound,"
    "measured_over_floor,floor_t_mem_ms,floor_t_compute_ms,floor_t_comm_ms,energy_j_per_token,tokens_per_s_per_w,"
    "on_frontier,ms_per_token_without_comm,exposed_comm_ms,exposed_comm_ms_overlap_on,exposed_comm_ms_overlap_off,"
    "fault,peak_rss_mib,peak_rss_mib_per_rank,achieved_gflops,fraction_of_peak_flops,ms_per_step_best,"
    "measured_best_over_floor\n";

/* One CSV line; empty fields where JSON has null (the fault text has no commas). */
static void csv_row(FILE *f, const brow *r, int sweep) {
  fprintf(f, "%d,%d,%d,%.4f,%.4f,%.3f,%.3f,%.0f,%.3f,", r->batch, r->ctx, r->tp, r->ms_med, r->ms_p90, r->tok_s_user,
          r->tok_s_sys, r->bytes_step, r->gbs);
  if (r->read_gbs > 0) fprintf(f, "%.3f,%.4f,", r->read_gbs, r->frac);
  else fprintf(f, ",,");
  fprintf(f, "%s,%d,%d,%.2f,%.3f,", r->backend, r->steps, r->threads, r->ctx_attended, r->tok_s_rank);
  if (r->have_host_comm) fprintf(f, "%.4f,%.4f,%.0f,", r->host_comm_ms, r->host_comm_frac, r->comm_bytes);
  else fprintf(f, ",,,");
  fprintf(f, "%.0f,", r->bytes_step / r->batch);
  if (r->have_floor)
    fprintf(f, "%.4f,%s,%.4f,%.4f,%.4f,%.4f,", r->sol.t_step * 1e3, r->sol.compute_bound ? "compute" : "memory",
            r->ratio, r->sol.t_mem * 1e3, r->sol.t_compute * 1e3, r->sol.t_comm * 1e3);
  else fprintf(f, ",,,,,,");
  if (r->have_energy) fprintf(f, "%.6f,%.4f,", r->j_per_tok, r->tok_s_w);
  else fprintf(f, ",,");
  fprintf(f, "%s,", sweep ? (r->on_frontier ? "1" : "0") : "");
  if (r->have_exposed) fprintf(f, "%.4f,%.4f,%.4f,%.4f,", r->nocomm_ms, r->exposed_ms, r->exposed_on_ms, r->exposed_off_ms);
  else fprintf(f, ",,,,");
  for (const char *p = r->fault; *p; p++) fputc(*p == ',' ? ';' : *p, f);
  fprintf(f, ",%.1f,", r->rss_max_mib); /* per rank: ';'-separated, in rank order */
  for (int k = 0; k < r->n_rss; k++) fprintf(f, "%s%.1f", k ? ";" : "", r->rss_mib[k]);
  if (r->have_floor) fprintf(f, ",%.3f,%.4f", r->gflops, r->frac_peak);
  else fprintf(f, ",,");
  fprintf(f, ",%.4f,", r->ms_best);
  if (r->have_floor) fprintf(f, "%.4f", r->ratio_best);
  fputc('\n', f);
}

const bmachine *bench_machine_of(const bresults *res, const brow *r) {
  for (int m = 0; m < res->n_mach; m++)
    if (res->mach[m].backend == r->backend) return &res->mach[m];
  return &res->mach[0];
}

static void print_comm(const bcomm *cb, int n_cb, int n_ranks) {
  for (int k = 0; k < n_cb; k++) {
    const bcomm *c = &cb[k];
    printf("# all-reduce, %s, %d rank%s: in place, sum; time: slowest rank's mean; busbw = algbw * 2(n-1)/n\n",
           c->name, n_ranks, n_ranks == 1 ? "" : "s");
    if (!c->n) {
      printf("#   skipped: %s\n", c->skip);
      continue;
    }
    printf("%12s %12s %6s %10s %10s %10s %8s\n", "size(B)", "count", "type", "time(us)", "algbw(GB/s)", "busbw(GB/s)",
           "#wrong");
    long wrong = 0;
    double bus = 0;
    int n_bw = 0;
    for (int i = 0; i < c->n; i++) {
      const bench_comm_row *r = &c->rows[i];
      char b1[32], b2[32];
      printf("%12zu %12zu %6s %10.2f %10s %10s %8ld\n", r->n_bytes, r->count, r->dtype == TPD_F32 ? "float" : "bf16",
             r->us, null_if(r->have_bw, b1, 32, "%.3f", r->algbw), null_if(r->have_bw, b2, 32, "%.3f", r->busbw),
             r->wrong);
      wrong += r->wrong;
      if (r->have_bw) bus += r->busbw, n_bw++;
    }
    printf("# out of bounds values: %ld %s\n", wrong, wrong ? "FAILED" : "OK");
    if (n_bw) printf("# average bus bandwidth: %.3f GB/s\n", bus / n_bw);
    else printf("# average bus bandwidth: n/a (%s)\n", ONE_RANK_BW);
  }
}

static void print_predicted(const bopts *o, const bpredict *pr) {
  printf("predicted (speed-of-light, %s, %s; %s): %s bf16, ctx %ld\n", pr->hw.name, pr->hw.source,
         "no GPU measured", pr->model.name, o->predict_ctx);
  printf("%3s %6s %10s %5s %10s %10s %10s %9s %9s   (* on the frontier)\n", "tp", "batch", "floor ms", "by",
         "tok/s/user", "tok/s sys", "tok/s/GPU", "tok/s/W", "comm ms");
  for (int i = 0; i < pr->n; i++) {
    const tpd_sol_result *r = &pr->pts[i];
    printf("%3d %6d %10.3f %5s %10.1f %10.1f %10.1f %9.3f %9.4f%s\n", r->tp, r->batch, r->t_step * 1e3,
           r->compute_bound ? "flop" : "mem", r->tok_s_user, r->tok_s_system, r->tok_s_rank, r->tok_s_per_w,
           r->t_comm * 1e3, pr->on_front[i] ? " *" : "");
  }
  for (int i = 0; i < pr->n_notes; i++) printf("  note: %s\n", pr->notes[i]);
}

void bench_print(const bopts *o, const bresults *res, const bcomm *cb, int n_cb, const bpredict *pr, int n_ranks) {
  const int machine_readable = o->json || o->csv;
  if (o->json) {
    for (int k = 0; k < n_cb; k++)
      for (int i = 0; i < cb[k].n; i++) print_json_line(comm_json(cb[k].name, &cb[k].rows[i], n_ranks));
    for (int i = 0; i < res->n_rows; i++)
      print_json_line(row_json(&res->rows[i], bench_machine_of(res, &res->rows[i]), o->sweep));
    for (int i = 0; i < res->n_rows; i++)
      if (res->rows[i].have_growth) print_json_line(growth_json(&res->rows[i]));
    for (int i = 0; pr && i < pr->n; i++) print_json_line(predicted_json(&pr->pts[i], pr, pr->on_front[i]));
  } else if (o->csv) {
    if (res->n_rows) fputs(CSV_HEADER, stdout);
    for (int i = 0; i < res->n_rows; i++) csv_row(stdout, &res->rows[i], o->sweep);
  }
  if (!machine_readable) {
    if (n_cb) print_comm(cb, n_cb, n_ranks);
    if (res->n_rows) print_table(o, res);
    if (pr) print_predicted(o, pr);
  }
}

tpd_status bench_write_text(const char *dir, const char *name, const char *text) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return tpd_write_file(path, text, strlen(text));
}

tpd_status bench_ensure_dir(const char *dir) {
  if (tpd_is_dir(dir)) return TPD_OK;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return TPD_FAIL(TPD_ERR_IO, "cannot create output directory %s: %s", dir, strerror(errno));
  return TPD_OK;
}

tpd_status bench_write_files(const bopts *o, const bresults *res, const bpareto *pp, const bpredict *pr,
                             const bcomm *cb, int n_cb, int n_ranks) {
  const int machine_readable = o->json || o->csv;
  tpd_status st = TPD_OK;
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "tool", BENCH_PROG);
  cJSON_AddNumberToObject(doc, "ranks", n_ranks);
  cJSON *ms = cJSON_AddArrayToObject(doc, "machines");
  for (int m = 0; m < res->n_mach; m++) cJSON_AddItemToArray(ms, machine_json(&res->mach[m]));
  cJSON *cf = cJSON_AddArrayToObject(doc, "configs");
  for (int i = 0; i < res->n_rows; i++)
    cJSON_AddItemToArray(cf, row_json(&res->rows[i], bench_machine_of(res, &res->rows[i]), o->sweep));
  cJSON *gr = cJSON_AddArrayToObject(doc, "ctx_growth");
  for (int i = 0; i < res->n_rows; i++)
    if (res->rows[i].have_growth) cJSON_AddItemToArray(gr, growth_json(&res->rows[i]));
  if (o->sweep) {
    cJSON *p = cJSON_AddObjectToObject(doc, "pareto");
    cJSON_AddStringToObject(p, "x", "tokens_per_s_user");
    cJSON_AddStringToObject(p, "y", pp->use_energy ? "tokens_per_s_per_w" : "tokens_per_s_rank");
    if (!pp->use_energy && res->n_mach)
      cJSON_AddStringToObject(p, "y_reason", "energy unavailable: tokens/s per rank instead of tokens/s/W");
    cJSON *fr = cJSON_AddArrayToObject(p, "frontier_config_indices");
    for (int g = 0; g < pp->n_groups; g++)
      for (int f = 0; f < pp->n_front[g]; f++)
        cJSON_AddItemToArray(fr, cJSON_CreateNumber(pp->front[pp->front_off[g] + f]));
  }
  if (pr) {
    cJSON *p = cJSON_AddObjectToObject(doc, "predicted");
    cJSON_AddStringToObject(p, "hw", pr->hw.name);
    cJSON_AddStringToObject(p, "model", pr->model.name);
    cJSON_AddNumberToObject(p, "ctx", (double)o->predict_ctx);
    cJSON *pts = cJSON_AddArrayToObject(p, "points");
    for (int i = 0; i < pr->n; i++) cJSON_AddItemToArray(pts, predicted_json(&pr->pts[i], pr, pr->on_front[i]));
    cJSON *nt = cJSON_AddArrayToObject(p, "notes");
    for (int i = 0; i < pr->n_notes; i++) cJSON_AddItemToArray(nt, cJSON_CreateString(pr->notes[i]));
  }
  if (n_cb) {
    cJSON *ca = cJSON_CreateArray();
    for (int k = 0; k < n_cb; k++) {
      for (int i = 0; i < cb[k].n; i++) cJSON_AddItemToArray(ca, comm_json(cb[k].name, &cb[k].rows[i], n_ranks));
      if (!cb[k].n) {
        cJSON *sk = cJSON_CreateObject();
        cJSON_AddStringToObject(sk, "kind", "allreduce");
        cJSON_AddStringToObject(sk, "comm", cb[k].name);
        cJSON_AddStringToObject(sk, "skipped", cb[k].skip);
        cJSON_AddItemToArray(ca, sk);
      }
    }
    char *t = cJSON_Print(ca);
    st = t ? bench_write_text(o->out_dir, "comm.json", t) : TPD_FAIL(TPD_ERR_OOM, "out of memory");
    free(t);
    cJSON_AddItemToObject(doc, "allreduce", ca);
    if (st == TPD_OK) {
      char path[4096];
      snprintf(path, sizeof path, "%s/comm.csv", o->out_dir);
      FILE *f = fopen(path, "w");
      if (!f) st = TPD_FAIL(TPD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
      else {
        fprintf(f, "comm,ranks,size_bytes,count,type,time_us,algbw_gbs,busbw_gbs,wrong\n");
        for (int k = 0; k < n_cb; k++)
          for (int i = 0; i < cb[k].n; i++) {
            const bench_comm_row *r = &cb[k].rows[i];
            char b1[32] = "", b2[32] = "";
            if (r->have_bw) snprintf(b1, sizeof b1, "%.4f", r->algbw), snprintf(b2, sizeof b2, "%.4f", r->busbw);
            fprintf(f, "%s,%d,%zu,%zu,%s,%.3f,%s,%s,%ld\n", cb[k].name, n_ranks, r->n_bytes, r->count,
                    r->dtype == TPD_F32 ? "float" : "bf16", r->us, b1, b2, r->wrong);
          }
        if (fclose(f) != 0) st = TPD_FAIL(TPD_ERR_IO, "cannot write %s", path);
      }
    }
  }
  char *t = st == TPD_OK ? cJSON_Print(doc) : NULL;
  if (t) st = bench_write_text(o->out_dir, "bench.json", t);
  free(t);
  cJSON_Delete(doc);
  if (st == TPD_OK && res->n_rows) {
    char path[4096];
    snprintf(path, sizeof path, "%s/bench.csv", o->out_dir);
    FILE *f = fopen(path, "w");
    if (!f) st = TPD_FAIL(TPD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    else {
      fputs(CSV_HEADER, f);
      for (int i = 0; i < res->n_rows; i++) csv_row(f, &res->rows[i], o->sweep);
      if (fclose(f) != 0) st = TPD_FAIL(TPD_ERR_IO, "cannot write %s", path);
    }
  }
  if (st == TPD_OK && !machine_readable)
    printf("wrote %s/bench.json%s%s\n", o->out_dir, res->n_rows ? ", bench.csv" : "", n_cb ? ", comm.json, comm.csv" : "");
  return st;
}
