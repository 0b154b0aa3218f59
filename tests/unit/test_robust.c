/* Robustness at the edges of the API:
 *   - the KV pool's size arithmetic: sizes whose products or sums leave int
 *     are refused (TPD_ERR_ARG naming the argument), never wrapped;
 *   - tpd_engine_seq_skip with INT_MAX, negative and overflowing counts is
 *     refused with a message naming n_tokens, and changes nothing (length,
 *     KV blocks);
 *   - the error message's semantics (runtime/base/error.h): the most recent
 *     failure on this thread, replaced by a new one, kept across successful
 *     calls, per thread, save/restore for the library's own fallbacks, and
 *     a failed agreement between ranks keeps the failing rank's cause. */
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launch/tools/synth.h"
#include "runtime/engine/kvcache.h"
#include "runtime/engine/bench_hooks.h"
#include "testutil.h"

/* ---- the KV pool ---- */

static int pool_is_empty(const tpd_kv_pool *kv) {
  return !kv->table && !kv->free_blocks && !kv->n_tokens && kv->n_blocks == 0 && kv->max_blocks == 0;
}

static void test_kv_sizes(void) {
  tpd_kv_pool kv;
  /* 4 slots x (2^30 + 1) blocks: 2^32 + 4 wraps to 4 in int */
  EXPECT_FAIL(tpd_kv_init(&kv, 4, (1 << 30) + 1, 1, 0), TPD_ERR_ARG, "max_slots = 4");
  CHECK(pool_is_empty(&kv), "a refused pool holds memory");
  /* 65536 slots x INT_MAX blocks */
  EXPECT_FAIL(tpd_kv_init(&kv, 65536, INT_MAX, 1, 0), TPD_ERR_ARG, "block-table entries");
  EXPECT_FAIL(tpd_kv_init(&kv, INT_MAX, INT_MAX, 16, 0), TPD_ERR_ARG, "block-table entries");
  /* max_ctx + block_size - 1 leaves int: still one block per slot */
  tpd_clear_error();
  CHECK_OK(tpd_kv_init(&kv, 1, INT_MAX, INT_MAX, 0));
  CHECK(kv.max_blocks == 1 && kv.n_blocks == 1, "ceil(INT_MAX / INT_MAX) gave %d blocks per slot, pool %d",
        kv.max_blocks, kv.n_blocks);
  tpd_kv_free(&kv);
  CHECK_OK(tpd_kv_init(&kv, 3, INT_MAX - 5, (1 << 30), 0));
  CHECK(kv.max_blocks == 2 && kv.n_blocks == 6, "ceil((INT_MAX - 5) / 2^30) = %d blocks per slot, pool %d",
        kv.max_blocks, kv.n_blocks);
  tpd_kv_free(&kv);
  /* each bad argument is named */
  EXPECT_FAIL(tpd_kv_init(&kv, 0, 16, 4, 0), TPD_ERR_ARG, "max_slots");
  EXPECT_FAIL(tpd_kv_init(&kv, 2, -16, 4, 0), TPD_ERR_ARG, "max_ctx");
  EXPECT_FAIL(tpd_kv_init(&kv, 2, 16, INT_MIN, 0), TPD_ERR_ARG, "block_size");
  EXPECT_FAIL(tpd_kv_init(&kv, 2, 16, 4, -1), TPD_ERR_ARG, "n_blocks"); /* was silently "the default" */
  CHECK(pool_is_empty(&kv), "a refused pool holds memory");
}

static void test_kv_reserve(void) {
  tpd_kv_pool kv;
  const int ctx = 40, bs = 4;
  CHECK_OK(tpd_kv_init(&kv, 2, ctx, bs, 0));
  int s = -1;
  CHECK_OK(tpd_kv_acquire(&kv, &s));
  if (s < 0) return;
  CHECK_OK(tpd_kv_reserve(&kv, s, 5));
  kv.n_tokens[s] += 5; /* as the engine advances after a step */
  const int free0 = kv.n_free, alloc0 = kv.n_alloc[s];
  const int bad[] = {-1, INT_MIN, INT_MAX, INT_MAX - 4, ctx - 5 + 1};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tpd_clear_error();
    const tpd_status st = tpd_kv_reserve(&kv, s, bad[i]);
    CHECK(st == (bad[i] < 0 ? TPD_ERR_ARG : TPD_ERR_TOO_LONG), "reserve %d more tokens on 5 of %d -> %s", bad[i], ctx,
          tpd_status_name(st));
    CHECK(strstr(tpd_last_error(), "n_new"), "reserve %d: message '%s' does not name n_new", bad[i],
          tpd_last_error());
    CHECK(kv.n_free == free0 && kv.n_alloc[s] == alloc0 && kv.n_tokens[s] == 5,
          "a refused reserve of %d changed the pool: free %d -> %d, held %d -> %d", bad[i], free0, kv.n_free, alloc0,
          kv.n_alloc[s]);
  }
  CHECK_OK(tpd_kv_reserve(&kv, s, ctx - 5)); /* exactly to the context */
  CHECK(kv.n_alloc[s] == ctx / bs, "a full context holds %d blocks, want %d", kv.n_alloc[s], ctx / bs);
  tpd_kv_free(&kv);
}

