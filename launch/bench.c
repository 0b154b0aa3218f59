/* tpdecode-bench: decode throughput, latency and energy against a
 * speed-of-light floor measured in the same run; the latency/efficiency
 * Pareto curve; an all-reduce micro-benchmark.  docs/performance.md explains
 * every column.
 *   [mpirun -np N] tpdecode-bench --preset 1b --dtype bf16 --batch 1,16 --threads 2
 *   mpirun -np 2 tpdecode-bench --preset small --sweep --predict h200 --out-dir out
 *   mpirun -np 2 tpdecode-bench --comm */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/membw.h"
#include "launch/bench.h"
#include "launch/cli.h"
#include "runtime/energy.h"
#include "runtime/fileio.h"
#include "runtime/generate.h"
#include "runtime/pareto.h"
#include "runtime/sol.h"
#include "runtime/synth.h"
#include "runtime/timer.h"
#include "runtime/tpdecode.h"

static const char *PROG = "tpdecode-bench";

#define MAX_LIST 32
#define ONE_RANK_BW "one rank: the all-reduce moves no data, so no bandwidth"
#define MAX_ROWS 512

typedef struct {
  const char *model, *preset, *cache, *out_dir, *hw;
  const char *backends[4];
  int n_backends;
  tpd_dtype dtype;
  long seed, steps, warmup, threads, membw_mb;
  int batches[MAX_LIST], n_batches, ctxs[MAX_LIST], n_ctxs;
  int json, csv, sweep, comm, help, version;
  int steps_set, warmup_set, batch_set, ctx_set;
  /* --comm */
  long comm_min, comm_max, comm_iters, comm_warmup;
  tpd_dtype comm_dtype;
  /* --predict */
  const char *predict, *predict_model;
  int predict_tp[MAX_LIST], n_predict_tp, predict_batch[MAX_LIST], n_predict_batch;
  long predict_ctx;
  double predict_hop_us; /* < 0: the preset's */
} bopts;

/* One measured configuration. */
typedef struct {
  const char *backend;
  int tp, batch, ctx, steps, threads;
  double ctx_attended;               /* mean positions read per sequence per timed step */
  double ms_med, ms_p90;             /* per step = per output token of each user */
  double tok_s_user, tok_s_sys, tok_s_rank;
  /* host time inside the communicator's calls per step (median) and the
   * message bytes per step; not available (reason) when the step's
   * all-reduces do not pass through host calls (a replayed device graph) */
  int have_host_comm;
  double host_comm_ms, host_comm_frac, comm_bytes;
  char host_comm_reason[200];
  /* exposed communication: step time minus the same steps without the
   * all-reduces (TPD_OPT_SKIP_ALLREDUCE), with the run's overlap setting,
   * and both overlap settings; TP > 1 only (reason otherwise) */
  int have_exposed, overlap;
  double nocomm_ms, exposed_ms, exposed_on_ms, exposed_off_ms;
  char exposed_reason[120];
  /* memory bytes per step, achieved GB/s; the read probe: best pass of the
   * row (the floor; slowest rank's best), its median; achieved / best */
  double bytes_step, gbs, read_gbs, read_med_gbs, frac;
  int have_floor;
  char floor_reason[160];
  tpd_sol_result sol;                /* floor on this machine (or --hw) */
  double ratio;                      /* ms_med / floor ms */
  char fault[200];                   /* "" or why the row is a measurement fault (ratio below 1) */
  int have_energy;
  double j_per_tok, tok_s_w, watts;
  int on_frontier;
} brow;

/* What was measured about the machine (per rank), once per backend. */
typedef struct {
  const char *backend, *kernels;
  int tp, threads;
  tpd_sol_hw hw;
  const char *peak_what;
  double copy_gbs;
  int have_energy;
  char energy_source[128], energy_reason[512];
  char model_name[64];
  const char *comm_name; /* the communicator the engine's collectives used */
  char comm_note[300];
  double n_params;
  tpd_dtype weight_dtype;
} bmachine;

