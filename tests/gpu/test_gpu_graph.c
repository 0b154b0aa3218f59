/* Streams, events and CUDA graphs of the CUDA backend:
 *   - a captured sequence of ops replays to the same bits as eager launches
 *   - work on the comm stream joins the capture through events, both when
 *     the caller joins it back and when graph_end has to
 *   - a capture that fails (a host synchronisation, a workspace that would
 *     have to grow) makes graph_end return an error, after which eager
 *     launches still work; after the eager run the same capture succeeds
 *   - a graph captured before a workspace grew refuses to launch
 *   - event ids are range-checked
 *   - the engine's captured decode steps follow option changes: an engine
 *     replaying graphs and one running eagerly take the same steps while
 *     OVERLAP, AR_CHUNKS and SKIP_ALLREDUCE change between them; after
 *     every change both must run the same all-reduces and give the same
 *     logits (see test_engine_options)
 * Exit 77 when no CUDA device is present. */
#include <unistd.h>

#include "launch/tools/synth.h"
#include "runtime/engine/bench_hooks.h"
#define TU_WITH_CUDA /* the device helpers of tests/testutil.h */
#include "tests/testutil.h"

static const char *PROG = "test_gpu_graph";

static int same_bits(tpd_backend *be, const void *a, const void *b, size_t n_bytes) {
  unsigned char *ha = tu_malloc(n_bytes), *hb = tu_malloc(n_bytes);
  TU_TRY(be->ops->download(be, ha, a, n_bytes));
  TU_TRY(be->ops->download(be, hb, b, n_bytes));
  const int same = memcmp(ha, hb, n_bytes) == 0;
  free(ha), free(hb);
  return same;
}

/* the residual add x += d (in place, rounded to bf16), with h = rmsnorm(x) */
static void residual(tpd_backend *be, void *x, const void *d, const float *w, void *h, int T, int D) {
  tpd_rmsnorm_args n = {T, D, x, d, w, 1e-5f, h};
  TU_TRY(be->ops->rmsnorm(be, &n));
}

/* rmsnorm(x += y) -> h; rmsnorm(x += d) -> h; out = h W^T */
static void step_ops(tpd_backend *be, void *x, const void *y, const void *d, const float *w, void *h,
                     const tpd_weight *wt, void *out, int T, int D) {
  residual(be, x, y, w, h, T, D);
  residual(be, x, d, w, h, T, D);
  tpd_matmul_args m = {T, h, D, wt, NULL, out, wt->n_rows, TPD_BF16};
  TU_TRY(be->ops->matmul(be, &m));
}

