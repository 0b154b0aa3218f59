/* Pieces of tpdecode-bench shared by its source files (launch/bench*.c). */
#ifndef TPD_BENCH_H
#define TPD_BENCH_H

#include <stddef.h>

#include "comm/comm.h"
#include "runtime/dtype.h"
#include "runtime/tpd_error.h"

/* ---- a communicator that times its inner one (launch/bench_comm.c) ----
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

/* ---- compute probe (launch/bench_probe.c) ----
 * Peak arithmetic rate of n_threads threads running independent chains of
 * AVX512_BF16 dot products (bf16 = 1 and the CPU has them) or AVX-512 / AVX2
 * FMAs on f32, all threads at once.  Returns flop/s (0 on failure) and names
 * the instruction in *what. */
double bench_peak_flops(int n_threads, int bf16, const char **what);

#endif
