/* matmul: Y[M, N] = X[M, K] . W[N, K]^T (+ bias), fp32 accumulation, Y bf16
 * or f32 (activations, or f32 logits).  X is the backend's activation dtype
 * (bf16, or f32 in the float32-activation mode), W bf16 (or f32 in that
 * mode, from an F32/F16 checkpoint).
 *
 * M <= gemv_max_m (TPD_GEMV_MAX_M, default 1; see cuda_backend.h for why)
 * runs the GEMV kernels of gemv.h, split over K when the rows alone would
 * not fill the GPU; larger M goes to cuBLASLt (cublaslt.cu) followed by the
 * bias kernel here.  If cuBLASLt has no algorithm for a shape (or for the
 * dtype mix: f32 X with bf16 W), the GEMV kernels take it in passes of 16
 * rows. */
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/gemv.h"

/* Sums the S split-K partials in a fixed order (deterministic), adds the
 * bias and converts: one thread per output element. */
static __global__ void __launch_bounds__(256) gemv_reduce(const tpd_gemv_params p, int S) {
  const size_t n_out = (size_t)p.M * p.N;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_out; i += (size_t)gridDim.x * blockDim.x) {
    const int m = (int)(i / p.N), n = (int)(i % p.N);
    float v = 0.0f;
    for (int s = 0; s < S; s++) v += p.partial[(size_t)s * n_out + i];
    if (p.bias) v += p.bias[n];
    const size_t at = (size_t)m * p.ldy + n;
    if (p.y_f32) ((float *)p.y)[at] = v;
    else ((uint16_t *)p.y)[at] = tpd_f32_bf16(v);
  }
}

/* y[m, n] += bias[n] after cuBLASLt. */
static __global__ void __launch_bounds__(256) bias_add_kernel(void *y, int ldy, int y_f32, const float *bias, int M,
                                                             int N) {
  const size_t n_out = (size_t)M * N;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_out; i += (size_t)gridDim.x * blockDim.x) {
    const int m = (int)(i / N), n = (int)(i % N);
    const size_t at = (size_t)m * ldy + n;
    if (y_f32) ((float *)y)[at] += bias[n];
    else ((uint16_t *)y)[at] = tpd_f32_bf16(tpd_bf16_f32(((const uint16_t *)y)[at]) + bias[n]);
  }
}

/* ------------------------------------------------------------------ */

static const tpd_gemv_fn plain_kernels[TPD_GEMV_N_COMBOS][TPD_GEMV_N_VARIANTS] = {
    TPD_GEMV_VARIANTS(uint16_t, uint16_t, 0), TPD_GEMV_VARIANTS(float, uint16_t, 0), TPD_GEMV_VARIANTS(float, float, 0)};

extern "C" int tpd_cuda_gemv_combo(tpd_dtype act, tpd_dtype w) {
  if (act == TPD_BF16 && w == TPD_BF16) return 0;
  if (act == TPD_F32 && w == TPD_BF16) return 1;
  if (act == TPD_F32 && w == TPD_F32) return 2;
  return -1;
}

/* Grid-stride launches for elementwise kernels: enough blocks to fill the
 * GPU a few times over, no more. */
static unsigned elementwise_blocks(const tpd_cuda *c, size_t n) {
  const size_t want = (n + 255) / 256, cap = (size_t)c->n_sm * 8, b = want < cap ? want : cap;
  return (unsigned)(b > 0 ? b : 1);
}

/* How many K-splits for a GEMV whose rows alone need n_warps_needed warps:
 * the fewest splits whose blocks fill the resident slots (n_sm x
 * blocks_per_sm) best, counting a partly filled last wave as wasted (none
 * when the rows alone make two waves or more).  Each
 * split keeps >= 1024 elements of K (4+ steps per lane), at most 32 splits,
 * and the partials must fit the split-K workspace. */
