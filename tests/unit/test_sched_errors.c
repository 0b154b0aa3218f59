/* The scheduler's errors (test_sched.c runs these on engines 0, 3 and 4):
 * bad requests and options, each with its status and a one-line message
 * naming the field; cancellation of queued and running requests; a step
 * that fails, recoverably or fatally. */
#include "test_sched.h"

/* ---- engine 0: bad input ---- */
static void expect_bad(tpd_sched *s, const treq *t, tpd_status want, const char *field) {
  treq c = *t;
  tpd_clear_error();
  uint64_t id = 0;
  const tpd_status st = submit(s, &c, &id);
  const char *m = tpd_last_error();
  CHECK(st == want && strstr(m, field) && !strchr(m, '\n'), "bad %s: %s (want %s): %s", field, tpd_status_name(st),
        tpd_status_name(want), m);
  if (st == TPD_OK) tpd_sched_cancel(s, id);
}

void test_bad_input(tpd_engine *e) {
  tpd_sched_opts o;
  tpd_sched_opts_init(&o);
  tpd_sched *s = NULL;
  CHECK(tpd_sched_create(e, &o, &s) == TPD_ERR_ARG && !s && strstr(tpd_last_error(), "callback"), "NULL callback: %s",
        tpd_last_error());
  o.callback = on_event;
  o.struct_size--;
  CHECK(tpd_sched_create(e, &o, &s) == TPD_ERR_VERSION && !s, "opts of another size: %s", tpd_last_error());
  o.struct_size++, o.version = 99;
  CHECK(tpd_sched_create(e, &o, &s) == TPD_ERR_VERSION && !s, "opts of another version: %s", tpd_last_error());
  CHECK(tpd_sched_create(e, NULL, &s) == TPD_ERR_ARG && !s, "NULL opts: %s", tpd_last_error());
  o.version = TPD_SCHED_OPTS_VERSION, o.max_step_tokens = -1;
  CHECK(tpd_sched_create(e, &o, &s) == TPD_ERR_ARG && strstr(tpd_last_error(), "max_step_tokens"), "budget -1: %s",
        tpd_last_error());
  o.max_step_tokens = BUDGET, o.max_queue = 2;
  TU_TRY(tpd_sched_create(e, &o, &s));
  treq good = {.max_tokens = 4};
  random_prompt(&good, 5);
  treq t = good;
  {
    tpd_request r;
    tpd_request_init(&r);
    r.prompt = good.prompt, r.n_prompt = 5, r.max_tokens = 4, r.user = &t;
    uint64_t id;
    r.struct_size = 8;
    CHECK(tpd_sched_submit(s, &r, &id) == TPD_ERR_VERSION, "request of another size: %s", tpd_last_error());
    r.struct_size = sizeof r, r.version = 7;
    CHECK(tpd_sched_submit(s, &r, &id) == TPD_ERR_VERSION, "request of another version: %s", tpd_last_error());
    r.version = TPD_REQUEST_VERSION, r.prompt = NULL;
    CHECK(tpd_sched_submit(s, &r, &id) == TPD_ERR_ARG && strstr(tpd_last_error(), "prompt"), "NULL prompt: %s",
          tpd_last_error());
  }
  t.n_prompt = 0, expect_bad(s, &t, TPD_ERR_ARG, "n_prompt"), t = good;
  t.max_tokens = 0, expect_bad(s, &t, TPD_ERR_ARG, "max_tokens"), t = good;
  t.max_tokens = -3, expect_bad(s, &t, TPD_ERR_ARG, "max_tokens"), t = good;
  t.logprobs = 22, expect_bad(s, &t, TPD_ERR_ARG, "logprobs"), t = good;
  t.logprobs = -1, expect_bad(s, &t, TPD_ERR_ARG, "logprobs"), t = good;
  t.prompt[3] = VOCAB, expect_bad(s, &t, TPD_ERR_TOKEN, "prompt[3]"), t = good;
  t.prompt[0] = -1, expect_bad(s, &t, TPD_ERR_TOKEN, "prompt[0]"), t = good;
  t.n_stop = 1, t.stop[0] = VOCAB + 5, expect_bad(s, &t, TPD_ERR_TOKEN, "stop_ids[0]"), t = good;
  t.n_stop = -1, expect_bad(s, &t, TPD_ERR_ARG, "n_stop_ids"), t = good;
  t.max_tokens = 128 - 5 + 1, expect_bad(s, &t, TPD_ERR_TOO_LONG, "max_ctx"), t = good;
  t.sampling.temperature = NAN, expect_bad(s, &t, TPD_ERR_ARG, "temperature"), t = good;
  t.sampling.temperature = -1, expect_bad(s, &t, TPD_ERR_ARG, "temperature"), t = good;
  t.sampling.top_p = NAN, expect_bad(s, &t, TPD_ERR_ARG, "top_p"), t = good;
  t.sampling.top_k = -2, expect_bad(s, &t, TPD_ERR_ARG, "top_k"), t = good;
  CHECK(tpd_sched_pending(s) == 0, "a refused request is pending");
  /* the queue's limit: 2 */
  treq q[3] = {good, good, good};
  CHECK_OK(submit(s, &q[0], NULL));
  CHECK_OK(submit(s, &q[1], NULL));
  tpd_clear_error();
  CHECK(submit(s, &q[2], NULL) == TPD_ERR_NO_SLOT && strstr(tpd_last_error(), "queue"), "full queue: %s",
        tpd_last_error());
  CHECK(tpd_sched_cancel(s, 12345) == TPD_ERR_ARG, "cancel of an unknown id");
  tpd_sched_destroy(s); /* with two requests queued: no events, nothing leaks */
  CHECK(q[0].n_events == 0 && q[1].n_events == 0, "destroy sent events");
  tpd_engine_capacity cap;
  tpd_engine_get_capacity(e, &cap);
  CHECK(cap.free_slots == cap.max_slots && cap.free_blocks == cap.total_blocks, "slots or blocks held after destroy");
}

