/* Every CUDA op against its CPU twin (kernels/cpu), on fresh random inputs
 * (never zeros), with the GPU output poisoned (0xFF bytes, NaN) before each
 * run so that unwritten elements show, padding columns checked to stay
 * untouched, and the normalised error ||out - ref|| / ||ref|| held to the
 * bound of the activation dtype:
 *   bf16 activations (the default): inputs are bf16-exact, TOL_BF16 = 1e-2
 *   f32 activations (activations "f32"): inputs are NOT bf16-exact, so any
 *     kernel that rounded an activation to bf16 would show at ~2^-9; the
 *     bound TOL_F32 is fp32 summation-order noise (see below).
 * Shapes have tails (odd N, K not a multiple of 8 or 32), strides wider than
 * the rows, decode (T = 1 per sequence) and prefill (T > 1), GQA groups 1, 2,
 * 4 and 8, sliding windows, several KV blocks per sequence.  The matmuls run
 * three ways: default crossover, GEMV up to 16 rows (TPD_GEMV_MAX_M=16) and
 * cuBLASLt for every M (TPD_GEMV_MAX_M=0).
 *
 * Also: the attention split plan (attention_split.h) -- a context of 2000
 * live positions at max_ctx 131072 must not be walked by one block per KV
 * head -- and attention at (max_ctx, live length) pairs around the split
 * size, graph replays of one attention capture at growing live lengths, the
 * activations option of backend creation, and TPD_CUDA_SYNC=1 naming the
 * kernel that faulted.  Exit 77 when no CUDA device is present. */
#include "kernels/cuda/attention_split.h"
#include "tests/gpu/gpu_test.h"

static const char *PROG = "test_gpu_ops";
static const double TOL_BF16 = 1e-2;
/* f32 vs the f32 CPU twin: the two sum in different orders; each sum's
 * rounding error is ~2^-24 sqrt(K) relative (K <= 9000 here: ~6e-6), and
 * the rest (rsqrt, expf, double-rounded rope) is ~1e-7. */
static const double TOL_F32 = 2e-5;

static double tol_of(const tpd_backend *gpu) { return gpu->ops->act_dtype == TPD_F32 ? TOL_F32 : TOL_BF16; }
static const char *act_name(const tpd_backend *gpu) { return gpu->ops->act_dtype == TPD_F32 ? "f32 " : "bf16"; }

/* ------------------------------------------------------------------ */
/* inputs                                                              */

static float raw_uniform(float a) { /* not rounded to bf16 */
  const double u = (double)(gt_next() >> 11) * (1.0 / 9007199254740992.0);
  const float v = (float)((2.0 * u - 1.0) * a);
  return v != 0.0f ? v : a * 0.5f;
}

/* An activation value for this backend: bf16-exact for bf16 activations, a
 * full f32 value for f32 activations. */
static float act_uniform(const tpd_backend *gpu, float a) {
  return gpu->ops->act_dtype == TPD_F32 ? raw_uniform(a) : gt_uniform(a);
}

static void act_fill(const tpd_backend *gpu, float *x, size_t n, float a) {
  for (size_t i = 0; i < n; i++) x[i] = act_uniform(gpu, a);
}

/* ------------------------------------------------------------------ */
/* matmul                                                              */

