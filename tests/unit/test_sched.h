/* What the scheduler test's files share (test_sched.c: the harness, the
 * batches, preemption, EOS; test_sched_errors.c: bad input, cancellation,
 * failed steps). */
#ifndef TPD_TEST_SCHED_H
#define TPD_TEST_SCHED_H

#include "runtime/engine/tpdecode_sched.h"
#include "testutil.h"

enum { MAX_PROMPT = 64, MAX_OUT = 32, N_BATCH = 32, N_PRE = 12, BUDGET = 16, VOCAB = 300, BLOCK = 4 };

/* A test request and what came back for it. */
typedef struct {
  int32_t prompt[MAX_PROMPT];
  int n_prompt, max_tokens, ignore_eos, logprobs, n_stop;
  int32_t stop[2];
  tpd_sampling sampling;
  /* results, written by the callback (driver thread) */
  uint64_t ev_id;
  int32_t out[MAX_OUT];
  float logprob[MAX_OUT];
  int n_tokens, n_events, n_finish, n_bad; /* n_bad: an event out of order, after the finish, or malformed */
  tpd_finish_reason finish;
  tpd_status status;
  tpd_request_stats stats;
} treq;

void on_event(void *cb_user, const tpd_sched_event *ev);
tpd_sched *new_sched(tpd_engine *e, int budget);
/* submits t (results reset); id may be NULL */
tpd_status submit(tpd_sched *s, treq *t, uint64_t *id);
/* steps until nothing is pending; returns the steps taken */
int run_all(tpd_sched *s);
/* each request alone, in order, on a fresh scheduler (request k gets id k + 1) */
void run_solo(tpd_engine *e, treq *t, int n, int budget);
/* all submitted together, on a fresh scheduler */
void run_batch(tpd_engine *e, treq *t, int n, int budget);
/* what a finished request satisfies whatever happened: one finish, counters */
void check_finished(const treq *t, const char *what, int k);
void random_prompt(treq *t, int n);

/* test_sched_errors.c */
enum { FAULT_FORWARD = 3 }; /* the forward (from 0 at create) that fails in engines 3 and 4 */
void test_bad_input(tpd_engine *e);
void test_cancel(tpd_engine *e);
void test_fault(tpd_engine *e, tpd_status fault);

/* test_sched_text.c: text and stop strings with tokenizers written into dir
 * and the one tpdecode-synth wrote into model_dir */
void test_text(tpd_engine *e, const char *dir, const char *model_dir);

#endif
