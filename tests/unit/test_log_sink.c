/* tpd_log_set_sink (runtime/base/error.h): with a sink set, each log line
 * reaches it once, whole (level, "tpdecode <level>: message (file:line)", no
 * newline) and nothing reaches stderr; NULL sends lines to stderr again; and
 * a sink called from two threads at once receives every line.  Lines below
 * the TPD_LOG level (here warn) reach neither.
 *
 * stderr (fd 2) is pointed at a temporary file with dup2 while lines are
 * logged, so what the library wrote there can be read back.  Messages carry
 * a fresh random tag, so a line left over from elsewhere cannot pass. */
#include <pthread.h>
#include <unistd.h>

#include "runtime/base/error.h"
#include "testutil.h"

enum { MAX_LINES = 1024, LINE_CAP = 1500, N_THREADS = 2, N_PER_THREAD = 200 };

typedef struct {
  pthread_mutex_t mu;
  int n;
  tpd_log_level lvl[MAX_LINES];
  char line[MAX_LINES][LINE_CAP];
} recorder;

static void record(void *user, tpd_log_level lvl, const char *line) {
  recorder *r = user;
  pthread_mutex_lock(&r->mu);
  if (r->n < MAX_LINES) {
    r->lvl[r->n] = lvl;
    snprintf(r->line[r->n], LINE_CAP, "%s", line);
  }
  r->n++;
  pthread_mutex_unlock(&r->mu);
}

/* ---- fd 2 into a temporary file, and back ---- */
static int g_saved_fd = -1;
static FILE *g_capture;

static void capture_stderr(void) {
  fflush(stderr);
  g_capture = tmpfile();
  CHECK(g_capture != NULL, "tmpfile");
  if (!g_capture) exit(1);
  g_saved_fd = dup(2);
  CHECK(g_saved_fd >= 0 && dup2(fileno(g_capture), 2) == 2, "dup2 of stderr");
}

/* restores fd 2; returns what was written there (malloc'd, NUL-terminated) */
static char *release_stderr(void) {
  fflush(stderr);
  CHECK(dup2(g_saved_fd, 2) == 2, "restoring stderr");
  close(g_saved_fd);
  g_saved_fd = -1;
  long n = 0;
  if (fseek(g_capture, 0, SEEK_END) == 0) n = ftell(g_capture);
  char *text = tu_malloc((size_t)(n > 0 ? n : 0) + 1);
  rewind(g_capture);
  const size_t got = n > 0 ? fread(text, 1, (size_t)n, g_capture) : 0;
  text[got] = 0;
  fclose(g_capture);
  g_capture = NULL;
  return text;
}

/* One line, as the header promises: "tpdecode <level>: <message> (<file>:<line>)"
 * (or "tpdecode[<rank>] ..." once a rank is set), no newline. */
static int well_formed(const char *line, const char *level, const char *message, const char *file) {
  char head[64];
  snprintf(head, sizeof head, " %s: ", level);
  const char *m = strstr(line, message), *f = strstr(line, file);
  return !strncmp(line, "tpdecode", 8) && strstr(line, head) && m && f && f > m && line[strlen(line) - 1] == ')' &&
         !strchr(line, '\n');
}