static void test_replay(tpd_backend *be) {
  const int T = 2, D = 1024, N = 512;
  const size_t n = (size_t)T * D;
  float *x = tu_malloc(n * 4), *y = tu_malloc(n * 4), *d = tu_malloc(n * 4), *w = tu_malloc((size_t)D * 4);
  float *wm = tu_malloc((size_t)N * D * 4);
  tu_fill_bf16(x, n, 1.0f), tu_fill_bf16(y, n, 0.1f), tu_fill_bf16(d, n, 0.1f), tu_fill_bf16(w, (size_t)D, 1.0f);
  tu_fill_bf16(wm, (size_t)N * D, 0.03f);
  uint16_t *hw = tu_to_bf16(wm, (size_t)N * D);
  tpd_weight wt;
  TU_TRY(be->ops->load_weight(be, hw, TPD_BF16, N, D, &wt));
  void *xa = tu_dev_from(be, x, n, TPD_BF16), *xb = tu_dev_from(be, x, n, TPD_BF16);
  void *dy = tu_dev_from(be, y, n, TPD_BF16), *dd = tu_dev_from(be, d, n, TPD_BF16);
  float *dw = (float *)tu_dev_from(be, w, (size_t)D, TPD_F32);
  void *ha = tu_dev_poison(be, n * 2), *hb = tu_dev_poison(be, n * 2);
  void *oa = tu_dev_poison(be, (size_t)T * N * 2), *ob = tu_dev_poison(be, (size_t)T * N * 2);

  void *graph = NULL;
  TU_TRY(be->ops->graph_begin(be));
  step_ops(be, xa, dy, dd, dw, ha, &wt, oa, T, D);
  TU_TRY(be->ops->graph_end(be, &graph));
  for (int i = 0; i < 3; i++) TU_TRY(be->ops->graph_launch(be, graph));
  for (int i = 0; i < 3; i++) step_ops(be, xb, dy, dd, dw, hb, &wt, ob, T, D);
  TU_TRY(be->ops->synchronize(be));
  tu_expect(same_bits(be, xa, xb, n * 2) && same_bits(be, ha, hb, n * 2) && same_bits(be, oa, ob, (size_t)T * N * 2),
            "graph of 2 residual rmsnorms + matmul, replayed 3 times == 3 eager runs (bitwise)");
  be->ops->graph_destroy(be, graph);

  /* the comm stream: compute -> event -> comm copy -> event -> compute */
  cudaStream_t comm = (cudaStream_t)be->ops->comm_stream(be);
  void *za = tu_dev_poison(be, n * 2), *zb = tu_dev_poison(be, n * 2);
  for (int join = 1; join >= 0; join--) {
    TU_TRY(be->ops->graph_begin(be));
    residual(be, xa, dy, dw, ha, T, D);
    TU_TRY(be->ops->event_record(be, 3, 0));
    TU_TRY(be->ops->event_wait(be, 3, 1));
    TU_CUDA(cudaMemcpyAsync(za, xa, n * 2, cudaMemcpyDeviceToDevice, comm));
    if (join) {
      TU_TRY(be->ops->event_record(be, 63, 1));
      TU_TRY(be->ops->event_wait(be, 63, 0));
    }
    TU_TRY(be->ops->graph_end(be, &graph));
    TU_TRY(be->ops->graph_launch(be, graph));
    TU_TRY(be->ops->synchronize(be));
    residual(be, xb, dy, dw, hb, T, D);
    TU_TRY(be->ops->synchronize(be)); /* the legacy-stream copy below does not wait for the backend's stream */
    TU_CUDA(cudaMemcpy(zb, xb, n * 2, cudaMemcpyDeviceToDevice));
    TU_CUDA(cudaDeviceSynchronize());
    tu_expect(same_bits(be, za, zb, n * 2) && same_bits(be, xa, xb, n * 2),
              join ? "graph with comm-stream work joined by the caller" : "graph with comm-stream work joined by graph_end");
    be->ops->graph_destroy(be, graph);
  }

  /* a failed capture: a host synchronisation inside it */
  if (!tu_planned_faults_off("synchronize inside a capture fails and graph_end says the capture failed")) {
    TU_TRY(be->ops->graph_begin(be));
    residual(be, xa, dy, dw, ha, T, D);
    const tpd_status s_sync = be->ops->synchronize(be);
    tpd_clear_error();
    const tpd_status s_end = be->ops->graph_end(be, &graph);
    printf("     failed capture reports: %s\n", tpd_last_error());
    tu_expect(s_sync != TPD_OK && s_end == TPD_ERR_DEVICE && graph == NULL && strstr(tpd_last_error(), "capture"),
              "synchronize inside a capture fails and graph_end says the capture failed");
    tpd_clear_error();
    TU_TRY(be->ops->synchronize(be));
    TU_CUDA(cudaMemcpy(xb, xa, n * 2, cudaMemcpyDeviceToDevice));
    TU_CUDA(cudaDeviceSynchronize());
    residual(be, xa, dy, dw, ha, T, D);
    TU_TRY(be->ops->synchronize(be));
    float *fa = tu_host_from(be, xa, n, TPD_BF16), *fb = tu_host_from(be, xb, n, TPD_BF16), *fy = tu_host_from(be, dy, n, TPD_BF16);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
      if (fa[i] != tpd_bf16_to_f32(tpd_f32_to_bf16(fb[i] + fy[i]))) bad++;
    tu_expect(bad == 0, "eager launches work after a failed capture");
    free(fa), free(fb), free(fy);
  }

  be->ops->free(be, (void *)wt.data);
  void *bufs[] = {xa, xb, dy, dd, dw, ha, hb, oa, ob, za, zb};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->ops->free(be, bufs[i]);
  free(x), free(y), free(d), free(w), free(wm), free(hw);
}

/* Workspaces (the large-M gate/up scratch, attention partials) may grow
 * inside a relaxed-mode capture (the default), are refused inside a
 * global-mode one, and a graph captured before a workspace grew keeps
 * working afterwards.  A fresh backend starts with no workspaces. */
