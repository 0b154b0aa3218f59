/* Pieces of tpdecode-bench shared by its source files, one per job:
 *   bench_main.c    main and the arguments
 *   bench_sweep.c   the measured configurations (engine, probes, floor, energy)
 *   bench_comm.c    the timed communicator and the all-reduce micro-benchmark
 *   bench_probe.c   the compute probe (peak arithmetic rate)
 *   bench_report.c  the table, JSON and CSV on stdout and in --out-dir
 *   bench_plot.c    the predicted curve, the Pareto frontiers and the SVG plot
 *   bench_serve.c   --serve: the leader's plan broadcast and the scheduler's host time
 *   bench_tok.c     --tokenize: the tokenizer's encode speed
 *   bench_servepts.c --plot-serving: serve_bench.py's rows on the Pareto plot */
#ifndef TPD_BENCH_H
#define TPD_BENCH_H

#include <stddef.h>

#include "comm/comm.h"
#include "launch/tools/sol.h"
#include "runtime/base/dtype.h"
#include "runtime/base/error.h"
#include "runtime/engine/tpdecode.h"

/* ---- a communicator that times its inner one (bench_comm.c) ----
 * Every call is forwarded; the host time spent inside the data collectives
 * (all-reduce, start + wait, all-gather, broadcast) and the host control
 * collectives is accumulated, with the message bytes.  This is the
 * communication time the calling thread is exposed to: with blocking MPI
 * it includes waiting for the slowest rank.  Barriers are not counted. */
tpd_status bench_timed_comm_create(tpd_comm *inner, tpd_comm **out);
void bench_timed_reset(tpd_comm *timed);
void bench_timed_get(const tpd_comm *timed, double *ms, double *msg_bytes, long *calls);
/* All-reduces (blocking or started) that went through the wrapper since the
 * last reset.  Zero during a TP > 1 step means the step's all-reduces did not
 * pass through host calls (a replayed device graph holds them), so the host
 * time above says nothing about them. */
long bench_timed_allreduces(const tpd_comm *timed);
/* The host_broadcast calls alone since the last reset (also counted above):
 * host time in ms, bytes, calls. */
void bench_timed_host_bcast(const tpd_comm *timed, double *ms, double *bytes, long *calls);

/* ---- all-reduce micro-benchmark (nccl-tests style) ---- */
typedef struct {
  size_t n_bytes, count;
  tpd_dtype dtype;
  double us;     /* mean time per all-reduce, slowest rank */
  int have_bw;   /* 0 with one rank: nothing crosses a link, algbw and busbw are NaN */
  double algbw;  /* GB/s: n_bytes / time */
  double busbw;  /* GB/s: algbw * 2 (n - 1) / n */
  long wrong;    /* elements differing from the exact sum, all ranks, two checks */
} bench_comm_row;

typedef struct {
  size_t min_bytes, max_bytes; /* doubling from min to max */
  int iters, warmup;
  tpd_dtype dtype;             /* F32 or BF16 */
} bench_comm_opts;

/* Host buffers on a host communicator (MPI or single). rows has room for 64. */
tpd_status bench_comm_host(tpd_comm *c, const bench_comm_opts *o, bench_comm_row *rows, int *n_rows);

/* NCCL on device buffers when the build has it and a GPU is present;
 * otherwise returns TPD_OK with *n_rows = 0 and the reason in skip. */
tpd_status bench_comm_nccl(tpd_comm *mpi, const bench_comm_opts *o, bench_comm_row *rows, int *n_rows, char *skip,
                           size_t skip_cap);

/* The ring model's parameters for the speed-of-light floor, fitted through
 * two f32 all-reduces (1 KB and 1 MB; each the slowest rank's median of
 * single calls started together): t = alpha 2(n-1) + S 2(n-1)/n / link_bw.
 * Zero both when n = 1. */
tpd_status bench_comm_fit(tpd_comm *c, double *alpha_s, double *link_bw);

/* ---- compute probe (bench_probe.c) ----
 * Peak arithmetic rate of n_threads threads running independent chains of
 * AVX512_BF16 dot products (bf16 = 1 and the CPU has them) or AVX-512 / AVX2
 * FMAs on f32, all threads at once.  Returns flop/s (0 on failure) and names
 * the instruction in *what. */
double bench_peak_flops(int n_threads, int bf16, const char **what);

/* ---- the run: options, measured rows, what was measured about the machine ---- */
#define BENCH_PROG "tpdecode-bench"
#define BENCH_MAX_LIST 32  /* values in one list option */
#define BENCH_MAX_ROWS 512 /* measured configurations in one run */
#define BENCH_MAX_RSS_RANKS 64 /* ranks whose peak resident memory a row lists one by one */

