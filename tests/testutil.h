/* Minimal test helpers: checks that count failures (and fail a program that
 * checked nothing), fresh random inputs, NaN-safe error norms computed in
 * double. */
#ifndef TPD_TESTUTIL_H
#define TPD_TESTUTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int tu_failures __attribute__((unused));
static int tu_checks __attribute__((unused));

static inline void tu_note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
}

/* CHECK(cond) or CHECK(cond, "format", args...): counts, and on failure
 * prints the condition, its location and the message. */
#define CHECK(cond, ...)                                              \
  do {                                                                \
    tu_checks++;                                                      \
    if (!(cond)) {                                                    \
      tu_failures++;                                                  \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      tu_note("" __VA_ARGS__);                                        \
      fprintf(stderr, "\n");                                          \
    }                                                                 \
  } while (0)

/* Fails the test when a tpd call does not return TPD_OK. */
#define CHECK_OK(expr)                                                                             \
  do {                                                                                             \
    tpd_status s_ = (expr);                                                                        \
    tu_checks++;                                                                                   \
    if (s_ != TPD_OK) {                                                                            \
      tu_failures++;                                                                               \
      fprintf(stderr, "FAIL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr, tpd_status_name(s_), \
              tpd_last_error());                                                                   \
      tpd_clear_error();                                                                           \
    }                                                                                              \
  } while (0)

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
 * seed is printed so a failure can be replayed. */
static uint64_t tu_state;
static inline void tu_seed(const char *name) {
  const char *s = getenv("TPD_TEST_SEED");
  tu_state = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
  if (!tu_state) tu_state = 88172645463325252ull;
  printf("%s: TPD_TEST_SEED=%llu\n", name, (unsigned long long)tu_state);
}
static inline uint64_t tu_next(void) {
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

#define TU_IS_DOUBLE_(p) _Generic((p), double *: 1, const double *: 1, float *: 0, const float *: 0)
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

#endif
