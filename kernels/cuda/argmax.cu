/* argmax: per row of f32 logits [M, N], the maximum value and the index of
 * its first occurrence plus idx_offset.  NaN never wins; a row with no value
 * above -inf reports index 0 (+ offset), as the CPU twin does.  One block of
 * 512 threads per row; each thread scans its elements in increasing index
 * order (16-byte loads when the rows are aligned), keeping its first
 * maximum, then (value, index) pairs are reduced preferring the larger value
 * and, on ties, the smaller index. */
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

#define AM_THREADS 512

static __device__ __forceinline__ void am_take(float v, int i, float *bv, int *bi) {
  if (v > *bv || (v == *bv && i < *bi)) {
    *bv = v;
    *bi = i;
  }
}

static __global__ void __launch_bounds__(AM_THREADS) argmax_kernel(const float *logits, int N, float *val,
                                                                  int32_t *idx, int idx_offset, int vec) {
  __shared__ float sv[AM_THREADS / 32];
  __shared__ int si[AM_THREADS / 32];
  const float *l = logits + (size_t)blockIdx.x * N;
  float bv = -INFINITY;
  int bi = INT_MAX;
  int n = 0;
  if (vec) {
    for (int c = threadIdx.x; c < N / 4; c += AM_THREADS) {
      const float4 v = ((const float4 *)l)[c];
      if (v.x > bv) bv = v.x, bi = 4 * c;
      if (v.y > bv) bv = v.y, bi = 4 * c + 1;
      if (v.z > bv) bv = v.z, bi = 4 * c + 2;
      if (v.w > bv) bv = v.w, bi = 4 * c + 3;
    }
    n = N / 4 * 4;
  }
  for (int i = n + threadIdx.x; i < N; i += AM_THREADS) {
    const float v = l[i];
    if (v > bv) bv = v, bi = i;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(TPD_FULL_MASK, bv, o);
    const int oi = __shfl_xor_sync(TPD_FULL_MASK, bi, o);
    am_take(ov, oi, &bv, &bi);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = bv;
    si[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    bv = lane < AM_THREADS / 32 ? sv[lane] : -INFINITY;
    bi = lane < AM_THREADS / 32 ? si[lane] : INT_MAX;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(TPD_FULL_MASK, bv, o);
      const int oi = __shfl_xor_sync(TPD_FULL_MASK, bi, o);
      am_take(ov, oi, &bv, &bi);
    }
    if (lane == 0) {
      val[blockIdx.x] = bv;
      idx[blockIdx.x] = (bi == INT_MAX ? 0 : bi) + idx_offset;
    }
  }
}

extern "C" tpd_status tpd_cuda_argmax(tpd_backend *be, const tpd_argmax_args *a) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!a || a->M < 0 || a->N < 0 || (a->M > 0 && (!a->logits || !a->val || !a->idx)))
    return TPD_FAIL(TPD_ERR_ARG, "cuda argmax: logits, val, idx and M, N >= 0 are required");
  if (a->M == 0) return TPD_OK;
  const int vec = a->N % 4 == 0 && tpd_aligned16(a->logits);
  argmax_kernel<<<(unsigned)a->M, AM_THREADS, 0, c->stream>>>(a->logits, a->N, a->val, a->idx, a->idx_offset, vec);
  TPD_CUDA_CHECK_LAUNCH(c, "argmax_kernel");
  return TPD_OK;
}
