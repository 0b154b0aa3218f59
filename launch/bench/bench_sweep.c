/* tpdecode-bench: the measured configurations.  For each backend: the
 * engine, this machine's probes (peak rate, copy and read bandwidth, the
 * all-reduce fit), then every (context, batch): timed steps with a read-probe
 * pass before each, the exposed communication at TP > 1, the energy, and the
 * speed-of-light floor of the row. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "launch/bench/bench.h"
#include "launch/cli.h"
#include "launch/tools/energy.h"
#include "launch/tools/membw.h"
#include "launch/tools/stats.h"
#include "launch/tools/synth.h"
#include "runtime/base/fileio.h"
#include "runtime/base/timer.h"
#include "runtime/engine/bench_hooks.h"

/* Writes the preset model once (rank 0) into the cache; every rank gets its path. */
tpd_status bench_ensure_preset(const bopts *o, tpd_comm *comm, char *dir, size_t cap) {
  tpd_synth_spec s;
  TPD_TRY(tpd_synth_preset(o->preset, &s));
  s.dtype = o->dtype;
  s.seed = (unsigned long long)o->seed;
  snprintf(dir, cap, "%s/%s-%s-s%ld", o->cache, o->preset, tpd_dtype_name(o->dtype), o->seed);
  char done[4200];
  snprintf(done, sizeof done, "%s/.complete", dir);
  tpd_status st = TPD_OK;
  if (comm->rank == 0 && !tpd_path_exists(done)) {
    fprintf(stderr, "%s: writing the %s preset (%s) to %s\n", BENCH_PROG, o->preset, tpd_dtype_name(o->dtype), dir);
    st = tpd_synth_write(&s, dir);
    if (st == TPD_OK) st = tpd_write_file(done, "", 0);
  }
  int bad = -1;
  TPD_TRY(tpd_comm_agree(comm, st == TPD_OK, &bad));
  if (bad >= 0 && st == TPD_OK) return TPD_FAIL(TPD_ERR_IO, "rank %d could not write the preset model", bad);
  return st;
}

/* ------------------------------------------------------------------ */
/* small collectives over doubles                                       */

static tpd_status all_doubles(tpd_comm *c, double mine, double *all) {
  return c->ops->host_allgather(c, &mine, all, sizeof mine);
}

/* Every rank's peak resident memory so far (ru_maxrss: KiB on Linux) into the row. */
static tpd_status peak_rss(tpd_comm *c, brow *row) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return TPD_FAIL(TPD_ERR_IO, "getrusage failed");
  double *all = malloc(sizeof(double) * (size_t)c->size);
  if (!all) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  tpd_status s = all_doubles(c, (double)ru.ru_maxrss / 1024.0, all);
  if (s == TPD_OK) {
    row->rss_max_mib = 0;
    row->n_rss = c->size < BENCH_MAX_RSS_RANKS ? c->size : BENCH_MAX_RSS_RANKS;
    for (int r = 0; r < c->size; r++) {
      if (all[r] > row->rss_max_mib) row->rss_max_mib = all[r];
      if (r < row->n_rss) row->rss_mib[r] = all[r];
    }
  }
  free(all);
  return s;
}

static tpd_status min_over_ranks(tpd_comm *c, double *v) {
  double *all = malloc(sizeof(double) * (size_t)c->size);
  if (!all) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  tpd_status s = all_doubles(c, *v, all);
  if (s == TPD_OK)
    for (int r = 0; r < c->size; r++)
      if (all[r] < *v) *v = all[r];
  free(all);
  return s;
}

/* ------------------------------------------------------------------ */
/* energy over the job: every rank opens its meter; RAPL counts a node's
 * packages once (node-local rank 0), NVML counts each rank's GPU */

typedef struct {
  tpd_energy *m;
  int counts;    /* this rank's joules are added */
  int available; /* on every rank that counts */
} job_energy;

