/* add: x[i] += y[i] for i < n_elems, bf16, the sum rounded once from fp32.
 * Grid-stride over 8-element chunks (16-byte accesses) when both pointers
 * are aligned; the tail and unaligned buffers go element by element. */
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

static __global__ void __launch_bounds__(256) add_kernel(uint16_t *x, const uint16_t *y, size_t n, int vec) {
  const size_t stride = (size_t)gridDim.x * blockDim.x, first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  size_t done = 0;
  if (vec) {
    const size_t n8 = n / 8;
    for (size_t c = first; c < n8; c += stride) {
      uint4 a = *(const uint4 *)(x + 8 * c);
      const uint4 b = *(const uint4 *)(y + 8 * c);
      a.x = tpd_pack_bf16x2(tpd_bf16_lo(a.x) + tpd_bf16_lo(b.x), tpd_bf16_hi(a.x) + tpd_bf16_hi(b.x));
      a.y = tpd_pack_bf16x2(tpd_bf16_lo(a.y) + tpd_bf16_lo(b.y), tpd_bf16_hi(a.y) + tpd_bf16_hi(b.y));
      a.z = tpd_pack_bf16x2(tpd_bf16_lo(a.z) + tpd_bf16_lo(b.z), tpd_bf16_hi(a.z) + tpd_bf16_hi(b.z));
      a.w = tpd_pack_bf16x2(tpd_bf16_lo(a.w) + tpd_bf16_lo(b.w), tpd_bf16_hi(a.w) + tpd_bf16_hi(b.w));
      *(uint4 *)(x + 8 * c) = a;
    }
    done = n8 * 8;
  }
  for (size_t i = done + first; i < n; i += stride) x[i] = tpd_f32_bf16(tpd_bf16_f32(x[i]) + tpd_bf16_f32(y[i]));
}

extern "C" tpd_status tpd_cuda_add(tpd_backend *be, void *x, const void *y, size_t n_elems) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (n_elems == 0) return TPD_OK;
  if (!x || !y) return TPD_FAIL(TPD_ERR_ARG, "cuda add: x and y are required");
  const int vec = tpd_aligned16(x) && tpd_aligned16(y);
  size_t blocks = ((vec ? n_elems / 8 : n_elems) + 255) / 256;
  if (blocks > (size_t)c->n_sm * 8) blocks = (size_t)c->n_sm * 8;
  if (blocks < 1) blocks = 1;
  add_kernel<<<(unsigned)blocks, 256, 0, c->stream>>>((uint16_t *)x, (const uint16_t *)y, n_elems, vec);
  TPD_CUDA_CHECK_LAUNCH("add_kernel");
  return TPD_OK;
}
