/* test_gpu_ops, the dense and row-wise ops against the CPU twin: matmul,
 * the fused gate/up + SwiGLU, rmsnorm with the residual add, SwiGLU, row
 * gather, argmax (the plan of the checks: test_gpu_ops.c). */
#include "tests/gpu/test_gpu_ops.h"

/* ------------------------------------------------------------------ */
/* matmul                                                              */

/* N x K random weights of scale a on the host, in w_dt (bf16-exact values
 * for a bf16 weight, full f32 values otherwise) */
static void *host_weight(tpd_dtype w_dt, int N, int K, float a) {
  float *w = tu_malloc(sizeof(float) * (size_t)N * K);
  for (size_t i = 0; i < (size_t)N * K; i++) w[i] = w_dt == TPD_BF16 ? tu_bf16_uniform(a) : raw_uniform(a);
  void *hw = tu_malloc((size_t)N * K * tpd_dtype_size(w_dt));
  tpd_convert(hw, w_dt, w, TPD_F32, (size_t)N * K);
  free(w);
  return hw;
}

/* N random f32 biases, or NULL when !use */
static float *random_bias(int N, int use) {
  if (!use) return NULL;
  float *bias = tu_malloc(sizeof(float) * (size_t)N);
  for (int i = 0; i < N; i++) bias[i] = raw_uniform(0.5f);
  return bias;
}

/* Counts a failure when any padding column (cols .. ld - 1) of the M rows of
 * y was written: it was poisoned (NaN) before the op ran. */
static void check_padding(const float *y, int M, int cols, int ld, const char *name) {
  size_t touched = 0;
  for (int m = 0; m < M; m++)
    for (int n = cols; n < ld; n++)
      if (!isnan(y[(size_t)m * ld + n])) touched++;
  if (!tu_count(touched == 0)) printf("FAIL     %zu padding elements of %s were written\n", touched, name);
}

static void test_matmul(tpd_backend *cpu, tpd_backend *gpu, const char *path, int M, int N, int K, int ldx, int ldy,
                        int use_bias, tpd_dtype y_dt, tpd_dtype w_dt) {
  const tpd_dtype act = gpu->ops->act_dtype;
  float *x = tu_malloc(sizeof(float) * (size_t)M * ldx);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < ldx; k++) x[(size_t)m * ldx + k] = k < K ? act_uniform(gpu, 1.0f) : NAN; /* pads unread */
  void *hw = host_weight(w_dt, N, K, 1.0f / sqrtf((float)K));
  float *bias = random_bias(N, use_bias);
  /* reference */
  tpd_weight wc, wg;
  TU_TRY(cpu->ops->load_weight(cpu, hw, w_dt, N, K, &wc));
  float *yc = tu_malloc(sizeof(float) * (size_t)M * N);
  tpd_matmul_args ac = {M, x, ldx, &wc, bias, yc, N, TPD_F32};
  TU_TRY(cpu->ops->matmul(cpu, &ac));
  /* CUDA */
  TU_TRY(gpu->ops->load_weight(gpu, hw, w_dt, N, K, &wg));
  void *dx = tu_dev_from(gpu, x, (size_t)M * ldx, act);
  float *dbias = bias ? (float *)tu_dev_from(gpu, bias, (size_t)N, TPD_F32) : NULL;
  void *dy = tu_dev_poison(gpu, (size_t)M * ldy * tpd_dtype_size(y_dt));
  tpd_matmul_args ag = {M, dx, ldx, &wg, dbias, dy, ldy, y_dt};
  TU_TRY(gpu->ops->matmul(gpu, &ag));
  float *yg = tu_host_from(gpu, dy, (size_t)M * ldy, y_dt);
  char what[200];
  snprintf(what, sizeof what, "%s matmul %-8s M=%-3d N=%-5d K=%-5d ldx=%-5d ldy=%-5d %s %s w=%s(%s)", act_name(gpu),
           path, M, N, K, ldx, ldy, bias ? "bias" : "    ", tpd_dtype_name(y_dt), tpd_dtype_name(w_dt),
           tpd_dtype_name(wg.dtype));
  /* f32 activations with a bf16 y: the output rounding alone is ~2^-9 */
  tu_report(what, tu_compare(yg, ldy, yc, N, M, N), y_dt == TPD_BF16 ? TOL_BF16 : tol_of(gpu));
  check_padding(yg, M, N, ldy, "y");
  cpu->ops->free(cpu, (void *)wc.data);
  gpu->ops->free(gpu, (void *)wg.data);
  gpu->ops->free(gpu, dx);
  gpu->ops->free(gpu, dbias);
  gpu->ops->free(gpu, dy);
  free(x), free(hw), free(bias), free(yc), free(yg);
}

