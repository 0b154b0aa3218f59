/* The continuous-batching scheduler (runtime/engine/tpdecode_sched.h) at
 * TP 1, and at TP 2 and 4 under mpirun: rank 0 runs the scheduler over a
 * leader-mode engine, the other ranks follow.  Usage: test_sched DIR.
 *
 * Three engines in turn, created on every rank (a synthetic model written
 * by rank 0 with a fresh seed; fresh random prompts on every run):
 *   0. 16 slots, a roomy KV pool:
 *      bad requests and options (each its status, a one-line message naming
 *      the field); 32 requests of mixed prompt lengths (some longer than the
 *      step budget, so prefills are chunked; some sampled, some with
 *      log-probabilities) submitted together give each exactly what it gives
 *      alone, and greedy ones the float64 reference's tokens; a stop id and
 *      max_tokens end a request where its solo run says; cancellation of a
 *      queued and of a running request, the engine's capacity full again
 *      after; submissions from a second thread while the driver steps;
 *      text and stop strings with a tokenizer (test_sched_text.c).
 *   1. 8 slots and a KV pool of 24 blocks, too small for the requests at
 *      once: every request completes with its solo tokens, and some were
 *      preempted (recompute); a request that cannot fit the pool alone is
 *      refused at submit.
 *   2. the model of 0 with a token of a solo run as its EOS id: the request
 *      stops there (the token reported with the finish), and runs on with
 *      ignore_eos.
 *   3, 4. a fault injected on the last rank into a step: the requests in it
 *      finish with the agreed status; after a recoverable one the others run
 *      on as alone, after a fatal one every request ends with it and the
 *      scheduler refuses work (TPD_ERR_STATE).
 * Every finished request's counters are checked (queue <= ttft <= total,
 * n_output = token events, tpot > 0 from two tokens). */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launch/tools/synth.h"
#include "ref_model.h"
#include "runtime/engine/bench_hooks.h"
#include "test_sched.h"

static tpd_comm *g_comm;
static char g_model[600], g_model_eos[600];
static tpd_synth_spec g_spec;

void on_event(void *cb_user, const tpd_sched_event *ev) {
  (void)cb_user;
  treq *t = ev->user;
  t->n_events++;
  t->ev_id = ev->id;
  if (t->n_finish) t->n_bad++;
  if (ev->text || ev->text_len) t->n_bad++; /* no tokenizer, no text */
  if (ev->token >= 0) {
    if (ev->index != t->n_tokens || ev->token != ev->out.token || ev->token >= VOCAB || t->n_tokens >= MAX_OUT) {
      t->n_bad++;
    } else {
      t->logprob[t->n_tokens] = ev->out.logprob;
      t->out[t->n_tokens++] = ev->token;
    }
    if (t->logprobs && (ev->out.n_top != t->logprobs - 1 || !(ev->out.logprob <= 0))) t->n_bad++;
  } else if (ev->finish == TPD_FINISH_NONE) {
    t->n_bad++; /* a token event without a token */
  }
  if (ev->finish != TPD_FINISH_NONE) {
    t->n_finish++;
    t->finish = ev->finish;
    t->status = ev->status;
    t->stats = ev->stats;
  }
}

static void reset_results(treq *t) {
  t->ev_id = 0;
  t->n_tokens = t->n_events = t->n_finish = t->n_bad = 0;
  t->finish = TPD_FINISH_NONE;
  t->status = TPD_OK;
  memset(&t->stats, 0, sizeof t->stats);
}

tpd_sched *new_sched(tpd_engine *e, int budget) {
  tpd_sched_opts o;
  tpd_sched_opts_init(&o);
  o.max_step_tokens = budget;
  o.callback = on_event;
  tpd_sched *s = NULL;
  TU_TRY(tpd_sched_create(e, &o, &s));
  return s;
}

tpd_status submit(tpd_sched *s, treq *t, uint64_t *id) {
  tpd_request r;
  tpd_request_init(&r);
  r.prompt = t->prompt, r.n_prompt = t->n_prompt, r.max_tokens = t->max_tokens;
  r.sampling = t->sampling, r.logprobs = t->logprobs, r.ignore_eos = t->ignore_eos;
  r.stop_ids = t->stop, r.n_stop_ids = t->n_stop;
  r.user = t;
  reset_results(t);
  uint64_t local;
  return tpd_sched_submit(s, &r, id ? id : &local);
}

