/* The MPI communicator's collective watchdog, driven directly (run under
 * mpirun by test_watchdog.py; docs/reliability.md, "Ranks that die or
 * stall").
 *
 *   wd_probe basic             every collective on fresh random data against a
 *                              reference computed in double (f32, bf16; small,
 *                              large; blocking and started)
 *   wd_probe late              a peer late by more than TPD_COMM_TIMEOUT while
 *                              loading (step -1), and by less than it at step 0:
 *                              both succeed
 *   wd_probe idle SECONDS      followers wait SECONDS for rank 0's broadcast in
 *                              an idle wait (tpd_comm_idle_next): no timeout,
 *                              and they use little CPU (printed, checked)
 *   wd_probe stall VICTIM HOW  at step 7 rank VICTIM stops (HOW=stop: SIGSTOP),
 *                              dies (kill: SIGKILL) or computes for ever (hang)
 *                              instead of joining an all-reduce; the others
 *                              must fail with the watchdog's line, then fail a
 *                              second call at once with the same line, then
 *                              end the job
 *   wd_probe idleloss          rank 0 dies while the others wait for it in an
 *                              idle wait: they must fail, naming rank 0
 *   wd_probe env               TPD_COMM_TIMEOUT / TPD_COMM_LOAD_TIMEOUT parsing
 *                              (one process, no mpirun)
 * A watchdog failure is printed as "wd_probe: rank R: LINE (after S s)". */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm.h"
#include "runtime/base/dtype.h"
#include "testutil.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu_s(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec +
         1e-6 * ((double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_usec);
}

