/* matmul_swiglu: out[M, F] = silu(X Wg^T + bg) * (X Wu^T + bu), W = [Wg; Wu]
 * stacked (2F x K, bf16), fp32 accumulation, out bf16 with row stride ld_out.
 *
 * M <= gemv_max_m: the GEMV of gemv.h with each warp owning two gate rows
 * and the two matching up rows, SwiGLU applied in the epilogue (or in the
 * split-K reduce), so gate/up never reach memory.  Larger M: cuBLASLt into
 * a [M, 2F] bf16 scratch, the bias kernel, then the swiglu kernel. */
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/gemv.h"

#define GEMV_SWIGLU_KERNEL(name, MT, U) \
  static __global__ void __launch_bounds__(GEMV_THREADS) name(const tpd_gemv_params p) { gemv_body(p, MT, U, 1); }

GEMV_SWIGLU_KERNEL(gemv_swiglu_m1, 1, 2)
GEMV_SWIGLU_KERNEL(gemv_swiglu_m2, 2, 2)
GEMV_SWIGLU_KERNEL(gemv_swiglu_m4, 4, 1)
GEMV_SWIGLU_KERNEL(gemv_swiglu_m8, 8, 1)
GEMV_SWIGLU_KERNEL(gemv_swiglu_m16, 16, 1)

/* Split-K finish: sums the partials of the gate and up rows in a fixed
 * order, adds the biases and applies SwiGLU; one thread per output. */
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
    ((uint16_t *)p.y)[(size_t)m * p.ldy + j] = tpd_f32_bf16(tpd_silu_mul(g, u));
  }
}

/* ------------------------------------------------------------------ */

static const void *const swiglu_kernels[TPD_GEMV_N_VARIANTS] = {
    (const void *)gemv_swiglu_m1, (const void *)gemv_swiglu_m2, (const void *)gemv_swiglu_m4,
    (const void *)gemv_swiglu_m8, (const void *)gemv_swiglu_m16};

static tpd_status gemv_swiglu_launch(tpd_cuda *c, tpd_gemv_params p) {
  const int v = tpd_gemv_variant(p.M);
  if (!c->gemv_blocks_per_sm[1][v]) {
    int n = 0;
    TPD_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, swiglu_kernels[v], GEMV_THREADS, 0));
    c->gemv_blocks_per_sm[1][v] = n > 0 ? n : 1;
  }
  const int n_warps = (p.F + GEMV_R / 2 - 1) / (GEMV_R / 2);
  const int S = tpd_cuda_gemv_split(c, c->gemv_blocks_per_sm[1][v], n_warps, p.K,
                                    (size_t)p.M * p.N * sizeof(float), &p.k_per_split);
  p.partial = S > 1 ? c->splitk : NULL;
  const dim3 grid((unsigned)((n_warps + GEMV_WARPS - 1) / GEMV_WARPS), (unsigned)S);
  TPD_DEBUG("gemv_swiglu M=%d F=%d K=%d: variant %d, grid %u x %u (%d K-splits of %d)", p.M, p.F, p.K, v, grid.x,
            grid.y, S, p.k_per_split);
  switch (v) {
    case 0: gemv_swiglu_m1<<<grid, GEMV_THREADS, 0, c->stream>>>(p); break;
    case 1: gemv_swiglu_m2<<<grid, GEMV_THREADS, 0, c->stream>>>(p); break;
    case 2: gemv_swiglu_m4<<<grid, GEMV_THREADS, 0, c->stream>>>(p); break;
    case 3: gemv_swiglu_m8<<<grid, GEMV_THREADS, 0, c->stream>>>(p); break;
    default: gemv_swiglu_m16<<<grid, GEMV_THREADS, 0, c->stream>>>(p); break;
  }
  TPD_CUDA_CHECK_LAUNCH("gemv_swiglu");
  if (S > 1) {
    const size_t n_out = (size_t)p.M * p.F;
    size_t blocks = (n_out + 255) / 256;
    if (blocks > (size_t)c->n_sm * 8) blocks = (size_t)c->n_sm * 8;
    gemv_swiglu_reduce<<<(unsigned)(blocks ? blocks : 1), 256, 0, c->stream>>>(p, S);
    TPD_CUDA_CHECK_LAUNCH("gemv_swiglu_reduce");
  }
  return TPD_OK;
}

static tpd_status gemv_swiglu(tpd_cuda *c, const tpd_matmul_args *a, void *out, int ld_out) {
  const int K = a->w->n_cols, N = a->w->n_rows;
  for (int m0 = 0; m0 < a->M; m0 += GEMV_MAX_MT) {
    tpd_gemv_params p;
    p.x = (const uint16_t *)a->x + (size_t)m0 * a->ldx;
    p.ldx = a->ldx;
    p.w = (const uint16_t *)a->w->data;
    p.ldw = tpd_cuda_ldw(K);
    p.M = a->M - m0 < GEMV_MAX_MT ? a->M - m0 : GEMV_MAX_MT;
    p.N = N;
    p.K = K;
    p.F = N / 2;
    p.bias = a->bias;
    p.y = (uint16_t *)out + (size_t)m0 * ld_out;
    p.ldy = ld_out;
    p.y_f32 = 0;
    p.partial = NULL;
    p.k_per_split = K;
    p.x_vec = tpd_aligned16(p.x) && a->ldx % 8 == 0;
    TPD_TRY(gemv_swiglu_launch(c, p));
  }
  return TPD_OK;
}

extern "C" tpd_status tpd_cuda_matmul_swiglu(tpd_backend *be, const tpd_matmul_args *a, void *out, int ld_out) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!a || !a->w || !out) return TPD_FAIL(TPD_ERR_ARG, "cuda matmul_swiglu: args, weight and out are required");
  const int N = a->w->n_rows, K = a->w->n_cols, F = N / 2;
  if (a->w->dtype != TPD_BF16)
    return TPD_FAIL(TPD_ERR_ARG, "cuda matmul_swiglu: weight dtype %s (load it with this backend's load_weight)",
                    tpd_dtype_name(a->w->dtype));
  if (N % 2) return TPD_FAIL(TPD_ERR_ARG, "cuda matmul_swiglu: %d weight rows (expected 2F: gate rows, then up rows)", N);
  if (a->M < 0 || a->ldx < K || ld_out < F)
    return TPD_FAIL(TPD_ERR_ARG, "cuda matmul_swiglu: M=%d ldx=%d ld_out=%d for a %d x %d weight", a->M, a->ldx,
                    ld_out, N, K);
  if (a->M == 0 || F == 0) return TPD_OK;
  if (a->M <= c->gemv_max_m) return gemv_swiglu(c, a, out, ld_out);
  TPD_TRY(tpd_cuda_reserve(c, &c->gu_scratch, &c->gu_scratch_bytes, (size_t)a->M * N * 2, "matmul_swiglu scratch"));
  const tpd_status st =
      tpd_cuda_lt_matmul(c, a->M, N, K, a->x, a->ldx, a->w->data, tpd_cuda_ldw(K), c->gu_scratch, N, 0);
  if (st == TPD_ERR_UNSUPPORTED) return gemv_swiglu(c, a, out, ld_out);
  TPD_TRY(st);
  TPD_TRY(tpd_cuda_bias_add(c, c->gu_scratch, N, 0, a->bias, a->M, N));
  return tpd_cuda_swiglu_launch(c, a->M, F, c->gu_scratch, N, out, ld_out);
}
