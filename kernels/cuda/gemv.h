/* The decode GEMV body shared by matmul.cu (plain) and matmul_swiglu.cu
 * (gate/up with the SwiGLU epilogue).  Include from .cu files only.
 *
 *   Y[m, n] = sum_k X[m, k] W[n, k]  (+ bias[n]),  m < M <= 16
 *
 * Launch: 256 threads = 8 warps per block; each warp owns GEMV_R = 4 weight
 * rows (swiglu: 2 gate rows and the 2 matching up rows) and walks its K
 * range 256 elements at a time, each lane loading 16 bytes (8 bf16) of each
 * of its rows (U such steps per iteration, so 4U independent 16-byte weight
 * loads are in flight per lane) and the matching 8 elements of each X row.
 * fp32 accumulators acc[r][m] live in registers (all indices are
 * compile-time after unrolling: MT, U and SWIGLU are literals at every call
 * site), reduced across the warp with shuffles at the end.
 *
 * grid.x = ceil(rows / (8 warps * rows per warp)), grid.y = S K-splits.  With
 * S = 1 the warp writes Y (bias, dtype conversion, SwiGLU) directly; with
 * S > 1 it writes fp32 partials [S][M][N] and a reduce kernel finishes. */
#ifndef TPD_CUDA_GEMV_H
#define TPD_CUDA_GEMV_H

#include <stdint.h>

#include "kernels/cuda/cuda_util.h"

#define GEMV_WARPS 8
#define GEMV_THREADS (GEMV_WARPS * 32)
#define GEMV_R 4       /* weight rows per warp */
#define GEMV_KSTEP 256 /* K elements per warp step: 32 lanes x 8 */
#define GEMV_MAX_U 2   /* unrolled K steps */
#define GEMV_MAX_MT 16 /* rows of X per launch */

typedef struct {
  const uint16_t *x; /* [M, ldx] bf16 */
  int ldx;
  const uint16_t *w; /* [N, ldw] bf16, ldw % 8 == 0, zero padding */
  int ldw;
  int M, N, K; /* N: weight rows (swiglu: 2F) */
  int F;       /* swiglu: outputs per row of X */
  const float *bias; /* [N] or NULL */
  void *y;           /* plain: [M, ldy] bf16 or f32; swiglu: [M, ldy] bf16 */
  int ldy;
  int y_f32;
  float *partial;   /* [S][M][N] when S > 1, else NULL */
  int k_per_split;  /* multiple of GEMV_KSTEP */
  int x_vec;        /* every X row is 16-byte aligned */
} tpd_gemv_params;

/* Eight consecutive X elements k..k+7 of one row; zeros past K. */
static __device__ __forceinline__ uint4 gemv_load_x8(const uint16_t *row, int k, int K, int vec) {
  if (vec && k + 8 <= K) return __ldg((const uint4 *)(row + k));
  uint32_t h[8];
#pragma unroll
  for (int e = 0; e < 8; e++) h[e] = k + e < K ? (uint32_t)__ldg(row + k + e) : 0u;
  return make_uint4(h[0] | (h[1] << 16), h[2] | (h[3] << 16), h[4] | (h[5] << 16), h[6] | (h[7] << 16));
}

static __device__ __forceinline__ float gemv_dot8(const uint4 w, const uint4 x, float acc) {
  acc = fmaf(tpd_bf16_lo(w.x), tpd_bf16_lo(x.x), acc);
  acc = fmaf(tpd_bf16_hi(w.x), tpd_bf16_hi(x.x), acc);
  acc = fmaf(tpd_bf16_lo(w.y), tpd_bf16_lo(x.y), acc);
  acc = fmaf(tpd_bf16_hi(w.y), tpd_bf16_hi(x.y), acc);
  acc = fmaf(tpd_bf16_lo(w.z), tpd_bf16_lo(x.z), acc);
  acc = fmaf(tpd_bf16_hi(w.z), tpd_bf16_hi(x.z), acc);
  acc = fmaf(tpd_bf16_lo(w.w), tpd_bf16_lo(x.w), acc);
  acc = fmaf(tpd_bf16_hi(w.w), tpd_bf16_hi(x.w), acc);
  return acc;
}

/* MT: rows of X this variant handles (runtime M <= MT); U: unrolled K steps;
 * SWIGLU: 0 plain, 1 gate/up pairs.  All three are literals at the call. */
