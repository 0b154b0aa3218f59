/* Every CUDA op against its CPU twin (kernels/cpu), on fresh random inputs
 * (bf16-exact values, never zeros), with the GPU output poisoned (0xFF bytes,
 * NaN) before each run so that unwritten elements show, padding columns
 * checked to stay untouched, and the normalised error ||out - ref|| / ||ref||
 * held to bf16 bounds.  Shapes have tails (odd N, K not a multiple of 8 or
 * 32), strides wider than the rows, decode (T = 1 per sequence) and prefill
 * (T > 1), GQA groups 1, 2, 4 and 8, sliding windows, several KV blocks per
 * sequence.  The matmuls run three ways: default crossover, GEMV up to 16
 * rows (TPD_GEMV_MAX_M=16) and cuBLASLt for every M (TPD_GEMV_MAX_M=0).
 * Exit 77 when no CUDA device is present. */
#include "tests/gpu/gpu_test.h"

static const char *PROG = "test_gpu_ops";
static const double TOL = 1e-2;

/* ------------------------------------------------------------------ */
/* matmul                                                              */

static float raw_uniform(float a) { /* not rounded to bf16: F32 weights */
  const double u = (double)(gt_next() >> 11) * (1.0 / 9007199254740992.0);
  const float v = (float)((2.0 * u - 1.0) * a);
  return v != 0.0f ? v : a * 0.5f;
}

static void test_matmul(tpd_backend *cpu, tpd_backend *gpu, const char *path, int M, int N, int K, int ldx, int ldy,
                        int use_bias, tpd_dtype y_dt, tpd_dtype w_dt) {
  float *x = gt_malloc(sizeof(float) * (size_t)M * ldx);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < ldx; k++) x[(size_t)m * ldx + k] = k < K ? gt_uniform(1.0f) : NAN; /* pads must not be read */
  float *w = gt_malloc(sizeof(float) * (size_t)N * K);
  const float ws = 1.0f / sqrtf((float)K);
  for (size_t i = 0; i < (size_t)N * K; i++) w[i] = w_dt == TPD_BF16 ? gt_uniform(ws) : raw_uniform(ws);
  void *hw = gt_malloc((size_t)N * K * tpd_dtype_size(w_dt));
  tpd_convert(hw, w_dt, w, TPD_F32, (size_t)N * K);
  float *bias = NULL;
  if (use_bias) {
    bias = gt_malloc(sizeof(float) * (size_t)N);
    gt_fill(bias, (size_t)N, 0.5f);
  }
  /* reference */
  tpd_weight wc, wg;
  GT_TRY(cpu->ops->load_weight(cpu, hw, w_dt, N, K, &wc));
  float *yc = gt_malloc(sizeof(float) * (size_t)M * N);
  tpd_matmul_args ac = {M, x, ldx, &wc, bias, yc, N, TPD_F32};
  GT_TRY(cpu->ops->matmul(cpu, &ac));
  /* CUDA */
  GT_TRY(gpu->ops->load_weight(gpu, hw, w_dt, N, K, &wg));
  void *dx = gt_dev_from(gpu, x, (size_t)M * ldx, TPD_BF16);
  float *dbias = bias ? (float *)gt_dev_from(gpu, bias, (size_t)N, TPD_F32) : NULL;
  void *dy = gt_dev_poison(gpu, (size_t)M * ldy * tpd_dtype_size(y_dt));
  tpd_matmul_args ag = {M, dx, ldx, &wg, dbias, dy, ldy, y_dt};
  GT_TRY(gpu->ops->matmul(gpu, &ag));
  float *yg = gt_host_from(gpu, dy, (size_t)M * ldy, y_dt);
  size_t touched = 0;
  for (int m = 0; m < M; m++)
    for (int n = N; n < ldy; n++)
      if (!isnan(yg[(size_t)m * ldy + n])) touched++;
  char what[200];
  snprintf(what, sizeof what, "matmul %-8s M=%-3d N=%-5d K=%-5d ldx=%-5d ldy=%-5d %s %s w=%s", path, M, N, K, ldx, ldy,
           bias ? "bias" : "    ", tpd_dtype_name(y_dt), tpd_dtype_name(w_dt));
  gt_report(what, gt_compare(yg, ldy, yc, N, M, N), TOL);
  if (touched) {
    printf("FAIL     %zu padding elements of y were written\n", touched);
    gt_failures++;
  }
  cpu->ops->free(cpu, (void *)wc.data);
  gpu->ops->free(gpu, (void *)wg.data);
  gpu->ops->free(gpu, dx);
  gpu->ops->free(gpu, dbias);
  gpu->ops->free(gpu, dy);
  free(x), free(w), free(hw), free(bias), free(yc), free(yg);
}

