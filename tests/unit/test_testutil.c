/* The check helpers of tests/testutil.h can fail: a NaN or an Inf on either
 * side of a comparison, an all-NaN array, an empty comparison and an all-zero
 * reference never pass; a tolerance passes at its bound and not one ulp
 * beyond; a program that made no checks fails tu_finish (run in a child
 * process, whose exit status and message are checked); the verbose checks
 * (tu_report, tu_expect) count and print their verdict; a program in two
 * files keeps one set of counters and one generator. */
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

enum { N = 37 };

static void fill(float *f, double *d, size_t n) {
  for (size_t i = 0; i < n; i++) d[i] = (double)(f[i] = (float)tu_uniform(-4.0, 4.0));
}

/* Every comparison helper on a (float) against ref (double) and the reverse. */
static int any_passes(const float *a, const double *ref, size_t n, double tol) {
  return tu_close(a, ref, n, tol) || tu_close(ref, a, n, tol) || tu_within(tu_max_diff_rel(a, ref, n), tol) ||
         tu_within(tu_rel_err(a, ref, n), tol);
}

static void test_non_finite(void) {
  float a[N];
  double r[N];
  const float bad[3] = {NAN, INFINITY, -INFINITY};
  fill(a, r, N);
  CHECK(any_passes(a, r, N, 0.0), "equal arrays pass every helper at tolerance 0");
  CHECK(tu_max_abs_diff(a, r, N) == 0.0, "equal arrays differ by 0");
  for (int k = 0; k < 3; k++) {
    const int at = tu_int(0, N - 1);
    /* on the result side */
    fill(a, r, N);
    a[at] = bad[k];
    CHECK(!any_passes(a, r, N, 1e300), "%g at %d in the result passes", (double)bad[k], at);
    CHECK(tu_max_abs_diff(a, r, N) == INFINITY && tu_max_abs(a, N) == INFINITY, "%g: difference not +INF",
          (double)bad[k]);
    /* on the reference side */
    fill(a, r, N);
    r[at] = bad[k];
    CHECK(!any_passes(a, r, N, 1e300), "%g at %d in the reference passes", (double)bad[k], at);
    /* the same non-finite value on both sides is no agreement */
    a[at] = bad[k];
    CHECK(!any_passes(a, r, N, 1e300), "%g on both sides passes", (double)bad[k]);
    CHECK(!tu_close(a, a, N, 1e300), "%g: an array compared with itself passes", (double)bad[k]);
  }
  /* all NaN: plain fmax() would report a difference of 0 here */
  float an[N];
  double rn[N];
  for (int i = 0; i < N; i++) an[i] = NAN, rn[i] = NAN;
  double fm = 0;
  for (int i = 0; i < N; i++) fm = fmax(fm, fabs((double)an[i] - rn[i]));
  CHECK(fm == 0.0, "the defect this guards against: fmax over NaN differences gives %g", fm);
  CHECK(!any_passes(an, rn, N, 1e300) && !tu_close(an, an, N, 1e300), "all-NaN arrays pass");
  CHECK(tu_max_abs_diff(an, rn, N) == INFINITY, "all-NaN difference %g, not +INF", tu_max_abs_diff(an, rn, N));
  /* a single element and a huge finite difference that overflows */
  const double big[1] = {1.7e308}, nbig[1] = {-1.7e308};
  CHECK(!tu_close(big, nbig, 1, 1e308), "an overflowing difference passes");
  /* scalar forms */
  CHECK(tu_abs_diff(NAN, NAN) == INFINITY && tu_abs_diff(1.0, INFINITY) == INFINITY &&
            tu_abs_diff(-INFINITY, -INFINITY) == INFINITY && tu_abs_diff(2.0, -1.0) == 3.0,
        "tu_abs_diff");
  CHECK(!tu_within(NAN, 1.0) && !tu_within(INFINITY, INFINITY) && !tu_within(-INFINITY, 1.0), "tu_within non-finite");
  double w = 0;
  w = tu_worst(w, 1.0), w = tu_worst(w, NAN), w = tu_worst(w, 0.5);
  CHECK(w == INFINITY, "tu_worst forgets a NaN: %g", w);
  w = tu_worst(tu_worst(0.0, 0.25), 0.125);
  CHECK(w == 0.25, "tu_worst of finite errors: %g", w);
}