extern "C" int tpd_cuda_gemv_split(const tpd_cuda *c, int blocks_per_sm, int n_warps_needed, int K,
                                   size_t partial_bytes_per_split, int *k_per_split) {
  const long slots = (long)c->n_sm * (blocks_per_sm > 0 ? blocks_per_sm : 1);
  const long blocks1 = (n_warps_needed + GEMV_WARPS - 1) / GEMV_WARPS;
  long s_max = K / 1024 > 0 ? K / 1024 : 1;
  if (s_max > 32) s_max = 32;
  while (s_max > 1 && (size_t)s_max * partial_bytes_per_split > c->splitk_bytes) s_max--;
  long best = 1;
  double best_eff = 0;
  if (blocks1 >= 2 * slots) s_max = 1; /* two waves or more: the tail costs little */
  for (long s = 1; s <= s_max; s++) {
    const double waves = (double)(blocks1 * s) / (double)slots;
    const double eff = waves < 1.0 ? waves : waves / ceil(waves); /* fraction of slot-time doing work */
    if (eff > best_eff * 1.02) { /* a clear gain only: fewer splits otherwise */
      best_eff = eff;
      best = s;
    }
    if (waves >= 4.0) break; /* plenty of blocks: more splits only add partial traffic */
  }
  int kps = (int)((K + best - 1) / best);
  kps = (kps + GEMV_KSTEP - 1) / GEMV_KSTEP * GEMV_KSTEP;
  if (kps < GEMV_KSTEP) kps = GEMV_KSTEP;
  *k_per_split = kps;
  return (K + kps - 1) / kps > 1 ? (K + kps - 1) / kps : 1;
}

/* One GEMV launch (plus the reduce when split) for M <= 16 rows. */
static tpd_status gemv_launch(tpd_cuda *c, const tpd_gemv_op *op, int combo, tpd_gemv_params p) {
  const int v = tpd_gemv_variant(p.M);
  const tpd_gemv_fn k = op->kernels[combo][v];
  int *const blocks_per_sm = &c->gemv_blocks_per_sm[op->swiglu][combo][v];
  if (!*blocks_per_sm) {
    int n = 0;
    TPD_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, (const void *)k, GEMV_THREADS, 0));
    *blocks_per_sm = n > 0 ? n : 1;
  }
  /* outputs per row of X, and per warp: plain N (4 rows); swiglu F (2 gate/up pairs) */
  const int n_out = op->swiglu ? p.F : p.N, per_warp = op->swiglu ? GEMV_R / 2 : GEMV_R;
  const int n_warps = (n_out + per_warp - 1) / per_warp;
  const int S = tpd_cuda_gemv_split(c, *blocks_per_sm, n_warps, p.K, (size_t)p.M * p.N * sizeof(float), &p.k_per_split);
  p.partial = S > 1 ? c->splitk : NULL;
  const dim3 grid((unsigned)((n_warps + GEMV_WARPS - 1) / GEMV_WARPS), (unsigned)S);
  TPD_DEBUG("%s M=%d %s=%d K=%d (%s): variant %d, grid %u x %u (%d K-splits of %d)", op->name, p.M,
            op->swiglu ? "F" : "N", n_out, p.K, tpd_gemv_combo_name[combo], v, grid.x, grid.y, S, p.k_per_split);
  k<<<grid, GEMV_THREADS, 0, c->stream>>>(p);
  TPD_CUDA_CHECK_LAUNCH(c, op->kernel_names[combo][v]);
  if (S > 1) {
    const tpd_gemv_reduce_fn r = op->reduce[combo];
    r<<<elementwise_blocks(c, (size_t)p.M * n_out), 256, 0, c->stream>>>(p, S);
    TPD_CUDA_CHECK_LAUNCH(c, op->reduce_names[combo]);
  }
  return TPD_OK;
}