static void test_matmul(tpd_backend *cpu, tpd_backend *gpu, const char *path, int M, int N, int K, int ldx, int ldy,
                        int use_bias, tpd_dtype y_dt, tpd_dtype w_dt) {
  const tpd_dtype act = gpu->ops->act_dtype;
  float *x = gt_malloc(sizeof(float) * (size_t)M * ldx);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < ldx; k++) x[(size_t)m * ldx + k] = k < K ? act_uniform(gpu, 1.0f) : NAN; /* pads unread */
  float *w = gt_malloc(sizeof(float) * (size_t)N * K);
  const float ws = 1.0f / sqrtf((float)K);
  for (size_t i = 0; i < (size_t)N * K; i++) w[i] = w_dt == TPD_BF16 ? gt_uniform(ws) : raw_uniform(ws);
  void *hw = gt_malloc((size_t)N * K * tpd_dtype_size(w_dt));
  tpd_convert(hw, w_dt, w, TPD_F32, (size_t)N * K);
  float *bias = NULL;
  if (use_bias) {
    bias = gt_malloc(sizeof(float) * (size_t)N);
    for (int i = 0; i < N; i++) bias[i] = raw_uniform(0.5f);
  }
  /* reference */
  tpd_weight wc, wg;
  GT_TRY(cpu->ops->load_weight(cpu, hw, w_dt, N, K, &wc));
  float *yc = gt_malloc(sizeof(float) * (size_t)M * N);
  tpd_matmul_args ac = {M, x, ldx, &wc, bias, yc, N, TPD_F32};
  GT_TRY(cpu->ops->matmul(cpu, &ac));
  /* CUDA */
  GT_TRY(gpu->ops->load_weight(gpu, hw, w_dt, N, K, &wg));
  void *dx = gt_dev_from(gpu, x, (size_t)M * ldx, act);
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
  snprintf(what, sizeof what, "%s matmul %-8s M=%-3d N=%-5d K=%-5d ldx=%-5d ldy=%-5d %s %s w=%s(%s)", act_name(gpu),
           path, M, N, K, ldx, ldy, bias ? "bias" : "    ", tpd_dtype_name(y_dt), tpd_dtype_name(w_dt),
           tpd_dtype_name(wg.dtype));
  /* f32 activations with a bf16 y: the output rounding alone is ~2^-9 */
  gt_report(what, gt_compare(yg, ldy, yc, N, M, N), y_dt == TPD_BF16 ? TOL_BF16 : tol_of(gpu));
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
                               int use_bias, tpd_dtype w_dt) {
  const tpd_dtype act = gpu->ops->act_dtype;
  const int N = 2 * F;
  float *x = gt_malloc(sizeof(float) * (size_t)M * K), *w = gt_malloc(sizeof(float) * (size_t)N * K);
  act_fill(gpu, x, (size_t)M * K, 1.0f);
  for (size_t i = 0; i < (size_t)N * K; i++)
    w[i] = w_dt == TPD_BF16 ? gt_uniform(2.0f / sqrtf((float)K)) : raw_uniform(2.0f / sqrtf((float)K));
  void *hw = gt_malloc((size_t)N * K * tpd_dtype_size(w_dt));
  tpd_convert(hw, w_dt, w, TPD_F32, (size_t)N * K);
  float *bias = NULL;
  if (use_bias) {
    bias = gt_malloc(sizeof(float) * (size_t)N);
    for (int i = 0; i < N; i++) bias[i] = raw_uniform(0.5f);
  }
  tpd_weight wc, wg;
  GT_TRY(cpu->ops->load_weight(cpu, hw, w_dt, N, K, &wc));
  float *gu = gt_malloc(sizeof(float) * (size_t)M * N), *ref = gt_malloc(sizeof(float) * (size_t)M * F);
  tpd_matmul_args ac = {M, x, K, &wc, bias, gu, N, TPD_F32};
  GT_TRY(cpu->ops->matmul(cpu, &ac));
  tpd_swiglu_args sc = {M, F, gu, ref};
  GT_TRY(cpu->ops->swiglu(cpu, &sc));

  GT_TRY(gpu->ops->load_weight(gpu, hw, w_dt, N, K, &wg));
  void *dx = gt_dev_from(gpu, x, (size_t)M * K, act);
  float *dbias = bias ? (float *)gt_dev_from(gpu, bias, (size_t)N, TPD_F32) : NULL;
  void *dout = gt_dev_poison(gpu, (size_t)M * ld_out * tpd_dtype_size(act));
  tpd_matmul_args ag = {M, dx, K, &wg, dbias, NULL, 0, act};
  GT_TRY(gpu->ops->matmul_swiglu(gpu, &ag, dout, ld_out));
  float *out = gt_host_from(gpu, dout, (size_t)M * ld_out, act);
  size_t touched = 0;
  for (int m = 0; m < M; m++)
    for (int n = F; n < ld_out; n++)
      if (!isnan(out[(size_t)m * ld_out + n])) touched++;
  char what[200];
  snprintf(what, sizeof what, "%s matmul_swiglu %-8s M=%-3d F=%-5d K=%-5d ld_out=%-5d %s w=%s", act_name(gpu), path, M,
           F, K, ld_out, bias ? "bias" : "", tpd_dtype_name(w_dt));
  gt_report(what, gt_compare(out, ld_out, ref, F, M, F), tol_of(gpu));
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
  const tpd_dtype act = gpu->ops->act_dtype;
  const size_t n = (size_t)T * D;
  float *x = gt_malloc(n * 4), *d = gt_malloc(n * 4), *w = gt_malloc((size_t)D * 4), *y = gt_malloc(n * 4);
  act_fill(gpu, x, n, 2.0f);
  act_fill(gpu, d, n, 1.0f);
  for (int i = 0; i < D; i++) w[i] = 1.0f + raw_uniform(0.5f);
  void *dx = gt_dev_from(gpu, x, n, act), *dd = gt_dev_from(gpu, d, n, act);
  float *dw = (float *)gt_dev_from(gpu, w, (size_t)D, TPD_F32);
  void *dy = gt_dev_poison(gpu, n * tpd_dtype_size(act));
  tpd_rmsnorm_args ac = {T, D, x, with_delta ? d : NULL, w, 1e-5f, y};
  GT_TRY(cpu->ops->rmsnorm(cpu, &ac));
  tpd_rmsnorm_args ag = {T, D, dx, with_delta ? dd : NULL, dw, 1e-5f, dy};
  GT_TRY(gpu->ops->rmsnorm(gpu, &ag));
  float *yg = gt_host_from(gpu, dy, n, act), *xg = gt_host_from(gpu, dx, n, act);
  char what[160];
  snprintf(what, sizeof what, "%s rmsnorm T=%d D=%d%s: y", act_name(gpu), T, D, with_delta ? " + residual add" : "");
  gt_report(what, gt_compare(yg, D, y, D, T, D), tol_of(gpu));
  snprintf(what, sizeof what, "%s rmsnorm T=%d D=%d%s: x", act_name(gpu), T, D, with_delta ? " + residual add" : "");
  gt_report(what, gt_compare(xg, D, x, D, T, D), tol_of(gpu));
  gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dd), gpu->ops->free(gpu, dw), gpu->ops->free(gpu, dy);
  free(x), free(d), free(w), free(y), free(yg), free(xg);
}

static void test_swiglu(tpd_backend *cpu, tpd_backend *gpu, int T, int F) {
  const tpd_dtype act = gpu->ops->act_dtype;
  const size_t n = (size_t)T * F;
  float *gu = gt_malloc(2 * n * 4), *ref = gt_malloc(n * 4);
  act_fill(gpu, gu, 2 * n, 4.0f);
  tpd_swiglu_args ac = {T, F, gu, ref};
  GT_TRY(cpu->ops->swiglu(cpu, &ac));
  void *dgu = gt_dev_from(gpu, gu, 2 * n, act), *dout = gt_dev_poison(gpu, n * tpd_dtype_size(act));
  tpd_swiglu_args ag = {T, F, dgu, dout};
  GT_TRY(gpu->ops->swiglu(gpu, &ag));
  float *out = gt_host_from(gpu, dout, n, act);
  char what[160];
  snprintf(what, sizeof what, "%s swiglu T=%d F=%d", act_name(gpu), T, F);
  gt_report(what, gt_compare(out, F, ref, F, T, F), tol_of(gpu));
  gpu->ops->free(gpu, dgu), gpu->ops->free(gpu, dout);
  free(gu), free(ref), free(out);
}