static void test_matmul_swiglu(tpd_backend *cpu, tpd_backend *gpu, const char *path, int M, int F, int K, int ld_out,
                               int use_bias) {
  const int N = 2 * F;
  float *x = gt_malloc(sizeof(float) * (size_t)M * K), *w = gt_malloc(sizeof(float) * (size_t)N * K);
  gt_fill(x, (size_t)M * K, 1.0f);
  gt_fill(w, (size_t)N * K, 2.0f / sqrtf((float)K));
  uint16_t *hw = gt_to_bf16(w, (size_t)N * K);
  float *bias = NULL;
  if (use_bias) {
    bias = gt_malloc(sizeof(float) * (size_t)N);
    gt_fill(bias, (size_t)N, 0.5f);
  }
  tpd_weight wc, wg;
  GT_TRY(cpu->ops->load_weight(cpu, hw, TPD_BF16, N, K, &wc));
  float *gu = gt_malloc(sizeof(float) * (size_t)M * N), *ref = gt_malloc(sizeof(float) * (size_t)M * F);
  tpd_matmul_args ac = {M, x, K, &wc, bias, gu, N, TPD_F32};
  GT_TRY(cpu->ops->matmul(cpu, &ac));
  tpd_swiglu_args sc = {M, F, gu, ref};
  GT_TRY(cpu->ops->swiglu(cpu, &sc));

  GT_TRY(gpu->ops->load_weight(gpu, hw, TPD_BF16, N, K, &wg));
  void *dx = gt_dev_from(gpu, x, (size_t)M * K, TPD_BF16);
  float *dbias = bias ? (float *)gt_dev_from(gpu, bias, (size_t)N, TPD_F32) : NULL;
  void *dout = gt_dev_poison(gpu, (size_t)M * ld_out * 2);
  tpd_matmul_args ag = {M, dx, K, &wg, dbias, NULL, 0, TPD_BF16};
  GT_TRY(gpu->ops->matmul_swiglu(gpu, &ag, dout, ld_out));
  float *out = gt_host_from(gpu, dout, (size_t)M * ld_out, TPD_BF16);
  size_t touched = 0;
  for (int m = 0; m < M; m++)
    for (int n = F; n < ld_out; n++)
      if (!isnan(out[(size_t)m * ld_out + n])) touched++;
  char what[200];
  snprintf(what, sizeof what, "matmul_swiglu %-8s M=%-3d F=%-5d K=%-5d ld_out=%-5d %s", path, M, F, K, ld_out,
           bias ? "bias" : "");
  gt_report(what, gt_compare(out, ld_out, ref, F, M, F), TOL);
  if (touched) {
    printf("FAIL     %zu padding elements of out were written\n", touched);
    gt_failures++;
  }
  cpu->ops->free(cpu, (void *)wc.data);
  gpu->ops->free(gpu, (void *)wg.data);
  gpu->ops->free(gpu, dx);
  gpu->ops->free(gpu, dbias);
  gpu->ops->free(gpu, dout);
  free(x), free(w), free(hw), free(bias), free(gu), free(ref), free(out);
}

/* ------------------------------------------------------------------ */
/* rmsnorm, swiglu, add, gather, argmax                                */