/* Empty comparisons and zero references prove nothing and fail. */
static void test_degenerate(void) {
  float a[N];
  double r[N];
  fill(a, r, N);
  CHECK(!tu_close(a, r, 0, 1e300) && tu_max_abs(a, 0) == INFINITY, "an empty comparison passes");
  CHECK(!tu_within(tu_rel_err(a, r, 0), 1e300) && !tu_within(tu_max_diff_rel(a, r, 0), 1e300),
        "an empty relative comparison passes");
  float z[N] = {0};
  double zd[N] = {0};
  CHECK(tu_close(z, zd, N, 0.0), "zeros equal zeros in absolute terms");
  CHECK(!tu_within(tu_max_diff_rel(z, zd, N), 1e300) && !tu_within(tu_rel_err(z, zd, N), 1e300),
        "a relative comparison against an all-zero reference passes");
}

/* tu_within(err, tol) passes for err <= tol: at the bound yes, one ulp beyond no. */
static void test_bound(void) {
  const double tol = tu_uniform(1e-7, 1e-3);
  CHECK(tu_within(tol, tol), "an error exactly at the tolerance fails");
  CHECK(!tu_within(nextafter(tol, INFINITY), tol), "an error one ulp above the tolerance passes");
  CHECK(tu_within(nextafter(tol, 0.0), tol) && tu_within(0.0, 0.0), "errors below the tolerance");
  /* arrays whose largest difference is exactly 0.25 (exact in binary) */
  float a[N];
  double r[N];
  fill(a, r, N);
  const int at = tu_int(0, N - 1);
  a[at] = 1.5f, r[at] = 1.25;
  for (int i = 0; i < N; i++)
    if (i != at) r[i] = a[i] + 0.125; /* exact: |a| < 4 and a float has 24 bits */
  CHECK(tu_max_abs_diff(a, r, N) == 0.25, "max difference %.17g, want 0.25", tu_max_abs_diff(a, r, N));
  CHECK(tu_close(a, r, N, 0.25) && !tu_close(a, r, N, nextafter(0.25, 0.0)), "tu_close at its bound");
  /* relative: max |a - r| / max |r| */
  const double x[2] = {3.0, -1.0}, y[2] = {2.0, -4.0};
  CHECK(tu_max_diff_rel(x, y, 2) == 0.75 && tu_within(tu_max_diff_rel(x, y, 2), 0.75), "tu_max_diff_rel %g",
        tu_max_diff_rel(x, y, 2));
  CHECK(tu_rel_err(x, y, 2) == sqrt(10.0 / 20.0), "tu_rel_err %.17g", tu_rel_err(x, y, 2));
}

/* stdout into a temporary file, so that a verdict line can be read back
 * (and the expected FAIL lines stay out of the log) */
static FILE *g_cap;
static int g_saved_stdout = -1;
static void capture_begin(void) {
  fflush(stdout);
  g_cap = tmpfile();
  g_saved_stdout = dup(1);
  if (!g_cap || g_saved_stdout < 0 || dup2(fileno(g_cap), 1) < 0) {
    fprintf(stderr, "FAIL: cannot capture stdout\n");
    exit(1);
  }
}
static void capture_end(char *buf, size_t cap) {
  fflush(stdout);
  dup2(g_saved_stdout, 1);
  close(g_saved_stdout);
  rewind(g_cap);
  const size_t n = fread(buf, 1, cap - 1, g_cap);
  buf[n] = 0;
  fclose(g_cap);
}

/* tu_compare and tu_report: a poisoned (NaN) or infinite element on either
 * side fails at any tolerance; padding beyond the compared columns is not
 * read; an error at the bound passes.  Each verdict is counted. */