tpd_status tpd_cuda_gemv(tpd_cuda *c, const tpd_gemv_op *op, int combo, const tpd_matmul_args *a, void *y, int ldy,
                         int y_f32) {
  const int K = a->w->n_cols, N = a->w->n_rows;
  const size_t xsz = (size_t)tpd_gemv_x_size(combo), ysz = y_f32 ? 4 : 2;
  for (int m0 = 0; m0 < a->M; m0 += GEMV_MAX_MT) {
    tpd_gemv_params p;
    p.x = (const uint16_t *)((const char *)a->x + (size_t)m0 * a->ldx * xsz); /* typed as bf16; cast back for f32 */
    p.ldx = a->ldx;
    p.w = a->w->data;
    p.ldw = tpd_cuda_ldw(K);
    p.M = a->M - m0 < GEMV_MAX_MT ? a->M - m0 : GEMV_MAX_MT;
    p.N = N;
    p.K = K;
    p.F = op->swiglu ? N / 2 : 0;
    p.bias = a->bias;
    p.y = (char *)y + (size_t)m0 * ldy * ysz;
    p.ldy = ldy;
    p.y_f32 = y_f32;
    p.partial = NULL;
    p.k_per_split = K;
    p.x_vec = tpd_aligned16(p.x) && ((size_t)a->ldx * xsz) % 16 == 0;
    TPD_TRY(gemv_launch(c, op, combo, p));
  }
  return TPD_OK;
}

static const char *const plain_names[TPD_GEMV_N_COMBOS][TPD_GEMV_N_VARIANTS] = TPD_GEMV_NAMES("gemv");
static const tpd_gemv_op plain_op = {"gemv", 0, plain_kernels, plain_names, {gemv_reduce, gemv_reduce, gemv_reduce},
                                     {"gemv_reduce", "gemv_reduce", "gemv_reduce"}};

static tpd_status gemv_plain(tpd_cuda *c, int combo, const tpd_matmul_args *a) {
  return tpd_cuda_gemv(c, &plain_op, combo, a, a->y, a->ldy, a->y_dtype == TPD_F32);
}

extern "C" tpd_status tpd_cuda_bias_add(tpd_cuda *c, void *y, int ldy, int y_f32, const float *bias, int M, int N) {
  if (!bias || M <= 0 || N <= 0) return TPD_OK;
  bias_add_kernel<<<elementwise_blocks(c, (size_t)M * N), 256, 0, c->stream>>>(y, ldy, y_f32, bias, M, N);
  TPD_CUDA_CHECK_LAUNCH(c, "bias_add_kernel");
  return TPD_OK;
}

extern "C" tpd_status tpd_cuda_matmul(tpd_backend *be, const tpd_matmul_args *a) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!a || !a->w) return TPD_FAIL(TPD_ERR_ARG, "cuda matmul: args and weight are required");
  const int N = a->w->n_rows, K = a->w->n_cols;
  const int combo = tpd_cuda_gemv_combo(c->act, a->w->dtype);
  if (combo < 0)
    return TPD_FAIL(TPD_ERR_ARG, "cuda matmul: weight dtype %s with %s activations (load it with this backend's load_weight)",
                    tpd_dtype_name(a->w->dtype), tpd_dtype_name(c->act));
  if (a->y_dtype != TPD_BF16 && a->y_dtype != TPD_F32)
    return TPD_FAIL(TPD_ERR_ARG, "cuda matmul: y_dtype %s (expected BF16 or F32)", tpd_dtype_name(a->y_dtype));
  if (a->M < 0 || a->ldx < K || a->ldy < N)
    return TPD_FAIL(TPD_ERR_ARG, "cuda matmul: M=%d ldx=%d ldy=%d for a %d x %d weight", a->M, a->ldx, a->ldy, N, K);
  if (a->M == 0 || N == 0) return TPD_OK;
  if (a->M <= c->gemv_max_m) return gemv_plain(c, combo, a);
  const tpd_status st = tpd_cuda_lt_matmul(c, a->M, N, K, a->x, a->ldx, c->act, a->w->data, tpd_cuda_ldw(K),
                                           a->w->dtype, a->y, a->ldy, a->y_dtype == TPD_F32);
  if (st == TPD_ERR_UNSUPPORTED) return gemv_plain(c, combo, a);
  TPD_TRY(st);
  return tpd_cuda_bias_add(c, a->y, a->ldy, a->y_dtype == TPD_F32, a->bias, a->M, N);
}
