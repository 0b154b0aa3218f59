/* logit_stats: per row of f32 logits [M, N] (this rank's vocabulary slice),
 * the maximum, the sum of exp(logit - max) and the k largest logits with
 * their indices (+ idx_offset), largest first, equal values by lower index;
 * the rules are backend.h's (tpd_logit_stats_args) and the CPU twin's
 * (kernels/cpu/ops.c): a NaN makes max and sumexp NaN and is never a top-k
 * entry; a row with no value above -inf has sumexp 0; entries the row cannot
 * fill are (-inf, -1).
 *
 * One block of LS_THREADS threads per row.  Pass 1: each thread scans its
 * elements (16-byte loads when the rows are aligned) keeping a NaN-keeping
 * maximum and its own sorted top-LS_K list in registers (only compile-time
 * indices: an element that beats the list's last entry is carried down the
 * unrolled list by compare-and-swap).  The block maximum is reduced with
 * shuffles and shared memory.  Pass 2: each thread sums expf(l - max) in
 * f32, then a block sum (fixed order: deterministic).  Merge: k rounds; in
 * each, every thread offers the head of its list, the block picks the best
 * (value, then lower index) through shuffles and shared memory, and the
 * thread that owned it pops its head.  A thread can lose at most k <= LS_K
 * entries, so its list of LS_K never runs dry before the block's k are out. */
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

#define LS_THREADS 512
#define LS_WARPS (LS_THREADS / 32)
#define LS_K TPD_LOGIT_TOPK_MAX

/* (v, i) ranks before (bv, bi): larger value, then lower index; NaN never does */
static __device__ __forceinline__ int ls_better(float v, int i, float bv, int bi) {
  return v > bv || (v == bv && i < bi);
}

/* max that keeps a NaN from either side (fmaxf would drop it) */
static __device__ __forceinline__ float ls_max(float a, float b) { return (b > a || b != b) ? b : a; }

/* One element into a thread's running maximum and sorted list tv/ti[LS_K]. */
static __device__ __forceinline__ void ls_take(float v, int i, float *mx, float *tv, int *ti) {
  *mx = ls_max(*mx, v);
  if (!ls_better(v, i, tv[LS_K - 1], ti[LS_K - 1])) return;
#pragma unroll
  for (int j = 0; j < LS_K; j++) {
    if (ls_better(v, i, tv[j], ti[j])) { /* from here on the displaced entry is carried down */
      const float sv = tv[j];
      const int si = ti[j];
      tv[j] = v, ti[j] = i;
      v = sv, i = si;
    }
  }
}

