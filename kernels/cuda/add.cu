/* add: x[i] += y[i] for i < n_elems in the activation dtype (bf16: the sum
 * rounded once from fp32; f32 in the float32-activation mode).  Grid-stride
 * over 8-element chunks (vector accesses) when both pointers are 16-byte
 * aligned; the tail and unaligned buffers go element by element. */
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

template <typename T>
static __global__ void __launch_bounds__(256) add_kernel(T *x, const T *y, size_t n, int vec) {
  const size_t stride = (size_t)gridDim.x * blockDim.x, first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  size_t done = 0;
  if (vec) {
    const size_t n8 = n / 8;
    for (size_t c = first; c < n8; c += stride) {
      const tpd_v8<T> a = tpd_v8<T>::load(x + 8 * c), b = tpd_v8<T>::load(y + 8 * c);
      float s[8];
#pragma unroll
      for (int e = 0; e < 8; e++) s[e] = a[e] + b[e];
      tpd_v8<T>::pack(s).store(x + 8 * c);
    }
    done = n8 * 8;
  }
  for (size_t i = done + first; i < n; i += stride)
    x[i] = tpd_act<T>::put(tpd_act<T>::get(x[i]) + tpd_act<T>::get(y[i]));
}

template <typename T>
static tpd_status add_launch(tpd_cuda *c, void *x, const void *y, size_t n_elems, const char *name) {
  const int vec = tpd_aligned16(x) && tpd_aligned16(y);
  size_t blocks = ((vec ? n_elems / 8 : n_elems) + 255) / 256;
  if (blocks > (size_t)c->n_sm * 8) blocks = (size_t)c->n_sm * 8;
  if (blocks < 1) blocks = 1;
  const auto k = add_kernel<T>;
  k<<<(unsigned)blocks, 256, 0, c->stream>>>((T *)x, (const T *)y, n_elems, vec);
  TPD_CUDA_CHECK_LAUNCH(c, name);
  return TPD_OK;
}

extern "C" tpd_status tpd_cuda_add(tpd_backend *be, void *x, const void *y, size_t n_elems) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (n_elems == 0) return TPD_OK;
  if (!x || !y) return TPD_FAIL(TPD_ERR_ARG, "cuda add: x and y are required");
  if (c->act == TPD_F32) return add_launch<float>(c, x, y, n_elems, "add_kernel<f32>");
  return add_launch<uint16_t>(c, x, y, n_elems, "add_kernel<bf16>");
}
