/* matmul_swiglu: out[M, F] = silu(X Wg^T + bg) * (X Wu^T + bu), W = [Wg; Wu]
 * stacked (2F x K), fp32 accumulation, out in the activation dtype with row
 * stride ld_out (X, W dtypes as in matmul.cu).
 *
 * M <= gemv_max_m: the GEMV of gemv.h with each warp owning two gate rows
 * and the two matching up rows, SwiGLU applied in the epilogue (or in the
 * split-K reduce), so gate/up never reach memory.  Larger M: cuBLASLt into
 * a [M, 2F] activation-dtype scratch, the bias kernel, then the swiglu
 * kernel (f32 X with bf16 W: the GEMV in passes of 16 rows). */
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/gemv.h"

/* Split-K finish: sums the partials of the gate and up rows in a fixed
 * order, adds the biases and applies SwiGLU; one thread per output. */
template <typename TX>
static __global__ void __launch_bounds__(256) gemv_swiglu_reduce(const tpd_gemv_params p, int S) {
  const size_t n_out = (size_t)p.M * p.F, plane = (size_t)p.M * p.N;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_out; i += (size_t)gridDim.x * blockDim.x) {
    const int m = (int)(i / p.F), j = (int)(i % p.F);
    const size_t gi = (size_t)m * p.N + j, ui = gi + p.F;
    float g = 0.0f, u = 0.0f;
    for (int s = 0; s < S; s++) {
      g += p.partial[(size_t)s * plane + gi];
      u += p.partial[(size_t)s * plane + ui];
    }
    if (p.bias) {
      g += p.bias[j];
      u += p.bias[p.F + j];
    }
    ((TX *)p.y)[(size_t)m * p.ldy + j] = tpd_act<TX>::put(tpd_silu_mul(g, u));
  }
}

/* ------------------------------------------------------------------ */

static const tpd_gemv_fn swiglu_kernels[TPD_GEMV_N_COMBOS][TPD_GEMV_N_VARIANTS] = {
    TPD_GEMV_VARIANTS(uint16_t, uint16_t, 1), TPD_GEMV_VARIANTS(float, uint16_t, 1), TPD_GEMV_VARIANTS(float, float, 1)};

static tpd_status gemv_swiglu_launch(tpd_cuda *c, int combo, tpd_gemv_params p) {
  const int v = tpd_gemv_variant(p.M);
  const tpd_gemv_fn k = swiglu_kernels[combo][v];
  if (!c->gemv_blocks_per_sm[1][combo][v]) {
    int n = 0;
    TPD_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, (const void *)k, GEMV_THREADS, 0));
    c->gemv_blocks_per_sm[1][combo][v] = n > 0 ? n : 1;
  }
  const int n_warps = (p.F + GEMV_R / 2 - 1) / (GEMV_R / 2);
  const int S = tpd_cuda_gemv_split(c, c->gemv_blocks_per_sm[1][combo][v], n_warps, p.K,
                                    (size_t)p.M * p.N * sizeof(float), &p.k_per_split);
  p.partial = S > 1 ? c->splitk : NULL;
  const dim3 grid((unsigned)((n_warps + GEMV_WARPS - 1) / GEMV_WARPS), (unsigned)S);
  TPD_DEBUG("gemv_swiglu M=%d F=%d K=%d (%s): variant %d, grid %u x %u (%d K-splits of %d)", p.M, p.F, p.K,
            tpd_gemv_combo_name[combo], v, grid.x, grid.y, S, p.k_per_split);
  k<<<grid, GEMV_THREADS, 0, c->stream>>>(p);
  static const char *const names[TPD_GEMV_N_COMBOS][TPD_GEMV_N_VARIANTS] = TPD_GEMV_NAMES("gemv_swiglu");
  TPD_CUDA_CHECK_LAUNCH(c, names[combo][v]);
  if (S > 1) {
    const size_t n_out = (size_t)p.M * p.F;
    size_t blocks = (n_out + 255) / 256;
    if (blocks > (size_t)c->n_sm * 8) blocks = (size_t)c->n_sm * 8;
    void (*const r)(const tpd_gemv_params, int) = combo == 0 ? gemv_swiglu_reduce<uint16_t> : gemv_swiglu_reduce<float>;
    r<<<(unsigned)(blocks ? blocks : 1), 256, 0, c->stream>>>(p, S);
    TPD_CUDA_CHECK_LAUNCH(c, combo == 0 ? "gemv_swiglu_reduce<bf16>" : "gemv_swiglu_reduce<f32>");
  }
  return TPD_OK;
}

