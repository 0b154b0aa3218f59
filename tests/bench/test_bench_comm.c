/* The all-reduce micro-benchmark and the timed communicator of
 * tpdecode-bench (launch/bench/bench_comm.c, the file the program is built from),
 * over a fake 4-rank communicator: exact sums give 0 wrong values, a broken
 * all-reduce is counted, busbw = algbw * 2(n-1)/n; over one rank no
 * bandwidth is reported; the timed wrapper counts all-reduces. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "launch/bench/bench.h"

/* Rank 0 of n whose peers hold the same pattern scaled by their rank + 1:
 * the sum is 1 + 2 + ... + n = n (n + 1) / 2 times this rank's buffer. */
static int broken = 0;

static void f_destroy(tpd_comm *c) { free(c); }
static tpd_status f_allreduce(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream) {
  (void)stream;
  const float tri = (float)(c->size * (c->size + 1) / 2);
  if (!broken)
    for (size_t i = 0; i < n; i++) tpd_store_f32(buf, dt, i, tri * tpd_load_f32(buf, dt, i));
  return TPD_OK;
}
static tpd_status f_start(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream, tpd_comm_req *req) {
  req->active = 0;
  return f_allreduce(c, buf, n, dt, stream);
}
static tpd_status f_wait(tpd_comm *c, tpd_comm_req *req) {
  (void)c, (void)req;
  return TPD_OK;
}
static tpd_status f_host_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes) {
  for (int r = 0; r < c->size; r++) memcpy((char *)recv + (size_t)r * n_bytes, send, n_bytes);
  return TPD_OK;
}
static tpd_status f_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes, void *stream) {
  (void)stream;
  return f_host_allgather(c, send, recv, n_bytes);
}
static tpd_status f_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root, void *stream) {
  (void)c, (void)buf, (void)n_bytes, (void)root, (void)stream;
  return TPD_OK;
}
static tpd_status f_host_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root) {
  return f_broadcast(c, buf, n_bytes, root, NULL);
}
static int barriers = 0;
static tpd_status f_barrier(tpd_comm *c) {
  (void)c;
  barriers++;
  return TPD_OK;
}
static void f_abort(tpd_comm *c, int code) {
  (void)c;
  exit(code);
}

static const tpd_comm_ops fake_ops = {"fake4", 0, f_destroy, f_allreduce, f_start, f_wait, f_allgather,
                                      f_broadcast, f_host_allgather, f_host_broadcast, f_barrier, f_abort, NULL};

static tpd_comm *fake_n(int n) {
  tpd_comm *c = calloc(1, sizeof *c);
  c->ops = &fake_ops;
  c->rank = 0, c->size = n, c->local_rank = 0, c->local_size = n;
  return c;
}

static tpd_comm *fake(void) { return fake_n(4); }

static void microbench(void) {
  tpd_comm *c = fake();
  bench_comm_row rows[64];
  int n = 0;
  const bench_comm_opts o = {4096, 16384, 3, 1, TPD_F32};
  broken = 0;
  CHECK(bench_comm_host(c, &o, rows, &n) == TPD_OK);
  CHECK(n == 3);
  for (int i = 0; i < n; i++) {
    CHECK(rows[i].n_bytes == (size_t)4096 << i);
    CHECK(rows[i].count == rows[i].n_bytes / 4);
    CHECK(rows[i].wrong == 0);
    CHECK(rows[i].us > 0);
    CHECK(rows[i].have_bw);
    CHECK(fabs(rows[i].algbw - rows[i].n_bytes / (rows[i].us * 1e-6) / 1e9) <= 1e-9 * rows[i].algbw);
    CHECK(fabs(rows[i].busbw - rows[i].algbw * 1.5) <= 1e-12 * rows[i].busbw); /* 2 (4 - 1) / 4 */
  }
  /* bf16: every partial sum is a small integer, exact */
  const bench_comm_opts ob = {4096, 4096, 2, 0, TPD_BF16};
  CHECK(bench_comm_host(c, &ob, rows, &n) == TPD_OK);
  CHECK(n == 1 && rows[0].count == 2048 && rows[0].wrong == 0);
  /* a broken all-reduce: every element wrong, in both checks, on all 4 (identical) ranks */
  broken = 1;
  const bench_comm_opts o1 = {4096, 4096, 2, 0, TPD_F32};
  CHECK(bench_comm_host(c, &o1, rows, &n) == TPD_OK);
  CHECK(n == 1 && rows[0].wrong == 2L * 1024 * 4);
  broken = 0;
  /* bad options */
  const bench_comm_opts bad = {4096, 1024, 2, 0, TPD_F32};
  CHECK(bench_comm_host(c, &bad, rows, &n) == TPD_ERR_ARG);
  tpd_clear_error();
  /* NCCL: this build has none, or no GPU: skipped with a reason, no rows */
  char skip[300];
  const tpd_status s = bench_comm_nccl(c, &o, rows, &n, skip, sizeof skip);
  if (s == TPD_OK && n == 0) CHECK(skip[0] != 0);
  tpd_clear_error();
  /* the link fit of the floor: positive bandwidth, non-negative latency */
  double alpha = -1, bw = -1;
  CHECK(bench_comm_fit(c, &alpha, &bw) == TPD_OK);
  CHECK(bw > 0 && alpha >= 0);
  c->ops->destroy(c);
}

