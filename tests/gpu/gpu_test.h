/* Helpers shared by the GPU tests: skip when no device, random bf16-exact
 * inputs, poisoned outputs, normalised error (NaN-safe: tests/testutil.h).
 * Each test is a C program that exits 0 (pass), 1 (fail, or no check ran) or
 * 77 (skipped: no CUDA device, with a one-line SKIP reason). */
#ifndef TPD_GPU_TEST_H
#define TPD_GPU_TEST_H

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "kernels/backend.h"
#include "runtime/base/dtype.h"
#include "runtime/base/error.h"
#include "tests/testutil.h" /* the NaN-safe comparisons: tu_rel_err, tu_worst, tu_within */

#define GT_SKIP 77

/* 1 when a CUDA device is usable; otherwise fills why. */
static inline int gt_have_gpu(char *why, size_t cap) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n <= 0) {
    snprintf(why, cap, "%s", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device is visible");
    (void)cudaGetLastError();
    return 0;
  }
  return 1;
}

static inline void gt_require_gpu(const char *prog) {
  char why[256];
  if (!gt_have_gpu(why, sizeof why)) {
    printf("SKIP: no CUDA device (%s): %s not run\n", why, prog);
    fflush(stdout);
    exit(GT_SKIP);
  }
}

#define GT_TRY(expr)                                                                                     \
  do {                                                                                                   \
    tpd_status gt_s_ = (expr);                                                                           \
    if (gt_s_ != TPD_OK) {                                                                               \
      fprintf(stderr, "FAIL %s:%d: %s -> %s: %s (%s)\n", __FILE__, __LINE__, #expr, tpd_status_name(gt_s_), \
              tpd_last_error(), tpd_last_error_loc());                                                   \
      exit(1);                                                                                           \
    }                                                                                                    \
  } while (0)