/* Steps until nothing is pending; returns the steps taken. */
int run_all(tpd_sched *s) {
  int steps = 0;
  while (tpd_sched_pending(s) > 0 && steps < 100000) {
    CHECK_OK(tpd_sched_step(s));
    steps++;
  }
  CHECK(tpd_sched_pending(s) == 0, "requests still pending after %d steps", steps);
  return steps;
}

/* Each request alone, in order, on a fresh scheduler: request k gets id k + 1
 * as in a batch submitted in the same order, hence the same random stream. */
void run_solo(tpd_engine *e, treq *t, int n, int budget) {
  tpd_sched *s = new_sched(e, budget);
  for (int k = 0; k < n; k++) {
    CHECK_OK(submit(s, &t[k], NULL));
    run_all(s);
  }
  tpd_sched_destroy(s);
}

void run_batch(tpd_engine *e, treq *t, int n, int budget) {
  tpd_sched *s = new_sched(e, budget);
  for (int k = 0; k < n; k++) CHECK_OK(submit(s, &t[k], NULL));
  run_all(s);
  double sched_s = -1, engine_s = -1;
  tpd_sched_last_step_times(s, &sched_s, &engine_s);
  CHECK(sched_s >= 0 && engine_s >= 0, "last step times %g %g", sched_s, engine_s);
  tpd_sched_destroy(s);
}

/* What a finished request must satisfy whatever else happened. */
void check_finished(const treq *t, const char *what, int k) {
  const tpd_request_stats *st = &t->stats;
  CHECK(t->n_finish == 1 && t->n_bad == 0, "%s %d: %d finishing events, %d bad events", what, k, t->n_finish, t->n_bad);
  CHECK(st->n_output == t->n_tokens && st->n_prompt == t->n_prompt, "%s %d: stats say %d tokens out, %d in; events %d, %d",
        what, k, st->n_output, st->n_prompt, t->n_tokens, t->n_prompt);
  CHECK(t->n_events == t->n_tokens + (t->finish == TPD_FINISH_CANCELLED || t->finish == TPD_FINISH_ERROR),
        "%s %d: %d events for %d tokens", what, k, t->n_events, t->n_tokens);
  CHECK(st->queue_s >= 0 && st->total_s >= st->queue_s && isfinite(st->total_s), "%s %d: queue %g s, total %g s", what,
        k, st->queue_s, st->total_s);
  if (t->n_tokens >= 1)
    CHECK(st->queue_s <= st->ttft_s && st->ttft_s <= st->total_s, "%s %d: queue %g ttft %g total %g s", what, k,
          st->queue_s, st->ttft_s, st->total_s);
  if (t->n_tokens >= 2) CHECK(st->tpot_s > 0 && isfinite(st->tpot_s), "%s %d: tpot %g s", what, k, st->tpot_s);
  else CHECK(st->tpot_s == 0, "%s %d: tpot %g s with %d tokens", what, k, st->tpot_s, t->n_tokens);
}

/* The finish a completed request must have given its tokens (eos: the
 * model's; the requests here have no stop ids unless set). */
static void check_same(const treq *got, const treq *want, const char *what, int k) {
  check_finished(got, what, k);
  int same = got->n_tokens == want->n_tokens && got->finish == want->finish &&
             !memcmp(got->out, want->out, sizeof(int32_t) * (size_t)got->n_tokens);
  CHECK(same, "%s %d: %d tokens (finish %d) differ from %d alone (finish %d)", what, k, got->n_tokens, got->finish,
        want->n_tokens, want->finish);
  if (same && got->logprobs)
    CHECK(!memcmp(got->logprob, want->logprob, sizeof(float) * (size_t)got->n_tokens),
          "%s %d: log-probabilities differ from alone", what, k);
  CHECK(want->finish == TPD_FINISH_LENGTH ? want->n_tokens == want->max_tokens
                                           : want->finish == TPD_FINISH_EOS && want->out[want->n_tokens - 1] == 2,
        "%s %d: alone, finish %d after %d of %d tokens", what, k, want->finish, want->n_tokens, want->max_tokens);
}

void random_prompt(treq *t, int n) {
  t->n_prompt = n;
  for (int i = 0; i < n; i++) t->prompt[i] = (int32_t)tu_int(0, VOCAB - 1);
}

