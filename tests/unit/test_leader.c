/* Leader/follower engine under mpirun (-np 1, 2, 4): rank 0 drives, the
 * other ranks sit in tpd_engine_follow.
 *
 * Reference: the same prompts generated one at a time by an SPMD engine
 * (greedy, with full logits).  The leader then drives a group through
 * opens, a prefill spread over several forwards (several plans in one
 * step), decode steps, a prefill split by the caller with
 * TPD_ITEM_NO_OUTPUT, log-probabilities (checked against log_softmax of the
 * reference logits in double), a failed step on the last rank (agreed by
 * every rank, lengths unchanged, the retry gives the reference tokens),
 * cancellation, the capacity statuses (no slot, KV pool exhausted: all or
 * nothing), an option change, bad input, and shutdown; then a second group
 * through a fatal fault (every rank returns it, the engine says it is
 * unusable, nothing hangs).  Before all that, a create that fails on one
 * rank must fail on every rank with that rank's status. */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "launch/tools/synth.h"
#include "runtime/engine/bench_hooks.h"
#include "runtime/engine/tpdecode.h"
#include "testutil.h"

enum { NP = 5, N_NEW = 6, MAX_LEN = 20, V = 512, T_CAP = 16 };
static const int LENS[NP] = {5, 20, 9, 18, 7};
static int32_t g_prompt[NP][MAX_LEN];
static int32_t g_ref[NP][N_NEW];       /* greedy tokens, one sequence at a time */
static float g_ref_logits[NP][N_NEW][V]; /* logits each of those tokens was taken from */

static tpd_engine_opts opts(const char *dir, int mode) {
  tpd_engine_opts o;
  tpd_engine_opts_init(&o);
  o.model_dir = dir, o.n_threads = 1, o.max_seqs = 4, o.max_ctx = 64, o.kv_block_size = 4, o.kv_blocks = 24;
  o.max_step_tokens = T_CAP, o.mode = mode;
  return o;
}

static void reference(const char *dir, tpd_comm *comm) {
  tpd_engine_opts o = opts(dir, TPD_MODE_SPMD);
  tpd_engine *e = NULL;
  CHECK_OK(tpd_engine_create(&o, comm, &e));
  if (!e) return;
  EXPECT_FAIL(tpd_engine_follow(e), TPD_ERR_STATE, "not in leader mode");
  EXPECT_FAIL(tpd_engine_shutdown(e), TPD_ERR_STATE, "not in leader mode");
  for (int p = 0; p < NP; p++) {
    int slot = -1;
    CHECK_OK(tpd_engine_seq_open(e, &slot));
    tpd_step_item it = {.slot = slot, .n_tokens = LENS[p], .tokens = g_prompt[p]};
    int32_t tok = -1;
    for (int j = 0; j < N_NEW; j++) {
      CHECK_OK(tpd_engine_step(e, &it, 1, &tok, g_ref_logits[p][j]));
      g_ref[p][j] = tok;
      it.n_tokens = 1, it.tokens = &g_ref[p][j];
    }
    CHECK_OK(tpd_engine_seq_close(e, slot));
  }
  tpd_engine_destroy(e);
}

/* log_softmax of the reference logits, in double */
static void check_logprobs(const tpd_step_output *o, const float *logits, int k, const char *what) {
  double m = -INFINITY, s = 0;
  for (int v = 0; v < V; v++) m = logits[v] > m ? logits[v] : m;
  for (int v = 0; v < V; v++) s += exp((double)logits[v] - m);
  const double lse = m + log(s);
  CHECK(tu_within(tu_abs_diff(o->logprob, logits[o->token] - lse), 1e-4), "%s: logprob %g, reference %g", what,
        o->logprob, logits[o->token] - lse);
  CHECK(o->n_top == k, "%s: %d top entries, asked %d", what, o->n_top, k);
  int used[V] = {0};
  for (int j = 0; j < o->n_top && j < k; j++) { /* the j-th largest logit, ties by lower id */
    int best = -1;
    for (int v = 0; v < V; v++)
      if (!used[v] && (best < 0 || logits[v] > logits[best])) best = v;
    used[best] = 1;
    CHECK(o->top_ids[j] == best, "%s: top %d is %d, reference %d", what, j, o->top_ids[j], best);
    CHECK(tu_within(tu_abs_diff(o->top_logprobs[j], logits[best] - lse), 1e-4), "%s: top %d logprob %g, ref %g",
          what, j, o->top_logprobs[j], logits[best] - lse);
  }
}