void test_cancel(tpd_engine *e) {
  tpd_engine_capacity cap;
  tpd_engine_get_capacity(e, &cap);
  const int n = cap.max_slots + 1;
  treq *t = calloc((size_t)n, sizeof *t);
  uint64_t *ids = calloc((size_t)n, sizeof *ids);
  tpd_sched *s = new_sched(e, BUDGET);
  for (int k = 0; k < n; k++) {
    random_prompt(&t[k], 1);
    t[k].max_tokens = 20, t[k].ignore_eos = 1;
    CHECK_OK(submit(s, &t[k], &ids[k]));
  }
  for (int i = 0; i < 4 && cap.free_slots > 0; i++) {
    CHECK_OK(tpd_sched_step(s));
    tpd_engine_get_capacity(e, &cap);
  }
  CHECK(cap.free_slots == 0 && t[n - 1].n_events == 0 && t[1].n_tokens >= 1,
        "not every slot taken (%d free) or the last request not queued", cap.free_slots);
  CHECK_OK(tpd_sched_cancel(s, ids[n - 1])); /* queued */
  CHECK_OK(tpd_sched_cancel(s, ids[1]));     /* running */
  CHECK_OK(tpd_sched_cancel(s, ids[1]));     /* twice: still one event */
  const int before = t[1].n_tokens;
  CHECK_OK(tpd_sched_step(s));
  CHECK(t[n - 1].finish == TPD_FINISH_CANCELLED && t[n - 1].n_events == 1 && t[n - 1].n_tokens == 0,
        "queued request: finish %d, %d events", t[n - 1].finish, t[n - 1].n_events);
  CHECK(t[1].finish == TPD_FINISH_CANCELLED && t[1].n_tokens == before && t[1].status == TPD_ERR_CANCELLED,
        "running request: finish %d, %d tokens (had %d)", t[1].finish, t[1].n_tokens, before);
  check_finished(&t[n - 1], "cancelled queued", n - 1);
  check_finished(&t[1], "cancelled running", 1);
  CHECK(tpd_sched_cancel(s, ids[1]) == TPD_ERR_ARG, "cancel of a finished request");
  tpd_engine_get_capacity(e, &cap);
  CHECK(cap.free_slots == 1 && tpd_sched_pending(s) == n - 2, "after two cancels: %d free slots, %d pending",
        cap.free_slots, tpd_sched_pending(s));
  for (int k = 0; k < n; k++)
    if (!t[k].n_finish) CHECK_OK(tpd_sched_cancel(s, ids[k]));
  CHECK_OK(tpd_sched_step(s));
  tpd_engine_get_capacity(e, &cap);
  CHECK(cap.free_slots == cap.max_slots && cap.free_blocks == cap.total_blocks && tpd_sched_pending(s) == 0,
        "after cancelling all: %d of %d slots, %d of %d blocks free, %d pending", cap.free_slots, cap.max_slots,
        cap.free_blocks, cap.total_blocks, tpd_sched_pending(s));
  for (int k = 0; k < n; k++) check_finished(&t[k], "cancelled", k);
  tpd_sched_destroy(s);
  free(t), free(ids);
}