/* ---- engine 0: the batch against alone and the reference ---- */
static treq g_batch[N_BATCH], g_solo[N_BATCH];

static void test_batch(tpd_engine *e) {
  int n_long = 0;
  for (int k = 0; k < N_BATCH; k++) {
    treq *t = &g_batch[k];
    memset(t, 0, sizeof *t);
    random_prompt(t, k % 4 == 0 ? tu_int(BUDGET + 1, 60) : tu_int(1, BUDGET));
    n_long += t->n_prompt > BUDGET;
    t->max_tokens = tu_int(4, 16);
    if (k % 4 == 3) t->sampling = (tpd_sampling){.temperature = 0.8f, .top_k = 50, .top_p = 0.9f, .seed = tu_next()};
    if (k % 5 == 1) t->logprobs = 1 + tu_int(0, 4);
    g_solo[k] = *t;
  }
  CHECK(n_long >= 4, "only %d prompts longer than the step budget", n_long);
  run_solo(e, g_solo, N_BATCH, BUDGET);
  run_batch(e, g_batch, N_BATCH, BUDGET);
  int lengths = 0, eos = 0;
  for (int k = 0; k < N_BATCH; k++) {
    check_same(&g_batch[k], &g_solo[k], "batch", k);
    check_finished(&g_solo[k], "alone", k);
    lengths += g_solo[k].finish == TPD_FINISH_LENGTH, eos += g_solo[k].finish == TPD_FINISH_EOS;
  }
  printf("  32 requests batched = alone (%d at max_tokens, %d at EOS, %d prompts chunked)\n", lengths, eos, n_long);
  /* greedy tokens against the float64 reference */
  ref_model *ref = NULL;
  CHECK(ref_load(g_model, &ref) == 0, "reference could not load");
  int compared = 0;
  for (int k = 0; k < N_BATCH && ref && compared < 3; k++) {
    const treq *t = &g_solo[k];
    if (t->sampling.temperature > 0 || t->n_prompt > 30) continue;
    int p[MAX_PROMPT], want[MAX_OUT];
    for (int i = 0; i < t->n_prompt; i++) p[i] = t->prompt[i];
    ref_greedy(ref, p, t->n_prompt, t->n_tokens, want, NULL);
    int same = t->n_tokens > 0;
    for (int i = 0; i < t->n_tokens; i++) same &= want[i] == t->out[i];
    /* or a near tie on the engine's own prefix (ref_check_greedy, REF_GREEDY_TIE) */
    double gap = 0;
    const int bad = t->n_tokens > 0 ? ref_check_greedy(ref, p, t->n_prompt, t->out, t->n_tokens, REF_GREEDY_TIE, &gap) : 0;
    CHECK(bad < 0, "request %d: greedy token %d is %.3g of max |logit| below the float64 reference's best%s", k, bad, gap,
          same ? "" : " (the free-running reference's tokens differ)");
    compared++;
  }
  CHECK(compared == 3, "only %d requests compared with the reference", compared);
  ref_free(ref);
}

/* ---- engine 0: stop id, max_tokens ---- */
static int first_new_index(const treq *t) { /* an index >= 1 whose token did not come before */
  for (int j = 1; j < t->n_tokens; j++) {
    int seen = 0;
    for (int i = 0; i < j; i++) seen |= t->out[i] == t->out[j];
    if (!seen) return j;
  }
  return 0;
}

static void test_stops(tpd_engine *e) {
  /* a greedy request with ignore_eos, alone, then with a stop id from its output */
  treq solo = {.max_tokens = 12, .ignore_eos = 1};
  random_prompt(&solo, 6);
  run_solo(e, &solo, 1, BUDGET);
  CHECK(solo.finish == TPD_FINISH_LENGTH && solo.n_tokens == 12, "ignore_eos: finish %d after %d tokens", solo.finish,
        solo.n_tokens);
  const int j = first_new_index(&solo);
  treq stop = solo;
  stop.n_stop = 2, stop.stop[1] = solo.out[j];
  for (int32_t c = VOCAB - 1, seen = 1; seen; c--) { /* the first stop id: one it does not produce up to j */
    seen = 0;
    for (int i = 0; i <= j; i++) seen |= solo.out[i] == c;
    stop.stop[0] = c;
  }
  treq one = solo;
  one.max_tokens = 1;
  treq both[2] = {stop, one};
  run_batch(e, both, 2, BUDGET);
  CHECK(both[0].finish == TPD_FINISH_STOP && both[0].n_tokens == j + 1 && both[0].out[j] == solo.out[j] &&
            !memcmp(both[0].out, solo.out, sizeof(int32_t) * (size_t)(j + 1)),
        "stop id %d (index %d alone): finish %d after %d tokens", solo.out[j], j, both[0].finish, both[0].n_tokens);
  CHECK(both[1].finish == TPD_FINISH_LENGTH && both[1].n_tokens == 1 && both[1].out[0] == solo.out[0],
        "max_tokens 1: finish %d after %d tokens", both[1].finish, both[1].n_tokens);
  check_finished(&both[0], "stop", 0);
  check_finished(&both[1], "max_tokens", 1);
}