typedef struct {
  const char *model, *preset, *cache, *out_dir, *hw;
  const char *kv_cache; /* --kv-cache: every engine's tpd_engine_opts.kv_cache (NULL: TPD_KV_CACHE, else auto) */
  const char *activations; /* --activations: every engine's tpd_engine_opts.activations (NULL: auto) */
  const char *backends[4];
  int n_backends;
  tpd_dtype dtype;
  long seed, steps, warmup, threads, membw_mb;
  int batches[BENCH_MAX_LIST], n_batches, ctxs[BENCH_MAX_LIST], n_ctxs;
  int json, csv, sweep, comm, serve, kernels, help, version;
  int sched_batches[BENCH_MAX_LIST], n_sched_batches; /* --serve: the scheduler's batch sizes */
  int steps_set, warmup_set, batch_set, ctx_set;
  /* --comm */
  long comm_min, comm_max, comm_iters, comm_warmup;
  tpd_dtype comm_dtype;
  /* --predict */
  const char *predict, *predict_model;
  int predict_tp[BENCH_MAX_LIST], n_predict_tp, predict_batch[BENCH_MAX_LIST], n_predict_batch;
  long predict_ctx;
  double predict_hop_us; /* < 0: the preset's */
  /* --tokenize */
  const char *tokenize, *text; /* the tokenizer's folder, the corpus (NULL: generated) */
  long tok_mb, tok_repeat;
  /* --plot-serving */
  const char *plot_serving; /* comma-separated serve_bench.json files */
} bopts;