static __global__ void __launch_bounds__(LS_THREADS) logit_stats_kernel(const float *logits, int N, int k,
                                                                       float *max_out, float *sumexp_out,
                                                                       float *top_val, int32_t *top_idx,
                                                                       int idx_offset, int vec) {
  __shared__ float s_max[LS_WARPS], s_sum[LS_WARPS], s_v[LS_WARPS];
  __shared__ int s_i[LS_WARPS];
  __shared__ int s_win;
  const float *l = logits + (size_t)blockIdx.x * N;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float tv[LS_K];
  int ti[LS_K];
#pragma unroll
  for (int j = 0; j < LS_K; j++) tv[j] = -INFINITY, ti[j] = INT_MAX; /* (-inf, INT_MAX): empty */
  float mx = -INFINITY;

  /* pass 1: maximum and per-thread top list */
  int n0 = 0;
  if (vec) {
    for (int c = threadIdx.x; c < N / 4; c += LS_THREADS) {
      const float4 v = ((const float4 *)l)[c];
      ls_take(v.x, 4 * c, &mx, tv, ti);
      ls_take(v.y, 4 * c + 1, &mx, tv, ti);
      ls_take(v.z, 4 * c + 2, &mx, tv, ti);
      ls_take(v.w, 4 * c + 3, &mx, tv, ti);
    }
    n0 = N / 4 * 4;
  }
  for (int i = n0 + threadIdx.x; i < N; i += LS_THREADS) ls_take(l[i], i, &mx, tv, ti);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = ls_max(mx, __shfl_xor_sync(TPD_FULL_MASK, mx, o));
  if (lane == 0) s_max[warp] = mx;
  __syncthreads();
  mx = s_max[0];
#pragma unroll
  for (int w = 1; w < LS_WARPS; w++) mx = ls_max(mx, s_max[w]); /* every thread, same order: same value */

  /* pass 2: sum of exp(l - max); 0 when nothing is above -inf, NaN follows a NaN max */
  float s = 0.0f;
  if (mx != -INFINITY) {
    if (vec) {
      for (int c = threadIdx.x; c < N / 4; c += LS_THREADS) {
        const float4 v = ((const float4 *)l)[c];
        s += expf(v.x - mx) + expf(v.y - mx) + expf(v.z - mx) + expf(v.w - mx);
      }
    }
    for (int i = n0 + threadIdx.x; i < N; i += LS_THREADS) s += expf(l[i] - mx);
  }
  s = tpd_warp_sum(s);
  if (lane == 0) s_sum[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.0f;
    for (int w = 0; w < LS_WARPS; w++) t += s_sum[w];
    max_out[blockIdx.x] = mx;
    sumexp_out[blockIdx.x] = t;
  }

  /* merge: k rounds of a block-wide best over the threads' list heads */
  for (int r = 0; r < k; r++) {
    float cv = tv[0];
    int ci = ti[0];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(TPD_FULL_MASK, cv, o);
      const int oi = __shfl_xor_sync(TPD_FULL_MASK, ci, o);
      if (ls_better(ov, oi, cv, ci)) cv = ov, ci = oi;
    }
    if (lane == 0) s_v[warp] = cv, s_i[warp] = ci;
    __syncthreads();
    if (warp == 0) {
      cv = lane < LS_WARPS ? s_v[lane] : -INFINITY;
      ci = lane < LS_WARPS ? s_i[lane] : INT_MAX;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(TPD_FULL_MASK, cv, o);
        const int oi = __shfl_xor_sync(TPD_FULL_MASK, ci, o);
        if (ls_better(ov, oi, cv, ci)) cv = ov, ci = oi;
      }
      if (lane == 0) {
        s_win = ci;
        top_val[(size_t)blockIdx.x * k + r] = cv;
        top_idx[(size_t)blockIdx.x * k + r] = ci == INT_MAX ? -1 : ci + idx_offset;
      }
    }
    __syncthreads();
    const int win = s_win;
    if (win != INT_MAX && ti[0] == win) { /* this thread's head was taken: pop it */
#pragma unroll
      for (int j = 0; j < LS_K - 1; j++) tv[j] = tv[j + 1], ti[j] = ti[j + 1];
      tv[LS_K - 1] = -INFINITY, ti[LS_K - 1] = INT_MAX;
    }
  }
}

extern "C" tpd_status tpd_cuda_logit_stats(tpd_backend *be, const tpd_logit_stats_args *a) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!a || a->M < 0 || a->N < 0 || a->k < 0 || a->k > TPD_LOGIT_TOPK_MAX)
    return TPD_FAIL(TPD_ERR_ARG, "cuda logit_stats: M, N >= 0 and k in 0..%d are required", TPD_LOGIT_TOPK_MAX);
  if (a->M > 0 && (!a->logits || !a->max || !a->sumexp || (a->k > 0 && (!a->top_val || !a->top_idx))))
    return TPD_FAIL(TPD_ERR_ARG,
                    "cuda logit_stats: logits, max, sumexp (and top_val, top_idx when k > 0) are required");
  if (a->M == 0) return TPD_OK;
  const int vec = a->N % 4 == 0 && tpd_aligned16(a->logits);
  logit_stats_kernel<<<(unsigned)a->M, LS_THREADS, 0, c->stream>>>(a->logits, a->N, a->k, a->max, a->sumexp,
                                                                    a->top_val, a->top_idx, a->idx_offset, vec);
  TPD_CUDA_CHECK_LAUNCH(c, "logit_stats_kernel");
  return TPD_OK;
}