static tpd_status energy_open(tpd_comm *c, int gpu, job_energy *je, bmachine *mc) {
  memset(je, 0, sizeof *je);
  TPD_TRY(gpu ? tpd_energy_open_nvml(NULL, c->local_rank, &je->m) : tpd_energy_open_rapl(NULL, &je->m));
  je->counts = gpu || c->local_rank == 0;
  /* agree: available only if every counting rank has it; the reason of the first that has not */
  struct {
    int ok;
    char reason[256];
  } mine, *all = malloc(sizeof mine * (size_t)c->size);
  if (!all) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  memset(&mine, 0, sizeof mine);
  mine.ok = !je->counts || tpd_energy_available(je->m);
  snprintf(mine.reason, sizeof mine.reason, "%s", tpd_energy_reason(je->m));
  tpd_status s = c->ops->host_allgather(c, &mine, all, sizeof mine);
  if (s == TPD_OK) {
    je->available = 1;
    for (int r = 0; r < c->size && je->available; r++)
      if (!all[r].ok) {
        je->available = 0;
        if (c->size > 1 && r != 0) snprintf(mc->energy_reason, sizeof mc->energy_reason, "rank %d: %s", r, all[r].reason);
        else snprintf(mc->energy_reason, sizeof mc->energy_reason, "%s", all[r].reason);
      }
  }
  free(all);
  mc->have_energy = je->available;
  if (je->available) snprintf(mc->energy_source, sizeof mc->energy_source, "%s", tpd_energy_source(je->m));
  return s;
}

/* joules of the whole job since the meter opened (collective) */
static tpd_status energy_read(tpd_comm *c, job_energy *je, double *joules) {
  double mine = 0;
  tpd_status s = TPD_OK;
  if (je->counts) s = tpd_energy_read(je->m, &mine);
  int bad = -1;
  TPD_TRY(tpd_comm_agree(c, s == TPD_OK, &bad));
  if (bad >= 0) return s != TPD_OK ? s : TPD_FAIL(TPD_ERR_IO, "rank %d could not read its energy counter", bad);
  double *all = malloc(sizeof(double) * (size_t)c->size);
  if (!all) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  s = all_doubles(c, mine, all);
  *joules = 0;
  for (int r = 0; s == TPD_OK && r < c->size; r++) *joules += all[r];
  free(all);
  return s;
}

/* ------------------------------------------------------------------ */
/* one configuration                                                    */

typedef struct {
  tpd_engine *e;
  tpd_comm *timed;
  tpd_membw_probe *probe; /* NULL: no interleaved probe (GPU backend) */
  job_energy *energy;
} bctx;

/* One decode step of the B items (tokens fed back), as every timed step
 * runs: a pass of the bandwidth probe first (when there is one: floor and
 * step sample the machine alike, and the probe leaves the caches cold), a
 * barrier, then the step alone on the clock. */
typedef struct {
  double ms, comm_ms, comm_bytes, probe_gbs;
  long allreduces;
} step_sample;

static tpd_status one_step(bctx *x, tpd_step_item *items, int B, int32_t *tok, step_sample *o) {
  tpd_comm *comm = x->timed;
  for (int b = 0; b < B; b++) items[b].tokens = &tok[b];
  o->probe_gbs = x->probe ? tpd_membw_pass(x->probe) : 0;
  TPD_TRY(comm->ops->barrier(comm));
  bench_timed_reset(comm);
  const double t0 = tpd_now_ms();
  TPD_TRY(tpd_engine_step(x->e, items, B, tok, NULL));
  o->ms = tpd_now_ms() - t0;
  bench_timed_get(comm, &o->comm_ms, &o->comm_bytes, NULL);
  o->allreduces = bench_timed_allreduces(comm);
  return TPD_OK;
}

/* Fresh sequences at the configuration's context: every block of steps
 * then attends to the same positions. */
