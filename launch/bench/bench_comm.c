/* tpdecode-bench: the timed communicator and the all-reduce micro-benchmark. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "launch/bench/bench.h"
#include "launch/tools/stats.h"
#include "runtime/base/timer.h"

/* ------------------------------------------------------------------ */
/* timed communicator                                                    */

typedef struct {
  tpd_comm_ops ops; /* this wrapper's table (data_on_device copied from inner) */
  tpd_comm *inner;
  double ms, bytes, bcast_ms, bcast_bytes;
  long calls, allreduces, bcasts;
} timed_impl;

static timed_impl *T(tpd_comm *c) { return c->impl; }

static void add(tpd_comm *c, double t0, size_t n_bytes) {
  timed_impl *t = T(c);
  t->ms += tpd_now_ms() - t0;
  t->bytes += (double)n_bytes;
  t->calls++;
}

static void t_destroy(tpd_comm *c) {
  free(c->impl);
  free(c);
}

static tpd_status t_allreduce(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream) {
  const double t0 = tpd_now_ms();
  tpd_comm *in = T(c)->inner;
  const tpd_status s = in->ops->allreduce(in, buf, n, dt, stream);
  add(c, t0, n * tpd_dtype_size(dt));
  T(c)->allreduces++;
  return s;
}

static tpd_status t_allreduce_start(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream, tpd_comm_req *req) {
  const double t0 = tpd_now_ms();
  tpd_comm *in = T(c)->inner;
  const tpd_status s = in->ops->allreduce_start(in, buf, n, dt, stream, req);
  add(c, t0, n * tpd_dtype_size(dt));
  T(c)->allreduces++;
  return s;
}

static tpd_status t_wait(tpd_comm *c, tpd_comm_req *req) {
  const double t0 = tpd_now_ms();
  tpd_comm *in = T(c)->inner;
  const tpd_status s = in->ops->wait(in, req);
  T(c)->ms += tpd_now_ms() - t0;
  return s;
}

static tpd_status t_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes, void *stream) {
  const double t0 = tpd_now_ms();
  tpd_comm *in = T(c)->inner;
  const tpd_status s = in->ops->allgather(in, send, recv, n_bytes, stream);
  add(c, t0, n_bytes);
  return s;
}

static tpd_status t_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root, void *stream) {
  const double t0 = tpd_now_ms();
  tpd_comm *in = T(c)->inner;
  const tpd_status s = in->ops->broadcast(in, buf, n_bytes, root, stream);
  add(c, t0, n_bytes);
  return s;
}

static tpd_status t_host_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes) {
  const double t0 = tpd_now_ms();
  tpd_comm *in = T(c)->inner;
  const tpd_status s = in->ops->host_allgather(in, send, recv, n_bytes);
  add(c, t0, n_bytes);
  return s;
}

static tpd_status t_host_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root) {
  const double t0 = tpd_now_ms();
  tpd_comm *in = T(c)->inner;
  const tpd_status s = in->ops->host_broadcast(in, buf, n_bytes, root);
  const double t1 = tpd_now_ms();
  add(c, t0, n_bytes);
  T(c)->bcast_ms += t1 - t0;
  T(c)->bcast_bytes += (double)n_bytes;
  T(c)->bcasts++;
  return s;
}

static tpd_status t_barrier(tpd_comm *c) {
  tpd_comm *in = T(c)->inner;
  return in->ops->barrier(in);
}

static void t_abort(tpd_comm *c, int code) {
  tpd_comm *in = T(c)->inner;
  in->ops->abort(in, code);
}

tpd_status bench_timed_comm_create(tpd_comm *inner, tpd_comm **out) {
  *out = NULL;
  tpd_comm *c = calloc(1, sizeof *c);
  timed_impl *t = calloc(1, sizeof *t);
  if (!c || !t) {
    free(c);
    free(t);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  }
  t->inner = inner;
  t->ops = (tpd_comm_ops){.name = "timed",
                          .data_on_device = inner->ops->data_on_device,
                          .destroy = t_destroy,
                          .allreduce = t_allreduce,
                          .allreduce_start = t_allreduce_start,
                          .wait = t_wait,
                          .allgather = t_allgather,
                          .broadcast = t_broadcast,
                          .host_allgather = t_host_allgather,
                          .host_broadcast = t_host_broadcast,
                          .barrier = t_barrier,
                          .abort = t_abort};
  *c = *inner;
  c->ops = &t->ops;
  c->impl = t;
  *out = c;
  return TPD_OK;
}