static void test_chunking(tpd_engine *e) {
  treq a = {.max_tokens = 20, .ignore_eos = 1}, b = {.max_tokens = 4, .ignore_eos = 1};
  random_prompt(&a, 3);
  random_prompt(&b, 60);
  tpd_sched *s = new_sched(e, BUDGET);
  CHECK_OK(submit(s, &a, NULL));
  CHECK_OK(tpd_sched_step(s));
  CHECK(a.n_tokens == 1, "a 3-token prompt: %d tokens after one step", a.n_tokens);
  CHECK_OK(submit(s, &b, NULL));
  /* chunks of BUDGET - 1 tokens: the budget less a's decode token */
  const int want_steps = (60 + BUDGET - 2) / (BUDGET - 1);
  int steps = 0;
  while (b.n_tokens == 0 && steps < 100) {
    CHECK_OK(tpd_sched_step(s));
    steps++;
    CHECK(a.n_tokens == 1 + steps, "step %d of b's prefill: a has %d tokens", steps, a.n_tokens);
  }
  CHECK(steps == want_steps, "a 60-token prompt at a budget of %d (one decode running): first token after %d steps, "
        "want %d", BUDGET, steps, want_steps);
  run_all(s);
  tpd_sched_destroy(s);
  check_finished(&a, "chunking", 0);
  check_finished(&b, "chunking", 1);
}

/* ---- engine 0: submissions from a second thread ---- */
typedef struct {
  tpd_sched *s;
  treq *t;
  int n, failures;
  atomic_int done;
} submitter;

static void *submit_thread(void *arg) {
  submitter *a = arg;
  for (int k = 0; k < a->n; k++) {
    if (submit(a->s, &a->t[k], NULL) != TPD_OK) a->failures++;
    usleep((useconds_t)(200 * (k % 5)));
  }
  atomic_store(&a->done, 1);
  return NULL;
}

static void test_threads(tpd_engine *e) {
  static treq t[N_BATCH];
  for (int k = 0; k < N_BATCH; k++) t[k] = g_solo[k];
  submitter a = {.s = new_sched(e, BUDGET), .t = t, .n = N_BATCH};
  atomic_init(&a.done, 0);
  pthread_t th;
  CHECK(pthread_create(&th, NULL, submit_thread, &a) == 0, "pthread_create");
  int steps = 0;
  while ((!atomic_load(&a.done) || tpd_sched_pending(a.s) > 0) && steps < 100000) {
    if (tpd_sched_pending(a.s) == 0) {
      usleep(100);
      continue;
    }
    CHECK_OK(tpd_sched_step(a.s));
    steps++;
  }
  pthread_join(th, NULL);
  CHECK(a.failures == 0 && tpd_sched_pending(a.s) == 0, "%d submissions failed", a.failures);
  for (int k = 0; k < N_BATCH; k++) check_same(&t[k], &g_solo[k], "threaded", k);
  tpd_sched_destroy(a.s);
  printf("  32 requests submitted from a second thread while stepping (%d steps): all complete as alone\n", steps);
}