typedef struct {
  int slot, n_out; /* tokens produced so far */
} seq;

static void lens_are(tpd_engine *e, const seq *s, const int *idx, int n, const int *want, const char *what) {
  for (int i = 0; i < n; i++)
    CHECK(tpd_engine_seq_len(e, s[idx[i]].slot) == want[i], "%s: sequence %d holds %d tokens, expected %d", what,
          idx[i], tpd_engine_seq_len(e, s[idx[i]].slot), want[i]);
}

/* One decode token for each listed sequence (their reference continuation). */
static tpd_status decode(tpd_engine *e, seq *s, const int *idx, int n, int check) {
  tpd_step_item it[4];
  tpd_step_output out[4];
  for (int i = 0; i < n; i++)
    it[i] = (tpd_step_item){.slot = s[idx[i]].slot, .n_tokens = 1, .tokens = &g_ref[idx[i]][s[idx[i]].n_out - 1]};
  const tpd_status st = tpd_engine_step_out(e, it, n, out);
  if (st != TPD_OK) return st;
  for (int i = 0; i < n; i++) {
    seq *q = &s[idx[i]];
    if (check) CHECK(out[i].token == g_ref[idx[i]][q->n_out], "sequence %d token %d: %d, reference %d", idx[i], q->n_out,
                     out[i].token, g_ref[idx[i]][q->n_out]);
    q->n_out++;
  }
  return TPD_OK;
}