void bench_timed_reset(tpd_comm *c) {
  T(c)->ms = T(c)->bytes = T(c)->bcast_ms = T(c)->bcast_bytes = 0;
  T(c)->calls = T(c)->allreduces = T(c)->bcasts = 0;
}

void bench_timed_host_bcast(const tpd_comm *c, double *ms, double *bytes, long *calls) {
  const timed_impl *t = c->impl;
  if (ms) *ms = t->bcast_ms;
  if (bytes) *bytes = t->bcast_bytes;
  if (calls) *calls = t->bcasts;
}

long bench_timed_allreduces(const tpd_comm *c) { return ((const timed_impl *)c->impl)->allreduces; }

void bench_timed_get(const tpd_comm *c, double *ms, double *bytes, long *calls) {
  const timed_impl *t = c->impl;
  if (ms) *ms = t->ms;
  if (bytes) *bytes = t->bytes;
  if (calls) *calls = t->calls;
}

/* ------------------------------------------------------------------ */
/* all-reduce micro-benchmark                                            */

/* Rank r's element i is (r + 1) * (i % 4 + 1): every partial sum over up to
 * 8 ranks is an integer below 256, exact in f32 and in bf16, and the result
 * is n (n + 1) / 2 * (i % 4 + 1). */
static void fill(void *buf, tpd_dtype dt, size_t count, int rank) {
  for (size_t i = 0; i < count; i++) tpd_store_f32(buf, dt, i, (float)((rank + 1) * (int)(i % 4 + 1)));
}

static long count_wrong(const void *buf, tpd_dtype dt, size_t count, int n_ranks) {
  long wrong = 0;
  const int tri = n_ranks * (n_ranks + 1) / 2;
  for (size_t i = 0; i < count; i++)
    if (tpd_load_f32(buf, dt, i) != (float)(tri * (int)(i % 4 + 1))) wrong++;
  return wrong;
}

/* Sum of a long and max of a double over ranks (host collectives). */
static tpd_status reduce_stats(tpd_comm *c, double *t_max, long *wrong_sum) {
  struct {
    double t;
    long w;
  } mine = {*t_max, *wrong_sum}, *all = malloc(sizeof mine * (size_t)c->size);
  if (!all) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  tpd_status s = c->ops->host_allgather(c, &mine, all, sizeof mine);
  if (s == TPD_OK) {
    *t_max = 0;
    *wrong_sum = 0;
    for (int r = 0; r < c->size; r++) {
      if (all[r].t > *t_max) *t_max = all[r].t;
      *wrong_sum += all[r].w;
    }
  }
  free(all);
  return s;
}

/* The generic loop: `ar` runs one in-place all-reduce of count elements on
 * `buf`; fill/check go through host staging when the buffer is on a device. */
typedef struct {
  tpd_comm *c;
  tpd_backend *be; /* NULL: host buffers */
  void *buf;       /* backend or host memory, max_bytes */
  void *host;      /* host staging (device case) */
} loop_ctx;

static tpd_status put(loop_ctx *x, size_t n_bytes) {
  return x->be ? x->be->ops->upload(x->be, x->buf, x->host, n_bytes) : TPD_OK;
}

static tpd_status get(loop_ctx *x, size_t n_bytes) {
  return x->be ? x->be->ops->download(x->be, x->host, x->buf, n_bytes) : TPD_OK;
}

static tpd_status sync(loop_ctx *x) { return x->be ? x->be->ops->synchronize(x->be) : TPD_OK; }

static tpd_status one(loop_ctx *x, size_t count, tpd_dtype dt) {
  return x->c->ops->allreduce(x->c, x->buf, count, dt, x->be ? x->be->ops->stream(x->be) : NULL);
}

static tpd_status check_once(loop_ctx *x, size_t count, tpd_dtype dt, long *wrong) {
  const size_t nb = count * tpd_dtype_size(dt);
  fill(x->host, dt, count, x->c->rank);
  TPD_TRY(put(x, nb));
  TPD_TRY(one(x, count, dt));
  TPD_TRY(sync(x));
  TPD_TRY(get(x, nb));
  *wrong += count_wrong(x->host, dt, count, x->c->size);
  return TPD_OK;
}