/* ---- engine 1: preemption ---- */
static void test_preemption(tpd_engine *e) {
  static treq b[N_PRE], solo[N_PRE];
  tpd_engine_capacity cap;
  tpd_engine_get_capacity(e, &cap);
  int want_blocks = 0;
  for (int k = 0; k < N_PRE; k++) {
    memset(&b[k], 0, sizeof b[k]);
    random_prompt(&b[k], tu_int(8, 30));
    b[k].max_tokens = tu_int(12, 24), b[k].ignore_eos = 1;
    if (k % 2) b[k].sampling = (tpd_sampling){.temperature = 1.0f, .top_k = 40, .seed = tu_next()};
    want_blocks += (b[k].n_prompt + b[k].max_tokens + BLOCK - 1) / BLOCK;
    solo[k] = b[k];
  }
  CHECK(want_blocks > 2 * cap.total_blocks, "the pool (%d blocks) is not too small (%d)", cap.total_blocks, want_blocks);
  run_solo(e, solo, N_PRE, BUDGET);
  run_batch(e, b, N_PRE, BUDGET);
  int preempted = 0, recomputed = 0;
  for (int k = 0; k < N_PRE; k++) {
    check_same(&b[k], &solo[k], "preemption", k);
    CHECK(solo[k].stats.n_preempted == 0, "alone, request %d was preempted", k);
    CHECK((b[k].stats.n_preempted > 0) == (b[k].stats.n_recomputed > 0), "request %d: preempted %d, recomputed %d", k,
          b[k].stats.n_preempted, b[k].stats.n_recomputed);
    preempted += b[k].stats.n_preempted, recomputed += b[k].stats.n_recomputed;
  }
  /* the victim is the youngest: the first request, the oldest while it runs, never is */
  CHECK(b[0].stats.n_preempted == 0, "the oldest request was preempted %d times", b[0].stats.n_preempted);
  CHECK(preempted > 0, "no request was preempted with a pool of %d blocks for %d", cap.total_blocks, want_blocks);
  tpd_engine_get_capacity(e, &cap);
  CHECK(cap.free_slots == cap.max_slots && cap.free_blocks == cap.total_blocks, "slots or blocks held after the run");
  printf("  %d requests through a %d-block pool: %d preemptions, %d tokens recomputed, all as alone\n", N_PRE,
         cap.total_blocks, preempted, recomputed);
  /* a request that fits max_ctx but not the pool alone */
  tpd_sched *s = new_sched(e, BUDGET);
  treq big = {.max_tokens = cap.total_blocks * BLOCK - 40 + 1};
  random_prompt(&big, 40);
  tpd_clear_error();
  CHECK(submit(s, &big, NULL) == TPD_ERR_TOO_LONG && strstr(tpd_last_error(), "blocks"), "too big for the pool: %s",
        tpd_last_error());
  tpd_sched_destroy(s);
}

/* ---- engine 2: EOS ---- */
static treq g_eos_solo;
static int g_eos_index;

static void test_eos(tpd_engine *e) {
  CHECK(tpd_engine_config(e)->n_eos == 1 && tpd_engine_config(e)->eos_ids[0] == g_eos_solo.out[g_eos_index],
        "the patched model's eos id");
  treq t[2] = {g_eos_solo, g_eos_solo};
  t[0].ignore_eos = 0;
  run_batch(e, t, 2, BUDGET);
  const int j = g_eos_index;
  CHECK(t[0].finish == TPD_FINISH_EOS && t[0].n_tokens == j + 1 &&
            !memcmp(t[0].out, g_eos_solo.out, sizeof(int32_t) * (size_t)(j + 1)),
        "eos %d (index %d): finish %d after %d tokens", g_eos_solo.out[j], j, t[0].finish, t[0].n_tokens);
  CHECK(t[1].finish == TPD_FINISH_LENGTH && t[1].n_tokens == g_eos_solo.n_tokens &&
            !memcmp(t[1].out, g_eos_solo.out, sizeof(int32_t) * (size_t)t[1].n_tokens),
        "ignore_eos: finish %d after %d tokens", t[1].finish, t[1].n_tokens);
  check_finished(&t[0], "eos", 0);
  check_finished(&t[1], "ignore_eos", 1);
}

/* ---- the model with another EOS id: config.json patched ---- */
static void write_eos_model(int eos) {
  CHECK_OK(tpd_synth_write(&g_spec, g_model_eos));
  char path[700];
  snprintf(path, sizeof path, "%s/config.json", g_model_eos);
  FILE *f = fopen(path, "rb");
  char buf[8192], out[8300];
  const size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f) fclose(f);
  buf[n] = 0;
  char *k = strstr(buf, "\"eos_token_id\"");
  char *v = k ? strchr(k, ':') : NULL;
  CHECK(v != NULL, "no eos_token_id in %s", path);
  if (!v) return;
  v++;
  while (*v == ' ' || *v == '\t') v++;
  char *end = v;
  while (*end >= '0' && *end <= '9') end++;
  snprintf(out, sizeof out, "%.*s%d%s", (int)(v - buf), buf, eos, end);
  f = fopen(path, "wb");
  CHECK(f && fputs(out, f) >= 0, "cannot write %s", path);
  if (f) fclose(f);
}