static void lead(const char *dir, tpd_comm *comm) {
  const int tp = comm->size, fault_rank = tp - 1;
  tpd_engine_opts o = opts(dir, TPD_MODE_LEADER);
  tpd_engine *e = NULL;
  CHECK_OK(tpd_engine_create(&o, comm, &e));
  if (!e) return;
  /* forwards: 0-2 the first prefill (34 tokens), 3-4 two decodes, 5-6 the step that fails in its second forward */
  if (fault_rank == 0) tpd_engine_inject_fault(e, 6, TPD_ERR_UNSUPPORTED);
  seq s[NP];
  memset(s, 0, sizeof s);

  /* bad input on the leader: refused before anything is sent */
  EXPECT_FAIL(tpd_engine_follow(e), TPD_ERR_STATE, "rank 0");
  EXPECT_FAIL(tpd_engine_seq_close(e, 3), TPD_ERR_SLOT, "slot 3");
  for (int p = 0; p < 3; p++) CHECK_OK(tpd_engine_seq_open(e, &s[p].slot));
  {
    const int32_t bad_tok = V, ok_tok = 1;
    tpd_step_item b = {.slot = s[0].slot, .n_tokens = 1, .tokens = &bad_tok};
    tpd_step_output out[1];
    EXPECT_FAIL(tpd_engine_step_out(e, &b, 1, out), TPD_ERR_TOKEN, "outside the vocabulary");
    b.tokens = &ok_tok, b.slot = 3;
    EXPECT_FAIL(tpd_engine_step_out(e, &b, 1, out), TPD_ERR_SLOT, "slot 3");
    b.slot = s[0].slot, b.n_tokens = 0;
    EXPECT_FAIL(tpd_engine_step_out(e, &b, 1, out), TPD_ERR_ARG, "new tokens");
    b.n_tokens = 1, b.logprobs = 2 + TPD_MAX_TOP_LOGPROBS;
    EXPECT_FAIL(tpd_engine_step_out(e, &b, 1, out), TPD_ERR_ARG, "logprobs");
    b.logprobs = 0, b.n_tokens = 65;
    EXPECT_FAIL(tpd_engine_step_out(e, &b, 1, out), TPD_ERR_TOO_LONG, "exceed the context");
    EXPECT_FAIL(tpd_engine_step_out(e, &b, 0, out), TPD_ERR_ARG, "sequences");
  }

  /* prefill of three prompts: 34 tokens, three forwards (three plans) in one step; logprobs on two */
  {
    tpd_step_item it[3];
    tpd_step_output out[3];
    for (int p = 0; p < 3; p++) it[p] = (tpd_step_item){.slot = s[p].slot, .n_tokens = LENS[p], .tokens = g_prompt[p]};
    it[0].logprobs = 1 + 5;
    it[2].logprobs = 1 + TPD_MAX_TOP_LOGPROBS;
    CHECK_OK(tpd_engine_step_out(e, it, 3, out));
    for (int p = 0; p < 3; p++) {
      CHECK(out[p].token == g_ref[p][0], "prefill %d: token %d, reference %d", p, out[p].token, g_ref[p][0]);
      s[p].n_out = 1;
    }
    check_logprobs(&out[0], g_ref_logits[0][0], 5, "prefill 0 logprobs");
    check_logprobs(&out[2], g_ref_logits[2][0], TPD_MAX_TOP_LOGPROBS, "prefill 2 logprobs");
    CHECK(isnan(out[1].logprob) && out[1].n_top == 0, "no logprobs asked, got %g and %d", out[1].logprob, out[1].n_top);
  }
  const int all3[] = {0, 1, 2};
  for (int j = 0; j < 2; j++) CHECK_OK(decode(e, s, all3, 3, 1));
  {
    const int want[] = {LENS[0] + 2, LENS[1] + 2, LENS[2] + 2};
    lens_are(e, s, all3, 3, want, "after two decodes");
  }

  /* a step of 3 decode tokens and an 18-token prefill: two forwards, the second fails on the last rank */
  CHECK_OK(tpd_engine_seq_open(e, &s[3].slot));
  tpd_step_item it[4];
  tpd_step_output out[4];
  for (int p = 0; p < 3; p++)
    it[p] = (tpd_step_item){.slot = s[p].slot, .n_tokens = 1, .tokens = &g_ref[p][s[p].n_out - 1]};
  it[3] = (tpd_step_item){.slot = s[3].slot, .n_tokens = LENS[3], .tokens = g_prompt[3]};
  tpd_engine_capacity before, after;
  tpd_engine_get_capacity(e, &before);
  tpd_clear_error();
  const tpd_status failed = tpd_engine_step_out(e, it, 4, out);
  CHECK(failed == TPD_ERR_UNSUPPORTED, "the faulty step returned %s", tpd_status_name(failed));
  char want_msg[64];
  snprintf(want_msg, sizeof want_msg, "rank %d", fault_rank);
  CHECK(strstr(tpd_last_error(), want_msg) && strstr(tpd_last_error(), "injected fault"),
        "message '%s' does not name rank %d and the fault", tpd_last_error(), fault_rank);
  CHECK(tpd_engine_usable(e), "a bad-request failure left the engine unusable");
  {
    const int idx[] = {0, 1, 2, 3}, want[] = {LENS[0] + 2, LENS[1] + 2, LENS[2] + 2, 0};
    lens_are(e, s, idx, 4, want, "after the failed step");
  }
  CHECK_OK(tpd_engine_step_out(e, it, 4, out)); /* the retry */
  for (int p = 0; p < 4; p++) {
    CHECK(out[p].token == g_ref[p][s[p].n_out], "retry, sequence %d: token %d, reference %d", p, out[p].token,
          g_ref[p][s[p].n_out]);
    s[p].n_out++;
  }
  tpd_engine_get_capacity(e, &after);
  CHECK(after.free_slots == 0 && before.free_slots == 0, "free slots %d, %d (all 4 open)", before.free_slots,
        after.free_slots);

  /* no free slot; then cancel sequence 1: its slot and blocks come back */
  int extra = -1;
  EXPECT_FAIL(tpd_engine_seq_open(e, &extra), TPD_ERR_NO_SLOT, "in use");
  tpd_engine_get_capacity(e, &before);
  const int held = tpd_engine_blocks_needed(e, s[1].slot, 0) == 0 ? (tpd_engine_seq_len(e, s[1].slot) + 3) / 4 : -1;
  CHECK_OK(tpd_engine_seq_close(e, s[1].slot));
  tpd_engine_get_capacity(e, &after);
  CHECK(after.free_slots == 1 && after.free_blocks == before.free_blocks + held, "after cancel: %d free slots, %d free "
        "blocks (had %d, the sequence held %d)", after.free_slots, after.free_blocks, before.free_blocks, held);
  CHECK(after.free_tokens == (long long)after.free_blocks * 4 && after.total_blocks == 24 && after.max_ctx == 64 &&
            after.max_step_tokens == T_CAP,
        "capacity fields: %lld free tokens, %d blocks, ctx %d, step %d", after.free_tokens, after.total_blocks,
        after.max_ctx, after.max_step_tokens);

  /* sequence 4 in the freed slot: its prompt in two calls, the first without output */
  CHECK_OK(tpd_engine_seq_open(e, &s[4].slot));
  {
    tpd_step_item a = {.slot = s[4].slot, .n_tokens = 4, .tokens = g_prompt[4], .flags = TPD_ITEM_NO_OUTPUT,
                       .logprobs = 3};
    tpd_step_output o1;
    CHECK_OK(tpd_engine_step_out(e, &a, 1, &o1));
    CHECK(o1.token == -1 && isnan(o1.logprob), "a no-output item gave token %d, logprob %g", o1.token, o1.logprob);
    a = (tpd_step_item){.slot = s[4].slot, .n_tokens = LENS[4] - 4, .tokens = g_prompt[4] + 4};
    CHECK_OK(tpd_engine_step_out(e, &a, 1, &o1));
    CHECK(o1.token == g_ref[4][0], "split prefill: token %d, reference %d", o1.token, g_ref[4][0]);
    s[4].n_out = 1;
  }

  /* KV pool exhausted: refused whole, nothing taken */
  {
    tpd_engine_get_capacity(e, &before);
    const int slot = s[0].slot, len = tpd_engine_seq_len(e, slot);
    int n = 1;
    while (len + n <= 64 && tpd_engine_blocks_needed(e, slot, n) <= before.free_blocks) n++;
    if (len + n <= 64) {
      static int32_t toks[64];
      for (int i = 0; i < n; i++) toks[i] = g_prompt[1][i % LENS[1]];
      tpd_step_item a[2] = {{.slot = s[2].slot, .n_tokens = 1, .tokens = &g_ref[2][s[2].n_out - 1]},
                            {.slot = slot, .n_tokens = n, .tokens = toks}};
      EXPECT_FAIL(tpd_engine_step_out(e, a, 2, out), TPD_ERR_KV_FULL, "exhausted");
      tpd_engine_get_capacity(e, &after);
      CHECK(after.free_blocks == before.free_blocks, "a refused step took %d blocks",
            before.free_blocks - after.free_blocks);
    } else {
      CHECK(0, "the test could not exhaust the pool within the context (free %d blocks)", before.free_blocks);
    }
  }

  /* an option change travels to the followers; outputs stay the reference */
  CHECK_OK(tpd_engine_set_option(e, TPD_OPT_OVERLAP, 1));
  const int live[] = {0, 2, 3, 4};
  while (s[0].n_out < N_NEW && s[2].n_out < N_NEW && s[3].n_out < N_NEW && s[4].n_out < N_NEW)
    CHECK_OK(decode(e, s, live, 4, 1));
  CHECK(s[0].n_out == N_NEW || s[2].n_out == N_NEW, "decoded to %d", s[0].n_out);

  CHECK_OK(tpd_engine_shutdown(e));
  int slot = -1;
  EXPECT_FAIL(tpd_engine_seq_open(e, &slot), TPD_ERR_STATE, "shutdown");
  EXPECT_FAIL(tpd_engine_step_out(e, it, 1, out), TPD_ERR_STATE, "shutdown");
  tpd_engine_destroy(e);
}