static tpd_status reopen(tpd_engine *e, int *slots, tpd_step_item *items, int B, int ctx) {
  for (int b = 0; b < B; b++) {
    if (slots[b] >= 0) tpd_engine_seq_close(e, slots[b]);
    slots[b] = -1;
  }
  for (int b = 0; b < B; b++) {
    TPD_TRY(tpd_engine_seq_open(e, &slots[b]));
    TPD_TRY(tpd_engine_seq_skip(e, slots[b], ctx));
    items[b].slot = slots[b];
  }
  return TPD_OK;
}

/* A block as the main one runs: fresh sequences, warmup untimed steps (the
 * first after an option change may capture a device graph), n timed; the
 * median step time, and the best probe pass into *best. */
static tpd_status time_block(bctx *x, int *slots, tpd_step_item *items, int B, int32_t *tok, int ctx, int warmup,
                             int n, double *ms, double *best, double *median) {
  TPD_TRY(reopen(x->e, slots, items, B, ctx));
  for (int s = 0; s < warmup + n; s++) {
    step_sample ss;
    TPD_TRY(one_step(x, items, B, tok, &ss));
    if (ss.probe_gbs > *best) *best = ss.probe_gbs;
    if (s >= warmup) ms[s - warmup] = ss.ms;
  }
  *median = tpd_percentile(ms, n, 50);
  return TPD_OK;
}

/* Exposed communication (TP > 1): the same block without the all-reduces
 * (wrong results, the right timing of everything else), then with overlap
 * flipped; exposed = step time - step time without all-reduces.  Both
 * blocks run as the main one did (fresh sequences at the same context,
 * the same warm-up, a probe pass before each step), so the difference is
 * the all-reduces' and nothing else's. */
static tpd_status measure_exposed(bctx *x, const bopts *o, int *slots, tpd_step_item *items, int B, int32_t *tok,
                                  int ctx, double *ms, double *best, brow *row) {
  tpd_engine *e = x->e;
  const int ov = tpd_engine_get_option(e, TPD_OPT_OVERLAP), n = (int)o->steps, w = (int)o->warmup;
  double other = 0;
  TPD_TRY(tpd_engine_set_option(e, TPD_OPT_SKIP_ALLREDUCE, 1));
  tpd_status st = time_block(x, slots, items, B, tok, ctx, w > 0 ? w : 1, n, ms, best, &row->nocomm_ms);
  TPD_TRY(tpd_engine_set_option(e, TPD_OPT_SKIP_ALLREDUCE, 0));
  TPD_TRY(st);
  TPD_TRY(tpd_engine_set_option(e, TPD_OPT_OVERLAP, !ov));
  st = time_block(x, slots, items, B, tok, ctx, w > 0 ? w : 1, n, ms, best, &other);
  TPD_TRY(tpd_engine_set_option(e, TPD_OPT_OVERLAP, ov));
  TPD_TRY(st);
  row->have_exposed = 1;
  row->overlap = ov;
  row->exposed_ms = row->ms_med - row->nocomm_ms;
  row->exposed_on_ms = (ov ? row->ms_med : other) - row->nocomm_ms;
  row->exposed_off_ms = (ov ? other : row->ms_med) - row->nocomm_ms;
  return TPD_OK;
}