static void test_matmul_swiglu(tpd_backend *cpu, tpd_backend *gpu, const char *path, int M, int F, int K, int ld_out,
                               int use_bias, tpd_dtype w_dt) {
  const tpd_dtype act = gpu->ops->act_dtype;
  const int N = 2 * F;
  float *x = tu_malloc(sizeof(float) * (size_t)M * K);
  act_fill(gpu, x, (size_t)M * K, 1.0f);
  void *hw = host_weight(w_dt, N, K, 2.0f / sqrtf((float)K));
  float *bias = random_bias(N, use_bias);
  tpd_weight wc, wg;
  TU_TRY(cpu->ops->load_weight(cpu, hw, w_dt, N, K, &wc));
  float *gu = tu_malloc(sizeof(float) * (size_t)M * N), *ref = tu_malloc(sizeof(float) * (size_t)M * F);
  tpd_matmul_args ac = {M, x, K, &wc, bias, gu, N, TPD_F32};
  TU_TRY(cpu->ops->matmul(cpu, &ac));
  tpd_swiglu_args sc = {M, F, gu, ref};
  TU_TRY(cpu->ops->swiglu(cpu, &sc));

  TU_TRY(gpu->ops->load_weight(gpu, hw, w_dt, N, K, &wg));
  void *dx = tu_dev_from(gpu, x, (size_t)M * K, act);
  float *dbias = bias ? (float *)tu_dev_from(gpu, bias, (size_t)N, TPD_F32) : NULL;
  void *dout = tu_dev_poison(gpu, (size_t)M * ld_out * tpd_dtype_size(act));
  tpd_matmul_args ag = {M, dx, K, &wg, dbias, NULL, 0, act};
  TU_TRY(gpu->ops->matmul_swiglu(gpu, &ag, dout, ld_out));
  float *out = tu_host_from(gpu, dout, (size_t)M * ld_out, act);
  char what[200];
  snprintf(what, sizeof what, "%s matmul_swiglu %-8s M=%-3d F=%-5d K=%-5d ld_out=%-5d %s w=%s", act_name(gpu), path, M,
           F, K, ld_out, bias ? "bias" : "", tpd_dtype_name(w_dt));
  tu_report(what, tu_compare(out, ld_out, ref, F, M, F), tol_of(gpu));
  check_padding(out, M, F, ld_out, "out");
  cpu->ops->free(cpu, (void *)wc.data);
  gpu->ops->free(gpu, (void *)wg.data);
  gpu->ops->free(gpu, dx);
  gpu->ops->free(gpu, dbias);
  gpu->ops->free(gpu, dout);
  free(x), free(hw), free(bias), free(gu), free(ref), free(out);
}

/* ------------------------------------------------------------------ */
/* rmsnorm (+ residual add), swiglu, gather, argmax                    */