static void usage(FILE *f) {
  fprintf(f,
          "usage: [mpirun -np N] tpdecode-bench (-m DIR | --preset tiny|small|1b|8b) [options]\n"
          "       [mpirun -np N] tpdecode-bench --comm [options]\n"
          "       tpdecode-bench --predict h100|h200 [options]\n"
          "model and sweep\n"
          "  -m, --model DIR        Hugging Face checkpoint to time (default: none; or --preset)\n"
          "  --preset NAME          synthesise tiny|small|1b|8b once into --model-cache (default: none)\n"
          "  --dtype f32|bf16|f16   dtype of a preset model (default bf16)\n"
          "  --seed N               seed of a preset model (default 1)\n"
          "  --model-cache DIR      where preset models are written (default /tmp/tpdecode-models)\n"
          "  --batch LIST           batch sizes, each >= 1 (default 1,16; with --sweep 1,2,4,8,16)\n"
          "  --ctx LIST             tokens already in each sequence's KV cache (default 64; with --sweep 64,256)\n"
          "  --steps N              timed decode steps per configuration (default 16; with --sweep 8)\n"
          "  --warmup N             untimed steps first (default 3; with --sweep 2)\n"
          "  --threads N            CPU threads per rank (default: the node's online CPUs / ranks on the node;\n"
          "                         more than that share is capped to it, with a warning)\n"
          "  --membw-mb N           MB the bandwidth probe reads per pass (default 1024)\n"
          "  --backend LIST         cpu and/or cuda (default cpu); TP comes from the launch\n"
          "  --hw h100|h200         floor hardware for a GPU backend (default: none; CPU rows use this\n"
          "                         machine, measured)\n"
          "outputs (rank 0)\n"
          "  --json | --csv         machine-readable rows on stdout (default: the table)\n"
          "  --sweep                Pareto frontier + SVG plot, written into --out-dir (default: off)\n"
          "  --out-dir DIR          write bench.json, bench.csv, pareto.svg, comm.json, comm.csv there\n"
          "                         (default: no files; with --sweep the current directory)\n"
          "speed-of-light prediction for hardware not at hand\n"
          "  --predict h100|h200    add the predicted curve, 8 GPUs per node (default: off)\n"
          "  --predict-model 8b|70b|1b  shape, bf16 (default 8b)\n"
          "  --predict-tp LIST      TP degrees (default 1,2,4,8)\n"
          "  --predict-batch LIST   batch sizes (default 1,2,4,...,256)\n"
          "  --predict-ctx N        context (default 1024)\n"
          "  --predict-hop-us X     all-reduce latency per ring hop in us (default: the preset's assumed 1)\n"
          "all-reduce micro-benchmark\n"
          "  --comm                 time all-reduce for every comm backend present (default: off)\n"
          "  --comm-min BYTES       smallest message (default 4096)\n"
          "  --comm-max BYTES       largest message (default 67108864)\n"
          "  --comm-iters N         timed iterations per size (default 20)\n"
          "  --comm-warmup N        untimed iterations per size (default 5)\n"
          "  --comm-dtype f32|bf16  element type (default f32)\n"
          "  --version              print the version and the build's backends\n"
          "  -h, --help             this text\n");
}

/* The options: 1 takes a value, 0 is a flag. */
static const struct {
  const char *name;
  int value;
} OPTIONS[] = {{"-m", 1}, {"--model", 1}, {"--preset", 1}, {"--model-cache", 1}, {"--out-dir", 1}, {"--hw", 1},
               {"--backend", 1}, {"--dtype", 1}, {"--comm-dtype", 1}, {"--batch", 1}, {"--ctx", 1},
               {"--predict", 1}, {"--predict-model", 1}, {"--predict-tp", 1}, {"--predict-batch", 1},
               {"--predict-ctx", 1}, {"--predict-hop-us", 1}, {"--seed", 1}, {"--steps", 1}, {"--warmup", 1},
               {"--threads", 1}, {"--membw-mb", 1}, {"--comm-min", 1}, {"--comm-max", 1}, {"--comm-iters", 1},
               {"--comm-warmup", 1}, {"--json", 0}, {"--csv", 0}, {"--sweep", 0}, {"--comm", 0}};

/* 1: takes a value, 0: a flag, -1: unknown */
static int option_kind(const char *a) {
  for (size_t i = 0; i < sizeof OPTIONS / sizeof OPTIONS[0]; i++)
    if (!strcmp(a, OPTIONS[i].name)) return OPTIONS[i].value;
  return -1;
}

/* "1,2,16": at most MAX_LIST integers, each in [lo, hi] */
static tpd_status parse_list(const char *opt, const char *v, long lo, long hi, int *dst, int *n) {
  int k = 0;
  const char *p = v;
  if (!*p) return TPD_FAIL(TPD_ERR_ARG, "%s '': expected a comma-separated list of integers >= %ld", opt, lo);
  while (*p) {
    const char *comma = strchr(p, ',');
    const size_t len = comma ? (size_t)(comma - p) : strlen(p);
    char item[32];
    long x;
    if (len == 0 || len >= sizeof item)
      return TPD_FAIL(TPD_ERR_ARG, "%s '%s': expected a comma-separated list of integers >= %ld", opt, v, lo);
    memcpy(item, p, len);
    item[len] = 0;
    if (!tpd_cli_int(item, LONG_MIN, LONG_MAX, &x))
      return TPD_FAIL(TPD_ERR_ARG, "%s '%s': '%s' is not an integer (expected a comma-separated list of integers)",
                      opt, v, item);
    if (x < lo || x > hi) return TPD_FAIL(TPD_ERR_ARG, "%s '%s': %ld is out of range [%ld, %ld]", opt, v, x, lo, hi);
    if (k == MAX_LIST) return TPD_FAIL(TPD_ERR_ARG, "%s '%s': at most %d values", opt, v, MAX_LIST);
    dst[k++] = (int)x;
    p += len;
    if (*p == ',') {
      p++;
      if (!*p) return TPD_FAIL(TPD_ERR_ARG, "%s '%s': a trailing comma", opt, v);
    }
  }
  *n = k;
  return TPD_OK;
}