static void test_add(tpd_backend *cpu, tpd_backend *gpu, size_t n, size_t offset) {
  const tpd_dtype act = gpu->ops->act_dtype;
  const size_t esz = tpd_dtype_size(act);
  float *x = gt_malloc((n + offset) * 4), *y = gt_malloc((n + offset) * 4);
  act_fill(gpu, x, n + offset, 3.0f);
  act_fill(gpu, y, n + offset, 3.0f);
  void *dx = gt_dev_from(gpu, x, n + offset, act), *dy = gt_dev_from(gpu, y, n + offset, act);
  GT_TRY(cpu->ops->add(cpu, x + offset, y + offset, n));
  GT_TRY(gpu->ops->add(gpu, (char *)dx + offset * esz, (const char *)dy + offset * esz, n));
  float *xg = gt_host_from(gpu, dx, n + offset, act);
  char what[160];
  snprintf(what, sizeof what, "%s add n=%zu offset=%zu", act_name(gpu), n, offset);
  gt_report(what, gt_compare(xg, (int)(n + offset), x, (int)(n + offset), 1, (int)(n + offset)), tol_of(gpu));
  gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy);
  free(x), free(y), free(xg);
}

static void test_gather(tpd_backend *cpu, tpd_backend *gpu, int n_src, int n, int D) {
  const tpd_dtype act = gpu->ops->act_dtype;
  float *src = gt_malloc((size_t)n_src * D * 4), *ref = gt_malloc((size_t)n * D * 4);
  int32_t *rows = gt_malloc(sizeof(int32_t) * (size_t)n);
  act_fill(gpu, src, (size_t)n_src * D, 1.0f);
  for (int i = 0; i < n; i++) rows[i] = gt_randint(n_src);
  GT_TRY(cpu->ops->gather_rows(cpu, ref, src, rows, n, D));
  void *dsrc = gt_dev_from(gpu, src, (size_t)n_src * D, act);
  void *ddst = gt_dev_poison(gpu, (size_t)n * D * tpd_dtype_size(act));
  GT_TRY(gpu->ops->gather_rows(gpu, ddst, dsrc, rows, n, D));
  float *out = gt_host_from(gpu, ddst, (size_t)n * D, act);
  char what[160];
  snprintf(what, sizeof what, "%s gather_rows n=%d of %d, D=%d (exact)", act_name(gpu), n, n_src, D);
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
  snprintf(what, sizeof what, "%s argmax M=%d N=%d (ties, NaN, all -inf rows)", act_name(gpu), M, N);
  gt_expect(bad == 0, what);
  gpu->ops->free(gpu, dl), gpu->ops->free(gpu, dv), gpu->ops->free(gpu, di);
  free(l), free(vc), free(vg), free(ic), free(ig);
}

/* ------------------------------------------------------------------ */
/* rope + KV append, attention                                         */

/* The KV block table of n_slots sequences with room for max_ctx positions,
 * backed by physical blocks only for each slot's live[s] positions (a random
 * permutation of them); every other entry holds POISON_BLOCK, an index far
 * past the pool, so a kernel that reads a position it must not touch
 * faults instead of reading plausible data. */
#define POISON_BLOCK 0x3fffffff
typedef struct {
  int n_slots, max_blocks, block_size, n_blocks;
  int32_t *table; /* [n_slots, max_blocks] */
} kv_layout;