static void test_workspace(void) {
  tpd_backend_opts o = {.n_threads = 0, .device = -1, .local_rank = 0};
  tpd_backend *be = NULL;
  TU_TRY(tpd_backend_create("cuda", &o, &be));
  const int F = 1000, K = 256, M_small = 20, M_big = 600;
  float *x = tu_malloc((size_t)M_big * K * 4), *w = tu_malloc((size_t)2 * F * K * 4);
  tu_fill_bf16(x, (size_t)M_big * K, 1.0f), tu_fill_bf16(w, (size_t)2 * F * K, 0.1f);
  uint16_t *hw = tu_to_bf16(w, (size_t)2 * F * K);
  tpd_weight wt;
  TU_TRY(be->ops->load_weight(be, hw, TPD_BF16, 2 * F, K, &wt));
  void *dx = tu_dev_from(be, x, (size_t)M_big * K, TPD_BF16);
  void *oa = tu_dev_poison(be, (size_t)M_big * F * 2), *ob = tu_dev_poison(be, (size_t)M_big * F * 2);
  tpd_matmul_args a = {M_small, dx, K, &wt, NULL, NULL, 0, TPD_BF16};

  void *graph = NULL;
  setenv("TPD_CUDA_CAPTURE_MODE", "global", 1);
  TU_TRY(be->ops->graph_begin(be));
  unsetenv("TPD_CUDA_CAPTURE_MODE");
  const tpd_status s_op = be->ops->matmul_swiglu(be, &a, oa, F);
  printf("     op needing a new workspace inside a global-mode capture: %s\n", tpd_last_error());
  tpd_clear_error();
  const tpd_status s_end = be->ops->graph_end(be, &graph);
  printf("     and graph_end: %s\n", tpd_last_error());
  tu_expect(s_op == TPD_ERR_DEVICE && s_end == TPD_ERR_DEVICE && graph == NULL,
            "a workspace that would grow inside a global-mode capture fails the op and the capture");
  tpd_clear_error();
  TU_TRY(be->ops->graph_begin(be)); /* relaxed (default): the scratch is allocated inside the capture */
  TU_TRY(be->ops->matmul_swiglu(be, &a, oa, F));
  TU_TRY(be->ops->graph_end(be, &graph));
  TU_TRY(be->ops->graph_launch(be, graph));
  TU_TRY(be->ops->matmul_swiglu(be, &a, ob, F));
  TU_TRY(be->ops->synchronize(be));
  tu_expect(same_bits(be, oa, ob, (size_t)M_small * F * 2),
            "a workspace grows inside a relaxed capture; the graph replays == eager (bitwise)");
  a.M = M_big; /* more rows: the scratch grows again */
  TU_TRY(be->ops->matmul_swiglu(be, &a, ob, F));
  TU_TRY(be->ops->synchronize(be));
  TU_CUDA(cudaMemset(oa, 0xFF, (size_t)M_big * F * 2));
  TU_CUDA(cudaDeviceSynchronize());
  TU_TRY(be->ops->graph_launch(be, graph));
  a.M = M_small;
  TU_TRY(be->ops->matmul_swiglu(be, &a, ob, F));
  TU_TRY(be->ops->synchronize(be));
  tu_expect(same_bits(be, oa, ob, (size_t)M_small * F * 2),
            "a graph captured before its workspace grew still replays correctly");
  be->ops->graph_destroy(be, graph);
  graph = NULL;

  /* attention over a split context: eager, then captured and replayed */
  const int Hq = 8, Hkv = 2, Dh = 128, bs = 16, max_blocks = 64;
  const int ldq = (Hq + 2 * Hkv) * Dh;
  const size_t nc = (size_t)max_blocks * Hkv * bs * Dh;
  int32_t pos[1] = {900}, slot[1] = {0}, table[64];
  for (int i = 0; i < 64; i++) table[i] = 63 - i;
  float *kc = tu_malloc(nc * 4), *q = tu_malloc((size_t)ldq * 4);
  tu_fill_bf16(kc, nc, 1.0f), tu_fill_bf16(q, (size_t)ldq, 1.0f);
  void *dk = tu_dev_from(be, kc, nc, TPD_BF16), *dq = tu_dev_from(be, q, (size_t)ldq, TPD_BF16);
  void *aa = tu_dev_poison(be, (size_t)Hq * Dh * 2), *ab = tu_dev_poison(be, (size_t)Hq * Dh * 2);
  int32_t *dpos, *dslot, *dtab;
  TU_TRY(be->ops->alloc(be, sizeof pos, (void **)&dpos));
  TU_TRY(be->ops->alloc(be, sizeof slot, (void **)&dslot));
  TU_TRY(be->ops->alloc(be, sizeof table, (void **)&dtab));
  TU_TRY(be->ops->upload(be, dpos, pos, sizeof pos));
  TU_TRY(be->ops->upload(be, dslot, slot, sizeof slot));
  TU_TRY(be->ops->upload(be, dtab, table, sizeof table));
  tpd_step_meta m = {1, dpos, dslot, dtab, max_blocks, bs, max_blocks * bs};
  tpd_attention_args at = {&m, Hq, Hkv, Dh, dq, ldq, dk, dk, ab, 0, 0.088f};
  TU_TRY(be->ops->attention(be, &at));
  at.out = aa;
  TU_TRY(be->ops->graph_begin(be));
  TU_TRY(be->ops->attention(be, &at));
  TU_TRY(be->ops->graph_end(be, &graph));
  TU_TRY(be->ops->graph_launch(be, graph));
  TU_TRY(be->ops->synchronize(be));
  tu_expect(same_bits(be, aa, ab, (size_t)Hq * Dh * 2), "attention (split context) captured == eager (bitwise)");
  be->ops->graph_destroy(be, graph);

  tu_expect(be->ops->event_record(be, 64, 0) == TPD_ERR_ARG && be->ops->event_wait(be, -1, 1) == TPD_ERR_ARG,
            "event ids outside [0, 64) are refused");
  tpd_clear_error();
  be->ops->free(be, (void *)wt.data);
  void *bufs[] = {dx, oa, ob, dk, dq, aa, ab, dpos, dslot, dtab};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->ops->free(be, bufs[i]);
  tpd_backend_destroy(be);
  free(x), free(w), free(hw), free(kc), free(q);
}