static void test_rmsnorm(tpd_backend *cpu, tpd_backend *gpu, int T, int D, int with_delta) {
  const size_t n = (size_t)T * D;
  float *x = gt_malloc(n * 4), *d = gt_malloc(n * 4), *w = gt_malloc((size_t)D * 4), *y = gt_malloc(n * 4);
  gt_fill(x, n, 2.0f);
  gt_fill(d, n, 1.0f);
  for (int i = 0; i < D; i++) w[i] = 1.0f + raw_uniform(0.5f);
  void *dx = gt_dev_from(gpu, x, n, TPD_BF16), *dd = gt_dev_from(gpu, d, n, TPD_BF16);
  float *dw = (float *)gt_dev_from(gpu, w, (size_t)D, TPD_F32);
  void *dy = gt_dev_poison(gpu, n * 2);
  tpd_rmsnorm_args ac = {T, D, x, with_delta ? d : NULL, w, 1e-5f, y};
  GT_TRY(cpu->ops->rmsnorm(cpu, &ac));
  tpd_rmsnorm_args ag = {T, D, dx, with_delta ? dd : NULL, dw, 1e-5f, dy};
  GT_TRY(gpu->ops->rmsnorm(gpu, &ag));
  float *yg = gt_host_from(gpu, dy, n, TPD_BF16), *xg = gt_host_from(gpu, dx, n, TPD_BF16);
  char what[160];
  snprintf(what, sizeof what, "rmsnorm T=%d D=%d%s: y", T, D, with_delta ? " + residual add" : "");
  gt_report(what, gt_compare(yg, D, y, D, T, D), TOL);
  snprintf(what, sizeof what, "rmsnorm T=%d D=%d%s: x", T, D, with_delta ? " + residual add" : "");
  gt_report(what, gt_compare(xg, D, x, D, T, D), TOL);
  gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dd), gpu->ops->free(gpu, dw), gpu->ops->free(gpu, dy);
  free(x), free(d), free(w), free(y), free(yg), free(xg);
}

static void test_swiglu(tpd_backend *cpu, tpd_backend *gpu, int T, int F) {
  const size_t n = (size_t)T * F;
  float *gu = gt_malloc(2 * n * 4), *ref = gt_malloc(n * 4);
  gt_fill(gu, 2 * n, 4.0f);
  tpd_swiglu_args ac = {T, F, gu, ref};
  GT_TRY(cpu->ops->swiglu(cpu, &ac));
  void *dgu = gt_dev_from(gpu, gu, 2 * n, TPD_BF16), *dout = gt_dev_poison(gpu, n * 2);
  tpd_swiglu_args ag = {T, F, dgu, dout};
  GT_TRY(gpu->ops->swiglu(gpu, &ag));
  float *out = gt_host_from(gpu, dout, n, TPD_BF16);
  char what[160];
  snprintf(what, sizeof what, "swiglu T=%d F=%d", T, F);
  gt_report(what, gt_compare(out, F, ref, F, T, F), TOL);
  gpu->ops->free(gpu, dgu), gpu->ops->free(gpu, dout);
  free(gu), free(ref), free(out);
}

static void test_add(tpd_backend *cpu, tpd_backend *gpu, size_t n, size_t offset) {
  float *x = gt_malloc((n + offset) * 4), *y = gt_malloc((n + offset) * 4);
  gt_fill(x, n + offset, 3.0f);
  gt_fill(y, n + offset, 3.0f);
  void *dx = gt_dev_from(gpu, x, n + offset, TPD_BF16), *dy = gt_dev_from(gpu, y, n + offset, TPD_BF16);
  GT_TRY(cpu->ops->add(cpu, x + offset, y + offset, n));
  GT_TRY(gpu->ops->add(gpu, (uint16_t *)dx + offset, (const uint16_t *)dy + offset, n));
  float *xg = gt_host_from(gpu, dx, n + offset, TPD_BF16);
  char what[160];
  snprintf(what, sizeof what, "add n=%zu offset=%zu", n, offset);
  gt_report(what, gt_compare(xg, (int)(n + offset), x, (int)(n + offset), 1, (int)(n + offset)), TOL);
  gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy);
  free(x), free(y), free(xg);
}