static void test_sink_and_back(void) {
  recorder *r = calloc(1, sizeof *r);
  CHECK(r != NULL);
  if (!r) return;
  pthread_mutex_init(&r->mu, NULL);
  const unsigned long long tag = (unsigned long long)tu_next();
  char env_val[32], want_param[128], want_warn[64], want_err[64], want_back[64];
  snprintf(env_val, sizeof env_val, "%llux", tag % 100000); /* not an integer: tpd_param_int warns */
  snprintf(want_param, sizeof want_param, "ignoring TPD_LOGSINK_TEST=%s: not an integer", env_val);
  snprintf(want_warn, sizeof want_warn, "warning %llu", tag);
  snprintf(want_err, sizeof want_err, "error %llu", tag);
  snprintf(want_back, sizeof want_back, "back on stderr %llu", tag);
  setenv("TPD_LOGSINK_TEST", env_val, 1);

  capture_stderr();
  tpd_log_set_sink(record, r);
  const long v = tpd_param_int("LOGSINK_TEST", 7); /* a public call that logs a warning */
  TPD_WARN("warning %llu", tag);
  tpd_log_at(TPD_LOG_ERROR, __FILE__, __LINE__, "error %llu", tag);
  TPD_INFO("info %llu", tag); /* below TPD_LOG=warn: filtered before the sink */
  const int n_want = 3;
  tpd_log_set_sink(NULL, NULL);
  TPD_WARN("back on stderr %llu", tag);
  char *err = release_stderr();

  CHECK(v == 7, "tpd_param_int on a malformed value returned %ld, not the default", v);
  CHECK(r->n == n_want, "the sink received %d lines, want %d", r->n, n_want);
  if (r->n >= 3) {
    CHECK(r->lvl[0] == TPD_LOG_WARN && well_formed(r->line[0], "warn", want_param, "base/error.c:"),
          "tpd_param_int's warning at the sink: level %d, \"%s\"", (int)r->lvl[0], r->line[0]);
    CHECK(r->lvl[1] == TPD_LOG_WARN && well_formed(r->line[1], "warn", want_warn, "test_log_sink.c:"),
          "TPD_WARN at the sink: level %d, \"%s\"", (int)r->lvl[1], r->line[1]);
    CHECK(r->lvl[2] == TPD_LOG_ERROR && well_formed(r->line[2], "error", want_err, "test_log_sink.c:"),
          "an error line at the sink: level %d, \"%s\"", (int)r->lvl[2], r->line[2]);
  }
  /* stderr holds exactly the one line logged after the sink was removed */
  CHECK(!strstr(err, want_param) && !strstr(err, want_warn) && !strstr(err, want_err),
        "a line sent to the sink also reached stderr: \"%s\"", err);
  const char *back = strstr(err, want_back);
  int back_ok = 0;
  if (back) {
    const char *start = back;
    while (start > err && start[-1] != '\n') start--;
    const char *nl = strchr(back, '\n');
    if (nl) {
      char line[LINE_CAP];
      snprintf(line, sizeof line, "%.*s", (int)(nl - start), start);
      back_ok = well_formed(line, "warn", want_back, "test_log_sink.c:") && start == err && nl[1] == 0;
    }
  }
  CHECK(back_ok, "after tpd_log_set_sink(NULL) stderr should hold exactly the one warning line: \"%s\"", err);
  for (int i = 0; i < r->n && i < MAX_LINES; i++)
    CHECK(!strstr(r->line[i], want_back), "a line logged after the sink was removed reached it: \"%s\"", r->line[i]);
  free(err);
  unsetenv("TPD_LOGSINK_TEST");
  pthread_mutex_destroy(&r->mu);
  free(r);
}

/* ---- two threads log at once ---- */
typedef struct {
  int id;
  unsigned long long tag;
} worker_arg;

static void *worker(void *p) {
  const worker_arg *a = p;
  for (int i = 0; i < N_PER_THREAD; i++) TPD_WARN("thread %d warning %d tag %llu", a->id, i, a->tag);
  return NULL;
}

static void test_threads(void) {
  recorder *r = calloc(1, sizeof *r);
  CHECK(r != NULL);
  if (!r) return;
  pthread_mutex_init(&r->mu, NULL);
  const unsigned long long tag = (unsigned long long)tu_next();
  worker_arg args[N_THREADS];
  pthread_t th[N_THREADS];
  capture_stderr();
  tpd_log_set_sink(record, r); /* before the threads start, as the header asks */
  int started = 0;
  for (int t = 0; t < N_THREADS; t++) {
    args[t] = (worker_arg){.id = t, .tag = tag};
    if (pthread_create(&th[t], NULL, worker, &args[t]) == 0) started++;
  }
  CHECK(started == N_THREADS, "started %d of %d threads", started, N_THREADS);
  for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
  tpd_log_set_sink(NULL, NULL);
  char *err = release_stderr();

  CHECK(r->n == N_THREADS * N_PER_THREAD, "the sink received %d lines from %d threads x %d warnings", r->n, N_THREADS,
        N_PER_THREAD);
  /* each (thread, index) exactly once, with this run's tag, as a whole line */
  static int seen[N_THREADS][N_PER_THREAD];
  memset(seen, 0, sizeof seen);
  int bad = 0;
  for (int k = 0; k < r->n && k < MAX_LINES; k++) {
    int t = -1, i = -1;
    unsigned long long g = 0;
    const char *m = strstr(r->line[k], "thread ");
    if (r->lvl[k] == TPD_LOG_WARN && m && sscanf(m, "thread %d warning %d tag %llu", &t, &i, &g) == 3 && g == tag &&
        t >= 0 && t < N_THREADS && i >= 0 && i < N_PER_THREAD && well_formed(r->line[k], "warn", m, "test_log_sink.c:"))
      seen[t][i]++;
    else if (bad++ == 0)
      fprintf(stderr, "unexpected line at the sink: \"%s\"\n", r->line[k]);
  }
  int missing = 0, twice = 0;
  for (int t = 0; t < N_THREADS; t++)
    for (int i = 0; i < N_PER_THREAD; i++) missing += seen[t][i] == 0, twice += seen[t][i] > 1;
  CHECK(bad == 0 && missing == 0 && twice == 0, "%d malformed, %d missing, %d repeated lines", bad, missing, twice);
  CHECK(err[0] == 0, "with a sink set, the threads' warnings reached stderr: \"%.200s\"", err);
  free(err);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

int main(void) {
  /* the level is read once, at the first line: fix it, whatever the caller's environment says */
  setenv("TPD_LOG", "warn", 1);
  tu_seed("test_log_sink");
  test_sink_and_back();
  test_threads();
  return tu_finish("test_log_sink");
}