static kv_layout make_layout(int n_slots, int max_ctx, int block_size, const int *live) {
  kv_layout k;
  k.n_slots = n_slots;
  k.block_size = block_size;
  k.max_blocks = (max_ctx + block_size - 1) / block_size;
  k.n_blocks = 0;
  for (int s = 0; s < n_slots; s++) k.n_blocks += (live[s] + block_size - 1) / block_size;
  int32_t *perm = gt_malloc(sizeof(int32_t) * (size_t)(k.n_blocks > 0 ? k.n_blocks : 1));
  for (int i = 0; i < k.n_blocks; i++) perm[i] = i;
  for (int i = k.n_blocks - 1; i > 0; i--) {
    const int j = gt_randint(i + 1);
    const int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  k.table = gt_malloc(sizeof(int32_t) * (size_t)n_slots * k.max_blocks);
  int next = 0;
  for (int s = 0; s < n_slots; s++)
    for (int b = 0; b < k.max_blocks; b++)
      k.table[(size_t)s * k.max_blocks + b] = b < (live[s] + block_size - 1) / block_size ? perm[next++] : POISON_BLOCK;
  free(perm);
  return k;
}

/* live length per slot: 1 + the largest position a token of that slot has */
static void live_of(int T, const int32_t *pos, const int32_t *slot, int n_slots, int *live) {
  for (int s = 0; s < n_slots; s++) live[s] = 0;
  for (int t = 0; t < T; t++)
    if (pos[t] + 1 > live[slot[t]]) live[slot[t]] = pos[t] + 1;
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
  const tpd_dtype act = gpu->ops->act_dtype;
  int max_ctx = 0, live[4];
  for (int t = 0; t < T; t++)
    if (pos[t] + 1 > max_ctx) max_ctx = pos[t] + 1;
  live_of(T, pos, slot, 4, live);
  kv_layout k = make_layout(4, max_ctx, bs, live);
  const int W = (Hq + 2 * Hkv) * Dh;
  const size_t nq = (size_t)T * W, nc = (size_t)k.n_blocks * Hkv * bs * Dh;
  float *qkv = gt_malloc(nq * 4), *kc = gt_malloc(nc * 4), *vc = gt_malloc(nc * 4);
  act_fill(gpu, qkv, nq, 2.0f);
  act_fill(gpu, kc, nc, 1.0f);
  act_fill(gpu, vc, nc, 1.0f);
  for (int t = 0; t < T; t++) /* the rows rope_kv must write start as NaN */
    for (int h = 0; h < Hkv; h++)
      for (int i = 0; i < Dh; i++) {
        const size_t at = cache_index(&k, Hkv, Dh, slot[t], pos[t], h) + i;
        kc[at] = vc[at] = NAN;
      }
  double inv_freq[TPD_MAX_HEAD_DIM / 2];
  for (int i = 0; i < Dh / 2; i++) inv_freq[i] = pow(500000.0, -2.0 * i / Dh);
  void *dqkv = gt_dev_from(gpu, qkv, nq, act), *dkc = gt_dev_from(gpu, kc, nc, act), *dvc = gt_dev_from(gpu, vc, nc, act);
  double *dinv = NULL;
  GT_TRY(gpu->ops->alloc(gpu, sizeof(double) * (size_t)(Dh / 2), (void **)&dinv));
  GT_TRY(gpu->ops->upload(gpu, dinv, inv_freq, sizeof(double) * (size_t)(Dh / 2)));
  int32_t *dpos = dev_ints(gpu, pos, (size_t)T), *dslot = dev_ints(gpu, slot, (size_t)T),
          *dtab = dev_ints(gpu, k.table, (size_t)k.n_slots * k.max_blocks);
  tpd_step_meta mc = {T, pos, slot, k.table, k.max_blocks, bs, max_ctx};
  tpd_rope_kv_args ac = {&mc, Hq, Hkv, Dh, qkv, inv_freq, kc, vc};
  GT_TRY(cpu->ops->rope_kv(cpu, &ac));
  tpd_step_meta mg = {T, dpos, dslot, dtab, k.max_blocks, bs, max_ctx};
  tpd_rope_kv_args ag = {&mg, Hq, Hkv, Dh, dqkv, dinv, dkc, dvc};
  GT_TRY(gpu->ops->rope_kv(gpu, &ag));
  float *qg = gt_host_from(gpu, dqkv, nq, act), *kg = gt_host_from(gpu, dkc, nc, act), *vg = gt_host_from(gpu, dvc, nc, act);
  char what[160];
  snprintf(what, sizeof what, "%s rope_kv Hq=%d Hkv=%d Dh=%d T=%d: qkv", act_name(gpu), Hq, Hkv, Dh, T);
  gt_report(what, gt_compare(qg, W, qkv, W, T, W), tol_of(gpu));
  snprintf(what, sizeof what, "%s rope_kv Hq=%d Hkv=%d Dh=%d T=%d: k cache", act_name(gpu), Hq, Hkv, Dh, T);
  gt_report(what, gt_compare(kg, (int)nc, kc, (int)nc, 1, (int)nc), tol_of(gpu));
  snprintf(what, sizeof what, "%s rope_kv Hq=%d Hkv=%d Dh=%d T=%d: v cache", act_name(gpu), Hq, Hkv, Dh, T);
  gt_report(what, gt_compare(vg, (int)nc, vc, (int)nc, 1, (int)nc), tol_of(gpu));
  gpu->ops->free(gpu, dqkv), gpu->ops->free(gpu, dkc), gpu->ops->free(gpu, dvc), gpu->ops->free(gpu, dinv);
  gpu->ops->free(gpu, dpos), gpu->ops->free(gpu, dslot), gpu->ops->free(gpu, dtab);
  free(qkv), free(kc), free(vc), free(qg), free(kg), free(vg), free(k.table);
}

/* Attention of T tokens (pos, slot) with meta.max_ctx = max_ctx (0: the
 * largest live length, as an eager engine step passes). */
static void test_attention(tpd_backend *cpu, tpd_backend *gpu, const char *label, int Hq, int Hkv, int Dh, int bs,
                           int window, int T, const int32_t *pos, const int32_t *slot, int max_ctx) {
  const tpd_dtype act = gpu->ops->act_dtype;
  int live[4], longest = 0;
  live_of(T, pos, slot, 4, live);
  for (int s = 0; s < 4; s++)
    if (live[s] > longest) longest = live[s];
  if (max_ctx <= 0) max_ctx = longest;
  kv_layout k = make_layout(4, max_ctx, bs, live);
  const int ldq = (Hq + 2 * Hkv) * Dh, O = Hq * Dh;
  const size_t nq = (size_t)T * ldq, nc = (size_t)k.n_blocks * Hkv * bs * Dh;
  float *q = gt_malloc(nq * 4), *kc = gt_malloc(nc * 4), *vc = gt_malloc(nc * 4), *ref = gt_malloc((size_t)T * O * 4);
  act_fill(gpu, q, nq, 1.0f);
  act_fill(gpu, kc, nc, 1.0f);
  act_fill(gpu, vc, nc, 1.0f);
  void *dq = gt_dev_from(gpu, q, nq, act), *dkc = gt_dev_from(gpu, kc, nc, act), *dvc = gt_dev_from(gpu, vc, nc, act);
  void *dout = gt_dev_poison(gpu, (size_t)T * O * tpd_dtype_size(act));
  int32_t *dpos = dev_ints(gpu, pos, (size_t)T), *dslot = dev_ints(gpu, slot, (size_t)T),
          *dtab = dev_ints(gpu, k.table, (size_t)k.n_slots * k.max_blocks);
  const float scale = (float)(1.0 / sqrt((double)Dh));
  tpd_step_meta mc = {T, pos, slot, k.table, k.max_blocks, bs, max_ctx};
  tpd_attention_args ac = {&mc, Hq, Hkv, Dh, q, ldq, kc, vc, ref, window, scale};
  GT_TRY(cpu->ops->attention(cpu, &ac));
  tpd_step_meta mg = {T, dpos, dslot, dtab, k.max_blocks, bs, max_ctx};
  tpd_attention_args ag = {&mg, Hq, Hkv, Dh, dq, ldq, dkc, dvc, dout, window, scale};
  GT_TRY(gpu->ops->attention(gpu, &ag));
  float *out = gt_host_from(gpu, dout, (size_t)T * O, act);
  char what[200];
  snprintf(what, sizeof what, "%s attention %s Hq=%d Hkv=%d Dh=%d bs=%d win=%d T=%d live<=%d max_ctx=%d", act_name(gpu),
           label, Hq, Hkv, Dh, bs, window, T, longest, max_ctx);
  gt_report(what, gt_compare(out, O, ref, O, T, O), tol_of(gpu));
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

/* The split plan (attention_split.h), checked on its own: bug 5 was a plan
 * sized from max_ctx, under which a 2000-position context at max_ctx 131072
 * landed in one split (one block per KV head walking all 2000 positions,
 * 250 dependent iterations). */
static void test_attention_plan(void) {
  {
    const int slots = tpd_att_slots(132, 1L * 8 * 1, 131072); /* T = 1, 8 KV heads, one head block */
    const int n_live = tpd_att_live(2000, slots), share = tpd_att_share(2000, n_live);
    char what[200];
    snprintf(what, sizeof what,
             "attention plan, 132 SMs, T=1, 8 KV heads, max_ctx 131072, live 2000: %d slots, %d live splits of %d "
             "positions (<= %d)",
             slots, n_live, share, TPD_ATT_CHUNK);
    gt_expect(share <= TPD_ATT_CHUNK && n_live == 8 && n_live * share >= 2000, what);
  }
  /* a sweep: every live length is covered, splits stay balanced and short
   * while slots remain, and never exceed the slots */
  const int sms[] = {1, 7, 132}, maxc[] = {1, 255, 256, 257, 4096, 131072};
  const long bases[] = {1, 3, 8, 64, 1000};
  long bad = 0, cases = 0;
  for (size_t a = 0; a < sizeof sms / sizeof sms[0]; a++)
    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++)
      for (size_t c = 0; c < sizeof maxc / sizeof maxc[0]; c++) {
        const int slots = tpd_att_slots(sms[a], bases[b], maxc[c]);
        if (slots < 1 || (long)(slots - 1) * TPD_ATT_CHUNK >= (long)maxc[c] + TPD_ATT_CHUNK) bad++;
        for (int n = 1; n <= maxc[c]; n += n < 600 ? 1 : 997) {
          const int live = tpd_att_live(n, slots), share = tpd_att_share(n, live);
          const int need = (n + TPD_ATT_CHUNK - 1) / TPD_ATT_CHUNK;
          cases++;
          if (live < 1 || live > slots || (long)live * share < n || share % TPD_ATT_STEP ||
              (need <= slots && (live != need || share > TPD_ATT_CHUNK)) || share - (n + live - 1) / live >= TPD_ATT_STEP)
            bad++;
        }
      }
  char what[160];
  snprintf(what, sizeof what, "attention plan sweep: %ld (SMs, shape, max_ctx, live) cases covered and balanced", cases);
  gt_expect(bad == 0, what);
}

/* One attention launch captured in a graph at max_ctx, replayed as the live
 * lengths grow (pos updated in device memory between replays, as the engine
 * does): each replay against the CPU twin. */
static void test_attention_graph(tpd_backend *cpu, tpd_backend *gpu) {
  const tpd_dtype act = gpu->ops->act_dtype;
  const int Hq = 4, Hkv = 2, Dh = 64, bs = 16, max_ctx = 3000, T = 2;
  const int live[4] = {max_ctx, max_ctx, 0, 0};
  kv_layout k = make_layout(2, max_ctx, bs, live);
  const int ldq = (Hq + 2 * Hkv) * Dh, O = Hq * Dh;
  const size_t nq = (size_t)T * ldq, nc = (size_t)k.n_blocks * Hkv * bs * Dh;
  float *q = gt_malloc(nq * 4), *kc = gt_malloc(nc * 4), *vc = gt_malloc(nc * 4), *ref = gt_malloc((size_t)T * O * 4);
  act_fill(gpu, q, nq, 1.0f);
  act_fill(gpu, kc, nc, 1.0f);
  act_fill(gpu, vc, nc, 1.0f);
  int32_t pos[2] = {0, 0}, slot[2] = {0, 1};
  void *dq = gt_dev_from(gpu, q, nq, act), *dkc = gt_dev_from(gpu, kc, nc, act), *dvc = gt_dev_from(gpu, vc, nc, act);
  void *dout = gt_dev_poison(gpu, (size_t)T * O * tpd_dtype_size(act));
  int32_t *dpos = dev_ints(gpu, pos, 2), *dslot = dev_ints(gpu, slot, 2),
          *dtab = dev_ints(gpu, k.table, (size_t)k.n_slots * k.max_blocks);
  const float scale = (float)(1.0 / sqrt((double)Dh));
  tpd_step_meta mg = {T, dpos, dslot, dtab, k.max_blocks, bs, max_ctx};
  tpd_attention_args ag = {&mg, Hq, Hkv, Dh, dq, ldq, dkc, dvc, dout, 0, scale};
  GT_TRY(gpu->ops->attention(gpu, &ag)); /* eager once: the partials workspace is sized before the capture */
  void *graph = NULL;
  GT_TRY(gpu->ops->graph_begin(gpu));
  const tpd_status body = gpu->ops->attention(gpu, &ag);
  GT_TRY(gpu->ops->graph_end(gpu, &graph));
  GT_TRY(body);
  /* pairs of live lengths: 1, a split boundary, one past it, several splits, near max_ctx */
  const int steps[][2] = {{1, 2}, {256, 255}, {257, 512}, {513, 1000}, {2000, 1}, {2999, 3000}};
  double worst = 0;
  size_t n_nan = 0;
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    pos[0] = steps[i][0] - 1, pos[1] = steps[i][1] - 1;
    GT_TRY(gpu->ops->upload(gpu, dpos, pos, sizeof pos));
    GT_CUDA(cudaMemset(dout, 0xFF, (size_t)T * O * tpd_dtype_size(act)));
    GT_CUDA(cudaDeviceSynchronize());
    GT_TRY(gpu->ops->graph_launch(gpu, graph));
    float *out = gt_host_from(gpu, dout, (size_t)T * O, act);
    tpd_step_meta mc = {T, pos, slot, k.table, k.max_blocks, bs, max_ctx};
    tpd_attention_args ac = {&mc, Hq, Hkv, Dh, q, ldq, kc, vc, ref, 0, scale};
    GT_TRY(cpu->ops->attention(cpu, &ac));
    const gt_cmp c = gt_compare(out, O, ref, O, T, O);
    worst = tu_worst(worst, c.err);
    n_nan += c.n_nan;
    free(out);
  }
  gpu->ops->graph_destroy(gpu, graph);
  char what[200];
  snprintf(what, sizeof what, "%s attention graph at max_ctx %d replayed at live lengths 1..%d", act_name(gpu), max_ctx,
           max_ctx);
  const gt_cmp w = {worst, n_nan};
  gt_report(what, w, tol_of(gpu));
  gpu->ops->free(gpu, dq), gpu->ops->free(gpu, dkc), gpu->ops->free(gpu, dvc), gpu->ops->free(gpu, dout);
  gpu->ops->free(gpu, dpos), gpu->ops->free(gpu, dslot), gpu->ops->free(gpu, dtab);
  free(q), free(kc), free(vc), free(ref), free(k.table);
}

