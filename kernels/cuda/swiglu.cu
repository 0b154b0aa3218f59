/* swiglu: out[t, i] = silu(gu[t, i]) * gu[t, F + i] for t < T, i < F; bf16 in
 * and out, fp32 arithmetic in the CPU twin's order (g / (1 + e^-g) * u).
 * Grid-stride over 8-element chunks with 16-byte accesses when F % 8 == 0
 * and the rows are aligned, element accesses otherwise. */
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

static __global__ void __launch_bounds__(256) swiglu_vec_kernel(const uint16_t *gu, int ld_gu, uint16_t *out,
                                                               int ld_out, int T, int F) {
  const int n8 = F / 8;
  const size_t total = (size_t)T * n8;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int t = (int)(i / n8), c = (int)(i % n8);
    const uint16_t *g = gu + (size_t)t * ld_gu + 8 * c;
    const uint4 gv = *(const uint4 *)g, uv = *(const uint4 *)(g + F);
    uint4 o;
    o.x = tpd_pack_bf16x2(tpd_silu_mul(tpd_bf16_lo(gv.x), tpd_bf16_lo(uv.x)), tpd_silu_mul(tpd_bf16_hi(gv.x), tpd_bf16_hi(uv.x)));
    o.y = tpd_pack_bf16x2(tpd_silu_mul(tpd_bf16_lo(gv.y), tpd_bf16_lo(uv.y)), tpd_silu_mul(tpd_bf16_hi(gv.y), tpd_bf16_hi(uv.y)));
    o.z = tpd_pack_bf16x2(tpd_silu_mul(tpd_bf16_lo(gv.z), tpd_bf16_lo(uv.z)), tpd_silu_mul(tpd_bf16_hi(gv.z), tpd_bf16_hi(uv.z)));
    o.w = tpd_pack_bf16x2(tpd_silu_mul(tpd_bf16_lo(gv.w), tpd_bf16_lo(uv.w)), tpd_silu_mul(tpd_bf16_hi(gv.w), tpd_bf16_hi(uv.w)));
    *(uint4 *)(out + (size_t)t * ld_out + 8 * c) = o;
  }
}

static __global__ void __launch_bounds__(256) swiglu_kernel(const uint16_t *gu, int ld_gu, uint16_t *out, int ld_out,
                                                           int T, int F) {
  const size_t total = (size_t)T * F;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int t = (int)(i / F), j = (int)(i % F);
    const uint16_t *g = gu + (size_t)t * ld_gu;
    out[(size_t)t * ld_out + j] = tpd_f32_bf16(tpd_silu_mul(tpd_bf16_f32(g[j]), tpd_bf16_f32(g[F + j])));
  }
}

extern "C" tpd_status tpd_cuda_swiglu_launch(tpd_cuda *c, int T, int F, const void *gu, int ld_gu, void *out,
                                             int ld_out) {
  if (T <= 0 || F <= 0) return TPD_OK;
  const int vec = F % 8 == 0 && ld_gu % 8 == 0 && ld_out % 8 == 0 && tpd_aligned16(gu) && tpd_aligned16(out);
  const size_t n = vec ? (size_t)T * (F / 8) : (size_t)T * F;
  size_t blocks = (n + 255) / 256;
  if (blocks > (size_t)c->n_sm * 8) blocks = (size_t)c->n_sm * 8;
  if (vec) {
    swiglu_vec_kernel<<<(unsigned)blocks, 256, 0, c->stream>>>((const uint16_t *)gu, ld_gu, (uint16_t *)out, ld_out, T, F);
    TPD_CUDA_CHECK_LAUNCH("swiglu_vec_kernel");
  } else {
    swiglu_kernel<<<(unsigned)blocks, 256, 0, c->stream>>>((const uint16_t *)gu, ld_gu, (uint16_t *)out, ld_out, T, F);
    TPD_CUDA_CHECK_LAUNCH("swiglu_kernel");
  }
  return TPD_OK;
}

extern "C" tpd_status tpd_cuda_swiglu(tpd_backend *be, const tpd_swiglu_args *a) {
  if (!a || a->T < 0 || a->F < 0 || (a->T > 0 && a->F > 0 && (!a->gu || !a->out)))
    return TPD_FAIL(TPD_ERR_ARG, "cuda swiglu: gu, out and T, F >= 0 are required");
  return tpd_cuda_swiglu_launch((tpd_cuda *)be->impl, a->T, a->F, a->gu, 2 * a->F, a->out, a->F);
}