static tpd_status run_config(bctx *x, const bopts *o, int B, int ctx, brow *row) {
  tpd_engine *e = x->e;
  tpd_comm *comm = x->timed;
  const tpd_model_config *c = tpd_engine_config(e);
  tpd_engine_info info;
  tpd_engine_get_info(e, &info);
  const int n = (int)(o->warmup + o->steps), ns = (int)o->steps;
  int *slots = malloc(sizeof(int) * (size_t)B);
  tpd_step_item *items = calloc((size_t)B, sizeof *items);
  int32_t *tok = malloc(sizeof(int32_t) * (size_t)B);
  double *ms = malloc(sizeof(double) * (size_t)n);
  double *probe_gbs = malloc(sizeof(double) * (size_t)n);
  double *comm_ms = malloc(sizeof(double) * (size_t)n);
  tpd_status st = TPD_OK;
  if (!slots || !items || !tok || !ms || !probe_gbs || !comm_ms) {
    st = TPD_FAIL(TPD_ERR_OOM, "out of memory");
    goto done;
  }
  for (int b = 0; b < B; b++) {
    slots[b] = -1;
    items[b].n_tokens = 1;
    items[b].stream = (uint64_t)b;
    tok[b] = (int32_t)((7919u * (unsigned)(b + 1)) % (unsigned)c->vocab);
  }
  TPD_TRY_GOTO(reopen(e, slots, items, B, ctx), st, done);
  double kv_tokens = 0, comm_bytes = 0, best = 0;
  long graph_steps = 0; /* TP > 1 steps whose all-reduces bypassed the host calls */
  for (int s = 0; s < n; s++) {
    step_sample ss;
    TPD_TRY_GOTO(one_step(x, items, B, tok, &ss), st, done);
    ms[s] = ss.ms, comm_ms[s] = ss.comm_ms, probe_gbs[s] = ss.probe_gbs;
    if (ss.probe_gbs > best) best = ss.probe_gbs;
    if (s >= o->warmup) {
      comm_bytes += ss.comm_bytes;
      graph_steps += info.tp > 1 && ss.allreduces == 0;
      for (int b = 0; b < B; b++) kv_tokens += tpd_engine_seq_len(e, slots[b]); /* positions read, new one included */
    }
  }
  row->backend = info.backend;
  row->tp = info.tp;
  row->threads = info.n_threads;
  row->batch = B;
  row->ctx = ctx;
  row->steps = ns;
  row->ctx_attended = kv_tokens / ns / B;
  row->ms_med = tpd_percentile(ms + o->warmup, ns, 50);
  row->ms_p90 = tpd_percentile(ms + o->warmup, ns, 90);
  row->ms_best = tpd_percentile(ms + o->warmup, ns, 0);
  row->tok_s_user = 1e3 / row->ms_med;
  row->tok_s_sys = B * row->tok_s_user;
  row->tok_s_rank = row->tok_s_sys / info.tp;
  if (graph_steps) {
    snprintf(row->host_comm_reason, sizeof row->host_comm_reason,
             "graph replay: the step's all-reduces run inside a captured device graph, not through host calls "
             "(%ld of %d steps)", graph_steps, ns);
  } else {
    row->have_host_comm = 1;
    row->host_comm_ms = tpd_percentile(comm_ms + o->warmup, ns, 50);
    row->host_comm_frac = row->host_comm_ms / row->ms_med;
    row->comm_bytes = comm_bytes / ns;
  }
  row->bytes_step = info.weight_bytes + kv_tokens / ns * info.kv_bytes_per_token + B * info.embed_row_bytes;
  row->gbs = row->bytes_step / (row->ms_med * 1e-3) / 1e9;
  double med_gbs = x->probe ? tpd_percentile(probe_gbs, n, 50) : 0;
  if (info.tp > 1) TPD_TRY_GOTO(measure_exposed(x, o, slots, items, B, tok, ctx, ms, &best, row), st, done);
  else snprintf(row->exposed_reason, sizeof row->exposed_reason, "TP 1: no all-reduces");
  /* the floor's bandwidth: every rank's best pass over all its blocks, the
   * slowest rank's (a probe reading low on a busy moment cannot drag the
   * floor below what the machine showed it can do) */
  TPD_TRY_GOTO(min_over_ranks(comm, &best), st, done);
  /* the median on the same basis (slowest rank's), so best >= median holds
   * across ranks too: rank 0's median can exceed another rank's best */
  TPD_TRY_GOTO(min_over_ranks(comm, &med_gbs), st, done);
  row->read_gbs = x->probe ? best : 0;
  row->read_med_gbs = med_gbs;
  row->frac = row->read_gbs > 0 ? row->gbs / row->read_gbs : 0;
  TPD_TRY_GOTO(peak_rss(comm, row), st, done);

  /* energy: the same number of steps again, back to back, probe-free */
  if (x->energy && x->energy->available) {
    double j0 = 0, j1 = 0;
    TPD_TRY_GOTO(reopen(e, slots, items, B, ctx), st, done);
    for (int s = 0; s < (info.tp > 1 ? 1 : 0); s++) /* the options were changed back: recapture untimed */
      TPD_TRY_GOTO(tpd_engine_step(e, items, B, tok, NULL), st, done);
    TPD_TRY_GOTO(comm->ops->barrier(comm), st, done);
    TPD_TRY_GOTO(energy_read(comm, x->energy, &j0), st, done);
    const double t0 = tpd_now_ms();
    for (int s = 0; s < ns; s++) TPD_TRY_GOTO(tpd_engine_step(e, items, B, tok, NULL), st, done);
    TPD_TRY_GOTO(comm->ops->barrier(comm), st, done);
    const double sec = (tpd_now_ms() - t0) * 1e-3;
    TPD_TRY_GOTO(energy_read(comm, x->energy, &j1), st, done);
    const double joules = j1 - j0;
    if (joules > 0) {
      row->have_energy = 1;
      row->j_per_tok = joules / ((double)ns * B);
      row->tok_s_w = (double)ns * B / joules;
      row->watts = joules / sec;
    }
  }
done:
  for (int b = 0; slots && b < B; b++)
    if (slots[b] >= 0) tpd_engine_seq_close(e, slots[b]);
  free(slots);
  free(items);
  free(tok);
  free(ms);
  free(probe_gbs);
  free(comm_ms);
  return st;
}

