/* Streams, events and CUDA graphs of the CUDA backend:
 *   - a captured sequence of ops replays to the same bits as eager launches
 *   - work on the comm stream joins the capture through events, both when
 *     the caller joins it back and when graph_end has to
 *   - a capture that fails (a host synchronisation, a workspace that would
 *     have to grow) makes graph_end return an error, after which eager
 *     launches still work; after the eager run the same capture succeeds
 *   - a graph captured before a workspace grew refuses to launch
 *   - event ids are range-checked
 * Exit 77 when no CUDA device is present. */
#include "tests/gpu/gpu_test.h"

static const char *PROG = "test_gpu_graph";

static int same_bits(tpd_backend *be, const void *a, const void *b, size_t n_bytes) {
  unsigned char *ha = gt_malloc(n_bytes), *hb = gt_malloc(n_bytes);
  GT_TRY(be->ops->download(be, ha, a, n_bytes));
  GT_TRY(be->ops->download(be, hb, b, n_bytes));
  const int same = memcmp(ha, hb, n_bytes) == 0;
  free(ha), free(hb);
  return same;
}

/* x += y; rmsnorm(x += d) -> h; out = h W^T */
static void step_ops(tpd_backend *be, void *x, const void *y, const void *d, const float *w, void *h,
                     const tpd_weight *wt, void *out, int T, int D) {
  GT_TRY(be->ops->add(be, x, y, (size_t)T * D));
  tpd_rmsnorm_args n = {T, D, x, d, w, 1e-5f, h};
  GT_TRY(be->ops->rmsnorm(be, &n));
  tpd_matmul_args m = {T, h, D, wt, NULL, out, wt->n_rows, TPD_BF16};
  GT_TRY(be->ops->matmul(be, &m));
}

