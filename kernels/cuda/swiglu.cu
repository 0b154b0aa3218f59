/* swiglu: out[t, i] = silu(gu[t, i]) * gu[t, F + i] for t < T, i < F; in and
 * out in the activation dtype (bf16, or f32 in the float32-activation mode),
 * fp32 arithmetic in the CPU twin's order (g / (1 + e^-g) * u).
 * Grid-stride over 8-element chunks with vector accesses when F % 8 == 0
 * and the rows are 16-byte aligned, element accesses otherwise. */
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

template <typename T>
static __global__ void __launch_bounds__(256) swiglu_vec_kernel(const T *gu, int ld_gu, T *out, int ld_out, int T_,
                                                               int F) {
  const int n8 = F / 8;
  const size_t total = (size_t)T_ * n8;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int t = (int)(i / n8), c = (int)(i % n8);
    const T *g = gu + (size_t)t * ld_gu + 8 * c;
    const tpd_v8<T> gv = tpd_v8<T>::load(g), uv = tpd_v8<T>::load(g + F);
    float o[8];
#pragma unroll
    for (int e = 0; e < 8; e++) o[e] = tpd_silu_mul(gv[e], uv[e]);
    tpd_v8<T>::pack(o).store(out + (size_t)t * ld_out + 8 * c);
  }
}

template <typename T>
static __global__ void __launch_bounds__(256) swiglu_kernel(const T *gu, int ld_gu, T *out, int ld_out, int T_, int F) {
  const size_t total = (size_t)T_ * F;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int t = (int)(i / F), j = (int)(i % F);
    const T *g = gu + (size_t)t * ld_gu;
    out[(size_t)t * ld_out + j] = tpd_act<T>::put(tpd_silu_mul(tpd_act<T>::get(g[j]), tpd_act<T>::get(g[F + j])));
  }
}

template <typename T>
static tpd_status swiglu_launch(tpd_cuda *c, int T_, int F, const void *gu, int ld_gu, void *out, int ld_out,
                                const char *vec_name, const char *name) {
  const int vec = F % 8 == 0 && ld_gu % 8 == 0 && ld_out % 8 == 0 && tpd_aligned16(gu) && tpd_aligned16(out);
  const size_t n = vec ? (size_t)T_ * (F / 8) : (size_t)T_ * F;
  size_t blocks = (n + 255) / 256;
  if (blocks > (size_t)c->n_sm * 8) blocks = (size_t)c->n_sm * 8;
  const auto k = vec ? swiglu_vec_kernel<T> : swiglu_kernel<T>;
  k<<<(unsigned)blocks, 256, 0, c->stream>>>((const T *)gu, ld_gu, (T *)out, ld_out, T_, F);
  TPD_CUDA_CHECK_LAUNCH(c, vec ? vec_name : name);
  return TPD_OK;
}

extern "C" tpd_status tpd_cuda_swiglu_launch(tpd_cuda *c, int T, int F, const void *gu, int ld_gu, void *out,
                                             int ld_out) {
  if (T <= 0 || F <= 0) return TPD_OK;
  if (c->act == TPD_F32)
    return swiglu_launch<float>(c, T, F, gu, ld_gu, out, ld_out, "swiglu_vec_kernel<f32>", "swiglu_kernel<f32>");
  return swiglu_launch<uint16_t>(c, T, F, gu, ld_gu, out, ld_out, "swiglu_vec_kernel<bf16>", "swiglu_kernel<bf16>");
}

extern "C" tpd_status tpd_cuda_swiglu(tpd_backend *be, const tpd_swiglu_args *a) {
  if (!a || a->T < 0 || a->F < 0 || (a->T > 0 && a->F > 0 && (!a->gu || !a->out)))
    return TPD_FAIL(TPD_ERR_ARG, "cuda swiglu: gu, out and T, F >= 0 are required");
  return tpd_cuda_swiglu_launch((tpd_cuda *)be->impl, a->T, a->F, a->gu, 2 * a->F, a->out, a->F);
}