static tpd_status gemv_swiglu(tpd_cuda *c, int combo, const tpd_matmul_args *a, void *out, int ld_out) {
  const int K = a->w->n_cols, N = a->w->n_rows;
  const size_t xsz = (size_t)tpd_gemv_x_size(combo);
  for (int m0 = 0; m0 < a->M; m0 += GEMV_MAX_MT) {
    tpd_gemv_params p;
    p.x = (const uint16_t *)((const char *)a->x + (size_t)m0 * a->ldx * xsz); /* typed as bf16; cast back for f32 */
    p.ldx = a->ldx;
    p.w = a->w->data;
    p.ldw = tpd_cuda_ldw(K);
    p.M = a->M - m0 < GEMV_MAX_MT ? a->M - m0 : GEMV_MAX_MT;
    p.N = N;
    p.K = K;
    p.F = N / 2;
    p.bias = a->bias;
    p.y = (char *)out + (size_t)m0 * ld_out * xsz; /* out has the activation dtype, as X */
    p.ldy = ld_out;
    p.y_f32 = xsz == 4;
    p.partial = NULL;
    p.k_per_split = K;
    p.x_vec = tpd_aligned16(p.x) && ((size_t)a->ldx * xsz) % 16 == 0;
    TPD_TRY(gemv_swiglu_launch(c, combo, p));
  }
  return TPD_OK;
}

extern "C" tpd_status tpd_cuda_matmul_swiglu(tpd_backend *be, const tpd_matmul_args *a, void *out, int ld_out) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!a || !a->w || !out) return TPD_FAIL(TPD_ERR_ARG, "cuda matmul_swiglu: args, weight and out are required");
  const int N = a->w->n_rows, K = a->w->n_cols, F = N / 2;
  const int combo = tpd_cuda_gemv_combo(c->act, a->w->dtype);
  if (combo < 0)
    return TPD_FAIL(TPD_ERR_ARG,
                    "cuda matmul_swiglu: weight dtype %s with %s activations (load it with this backend's load_weight)",
                    tpd_dtype_name(a->w->dtype), tpd_dtype_name(c->act));
  if (N % 2) return TPD_FAIL(TPD_ERR_ARG, "cuda matmul_swiglu: %d weight rows (expected 2F: gate rows, then up rows)", N);
  if (a->M < 0 || a->ldx < K || ld_out < F)
    return TPD_FAIL(TPD_ERR_ARG, "cuda matmul_swiglu: M=%d ldx=%d ld_out=%d for a %d x %d weight", a->M, a->ldx,
                    ld_out, N, K);
  if (a->M == 0 || F == 0) return TPD_OK;
  if (a->M <= c->gemv_max_m) return gemv_swiglu(c, combo, a, out, ld_out);
  const size_t asz = tpd_dtype_size(c->act);
  TPD_TRY(tpd_cuda_reserve(c, &c->gu_scratch, &c->gu_scratch_bytes, (size_t)a->M * N * asz, "matmul_swiglu scratch"));
  const tpd_status st = tpd_cuda_lt_matmul(c, a->M, N, K, a->x, a->ldx, c->act, a->w->data, tpd_cuda_ldw(K),
                                           a->w->dtype, c->gu_scratch, N, c->act == TPD_F32);
  if (st == TPD_ERR_UNSUPPORTED) return gemv_swiglu(c, combo, a, out, ld_out);
  TPD_TRY(st);
  TPD_TRY(tpd_cuda_bias_add(c, c->gu_scratch, N, c->act == TPD_F32, a->bias, a->M, N));
  return tpd_cuda_swiglu_launch(c, a->M, F, c->gu_scratch, N, out, ld_out);
}