static void test_gather(tpd_backend *cpu, tpd_backend *gpu, int n_src, int n, int D) {
  float *src = gt_malloc((size_t)n_src * D * 4), *ref = gt_malloc((size_t)n * D * 4);
  int32_t *rows = gt_malloc(sizeof(int32_t) * (size_t)n);
  gt_fill(src, (size_t)n_src * D, 1.0f);
  for (int i = 0; i < n; i++) rows[i] = gt_randint(n_src);
  GT_TRY(cpu->ops->gather_rows(cpu, ref, src, rows, n, D));
  void *dsrc = gt_dev_from(gpu, src, (size_t)n_src * D, TPD_BF16), *ddst = gt_dev_poison(gpu, (size_t)n * D * 2);
  GT_TRY(gpu->ops->gather_rows(gpu, ddst, dsrc, rows, n, D));
  float *out = gt_host_from(gpu, ddst, (size_t)n * D, TPD_BF16);
  char what[160];
  snprintf(what, sizeof what, "gather_rows n=%d of %d, D=%d", n, n_src, D);
  gt_report(what, gt_compare(out, D, ref, D, n, D), 0.0);
  gpu->ops->free(gpu, dsrc), gpu->ops->free(gpu, ddst);
  free(src), free(ref), free(rows), free(out);
}

static void test_argmax(tpd_backend *cpu, tpd_backend *gpu, int M, int N) {
  float *l = gt_malloc(sizeof(float) * (size_t)M * N);
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
  float *vc = gt_malloc(sizeof(float) * (size_t)M), *vg = gt_malloc(sizeof(float) * (size_t)M);
  int32_t *ic = gt_malloc(sizeof(int32_t) * (size_t)M), *ig = gt_malloc(sizeof(int32_t) * (size_t)M);
  tpd_argmax_args ac = {M, N, l, vc, ic, 500};
  GT_TRY(cpu->ops->argmax(cpu, &ac));
  float *dl = (float *)gt_dev_from(gpu, l, (size_t)M * N, TPD_F32);
  float *dv = (float *)gt_dev_poison(gpu, sizeof(float) * (size_t)M);
  int32_t *di = (int32_t *)gt_dev_poison(gpu, sizeof(int32_t) * (size_t)M);
  tpd_argmax_args ag = {M, N, dl, dv, di, 500};
  GT_TRY(gpu->ops->argmax(gpu, &ag));
  GT_TRY(gpu->ops->download(gpu, vg, dv, sizeof(float) * (size_t)M));
  GT_TRY(gpu->ops->download(gpu, ig, di, sizeof(int32_t) * (size_t)M));
  int bad = 0;
  for (int m = 0; m < M; m++)
    if (ic[m] != ig[m] || !(vc[m] == vg[m])) {
      printf("     row %d: cpu (%g, %d), cuda (%g, %d)\n", m, vc[m], ic[m], vg[m], ig[m]);
      bad++;
    }
  char what[160];
  snprintf(what, sizeof what, "argmax M=%d N=%d (ties, NaN, all -inf rows)", M, N);
  gt_expect(bad == 0, what);
  gpu->ops->free(gpu, dl), gpu->ops->free(gpu, dv), gpu->ops->free(gpu, di);
  free(l), free(vc), free(vg), free(ic), free(ig);
}

/* ------------------------------------------------------------------ */
/* rope + KV append, attention                                         */

typedef struct {
  int n_slots, max_blocks, block_size, n_blocks;
  int32_t *table; /* [n_slots, max_blocks]: a random permutation of the blocks */
} kv_layout;

static kv_layout make_layout(int n_slots, int max_ctx, int block_size) {
  kv_layout k;
  k.n_slots = n_slots;
  k.block_size = block_size;
  k.max_blocks = (max_ctx + block_size - 1) / block_size;
  k.n_blocks = n_slots * k.max_blocks;
  k.table = gt_malloc(sizeof(int32_t) * (size_t)k.n_blocks);
  for (int i = 0; i < k.n_blocks; i++) k.table[i] = i;
  for (int i = k.n_blocks - 1; i > 0; i--) {
    const int j = gt_randint(i + 1);
    const int32_t t = k.table[i];
    k.table[i] = k.table[j];
    k.table[j] = t;
  }
  return k;
}

static int32_t *dev_ints(tpd_backend *gpu, const int32_t *h, size_t n) {
  void *d = NULL;
  GT_TRY(gpu->ops->alloc(gpu, n * sizeof(int32_t), &d));
  GT_TRY(gpu->ops->upload(gpu, d, h, n * sizeof(int32_t)));
  return (int32_t *)d;
}

