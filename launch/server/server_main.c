/* tpdecode-server: an OpenAI-compatible HTTP server.
 *
 *   [mpirun -np N] tpdecode-server -m MODEL_DIR [--host 127.0.0.1] [--port
 * 8000]
 *
 * Rank 0 serves HTTP and drives the scheduler on its main thread; the other
 * ranks follow the engine (tpd_engine_follow) until rank 0 shuts it down.
 * SIGTERM or SIGINT on rank 0: stop accepting, let in-flight requests finish
 * for --drain-seconds, cancel what is left (those clients get an error), shut
 * every rank down, exit 0.  The other ranks ignore both signals: a launcher
 * that signals every rank (mpirun when it is signalled itself, srun/scancel)
 * would otherwise stop a follower in the middle of the drain; they stop when
 * the leader shuts the engine down. */
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "launch/cli.h"
#include "launch/server/server.h"
#include "runtime/engine/tpdecode.h"

static const char *PROG = "tpdecode-server";
srv_state g_srv;
static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void usage(FILE *f) {
  fprintf(f, "usage: [mpirun -np N] tpdecode-server -m MODEL_DIR [options]\n"
             "  -m, --model DIR          model folder (config.json, safetensors, "
             "tokenizer.json); required\n"
             "  --host ADDR              address or host name to bind: IPv4 or IPv6 "
             "(default 127.0.0.1;\n"
             "                           0.0.0.0: every IPv4 interface, ::1: IPv6 loopback)\n"
             "  --port N                 TCP port (default 8000; 0: any free one, named in the "
             "serving line)\n"
             "  --served-model-name NAME the model name clients send (default: the "
             "basename of DIR)\n"
             "  --max-seqs N             sequences running at once (default 16)\n"
             "  --max-ctx N              tokens per sequence, prompt + output "
             "(default: min(model, 4096))\n"
             "  --max-queue N            queued requests before 429 (default 256)\n"
             "  --kv-blocks N            KV pool size in blocks (default: max-seqs "
             "full contexts)\n"
             "  --threads N              CPU threads per rank (default: online CPUs / "
             "ranks on the node)\n"
             "  --kv-cache auto|f32|bf16 KV cache dtype (default auto: bf16 for a bf16 "
             "checkpoint, else f32)\n"
             "  --activations auto|f32|bf16  the dtype bf16 weights' matmuls read (default "
             "auto: bf16 on a CPU\n"
             "                           whose vdpbf16ps outruns its FMA, else f32; "
             "see docs/usage.md)\n"
             "  --backlog N              listen backlog, >= 64 (default 256)\n"
             "  --drain-seconds S        on SIGTERM/SIGINT, time in-flight requests "
             "get to finish (default 10)\n"
             "  --version                print the version and the build's backends\n"
             "  -h, --help               this text\n");
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static tpd_status parse(int argc, char **argv, srv_state *s, int *help, int *version) {
  s->host = "127.0.0.1";
  s->port = 8000;
  s->max_seqs = 16;
  s->max_queue = 256;
  s->backlog = 256;
  s->drain_s = 10;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      *help = 1;
      continue;
    }
    if (!strcmp(a, "--version")) {
      *version = 1;
      continue;
    }
    if (i + 1 >= argc)
      return TPD_FAIL(TPD_ERR_ARG, "unknown option or missing value: '%s' (see --help)", a);
    const char *v = argv[++i];
    long x = 0;
    double d = 0;
    if (!strcmp(a, "-m") || !strcmp(a, "--model"))
      s->model_dir = v;
    else if (!strcmp(a, "--host"))
      s->host = v;
    else if (!strcmp(a, "--served-model-name"))
      s->served_name = v;
    else if (!strcmp(a, "--port")) {
      TPD_TRY(tpd_cli_int_opt(a, v, 0, 65535, &x));
      s->port = (int)x;
    } else if (!strcmp(a, "--max-seqs")) {
      TPD_TRY(tpd_cli_int_opt(a, v, 1, 4096, &x));
      s->max_seqs = (int)x;
    } else if (!strcmp(a, "--max-ctx")) {
      TPD_TRY(tpd_cli_int_opt(a, v, 2, INT_MAX, &x));
      s->max_ctx = (int)x;
    } else if (!strcmp(a, "--max-queue")) {
      TPD_TRY(tpd_cli_int_opt(a, v, 1, 1000000, &x));
      s->max_queue = (int)x;
    } else if (!strcmp(a, "--kv-blocks")) {
      TPD_TRY(tpd_cli_int_opt(a, v, 1, INT_MAX, &x));
      s->kv_blocks = (int)x;
    } else if (!strcmp(a, "--threads")) {
      TPD_TRY(tpd_cli_int_opt(a, v, 1, 4096, &x));
      s->threads = (int)x;
    } else if (!strcmp(a, "--kv-cache")) {
      TPD_TRY(tpd_cli_dtype_opt(a, v, &s->kv_cache));
    } else if (!strcmp(a, "--activations")) {
      TPD_TRY(tpd_cli_dtype_opt(a, v, &s->activations));
    } else if (!strcmp(a, "--backlog")) {
      TPD_TRY(tpd_cli_int_opt(a, v, 64, 65535, &x));
      s->backlog = (int)x;
    } else if (!strcmp(a, "--drain-seconds")) {
      if (!tpd_cli_float(v, 0, 86400, &d))
        return TPD_FAIL(TPD_ERR_ARG, "--drain-seconds '%s': expected a number in [0, 86400]", v);
      s->drain_s = d;
    } else
      return TPD_FAIL(TPD_ERR_ARG, "unknown option '%s' (see --help)", a);
  }
  if (!*help && !*version && !s->model_dir)
    return TPD_FAIL(TPD_ERR_ARG, "-m MODEL_DIR is required (see --help)");
  return TPD_OK;
}

