/* tpdecode-bench: decode throughput, latency and energy against a
 * speed-of-light floor measured in the same run; the latency/efficiency
 * Pareto curve; an all-reduce micro-benchmark.  docs/performance.md explains
 * every column.  This file: main and the arguments (the jobs: bench.h).
 *   [mpirun -np N] tpdecode-bench --preset 1b --dtype bf16 --batch 1,16 --threads 2
 *   mpirun -np 2 tpdecode-bench --preset small --sweep --predict h200 --out-dir out
 *   mpirun -np 2 tpdecode-bench --comm
 *   mpirun -np 2 tpdecode-bench --serve --preset small
 *   tpdecode-bench --tokenize DIR [--text FILE]
 *   tpdecode-bench --plot-serving tp1/serve_bench.json,tp2/serve_bench.json --out-dir out */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/bench/bench.h"
#include "launch/cli.h"
#include "launch/tools/sol.h"
#include "launch/tools/synth.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: [mpirun -np N] tpdecode-bench (-m DIR | --preset tiny|small|1b|8b) [options]\n"
          "       [mpirun -np N] tpdecode-bench --comm [options]\n"
          "       tpdecode-bench --predict h100|h200 [options]\n"
          "       [mpirun -np N] tpdecode-bench --serve (-m DIR | --preset NAME) [--batch ...] [--sched-batch ...]\n"
          "       tpdecode-bench --kernels (-m DIR | --preset NAME) [--batch ...] [--ctx ...] [--json]\n"
          "       tpdecode-bench --tokenize DIR [--text FILE | --tok-mb N] [--threads N] [--json]\n"
          "       tpdecode-bench --plot-serving FILE[,FILE...] [--out-dir DIR]\n"
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
          "  --kv-cache auto|f32|bf16  KV cache dtype of the engines (default $TPD_KV_CACHE, else auto: bf16\n"
          "                         for a bf16 model on cpu, else f32)\n"
          "  --activations auto|f32|bf16  activations of the engines (default auto: cuda bf16; cpu bf16 matmul\n"
          "                         inputs where the CPU's vdpbf16ps outruns its FMA, else f32; docs/usage.md)\n"
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
          "serving overheads (one backend; --ctx: one value, the prompt length, default 64)\n"
          "  --serve                (a) leader-mode decode step vs SPMD at each --batch, the plan broadcast\n"
          "                         and its floor (an 8-byte broadcast); (b) the scheduler's host time per\n"
          "                         step at each --sched-batch (default: off)\n"
          "  --sched-batch LIST     requests decoding at once in (b) (default 1,16,64)\n"
          "CPU kernels alone against the read probe (one process, cpu backend)\n"
          "  --kernels              the model's matmuls (all layers and the LM head) at each --batch rows,\n"
          "                         and attention over --batch sequences at each --ctx (every layer), a\n"
          "                         probe pass before each timed pass; --warmup untimed and --steps timed\n"
          "                         passes, best and median\n"
          "                         (default: off)\n"
          "tokenizer encode speed (one process)\n"
          "  --tokenize DIR         DIR/tokenizer.json (+ tokenizer_config.json): encode the corpus one line\n"
          "                         at a time, MB/s on 1 thread and on --threads (default: the online CPUs)\n"
          "  --text FILE            the corpus, UTF-8 (default: --tok-mb MB of generated mixed text, --seed)\n"
          "  --tok-mb N             MB of generated text (default 2)\n"
          "  --tok-repeat N         timed passes, the best reported (default 3)\n"
          "serving benchmark plot (one process; the rows: launch/tools/serve_bench.py)\n"
          "  --plot-serving FILES   serve_bench.json files, comma-separated, one sweep each: writes\n"
          "                         serving.svg into --out-dir (default .)\n"
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
               {"--comm-warmup", 1}, {"--json", 0}, {"--csv", 0}, {"--sweep", 0}, {"--comm", 0},
               {"--serve", 0}, {"--sched-batch", 1}, {"--tokenize", 1}, {"--text", 1}, {"--tok-mb", 1},
               {"--tok-repeat", 1}, {"--plot-serving", 1}, {"--kv-cache", 1}, {"--kernels", 0},
               {"--activations", 1}};