static size_t cache_index(const kv_layout *k, int Hkv, int Dh, int slot, int pos, int h) {
  const int blk = k->table[(size_t)slot * k->max_blocks + pos / k->block_size];
  return (((size_t)blk * Hkv + h) * k->block_size + pos % k->block_size) * Dh;
}

static void test_rope(tpd_backend *cpu, tpd_backend *gpu, int Hq, int Hkv, int Dh, int bs, int T, const int32_t *pos,
                      const int32_t *slot) {
  int max_ctx = 0;
  for (int t = 0; t < T; t++)
    if (pos[t] + 1 > max_ctx) max_ctx = pos[t] + 1;
  kv_layout k = make_layout(4, max_ctx, bs);
  const int W = (Hq + 2 * Hkv) * Dh;
  const size_t nq = (size_t)T * W, nc = (size_t)k.n_blocks * Hkv * bs * Dh;
  float *qkv = gt_malloc(nq * 4), *kc = gt_malloc(nc * 4), *vc = gt_malloc(nc * 4);
  gt_fill(qkv, nq, 2.0f);
  gt_fill(kc, nc, 1.0f);
  gt_fill(vc, nc, 1.0f);
  for (int t = 0; t < T; t++) /* the rows rope_kv must write start as NaN */
    for (int h = 0; h < Hkv; h++)
      for (int i = 0; i < Dh; i++) {
        const size_t at = cache_index(&k, Hkv, Dh, slot[t], pos[t], h) + i;
        kc[at] = vc[at] = NAN;
      }
  double inv_freq[TPD_MAX_HEAD_DIM / 2];
  for (int i = 0; i < Dh / 2; i++) inv_freq[i] = pow(500000.0, -2.0 * i / Dh);
  void *dqkv = gt_dev_from(gpu, qkv, nq, TPD_BF16), *dkc = gt_dev_from(gpu, kc, nc, TPD_BF16),
       *dvc = gt_dev_from(gpu, vc, nc, TPD_BF16);
  double *dinv = NULL;
  GT_TRY(gpu->ops->alloc(gpu, sizeof(double) * (size_t)(Dh / 2), (void **)&dinv));
  GT_TRY(gpu->ops->upload(gpu, dinv, inv_freq, sizeof(double) * (size_t)(Dh / 2)));
  int32_t *dpos = dev_ints(gpu, pos, (size_t)T), *dslot = dev_ints(gpu, slot, (size_t)T),
          *dtab = dev_ints(gpu, k.table, (size_t)k.n_blocks);
  tpd_step_meta mc = {T, pos, slot, k.table, k.max_blocks, bs, max_ctx};
  tpd_rope_kv_args ac = {&mc, Hq, Hkv, Dh, qkv, inv_freq, kc, vc};
  GT_TRY(cpu->ops->rope_kv(cpu, &ac));
  tpd_step_meta mg = {T, dpos, dslot, dtab, k.max_blocks, bs, max_ctx};
  tpd_rope_kv_args ag = {&mg, Hq, Hkv, Dh, dqkv, dinv, dkc, dvc};
  GT_TRY(gpu->ops->rope_kv(gpu, &ag));
  float *qg = gt_host_from(gpu, dqkv, nq, TPD_BF16), *kg = gt_host_from(gpu, dkc, nc, TPD_BF16),
        *vg = gt_host_from(gpu, dvc, nc, TPD_BF16);
  char what[160];
  snprintf(what, sizeof what, "rope_kv Hq=%d Hkv=%d Dh=%d T=%d: qkv", Hq, Hkv, Dh, T);
  gt_report(what, gt_compare(qg, W, qkv, W, T, W), TOL);
  snprintf(what, sizeof what, "rope_kv Hq=%d Hkv=%d Dh=%d T=%d: k cache", Hq, Hkv, Dh, T);
  gt_report(what, gt_compare(kg, (int)nc, kc, (int)nc, 1, (int)nc), TOL);
  snprintf(what, sizeof what, "rope_kv Hq=%d Hkv=%d Dh=%d T=%d: v cache", Hq, Hkv, Dh, T);
  gt_report(what, gt_compare(vg, (int)nc, vc, (int)nc, 1, (int)nc), TOL);
  gpu->ops->free(gpu, dqkv), gpu->ops->free(gpu, dkc), gpu->ops->free(gpu, dvc), gpu->ops->free(gpu, dinv);
  gpu->ops->free(gpu, dpos), gpu->ops->free(gpu, dslot), gpu->ops->free(gpu, dtab);
  free(qkv), free(kc), free(vc), free(qg), free(kg), free(vg), free(k.table);
}