static void follow(const char *dir, tpd_comm *comm, long fault_at, tpd_status fault, tpd_status expect) {
  tpd_engine_opts o = opts(dir, TPD_MODE_LEADER);
  tpd_engine *e = NULL;
  CHECK_OK(tpd_engine_create(&o, comm, &e));
  if (!e) return;
  if (comm->rank == comm->size - 1) tpd_engine_inject_fault(e, fault_at, fault);
  int slot;
  tpd_step_item it = {.slot = 0, .n_tokens = 1, .tokens = g_prompt[0]};
  int32_t tok;
  EXPECT_FAIL(tpd_engine_seq_open(e, &slot), TPD_ERR_STATE, "follower");
  EXPECT_FAIL(tpd_engine_step(e, &it, 1, &tok, NULL), TPD_ERR_STATE, "follower");
  EXPECT_FAIL(tpd_engine_shutdown(e), TPD_ERR_STATE, "follower");
  EXPECT_FAIL(tpd_engine_set_option(e, TPD_OPT_OVERLAP, 1), TPD_ERR_STATE, "follower");
  const tpd_status st = tpd_engine_follow(e);
  CHECK(st == expect, "rank %d: follow returned %s (%s), expected %s", comm->rank, tpd_status_name(st),
        st ? tpd_last_error() : "", tpd_status_name(expect));
  CHECK(tpd_engine_usable(e) == (expect == TPD_OK), "rank %d: usable %d after follow returned %s", comm->rank,
        tpd_engine_usable(e), tpd_status_name(st));
  tpd_engine_destroy(e);
}