/* ------------------------------------------------------------------ */

static tpd_backend *make_gpu(const char *gemv_max_m, const char *activations) {
  if (gemv_max_m) setenv("TPD_GEMV_MAX_M", gemv_max_m, 1);
  else unsetenv("TPD_GEMV_MAX_M");
  tpd_backend_opts o = {.n_threads = 0, .device = -1, .local_rank = 0, .activations = activations};
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

/* The activations option: each value gives its dtype (the KV cache too);
 * an unknown value, and bf16 on the cpu backend, are errors naming it. */
static void test_activations_option(void) {
  struct { const char *backend, *value; tpd_status want; tpd_dtype dt; } cases[] = {
      {"cuda", NULL, TPD_OK, TPD_BF16},     {"cuda", "auto", TPD_OK, TPD_BF16},
      {"cuda", "bf16", TPD_OK, TPD_BF16},   {"cuda", "f32", TPD_OK, TPD_F32},
      {"cuda", "fp8", TPD_ERR_ARG, TPD_F32}, {"cpu", NULL, TPD_OK, TPD_F32},
      {"cpu", "f32", TPD_OK, TPD_F32},      {"cpu", "bf16", TPD_ERR_UNSUPPORTED, TPD_F32},
      {"cpu", "F32 ", TPD_ERR_ARG, TPD_F32},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tpd_backend_opts o = {.n_threads = 1, .device = -1, .local_rank = 0, .activations = cases[i].value};
    tpd_backend *be = NULL;
    tpd_clear_error();
    const tpd_status st = tpd_backend_create(cases[i].backend, &o, &be);
    int ok = st == cases[i].want;
    if (st == TPD_OK) ok = ok && be->ops->act_dtype == cases[i].dt && be->ops->kv_dtype == cases[i].dt;
    else ok = ok && !be && strstr(tpd_last_error(), cases[i].value) != NULL && !strchr(tpd_last_error(), '\n');
    char what[300];
    snprintf(what, sizeof what, "backend %s, activations %s%s%s -> %s%s%s", cases[i].backend,
             cases[i].value ? "'" : "", cases[i].value ? cases[i].value : "NULL", cases[i].value ? "'" : "",
             st == TPD_OK ? tpd_dtype_name(be->ops->act_dtype) : tpd_status_name(st), st == TPD_OK ? "" : ": ",
             st == TPD_OK ? "" : tpd_last_error());
    gt_expect(ok, what);
    tpd_backend_destroy(be);
  }
}

/* bug 4: a kernel that faults while running.  Without TPD_CUDA_SYNC the
 * launch reports success and the fault surfaces at the next copy, blamed on
 * that copy; with TPD_CUDA_SYNC=1 the op that launched it fails, naming the
 * kernel and its launcher's file:line.  Under the emulation the fault is
 * injected (emu_fault_next_launch) into an rmsnorm; on a GPU a gather of a
 * row far outside its buffer makes a real one, which leaves the CUDA context
 * unusable, so that case runs last. */
static tpd_backend *make_sync_gpu(const char *activations) {
  setenv("TPD_CUDA_SYNC", "1", 1);
  tpd_backend *be = make_gpu(NULL, activations);
  unsetenv("TPD_CUDA_SYNC");
  return be;
}

#ifdef TPD_CUDA_EMU
static tpd_status rmsnorm_once(tpd_backend *gpu, void *dx, float *dw, void *dy, int D) {
  tpd_rmsnorm_args a = {1, D, dx, NULL, dw, 1e-5f, dy};
  return gpu->ops->rmsnorm(gpu, &a);
}

static void test_sync_fault(tpd_backend *gpu) {
  const int D = 256;
  float *x = gt_malloc(sizeof(float) * D), *w = gt_malloc(sizeof(float) * D), *back = gt_malloc(sizeof(float) * D);
  gt_fill(x, D, 1.0f);
  for (int i = 0; i < D; i++) w[i] = 1.0f + raw_uniform(0.5f);
  /* the default backend: the fault is blamed on the copy after it */
  {
    void *dx = gt_dev_from(gpu, x, D, TPD_BF16), *dy = gt_dev_poison(gpu, (size_t)D * 2);
    float *dw = (float *)gt_dev_from(gpu, w, D, TPD_F32);
    emu_fault_next_launch();
    const tpd_status launched = rmsnorm_once(gpu, dx, dw, dy, D);
    tpd_clear_error();
    const tpd_status copied = gpu->ops->download(gpu, back, dy, (size_t)D * 2);
    char what[600];
    snprintf(what, sizeof what, "without TPD_CUDA_SYNC a faulting rmsnorm returns %s, the next copy %s: %s",
             tpd_status_name(launched), tpd_status_name(copied), tpd_last_error());
    gt_expect(launched == TPD_OK && copied == TPD_ERR_DEVICE && !strstr(tpd_last_error(), "rmsnorm"), what);
    gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy), gpu->ops->free(gpu, dw);
  }
  /* TPD_CUDA_SYNC=1: the rmsnorm itself fails, naming its kernel */
  {
    tpd_backend *sg = make_sync_gpu(NULL);
    void *dx = gt_dev_from(sg, x, D, TPD_BF16), *dy = gt_dev_poison(sg, (size_t)D * 2);
    float *dw = (float *)gt_dev_from(sg, w, D, TPD_F32);
    emu_fault_next_launch();
    tpd_clear_error();
    const tpd_status launched = rmsnorm_once(sg, dx, dw, dy, D);
    char what[600];
    snprintf(what, sizeof what, "TPD_CUDA_SYNC=1: a faulting rmsnorm fails itself: %s: %s", tpd_status_name(launched),
             tpd_last_error());
    gt_expect(launched == TPD_ERR_DEVICE && strstr(tpd_last_error(), "rmsnorm_kernel<bf16>") &&
                  strstr(tpd_last_error(), "kernels/cuda/rmsnorm.cu:") &&
                  strstr(tpd_last_error(), "failed while running") && !strchr(tpd_last_error(), '\n'),
              what);
    /* and without a fault the same op runs and is right */
    GT_TRY(rmsnorm_once(sg, dx, dw, dy, D));
    float *y = gt_host_from(sg, dy, D, TPD_BF16), *ref = gt_malloc(sizeof(float) * D);
    double ss = 0;
    for (int i = 0; i < D; i++) ss += (double)x[i] * x[i];
    for (int i = 0; i < D; i++) ref[i] = (float)(x[i] / sqrt(ss / D + 1e-5) * w[i]);
    gt_report("TPD_CUDA_SYNC=1: rmsnorm without a fault vs float64", gt_compare(y, D, ref, D, 1, D), TOL_BF16);
    sg->ops->free(sg, dx), sg->ops->free(sg, dy), sg->ops->free(sg, dw);
    free(y), free(ref);
    tpd_backend_destroy(sg);
  }
  free(x), free(w), free(back);
}
#else
/* Real GPU: leaves the context broken; the caller exits right after. */
static void test_sync_fault_last(void) {
  tpd_backend *sg = make_sync_gpu(NULL);
  const int D = 1000;
  void *dsrc = NULL, *ddst = NULL;
  GT_TRY(sg->ops->alloc(sg, (size_t)D * 2, &dsrc));
  GT_TRY(sg->ops->alloc(sg, (size_t)D * 2, &ddst));
  const int32_t rows[1] = {1 << 28}; /* 512 GB past the buffer */
  tpd_clear_error();
  const tpd_status st = sg->ops->gather_rows(sg, ddst, dsrc, rows, 1, D);
  char what[600];
  snprintf(what, sizeof what, "TPD_CUDA_SYNC=1: a gather far out of bounds fails itself: %s: %s", tpd_status_name(st),
           tpd_last_error());
  gt_expect(st == TPD_ERR_DEVICE && strstr(tpd_last_error(), "gather_rows_kernel") &&
                strstr(tpd_last_error(), "kernels/cuda/gather_rows.cu:"),
            what);
}
#endif