static void test_replay(tpd_backend *be) {
  const int T = 2, D = 1024, N = 512;
  const size_t n = (size_t)T * D;
  float *x = gt_malloc(n * 4), *y = gt_malloc(n * 4), *d = gt_malloc(n * 4), *w = gt_malloc((size_t)D * 4);
  float *wm = gt_malloc((size_t)N * D * 4);
  gt_fill(x, n, 1.0f), gt_fill(y, n, 0.1f), gt_fill(d, n, 0.1f), gt_fill(w, (size_t)D, 1.0f);
  gt_fill(wm, (size_t)N * D, 0.03f);
  uint16_t *hw = gt_to_bf16(wm, (size_t)N * D);
  tpd_weight wt;
  GT_TRY(be->ops->load_weight(be, hw, TPD_BF16, N, D, &wt));
  void *xa = gt_dev_from(be, x, n, TPD_BF16), *xb = gt_dev_from(be, x, n, TPD_BF16);
  void *dy = gt_dev_from(be, y, n, TPD_BF16), *dd = gt_dev_from(be, d, n, TPD_BF16);
  float *dw = (float *)gt_dev_from(be, w, (size_t)D, TPD_F32);
  void *ha = gt_dev_poison(be, n * 2), *hb = gt_dev_poison(be, n * 2);
  void *oa = gt_dev_poison(be, (size_t)T * N * 2), *ob = gt_dev_poison(be, (size_t)T * N * 2);

  void *graph = NULL;
  GT_TRY(be->ops->graph_begin(be));
  step_ops(be, xa, dy, dd, dw, ha, &wt, oa, T, D);
  GT_TRY(be->ops->graph_end(be, &graph));
  for (int i = 0; i < 3; i++) GT_TRY(be->ops->graph_launch(be, graph));
  for (int i = 0; i < 3; i++) step_ops(be, xb, dy, dd, dw, hb, &wt, ob, T, D);
  GT_TRY(be->ops->synchronize(be));
  gt_expect(same_bits(be, xa, xb, n * 2) && same_bits(be, ha, hb, n * 2) && same_bits(be, oa, ob, (size_t)T * N * 2),
            "graph of add + rmsnorm + matmul, replayed 3 times == 3 eager runs (bitwise)");
  be->ops->graph_destroy(be, graph);

  /* the comm stream: compute -> event -> comm copy -> event -> compute */
  cudaStream_t comm = (cudaStream_t)be->ops->comm_stream(be);
  void *za = gt_dev_poison(be, n * 2), *zb = gt_dev_poison(be, n * 2);
  for (int join = 1; join >= 0; join--) {
    GT_TRY(be->ops->graph_begin(be));
    GT_TRY(be->ops->add(be, xa, dy, n));
    GT_TRY(be->ops->event_record(be, 3, 0));
    GT_TRY(be->ops->event_wait(be, 3, 1));
    GT_CUDA(cudaMemcpyAsync(za, xa, n * 2, cudaMemcpyDeviceToDevice, comm));
    if (join) {
      GT_TRY(be->ops->event_record(be, 63, 1));
      GT_TRY(be->ops->event_wait(be, 63, 0));
    }
    GT_TRY(be->ops->graph_end(be, &graph));
    GT_TRY(be->ops->graph_launch(be, graph));
    GT_TRY(be->ops->synchronize(be));
    GT_TRY(be->ops->add(be, xb, dy, n));
    GT_TRY(be->ops->synchronize(be)); /* the legacy-stream copy below does not wait for the backend's stream */
    GT_CUDA(cudaMemcpy(zb, xb, n * 2, cudaMemcpyDeviceToDevice));
    GT_CUDA(cudaDeviceSynchronize());
    gt_expect(same_bits(be, za, zb, n * 2) && same_bits(be, xa, xb, n * 2),
              join ? "graph with comm-stream work joined by the caller" : "graph with comm-stream work joined by graph_end");
    be->ops->graph_destroy(be, graph);
  }

  /* a failed capture: a host synchronisation inside it */
  GT_TRY(be->ops->graph_begin(be));
  GT_TRY(be->ops->add(be, xa, dy, n));
  const tpd_status s_sync = be->ops->synchronize(be);
  tpd_clear_error();
  const tpd_status s_end = be->ops->graph_end(be, &graph);
  printf("     failed capture reports: %s\n", tpd_last_error());
  gt_expect(s_sync != TPD_OK && s_end == TPD_ERR_DEVICE && graph == NULL && strstr(tpd_last_error(), "capture"),
            "synchronize inside a capture fails and graph_end says the capture failed");
  tpd_clear_error();
  GT_TRY(be->ops->synchronize(be));
  GT_CUDA(cudaMemcpy(xb, xa, n * 2, cudaMemcpyDeviceToDevice));
  GT_CUDA(cudaDeviceSynchronize());
  GT_TRY(be->ops->add(be, xa, dy, n));
  GT_TRY(be->ops->synchronize(be));
  float *fa = gt_host_from(be, xa, n, TPD_BF16), *fb = gt_host_from(be, xb, n, TPD_BF16), *fy = gt_host_from(be, dy, n, TPD_BF16);
  int bad = 0;
  for (size_t i = 0; i < n; i++)
    if (fa[i] != tpd_bf16_to_f32(tpd_f32_to_bf16(fb[i] + fy[i]))) bad++;
  gt_expect(bad == 0, "eager launches work after a failed capture");
  free(fa), free(fb), free(fy);

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
  tpd_backend_opts o = {0, -1, 0};
  tpd_backend *be = NULL;
  GT_TRY(tpd_backend_create("cuda", &o, &be));
  const int F = 1000, K = 256, M_small = 20, M_big = 600;
  float *x = gt_malloc((size_t)M_big * K * 4), *w = gt_malloc((size_t)2 * F * K * 4);
  gt_fill(x, (size_t)M_big * K, 1.0f), gt_fill(w, (size_t)2 * F * K, 0.1f);
  uint16_t *hw = gt_to_bf16(w, (size_t)2 * F * K);
  tpd_weight wt;
  GT_TRY(be->ops->load_weight(be, hw, TPD_BF16, 2 * F, K, &wt));
  void *dx = gt_dev_from(be, x, (size_t)M_big * K, TPD_BF16);
  void *oa = gt_dev_poison(be, (size_t)M_big * F * 2), *ob = gt_dev_poison(be, (size_t)M_big * F * 2);
  tpd_matmul_args a = {M_small, dx, K, &wt, NULL, NULL, 0, TPD_BF16};

  void *graph = NULL;
  setenv("TPD_CUDA_CAPTURE_MODE", "global", 1);
  GT_TRY(be->ops->graph_begin(be));
  unsetenv("TPD_CUDA_CAPTURE_MODE");
  const tpd_status s_op = be->ops->matmul_swiglu(be, &a, oa, F);
  printf("     op needing a new workspace inside a global-mode capture: %s\n", tpd_last_error());
  tpd_clear_error();
  const tpd_status s_end = be->ops->graph_end(be, &graph);
  printf("     and graph_end: %s\n", tpd_last_error());
  gt_expect(s_op == TPD_ERR_DEVICE && s_end == TPD_ERR_DEVICE && graph == NULL,
            "a workspace that would grow inside a global-mode capture fails the op and the capture");
  tpd_clear_error();
  GT_TRY(be->ops->graph_begin(be)); /* relaxed (default): the scratch is allocated inside the capture */
  GT_TRY(be->ops->matmul_swiglu(be, &a, oa, F));
  GT_TRY(be->ops->graph_end(be, &graph));
  GT_TRY(be->ops->graph_launch(be, graph));
  GT_TRY(be->ops->matmul_swiglu(be, &a, ob, F));
  GT_TRY(be->ops->synchronize(be));
  gt_expect(same_bits(be, oa, ob, (size_t)M_small * F * 2),
            "a workspace grows inside a relaxed capture; the graph replays == eager (bitwise)");
  a.M = M_big; /* more rows: the scratch grows again */
  GT_TRY(be->ops->matmul_swiglu(be, &a, ob, F));
  GT_TRY(be->ops->synchronize(be));
  GT_CUDA(cudaMemset(oa, 0xFF, (size_t)M_big * F * 2));
  GT_CUDA(cudaDeviceSynchronize());
  GT_TRY(be->ops->graph_launch(be, graph));
  a.M = M_small;
  GT_TRY(be->ops->matmul_swiglu(be, &a, ob, F));
  GT_TRY(be->ops->synchronize(be));
  gt_expect(same_bits(be, oa, ob, (size_t)M_small * F * 2),
            "a graph captured before its workspace grew still replays correctly");
  be->ops->graph_destroy(be, graph);
  graph = NULL;

  /* attention over a split context: eager, then captured and replayed */
  const int Hq = 8, Hkv = 2, Dh = 128, bs = 16, max_blocks = 64;
  const int ldq = (Hq + 2 * Hkv) * Dh;
  const size_t nc = (size_t)max_blocks * Hkv * bs * Dh;
  int32_t pos[1] = {900}, slot[1] = {0}, table[64];
  for (int i = 0; i < 64; i++) table[i] = 63 - i;
  float *kc = gt_malloc(nc * 4), *q = gt_malloc((size_t)ldq * 4);
  gt_fill(kc, nc, 1.0f), gt_fill(q, (size_t)ldq, 1.0f);
  void *dk = gt_dev_from(be, kc, nc, TPD_BF16), *dq = gt_dev_from(be, q, (size_t)ldq, TPD_BF16);
  void *aa = gt_dev_poison(be, (size_t)Hq * Dh * 2), *ab = gt_dev_poison(be, (size_t)Hq * Dh * 2);
  int32_t *dpos, *dslot, *dtab;
  GT_TRY(be->ops->alloc(be, sizeof pos, (void **)&dpos));
  GT_TRY(be->ops->alloc(be, sizeof slot, (void **)&dslot));
  GT_TRY(be->ops->alloc(be, sizeof table, (void **)&dtab));
  GT_TRY(be->ops->upload(be, dpos, pos, sizeof pos));
  GT_TRY(be->ops->upload(be, dslot, slot, sizeof slot));
  GT_TRY(be->ops->upload(be, dtab, table, sizeof table));
  tpd_step_meta m = {1, dpos, dslot, dtab, max_blocks, bs, max_blocks * bs};
  tpd_attention_args at = {&m, Hq, Hkv, Dh, dq, ldq, dk, dk, ab, 0, 0.088f};
  GT_TRY(be->ops->attention(be, &at));
  at.out = aa;
  GT_TRY(be->ops->graph_begin(be));
  GT_TRY(be->ops->attention(be, &at));
  GT_TRY(be->ops->graph_end(be, &graph));
  GT_TRY(be->ops->graph_launch(be, graph));
  GT_TRY(be->ops->synchronize(be));
  gt_expect(same_bits(be, aa, ab, (size_t)Hq * Dh * 2), "attention (split context) captured == eager (bitwise)");
  be->ops->graph_destroy(be, graph);

  gt_expect(be->ops->event_record(be, 64, 0) == TPD_ERR_ARG && be->ops->event_wait(be, -1, 1) == TPD_ERR_ARG,
            "event ids outside [0, 64) are refused");
  tpd_clear_error();
  be->ops->free(be, (void *)wt.data);
  void *bufs[] = {dx, oa, ob, dk, dq, aa, ab, dpos, dslot, dtab};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->ops->free(be, bufs[i]);
  tpd_backend_destroy(be);
  free(x), free(w), free(hw), free(kc), free(q);
}

int main(void) {
  gt_require_gpu(PROG);
  gt_seed();
  tpd_backend_opts o = {0, -1, 0};
  tpd_backend *be = NULL;
  GT_TRY(tpd_backend_create("cuda", &o, &be));
  test_replay(be);
  tpd_backend_destroy(be);
  test_workspace();
  return gt_finish(PROG);
}