/* ------------------------------------------------------------------ */
/* one backend: engine, probes, every (ctx, batch)                       */

static int max_of(const int *v, int n) {
  int m = v[0];
  for (int i = 1; i < n; i++)
    if (v[i] > m) m = v[i];
  return m;
}

/* Fills the floor of a row from the machine description. */
static void floor_row(const tpd_sol_model *sm, const bmachine *mc, brow *r) {
  tpd_sol_hw hw = mc->hw;
  if (!strcmp(mc->hw.source, "measured")) hw.mem_bw = r->read_gbs * 1e9; /* this row's best interleaved probe pass */
  if (!(hw.mem_bw > 0) || !(hw.peak_flops > 0)) {
    snprintf(r->floor_reason, sizeof r->floor_reason, "%s",
             mc->hw.name[0] ? "floor hardware incomplete" : "no floor for a GPU backend without --hw h100|h200");
    return;
  }
  if (tpd_sol_eval(sm, &hw, r->tp, r->batch, r->ctx_attended, &r->sol) != TPD_OK) {
    snprintf(r->floor_reason, sizeof r->floor_reason, "%s", tpd_last_error());
    tpd_clear_error();
    return;
  }
  r->have_floor = 1;
  /* the arithmetic of the step (the floor's flop count) per measured second,
   * and its share of the compute probe's rate */
  r->gflops = r->sol.flops / (r->ms_med * 1e-3) / 1e9;
  r->frac_peak = r->sol.t_compute / (r->ms_med * 1e-3);
  r->ratio = tpd_sol_check(&hw, &r->sol, r->ms_med * 1e-3, r->fault, sizeof r->fault);
  /* the fastest step against the probe's best pass (like for like); a best
   * step under the floor is a fault like a median one */
  char why[sizeof r->fault - 20];
  r->ratio_best = tpd_sol_check(&hw, &r->sol, r->ms_best * 1e-3, why, sizeof why);
  if (!r->fault[0] && why[0]) snprintf(r->fault, sizeof r->fault, "%s (the best step)", why);
}