/* Every op of one backend (its activation dtype) against the CPU twin.
 * full = 0: a smaller set of shapes (the f32 mode). */
static void run_ops(tpd_backend *cpu, tpd_backend *gpu, tpd_backend *gpu16, tpd_backend *gpu_lt, int full) {
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
  test_add(cpu, gpu, 4099, 0);
  test_add(cpu, gpu, 1001, 1);
  test_gather(cpu, gpu, 10, 4, 1000);
  test_gather(cpu, gpu, 9, 70, 999);
  if (full) {
    test_argmax(cpu, gpu, 3, 128257);
    test_argmax(cpu, gpu, 4, 1000);
  }

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
  test_attention(cpu, gpu, "decode ", 8, 2, 128, 16, 0, T, pos, slot, 0);
  test_attention(cpu, gpu, "decode ", 8, 2, 128, 16, 100, T, pos, slot, 0);
  test_attention(cpu, gpu, "decode ", 16, 2, 256, 16, 0, T, pos, slot, 0);
  test_attention(cpu, gpu, "decode ", 2, 1, 512, 32, 0, T, pos, slot, 0);
  T = 0;
  T = add_run(pos, slot, T, 100, 20, 1);
  T = add_run(pos, slot, T, 7, 1, 3);
  test_attention(cpu, gpu, "prefill", 4, 4, 64, 16, 0, T, pos, slot, 0);
  if (full) test_attention(cpu, gpu, "prefill", 4, 4, 64, 16, 50, T, pos, slot, 0);
  test_attention(cpu, gpu, "prefill", 8, 2, 128, 16, 1, T, pos, slot, 0);
  T = 0;
  T = add_run(pos, slot, T, 0, 4, 0); /* short context: one split */
  test_attention(cpu, gpu, "prefill", 8, 2, 128, 16, 0, T, pos, slot, 0);
  T = 0;
  T = add_run(pos, slot, T, 63, 1, 0);
  T = add_run(pos, slot, T, 190, 10, 2);
  test_attention(cpu, gpu, "mixed  ", 6, 3, 80, 8, 0, T, pos, slot, 0);
  if (full) test_attention(cpu, gpu, "mixed  ", 32, 8, 64, 16, 24, T, pos, slot, 0);

  /* (max_ctx, live length) pairs around the split size (256 positions): live
   * length 1, exactly one split, one past it, two splits, and a long max_ctx
   * (a decode graph's) with short live lengths; all four in one launch, so
   * tokens with 1, 1, 2 and 8 live splits share a grid */
  T = 0;
  T = add_run(pos, slot, T, 0, 1, 0);    /* live 1 */
  T = add_run(pos, slot, T, 255, 1, 1);  /* live 256: exactly one split */
  T = add_run(pos, slot, T, 256, 1, 2);  /* live 257: one past it */
  T = add_run(pos, slot, T, 1999, 1, 3); /* live 2000 */
  test_attention(cpu, gpu, "splits ", 8, 2, 64, 16, 0, T, pos, slot, 131072);
  test_attention(cpu, gpu, "splits ", 8, 2, 64, 16, 0, T, pos, slot, 2048);
  test_attention(cpu, gpu, "splits ", 4, 4, 128, 16, 300, T, pos, slot, 131072);
  T = 0;
  T = add_run(pos, slot, T, 511, 1, 0); /* live 512: exactly two splits */
  T = add_run(pos, slot, T, 512, 1, 1); /* live 513 */
  test_attention(cpu, gpu, "splits ", 16, 2, 128, 16, 0, T, pos, slot, 513);
  test_attention(cpu, gpu, "splits ", 16, 2, 128, 16, 0, T, pos, slot, 131072);
  T = 0;
  T = add_run(pos, slot, T, 200, 64, 0); /* a prefill crossing the split boundary */
  test_attention(cpu, gpu, "splits ", 4, 2, 64, 16, 0, T, pos, slot, 4096);
  test_attention_graph(cpu, gpu);
}