static void update_gauges(srv_state *s) {
  tpd_engine_capacity cap;
  tpd_engine_get_capacity(s->engine, &cap);
  const int running = cap.max_slots - cap.free_slots;
  const int pending = tpd_sched_pending(s->sched);
  srv_metrics_gauges(pending > running ? pending - running : 0, running, cap.total_blocks - cap.free_blocks,
                     cap.free_blocks, running);
}

/* Cancels every request still running that is not cancelled yet (the drain
 * ran out of time).  Called on every loop after the deadline: a request whose
 * submit was under way at the deadline is cancelled on a later loop. */
static void cancel_all(srv_state *s) {
  pthread_mutex_lock(&s->mu);
  int n = 0;
  for (srv_req *r = s->live; r; r = r->next)
    n += r->submitted && !r->finished && !r->cancel_sent;
  if (n == 0) {
    pthread_mutex_unlock(&s->mu);
    return;
  }
  uint64_t *ids = calloc((size_t)n, sizeof *ids);
  int k = 0;
  for (srv_req *r = s->live; r && ids; r = r->next)
    if (r->submitted && !r->finished && !r->cancel_sent) {
      ids[k++] = r->sched_id;
      r->cancel_sent = 1;
    }
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < k; i++)
    tpd_sched_cancel(s->sched, ids[i]);
  free(ids);
}

/* Under Open MPI's mpirun, a SIGTERM/SIGINT to mpirun reaches the ranks as
 * SIGTERM after odls_base_sigkill_timeout seconds and SIGKILL as long again
 * after it; the drain and MPI_Finalize (about 2 s with mpirun asleep) need
 * --drain-seconds + 3.  Says so when the timeout mpirun passed on (as
 * OMPI_MCA_odls_base_sigkill_timeout) is shorter or absent. */
static void warn_mpirun_timeout(const srv_state *s, int size) {
  if (size < 2 || !getenv("OMPI_COMM_WORLD_SIZE"))
    return;
  const char *t = getenv("OMPI_MCA_odls_base_sigkill_timeout");
  const double T = t ? atof(t) : 1.0, need = s->drain_s + 3;
  if (T >= need)
    return;
  /* on stdout after the serving line (stderr could overtake it under mpirun) */
  printf("%s: note: a SIGTERM/SIGINT to mpirun would leave the drain %g s before SIGKILL "
         "(odls_base_sigkill_timeout); launch with mpirun --mca odls_base_sigkill_timeout %.0f, or signal "
         "pid %ld\n",
         PROG, T, ceil(need), (long)getpid());
  fflush(stdout);
}