static void test_rmsnorm(tpd_backend *cpu, tpd_backend *gpu, int T, int D, int with_delta) {
  const tpd_dtype act = gpu->ops->act_dtype;
  const size_t n = (size_t)T * D;
  float *x = tu_malloc(n * 4), *d = tu_malloc(n * 4), *w = tu_malloc((size_t)D * 4), *y = tu_malloc(n * 4);
  act_fill(gpu, x, n, 2.0f);
  act_fill(gpu, d, n, 1.0f);
  for (int i = 0; i < D; i++) w[i] = 1.0f + raw_uniform(0.5f);
  void *dx = tu_dev_from(gpu, x, n, act), *dd = tu_dev_from(gpu, d, n, act);
  float *dw = (float *)tu_dev_from(gpu, w, (size_t)D, TPD_F32);
  void *dy = tu_dev_poison(gpu, n * tpd_dtype_size(act));
  tpd_rmsnorm_args ac = {T, D, x, with_delta ? d : NULL, w, 1e-5f, y};
  TU_TRY(cpu->ops->rmsnorm(cpu, &ac));
  tpd_rmsnorm_args ag = {T, D, dx, with_delta ? dd : NULL, dw, 1e-5f, dy};
  TU_TRY(gpu->ops->rmsnorm(gpu, &ag));
  float *yg = tu_host_from(gpu, dy, n, act), *xg = tu_host_from(gpu, dx, n, act);
  char what[160];
  snprintf(what, sizeof what, "%s rmsnorm T=%d D=%d%s: y", act_name(gpu), T, D, with_delta ? " + residual add" : "");
  tu_report(what, tu_compare(yg, D, y, D, T, D), tol_of(gpu));
  snprintf(what, sizeof what, "%s rmsnorm T=%d D=%d%s: x", act_name(gpu), T, D, with_delta ? " + residual add" : "");
  tu_report(what, tu_compare(xg, D, x, D, T, D), tol_of(gpu));
  gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dd), gpu->ops->free(gpu, dw), gpu->ops->free(gpu, dy);
  free(x), free(d), free(w), free(y), free(yg), free(xg);
}

static void test_swiglu(tpd_backend *cpu, tpd_backend *gpu, int T, int F) {
  const tpd_dtype act = gpu->ops->act_dtype;
  const size_t n = (size_t)T * F;
  float *gu = tu_malloc(2 * n * 4), *ref = tu_malloc(n * 4);
  act_fill(gpu, gu, 2 * n, 4.0f);
  tpd_swiglu_args ac = {T, F, gu, ref};
  TU_TRY(cpu->ops->swiglu(cpu, &ac));
  void *dgu = tu_dev_from(gpu, gu, 2 * n, act), *dout = tu_dev_poison(gpu, n * tpd_dtype_size(act));
  tpd_swiglu_args ag = {T, F, dgu, dout};
  TU_TRY(gpu->ops->swiglu(gpu, &ag));
  float *out = tu_host_from(gpu, dout, n, act);
  char what[160];
  snprintf(what, sizeof what, "%s swiglu T=%d F=%d", act_name(gpu), T, F);
  tu_report(what, tu_compare(out, F, ref, F, T, F), tol_of(gpu));
  gpu->ops->free(gpu, dgu), gpu->ops->free(gpu, dout);
  free(gu), free(ref), free(out);
}

static void test_gather(tpd_backend *cpu, tpd_backend *gpu, int n_src, int n, int D) {
  const tpd_dtype act = gpu->ops->act_dtype;
  float *src = tu_malloc((size_t)n_src * D * 4), *ref = tu_malloc((size_t)n * D * 4);
  int32_t *rows = tu_malloc(sizeof(int32_t) * (size_t)n);
  act_fill(gpu, src, (size_t)n_src * D, 1.0f);
  for (int i = 0; i < n; i++) rows[i] = tu_int(0, n_src - 1);
  TU_TRY(cpu->ops->gather_rows(cpu, ref, src, rows, n, D));
  void *dsrc = tu_dev_from(gpu, src, (size_t)n_src * D, act);
  void *ddst = tu_dev_poison(gpu, (size_t)n * D * tpd_dtype_size(act));
  TU_TRY(gpu->ops->gather_rows(gpu, ddst, dsrc, rows, n, D));
  float *out = tu_host_from(gpu, ddst, (size_t)n * D, act);
  char what[160];
  snprintf(what, sizeof what, "%s gather_rows n=%d of %d, D=%d (exact)", act_name(gpu), n, n_src, D);
  tu_report(what, tu_compare(out, D, ref, D, n, D), 0.0);
  gpu->ops->free(gpu, dsrc), gpu->ops->free(gpu, ddst);
  free(src), free(ref), free(rows), free(out);
}