/* The growth of ms/token with context at each batch of this backend's rows
 * [first, n): from the smallest context of the run to the largest, against
 * the floor's growth over the same positions with both floors on one
 * bandwidth (brow: have_growth).  The difference of two noisy times: a
 * growth below the floor's is flagged, as a step under the floor is, and so
 * is one whose two rows' best probe passes differ by more than
 * BENCH_GROWTH_DRIFT (a shared machine's bandwidth can change between
 * rows). */
static void growth_rows(const tpd_sol_model *sm, const bmachine *mc, brow *rows, int first, int n) {
  for (int i = first; i < n; i++) {
    brow *hi = &rows[i], *lo = NULL;
    int largest = hi->have_floor;
    for (int k = first; k < n && largest; k++) {
      const brow *r = &rows[k];
      if (r->batch != hi->batch || !r->have_floor) continue;
      if (r->ctx > hi->ctx || (r->ctx == hi->ctx && k > i)) largest = 0; /* the last row of the largest context */
      if (!lo || r->ctx < lo->ctx) lo = &rows[k];
    }
    if (!largest || !lo || lo->ctx >= hi->ctx) continue;
    tpd_sol_hw hw = mc->hw;
    if (!strcmp(mc->hw.source, "measured")) hw.mem_bw = fmax(lo->read_gbs, hi->read_gbs) * 1e9;
    tpd_sol_result a, b;
    if (tpd_sol_eval(sm, &hw, hi->tp, hi->batch, lo->ctx_attended, &a) != TPD_OK ||
        tpd_sol_eval(sm, &hw, hi->tp, hi->batch, hi->ctx_attended, &b) != TPD_OK || !(b.t_step > a.t_step)) {
      tpd_clear_error();
      continue;
    }
    hi->have_growth = 1;
    hi->growth_from_ctx = lo->ctx;
    hi->growth_bw_gbs = hw.mem_bw / 1e9;
    hi->growth_ms = hi->ms_med - lo->ms_med;
    hi->growth_best_ms = hi->ms_best - lo->ms_best;
    hi->growth_floor_ms = (b.t_step - a.t_step) * 1e3;
    hi->growth_ratio = hi->growth_ms / hi->growth_floor_ms;
    hi->growth_ratio_best = hi->growth_best_ms / hi->growth_floor_ms;
    const double drift = fmax(lo->read_gbs, hi->read_gbs) / fmin(lo->read_gbs, hi->read_gbs);
    if (!strcmp(mc->hw.source, "measured") && !(drift <= 1 + BENCH_GROWTH_DRIFT))
      snprintf(hi->growth_fault, sizeof hi->growth_fault,
               "the two rows' best probe passes differ by %.0f %% (%.2f and %.2f GB/s): the machine's bandwidth changed "
               "between them, so the growth mixes two machines", (drift - 1) * 100, lo->read_gbs, hi->read_gbs);
    else if (!(hi->growth_ratio >= 1) || !(hi->growth_ratio_best >= 1))
      snprintf(hi->growth_fault, sizeof hi->growth_fault,
               "grew less than the floor's growth (%s %.3f ms against %.3f): the difference of two noisy times, or a "
               "probe that read low", hi->growth_ratio >= 1 ? "best steps" : "median",
               hi->growth_ratio >= 1 ? hi->growth_best_ms : hi->growth_ms, hi->growth_floor_ms);
  }
}

void bench_fill_machine(bmachine *mc, const bopts *o, const tpd_engine *e, const char *comm_name, const char *note) {
  tpd_engine_info info;
  tpd_engine_get_info(e, &info);
  const tpd_model_config *c = tpd_engine_config(e);
  memset(mc, 0, sizeof *mc);
  mc->backend = info.backend;
  mc->kernels = info.kernels;
  mc->tp = info.tp;
  mc->threads = info.n_threads;
  mc->weight_dtype = info.weight_dtype;
  mc->n_params = tpd_config_n_params(c);
  mc->comm_name = comm_name;
  snprintf(mc->comm_note, sizeof mc->comm_note, "%s", note);
  snprintf(mc->model_name, sizeof mc->model_name, "%s", o->preset ? o->preset : c->model_type);
}