/* ---- the engine under option changes ----
 * A stand-in device communicator for rank 0 of 2, so that the options that
 * shape the schedule (they matter only at TP > 1) take effect in one
 * process.  Its all-reduce is enqueued on the stream it is given (the
 * engine's comm stream, so it is captured with the step) and does two
 * things there:
 *   - marks byte k of a device ledger, k = the host call's index within the
 *     step; after a step the number of marked bytes is the number of
 *     all-reduces that ran on the device, whether launched eagerly or
 *     replayed from a graph (a graph replays the indices of its capture)
 *   - stands in for the other rank's contribution: keeps only the top byte
 *     of every element (sign and the high exponent bits) by copying zeros
 *     over the lower bytes, an elementwise change the logits depend on and
 *     that is the same however the rows are cut into messages.
 * Host collectives copy this rank's data into both ranks' places. */
typedef struct {
  int calls, cap;
  unsigned char *ledger; /* device [cap] */
  void *zeros;           /* device, >= the largest message in bytes */
  size_t zeros_bytes;
} fake_comm;

static tpd_status fake_allreduce(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream) {
  fake_comm *f = c->impl;
  const size_t esz = tpd_dtype_size(dt);
  if (f->calls >= f->cap) return TPD_FAIL(TPD_ERR_ARG, "fake all-reduce: more than %d calls in one step", f->cap);
  if (n > f->zeros_bytes) return TPD_FAIL(TPD_ERR_ARG, "fake all-reduce: %zu elements, more than planned", n);
  cudaStream_t s = (cudaStream_t)stream;
  if (cudaMemsetAsync(f->ledger + f->calls++, 1, 1, s) != cudaSuccess ||
      cudaMemcpy2DAsync(buf, esz, f->zeros, 1, esz - 1, n, cudaMemcpyDeviceToDevice, s) != cudaSuccess)
    return TPD_FAIL(TPD_ERR_DEVICE, "fake all-reduce: %s", cudaGetErrorString(cudaGetLastError()));
  return TPD_OK;
}
static tpd_status fake_allreduce_start(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream,
                                       tpd_comm_req *req) {
  req->impl = NULL, req->active = 0;
  return fake_allreduce(c, buf, n, dt, stream);
}
static tpd_status fake_wait(tpd_comm *c, tpd_comm_req *req) {
  (void)c, (void)req;
  return TPD_OK;
}
static tpd_status fake_host_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes) {
  for (int r = 0; r < c->size; r++) memcpy((char *)recv + (size_t)r * n_bytes, send, n_bytes);
  return TPD_OK;
}
static tpd_status fake_host_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root) {
  (void)c, (void)buf, (void)n_bytes, (void)root;
  return TPD_OK;
}
static tpd_status fake_unsupported(void) { return TPD_FAIL(TPD_ERR_UNSUPPORTED, "fake communicator: not used by the engine"); }
static tpd_status fake_allgather(tpd_comm *c, const void *s, void *r, size_t n, void *st) {
  (void)c, (void)s, (void)r, (void)n, (void)st;
  return fake_unsupported();
}
static tpd_status fake_broadcast(tpd_comm *c, void *b, size_t n, int root, void *st) {
  (void)c, (void)b, (void)n, (void)root, (void)st;
  return fake_unsupported();
}
static tpd_status fake_barrier(tpd_comm *c) {
  (void)c;
  return TPD_OK;
}
static void fake_abort(tpd_comm *c, int code) {
  (void)c;
  fprintf(stderr, "FAIL: fake communicator aborted (%d)\n", code);
  exit(1);
}
static void fake_destroy(tpd_comm *c) { (void)c; }