static void test_attention(tpd_backend *cpu, tpd_backend *gpu, const char *label, int Hq, int Hkv, int Dh, int bs,
                           int window, int T, const int32_t *pos, const int32_t *slot) {
  int max_ctx = 0;
  for (int t = 0; t < T; t++)
    if (pos[t] + 1 > max_ctx) max_ctx = pos[t] + 1;
  kv_layout k = make_layout(4, max_ctx, bs);
  const int ldq = (Hq + 2 * Hkv) * Dh, O = Hq * Dh;
  const size_t nq = (size_t)T * ldq, nc = (size_t)k.n_blocks * Hkv * bs * Dh;
  float *q = gt_malloc(nq * 4), *kc = gt_malloc(nc * 4), *vc = gt_malloc(nc * 4), *ref = gt_malloc((size_t)T * O * 4);
  gt_fill(q, nq, 1.0f);
  gt_fill(kc, nc, 1.0f);
  gt_fill(vc, nc, 1.0f);
  void *dq = gt_dev_from(gpu, q, nq, TPD_BF16), *dkc = gt_dev_from(gpu, kc, nc, TPD_BF16),
       *dvc = gt_dev_from(gpu, vc, nc, TPD_BF16), *dout = gt_dev_poison(gpu, (size_t)T * O * 2);
  int32_t *dpos = dev_ints(gpu, pos, (size_t)T), *dslot = dev_ints(gpu, slot, (size_t)T),
          *dtab = dev_ints(gpu, k.table, (size_t)k.n_blocks);
  const float scale = (float)(1.0 / sqrt((double)Dh));
  tpd_step_meta mc = {T, pos, slot, k.table, k.max_blocks, bs, max_ctx};
  tpd_attention_args ac = {&mc, Hq, Hkv, Dh, q, ldq, kc, vc, ref, window, scale};
  GT_TRY(cpu->ops->attention(cpu, &ac));
  tpd_step_meta mg = {T, dpos, dslot, dtab, k.max_blocks, bs, max_ctx};
  tpd_attention_args ag = {&mg, Hq, Hkv, Dh, dq, ldq, dkc, dvc, dout, window, scale};
  GT_TRY(gpu->ops->attention(gpu, &ag));
  float *out = gt_host_from(gpu, dout, (size_t)T * O, TPD_BF16);
  char what[200];
  snprintf(what, sizeof what, "attention %s Hq=%d Hkv=%d Dh=%d bs=%d win=%d T=%d ctx=%d", label, Hq, Hkv, Dh, bs, window,
           T, max_ctx);
  gt_report(what, gt_compare(out, O, ref, O, T, O), TOL);
  gpu->ops->free(gpu, dq), gpu->ops->free(gpu, dkc), gpu->ops->free(gpu, dvc), gpu->ops->free(gpu, dout);
  gpu->ops->free(gpu, dpos), gpu->ops->free(gpu, dslot), gpu->ops->free(gpu, dtab);
  free(q), free(kc), free(vc), free(ref), free(out), free(k.table);
}

/* one sequence's prompt: positions p0 .. p0 + n - 1 in slot s */
static int add_run(int32_t *pos, int32_t *slot, int T, int p0, int n, int s) {
  for (int i = 0; i < n; i++) {
    pos[T + i] = p0 + i;
    slot[T + i] = s;
  }
  return T + n;
}

/* ------------------------------------------------------------------ */

static tpd_backend *make_gpu(const char *gemv_max_m) {
  if (gemv_max_m) setenv("TPD_GEMV_MAX_M", gemv_max_m, 1);
  else unsetenv("TPD_GEMV_MAX_M");
  tpd_backend_opts o = {0, -1, 0};
  tpd_backend *be = NULL;
  GT_TRY(tpd_backend_create("cuda", &o, &be));
  unsetenv("TPD_GEMV_MAX_M");
  return be;
}

