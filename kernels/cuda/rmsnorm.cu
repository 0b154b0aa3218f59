/* rmsnorm with the fused residual add: for each of T rows,
 *   x += delta (when delta != NULL; x is stored back, rounded to bf16)
 *   y  = x * (1 / sqrt(mean(x^2) + eps)) * w
 * bf16 x, delta, y; f32 w; fp32 sums.  One block of 256 threads per row;
 * 16-byte accesses (8 elements per thread per step) when D % 8 == 0 and the
 * pointers are aligned, element accesses otherwise.  The second pass
 * re-reads the x this same thread just wrote (L1/L2 hits, no barrier
 * needed for them). */
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

#define RMS_THREADS 256

static __device__ __forceinline__ float rms_block_sum(float v, float *red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = tpd_warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = lane < RMS_THREADS / 32 ? red[lane] : 0.0f;
  return tpd_warp_sum(t); /* every warp computes the same total */
}

static __global__ void __launch_bounds__(RMS_THREADS) rmsnorm_kernel(uint16_t *x, const uint16_t *delta,
                                                                   const float *w, uint16_t *y, int D, float eps,
                                                                   int vec) {
  __shared__ float red[RMS_THREADS / 32];
  const size_t row = (size_t)blockIdx.x * D;
  uint16_t *xr = x + row;
  uint16_t *yr = y + row;
  const uint16_t *dr = delta ? delta + row : NULL;
  float ss = 0.0f;
  if (vec) {
    const int n8 = D / 8;
    for (int c = threadIdx.x; c < n8; c += RMS_THREADS) {
      uint4 xv = *(const uint4 *)(xr + 8 * c);
      if (dr) {
        const uint4 dv = *(const uint4 *)(dr + 8 * c);
        xv.x = tpd_pack_bf16x2(tpd_bf16_lo(xv.x) + tpd_bf16_lo(dv.x), tpd_bf16_hi(xv.x) + tpd_bf16_hi(dv.x));
        xv.y = tpd_pack_bf16x2(tpd_bf16_lo(xv.y) + tpd_bf16_lo(dv.y), tpd_bf16_hi(xv.y) + tpd_bf16_hi(dv.y));
        xv.z = tpd_pack_bf16x2(tpd_bf16_lo(xv.z) + tpd_bf16_lo(dv.z), tpd_bf16_hi(xv.z) + tpd_bf16_hi(dv.z));
        xv.w = tpd_pack_bf16x2(tpd_bf16_lo(xv.w) + tpd_bf16_lo(dv.w), tpd_bf16_hi(xv.w) + tpd_bf16_hi(dv.w));
        *(uint4 *)(xr + 8 * c) = xv;
      }
#pragma unroll
      for (int e = 0; e < 8; e++) {
        const float f = tpd_u4_elem(xv, e);
        ss = fmaf(f, f, ss);
      }
    }
  } else {
    for (int i = threadIdx.x; i < D; i += RMS_THREADS) {
      float f = tpd_bf16_f32(xr[i]);
      if (dr) {
        const uint16_t h = tpd_f32_bf16(f + tpd_bf16_f32(dr[i]));
        xr[i] = h;
        f = tpd_bf16_f32(h);
      }
      ss = fmaf(f, f, ss);
    }
  }
  const float r = 1.0f / sqrtf(rms_block_sum(ss, red) / (float)D + eps);
  if (vec) {
    const int n8 = D / 8;
    for (int c = threadIdx.x; c < n8; c += RMS_THREADS) {
      const uint4 xv = *(const uint4 *)(xr + 8 * c);
      const float4 w0 = *(const float4 *)(w + 8 * c), w1 = *(const float4 *)(w + 8 * c + 4);
      uint4 o;
      o.x = tpd_pack_bf16x2(tpd_bf16_lo(xv.x) * r * w0.x, tpd_bf16_hi(xv.x) * r * w0.y);
      o.y = tpd_pack_bf16x2(tpd_bf16_lo(xv.y) * r * w0.z, tpd_bf16_hi(xv.y) * r * w0.w);
      o.z = tpd_pack_bf16x2(tpd_bf16_lo(xv.z) * r * w1.x, tpd_bf16_hi(xv.z) * r * w1.y);
      o.w = tpd_pack_bf16x2(tpd_bf16_lo(xv.w) * r * w1.z, tpd_bf16_hi(xv.w) * r * w1.w);
      *(uint4 *)(yr + 8 * c) = o;
    }
  } else {
    for (int i = threadIdx.x; i < D; i += RMS_THREADS) yr[i] = tpd_f32_bf16(tpd_bf16_f32(xr[i]) * r * w[i]);
  }
}

extern "C" tpd_status tpd_cuda_rmsnorm(tpd_backend *be, const tpd_rmsnorm_args *a) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!a || !a->x || !a->w || !a->y || a->T < 0 || a->D <= 0)
    return TPD_FAIL(TPD_ERR_ARG, "cuda rmsnorm: x, w, y and T >= 0, D > 0 are required");
  if (a->T == 0) return TPD_OK;
  const int vec = a->D % 8 == 0 && tpd_aligned16(a->x) && tpd_aligned16(a->y) && tpd_aligned16(a->w) &&
                  (!a->delta || tpd_aligned16(a->delta));
  rmsnorm_kernel<<<(unsigned)a->T, RMS_THREADS, 0, c->stream>>>((uint16_t *)a->x, (const uint16_t *)a->delta, a->w,
                                                                (uint16_t *)a->y, a->D, a->eps, vec);
  TPD_CUDA_CHECK_LAUNCH("rmsnorm_kernel");
  return TPD_OK;
}