/* A long prompt is prefilled in chunks of the step budget while a running
 * request keeps getting one token per step. */
/* ---- engines 3 and 4: a step that fails (a fault injected on the last
 * rank in the step's 4th forward): recoverable, then fatal ---- */
void test_fault(tpd_engine *e, tpd_status fault) {
  const int fatal = fault == TPD_ERR_DEVICE;
  treq t[4];
  memset(t, 0, sizeof t);
  for (int k = 0; k < 4; k++) random_prompt(&t[k], 4), t[k].max_tokens = 10, t[k].ignore_eos = 1;
  tpd_sched *s = new_sched(e, BUDGET);
  for (int k = 0; k < 3; k++) CHECK_OK(submit(s, &t[k], NULL)); /* two slots: the third waits */
  tpd_status st = TPD_OK;
  int steps = 0;
  while (st == TPD_OK && steps < 20) st = tpd_sched_step(s), steps++;
  CHECK(st == fault && steps == FAULT_FORWARD + 1 && strstr(tpd_last_error(), "injected"),
        "step %d returned %s: %s", steps, tpd_status_name(st), tpd_last_error());
  CHECK(tpd_engine_usable(e) == !fatal, "engine usable %d after %s", tpd_engine_usable(e), tpd_status_name(fault));
  for (int k = 0; k < 2; k++) {
    CHECK(t[k].finish == TPD_FINISH_ERROR && t[k].status == fault && t[k].n_tokens == FAULT_FORWARD,
          "%s: request %d in the failed step: finish %d status %s after %d tokens", tpd_status_name(fault), k,
          t[k].finish, tpd_status_name(t[k].status), t[k].n_tokens);
    check_finished(&t[k], "failed step", k);
  }
  if (!fatal) {
    /* the queued request and a new one run on as alone */
    treq solo = t[2];
    CHECK_OK(submit(s, &t[3], NULL));
    run_all(s);
    CHECK(t[2].finish == TPD_FINISH_LENGTH && t[3].finish == TPD_FINISH_LENGTH, "after a recoverable failure: %d %d",
          t[2].finish, t[3].finish);
    run_solo(e, &solo, 1, BUDGET);
    check_finished(&t[3], "after the failure", 3);
    CHECK(!memcmp(solo.out, t[2].out, sizeof(int32_t) * 10), "after a recoverable failure: tokens differ from alone");
  } else {
    /* every request ends, the scheduler refuses work */
    CHECK(t[2].finish == TPD_FINISH_ERROR && t[2].status == fault && tpd_sched_pending(s) == 0,
          "queued request at a fatal failure: finish %d status %s, %d pending", t[2].finish, tpd_status_name(t[2].status),
          tpd_sched_pending(s));
    check_finished(&t[2], "fatal", 2);
    CHECK(submit(s, &t[3], NULL) == TPD_ERR_STATE, "submit after a fatal failure");
    CHECK(tpd_sched_step(s) == TPD_ERR_STATE, "step after a fatal failure");
  }
  tpd_sched_destroy(s);
}