static tpd_status parse_dtype(const char *opt, const char *v, tpd_dtype *dt) {
  if (!strcmp(v, "f32")) *dt = TPD_F32;
  else if (!strcmp(v, "bf16")) *dt = TPD_BF16;
  else if (!strcmp(v, "f16")) *dt = TPD_F16;
  else return TPD_FAIL(TPD_ERR_ARG, "%s '%s': expected f32, bf16 or f16", opt, v);
  return TPD_OK;
}

/* Parses argv; on error records one line and returns a status (identical on every rank). */
static tpd_status parse(int argc, char **argv, bopts *o) {
  memset(o, 0, sizeof *o);
  o->cache = "/tmp/tpdecode-models";
  o->backends[0] = "cpu";
  o->n_backends = 1;
  o->dtype = TPD_BF16;
  o->seed = 1;
  o->membw_mb = 1024;
  o->comm_min = 4096;
  o->comm_max = 64L << 20;
  o->comm_iters = 20;
  o->comm_warmup = 5;
  o->comm_dtype = TPD_F32;
  o->predict_model = "8b";
  o->predict_ctx = 1024;
  o->predict_hop_us = -1;
  static char backend_buf[64];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      o->help = 1;
      return TPD_OK;
    }
    if (!strcmp(a, "--version")) {
      o->version = 1;
      return TPD_OK;
    }
    const int kind = option_kind(a);
    if (kind < 0) {
      if (a[0] != '-')
        return TPD_FAIL(TPD_ERR_ARG, "unexpected argument '%s' (options start with '-'; see --help)", a);
      return TPD_FAIL(TPD_ERR_ARG, "unknown option '%s' (see --help)", a);
    }
    if (kind == 0) {
      if (!strcmp(a, "--json")) o->json = 1;
      else if (!strcmp(a, "--csv")) o->csv = 1;
      else if (!strcmp(a, "--sweep")) o->sweep = 1;
      else o->comm = 1;
      continue;
    }
    if (!v) return TPD_FAIL(TPD_ERR_ARG, "option %s needs a value", a);
    i++;
    long *field = NULL;
    long lo = 1, hi = 1L << 40;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--preset")) o->preset = v;
    else if (!strcmp(a, "--model-cache")) o->cache = v;
    else if (!strcmp(a, "--out-dir")) o->out_dir = v;
    else if (!strcmp(a, "--hw")) o->hw = v;
    else if (!strcmp(a, "--backend")) {
      snprintf(backend_buf, sizeof backend_buf, "%s", v);
      o->n_backends = 0;
      for (char *t = strtok(backend_buf, ","); t && o->n_backends < 4; t = strtok(NULL, ",")) {
        if (strcmp(t, "cpu") && strcmp(t, "cuda"))
          return TPD_FAIL(TPD_ERR_ARG, "--backend '%s': '%s' is not a backend (expected cpu and/or cuda)", v, t);
        o->backends[o->n_backends++] = t;
      }
      if (!o->n_backends) return TPD_FAIL(TPD_ERR_ARG, "--backend '%s': expected cpu and/or cuda", v);
    } else if (!strcmp(a, "--dtype")) TPD_TRY(parse_dtype(a, v, &o->dtype));
    else if (!strcmp(a, "--comm-dtype")) {
      TPD_TRY(parse_dtype(a, v, &o->comm_dtype));
      if (o->comm_dtype == TPD_F16) return TPD_FAIL(TPD_ERR_ARG, "--comm-dtype '%s': expected f32 or bf16", v);
    } else if (!strcmp(a, "--batch")) {
      TPD_TRY(parse_list(a, v, 1, 1 << 20, o->batches, &o->n_batches));
      o->batch_set = 1;
    } else if (!strcmp(a, "--ctx")) {
      TPD_TRY(parse_list(a, v, 0, 1 << 24, o->ctxs, &o->n_ctxs));
      o->ctx_set = 1;
    } else if (!strcmp(a, "--predict")) o->predict = v;
    else if (!strcmp(a, "--predict-model")) o->predict_model = v;
    else if (!strcmp(a, "--predict-tp")) TPD_TRY(parse_list(a, v, 1, 1 << 16, o->predict_tp, &o->n_predict_tp));
    else if (!strcmp(a, "--predict-batch"))
      TPD_TRY(parse_list(a, v, 1, 1 << 24, o->predict_batch, &o->n_predict_batch));
    else if (!strcmp(a, "--predict-ctx")) field = &o->predict_ctx, lo = 0;
    else if (!strcmp(a, "--predict-hop-us")) {
      if (!tpd_cli_float(v, 0, 1e6, &o->predict_hop_us))
        return TPD_FAIL(TPD_ERR_ARG, "--predict-hop-us '%s': expected microseconds in [0, 1e6]", v);
    } else if (!strcmp(a, "--seed")) field = &o->seed, lo = 0;
    else if (!strcmp(a, "--steps")) field = &o->steps, o->steps_set = 1, hi = 1 << 20;
    else if (!strcmp(a, "--warmup")) field = &o->warmup, lo = 0, o->warmup_set = 1, hi = 1 << 20;
    else if (!strcmp(a, "--threads")) field = &o->threads, hi = 1 << 20;
    else if (!strcmp(a, "--membw-mb")) field = &o->membw_mb, hi = 1 << 20;
    else if (!strcmp(a, "--comm-min")) field = &o->comm_min, lo = 4;
    else if (!strcmp(a, "--comm-max")) field = &o->comm_max, lo = 4;
    else if (!strcmp(a, "--comm-iters")) field = &o->comm_iters, hi = 1 << 24;
    else if (!strcmp(a, "--comm-warmup")) field = &o->comm_warmup, lo = 0, hi = 1 << 24;
    if (field) {
      long iv;
      if (!tpd_cli_int(v, lo, hi, &iv)) return TPD_FAIL(TPD_ERR_ARG, "%s '%s': expected an integer in [%ld, %ld]", a, v, lo, hi);
      *field = iv;
    }
  }
  if (o->model && o->preset) return TPD_FAIL(TPD_ERR_ARG, "pass one of -m DIR and --preset NAME, not both");
  if (!o->model && !o->preset && !o->comm && !o->predict)
    return TPD_FAIL(TPD_ERR_ARG, "nothing to do: pass -m DIR or --preset NAME (or --comm, or --predict; see --help)");
  if (o->comm_max < o->comm_min) return TPD_FAIL(TPD_ERR_ARG, "--comm-max %ld is smaller than --comm-min %ld",
                                                 o->comm_max, o->comm_min);
  if (!o->batch_set) {
    static const int sweep_b[] = {1, 2, 4, 8, 16};
    o->n_batches = o->sweep ? 5 : 2;
    for (int i = 0; i < o->n_batches; i++) o->batches[i] = o->sweep ? sweep_b[i] : (i ? 16 : 1);
  }
  if (!o->ctx_set) {
    o->n_ctxs = o->sweep ? 2 : 1;
    o->ctxs[0] = 64;
    o->ctxs[1] = 256;
  }
  if (!o->steps_set) o->steps = o->sweep ? 8 : 16;
  if (!o->warmup_set) o->warmup = o->sweep ? 2 : 3;
  if (!o->n_predict_tp) {
    o->n_predict_tp = 4;
    for (int i = 0; i < 4; i++) o->predict_tp[i] = 1 << i;
  }
  if (!o->n_predict_batch) {
    o->n_predict_batch = 9;
    for (int i = 0; i < 9; i++) o->predict_batch[i] = 1 << i;
  }
  if (o->sweep && !o->out_dir) o->out_dir = ".";
  if (o->preset) {
    tpd_synth_spec sp;
    TPD_TRY(tpd_synth_preset(o->preset, &sp));
  }
  if (o->hw) {
    tpd_sol_hw h;
    TPD_TRY(tpd_sol_hw_preset(o->hw, &h));
  }
  if (o->predict) {
    tpd_sol_hw h;
    tpd_sol_model m;
    TPD_TRY(tpd_sol_hw_preset(o->predict, &h));
    TPD_TRY(tpd_sol_model_preset(o->predict_model, &m));
  }
  return TPD_OK;
}