/* ---- tpd_engine_seq_skip ---- */

static void test_seq_skip(const char *dir, tpd_comm *comm) {
  const int ctx = 64;
  tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = dir, .n_threads = 1, .max_seqs = 2, .max_ctx = ctx, .kv_block_size = 4};
  tpd_engine *e = NULL;
  CHECK_OK(tpd_engine_create(&o, comm, &e));
  if (!e) return;
  int a = -1, b = -1;
  CHECK_OK(tpd_engine_seq_open(e, &a));
  CHECK_OK(tpd_engine_seq_skip(e, a, 5));
  CHECK(tpd_engine_seq_len(e, a) == 5, "length %d after skipping 5", tpd_engine_seq_len(e, a));
  const int bad[] = {INT_MAX, INT_MAX - 4, INT_MAX - 5, -1, INT_MIN, ctx - 5 + 1};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tpd_clear_error();
    const tpd_status st = tpd_engine_seq_skip(e, a, bad[i]);
    CHECK(st == (bad[i] < 0 ? TPD_ERR_ARG : TPD_ERR_TOO_LONG), "seq_skip(%d) at length 5 of %d -> %s", bad[i], ctx,
          tpd_status_name(st));
    CHECK(strstr(tpd_last_error(), "n_tokens"), "seq_skip(%d): message '%s' does not name n_tokens", bad[i],
          tpd_last_error());
    CHECK(tpd_engine_seq_len(e, a) == 5, "seq_skip(%d) was refused but the length is now %d", bad[i],
          tpd_engine_seq_len(e, a));
  }
  EXPECT_FAIL(tpd_engine_seq_skip(e, 7, 1), TPD_ERR_SLOT, "slot 7");
  /* a step whose n_tokens would overflow "cached + new" is refused by name */
  {
    const int32_t one = 1;
    int32_t nx = -1;
    tpd_step_item huge = {.slot = a, .n_tokens = INT_MAX - 2, .tokens = &one};
    EXPECT_FAIL(tpd_engine_step(e, &huge, 1, &nx, NULL), TPD_ERR_TOO_LONG, "exceed the context");
    CHECK(tpd_engine_seq_len(e, a) == 5, "a refused step changed the length to %d", tpd_engine_seq_len(e, a));
  }
  /* nothing leaked: both slots still reach the full context from the pool
   * (kv_blocks 0: exactly enough blocks for two full contexts) */
  CHECK_OK(tpd_engine_seq_skip(e, a, ctx - 5 - 1));
  const int32_t tok = 3;
  int32_t next = -1;
  tpd_step_item it = {.slot = a, .n_tokens = 1, .tokens = &tok};
  CHECK_OK(tpd_engine_step(e, &it, 1, &next, NULL)); /* the last position computes */
  CHECK(tpd_engine_seq_len(e, a) == ctx && next >= 0, "length %d, token %d", tpd_engine_seq_len(e, a), (int)next);
  CHECK_OK(tpd_engine_seq_open(e, &b));
  CHECK_OK(tpd_engine_seq_skip(e, b, ctx));
  CHECK(tpd_engine_seq_len(e, b) == ctx, "second slot length %d", tpd_engine_seq_len(e, b));
  tpd_engine_destroy(e);

  /* a negative KV pool size in the engine options is an error, not "the default" */
  tpd_engine_opts neg = o;
  neg.kv_blocks = -1;
  e = NULL;
  EXPECT_FAIL(tpd_engine_create(&neg, comm, &e), TPD_ERR_ARG, "n_blocks");
  CHECK(!e, "an engine was returned for kv_blocks = -1");
  tpd_engine_destroy(e);
}

/* ---- the error message ---- */

static void *fail_on_other_thread(void *arg) {
  (void)arg;
  TPD_FAIL(TPD_ERR_IO, "failure on the other thread");
  return strstr(tpd_last_error(), "other thread") ? (void *)1 : NULL;
}