static tpd_status time_size(loop_ctx *x, size_t n_bytes, const bench_comm_opts *o, bench_comm_row *row) {
  const tpd_dtype dt = o->dtype;
  const size_t count = n_bytes / tpd_dtype_size(dt);
  memset(row, 0, sizeof *row);
  row->n_bytes = count * tpd_dtype_size(dt);
  row->count = count;
  row->dtype = dt;
  long wrong = 0;
  TPD_TRY(check_once(x, count, dt, &wrong));
  /* timing on zeros: the sums stay finite however many iterations run */
  memset(x->host, 0, row->n_bytes);
  TPD_TRY(put(x, row->n_bytes));
  for (int i = 0; i < o->warmup; i++) TPD_TRY(one(x, count, dt));
  TPD_TRY(sync(x));
  TPD_TRY(x->c->ops->barrier(x->c));
  const double t0 = tpd_now_ms();
  for (int i = 0; i < o->iters; i++) TPD_TRY(one(x, count, dt));
  TPD_TRY(sync(x));
  double us = (tpd_now_ms() - t0) * 1e3 / o->iters;
  TPD_TRY(check_once(x, count, dt, &wrong)); /* and once after the timed loop */
  TPD_TRY(reduce_stats(x->c, &us, &wrong));
  const int n = x->c->size;
  row->us = us;
  /* one rank sums nothing with anyone: the call moves no bytes, and a
   * bandwidth from its (near-zero) time would be a fiction */
  row->have_bw = n > 1;
  row->algbw = n > 1 ? (double)row->n_bytes / (us * 1e-6) / 1e9 : NAN;
  row->busbw = n > 1 ? row->algbw * 2.0 * (n - 1) / n : NAN;
  row->wrong = wrong;
  return TPD_OK;
}

static tpd_status check_opts(const bench_comm_opts *o) {
  if (o->dtype != TPD_F32 && o->dtype != TPD_BF16)
    return TPD_FAIL(TPD_ERR_ARG, "all-reduce benchmark: dtype must be f32 or bf16");
  if (o->min_bytes < 4 || o->max_bytes < o->min_bytes || o->iters < 1 || o->warmup < 0)
    return TPD_FAIL(TPD_ERR_ARG, "all-reduce benchmark: sizes %zu..%zu, %d iterations: out of range", o->min_bytes,
                    o->max_bytes, o->iters);
  return TPD_OK;
}

static tpd_status sweep(loop_ctx *x, const bench_comm_opts *o, bench_comm_row *rows, int *n_rows) {
  *n_rows = 0;
  for (size_t nb = o->min_bytes; nb <= o->max_bytes && *n_rows < 64; nb *= 2) {
    TPD_TRY(time_size(x, nb, o, &rows[*n_rows]));
    (*n_rows)++;
  }
  return TPD_OK;
}

tpd_status bench_comm_host(tpd_comm *c, const bench_comm_opts *o, bench_comm_row *rows, int *n_rows) {
  *n_rows = 0;
  TPD_TRY(check_opts(o));
  if (c->ops->data_on_device) return TPD_FAIL(TPD_ERR_ARG, "all-reduce benchmark: %s is not a host communicator", c->ops->name);
  void *buf = malloc(o->max_bytes);
  if (!buf) return TPD_FAIL(TPD_ERR_OOM, "out of memory for a %zu-byte buffer", o->max_bytes);
  loop_ctx x = {c, NULL, buf, buf};
  const tpd_status s = sweep(&x, o, rows, n_rows);
  free(buf);
  return s;
}