/* One measured configuration. */
typedef struct {
  const char *backend;
  int tp, batch, ctx, steps, threads;
  double ctx_attended;               /* mean positions read per sequence per timed step */
  double ms_med, ms_p90;             /* per step = per output token of each user */
  double ms_best;                    /* the fastest timed step (beside the probe's best pass: like for like) */
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
  double gflops, frac_peak; /* the floor's flops per measured second, and over the compute probe's peak */
  int have_floor;
  char floor_reason[160];
  tpd_sol_result sol;                /* floor on this machine (or --hw) */
  double ratio;                      /* ms_med / floor ms */
  double ratio_best;                 /* ms_best / floor ms */
  char fault[200];                   /* "" or why the row is a measurement fault (ratio below 1) */
  /* Growth with context, set on the row of the run's largest context only:
   * its ms/token minus the same batch's at the run's smallest context
   * (median and best steps), against the floor's over the same positions,
   * both floors on one bandwidth (the better of the two rows' best probe
   * passes), so that the ratio is the slope's and not the probe's drift
   * between the rows.  A ratio below 1, or two rows whose probes differ by
   * more than BENCH_GROWTH_DRIFT, is flagged in growth_fault. */
#define BENCH_GROWTH_DRIFT 0.10 /* the two rows' best probe passes may differ by 10 % */
  int have_growth, growth_from_ctx;
  double growth_ms, growth_best_ms, growth_floor_ms, growth_bw_gbs, growth_ratio, growth_ratio_best;
  char growth_fault[160];
  int have_energy;
  double j_per_tok, tok_s_w, watts;
  int on_frontier;
  /* peak resident memory of each rank's process so far (getrusage
   * ru_maxrss, MiB), taken at the end of the row: the largest, and per rank
   * (the first BENCH_MAX_RSS_RANKS) */
  double rss_max_mib, rss_mib[BENCH_MAX_RSS_RANKS];
  int n_rss;
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

typedef struct {
  brow rows[BENCH_MAX_ROWS];
  int n_rows;
  bmachine mach[4];
  int n_mach;
  char skipped[4][600];
  int n_skipped;
} bresults;

/* the predicted curve (--predict) */
typedef struct {
  tpd_sol_model model;
  tpd_sol_hw hw;
  tpd_sol_result pts[BENCH_MAX_LIST * BENCH_MAX_LIST];
  int n;
  int front[BENCH_MAX_LIST * BENCH_MAX_LIST], n_front; /* over every TP and batch, in increasing tokens/s per user */
  char on_front[BENCH_MAX_LIST * BENCH_MAX_LIST];
  char notes[4][160];
  int n_notes;
} bpredict;

/* the Pareto frontiers of the measured rows (--sweep) */
typedef struct {
  int use_energy;  /* y = tokens/s/W (else tokens/s per rank) */
  char y_label[160];
  int groups[BENCH_MAX_ROWS]; /* group id per row: (backend, ctx) */
  int n_groups;
  int front[BENCH_MAX_ROWS], n_front[16], front_off[16];
} bpareto;

/* one communicator's all-reduce rows (--comm) */
typedef struct {
  const char *name;
  bench_comm_row rows[64];
  int n;
  char skip[300];
} bcomm;

/* ---- the measured configurations (bench_sweep.c) ---- */
/* Writes the preset model once (rank 0) into the cache; every rank gets its path. */
tpd_status bench_ensure_preset(const bopts *o, tpd_comm *comm, char *dir, size_t cap);
/* One backend: its engine, the machine's probes, every (ctx, batch) row into
 * res.  A backend whose engine cannot be created is skipped (*skipped = 1,
 * the reason in res->skipped) when more than one was asked for; the only one
 * ends the program. */
/* The machine line of a report from a created engine. */
void bench_fill_machine(bmachine *mc, const bopts *o, const tpd_engine *e, const char *comm_name, const char *note);
tpd_status bench_run_backend(const bopts *o, tpd_comm *comm, const char *dir, const char *backend, bresults *res,
                             int *skipped);

/* ---- --comm: every communicator present (bench_comm.c) ---- */
tpd_status bench_run_comm(const bopts *o, tpd_comm *comm, bcomm *out, int *n_out);

/* ---- --serve (bench_serve.c) ----
 * (a) the plan broadcast of leader mode: decode steps of the same batch in
 *     SPMD and in leader mode, the plan's host_broadcast on the leader, and
 *     an 8-byte host_broadcast on the same communicator as its floor;
 * (b) the continuous-batching scheduler's host time per step outside the
 *     engine, in steady greedy decode, against the engine step. */
typedef struct {
  int tp, batch, ctx, steps;         /* steps: timed, per mode, all rounds */
  double spmd_ms, leader_ms, diff_ms; /* rank 0's median decode step; diff = leader - SPMD */
  double spmd_bcasts;                 /* host_broadcast calls per SPMD step (the engine makes none) */
  int have_bcast;                     /* 0 at TP 1: no plan is broadcast (reason) */
  double bcast_us, bcasts_per_step, plan_bytes; /* median host time of the plans' broadcasts per step, on rank 0 */
  double ratio;                       /* bcast_us / the floor */
  char reason[80], fault[200];
} bserve_plan_row;

typedef struct {
  int tp, batch, prompt, steps;
  double sched_us, engine_ms, ratio; /* medians per step; ratio = sched / engine */
  char fault[200];
} bserve_sched_row;

typedef struct {
  bmachine mach;              /* model, backend, kernels, TP, threads, comm (no probes) */
  int ctx, steps, warmup, rounds, max_seqs, max_step_tokens, floor_reps;
  double floor_us;            /* the 8-byte host_broadcast: rank 0's (root's) median */
  double alone_us;            /* a broadcast of the plan's size, ranks arriving together: root's median (TP > 1) */
  bserve_plan_row plan[BENCH_MAX_LIST];
  int n_plan;
  bserve_sched_row sched[BENCH_MAX_LIST];
  int n_sched;
} bserve;

/* Runs (a) and (b) on every rank (rank 0 leads); a failure on any rank ends
 * the job from here with the first failed rank's message. */
tpd_status bench_run_serve(const bopts *o, tpd_comm *comm, const char *dir, bserve *out);
/* rank 0: the two tables, or JSON lines (kinds "serve_plan", "serve_sched") */
void bench_print_serve(const bopts *o, const bserve *s);

/* ---- --tokenize (bench_tok.c), one process ----
 * Encodes the corpus document by document (one per line) on 1 thread and on
 * o->threads (0: the online CPUs); prints the best MB/s of o->tok_repeat
 * passes with the token count and a hash of the ids (JSON lines with --json). */
tpd_status bench_run_tokenize(const bopts *o);
/* --kernels: the cpu backend's matmul and attention alone against the read
 * probe (launch/bench/bench_kernels.c); rows on stdout */
tpd_status bench_run_kernels(const bopts *o, const char *dir);

/* ---- --plot-serving (bench_servepts.c), one process ----
 * Reads the serve_bench.json files (comma-separated; launch/tools/serve_bench.py)
 * and writes out_dir/serving.svg: tokens/s per user (median of 1 / TPOT)
 * against system output tokens/s (per W when every row has energy). */
tpd_status bench_plot_serving(const char *files, const char *out_dir);

/* ---- the predicted curve, the frontiers, the plot (bench_plot.c) ---- */
void bench_predict(const bopts *o, bpredict *p);
/* Marks the rows on the frontier of their (backend, context) group. */
void bench_pareto_mark(bresults *res, bpareto *pp);
/* pareto.svg in dir */
tpd_status bench_write_plot(const bopts *o, const bresults *res, const bpareto *pp, const bpredict *pr,
                            const char *dir);

/* ---- output (bench_report.c), rank 0 only ---- */
/* stdout: the JSON lines, the CSV, or the tables */
void bench_print(const bopts *o, const bresults *res, const bcomm *cb, int n_cb, const bpredict *pr, int n_ranks);
/* bench.json, bench.csv, comm.json and comm.csv in o->out_dir (pareto.svg: bench_write_plot) */
tpd_status bench_write_files(const bopts *o, const bresults *res, const bpareto *pp, const bpredict *pr,
                             const bcomm *cb, int n_cb, int n_ranks);
tpd_status bench_write_text(const char *dir, const char *name, const char *text);
tpd_status bench_ensure_dir(const char *dir);
const bmachine *bench_machine_of(const bresults *res, const brow *r);

#endif