static tpd_engine *open_engine(int phase) {
  tpd_engine_opts o;
  tpd_engine_opts_init(&o);
  o.model_dir = phase == 2 ? g_model_eos : g_model;
  o.n_threads = 1, o.max_ctx = 128, o.max_step_tokens = 32, o.kv_block_size = BLOCK, o.mode = TPD_MODE_LEADER;
  o.max_seqs = phase == 0 ? 16 : phase == 1 ? 8 : 2;
  if (phase >= 3) o.model_dir = g_model;
  if (phase == 1) o.kv_blocks = 24;
  tpd_engine *e = NULL;
  TU_TRY(tpd_engine_create(&o, g_comm, &e));
  return e;
}

int main(int argc, char **argv) {
  TU_TRY(tpd_comm_create_default(&argc, &argv, &g_comm));
  if (argc < 2) {
    fprintf(stderr, "usage: test_sched DIR\n");
    return 2;
  }
  const int rank = g_comm->rank, tp = g_comm->size;
  snprintf(g_model, sizeof g_model, "%s/tp%d/model", argv[1], tp);
  snprintf(g_model_eos, sizeof g_model_eos, "%s/tp%d/model-eos", argv[1], tp);
  if (rank == 0) {
    tu_seed("test_sched");
    char d[560];
    mkdir(argv[1], 0755);
    snprintf(d, sizeof d, "%s/tp%d", argv[1], tp);
    mkdir(d, 0755);
    TU_TRY(tpd_synth_preset("tiny", &g_spec));
    g_spec.vocab = VOCAB, g_spec.dtype = TPD_F32, g_spec.seed = tu_next();
    TU_TRY(tpd_synth_write(&g_spec, g_model));
  }
  for (int phase = 0; phase < 5; phase++) {
    TU_TRY(g_comm->ops->barrier(g_comm)); /* rank 0 wrote the phase's model */
    tpd_engine *e = open_engine(phase);
    const tpd_status fault = phase == 3 ? TPD_ERR_ARG : phase == 4 ? TPD_ERR_DEVICE : TPD_OK;
    if (fault != TPD_OK && rank == tp - 1) tpd_engine_inject_fault(e, FAULT_FORWARD, fault);
    if (rank != 0) {
      const tpd_status st = tpd_engine_follow(e);
      CHECK(phase == 4 ? st == fault : st == TPD_OK, "engine %d: the follower returned %s: %s", phase, tpd_status_name(st),
            tpd_last_error());
      tpd_engine_destroy(e);
      continue;
    }
    printf("TP=%d, engine %d:\n", tp, phase);
    if (phase == 0) {
      test_bad_input(e);
      test_batch(e);
      test_stops(e);
      test_chunking(e);
      test_cancel(e);
      test_threads(e);
      char d[600];
      snprintf(d, sizeof d, "%s/tp%d", argv[1], tp);
      test_text(e, d, g_model);
      /* the EOS test's request: a greedy solo run with ignore_eos */
      memset(&g_eos_solo, 0, sizeof g_eos_solo);
      random_prompt(&g_eos_solo, 7);
      g_eos_solo.max_tokens = 12, g_eos_solo.ignore_eos = 1;
      run_solo(e, &g_eos_solo, 1, BUDGET);
      g_eos_index = first_new_index(&g_eos_solo);
    } else if (phase == 1) {
      test_preemption(e);
    } else if (phase == 2) {
      test_eos(e);
    } else {
      test_fault(e, fault);
    }
    if (phase < 4) CHECK_OK(tpd_engine_shutdown(e));
    tpd_engine_destroy(e);
    if (phase == 1) write_eos_model(g_eos_solo.out[g_eos_index]);
  }
  /* the verdict must be the same on every rank */
  int bad = -1;
  tpd_comm_agree(g_comm, tu_failures == 0, &bad);
  tpd_comm_destroy(g_comm);
  if (bad >= 0 && tu_failures == 0) tu_failures = 1;
  return tu_finish(rank == 0 ? "test_sched" : "test_sched (rank > 0)");
}
