/* rmsnorm with the fused residual add: for each of T rows,
 *   x += delta (when delta != NULL; x is stored back in the activation dtype)
 *   y  = x * (1 / sqrt(mean(x^2) + eps)) * w
 * x, delta, y in the activation dtype (bf16, or f32 in the float32-activation
 * mode); f32 w; fp32 sums.  One block of 256 threads per row; vector
 * accesses (8 elements per thread per step) when D % 8 == 0 and the pointers
 * are 16-byte aligned, element accesses otherwise.  The norm is taken of the
 * stored (rounded) x.  The second pass re-reads the x this same thread just
 * wrote (L1/L2 hits, no barrier needed for them). */
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

template <typename T>
static __global__ void __launch_bounds__(RMS_THREADS) rmsnorm_kernel(T *x, const T *delta, const float *w, T *y, int D,
                                                                   float eps, int vec) {
  __shared__ float red[RMS_THREADS / 32];
  const size_t row = (size_t)blockIdx.x * D;
  T *xr = x + row;
  T *yr = y + row;
  const T *dr = delta ? delta + row : NULL;
  float ss = 0.0f;
  if (vec) {
    const int n8 = D / 8;
    for (int c = threadIdx.x; c < n8; c += RMS_THREADS) {
      tpd_v8<T> xv = tpd_v8<T>::load(xr + 8 * c);
      if (dr) {
        const tpd_v8<T> dv = tpd_v8<T>::load(dr + 8 * c);
        float s[8];
#pragma unroll
        for (int e = 0; e < 8; e++) s[e] = xv[e] + dv[e];
        xv = tpd_v8<T>::pack(s);
        xv.store(xr + 8 * c);
      }
#pragma unroll
      for (int e = 0; e < 8; e++) {
        const float f = xv[e];
        ss = fmaf(f, f, ss);
      }
    }
  } else {
    for (int i = threadIdx.x; i < D; i += RMS_THREADS) {
      float f = tpd_act<T>::get(xr[i]);
      if (dr) {
        const T h = tpd_act<T>::put(f + tpd_act<T>::get(dr[i]));
        xr[i] = h;
        f = tpd_act<T>::get(h);
      }
      ss = fmaf(f, f, ss);
    }
  }
  const float r = 1.0f / sqrtf(rms_block_sum(ss, red) / (float)D + eps);
  if (vec) {
    const int n8 = D / 8;
    for (int c = threadIdx.x; c < n8; c += RMS_THREADS) {
      const tpd_v8<T> xv = tpd_v8<T>::load(xr + 8 * c);
      const float4 w0 = *(const float4 *)(w + 8 * c), w1 = *(const float4 *)(w + 8 * c + 4);
      const float o[8] = {xv[0] * r * w0.x, xv[1] * r * w0.y, xv[2] * r * w0.z, xv[3] * r * w0.w,
                          xv[4] * r * w1.x, xv[5] * r * w1.y, xv[6] * r * w1.z, xv[7] * r * w1.w};
      tpd_v8<T>::pack(o).store(yr + 8 * c);
    }
  } else {
    for (int i = threadIdx.x; i < D; i += RMS_THREADS) yr[i] = tpd_act<T>::put(tpd_act<T>::get(xr[i]) * r * w[i]);
  }
}

template <typename T>
static tpd_status rmsnorm_launch(tpd_cuda *c, const tpd_rmsnorm_args *a, int vec, const char *name) {
  const auto k = rmsnorm_kernel<T>;
  k<<<(unsigned)a->T, RMS_THREADS, 0, c->stream>>>((T *)a->x, (const T *)a->delta, a->w, (T *)a->y, a->D, a->eps, vec);
  TPD_CUDA_CHECK_LAUNCH(c, name);
  return TPD_OK;
}

extern "C" tpd_status tpd_cuda_rmsnorm(tpd_backend *be, const tpd_rmsnorm_args *a) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!a || !a->x || !a->w || !a->y || a->T < 0 || a->D <= 0)
    return TPD_FAIL(TPD_ERR_ARG, "cuda rmsnorm: x, w, y and T >= 0, D > 0 are required");
  if (a->T == 0) return TPD_OK;
  const int vec = a->D % 8 == 0 && tpd_aligned16(a->x) && tpd_aligned16(a->y) && tpd_aligned16(a->w) &&
                  (!a->delta || tpd_aligned16(a->delta));
  if (c->act == TPD_F32) return rmsnorm_launch<float>(c, a, vec, "rmsnorm_kernel<f32>");
  return rmsnorm_launch<uint16_t>(c, a, vec, "rmsnorm_kernel<bf16>");
}