static void test_report(void) {
  enum { R = 3, C = 5, LD = 7 };
  float out[R * LD], ref[R * C];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < LD; c++) {
      out[r * LD + c] = c < C ? (float)tu_uniform(-2.0, 2.0) : NAN; /* padding: NaN, never compared */
      if (c < C) ref[r * C + c] = out[r * LD + c];
    }
  tu_cmp k = tu_compare(out, LD, ref, C, R, C);
  CHECK(k.err == 0.0 && k.n_nan == 0, "equal rows with NaN padding: err %g, %zu NaN", k.err, k.n_nan);
  const int c0 = tu_checks, f0 = tu_failures;
  char line[512];
  capture_begin();
  const int pass = tu_report("equal rows", k, 0.0);
  capture_end(line, sizeof line);
  CHECK(pass && tu_checks == c0 + 1 && tu_failures == f0 && !strncmp(line, "ok   equal rows", 15),
        "tu_report of equal rows at tolerance 0 said \"%s\"", line);
  const float bad[3] = {NAN, INFINITY, -INFINITY};
  for (int b = 0; b < 3; b++)
    for (int side = 0; side < 2; side++) {
      const int at_r = tu_int(0, R - 1), at_c = tu_int(0, C - 1);
      float *p = side ? &ref[at_r * C + at_c] : &out[at_r * LD + at_c];
      const float keep = *p;
      *p = bad[b];
      k = tu_compare(out, LD, ref, C, R, C);
      const int c1 = tu_checks, f1 = tu_failures;
      capture_begin();
      const int passed = tu_report("a non-finite element", k, 1e300);
      capture_end(line, sizeof line);
      const int counted = tu_checks == c1 + 1 && tu_failures == f1 + 1;
      tu_failures = f1; /* the expected failure is not the program's */
      CHECK(!passed && counted && k.n_nan == 1 && k.err == INFINITY && !strncmp(line, "FAIL a non-finite", 17),
            "%g in the %s: passed %d, err %g, %zu NaN, said \"%s\"", (double)bad[b], side ? "reference" : "result",
            passed, k.err, k.n_nan, line);
      *p = keep;
    }
  /* an error exactly at the bound passes: ||(0.5, 0)|| / ||(1, 0)|| = 0.5 */
  const float o2[2] = {1.5f, 0.0f}, r2[2] = {1.0f, 0.0f};
  k = tu_compare(o2, 2, r2, 2, 1, 2);
  const int f2 = tu_failures;
  capture_begin();
  const int at_bound = tu_report("at the bound", k, 0.5);
  capture_end(line, sizeof line);
  CHECK(k.err == 0.5 && at_bound && tu_failures == f2, "err %g at tolerance 0.5", k.err);
  /* tu_expect counts like CHECK and prints one verdict line */
  const int c3 = tu_checks, f3 = tu_failures;
  capture_begin();
  const int e1 = tu_expect(1, "one"), e0 = tu_expect(0, "two");
  capture_end(line, sizeof line);
  const int counted = tu_checks == c3 + 2 && tu_failures == f3 + 1;
  tu_failures = f3;
  CHECK(e1 && !e0 && counted && !strcmp(line, "ok   one\nFAIL two\n"), "tu_expect: said \"%s\"", line);
}

void other_file_checks(int n);
uint64_t other_file_draw(void);

/* A program in two files (testutil_other_file.c): its checks count in the
 * same tu_checks, and it draws from the same generator state. */
static void test_two_files(void) {
  const int before = tu_checks;
  other_file_checks(3);
  const int counted = tu_checks - before;
  CHECK(counted == 3, "checks made in the second file: %d of 3 counted here", counted);
  const uint64_t s = tu_state;
  const uint64_t there = other_file_draw();
  const uint64_t advanced = tu_state;
  tu_state = s;
  const uint64_t here = tu_next();
  CHECK(there == here && advanced == tu_state && advanced != s,
        "the second file draws from this file's generator (state shared)");
}

/* tu_finish in a child process with the given counts: its exit status, and
 * what it wrote to stderr (in msg). */
static int finish_in_child(int checks, int failures, char *msg, size_t cap) {
  int fd[2];
  if (pipe(fd) != 0) return -1;
  fflush(NULL);
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    close(fd[0]);
    dup2(fd[1], 2);
    if (freopen("/dev/null", "w", stdout) == NULL) _exit(99);
    tu_checks = checks, tu_failures = failures;
    _exit(tu_finish("child"));
  }
  close(fd[1]);
  size_t got = 0;
  ssize_t k;
  while (got + 1 < cap && (k = read(fd[0], msg + got, cap - 1 - got)) > 0) got += (size_t)k;
  msg[got] = 0;
  close(fd[0]);
  int st = 0;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

static void test_finish(void) {
  CHECK(tu_verdict(0, 0) == 1, "zero checks pass");
  CHECK(tu_verdict(3, 0) == 0 && tu_verdict(3, 1) == 1 && tu_verdict(0, 1) == 1, "tu_verdict");
  char msg[512];
  int rc = finish_in_child(0, 0, msg, sizeof msg);
  CHECK(rc == 1 && strstr(msg, "no checks ran"), "tu_finish with zero checks: exit %d, said \"%s\"", rc, msg);
  rc = finish_in_child(4, 1, msg, sizeof msg);
  CHECK(rc == 1 && strstr(msg, "1 of 4 checks FAILED"), "tu_finish with a failure: exit %d, said \"%s\"", rc, msg);
  rc = finish_in_child(4, 0, msg, sizeof msg);
  CHECK(rc == 0 && msg[0] == 0, "tu_finish with 4 passing checks: exit %d, said \"%s\"", rc, msg);
}

int main(void) {
  tu_seed("test_testutil");
  test_non_finite();
  test_degenerate();
  test_bound();
  test_report();
  test_two_files();
  test_finish();
  return tu_finish("test_testutil");
}