/* The engine loop: steps while work is pending, sleeps when idle. */
static int serve(srv_state *s, void *daemon) {
  int draining = 0, cancelled = 0, rc = 0;
  double deadline = 0;
  for (;;) {
    if (g_stop && !draining) {
      draining = 1;
      pthread_mutex_lock(&s->mu);
      s->draining = 1;
      pthread_mutex_unlock(&s->mu);
      srv_http_quiesce(daemon);
      deadline = now_s() + s->drain_s;
      fprintf(stderr, "%s: shutting down: draining %d request(s) for at most %g s\n", PROG, tpd_sched_pending(s->sched),
              s->drain_s);
    }
    if (draining && !cancelled && now_s() >= deadline)
      cancel_all(s);
    pthread_mutex_lock(&s->mu);
    if (tpd_sched_pending(s->sched) == 0) {
      if (draining && s->in_submit == 0) {
        pthread_mutex_unlock(&s->mu);
        break;
      }
      struct timespec ts = srv_deadline_ms(50);
      if (!g_stop)
        pthread_cond_timedwait(&s->wake, &s->mu, &ts);
      pthread_mutex_unlock(&s->mu);
      update_gauges(s);
      /* idle, the leader is in no collective: a rank lost now is found here (comm/comm.h) */
      if (tpd_comm_check_peers(tpd_engine_comm(s->engine)) != TPD_OK) {
        fprintf(stderr, "%s: %s\n", PROG, tpd_last_error());
        rc = 1;
        break;
      }
      continue;
    }
    pthread_mutex_unlock(&s->mu);
    const tpd_status st = tpd_sched_step(s->sched);
    if (st != TPD_OK) {
      fprintf(stderr, "%s: step failed: %s: %s\n", PROG, tpd_status_name(st), tpd_last_error());
      if (!tpd_engine_usable(s->engine)) {
        rc = 1;
        g_stop = 1;
        cancelled = 1; /* every request finishes with an error by itself */
      }
    }
    update_gauges(s);
  }
  return rc;
}

/* The default served name: DIR's last component without trailing slashes
 * ("models/small/" -> "small"); TPD_ERR_ARG when it does not fit in cap. */
static tpd_status served_name_of(const char *dir, char *out, size_t cap) {
  size_t end = strlen(dir), start;
  while (end > 1 && dir[end - 1] == '/')
    end--;
  for (start = end; start > 0 && dir[start - 1] != '/'; start--)
    ;
  if (start == end) /* "/" */
    start = 0;
  if (end - start >= cap)
    return TPD_FAIL(TPD_ERR_ARG, "the model directory's name is %zu bytes, more than the %zu a served name takes; pass "
                    "--served-model-name", end - start, cap - 1);
  memcpy(out, dir + start, end - start);
  out[end - start] = 0;
  return TPD_OK;
}