/* 1: takes a value, 0: a flag, -1: unknown */
static int option_kind(const char *a) {
  for (size_t i = 0; i < sizeof OPTIONS / sizeof OPTIONS[0]; i++)
    if (!strcmp(a, OPTIONS[i].name)) return OPTIONS[i].value;
  return -1;
}

/* "1,2,16": at most BENCH_MAX_LIST integers, each in [lo, hi] */
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
    if (k == BENCH_MAX_LIST) return TPD_FAIL(TPD_ERR_ARG, "%s '%s': at most %d values", opt, v, BENCH_MAX_LIST);
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
  o->tok_mb = 2;
  o->tok_repeat = 3;
  int tok_set = 0; /* --text, --tok-mb or --tok-repeat given */
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
      else if (!strcmp(a, "--serve")) o->serve = 1;
      else if (!strcmp(a, "--kernels")) o->kernels = 1;
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
    else if (!strcmp(a, "--tokenize")) o->tokenize = v;
    else if (!strcmp(a, "--plot-serving")) o->plot_serving = v;
    else if (!strcmp(a, "--text")) o->text = v, tok_set = 1;
    else if (!strcmp(a, "--tok-mb")) field = &o->tok_mb, hi = 4096, tok_set = 1;
    else if (!strcmp(a, "--tok-repeat")) field = &o->tok_repeat, hi = 1000, tok_set = 1;
    else if (!strcmp(a, "--out-dir")) o->out_dir = v;
    else if (!strcmp(a, "--kv-cache")) /* tpd_engine_opts.kv_cache of every engine this process makes */
      TPD_TRY(tpd_cli_dtype_opt(a, v, &o->kv_cache));
    else if (!strcmp(a, "--activations")) /* tpd_engine_opts.activations of every engine */
      TPD_TRY(tpd_cli_dtype_opt(a, v, &o->activations));
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
    } else if (!strcmp(a, "--sched-batch")) {
      TPD_TRY(parse_list(a, v, 1, 1 << 16, o->sched_batches, &o->n_sched_batches));
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
  if (o->plot_serving) {
    const char *other = o->model ? "-m" : o->preset ? "--preset" : o->serve ? "--serve" : o->comm ? "--comm"
                        : o->sweep ? "--sweep" : o->predict ? "--predict" : o->csv ? "--csv" : o->json ? "--json"
                        : o->hw ? "--hw" : o->batch_set ? "--batch" : o->ctx_set ? "--ctx" : o->steps_set ? "--steps"
                        : o->warmup_set ? "--warmup" : o->n_sched_batches ? "--sched-batch" : o->tokenize ? "--tokenize"
                        : tok_set ? "--text, --tok-mb or --tok-repeat" : o->kernels ? "--kernels" : NULL;
    if (other) return TPD_FAIL(TPD_ERR_ARG, "--plot-serving does not take %s", other);
    if (!o->out_dir) o->out_dir = ".";
    return TPD_OK;
  }
  if (tok_set && !o->tokenize) return TPD_FAIL(TPD_ERR_ARG, "--text, --tok-mb and --tok-repeat need --tokenize DIR");
  if (o->tokenize) {
    const char *other = o->model ? "-m" : o->preset ? "--preset" : o->serve ? "--serve" : o->comm ? "--comm"
                        : o->sweep ? "--sweep" : o->predict ? "--predict" : o->out_dir ? "--out-dir" : o->csv ? "--csv"
                        : o->hw ? "--hw" : o->batch_set ? "--batch" : o->ctx_set ? "--ctx" : o->steps_set ? "--steps"
                        : o->warmup_set ? "--warmup" : o->n_sched_batches ? "--sched-batch" : o->kernels ? "--kernels" : NULL;
    if (other) return TPD_FAIL(TPD_ERR_ARG, "--tokenize does not take %s", other);
    return TPD_OK;
  }
  if (o->n_sched_batches && !o->serve) return TPD_FAIL(TPD_ERR_ARG, "--sched-batch needs --serve");
  if (o->kernels) {
    const char *other = o->serve ? "--serve" : o->sweep ? "--sweep" : o->comm ? "--comm" : o->predict ? "--predict"
                        : o->out_dir ? "--out-dir" : o->csv ? "--csv" : o->hw ? "--hw"
                        : o->n_backends != 1 || strcmp(o->backends[0], "cpu") ? "--backend other than cpu" : NULL;
    if (other) return TPD_FAIL(TPD_ERR_ARG, "--kernels does not take %s", other);
    if (!o->model && !o->preset) return TPD_FAIL(TPD_ERR_ARG, "--kernels needs a model: -m DIR or --preset NAME");
  }
  if (o->serve) {
    const char *other = o->sweep ? "--sweep" : o->comm ? "--comm" : o->predict ? "--predict" : o->out_dir ? "--out-dir"
                        : o->csv ? "--csv" : o->hw ? "--hw" : NULL;
    if (other) return TPD_FAIL(TPD_ERR_ARG, "--serve does not take %s", other);
    if (!o->model && !o->preset) return TPD_FAIL(TPD_ERR_ARG, "--serve needs a model: -m DIR or --preset NAME");
    if (o->n_backends != 1) return TPD_FAIL(TPD_ERR_ARG, "--serve takes one --backend, not %d", o->n_backends);
    if (o->ctx_set && (o->n_ctxs != 1 || o->ctxs[0] < 1))
      return TPD_FAIL(TPD_ERR_ARG, "--serve takes one --ctx value >= 1 (the prompt length)");
    if (!o->n_sched_batches) {
      o->n_sched_batches = 3;
      o->sched_batches[0] = 1, o->sched_batches[1] = 16, o->sched_batches[2] = 64;
    }
  }
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

/* ------------------------------------------------------------------ */

int main(int argc, char **argv) {
  tpd_comm *comm = NULL;
  tpd_status st = tpd_comm_create_default(&argc, &argv, &comm);
  if (st != TPD_OK) tpd_cli_die(BENCH_PROG, NULL, st, 1);
  bopts o;
  st = parse(argc, argv, &o);
  if (st != TPD_OK) tpd_cli_die(BENCH_PROG, comm, st, 1);
  if (o.help || o.version) {
    if (comm->rank == 0) {
      if (o.help) usage(stdout);
      else tpd_cli_version(BENCH_PROG);
    }
    tpd_comm_destroy(comm);
    return 0;
  }
  if (o.plot_serving) { /* one process: rank 0 reads the rows and draws */
    st = comm->rank == 0 ? bench_plot_serving(o.plot_serving, o.out_dir) : TPD_OK;
    if (st != TPD_OK) tpd_cli_die(BENCH_PROG, comm, st, st == TPD_ERR_ARG);
    if (comm->rank == 0) printf("wrote %s/serving.svg\n", o.out_dir);
    tpd_comm_destroy(comm);
    return 0;
  }
  if (o.tokenize) { /* one process: rank 0 encodes, the others have nothing to do */
    st = comm->rank == 0 ? bench_run_tokenize(&o) : TPD_OK;
    if (st != TPD_OK) tpd_cli_die(BENCH_PROG, comm, st, 0);
    tpd_comm_destroy(comm);
    return 0;
  }
  if (o.model || o.preset) o.threads = tpd_cli_threads(BENCH_PROG, comm, o.threads);
  if (o.kernels) { /* one process: rank 0 times the kernels, the others have nothing to do */
    char dir[4096];
    st = o.preset ? bench_ensure_preset(&o, comm, dir, sizeof dir) : TPD_OK;
    if (st == TPD_OK && !o.preset) snprintf(dir, sizeof dir, "%s", o.model);
    if (st == TPD_OK && comm->rank == 0) st = bench_run_kernels(&o, dir);
    if (st != TPD_OK) tpd_cli_die(BENCH_PROG, comm, st, 0);
    fflush(stdout);
    tpd_comm_destroy(comm);
    return 0;
  }
  bresults *res = calloc(1, sizeof *res);
  bcomm *cb = calloc(2, sizeof *cb);
  bpredict *pr = o.predict ? calloc(1, sizeof *pr) : NULL;
  bpareto *pp = calloc(1, sizeof *pp);
  if (!res || !cb || !pp || (o.predict && !pr))
    tpd_cli_die(BENCH_PROG, comm, TPD_FAIL(TPD_ERR_OOM, "out of memory"), 0);
  int n_cb = 0;
  if (o.out_dir && comm->rank == 0) {
    st = bench_ensure_dir(o.out_dir);
    if (st != TPD_OK) tpd_cli_die(BENCH_PROG, comm, st, 0);
  }

  if (o.serve) {
    char dir[4096];
    if (o.preset) {
      st = bench_ensure_preset(&o, comm, dir, sizeof dir);
      if (st != TPD_OK) tpd_cli_die(BENCH_PROG, comm, st, 1);
    } else {
      snprintf(dir, sizeof dir, "%s", o.model);
    }
    bserve *sv = calloc(1, sizeof *sv);
    if (!sv) tpd_cli_die(BENCH_PROG, comm, TPD_FAIL(TPD_ERR_OOM, "out of memory"), 0);
    st = bench_run_serve(&o, comm, dir, sv);
    if (st != TPD_OK) tpd_cli_die(BENCH_PROG, comm, st, 0);
    if (comm->rank == 0) {
      bench_print_serve(&o, sv);
      fflush(stdout);
    }
    free(sv);
    free(res);
    free(cb);
    free(pr);
    free(pp);
    tpd_comm_destroy(comm);
    return 0;
  }
  if (o.comm) {
    st = bench_run_comm(&o, comm, cb, &n_cb);
    if (st != TPD_OK) tpd_cli_die(BENCH_PROG, comm, st, st == TPD_ERR_ARG);
  }
  if (o.model || o.preset) {
    char dir[4096];
    if (o.preset) {
      st = bench_ensure_preset(&o, comm, dir, sizeof dir);
      if (st != TPD_OK) tpd_cli_die(BENCH_PROG, comm, st, 1);
    } else {
      snprintf(dir, sizeof dir, "%s", o.model);
    }
    for (int b = 0; b < o.n_backends; b++) {
      int skipped = 0;
      st = bench_run_backend(&o, comm, dir, o.backends[b], res, &skipped);
      if (st != TPD_OK) tpd_cli_die(BENCH_PROG, comm, st, st == TPD_ERR_ARG);
    }
  }
  if (pr) bench_predict(&o, pr);
  if (o.sweep) bench_pareto_mark(res, pp);

  if (comm->rank == 0) {
    bench_print(&o, res, cb, n_cb, pr, comm->size);
    if (o.out_dir) st = bench_write_files(&o, res, pp, pr, cb, n_cb, comm->size);
    if (o.out_dir && o.sweep && st == TPD_OK) {
      st = bench_write_plot(&o, res, pp, pr, o.out_dir);
      if (st == TPD_OK && !o.json && !o.csv) printf("wrote %s/pareto.svg\n", o.out_dir);
    }
    fflush(stdout);
  }
  /* rank 0's file errors end the job on every rank */
  int bad = -1;
  if (tpd_comm_agree(comm, st == TPD_OK, &bad) != TPD_OK) tpd_cli_die(BENCH_PROG, comm, TPD_ERR_COMM, 0);
  if (bad >= 0) tpd_cli_die_agreed(BENCH_PROG, comm, bad);
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