static __device__ __forceinline__ void gemv_body(const tpd_gemv_params p, const int MT, const int U,
                                                 const int SWIGLU) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wg = blockIdx.x * GEMV_WARPS + warp;
  const int split = blockIdx.y;
  const int half_r = GEMV_R / 2;

  /* plain: rows row0 .. row0+3; swiglu: gate rows j0, j0+1 and up rows F+j0, F+j0+1 */
  const int row0 = SWIGLU ? wg * half_r : wg * GEMV_R;
  const int n_valid = (SWIGLU ? p.F : p.N) - row0; /* rows r < n_valid exist (swiglu: r % 2) */
  const uint16_t *wg_base = p.w + (size_t)row0 * p.ldw;
  const uint16_t *wu_base = SWIGLU ? p.w + ((size_t)p.F + row0) * p.ldw : wg_base;
  int row[GEMV_R];
  bool ok[GEMV_R];
  int roff[GEMV_R]; /* element offset of row r from its base */
#pragma unroll
  for (int r = 0; r < GEMV_R; r++) {
    const int rr = SWIGLU ? r % half_r : r;
    ok[r] = rr < n_valid;
    row[r] = SWIGLU && r >= half_r ? p.F + row0 + rr : row0 + rr;
    roff[r] = ok[r] ? rr * p.ldw : 0;
  }

  const int k0 = split * p.k_per_split;
  const int k1 = min(p.K, k0 + p.k_per_split);

  float acc[GEMV_R][GEMV_MAX_MT];
#pragma unroll
  for (int r = 0; r < GEMV_R; r++)
#pragma unroll
    for (int m = 0; m < GEMV_MAX_MT; m++) acc[r][m] = 0.0f;

  for (int kb = k0 + lane * 8; kb < k1; kb += GEMV_KSTEP * U) {
    uint4 wv[GEMV_MAX_U][GEMV_R];
    /* all weight loads of this iteration first: 4U in flight per lane */
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int r = 0; r < GEMV_R; r++) {
        const int k = kb + u * GEMV_KSTEP;
        const uint16_t *base = SWIGLU && r >= half_r ? wu_base : wg_base;
        wv[u][r] = ok[r] && k < k1 ? tpd_ld_stream16(base + roff[r] + k) : make_uint4(0u, 0u, 0u, 0u);
      }
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int k = kb + u * GEMV_KSTEP;
      if (k < k1) {
#pragma unroll
        for (int m = 0; m < MT; m++) {
          if (m < p.M) {
            const uint4 xv = gemv_load_x8(p.x + (size_t)m * (size_t)p.ldx, k, p.K, p.x_vec);
#pragma unroll
            for (int r = 0; r < GEMV_R; r++) acc[r][m] = gemv_dot8(wv[u][r], xv, acc[r][m]);
          }
        }
      }
    }
  }

  /* every lane ends with the warp's sums; lane (i % 32) writes value i */
#pragma unroll
  for (int r = 0; r < GEMV_R; r++)
#pragma unroll
    for (int m = 0; m < MT; m++)
      if (m < p.M) acc[r][m] = tpd_warp_sum(acc[r][m]);

  if (p.partial) {
#pragma unroll
    for (int r = 0; r < GEMV_R; r++)
#pragma unroll
      for (int m = 0; m < MT; m++)
        if (lane == ((r * MT + m) & 31) && ok[r] && m < p.M)
          p.partial[((size_t)split * p.M + m) * (size_t)p.N + row[r]] = acc[r][m];
    return;
  }
  if (SWIGLU) {
#pragma unroll
    for (int r = 0; r < half_r; r++)
#pragma unroll
      for (int m = 0; m < MT; m++)
        if (lane == ((r * MT + m) & 31) && ok[r] && m < p.M) {
          float g = acc[r][m], u = acc[r + half_r][m];
          if (p.bias) {
            g += p.bias[row[r]];
            u += p.bias[row[r + half_r]];
          }
          ((uint16_t *)p.y)[(size_t)m * p.ldy + row[r]] = tpd_f32_bf16(tpd_silu_mul(g, u));
        }
  } else {
#pragma unroll
    for (int r = 0; r < GEMV_R; r++)
#pragma unroll
      for (int m = 0; m < MT; m++)
        if (lane == ((r * MT + m) & 31) && ok[r] && m < p.M) {
          float v = acc[r][m];
          if (p.bias) v += p.bias[row[r]];
          const size_t at = (size_t)m * p.ldy + row[r];
          if (p.y_f32) ((float *)p.y)[at] = v;
          else ((uint16_t *)p.y)[at] = tpd_f32_bf16(v);
        }
  }
}

/* Rows of X per launch for M rows: 1, 2, 4, 8 or 16, and its variant index. */
static inline int tpd_gemv_variant(int M) { return M <= 1 ? 0 : M <= 2 ? 1 : M <= 4 ? 2 : M <= 8 ? 3 : 4; }

#endif