int main(int argc, char **argv) {
  tpd_comm *comm = NULL;
  tpd_status st = tpd_comm_create_default(&argc, &argv, &comm);
  if (st != TPD_OK)
    tpd_cli_die(PROG, NULL, st, 1);
  srv_state *s = &g_srv;
  /* followers ignore SIGTERM/SIGINT from the start (see the top of the file);
   * the leader's handler only sets a flag the engine loop polls */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = comm->rank == 0 ? on_signal : SIG_IGN;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  int help = 0, version = 0;
  if ((st = parse(argc, argv, s, &help, &version)) != TPD_OK)
    tpd_cli_die(PROG, comm, st, 1);
  if (help || version) {
    if (comm->rank == 0) {
      if (help)
        usage(stdout);
      else
        tpd_cli_version(PROG);
    }
    tpd_comm_destroy(comm);
    return 0;
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->wake, NULL);
  srv_metrics_init();
  if (!s->served_name) {
    static char name[256];
    if ((st = served_name_of(s->model_dir, name, sizeof name)) != TPD_OK)
      tpd_cli_die(PROG, comm, st, 1);
    s->served_name = name;
  }
  /* rank 0 listens first, so /health answers 503 while the model loads */
  void *daemon = NULL;
  if (comm->rank == 0) {
    char err[512];
    if (!(daemon = srv_http_start(s, err, sizeof err)))
      tpd_cli_die(PROG, comm, TPD_FAIL(TPD_ERR_IO, "%s", err), 0);
  }
  tpd_engine_opts eo;
  tpd_engine_opts_init(&eo);
  eo.model_dir = s->model_dir;
  eo.n_threads = tpd_cli_threads(PROG, comm, s->threads);
  eo.max_ctx = s->max_ctx;
  eo.max_seqs = s->max_seqs;
  eo.kv_blocks = s->kv_blocks;
  eo.kv_cache = s->kv_cache;
  eo.activations = s->activations;
  eo.device = -1;
  eo.mode = TPD_MODE_LEADER;
  if ((st = tpd_engine_create(&eo, comm, &s->engine)) != TPD_OK)
    tpd_cli_die(PROG, comm, st, 0);
  int rc = 0;
  if (tpd_engine_rank(s->engine) != 0) {
    if ((st = tpd_engine_follow(s->engine)) != TPD_OK) {
      fprintf(stderr, "%s: rank %d: %s: %s\n", PROG, comm->rank, tpd_status_name(st), tpd_last_error());
      rc = 1;
    }
    tpd_engine_destroy(s->engine);
    tpd_comm_destroy(comm);
    return rc;
  }
  s->cfg = tpd_engine_config(s->engine);
  s->vocab = s->cfg->vocab;
  s->ctx = tpd_engine_max_ctx(s->engine);
  if ((st = tpd_tokenizer_load(s->model_dir, &s->tok)) != TPD_OK) {
    fprintf(stderr, "%s: error: the server needs the model's tokenizer: %s\n", PROG, tpd_last_error());
    rc = 1;
  }
  if (rc == 0 && tpd_tokenizer_n_tokens(s->tok) > s->vocab) {
    fprintf(stderr,
            "%s: error: the tokenizer has %d tokens, more than the model's "
            "vocab_size %d\n",
            PROG, tpd_tokenizer_n_tokens(s->tok), s->vocab);
    rc = 1;
  }
  if (rc == 0) {
    tpd_sched_opts so;
    tpd_sched_opts_init(&so);
    so.callback = srv_on_event;
    so.tokenizer = s->tok;
    so.max_queue = s->max_queue;
    if ((st = tpd_sched_create(s->engine, &so, &s->sched)) != TPD_OK) {
      fprintf(stderr, "%s: error: %s: %s\n", PROG, tpd_status_name(st), tpd_last_error());
      rc = 1;
    }
  }
  if (rc == 0) {
    pthread_mutex_lock(&s->mu);
    s->ready = 1;
    pthread_mutex_unlock(&s->mu);
    const int v6 = strchr(s->host, ':') != NULL; /* an IPv6 literal goes in brackets */
    printf("%s: serving '%s' on http://%s%s%s:%d (TP %d, context %d, %d sequences; "
           "pid %ld)\n",
           PROG, s->served_name, v6 ? "[" : "", s->host, v6 ? "]" : "", s->port, comm->size, s->ctx, s->max_seqs,
           (long)getpid());
    fflush(stdout);
    warn_mpirun_timeout(s, comm->size);
    rc = serve(s, daemon);
  }
  /* let the connections send what their requests ended with (bounded), then
   * stop (MHD_stop_daemon closes what is still open; every connection thread
   * has returned after it) */
  for (int i = 0; i < 300; i++) {
    pthread_mutex_lock(&s->mu);
    const int open = s->live != NULL;
    pthread_mutex_unlock(&s->mu);
    if (!open)
      break;
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
  srv_http_stop(daemon);
  if (s->sched)
    tpd_sched_destroy(s->sched);
  if ((st = tpd_engine_shutdown(s->engine)) != TPD_OK) {
    fprintf(stderr, "%s: shutdown: %s: %s\n", PROG, tpd_status_name(st), tpd_last_error());
    rc = 1;
  }
  tpd_engine_destroy(s->engine);
  tpd_tokenizer_free(s->tok);
  tpd_comm_destroy(comm);
  if (rc == 0)
    fprintf(stderr, "%s: stopped\n", PROG);
  return rc;
}