static const tpd_comm_ops fake_ops = {.name = "fake-device",
                                      .data_on_device = 1,
                                      .destroy = fake_destroy,
                                      .allreduce = fake_allreduce,
                                      .allreduce_start = fake_allreduce_start,
                                      .wait = fake_wait,
                                      .allgather = fake_allgather,
                                      .broadcast = fake_broadcast,
                                      .host_allgather = fake_host_allgather,
                                      .host_broadcast = fake_host_broadcast,
                                      .barrier = fake_barrier,
                                      .abort = fake_abort};

/* number of all-reduces that ran in the last step; clears the ledger */
static int ledger_count(fake_comm *f) {
  unsigned char *h = tu_malloc((size_t)f->cap);
  TU_CUDA(cudaDeviceSynchronize());
  TU_CUDA(cudaMemcpy(h, f->ledger, (size_t)f->cap, cudaMemcpyDeviceToHost));
  int n = 0;
  for (int i = 0; i < f->cap; i++) n += h[i] == 1;
  TU_CUDA(cudaMemset(f->ledger, 0, (size_t)f->cap));
  TU_CUDA(cudaDeviceSynchronize());
  f->calls = 0;
  free(h);
  return n;
}

static void test_engine_options(void) {
  const char *tmp = getenv("TMPDIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tpd-gpu-graph-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir)) {
    printf("FAIL: cannot create a temporary directory\n");
    tu_count(0); /* a failure */
    return;
  }
  tpd_synth_spec spec;
  TU_TRY(tpd_synth_preset("tiny", &spec));
  spec.dim = 256, spec.ffn_dim = 344, spec.vocab = 600, spec.seed = tu_next(); /* D = 256: 1, 2 or 4 chunks of 64 */
  TU_TRY(tpd_synth_write(&spec, dir));
  const int max_seqs = 2, T_cap = 32;
  fake_comm fc[2];
  tpd_comm comm[2];
  tpd_engine *e[2] = {NULL, NULL}; /* 0: graphs, 1: eager */
  for (int k = 0; k < 2; k++) {
    memset(&fc[k], 0, sizeof fc[k]);
    fc[k].cap = 4096;
    fc[k].zeros_bytes = (size_t)T_cap * spec.dim * 4;
    TU_CUDA(cudaMalloc((void **)&fc[k].ledger, (size_t)fc[k].cap));
    TU_CUDA(cudaMemset(fc[k].ledger, 0, (size_t)fc[k].cap));
    TU_CUDA(cudaMalloc(&fc[k].zeros, fc[k].zeros_bytes));
    TU_CUDA(cudaMemset(fc[k].zeros, 0, fc[k].zeros_bytes));
    TU_CUDA(cudaDeviceSynchronize());
    comm[k] = (tpd_comm){.ops = &fake_ops, .rank = 0, .size = 2, .local_rank = 0, .local_size = 1, .impl = &fc[k]};
    tpd_engine_opts o;
    tpd_engine_opts_init(&o);
    o.model_dir = dir, o.backend = "cuda", o.n_threads = 1, o.max_ctx = 64, o.max_seqs = max_seqs;
    o.max_step_tokens = T_cap, o.kv_block_size = 8, o.device = -1;
    TU_TRY(tpd_engine_create(&o, &comm[k], &e[k]));
  }
  TU_TRY(tpd_engine_set_option(e[1], TPD_OPT_GRAPHS, 0));
  tu_expect(tpd_engine_get_option(e[0], TPD_OPT_GRAPHS) == 1 && tpd_engine_get_option(e[0], TPD_OPT_OVERLAP) == 0 &&
                tpd_engine_get_option(e[0], TPD_OPT_AR_CHUNKS) == 1,
            "engine defaults: graphs on, overlap off, 1 all-reduce chunk");
  const int V = spec.vocab;
  int slot[2][2];
  for (int k = 0; k < 2; k++)
    for (int s = 0; s < 2; s++) TU_TRY(tpd_engine_seq_open(e[k], &slot[k][s]));
  int32_t prompt[2][7], feed[2], next[2][2];
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < 7; i++) prompt[s][i] = (int32_t)tu_int(0, V - 1);
  float *logits[2] = {tu_malloc(sizeof(float) * 2 * (size_t)V), tu_malloc(sizeof(float) * 2 * (size_t)V)};
  /* the prompts (eager on both: more tokens than sequences) */
  for (int k = 0; k < 2; k++) {
    tpd_step_item it[2];
    memset(it, 0, sizeof it);
    for (int s = 0; s < 2; s++) it[s] = (tpd_step_item){.slot = slot[k][s], .n_tokens = 7 - 3 * s, .tokens = prompt[s]};
    TU_TRY(tpd_engine_step(e[k], it, 2, next[k], logits[k]));
    (void)ledger_count(&fc[k]);
  }
  feed[0] = next[1][0], feed[1] = next[1][1];
  static const struct {
    tpd_engine_option opt;
    int value;
    const char *name;
  } phases[] = {{TPD_OPT_GRAPHS, 1, "defaults"},        {TPD_OPT_OVERLAP, 1, "OVERLAP=1"},
                {TPD_OPT_AR_CHUNKS, 4, "AR_CHUNKS=4"},  {TPD_OPT_SKIP_ALLREDUCE, 1, "SKIP_ALLREDUCE=1"},
                {TPD_OPT_SKIP_ALLREDUCE, 0, "SKIP_ALLREDUCE=0"}, {TPD_OPT_AR_CHUNKS, 2, "AR_CHUNKS=2"},
                {TPD_OPT_OVERLAP, 0, "OVERLAP=0"}};
  const int batches[2] = {2, 1}; /* per phase: a step at batch 2 and one at batch 1 */
  for (size_t p = 0; p < sizeof phases / sizeof phases[0]; p++) {
    if (phases[p].opt != TPD_OPT_GRAPHS)
      for (int k = 0; k < 2; k++) TU_TRY(tpd_engine_set_option(e[k], phases[p].opt, phases[p].value));
    for (int b = 0; b < 2; b++) {
      const int B = batches[b];
      int n_ar[2];
      for (int k = 0; k < 2; k++) {
        tpd_step_item it[2];
        memset(it, 0, sizeof it);
        for (int s = 0; s < B; s++) it[s] = (tpd_step_item){.slot = slot[k][s], .n_tokens = 1, .tokens = &feed[s]};
        TU_TRY(tpd_engine_step(e[k], it, B, next[k], logits[k]));
        n_ar[k] = ledger_count(&fc[k]);
      }
      const tu_cmp c = tu_compare(logits[0], V, logits[1], V, B, V);
      char what[200];
      snprintf(what, sizeof what, "after %s, batch %d: graph replay == eager: %d == %d all-reduces", phases[p].name, B,
               n_ar[0], n_ar[1]);
      tu_expect(n_ar[0] == n_ar[1], what);
      snprintf(what, sizeof what, "after %s, batch %d: graph replay == eager: logits", phases[p].name, B);
      tu_report(what, c, 1e-2);
      for (int s = 0; s < B; s++) feed[s] = next[1][s];
    }
  }
  for (int k = 0; k < 2; k++) {
    tpd_engine_destroy(e[k]);
    TU_CUDA(cudaFree(fc[k].ledger));
    TU_CUDA(cudaFree(fc[k].zeros));
  }
  free(logits[0]), free(logits[1]);
  char p[4200];
  snprintf(p, sizeof p, "%s/config.json", dir);
  unlink(p);
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  unlink(p);
  rmdir(dir);
}

int main(void) {
  tu_require_gpu(PROG);
  tu_seed(PROG);
  tpd_backend_opts o = {.n_threads = 0, .device = -1, .local_rank = 0};
  tpd_backend *be = NULL;
  TU_TRY(tpd_backend_create("cuda", &o, &be));
  test_replay(be);
  tpd_backend_destroy(be);
  test_workspace();
  test_engine_options();
  return tu_finish(PROG);
}