int main(void) {
  gt_require_gpu(PROG);
  gt_seed();
  tpd_backend_opts co = {.n_threads = 2, .device = -1, .local_rank = 0};
  tpd_backend *cpu = NULL;
  GT_TRY(tpd_backend_cpu_create(&co, &cpu));
  test_activations_option();
  test_attention_plan();

  tpd_backend *gpu = make_gpu(NULL, NULL), *gpu16 = make_gpu("16", NULL), *gpu_lt = make_gpu("0", NULL);
  gt_expect(!strcmp(gpu->ops->name, "cuda") && gpu->ops->act_dtype == TPD_BF16 && gpu->ops->kv_dtype == TPD_BF16 &&
                !gpu->ops->host_memory && gpu->ops->stream(gpu) && gpu->ops->comm_stream &&
                gpu->ops->matmul_swiglu && gpu->ops->graph_begin,
            "ops table: cuda, bf16 activations and KV by default, device memory, every optional op");
  test_memory(gpu);
  run_ops(cpu, gpu, gpu16, gpu_lt, 1);
#ifdef TPD_CUDA_EMU
  test_sync_fault(gpu);
#endif
  tpd_backend_destroy(gpu_lt);
  tpd_backend_destroy(gpu16);
  tpd_backend_destroy(gpu);

  /* the float32-activation mode: every op again, inputs not bf16-exact */
  gpu = make_gpu(NULL, "f32"), gpu16 = make_gpu("16", "f32"), gpu_lt = make_gpu("0", "f32");
  gt_expect(gpu->ops->act_dtype == TPD_F32 && gpu->ops->kv_dtype == TPD_F32, "ops table: f32 activations and KV");
  run_ops(cpu, gpu, gpu16, gpu_lt, 0);
  tpd_backend_destroy(gpu_lt);
  tpd_backend_destroy(gpu16);
  tpd_backend_destroy(gpu);
#ifndef TPD_CUDA_EMU
  test_sync_fault_last(); /* breaks the CUDA context: nothing on the device after it */
  tpd_backend_destroy(cpu);
  return gt_finish(PROG);
#else
  tpd_backend_destroy(cpu);
  return gt_finish(PROG);
#endif
}