tpd_status bench_run_backend(const bopts *o, tpd_comm *comm, const char *dir, const char *backend, bresults *res,
                              int *skipped) {
  *skipped = 0;
  /* a GPU backend with TP > 1 all-reduces over NCCL when the build has it
   * (every rank or none); otherwise through MPI with host staging */
  tpd_comm *nccl = NULL, *use = comm;
  char comm_note[300] = "";
  TPD_TRY(tpd_comm_for_backend(comm, backend, &use, &nccl, comm_note, sizeof comm_note));
  tpd_comm *timed = NULL;
  TPD_TRY(bench_timed_comm_create(use, &timed));
  const int max_b = max_of(o->batches, o->n_batches), max_c = max_of(o->ctxs, o->n_ctxs);
  /* every block of steps starts from fresh sequences at the context: the
   * longest is the context, the warm-up (at least 1) and the timed steps */
  tpd_engine_opts eo = {TPD_ENGINE_OPTS_INIT, .model_dir = dir, .backend = backend, .n_threads = (int)o->threads, .max_seqs = max_b,
                        .max_ctx = (int)(max_c + o->warmup + o->steps + 2), .device = -1, .kv_cache = o->kv_cache,
                        .activations = o->activations};
  tpd_engine *e = NULL;
  tpd_status st = tpd_engine_create(&eo, timed, &e);
  int bad = -1;
  TPD_TRY(tpd_comm_agree(comm, st == TPD_OK, &bad));
  if (bad >= 0) {
    if (o->n_backends == 1) {
      timed->ops->destroy(timed);
      tpd_comm_destroy(nccl);
      tpd_cli_die_agreed(BENCH_PROG, comm, bad);
    }
    if (comm->rank == bad && bad != 0)
      fprintf(stderr, "%s: backend %s skipped (rank %d): %s\n", BENCH_PROG, backend, bad, tpd_last_error());
    if (bad == 0)
      snprintf(res->skipped[res->n_skipped++], sizeof res->skipped[0], "backend %s: %s", backend, tpd_last_error());
    else
      snprintf(res->skipped[res->n_skipped++], sizeof res->skipped[0], "backend %s: engine creation failed on rank %d",
               backend, bad);
    tpd_clear_error();
    timed->ops->destroy(timed);
    tpd_comm_destroy(nccl);
    *skipped = 1;
    return TPD_OK;
  }
  tpd_engine_info info;
  tpd_engine_get_info(e, &info);
  const tpd_model_config *c = tpd_engine_config(e);
  const int gpu = strcmp(info.backend, "cpu") != 0;
  bmachine *mc = &res->mach[res->n_mach++];
  bench_fill_machine(mc, o, e, nccl ? "nccl" : comm->ops->name, comm_note);

  /* the speed-of-light model of this checkpoint as this engine stores it */
  const int kv_r = c->n_kv_heads >= info.tp ? c->n_kv_heads / info.tp : 1;
  const double kv_elem = info.kv_bytes_per_token / (2.0 * c->n_layers * kv_r * c->head_dim);
  const double act_elem = !gpu || !timed->ops->data_on_device ? 4.0 : 2.0; /* host staging sums in f32 */
  tpd_sol_model sm;
  tpd_sol_model_from_config(c, (double)tpd_dtype_size(info.weight_dtype), 4.0, info.embed_row_bytes / c->dim, kv_elem,
                            act_elem, &sm);
  snprintf(sm.name, sizeof sm.name, "%s", mc->model_name);

  /* this machine, measured: peak rate, copy bandwidth, link; all ranks at once */
  tpd_membw_probe *probe = NULL;
  job_energy je;
  memset(&je, 0, sizeof je);
  if (gpu) {
    if (o->hw) TPD_TRY_GOTO(tpd_sol_hw_preset(o->hw, &mc->hw), st, out);
  } else {
    snprintf(mc->hw.name, sizeof mc->hw.name, "this machine");
    snprintf(mc->hw.source, sizeof mc->hw.source, "measured");
    TPD_TRY_GOTO(comm->ops->barrier(comm), st, out);
    double peak = bench_peak_flops(info.n_threads, info.weight_dtype == TPD_BF16 && info.matmul_act_dtype == TPD_BF16, &mc->peak_what);
    TPD_TRY_GOTO(min_over_ranks(comm, &peak), st, out);
    mc->hw.peak_flops = peak;
    tpd_membw copy;
    TPD_TRY_GOTO(comm->ops->barrier(comm), st, out);
    mc->copy_gbs = tpd_membw_copy(info.n_threads, (size_t)o->membw_mb << 19, 3, &copy) ? copy.median_gbs : 0;
    TPD_TRY_GOTO(min_over_ranks(comm, &mc->copy_gbs), st, out);
    TPD_TRY_GOTO(bench_comm_fit(comm, &mc->hw.link_alpha, &mc->hw.link_bw), st, out);
    probe = tpd_membw_open(info.n_threads, (size_t)o->membw_mb << 20, 0);
    if (!probe) {
      st = TPD_FAIL(TPD_ERR_OOM, "bandwidth probe: out of memory");
      goto out;
    }
    tpd_membw_pass(probe); /* warm-up */
    double best = 0;
    for (int k = 0; k < 3; k++) best = fmax(best, tpd_membw_pass(probe));
    TPD_TRY_GOTO(min_over_ranks(comm, &best), st, out);
    mc->hw.mem_bw = best * 1e9; /* raised below to the best of the rows' interleaved passes */
  }
  TPD_TRY_GOTO(energy_open(comm, gpu, &je, mc), st, out);

  /* the model's byte count against the engine's own (the slowest rank's: the most any rank holds) */
  tpd_sol_result chk;
  double neg_wb = -info.weight_bytes;
  TPD_TRY_GOTO(min_over_ranks(comm, &neg_wb), st, out);
  if (comm->rank == 0 && mc->hw.mem_bw > 0 && tpd_sol_eval(&sm, &mc->hw, info.tp, 1, 1, &chk) == TPD_OK &&
      fabs(chk.weight_bytes + neg_wb) > 1e-3 * -neg_wb)
    fprintf(stderr, "%s: note: the floor counts %.0f weight bytes on the largest rank, the engine holds %.0f\n", BENCH_PROG,
            chk.weight_bytes, -neg_wb);
  tpd_clear_error();

  bctx x = {e, timed, probe, &je};
  const int first_row = res->n_rows;
  for (int ci = 0; ci < o->n_ctxs; ci++)
    for (int bi = 0; bi < o->n_batches; bi++) {
      if (res->n_rows >= BENCH_MAX_ROWS) break;
      brow *r = &res->rows[res->n_rows];
      memset(r, 0, sizeof *r);
      TPD_TRY_GOTO(run_config(&x, o, o->batches[bi], o->ctxs[ci], r), st, out);
      floor_row(&sm, mc, r);
      res->n_rows++;
    }
  if (probe) /* the machine's bandwidth: the best of the rows' (each row's floor uses its own) */
    for (int i = 0; i < res->n_rows; i++)
      if (res->rows[i].backend == info.backend && res->rows[i].read_gbs * 1e9 > mc->hw.mem_bw)
        mc->hw.mem_bw = res->rows[i].read_gbs * 1e9;
  growth_rows(&sm, mc, res->rows, first_row, res->n_rows);
out:
  tpd_energy_close(je.m);
  tpd_membw_close(probe);
  tpd_engine_destroy(e);
  timed->ops->destroy(timed);
  tpd_comm_destroy(nccl);
  return st;
}