static void test_error_semantics(const char *dir, tpd_comm *comm) {
  tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = dir, .n_threads = 1, .max_seqs = 1, .max_ctx = 32, .kv_block_size = 4};
  tpd_engine *e = NULL;
  CHECK_OK(tpd_engine_create(&o, comm, &e));
  if (!e) return;
  int a = -1, b = -1;
  CHECK_OK(tpd_engine_seq_open(e, &a));
  /* failure 1: no free slot.  The caller recovers (closes one) without
   * reading or clearing the message; failure 2 must then be the message */
  tpd_clear_error();
  CHECK(tpd_engine_seq_open(e, &b) == TPD_ERR_NO_SLOT && strstr(tpd_last_error(), "slots are in use"), "full: %s",
        tpd_last_error());
  tpd_engine_seq_close(e, a);
  CHECK_OK(tpd_engine_seq_open(e, &a));
  CHECK(strstr(tpd_last_error(), "slots are in use"), "a successful call changed the message to '%s'",
        tpd_last_error());
  CHECK(tpd_engine_seq_skip(e, a, -3) == TPD_ERR_ARG, "seq_skip(-3)");
  CHECK(strstr(tpd_last_error(), "n_tokens = -3"), "after a second failure the message is the first one's: '%s'",
        tpd_last_error());
  CHECK(strstr(tpd_last_error_loc(), "engine.c:"), "location '%s' is not the second failure's",
        tpd_last_error_loc());
  /* a successful step (a forward, the sampler, the KV pool) leaves it alone */
  const int32_t tok[2] = {1, 2};
  int32_t next = -1;
  tpd_step_item it = {.slot = a, .n_tokens = 2, .tokens = tok,
                      .sampling = {.temperature = 0.8f, .top_p = 0.9f, .seed = 5}};
  CHECK_OK(tpd_engine_step(e, &it, 1, &next, NULL));
  CHECK(strstr(tpd_last_error(), "n_tokens = -3"), "a successful step changed the message to '%s'",
        tpd_last_error());
  tpd_engine_destroy(e);

  /* a failure may quote the previous message */
  tpd_clear_error();
  TPD_FAIL(TPD_ERR_IO, "inner");
  TPD_FAIL(TPD_ERR_IO, "outer: %s", tpd_last_error());
  CHECK(!strcmp(tpd_last_error(), "outer: inner"), "quoting the last message gave '%s'", tpd_last_error());

  /* per thread */
  pthread_t th;
  void *seen = NULL;
  CHECK(pthread_create(&th, NULL, fail_on_other_thread, NULL) == 0 && pthread_join(th, &seen) == 0);
  CHECK(seen == (void *)1, "the other thread did not see its own message");
  CHECK(!strcmp(tpd_last_error(), "outer: inner"), "another thread's failure changed this one's to '%s'",
        tpd_last_error());

  /* save / restore, as the library's fallbacks use it */
  tpd_error_state saved;
  tpd_error_save(&saved);
  TPD_FAIL(TPD_ERR_DEVICE, "capture failed");
  CHECK(strstr(tpd_last_error(), "capture failed"));
  tpd_error_restore(&saved);
  CHECK(!strcmp(tpd_last_error(), "outer: inner"), "restore gave '%s'", tpd_last_error());
  tpd_clear_error();
  tpd_error_save(&saved);
  TPD_FAIL(TPD_ERR_DEVICE, "capture failed");
  tpd_error_restore(&saved);
  CHECK(!*tpd_last_error() && !*tpd_last_error_loc(), "restoring 'no message' left '%s'", tpd_last_error());
}

/* tpd_comm_agree when the agreement itself fails: a rank that had failed
 * keeps its own message (the cause); one that had not reports the failure */
static tpd_status dead_peer_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes) {
  (void)c, (void)send, (void)recv, (void)n_bytes;
  return TPD_FAIL(TPD_ERR_COMM, "MPI_Allgather failed: peer died");
}

static void test_agree_keeps_cause(void) {
  tpd_comm_ops ops = {.name = "dead-peer", .host_allgather = dead_peer_allgather};
  tpd_comm c = {.ops = &ops, .rank = 0, .size = 2, .local_rank = 0, .local_size = 2};
  int bad = 7;
  tpd_clear_error();
  TPD_FAIL(TPD_ERR_IO, "model.safetensors is truncated");
  CHECK(tpd_comm_agree(&c, 0, &bad) == TPD_ERR_COMM, "a failed agreement returned OK");
  CHECK(!strcmp(tpd_last_error(), "model.safetensors is truncated"), "the failing rank's message became '%s'",
        tpd_last_error());
  CHECK(tpd_comm_agree(&c, 1, &bad) == TPD_ERR_COMM && strstr(tpd_last_error(), "peer died"),
        "a rank that had not failed reports '%s'", tpd_last_error());
}

int main(void) {
  tu_seed("test_robust");
  char dir[128];
  snprintf(dir, sizeof dir, "/tmp/tpd-test-robust-%d", (int)getpid());
  mkdir(dir, 0755);
  char model[160];
  snprintf(model, sizeof model, "%s/tiny", dir);
  tpd_synth_spec s;
  CHECK_OK(tpd_synth_preset("tiny", &s));
  s.seed = (unsigned long long)tu_next();
  CHECK_OK(tpd_synth_write(&s, model));
  tpd_comm *comm = NULL;
  CHECK_OK(tpd_comm_single_create(&comm));

  test_kv_sizes();
  test_kv_reserve();
  if (comm) test_seq_skip(model, comm);
  if (comm) test_error_semantics(model, comm);
  test_agree_keeps_cause();

  tpd_comm_destroy(comm);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return tu_finish("test_robust");
}