/* Writes the preset model once (rank 0) into the cache; every rank gets its path. */
static tpd_status ensure_preset(const bopts *o, tpd_comm *comm, char *dir, size_t cap) {
  tpd_synth_spec s;
  TPD_TRY(tpd_synth_preset(o->preset, &s));
  s.dtype = o->dtype;
  s.seed = (unsigned long long)o->seed;
  snprintf(dir, cap, "%s/%s-%s-s%ld", o->cache, o->preset, tpd_dtype_name(o->dtype), o->seed);
  char done[4200];
  snprintf(done, sizeof done, "%s/.complete", dir);
  tpd_status st = TPD_OK;
  if (comm->rank == 0 && !tpd_path_exists(done)) {
    fprintf(stderr, "%s: writing the %s preset (%s) to %s\n", PROG, o->preset, tpd_dtype_name(o->dtype), dir);
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
  if (x->probe) row->read_med_gbs = tpd_percentile(probe_gbs, n, 50);
  if (info.tp > 1) TPD_TRY_GOTO(measure_exposed(x, o, slots, items, B, tok, ctx, ms, &best, row), st, done);
  else snprintf(row->exposed_reason, sizeof row->exposed_reason, "TP 1: no all-reduces");
  /* the floor's bandwidth: every rank's best pass over all its blocks, the
   * slowest rank's (a probe reading low on a busy moment cannot drag the
   * floor below what the machine showed it can do) */
  TPD_TRY_GOTO(min_over_ranks(comm, &best), st, done);
  row->read_gbs = x->probe ? best : 0;
  row->frac = row->read_gbs > 0 ? row->gbs / row->read_gbs : 0;

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

typedef struct {
  brow rows[MAX_ROWS];
  int n_rows;
  bmachine mach[4];
  int n_mach;
  char skipped[4][600];
  int n_skipped;
} bresults;

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
  r->ratio = tpd_sol_check(&hw, &r->sol, r->ms_med * 1e-3, r->fault, sizeof r->fault);
}

static tpd_status run_backend(const bopts *o, tpd_comm *comm, const char *dir, const char *backend, bresults *res,
                              int *skipped) {
  *skipped = 0;
  /* a GPU backend with TP > 1 all-reduces over NCCL when the build has it
   * (every rank or none); otherwise through MPI with host staging */
  tpd_comm *nccl = NULL, *use = comm;
  char comm_note[300] = "";
  TPD_TRY(tpd_cli_engine_comm(comm, backend, &use, &nccl, comm_note, sizeof comm_note));
  tpd_comm *timed = NULL;
  TPD_TRY(bench_timed_comm_create(use, &timed));
  const int max_b = max_of(o->batches, o->n_batches), max_c = max_of(o->ctxs, o->n_ctxs);
  /* every block of steps starts from fresh sequences at the context: the
   * longest is the context, the warm-up (at least 1) and the timed steps */
  tpd_engine_opts eo = {.model_dir = dir, .backend = backend, .n_threads = (int)o->threads, .max_seqs = max_b,
                        .max_ctx = (int)(max_c + o->warmup + o->steps + 2), .device = -1};
  tpd_engine *e = NULL;
  tpd_status st = tpd_engine_create(&eo, timed, &e);
  int bad = -1;
  TPD_TRY(tpd_comm_agree(comm, st == TPD_OK, &bad));
  if (bad >= 0) {
    if (o->n_backends == 1) {
      timed->ops->destroy(timed);
      tpd_comm_destroy(nccl);
      tpd_cli_die_agreed(PROG, comm, bad);
    }
    if (comm->rank == bad && bad != 0)
      fprintf(stderr, "%s: backend %s skipped (rank %d): %s\n", PROG, backend, bad, tpd_last_error());
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
  memset(mc, 0, sizeof *mc);
  mc->backend = info.backend;
  mc->kernels = info.kernels;
  mc->tp = info.tp;
  mc->threads = info.n_threads;
  mc->weight_dtype = info.weight_dtype;
  mc->n_params = tpd_config_n_params(c);
  mc->comm_name = nccl ? "nccl" : comm->ops->name;
  snprintf(mc->comm_note, sizeof mc->comm_note, "%s", comm_note);
  snprintf(mc->model_name, sizeof mc->model_name, "%s", o->preset ? o->preset : c->model_type);

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
    double peak = bench_peak_flops(info.n_threads, info.weight_dtype == TPD_BF16 && tpd_cpu_bf16_dot(), &mc->peak_what);
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
    fprintf(stderr, "%s: note: the floor counts %.0f weight bytes on the largest rank, the engine holds %.0f\n", PROG,
            chk.weight_bytes, -neg_wb);
  tpd_clear_error();

  bctx x = {e, timed, probe, &je};
  for (int ci = 0; ci < o->n_ctxs; ci++)
    for (int bi = 0; bi < o->n_batches; bi++) {
      if (res->n_rows >= MAX_ROWS) break;
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
out:
  tpd_energy_close(je.m);
  tpd_membw_close(probe);
  tpd_engine_destroy(e);
  timed->ops->destroy(timed);
  tpd_comm_destroy(nccl);
  return st;
}

/* ------------------------------------------------------------------ */
/* the predicted curve                                                  */

typedef struct {
  tpd_sol_model model;
  tpd_sol_hw hw;
  tpd_sol_result pts[MAX_LIST * MAX_LIST];
  int n;
  int front[MAX_LIST * MAX_LIST], n_front; /* over every TP and batch, in increasing tokens/s per user */
  char on_front[MAX_LIST * MAX_LIST];
  char notes[4][160];
  int n_notes;
} bpredict;

static void predict(const bopts *o, bpredict *p) {
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
  double x[MAX_LIST * MAX_LIST], y[MAX_LIST * MAX_LIST];
  for (int i = 0; i < p->n; i++) x[i] = p->pts[i].tok_s_user, y[i] = p->pts[i].tok_s_rank;
  p->n_front = tpd_pareto_frontier(x, y, p->n, p->front);
  for (int i = 0; i < p->n_front; i++) p->on_front[p->front[i]] = 1;
}

/* ------------------------------------------------------------------ */
/* output                                                               */

static const char *null_if(int cond, char *buf, size_t cap, const char *fmt, double v) {
  if (!cond) return "n/a";
  snprintf(buf, cap, fmt, v);
  return buf;
}

static void print_machine(const bopts *o, const bmachine *mc) {
  printf("%s: %s, %.3g %s params (%s weights), TP=%d, %s/%s, %d thread%s per rank%s%s\n", PROG, mc->model_name,
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
    printf("%3s %6s %6s %9s %9s %10s %10s %10s %9s %8s %8s %8s %9s %7s %9s %4s %9s %8s %8s\n", "tp", "batch", "ctx",
           "ms/tok", "p90", "tok/s/user", "tok/s sys", "tok/s/rank", "host comm", "exposed", "MB/tok", "GB/s",
           "read GB/s", "of read", "floor ms", "by", "meas/flr", "J/tok", "tok/s/W");
    if (o->sweep) printf("(* on the Pareto frontier of its context)\n");
    int faults = 0, graph = 0;
    for (int i = 0; i < res->n_rows; i++) {
      const brow *r = &res->rows[i];
      if (r->backend != mc->backend) continue;
      char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], b7[32], b8[32];
      printf("%3d %6d %6d %9.3f %9.3f %10.2f %10.2f %10.2f %9s %8s %8.2f %8.2f %9s %7s %9s %4s %9s %8s %8s%s%s%s\n",
             r->tp, r->batch, r->ctx, r->ms_med, r->ms_p90, r->tok_s_user, r->tok_s_sys, r->tok_s_rank,
             null_if(r->have_host_comm, b7, 32, "%.3f", r->host_comm_ms),
             null_if(r->have_exposed, b8, 32, "%.3f", r->exposed_ms), r->bytes_step / r->batch / 1e6, r->gbs,
             null_if(r->read_gbs > 0, b1, 32, "%.2f", r->read_gbs), null_if(r->read_gbs > 0, b2, 32, "%.3f", r->frac),
             null_if(r->have_floor, b3, 32, "%.3f", r->sol.t_step * 1e3),
             r->have_floor ? (r->sol.compute_bound ? "flop" : "mem") : "n/a",
             null_if(r->have_floor, b4, 32, "%.2f", r->ratio), null_if(r->have_energy, b5, 32, "%.4f", r->j_per_tok),
             null_if(r->have_energy, b6, 32, "%.2f", r->tok_s_w), r->on_frontier ? " *" : "",
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
  json_num_or_null(j, "floor_ms_per_token", r->have_floor, r->sol.t_step * 1e3);
  json_num_or_null(j, "measured_over_floor", r->have_floor, r->ratio);
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
    "fault\n";

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
  fputc('\n', f);
}

static const bmachine *machine_of(const bresults *res, const brow *r) {
  for (int m = 0; m < res->n_mach; m++)
    if (res->mach[m].backend == r->backend) return &res->mach[m];
  return &res->mach[0];
}

/* ------------------------------------------------------------------ */
/* Pareto frontier and the plot                                         */

typedef struct {
  int use_energy;  /* y = tokens/s/W (else tokens/s per rank) */
  char y_label[160];
  int groups[MAX_ROWS]; /* group id per row: (backend, ctx) */
  int n_groups;
  int front[MAX_ROWS], n_front[16], front_off[16];
} bpareto;

static double row_y(const brow *r, int use_energy) { return use_energy ? r->tok_s_w : r->tok_s_rank; }

static void pareto_mark(bresults *res, bpareto *pp) {
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
    double xs[MAX_ROWS], ys[MAX_ROWS];
    int map[MAX_ROWS], k = 0, idx[MAX_ROWS];
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

static tpd_status write_text(const char *dir, const char *name, const char *text) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return tpd_write_file(path, text, strlen(text));
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

static tpd_status write_plot(const bopts *o, const bresults *res, const bpareto *pp, const bpredict *pr,
                             const char *dir) {
  /* measured and predicted never share a colour; every curve has its own legend entry */
  static const char *colors[] = {"#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#7f7f7f", "#393b79"};
  static const char *pcolors[] = {"#d62728", "#ff7f0e", "#e377c2", "#bcbd22", "#8c564b", "#843c39"};
  tpd_plot_series se[64];
  int ns = 0;
  /* storage for labels and coordinates */
  static char lab[MAX_ROWS + MAX_LIST * MAX_LIST][32];
  static const char *labp[MAX_ROWS + MAX_LIST * MAX_LIST];
  static double xs[MAX_ROWS * 2 + MAX_LIST * MAX_LIST * 2], ys[MAX_ROWS * 2 + MAX_LIST * MAX_LIST * 2];
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
             first->backend, machine_of(res, first)->model_name, tpd_dtype_name(machine_of(res, first)->weight_dtype),
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
  const tpd_status s = write_text(dir, "pareto.svg", svg);
  free(svg);
  return s;
}

static tpd_status ensure_dir(const char *dir) {
  if (tpd_is_dir(dir)) return TPD_OK;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return TPD_FAIL(TPD_ERR_IO, "cannot create output directory %s: %s", dir, strerror(errno));
  return TPD_OK;
}

/* ------------------------------------------------------------------ */
/* --comm                                                               */

typedef struct {
  const char *name;
  bench_comm_row rows[64];
  int n;
  char skip[300];
} bcomm;

static tpd_status run_comm(const bopts *o, tpd_comm *comm, bcomm *out, int *n_out) {
  bench_comm_opts co = {(size_t)o->comm_min, (size_t)o->comm_max, (int)o->comm_iters, (int)o->comm_warmup,
                        o->comm_dtype};
  *n_out = 0;
  bcomm *h = &out[(*n_out)++];
  memset(h, 0, sizeof *h);
  h->name = comm->size > 1 ? "mpi (host buffers)" : "single (host buffers, 1 rank)";
  TPD_TRY(bench_comm_host(comm, &co, h->rows, &h->n));
  bcomm *d = &out[(*n_out)++];
  memset(d, 0, sizeof *d);
  d->name = "nccl (device buffers)";
  if (comm->size > 1) TPD_TRY(bench_comm_nccl(comm, &co, d->rows, &d->n, d->skip, sizeof d->skip));
  else snprintf(d->skip, sizeof d->skip, "needs an MPI launch (mpirun -np N)");
  return TPD_OK;
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

/* ------------------------------------------------------------------ */

int main(int argc, char **argv) {
  tpd_comm *comm = NULL;
  tpd_status st = tpd_comm_create_default(&argc, &argv, &comm);
  if (st != TPD_OK) tpd_cli_die(PROG, NULL, st, 1);
  bopts o;
  st = parse(argc, argv, &o);
  if (st != TPD_OK) tpd_cli_die(PROG, comm, st, 1);
  if (o.help || o.version) {
    if (comm->rank == 0) {
      if (o.help) usage(stdout);
      else tpd_cli_version(PROG);
    }
    tpd_comm_destroy(comm);
    return 0;
  }
  if (o.model || o.preset) o.threads = tpd_cli_threads(PROG, comm, o.threads);
  bresults *res = calloc(1, sizeof *res);
  bcomm *cb = calloc(2, sizeof *cb);
  bpredict *pr = o.predict ? calloc(1, sizeof *pr) : NULL;
  bpareto *pp = calloc(1, sizeof *pp);
  if (!res || !cb || !pp || (o.predict && !pr)) tpd_cli_die(PROG, comm, TPD_FAIL(TPD_ERR_OOM, "out of memory"), 0);
  int n_cb = 0;
  if (o.out_dir && comm->rank == 0) {
    st = ensure_dir(o.out_dir);
    if (st != TPD_OK) tpd_cli_die(PROG, comm, st, 0);
  }

  if (o.comm) {
    st = run_comm(&o, comm, cb, &n_cb);
    if (st != TPD_OK) tpd_cli_die(PROG, comm, st, st == TPD_ERR_ARG);
  }
  if (o.model || o.preset) {
    char dir[4096];
    if (o.preset) {
      st = ensure_preset(&o, comm, dir, sizeof dir);
      if (st != TPD_OK) tpd_cli_die(PROG, comm, st, 1);
    } else {
      snprintf(dir, sizeof dir, "%s", o.model);
    }
    for (int b = 0; b < o.n_backends; b++) {
      int skipped = 0;
      st = run_backend(&o, comm, dir, o.backends[b], res, &skipped);
      if (st != TPD_OK) tpd_cli_die(PROG, comm, st, st == TPD_ERR_ARG);
    }
  }
  if (pr) predict(&o, pr);
  if (o.sweep) pareto_mark(res, pp);

  if (comm->rank == 0) {
    const int machine_readable = o.json || o.csv;
    if (o.json) {
      for (int k = 0; k < n_cb; k++)
        for (int i = 0; i < cb[k].n; i++) print_json_line(comm_json(cb[k].name, &cb[k].rows[i], comm->size));
      for (int i = 0; i < res->n_rows; i++)
        print_json_line(row_json(&res->rows[i], machine_of(res, &res->rows[i]), o.sweep));
      for (int i = 0; pr && i < pr->n; i++) print_json_line(predicted_json(&pr->pts[i], pr, pr->on_front[i]));
    } else if (o.csv) {
      if (res->n_rows) fputs(CSV_HEADER, stdout);
      for (int i = 0; i < res->n_rows; i++) csv_row(stdout, &res->rows[i], o.sweep);
    }
    if (!machine_readable) {
      if (n_cb) print_comm(cb, n_cb, comm->size);
      if (res->n_rows) print_table(&o, res);
      if (pr) {
        printf("predicted (speed-of-light, %s, %s; %s): %s bf16, ctx %ld\n", pr->hw.name, pr->hw.source,
               "no GPU measured", pr->model.name, o.predict_ctx);
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
    }
    /* files */
    if (o.out_dir) {
      cJSON *doc = cJSON_CreateObject();
      cJSON_AddStringToObject(doc, "tool", PROG);
      cJSON_AddNumberToObject(doc, "ranks", comm->size);
      cJSON *ms = cJSON_AddArrayToObject(doc, "machines");
      for (int m = 0; m < res->n_mach; m++) cJSON_AddItemToArray(ms, machine_json(&res->mach[m]));
      cJSON *cf = cJSON_AddArrayToObject(doc, "configs");
      for (int i = 0; i < res->n_rows; i++)
        cJSON_AddItemToArray(cf, row_json(&res->rows[i], machine_of(res, &res->rows[i]), o.sweep));
      if (o.sweep) {
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
        cJSON_AddNumberToObject(p, "ctx", (double)o.predict_ctx);
        cJSON *pts = cJSON_AddArrayToObject(p, "points");
        for (int i = 0; i < pr->n; i++) cJSON_AddItemToArray(pts, predicted_json(&pr->pts[i], pr, pr->on_front[i]));
        cJSON *nt = cJSON_AddArrayToObject(p, "notes");
        for (int i = 0; i < pr->n_notes; i++) cJSON_AddItemToArray(nt, cJSON_CreateString(pr->notes[i]));
      }
      if (n_cb) {
        cJSON *ca = cJSON_CreateArray();
        for (int k = 0; k < n_cb; k++) {
          for (int i = 0; i < cb[k].n; i++) cJSON_AddItemToArray(ca, comm_json(cb[k].name, &cb[k].rows[i], comm->size));
          if (!cb[k].n) {
            cJSON *sk = cJSON_CreateObject();
            cJSON_AddStringToObject(sk, "kind", "allreduce");
            cJSON_AddStringToObject(sk, "comm", cb[k].name);
            cJSON_AddStringToObject(sk, "skipped", cb[k].skip);
            cJSON_AddItemToArray(ca, sk);
          }
        }
        char *t = cJSON_Print(ca);
        st = t ? write_text(o.out_dir, "comm.json", t) : TPD_FAIL(TPD_ERR_OOM, "out of memory");
        free(t);
        cJSON_AddItemToObject(doc, "allreduce", ca);
        if (st == TPD_OK) {
          char path[4096];
          snprintf(path, sizeof path, "%s/comm.csv", o.out_dir);
          FILE *f = fopen(path, "w");
          if (!f) st = TPD_FAIL(TPD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
          else {
            fprintf(f, "comm,ranks,size_bytes,count,type,time_us,algbw_gbs,busbw_gbs,wrong\n");
            for (int k = 0; k < n_cb; k++)
              for (int i = 0; i < cb[k].n; i++) {
                const bench_comm_row *r = &cb[k].rows[i];
                char b1[32] = "", b2[32] = "";
                if (r->have_bw) snprintf(b1, sizeof b1, "%.4f", r->algbw), snprintf(b2, sizeof b2, "%.4f", r->busbw);
                fprintf(f, "%s,%d,%zu,%zu,%s,%.3f,%s,%s,%ld\n", cb[k].name, comm->size, r->n_bytes, r->count,
                        r->dtype == TPD_F32 ? "float" : "bf16", r->us, b1, b2, r->wrong);
              }
            if (fclose(f) != 0) st = TPD_FAIL(TPD_ERR_IO, "cannot write %s", path);
          }
        }
      }
      char *t = st == TPD_OK ? cJSON_Print(doc) : NULL;
      if (t) st = write_text(o.out_dir, "bench.json", t);
      free(t);
      cJSON_Delete(doc);
      if (st == TPD_OK && res->n_rows) {
        char path[4096];
        snprintf(path, sizeof path, "%s/bench.csv", o.out_dir);
        FILE *f = fopen(path, "w");
        if (!f) st = TPD_FAIL(TPD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        else {
          fputs(CSV_HEADER, f);
          for (int i = 0; i < res->n_rows; i++) csv_row(f, &res->rows[i], o.sweep);
          if (fclose(f) != 0) st = TPD_FAIL(TPD_ERR_IO, "cannot write %s", path);
        }
      }
      if (st == TPD_OK && o.sweep) st = write_plot(&o, res, pp, pr, o.out_dir);
      if (st == TPD_OK && !machine_readable)
        printf("wrote %s/bench.json%s%s%s\n", o.out_dir, res->n_rows ? ", bench.csv" : "",
               o.sweep ? ", pareto.svg" : "", n_cb ? ", comm.json, comm.csv" : "");
    }
    fflush(stdout);
  }
  /* rank 0's file errors end the job on every rank */
  int bad = -1;
  if (tpd_comm_agree(comm, st == TPD_OK, &bad) != TPD_OK) tpd_cli_die(PROG, comm, TPD_ERR_COMM, 0);
  if (bad >= 0) tpd_cli_die_agreed(PROG, comm, bad);
  long wrong = 0;
  for (int k = 0; k < n_cb; k++)
    for (int i = 0; i < cb[k].n; i++) wrong += cb[k].rows[i].wrong;
  free(res);
  free(cb);
  free(pr);
  free(pp);
  tpd_comm_destroy(comm);
  return wrong ? 2 : 0;
}