tpd_status bench_comm_nccl(tpd_comm *mpi, const bench_comm_opts *o, bench_comm_row *rows, int *n_rows, char *skip,
                           size_t skip_cap) {
  *n_rows = 0;
  skip[0] = 0;
  TPD_TRY(check_opts(o));
#ifndef TPD_HAVE_NCCL
  (void)mpi, (void)rows;
  snprintf(skip, skip_cap, "this build has no NCCL (configure with CUDA, MPI and NCCL)");
  return TPD_OK;
#else
  if (!tpd_backend_available("cuda")) {
    snprintf(skip, skip_cap, "this build has no CUDA backend for device buffers");
    return TPD_OK;
  }
  /* a device on every rank, or all skip together */
  tpd_backend *be = NULL;
  tpd_backend_opts bo = {.n_threads = 1, .device = -1, .local_rank = mpi->local_rank};
  tpd_status s = tpd_backend_create("cuda", &bo, &be);
  int bad = -1;
  TPD_TRY(tpd_comm_agree(mpi, s == TPD_OK, &bad));
  if (bad >= 0) {
    snprintf(skip, skip_cap, "no CUDA device on rank %d%s%s", bad, bad == mpi->rank ? ": " : "",
             bad == mpi->rank ? tpd_last_error() : "");
    tpd_backend_destroy(be);
    tpd_clear_error();
    return TPD_OK;
  }
  tpd_comm *nc = NULL;
  s = tpd_comm_nccl_create(mpi, -1, &nc);
  TPD_TRY(tpd_comm_agree(mpi, s == TPD_OK, &bad));
  if (bad >= 0) {
    snprintf(skip, skip_cap, "NCCL communicator failed on rank %d%s%s", bad, bad == mpi->rank ? ": " : "",
             bad == mpi->rank ? tpd_last_error() : "");
    tpd_comm_destroy(nc);
    tpd_backend_destroy(be);
    tpd_clear_error();
    return TPD_OK;
  }
  void *dev = NULL, *host = malloc(o->max_bytes);
  s = host ? be->ops->alloc(be, o->max_bytes, &dev) : TPD_FAIL(TPD_ERR_OOM, "out of memory");
  if (s == TPD_OK) {
    loop_ctx x = {nc, be, dev, host};
    s = sweep(&x, o, rows, n_rows);
  }
  if (dev) be->ops->free(be, dev);
  free(host);
  tpd_comm_destroy(nc);
  tpd_backend_destroy(be);
  return s;
#endif
}

/* Median over reps of one synchronised all-reduce (barrier, then time the
 * call alone), the slowest rank's median; robust to a noisy host. */
static tpd_status median_us(loop_ctx *x, size_t count, int reps, double *us) {
  double *t = malloc(sizeof(double) * (size_t)reps);
  if (!t) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  tpd_status s = TPD_OK;
  for (int i = 0; i < reps && s == TPD_OK; i++) {
    s = x->c->ops->barrier(x->c);
    const double t0 = tpd_now_ms();
    if (s == TPD_OK) s = one(x, count, TPD_F32);
    t[i] = (tpd_now_ms() - t0) * 1e3;
  }
  if (s == TPD_OK) {
    *us = tpd_percentile(t, reps, 50);
    long none = 0;
    s = reduce_stats(x->c, us, &none);
  }
  free(t);
  return s;
}

tpd_status bench_comm_fit(tpd_comm *c, double *alpha_s, double *link_bw) {
  *alpha_s = 0;
  *link_bw = 0;
  const int n = c->size;
  if (n == 1) return TPD_OK;
  const size_t small = 1024, big = 1u << 20; /* bytes; decode messages are B D a, 1 KB to ~100 KB */
  void *buf = malloc(big);
  if (!buf) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  loop_ctx x = {c, NULL, buf, buf};
  long wrong = 0;
  double t_small = 0, t_big = 0;
  tpd_status s = check_once(&x, small / 4, TPD_F32, &wrong);
  if (s == TPD_OK) s = check_once(&x, big / 4, TPD_F32, &wrong);
  if (s == TPD_OK) memset(buf, 0, big);
  for (int w = 0; w < 5 && s == TPD_OK; w++) s = one(&x, big / 4, TPD_F32);
  if (s == TPD_OK) s = median_us(&x, small / 4, 101, &t_small);
  if (s == TPD_OK) s = median_us(&x, big / 4, 21, &t_big);
  if (s == TPD_OK) s = reduce_stats(c, &t_big, &wrong);
  free(buf);
  TPD_TRY(s);
  if (wrong) return TPD_FAIL(TPD_ERR_COMM, "all-reduce returned %ld wrong values while fitting the link model", wrong);
  /* t = alpha 2(n-1) + S 2(n-1)/n / bw through both points */
  const double f = 2.0 * (n - 1) / n, hops = 2.0 * (n - 1);
  const double slope = (t_big - t_small) * 1e-6 / ((double)(big - small) * f); /* s per bus byte */
  *link_bw = slope > 0 ? 1.0 / slope : (double)big * f / (t_big * 1e-6);
  const double a = (t_small * 1e-6 - (double)small * f / *link_bw) / hops;
  *alpha_s = a > 0 ? a : t_small * 1e-6 / hops;
  return TPD_OK;
}

/* ------------------------------------------------------------------ */
/* --comm: the host communicator, then NCCL on device buffers              */

tpd_status bench_run_comm(const bopts *o, tpd_comm *comm, bcomm *out, int *n_out) {
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