/* One rank: the all-reduce sums nothing with anyone, so no bandwidth is
 * reported (it was algbw = bytes / a near-zero time: petabytes per second). */
static void one_rank(void) {
  tpd_comm *c = fake_n(1);
  bench_comm_row rows[64];
  int n = 0;
  const bench_comm_opts o = {4096, 65536, 3, 1, TPD_F32};
  broken = 0;
  CHECK(bench_comm_host(c, &o, rows, &n) == TPD_OK);
  CHECK(n == 5);
  for (int i = 0; i < n; i++) {
    CHECK(rows[i].wrong == 0);
    CHECK(rows[i].us >= 0);
    CHECK(!rows[i].have_bw, "size %zu", rows[i].n_bytes);
    CHECK(isnan(rows[i].algbw) && isnan(rows[i].busbw), "size %zu: algbw %g busbw %g", rows[i].n_bytes,
          rows[i].algbw, rows[i].busbw);
  }
  c->ops->destroy(c);
}

static void timed(void) {
  tpd_comm *in = fake(), *t = NULL;
  CHECK(bench_timed_comm_create(in, &t) == TPD_OK);
  CHECK(t->size == 4 && t->rank == 0 && t->ops->data_on_device == 0);
  float buf[100] = {0};
  double ms = -1, bytes = -1;
  long calls = -1;
  bench_timed_get(t, &ms, &bytes, &calls);
  CHECK(ms == 0 && bytes == 0 && calls == 0);
  CHECK(t->ops->allreduce(t, buf, 100, TPD_F32, NULL) == TPD_OK);
  int x = 1, all[4];
  CHECK(t->ops->host_allgather(t, &x, all, sizeof x) == TPD_OK);
  CHECK(all[3] == 1);
  const int b0 = barriers;
  CHECK(t->ops->barrier(t) == TPD_OK);
  CHECK(barriers == b0 + 1);
  tpd_comm_req req = {0};
  CHECK(t->ops->allreduce_start(t, buf, 50, TPD_BF16, NULL, &req) == TPD_OK);
  CHECK(t->ops->wait(t, &req) == TPD_OK);
  bench_timed_get(t, &ms, &bytes, &calls);
  CHECK(calls == 3);               /* the barrier is not counted, the wait is time only */
  CHECK(bench_timed_allreduces(t) == 2); /* the blocking one and the started one; not the all-gather */
  CHECK(bytes == 400 + 4 + 100);   /* f32 x 100, one int, bf16 x 50 */
  CHECK(ms >= 0);
  bench_timed_reset(t);
  bench_timed_get(t, &ms, &bytes, &calls);
  CHECK(ms == 0 && bytes == 0 && calls == 0);
  CHECK(bench_timed_allreduces(t) == 0);
  tpd_comm_destroy(t); /* frees the wrapper only */
  CHECK(in->size == 4);
  tpd_comm_destroy(in);
}

int main(void) {
  microbench();
  one_rank();
  timed();
  if (tu_failures) {
    fprintf(stderr, "test_bench_comm: %d check(s) failed\n", tu_failures);
    return 1;
  }
  printf("test_bench_comm: ok\n");
  return 0;
}
