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

static const char *const swiglu_names[TPD_GEMV_N_COMBOS][TPD_GEMV_N_VARIANTS] = TPD_GEMV_NAMES("gemv_swiglu");
static const tpd_gemv_op swiglu_op = {
    "gemv_swiglu", 1, swiglu_kernels, swiglu_names,
    {gemv_swiglu_reduce<uint16_t>, gemv_swiglu_reduce<float>, gemv_swiglu_reduce<float>},
    {"gemv_swiglu_reduce<bf16>", "gemv_swiglu_reduce<f32>", "gemv_swiglu_reduce<f32>"}};

/* out has the activation dtype, as X: f32 for every combo but bf16 x bf16 */
static tpd_status gemv_swiglu(tpd_cuda *c, int combo, const tpd_matmul_args *a, void *out, int ld_out) {
  return tpd_cuda_gemv(c, &swiglu_op, combo, a, out, ld_out, tpd_gemv_x_size(combo) == 4);
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
