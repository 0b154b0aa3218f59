/* Minimal test helpers: checks that count failures, fresh random inputs,
 * error norms computed in double. */
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

static inline int tu_finish(const char *name) {
  if (tu_failures) {
    fprintf(stderr, "%s: %d of %d checks FAILED\n", name, tu_failures, tu_checks);
    return 1;
  }
  printf("%s: all %d checks passed\n", name, tu_checks);
  return 0;
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

/* ||a - b|| / ||b|| over n doubles-or-floats read through callbacks */
static inline double tu_rel_err_fd(const float *a, const double *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double)a[i] - ref[i];
    if (isnan(a[i])) return INFINITY;
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}
static inline double tu_max_abs_fd(const float *a, const double *ref, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i])) return INFINITY;
    const double d = fabs((double)a[i] - ref[i]);
    if (d > m) m = d;
  }
  return m;
}

#endif