static void test_argmax(tpd_backend *cpu, tpd_backend *gpu, int M, int N) {
  float *l = tu_malloc(sizeof(float) * (size_t)M * N);
  for (size_t i = 0; i < (size_t)M * N; i++) l[i] = raw_uniform(10.0f);
  /* row 0: a tie at two places (the first must win), row 1: NaNs, row 2: all -inf */
  if (M > 0 && N > 10) {
    l[N / 3] = 50.0f;
    l[N - 2] = 50.0f;
  }
  if (M > 1 && N > 10)
    for (int k = 0; k < N; k += 7) l[(size_t)N + k] = NAN;
  if (M > 2)
    for (int k = 0; k < N; k++) l[2 * (size_t)N + k] = -INFINITY;
  float *vc = tu_malloc(sizeof(float) * (size_t)M), *vg = tu_malloc(sizeof(float) * (size_t)M);
  int32_t *ic = tu_malloc(sizeof(int32_t) * (size_t)M), *ig = tu_malloc(sizeof(int32_t) * (size_t)M);
  tpd_argmax_args ac = {M, N, l, vc, ic, 500};
  TU_TRY(cpu->ops->argmax(cpu, &ac));
  float *dl = (float *)tu_dev_from(gpu, l, (size_t)M * N, TPD_F32);
  float *dv = (float *)tu_dev_poison(gpu, sizeof(float) * (size_t)M);
  int32_t *di = (int32_t *)tu_dev_poison(gpu, sizeof(int32_t) * (size_t)M);
  tpd_argmax_args ag = {M, N, dl, dv, di, 500};
  TU_TRY(gpu->ops->argmax(gpu, &ag));
  TU_TRY(gpu->ops->download(gpu, vg, dv, sizeof(float) * (size_t)M));
  TU_TRY(gpu->ops->download(gpu, ig, di, sizeof(int32_t) * (size_t)M));
  int bad = 0;
  for (int m = 0; m < M; m++)
    if (ic[m] != ig[m] || !(vc[m] == vg[m])) {
      printf("     row %d: cpu (%g, %d), cuda (%g, %d)\n", m, vc[m], ic[m], vg[m], ig[m]);
      bad++;
    }
  char what[160];
  snprintf(what, sizeof what, "%s argmax M=%d N=%d (ties, NaN, all -inf rows)", act_name(gpu), M, N);
  tu_expect(bad == 0, what);
  gpu->ops->free(gpu, dl), gpu->ops->free(gpu, dv), gpu->ops->free(gpu, di);
  free(l), free(vc), free(vg), free(ic), free(ig);
}


/* ------------------------------------------------------------------ */