/* The value every rank can compute for (seed, rank, i): uniform in [-1, 1). */
static float val(uint64_t seed, int rank, size_t i) {
  uint64_t z = seed ^ ((uint64_t)rank << 48) ^ (uint64_t)i;
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Fills rank r's message of n elements in dt (bf16 values are the rounded ones). */
static void fill(void *buf, tpd_dtype dt, uint64_t seed, int r, size_t n) {
  for (size_t i = 0; i < n; i++) tpd_store_f32(buf, dt, i, val(seed, r, i));
}

/* got (n elements of dt) against the sum over ranks of fill(), in double. */
static void check_sum(const char *what, const void *got, tpd_dtype dt, uint64_t seed, int p, size_t n) {
  void *one = malloc(n * 4);
  double *ref = calloc(n, sizeof *ref), *mag = calloc(n, sizeof *mag);
  for (int r = 0; r < p; r++) {
    fill(one, dt, seed, r, n);
    for (size_t i = 0; i < n; i++) {
      const double x = tpd_load_f32(one, dt, i);
      ref[i] += x;
      mag[i] += fabs(x);
    }
  }
  const double tol = dt == TPD_F32 ? 1e-6 : 1.0 / 128;
  size_t bad = 0, first = n;
  for (size_t i = 0; i < n; i++) {
    const double g = tpd_load_f32(got, dt, i);
    if (!(fabs(g - ref[i]) <= tol * (mag[i] + 1e-30))) { /* NaN fails */
      if (!bad) first = i;
      bad++;
    }
  }
  CHECK(bad == 0, "%s: %zu of %zu elements wrong; first [%zu] = %g, expected %g", what, bad, n, first,
        first < n ? (double)tpd_load_f32(got, dt, first) : 0.0, first < n ? ref[first] : 0.0);
  free(one);
  free(ref);
  free(mag);
}

static int run_basic(tpd_comm *c) {
  const int p = c->size, me = c->rank;
  uint64_t seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
  CHECK_OK(c->ops->host_broadcast(c, &seed, sizeof seed, 0)); /* every rank uses rank 0's */
  tpd_comm_set_step(c, 0);
  const tpd_dtype dts[] = {TPD_F32, TPD_BF16};
  const size_t ns[] = {7, 3000, 70000}; /* 70000 f32 x 4 ranks: the reduce-scatter path */
  for (int d = 0; d < 2; d++)
    for (int k = 0; k < 3; k++) {
      const size_t n = ns[k];
      void *buf = malloc(n * 4);
      fill(buf, dts[d], seed + (uint64_t)k, me, n);
      CHECK_OK(c->ops->allreduce(c, buf, n, dts[d], NULL));
      char what[64];
      snprintf(what, sizeof what, "allreduce %s n=%zu", d ? "bf16" : "f32", n);
      check_sum(what, buf, dts[d], seed + (uint64_t)k, p, n);
      free(buf);
    }
  /* three started all-reduces in flight, waited for in reverse order */
  enum { S = 3 };
  void *sb[S];
  tpd_comm_req rq[S];
  for (int j = 0; j < S; j++) {
    const size_t n = 100 + 900 * (size_t)j;
    sb[j] = malloc(n * 4);
    fill(sb[j], TPD_F32, seed + 10 + (uint64_t)j, me, n);
    CHECK_OK(c->ops->allreduce_start(c, sb[j], n, TPD_F32, NULL, &rq[j]));
  }
  for (int j = S - 1; j >= 0; j--) {
    CHECK_OK(c->ops->wait(c, &rq[j]));
    check_sum("started allreduce", sb[j], TPD_F32, seed + 10 + (uint64_t)j, p, 100 + 900 * (size_t)j);
    free(sb[j]);
  }
  /* all-gather (copy and in place) and broadcast from the last rank */
  const size_t nb = 777;
  unsigned char *mine = malloc(nb), *all = malloc(nb * (size_t)p);
  for (int inplace = 0; inplace < 2; inplace++) {
    for (size_t i = 0; i < nb; i++) mine[i] = (unsigned char)(val(seed + 20, me, i) * 127 + 128);
    memset(all, 0, nb * (size_t)p);
    if (inplace) memcpy(all + (size_t)me * nb, mine, nb);
    CHECK_OK(c->ops->allgather(c, inplace ? all + (size_t)me * nb : mine, all, nb, NULL));
    size_t bad = 0;
    for (int r = 0; r < p; r++)
      for (size_t i = 0; i < nb; i++)
        bad += all[(size_t)r * nb + i] != (unsigned char)(val(seed + 20, r, i) * 127 + 128);
    CHECK(bad == 0, "allgather (%s): %zu bytes wrong", inplace ? "in place" : "copy", bad);
  }
  for (size_t i = 0; i < nb; i++) mine[i] = me == p - 1 ? (unsigned char)(val(seed + 30, 0, i) * 127 + 128) : 0;
  CHECK_OK(c->ops->broadcast(c, mine, nb, p - 1, NULL));
  size_t bad = 0;
  for (size_t i = 0; i < nb; i++) bad += mine[i] != (unsigned char)(val(seed + 30, 0, i) * 127 + 128);
  CHECK(bad == 0, "broadcast from rank %d: %zu bytes wrong", p - 1, bad);
  CHECK(c->ops->broadcast(c, mine, nb, p, NULL) == TPD_ERR_ARG, "a root out of range is an error");
  tpd_clear_error();
  CHECK_OK(c->ops->barrier(c));
  free(mine);
  free(all);
  return 0;
}

static int run_late(tpd_comm *c) {
  float x = 1.0f;
  /* loading: rank 1 is 2 s late, past TPD_COMM_TIMEOUT (1 s) but within TPD_COMM_LOAD_TIMEOUT */
  if (c->rank == 1) sleep(2);
  double t0 = now_s();
  CHECK_OK(c->ops->allreduce(c, &x, 1, TPD_F32, NULL));
  CHECK(x == (float)c->size, "sum %g", (double)x);
  if (c->rank == 0) fprintf(stderr, "wd_probe: loading: waited %.2f s for rank 1\n", now_s() - t0);
  /* running: late by half the timeout */
  tpd_comm_set_step(c, 0);
  if (c->rank == 1) usleep(500000);
  x = 2.0f;
  CHECK_OK(c->ops->allreduce(c, &x, 1, TPD_F32, NULL));
  CHECK(x == 2.0f * (float)c->size, "sum %g", (double)x);
  return 0;
}

static int run_idle(tpd_comm *c, double secs) {
  tpd_comm_set_step(c, 3);
  int plan = 0;
  if (c->rank == 0) {
    usleep((useconds_t)(secs * 1e6));
    plan = 4242;
  } else {
    tpd_comm_idle_next(c);
  }
  const double t0 = now_s(), u0 = cpu_s();
  CHECK_OK(c->ops->host_broadcast(c, &plan, sizeof plan, 0));
  const double wall = now_s() - t0, cpu = cpu_s() - u0;
  CHECK(plan == 4242, "plan %d", plan);
  if (c->rank != 0) {
    fprintf(stderr, "wd_probe: rank %d: idle wait %.2f s, CPU %.3f s\n", c->rank, wall, cpu);
    CHECK(wall > secs - 0.5, "the idle wait ended after %.2f s, before rank 0 sent", wall);
    CHECK(cpu < 0.1 * wall, "the idle wait used %.3f s of CPU in %.2f s", cpu, wall);
  }
  /* the flag is spent: the next collective is watched again */
  CHECK(c->idle_next == 0, "idle_next still set");
  return 0;
}

/* A watchdog failure: print it, check a second call fails at once, end the job. */
static int fired(tpd_comm *c, tpd_status st, double t0) {
  const double took = now_s() - t0;
  if (st == TPD_OK) {
    fprintf(stderr, "wd_probe: rank %d: FAIL: the collective succeeded without the victim\n", c->rank);
    return 1;
  }
  fprintf(stderr, "wd_probe: rank %d: %s (after %.2f s)\n", c->rank, tpd_last_error(), took);
  char line[TPD_ERROR_MSG_CAP];
  snprintf(line, sizeof line, "%s", tpd_last_error());
  const double t1 = now_s();
  const tpd_status again = c->ops->barrier(c);
  const double fast = now_s() - t1;
  if (again != TPD_ERR_COMM || strcmp(tpd_last_error(), line) || fast > 0.1)
    fprintf(stderr, "wd_probe: rank %d: FAIL: a call after the watchdog fired returned %s in %.3f s: %s\n", c->rank,
            tpd_status_name(again), fast, tpd_last_error());
  else
    fprintf(stderr, "wd_probe: rank %d: the next call failed at once\n", c->rank);
  fflush(stderr);
  tpd_comm_destroy(c); /* ends the job: MPI cannot be finalised with a peer missing */
  fprintf(stderr, "wd_probe: rank %d: FAIL: still running after destroy\n", c->rank);
  return 1;
}

static int run_stall(tpd_comm *c, int victim, const char *how) {
  float x[4096];
  for (int i = 0; i < 4096; i++) x[i] = (float)i;
  tpd_comm_set_step(c, 6);
  CHECK_OK(c->ops->allreduce(c, x, 4096, TPD_F32, NULL));
  tpd_comm_set_step(c, 7);
  if (c->rank == victim) {
    fprintf(stderr, "wd_probe: rank %d (pid %ld): %s now\n", c->rank, (long)getpid(), how);
    fflush(stderr);
    if (!strcmp(how, "stop")) raise(SIGSTOP);
    else if (!strcmp(how, "kill")) raise(SIGKILL);
    else
      for (;;) sleep(1);
  }
  const double t0 = now_s();
  return fired(c, c->ops->allreduce(c, x, 4096, TPD_F32, NULL), t0);
}

static int run_idleloss(tpd_comm *c) {
  tpd_comm_set_step(c, 2);
  int plan = 0;
  if (c->rank == 0) {
    usleep(500000);
    raise(SIGKILL);
  }
  tpd_comm_idle_next(c);
  const double t0 = now_s();
  return fired(c, c->ops->host_broadcast(c, &plan, sizeof plan, 0), t0);
}

static void set(const char *name, const char *v) {
  if (v) setenv(name, v, 1);
  else unsetenv(name);
}

static int run_env(void) {
  double w = -1, l = -1;
  set("TPD_COMM_TIMEOUT", NULL), set("TPD_COMM_LOAD_TIMEOUT", NULL);
  CHECK_OK(tpd_comm_timeouts(&w, &l));
  CHECK(w == 60 && l == 600, "defaults %g %g", w, l);
  set("TPD_COMM_TIMEOUT", "2.5");
  CHECK_OK(tpd_comm_timeouts(&w, &l));
  CHECK(w == 2.5 && l == 600, "fractional %g %g", w, l);
  set("TPD_COMM_LOAD_TIMEOUT", "1");
  CHECK_OK(tpd_comm_timeouts(&w, &l));
  CHECK(w == 2.5 && l == 2.5, "the load timeout is never below the other: %g %g", w, l);
  set("TPD_COMM_TIMEOUT", "0");
  CHECK_OK(tpd_comm_timeouts(&w, &l));
  CHECK(w == 0 && l == 0, "0 turns both off: %g %g", w, l);
  const char *bad[] = {"abc", "-1", "3s", "nan", "inf", "1e999", " "};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    set("TPD_COMM_TIMEOUT", bad[i]);
    EXPECT_FAIL(tpd_comm_timeouts(&w, &l), TPD_ERR_ARG, "TPD_COMM_TIMEOUT");
  }
  set("TPD_COMM_TIMEOUT", "5");
  set("TPD_COMM_LOAD_TIMEOUT", "x");
  EXPECT_FAIL(tpd_comm_timeouts(&w, &l), TPD_ERR_ARG, "TPD_COMM_LOAD_TIMEOUT=x");
  /* a communicator refuses to start with a bad value, naming it */
  set("TPD_COMM_LOAD_TIMEOUT", NULL);
  set("TPD_COMM_TIMEOUT", "soon");
  tpd_comm *c = NULL;
  EXPECT_FAIL(tpd_comm_mpi_create(NULL, NULL, &c), TPD_ERR_ARG, "TPD_COMM_TIMEOUT=soon");
  CHECK(c == NULL, "no communicator on failure");
  EXPECT_FAIL(tpd_comm_single_create(&c), TPD_ERR_ARG, "TPD_COMM_TIMEOUT=soon"); /* TP 1 too */
  set("TPD_COMM_TIMEOUT", "0.5");
  CHECK_OK(tpd_comm_single_create(&c));
  tpd_comm_destroy(c);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: wd_probe basic|late|idle S|stall VICTIM HOW|idleloss|env [marker]\n");
    return 2;
  }
  const char *what = argv[1];
  if (!strcmp(what, "env")) {
    run_env();
    return tu_failures || !tu_checks ? 1 : 0;
  }
  tpd_comm *c = NULL;
  if (tpd_comm_mpi_create(&argc, &argv, &c) != TPD_OK) {
    fprintf(stderr, "wd_probe: %s\n", tpd_last_error());
    return 1;
  }
  int rc = 0;
  if (!strcmp(what, "basic")) rc = run_basic(c);
  else if (!strcmp(what, "late")) rc = run_late(c);
  else if (!strcmp(what, "idle") && argc > 2) rc = run_idle(c, atof(argv[2]));
  else if (!strcmp(what, "stall") && argc > 3) rc = run_stall(c, atoi(argv[2]), argv[3]);
  else if (!strcmp(what, "idleloss")) rc = run_idleloss(c);
  else {
    fprintf(stderr, "wd_probe: unknown scenario %s\n", what);
    rc = 2;
  }
  if (rc || tu_failures || !tu_checks) {
    fprintf(stderr, "wd_probe: rank %d: %d of %d checks failed\n", c->rank, tu_failures, tu_checks);
    c->ops->abort(c, 1);
  }
  tpd_comm_destroy(c);
  return 0;
}