static void test_memory(tpd_backend *gpu) {
  const size_t n = 10007;
  unsigned char *h = gt_malloc(n), *back = gt_malloc(n);
  for (size_t i = 0; i < n; i++) h[i] = (unsigned char)(gt_next() | 1);
  void *d = gt_dev_poison(gpu, n);
  GT_TRY(gpu->ops->upload(gpu, d, h, n));
  GT_TRY(gpu->ops->download(gpu, back, d, n));
  gt_expect(memcmp(h, back, n) == 0, "upload / download round trip");
  GT_TRY(gpu->ops->zero(gpu, (char *)d + 13, n - 20));
  GT_TRY(gpu->ops->download(gpu, back, d, n));
  int ok = memcmp(back, h, 13) == 0 && memcmp(back + n - 7, h + n - 7, 7) == 0;
  for (size_t i = 13; i < n - 7; i++) ok &= back[i] == 0;
  gt_expect(ok, "zero of an unaligned range");
  gpu->ops->free(gpu, d);
  free(h), free(back);
}

int main(void) {
  gt_require_gpu(PROG);
  gt_seed();
  tpd_backend_opts co = {2, -1, 0};
  tpd_backend *cpu = NULL;
  GT_TRY(tpd_backend_cpu_create(&co, &cpu));
  tpd_backend *gpu = make_gpu(NULL), *gpu16 = make_gpu("16"), *gpu_lt = make_gpu("0");
  gt_expect(!strcmp(gpu->ops->name, "cuda") && gpu->ops->act_dtype == TPD_BF16 && gpu->ops->kv_dtype == TPD_BF16 &&
                !gpu->ops->host_memory && gpu->ops->stream(gpu) && gpu->ops->comm_stream &&
                gpu->ops->matmul_swiglu && gpu->ops->graph_begin,
            "ops table: cuda, bf16 activations and KV, device memory, every optional op");
  test_memory(gpu);

  /* matmul: decode GEMV shapes (tails, strides, split-K), then larger M */
  struct { int M, N, K, ldx_pad, ldy_pad, bias, f32; } mm[] = {
      {1, 257, 1000, 0, 0, 1, 0},  {1, 4096, 4096, 0, 0, 0, 0}, {2, 129, 67, 5, 3, 1, 0}, {3, 1000, 520, 0, 1, 0, 1},
      {4, 64, 4096, 0, 0, 1, 0},   {5, 300, 2048, 8, 0, 0, 1},  {8, 1024, 1536, 0, 0, 1, 0}, {8, 50, 9000, 3, 0, 1, 1},
      {12, 777, 384, 0, 2, 1, 0},  {16, 2048, 1024, 0, 0, 0, 1}, {33, 200, 136, 0, 0, 1, 0}, {40, 1000, 999, 1, 0, 1, 1},
      {64, 512, 1024, 0, 0, 1, 0}, {100, 4097, 64, 0, 5, 0, 1},
  };
  for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) {
    const int M = mm[i].M, N = mm[i].N, K = mm[i].K, ldx = K + mm[i].ldx_pad, ldy = N + mm[i].ldy_pad;
    const tpd_dtype yt = mm[i].f32 ? TPD_F32 : TPD_BF16;
    test_matmul(cpu, gpu, "default", M, N, K, ldx, ldy, mm[i].bias, yt, TPD_BF16);
    if (M <= 16) test_matmul(cpu, gpu16, "gemv", M, N, K, ldx, ldy, mm[i].bias, yt, TPD_BF16);
    test_matmul(cpu, gpu_lt, "cublaslt", M, N, K, ldx, ldy, mm[i].bias, yt, TPD_BF16);
  }
  test_matmul(cpu, gpu, "default", 3, 300, 200, 200, 300, 1, TPD_BF16, TPD_F32);
  test_matmul(cpu, gpu, "default", 2, 301, 203, 203, 301, 0, TPD_F32, TPD_F16);
  test_matmul(cpu, gpu_lt, "cublaslt", 30, 301, 203, 203, 301, 1, TPD_F32, TPD_F16);

  /* fused gate/up + SwiGLU */
  struct { int M, F, K, pad, bias; } sw[] = {{1, 700, 1000, 0, 1}, {1, 1376, 4096, 0, 0}, {3, 96, 4096, 3, 1},
                                             {8, 1000, 520, 0, 0},  {13, 300, 77, 1, 1},  {40, 688, 256, 8, 1}};
  for (size_t i = 0; i < sizeof sw / sizeof sw[0]; i++) {
    test_matmul_swiglu(cpu, gpu, "default", sw[i].M, sw[i].F, sw[i].K, sw[i].F + sw[i].pad, sw[i].bias);
    if (sw[i].M <= 16) test_matmul_swiglu(cpu, gpu16, "gemv", sw[i].M, sw[i].F, sw[i].K, sw[i].F + sw[i].pad, sw[i].bias);
    test_matmul_swiglu(cpu, gpu_lt, "cublaslt", sw[i].M, sw[i].F, sw[i].K, sw[i].F + sw[i].pad, sw[i].bias);
  }

  test_rmsnorm(cpu, gpu, 3, 4096, 1);
  test_rmsnorm(cpu, gpu, 2, 4096, 0);
  test_rmsnorm(cpu, gpu, 5, 1001, 1);
  test_rmsnorm(cpu, gpu, 1, 72, 1);
  test_swiglu(cpu, gpu, 3, 1000);
  test_swiglu(cpu, gpu, 2, 999);
  test_add(cpu, gpu, 4099, 0);
  test_add(cpu, gpu, 1001, 1);
  test_gather(cpu, gpu, 10, 4, 1000);
  test_gather(cpu, gpu, 9, 70, 999);
  test_argmax(cpu, gpu, 3, 128257);
  test_argmax(cpu, gpu, 4, 1000);

  int32_t pos[64], slot[64];
  int T;
  /* rope + KV append: decode tokens of several sequences, then a prefill run */
  T = 0;
  T = add_run(pos, slot, T, 0, 3, 1);
  T = add_run(pos, slot, T, 37, 1, 0);
  T = add_run(pos, slot, T, 130, 1, 3);
  test_rope(cpu, gpu, 8, 2, 128, 16, T, pos, slot);
  test_rope(cpu, gpu, 4, 4, 64, 8, T, pos, slot);
  test_rope(cpu, gpu, 6, 2, 80, 16, T, pos, slot);

  /* attention */
  T = 0;
  T = add_run(pos, slot, T, 5, 1, 0);
  T = add_run(pos, slot, T, 300, 1, 1);
  T = add_run(pos, slot, T, 1000, 1, 2);
  test_attention(cpu, gpu, "decode ", 8, 2, 128, 16, 0, T, pos, slot);
  test_attention(cpu, gpu, "decode ", 8, 2, 128, 16, 100, T, pos, slot);
  test_attention(cpu, gpu, "decode ", 16, 2, 256, 16, 0, T, pos, slot);
  test_attention(cpu, gpu, "decode ", 2, 1, 512, 32, 0, T, pos, slot);
  T = 0;
  T = add_run(pos, slot, T, 100, 20, 1);
  T = add_run(pos, slot, T, 7, 1, 3);
  test_attention(cpu, gpu, "prefill", 4, 4, 64, 16, 0, T, pos, slot);
  test_attention(cpu, gpu, "prefill", 4, 4, 64, 16, 50, T, pos, slot);
  test_attention(cpu, gpu, "prefill", 8, 2, 128, 16, 1, T, pos, slot);
  T = 0;
  T = add_run(pos, slot, T, 0, 4, 0); /* short context: one split */
  test_attention(cpu, gpu, "prefill", 8, 2, 128, 16, 0, T, pos, slot);
  T = 0;
  T = add_run(pos, slot, T, 63, 1, 0);
  T = add_run(pos, slot, T, 190, 10, 2);
  test_attention(cpu, gpu, "mixed  ", 6, 3, 80, 8, 0, T, pos, slot);
  test_attention(cpu, gpu, "mixed  ", 32, 8, 64, 16, 24, T, pos, slot);

  tpd_backend_destroy(gpu_lt);
  tpd_backend_destroy(gpu16);
  tpd_backend_destroy(gpu);
  tpd_backend_destroy(cpu);
  return gt_finish(PROG);
}