#define GT_CUDA(expr)                                                                                      \
  do {                                                                                                     \
    cudaError_t gt_e_ = (expr);                                                                            \
    if (gt_e_ != cudaSuccess) {                                                                            \
      fprintf(stderr, "FAIL %s:%d: %s -> %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(gt_e_));     \
      exit(1);                                                                                             \
    }                                                                                                      \
  } while (0)

/* MPI start of a multi-rank GPU test: every rank learns whether all ranks
 * have a GPU.  Returns the MPI communicator, or NULL after printing SKIP
 * (the caller returns GT_SKIP). */
static inline tpd_comm *gt_mpi_gpu_or_skip(int *argc, char ***argv, const char *prog) {
  tpd_comm *mpi = NULL;
  GT_TRY(tpd_comm_mpi_create(argc, argv, &mpi));
  char why[256] = "";
  const int have = gt_have_gpu(why, sizeof why);
  int bad = -1;
  GT_TRY(tpd_comm_agree(mpi, have, &bad));
  if (bad < 0) return mpi;
  if (mpi->rank == bad) printf("SKIP: no CUDA device (%s) on rank %d: %s not run\n", why, bad, prog);
  fflush(stdout);
  tpd_comm_destroy(mpi);
  return NULL;
}

static inline void *gt_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "FAIL: out of host memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

/* ---- random numbers: a fresh seed per run unless GT_SEED is set ---- */
static uint64_t gt_state;

static inline void gt_seed(void) {
  const char *s = getenv("GT_SEED");
  gt_state = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
  printf("random seed %llu (set GT_SEED to repeat)\n", (unsigned long long)gt_state);
}

static inline uint64_t gt_next(void) {
  uint64_t z = (gt_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* uniform in [-a, a), never exactly zero, rounded to a bf16 value */
static inline float gt_uniform(float a) {
  for (;;) {
    const double u = (double)(gt_next() >> 11) * (1.0 / 9007199254740992.0);
    const float v = tpd_bf16_to_f32(tpd_f32_to_bf16((float)((2.0 * u - 1.0) * a)));
    if (v != 0.0f) return v;
  }
}

static inline int gt_randint(int n) { return (int)(gt_next() % (uint64_t)n); }

static inline void gt_fill(float *x, size_t n, float a) {
  for (size_t i = 0; i < n; i++) x[i] = gt_uniform(a);
}

/* f32 host -> bf16 host */
static inline uint16_t *gt_to_bf16(const float *x, size_t n) {
  uint16_t *h = (uint16_t *)gt_malloc(n * 2);
  for (size_t i = 0; i < n; i++) h[i] = tpd_f32_to_bf16(x[i]);
  return h;
}

/* Device buffer holding host data converted to dtype. */
static inline void *gt_dev_from(tpd_backend *be, const float *x, size_t n, tpd_dtype dt) {
  void *d = NULL;
  GT_TRY(be->ops->alloc(be, n * tpd_dtype_size(dt), &d));
  void *h = gt_malloc(n * tpd_dtype_size(dt));
  tpd_convert(h, dt, x, TPD_F32, n);
  GT_TRY(be->ops->upload(be, d, h, n * tpd_dtype_size(dt)));
  free(h);
  return d;
}

/* Device buffer of n_bytes filled with 0xFF bytes (NaN as bf16 and f32).
 * cudaMemset runs on the legacy stream, which the backend's non-blocking
 * streams do not wait for: synchronise before anything else touches it. */
static inline void *gt_dev_poison(tpd_backend *be, size_t n_bytes) {
  void *d = NULL;
  GT_TRY(be->ops->alloc(be, n_bytes, &d));
  GT_CUDA(cudaMemset(d, 0xFF, n_bytes));
  GT_CUDA(cudaDeviceSynchronize());
  return d;
}

/* Device data of dtype -> host f32 (n elements). */
static inline float *gt_host_from(tpd_backend *be, const void *d, size_t n, tpd_dtype dt) {
  void *h = gt_malloc(n * tpd_dtype_size(dt));
  GT_TRY(be->ops->download(be, h, d, n * tpd_dtype_size(dt)));
  float *f = (float *)gt_malloc(n * sizeof(float));
  tpd_convert(f, TPD_F32, h, dt, n);
  free(h);
  return f;
}

typedef struct {
  double err;   /* ||out - ref|| / ||ref|| (tu_rel_err): +INF when n_nan > 0 or ref is all zero */
  size_t n_nan; /* elements that are NaN or Inf in out or in ref */
} gt_cmp;

/* Compares rows x cols of out (stride ld_out) with ref (stride ld_ref) with
 * tu_rel_err: a NaN or Inf on either side (a poisoned, unwritten output
 * included) counts in n_nan and makes err +INF, as does an all-zero ref. */
static inline gt_cmp gt_compare(const float *out, int ld_out, const float *ref, int ld_ref, int rows, int cols) {
  gt_cmp c = {0, 0};
  const size_t n = (size_t)rows * (size_t)cols;
  double *o = (double *)gt_malloc(n * sizeof(double)), *f = (double *)gt_malloc(n * sizeof(double));
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

static int gt_failures, gt_checks;

/* Prints one result line; counts a failure when err > tol or any NaN/Inf. */
static inline void gt_report(const char *what, gt_cmp c, double tol) {
  const int ok = c.n_nan == 0 && tu_within(c.err, tol);
  gt_checks++;
  printf("%s %-58s err %.3e (tol %.0e)%s\n", ok ? "ok  " : "FAIL", what, c.err, tol,
         c.n_nan ? "  NaN/unwritten elements present" : "");
  if (c.n_nan) printf("     %zu NaN or unwritten elements\n", c.n_nan);
  if (!ok) gt_failures++;
}

static inline void gt_expect(int cond, const char *what) {
  gt_checks++;
  printf("%s %s\n", cond ? "ok  " : "FAIL", what);
  if (!cond) gt_failures++;
}

/* 0 only when at least one check ran and none failed (tu_verdict) */
static inline int gt_finish(const char *prog) {
  if (!gt_checks) printf("%s: FAILED: no checks ran (a test that checks nothing cannot fail)\n", prog);
  else if (gt_failures) printf("%s: %d of %d check(s) FAILED\n", prog, gt_failures, gt_checks);
  else printf("%s: all %d checks passed\n", prog, gt_checks);
  return tu_verdict(gt_checks, gt_failures);
}

#endif