/* A fatal fault (a device error) in the second forward on the last rank. */
static void lead_fatal(const char *dir, tpd_comm *comm) {
  tpd_engine_opts o = opts(dir, TPD_MODE_LEADER);
  tpd_engine *e = NULL;
  CHECK_OK(tpd_engine_create(&o, comm, &e));
  if (!e) return;
  if (comm->size == 1) tpd_engine_inject_fault(e, 1, TPD_ERR_DEVICE);
  int slot = -1;
  CHECK_OK(tpd_engine_seq_open(e, &slot));
  tpd_step_item it = {.slot = slot, .n_tokens = LENS[0], .tokens = g_prompt[0]};
  int32_t tok = -1;
  CHECK_OK(tpd_engine_step(e, &it, 1, &tok, NULL));
  it.n_tokens = 1, it.tokens = &tok;
  EXPECT_FAIL(tpd_engine_step(e, &it, 1, &tok, NULL), TPD_ERR_DEVICE, "injected fault");
  CHECK(!tpd_engine_usable(e), "the engine says it is usable after a device fault");
  EXPECT_FAIL(tpd_engine_step(e, &it, 1, &tok, NULL), TPD_ERR_STATE, "unusable");
  EXPECT_FAIL(tpd_engine_shutdown(e), TPD_ERR_STATE, "unusable");
  tpd_engine_destroy(e); /* sends nothing: the followers have returned */
}

int main(int argc, char **argv) {
  tpd_comm *comm = NULL;
  if (tpd_comm_create_default(&argc, &argv, &comm) != TPD_OK) {
    fprintf(stderr, "comm: %s\n", tpd_last_error());
    return 1;
  }
  if (argc < 2) {
    fprintf(stderr, "usage: test_leader OUTDIR\n");
    return 2;
  }
  const int tp = comm->size, rank = comm->rank;
  if (rank == 0) tu_seed("test_leader");
  CHECK_OK(comm->ops->host_broadcast(comm, &tu_state, sizeof tu_state, 0));
  for (int p = 0; p < NP; p++)
    for (int j = 0; j < LENS[p]; j++) g_prompt[p][j] = tu_int(0, V - 1);
  char dir[512];
  snprintf(dir, sizeof dir, "%s/leader-tp%d", argv[1], tp);
  if (rank == 0) {
    mkdir(argv[1], 0755);
    tpd_synth_spec sp;
    CHECK_OK(tpd_synth_preset("tiny", &sp));
    sp.seed = 4242;
    CHECK_OK(tpd_synth_write(&sp, dir));
  }
  CHECK_OK(comm->ops->barrier(comm));
  if (tp > 1) { /* create fails on the last rank only: every rank returns its status, none waits */
    tpd_engine_opts o = opts(rank == tp - 1 ? "/nonexistent/tpdecode-model" : dir, TPD_MODE_LEADER);
    tpd_engine *e = NULL;
    char want[64];
    snprintf(want, sizeof want, rank == tp - 1 ? "does not exist" : "rank %d could not create", tp - 1);
    EXPECT_FAIL(tpd_engine_create(&o, comm, &e), TPD_ERR_IO, want);
    CHECK(e == NULL, "a failed create returned an engine");
  }
  reference(dir, comm);
  if (rank == 0) {
    lead(dir, comm);
    lead_fatal(dir, comm);
  } else {
    follow(dir, comm, 6, TPD_ERR_UNSUPPORTED, TPD_OK);
    follow(dir, comm, 1, TPD_ERR_DEVICE, TPD_ERR_DEVICE);
  }
  const int rc = tu_finish("test_leader");
  tpd_comm_destroy(comm);
  return rc;
}
