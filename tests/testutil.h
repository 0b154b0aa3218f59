/* The one test harness: checks that count failures (and fail a program that
 * checked nothing), fresh random inputs, NaN-safe error norms computed in
 * double, and, for the GPU tests (#define TU_WITH_CUDA before including),
 * device helpers: skip without a GPU, random bf16-exact inputs, poisoned
 * outputs, normalised error against a reference.
 *
 * C11 and C++ (the .cu and .cpp tests and tools include it too).  A test
 * program may be several files: the counters and the random state are weak
 * definitions, which the linker merges into one per program. */
#ifndef TPD_TESTUTIL_H
#define TPD_TESTUTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

__attribute__((weak)) int tu_failures, tu_checks;

static inline void tu_note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
}

/* Counts one check; returns ok.  Every check below goes through it. */
static inline int tu_count(int ok) {
  tu_checks++;
  if (!ok) tu_failures++;
  return ok;
}

/* CHECK(cond) or CHECK(cond, "format", args...): counts, and on failure
 * prints the condition, its location and the message. */
#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (!tu_count((cond) ? 1 : 0)) {                                  \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      tu_note("" __VA_ARGS__);                                        \
      fprintf(stderr, "\n");                                          \
    }                                                                 \
  } while (0)

/* Fails the test when a tpd call does not return TPD_OK. */
#define CHECK_OK(expr)                                                                             \
  do {                                                                                             \
    tpd_status s_ = (expr);                                                                        \
    if (!tu_count(s_ == TPD_OK)) {                                                                 \
      fprintf(stderr, "FAIL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr, tpd_status_name(s_), \
              tpd_last_error());                                                                   \
      tpd_clear_error();                                                                           \
    }                                                                                              \
  } while (0)

/* Expects `expr` to return `want` with a message containing `needle`; clears it. */
#define EXPECT_FAIL(expr, want, needle)                                                                     \
  do {                                                                                                      \
    tpd_clear_error();                                                                                      \
    const tpd_status st_ = (expr);                                                                          \
    CHECK(st_ == (want), "%s -> %s, expected %s (%s)", #expr, tpd_status_name(st_), tpd_status_name(want), \
          tpd_last_error());                                                                                \
    CHECK(strstr(tpd_last_error(), (needle)) != NULL, "%s: message '%s' does not name '%s'", #expr,        \
          tpd_last_error(), (needle));                                                                      \
  } while (0)

/* A tpd call the rest of the test depends on: anything but TPD_OK ends the
 * program (exit 1) with the call, its status, message and location. */
#define TU_TRY(expr)                                                                                        \
  do {                                                                                                      \
    tpd_status tu_s_ = (expr);                                                                              \
    if (tu_s_ != TPD_OK) {                                                                                  \
      fprintf(stderr, "FAIL %s:%d: %s -> %s: %s (%s)\n", __FILE__, __LINE__, #expr, tpd_status_name(tu_s_), \
              tpd_last_error(), tpd_last_error_loc());                                                      \
      exit(1);                                                                                              \
    }                                                                                                       \
  } while (0)

/* One verbose check: prints "ok   what" or "FAIL what" on stdout (the GPU
 * tests' logs list every check; tests/gpu/device_check.sh counts them). */
static inline int tu_expect(int ok, const char *what) {
  printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  return tu_count(ok);
}

/* malloc that ends the test (exit 1) when memory is short */
static inline void *tu_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "FAIL: out of host memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

/* The verdict of a test program: 0 (pass) only when at least one check ran
 * and none failed.  A program that checked nothing has proved nothing, so
 * zero checks is a failure. */
static inline int tu_verdict(int checks, int failures) { return checks > 0 && failures == 0 ? 0 : 1; }

static inline int tu_finish(const char *name) {
  if (tu_checks == 0)
    fprintf(stderr, "%s: FAILED: no checks ran (a test that checks nothing cannot fail)\n", name);
  else if (tu_failures)
    fprintf(stderr, "%s: %d of %d checks FAILED\n", name, tu_failures, tu_checks);
  else
    printf("%s: all %d checks passed\n", name, tu_checks);
  return tu_verdict(tu_checks, tu_failures);
}

/* xorshift64*; seeded from the clock unless TPD_TEST_SEED is set, and the
 * seed is printed so a failure can be replayed.  (Multi-rank tests seed on
 * rank 0 and broadcast tu_state.) */
__attribute__((weak)) uint64_t tu_state;
static inline void tu_seed(const char *name) {
  const char *s = getenv("TPD_TEST_SEED");
  tu_state = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
  if (!tu_state) tu_state = 88172645463325252ull;
  printf("%s: TPD_TEST_SEED=%llu\n", name, (unsigned long long)tu_state);
}
static inline uint64_t tu_next(void) {
  if (!tu_state) { /* unseeded, the generator would give zeros forever */
    fprintf(stderr, "FAIL: random numbers drawn before tu_seed\n");
    exit(1);
  }
  tu_state ^= tu_state >> 12;
  tu_state ^= tu_state << 25;
  tu_state ^= tu_state >> 27;
  return tu_state * 2685821657736338717ull;
}
/* uniform in [lo, hi) */
static inline double tu_uniform(double lo, double hi) {
  return lo + (hi - lo) * ((double)(tu_next() >> 11) * (1.0 / 9007199254740992.0));
}
static inline int tu_int(int lo, int hi) { return lo + (int)(tu_next() % (uint64_t)(hi - lo + 1)); }

/* ---- comparing numbers: NaN and Inf never pass ----
 * Every numerical comparison in the tests goes through these.  Plain C lets
 * a NaN through: fmax(m, NaN) == m and `if (d > m) m = d` both drop it, so
 * an all-NaN result "differs by 0".  Here a NaN or an Inf on EITHER side
 * makes the difference +INF, and +INF is never within a tolerance.
 *
 *   tu_abs_diff(x, y)          |x - y|; +INF when x or y is NaN or +-Inf
 *   tu_max_abs_diff(a, b, n)   max_i |a[i] - b[i]|, a and b float or double
 *                              arrays (any mix); +INF when any element of
 *                              either is not finite, or when n == 0 (an
 *                              empty comparison proves nothing)
 *   tu_max_abs(a, n)           max_i |a[i]|; +INF as above
 *   tu_max_diff_rel(a, ref, n) tu_max_abs_diff / tu_max_abs(ref): error in
 *                              units of the reference's largest magnitude;
 *                              +INF as above and when ref is all zero (tests
 *                              never run on zeros)
 *   tu_rel_err(a, ref, n)      ||a - ref||_2 / ||ref||_2; +INF as for
 *                              tu_max_diff_rel
 *   tu_worst(w, e)             running maximum of errors that stays +INF once
 *                              a NaN or Inf error has been seen
 *   tu_within(err, tol)        1 iff err is finite and err <= tol: an error
 *                              exactly at the bound passes, NaN/Inf never do
 *   tu_close(a, b, n, tol)     tu_within(tu_max_abs_diff(a, b, n), tol)
 *
 * The array forms take float * or double * (const or not); anything else is
 * a compile error. */
static inline double tu_abs_diff(double x, double y) {
  if (!isfinite(x) || !isfinite(y)) return INFINITY;
  const double d = fabs(x - y);
  return isfinite(d) ? d : INFINITY;
}

static inline double tu_worst(double w, double e) {
  if (!isfinite(w) || !isfinite(e)) return INFINITY;
  return e > w ? e : w;
}

static inline int tu_within(double err, double tol) { return isfinite(err) && err <= tol; }

#ifdef __cplusplus
static inline int tu_is_double_(const double *) { return 1; }
static inline int tu_is_double_(const float *) { return 0; }
#define TU_IS_DOUBLE_(p) tu_is_double_(p)
#else
#define TU_IS_DOUBLE_(p) _Generic((p), double *: 1, const double *: 1, float *: 0, const float *: 0)
#endif
static inline double tu_at_(const void *p, int is_double, size_t i) {
  return is_double ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

static inline double tu_max_abs_diff_(const void *a, int a_dbl, const void *b, int b_dbl, size_t n) {
  if (n == 0) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < n; i++) m = tu_worst(m, tu_abs_diff(tu_at_(a, a_dbl, i), tu_at_(b, b_dbl, i)));
  return m;
}
static inline double tu_max_abs_(const void *a, int a_dbl, size_t n) {
  if (n == 0) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    const double x = tu_at_(a, a_dbl, i);
    m = tu_worst(m, isfinite(x) ? fabs(x) : INFINITY);
  }
  return m;
}
static inline double tu_max_diff_rel_(const void *a, int a_dbl, const void *r, int r_dbl, size_t n) {
  const double d = tu_max_abs_diff_(a, a_dbl, r, r_dbl, n), s = tu_max_abs_(r, r_dbl, n);
  return isfinite(d) && isfinite(s) && s > 0 ? d / s : INFINITY;
}
static inline double tu_rel_err_(const void *a, int a_dbl, const void *r, int r_dbl, size_t n) {
  if (n == 0) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    const double x = tu_at_(a, a_dbl, i), y = tu_at_(r, r_dbl, i);
    if (!isfinite(x) || !isfinite(y)) return INFINITY;
    num += (x - y) * (x - y);
    den += y * y;
  }
  const double e = sqrt(num / den);
  return den > 0 && isfinite(e) ? e : INFINITY;
}

#define tu_max_abs_diff(a, b, n) tu_max_abs_diff_((a), TU_IS_DOUBLE_(a), (b), TU_IS_DOUBLE_(b), (size_t)(n))
#define tu_max_abs(a, n) tu_max_abs_((a), TU_IS_DOUBLE_(a), (size_t)(n))
#define tu_max_diff_rel(a, ref, n) tu_max_diff_rel_((a), TU_IS_DOUBLE_(a), (ref), TU_IS_DOUBLE_(ref), (size_t)(n))
#define tu_rel_err(a, ref, n) tu_rel_err_((a), TU_IS_DOUBLE_(a), (ref), TU_IS_DOUBLE_(ref), (size_t)(n))
#define tu_close(a, b, n, tol) tu_within(tu_max_abs_diff((a), (b), (n)), (tol))

/* ---- a result against its reference, with a verdict line ---- */
typedef struct {
  double err;   /* ||out - ref|| / ||ref|| (tu_rel_err): +INF when n_nan > 0 or ref is all zero */
  size_t n_nan; /* elements that are NaN or Inf in out or in ref */
} tu_cmp;

/* Compares rows x cols of out (stride ld_out) with ref (stride ld_ref) with
 * tu_rel_err: a NaN or Inf on either side (a poisoned, unwritten output
 * included) counts in n_nan and makes err +INF, as does an all-zero ref. */
static inline tu_cmp tu_compare(const float *out, int ld_out, const float *ref, int ld_ref, int rows, int cols) {
  tu_cmp c = {0, 0};
  const size_t n = (size_t)rows * (size_t)cols;
  double *o = (double *)tu_malloc(n * sizeof(double)), *f = (double *)tu_malloc(n * sizeof(double));
  for (int r = 0; r < rows; r++)
    for (int k = 0; k < cols; k++) {
      const size_t i = (size_t)r * cols + k;
      o[i] = out[(size_t)r * ld_out + k], f[i] = ref[(size_t)r * ld_ref + k];
      if (!isfinite(o[i]) || !isfinite(f[i])) c.n_nan++;
    }
  c.err = tu_rel_err(o, f, n);
  free(o), free(f);
  return c;
}

/* One verbose check of a comparison: fails when err > tol or any element is
 * NaN or Inf; prints the error and the bound. */
static inline int tu_report(const char *what, tu_cmp c, double tol) {
  const int ok = c.n_nan == 0 && tu_within(c.err, tol);
  printf("%s %-58s err %.3e (tol %.0e)%s\n", ok ? "ok  " : "FAIL", what, c.err, tol,
         c.n_nan ? "  NaN/unwritten elements present" : "");
  if (c.n_nan) printf("     %zu NaN or unwritten elements\n", c.n_nan);
  return tu_count(ok);
}

#endif /* TPD_TESTUTIL_H */

/* ---- device helpers for the GPU tests (#define TU_WITH_CUDA first) ----
 * Each GPU test exits 0 (pass), 1 (fail, or no check ran) or TU_SKIP (77:
 * no CUDA device, with a one-line SKIP reason). */
#if defined(TU_WITH_CUDA) && !defined(TPD_TESTUTIL_CUDA_H)
#define TPD_TESTUTIL_CUDA_H

#include <cuda_runtime_api.h>

#include "comm/comm.h"
#include "kernels/backend.h"
#include "runtime/base/dtype.h"
#include "runtime/base/error.h"

#define TU_SKIP 77

/* A CUDA call the rest of the test depends on: an error ends the program. */
#define TU_CUDA(expr)                                                                                  \
  do {                                                                                                 \
    cudaError_t tu_e_ = (expr);                                                                        \
    if (tu_e_ != cudaSuccess) {                                                                        \
      fprintf(stderr, "FAIL %s:%d: %s -> %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(tu_e_)); \
      exit(1);                                                                                         \
    }                                                                                                  \
  } while (0)

/* 1 when a CUDA device is usable; otherwise fills why. */
static inline int tu_have_gpu(char *why, size_t cap) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n <= 0) {
    snprintf(why, cap, "%s", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device is visible");
    (void)cudaGetLastError();
    return 0;
  }
  return 1;
}

/* exits TU_SKIP with a SKIP line when no CUDA device is usable */
static inline void tu_require_gpu(const char *prog) {
  char why[256];
  if (!tu_have_gpu(why, sizeof why)) {
    printf("SKIP: no CUDA device (%s): %s not run\n", why, prog);
    fflush(stdout);
    exit(TU_SKIP);
  }
}

/* Checks that make a device fault on purpose (a host sync inside a graph
 * capture, a kernel reading far out of bounds) ask this first: under
 * compute-sanitizer (TPD_TEST_SANITIZER=1, set by tests/gpu/device_check.sh)
 * the tool would report the planned fault as an error, so they print a skip
 * line instead; the plain run of the same program checks them. */
static inline int tu_planned_faults_off(const char *what) {
  const char *e = getenv("TPD_TEST_SANITIZER");
  if (!e || strcmp(e, "1") != 0) return 0;
  printf("skip %s (a planned device fault; checked by the run without compute-sanitizer)\n", what);
  fflush(stdout);
  return 1;
}

/* MPI start of a multi-rank GPU test: every rank learns whether all ranks
 * have a GPU.  Returns the MPI communicator, or NULL after printing SKIP
 * (the caller returns TU_SKIP). */
static inline tpd_comm *tu_mpi_gpu_or_skip(int *argc, char ***argv, const char *prog) {
  tpd_comm *mpi = NULL;
  TU_TRY(tpd_comm_mpi_create(argc, argv, &mpi));
  char why[256] = "";
  const int have = tu_have_gpu(why, sizeof why);
  int bad = -1;
  TU_TRY(tpd_comm_agree(mpi, have, &bad));
  if (bad < 0) return mpi;
  if (mpi->rank == bad) printf("SKIP: no CUDA device (%s) on rank %d: %s not run\n", why, bad, prog);
  fflush(stdout);
  tpd_comm_destroy(mpi);
  return NULL;
}

/* uniform in [-a, a), never exactly zero, rounded to a bf16 value */
static inline float tu_bf16_uniform(float a) {
  for (;;) {
    const double u = (double)(tu_next() >> 11) * (1.0 / 9007199254740992.0);
    const float v = tpd_bf16_to_f32(tpd_f32_to_bf16((float)((2.0 * u - 1.0) * a)));
    if (v != 0.0f) return v;
  }
}

static inline void tu_fill_bf16(float *x, size_t n, float a) {
  for (size_t i = 0; i < n; i++) x[i] = tu_bf16_uniform(a);
}

/* f32 host -> bf16 host */
static inline uint16_t *tu_to_bf16(const float *x, size_t n) {
  uint16_t *h = (uint16_t *)tu_malloc(n * 2);
  for (size_t i = 0; i < n; i++) h[i] = tpd_f32_to_bf16(x[i]);
  return h;
}

/* Device buffer holding host data converted to dtype. */
static inline void *tu_dev_from(tpd_backend *be, const float *x, size_t n, tpd_dtype dt) {
  void *d = NULL;
  TU_TRY(be->ops->alloc(be, n * tpd_dtype_size(dt), &d));
  void *h = tu_malloc(n * tpd_dtype_size(dt));
  tpd_convert(h, dt, x, TPD_F32, n);
  TU_TRY(be->ops->upload(be, d, h, n * tpd_dtype_size(dt)));
  free(h);
  return d;
}

/* Device buffer of n_bytes filled with 0xFF bytes (NaN as bf16 and f32).
 * cudaMemset runs on the legacy stream, which the backend's non-blocking
 * streams do not wait for: synchronise before anything else touches it. */
static inline void *tu_dev_poison(tpd_backend *be, size_t n_bytes) {
  void *d = NULL;
  TU_TRY(be->ops->alloc(be, n_bytes, &d));
  TU_CUDA(cudaMemset(d, 0xFF, n_bytes));
  TU_CUDA(cudaDeviceSynchronize());
  return d;
}

/* Device data of dtype -> host f32 (n elements). */
static inline float *tu_host_from(tpd_backend *be, const void *d, size_t n, tpd_dtype dt) {
  void *h = tu_malloc(n * tpd_dtype_size(dt));
  TU_TRY(be->ops->download(be, h, d, n * tpd_dtype_size(dt)));
  float *f = (float *)tu_malloc(n * sizeof(float));
  tpd_convert(f, TPD_F32, h, dt, n);
  free(h);
  return f;
}

#endif /* TU_WITH_CUDA */