void run_dense_ops(tpd_backend *cpu, tpd_backend *gpu, tpd_backend *gpu16, tpd_backend *gpu_lt, int full) {
  /* matmul: decode GEMV shapes (tails, strides, split-K), then larger M */
  struct { int M, N, K, ldx_pad, ldy_pad, bias, f32; } mm[] = {
      {1, 257, 1000, 0, 0, 1, 0},  {1, 4096, 4096, 0, 0, 0, 0}, {2, 129, 67, 5, 3, 1, 0}, {3, 1000, 520, 0, 1, 0, 1},
      {4, 64, 4096, 0, 0, 1, 0},   {5, 300, 2048, 8, 0, 0, 1},  {8, 1024, 1536, 0, 0, 1, 0}, {8, 50, 9000, 3, 0, 1, 1},
      {12, 777, 384, 0, 2, 1, 0},  {16, 2048, 1024, 0, 0, 0, 1}, {33, 200, 136, 0, 0, 1, 0}, {40, 1000, 999, 1, 0, 1, 1},
      {64, 512, 1024, 0, 0, 1, 0}, {100, 4097, 64, 0, 5, 0, 1},
  };
  const int f32 = gpu->ops->act_dtype == TPD_F32;
  for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) {
    if (!full && i % 3 != 0 && i != 7 && i != 11) continue;
    const int M = mm[i].M, N = mm[i].N, K = mm[i].K, ldx = K + mm[i].ldx_pad, ldy = N + mm[i].ldy_pad;
    /* f32 activations: the matmul outputs are f32 activations or logits */
    const tpd_dtype yt = mm[i].f32 || f32 ? TPD_F32 : TPD_BF16;
    test_matmul(cpu, gpu, "default", M, N, K, ldx, ldy, mm[i].bias, yt, TPD_BF16);
    if (M <= 16) test_matmul(cpu, gpu16, "gemv", M, N, K, ldx, ldy, mm[i].bias, yt, TPD_BF16);
    test_matmul(cpu, gpu_lt, "cublaslt", M, N, K, ldx, ldy, mm[i].bias, yt, TPD_BF16);
  }
  test_matmul(cpu, gpu, "default", 3, 300, 200, 200, 300, 1, f32 ? TPD_F32 : TPD_BF16, TPD_F32);
  test_matmul(cpu, gpu, "default", 2, 301, 203, 203, 301, 0, TPD_F32, TPD_F16);
  test_matmul(cpu, gpu_lt, "cublaslt", 30, 301, 203, 203, 301, 1, TPD_F32, TPD_F16);
  if (f32) { /* f32 weights in every path; and a bf16 y from f32 activations */
    test_matmul(cpu, gpu16, "gemv", 13, 517, 1030, 1030, 517, 1, TPD_F32, TPD_F32);
    test_matmul(cpu, gpu_lt, "cublaslt", 20, 257, 300, 301, 260, 1, TPD_F32, TPD_F32);
    test_matmul(cpu, gpu, "default", 2, 300, 512, 512, 300, 0, TPD_BF16, TPD_BF16);
  }

  /* fused gate/up + SwiGLU */
  struct { int M, F, K, pad, bias; } sw[] = {{1, 700, 1000, 0, 1}, {1, 1376, 4096, 0, 0}, {3, 96, 4096, 3, 1},
                                             {8, 1000, 520, 0, 0},  {13, 300, 77, 1, 1},  {40, 688, 256, 8, 1}};
  for (size_t i = 0; i < sizeof sw / sizeof sw[0]; i++) {
    if (!full && i % 2) continue;
    test_matmul_swiglu(cpu, gpu, "default", sw[i].M, sw[i].F, sw[i].K, sw[i].F + sw[i].pad, sw[i].bias, TPD_BF16);
    if (sw[i].M <= 16)
      test_matmul_swiglu(cpu, gpu16, "gemv", sw[i].M, sw[i].F, sw[i].K, sw[i].F + sw[i].pad, sw[i].bias, TPD_BF16);
    test_matmul_swiglu(cpu, gpu_lt, "cublaslt", sw[i].M, sw[i].F, sw[i].K, sw[i].F + sw[i].pad, sw[i].bias, TPD_BF16);
  }
  if (f32) {
    test_matmul_swiglu(cpu, gpu16, "gemv", 3, 200, 999, 200, 1, TPD_F32);
    test_matmul_swiglu(cpu, gpu_lt, "cublaslt", 24, 130, 260, 131, 0, TPD_F32);
  }

  test_rmsnorm(cpu, gpu, 3, 4096, 1);
  test_rmsnorm(cpu, gpu, 2, 4096, 0);
  test_rmsnorm(cpu, gpu, 5, 1001, 1);
  test_rmsnorm(cpu, gpu, 1, 72, 1);
  test_swiglu(cpu, gpu, 3, 1000);
  test_swiglu(cpu, gpu, 2, 999);
  test_rmsnorm(cpu, gpu, 1, 4099, 1); /* an odd length: the element path of the residual add */
  test_gather(cpu, gpu, 10, 4, 1000);
  test_gather(cpu, gpu, 9, 70, 999);
  if (full) {
    test_argmax(cpu, gpu, 3, 128257);
    test_argmax(cpu, gpu, 4, 1000);
  }
}
