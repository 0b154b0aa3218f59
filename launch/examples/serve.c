/* Serving with libtpdecode: the leader/follower engine and the scheduler.
 *
 *   [mpirun -np N] serve MODEL_DIR N_NEW ID [ID ...]
 *
 * Rank 0 submits three requests (the prompt ids as given, then the same
 * prompt shortened by one and by two ids), steps the scheduler until all
 * have finished, and prints each request's tokens and counters; the other
 * ranks follow.  A server does the same with requests from its clients:
 * submit and cancel from any thread, tpd_sched_step from the engine's.
 *
 *   cc serve.c $(pkg-config --cflags --libs tpdecode) -o serve */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tpdecode.h>
#include <tpdecode_sched.h>

enum { N_REQ = 3, MAX_OUT = 256 };

typedef struct {
  int32_t tokens[MAX_OUT];
  int n;
  tpd_finish_reason finish;
  tpd_request_stats stats;
} result;

static void on_event(void *user, const tpd_sched_event *ev) {
  result *r = (result *)ev->user;
  (void)user;
  if (ev->token >= 0 && r->n < MAX_OUT) r->tokens[r->n++] = ev->token;
  if (ev->finish != TPD_FINISH_NONE) r->finish = ev->finish, r->stats = ev->stats;
}

static int fail(const char *what, tpd_status st) {
  fprintf(stderr, "serve: %s: %s: %s\n", what, tpd_status_name(st), tpd_last_error());
  return 1;
}

int main(int argc, char **argv) {
  tpd_comm *comm = NULL;
  tpd_status st = tpd_comm_create_default(&argc, &argv, &comm);
  if (st != TPD_OK) return fail("communicator", st);
  if (argc < 4) {
    fprintf(stderr, "usage: [mpirun -np N] serve MODEL_DIR N_NEW ID [ID ...]\n");
    return 2;
  }
  const int n_new = atoi(argv[2]), n_prompt = argc - 3;
  if (n_new < 1 || n_new > MAX_OUT || n_prompt < 3) {
    fprintf(stderr, "serve: N_NEW must be in 1..%d and at least 3 prompt ids are needed\n", MAX_OUT);
    return 2;
  }
  int32_t *prompt = malloc(sizeof *prompt * (size_t)n_prompt);
  if (!prompt) return 1;
  for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)atoi(argv[3 + i]);

  tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = argv[1], .max_seqs = N_REQ, .max_ctx = n_prompt + n_new,
                       .device = -1, .mode = TPD_MODE_LEADER};
  tpd_engine *e = NULL;
  if ((st = tpd_engine_create(&o, comm, &e)) != TPD_OK) return fail("tpd_engine_create", st);
  int rc = 0;
  if (tpd_engine_rank(e) != 0) { /* a follower: runs the leader's plans until it shuts down */
    if ((st = tpd_engine_follow(e)) != TPD_OK) rc = fail("tpd_engine_follow", st);
  } else {
    tpd_sched_opts so;
    tpd_sched_opts_init(&so);
    so.callback = on_event;
    tpd_sched *s = NULL;
    result res[N_REQ];
    memset(res, 0, sizeof res);
    if ((st = tpd_sched_create(e, &so, &s)) != TPD_OK) return fail("tpd_sched_create", st);
    for (int r = 0; r < N_REQ && rc == 0; r++) {
      tpd_request q;
      tpd_request_init(&q);
      q.prompt = prompt, q.n_prompt = n_prompt - r, q.max_tokens = n_new, q.ignore_eos = 1, q.user = &res[r];
      uint64_t id;
      if ((st = tpd_sched_submit(s, &q, &id)) != TPD_OK) rc = fail("tpd_sched_submit", st);
    }
    while (rc == 0 && tpd_sched_pending(s) > 0)
      if ((st = tpd_sched_step(s)) != TPD_OK) rc = fail("tpd_sched_step", st);
    for (int r = 0; r < N_REQ && rc == 0; r++) {
      printf("request %d (%d prompt ids): tokens:", r, n_prompt - r);
      for (int i = 0; i < res[r].n; i++) printf(" %d", res[r].tokens[i]);
      printf("  [ttft %.2f ms, %.2f ms per token]\n", res[r].stats.ttft_s * 1e3, res[r].stats.tpot_s * 1e3);
    }
    tpd_sched_destroy(s);
    if ((st = tpd_engine_shutdown(e)) != TPD_OK && rc == 0) rc = fail("tpd_engine_shutdown", st);
  }
  tpd_engine_destroy(e);
  tpd_comm_destroy(comm);
  free(prompt);
  return rc;
}
