/* The decode GEMV shared by matmul.cu (plain) and matmul_swiglu.cu (gate/up
 * with the SwiGLU epilogue): the kernel body, and tpd_cuda_gemv, the one
 * host launch path of both (defined in matmul.cu).  Include from .cu files
 * only.
 *
 *   Y[m, n] = sum_k X[m, k] W[n, k]  (+ bias[n]),  m < M <= 16
 *
 * Launch: 256 threads = 8 warps per block; each warp owns GEMV_R = 4 weight
 * rows (swiglu: 2 gate rows and the 2 matching up rows) and walks its K
 * range 256 elements at a time, each lane loading 8 elements of each of its
 * rows (16 bytes of bf16 or 32 of f32; U such steps per iteration, so 4U
 * independent weight loads are in flight per lane) and the matching 8
 * elements of each X row.  fp32 accumulators acc[r][m] live in registers
 * (all indices are compile-time after unrolling: MT, U and SWIGLU are
 * template arguments), reduced across the warp with shuffles at the end.
 *
 * Element types: TX (X, and the swiglu output) and TW (W) are uint16_t
 * (bf16) or float: (bf16, bf16) in the default mode, (f32, bf16) and
 * (f32, f32) in the float32-activation mode.
 *
 * grid.x = ceil(rows / (8 warps * rows per warp)), grid.y = S K-splits.  With
 * S = 1 the warp writes Y (bias, dtype conversion, SwiGLU) directly; with
 * S > 1 it writes fp32 partials [S][M][N] and a reduce kernel finishes. */
#ifndef TPD_CUDA_GEMV_H
#define TPD_CUDA_GEMV_H

#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

#define GEMV_WARPS 8
#define GEMV_THREADS (GEMV_WARPS * 32)
#define GEMV_R 4       /* weight rows per warp */
#define GEMV_KSTEP 256 /* K elements per warp step: 32 lanes x 8 */
#define GEMV_MAX_U 2   /* unrolled K steps */
#define GEMV_MAX_MT 16 /* rows of X per launch */

typedef struct {
  const uint16_t *x; /* [M, ldx] TX; typed bf16 even for f32 X (cast in the body): as `const void *` the
                      * bf16 16-row variants took ~40 more registers */
  int ldx;
  const void *w; /* [N, ldw] TW, ldw % 8 == 0, zero padding */
  int ldw;
  int M, N, K; /* N: weight rows (swiglu: 2F) */
  int F;       /* swiglu: outputs per row of X */
  const float *bias; /* [N] or NULL */
  void *y;           /* plain: [M, ldy] bf16 or f32 (y_f32); swiglu: [M, ldy] TX */
  int ldy;
  int y_f32;
  float *partial;   /* [S][M][N] when S > 1, else NULL */
  int k_per_split;  /* multiple of GEMV_KSTEP */
  int x_vec;        /* every X row is 16-byte aligned */
} tpd_gemv_params;

/* Eight consecutive X elements k..k+7 of one row; zeros past K. */
template <typename TX>
static __device__ __forceinline__ tpd_v8<TX> gemv_load_x8(const TX *row, int k, int K, int vec) {
  if (vec && k + 8 <= K) return tpd_v8<TX>::load_ldg(row + k);
  return tpd_v8<TX>::load_tail(row + k, K - k);
}

template <typename TW, typename TX>
static __device__ __forceinline__ float gemv_dot8(const tpd_v8<TW> &w, const tpd_v8<TX> &x, float acc) {
#pragma unroll
  for (int e = 0; e < 8; e++) acc = fmaf(w[e], x[e], acc);
  return acc;
}
/* bf16 x bf16: the same products in the same order, written on the raw words
 * (the generic form costs the 2- and 16-row swiglu variants 15-30 registers) */
static __device__ __forceinline__ float gemv_dot8(const tpd_v8<uint16_t> &wv, const tpd_v8<uint16_t> &xv, float acc) {
  const uint4 w = wv.a, x = xv.a;
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
 * SWIGLU: 0 plain, 1 gate/up pairs. */
template <typename TX, typename TW, int MT, int U, int SWIGLU>
static __device__ __forceinline__ void gemv_body(const tpd_gemv_params p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wg = blockIdx.x * GEMV_WARPS + warp;
  const int split = blockIdx.y;
  const int half_r = GEMV_R / 2;

  /* plain: rows row0 .. row0+3; swiglu: gate rows j0, j0+1 and up rows F+j0, F+j0+1 */
  const int row0 = SWIGLU ? wg * half_r : wg * GEMV_R;
  const int n_valid = (SWIGLU ? p.F : p.N) - row0; /* rows r < n_valid exist (swiglu: r % 2) */
  const TW *wg_base = (const TW *)p.w + (size_t)row0 * p.ldw;
  const TW *wu_base = SWIGLU ? (const TW *)p.w + ((size_t)p.F + row0) * p.ldw : wg_base;
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
    tpd_v8<TW> wv[U][GEMV_R];
    /* all weight loads of this iteration first: 4U in flight per lane */
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int r = 0; r < GEMV_R; r++) {
        const int k = kb + u * GEMV_KSTEP;
        const TW *base = SWIGLU && r >= half_r ? wu_base : wg_base;
        wv[u][r] = ok[r] && k < k1 ? tpd_v8<TW>::load_stream(base + roff[r] + k) : tpd_v8<TW>::zero();
      }
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int k = kb + u * GEMV_KSTEP;
      if (k < k1) {
#pragma unroll
        for (int m = 0; m < MT; m++) {
          if (m < p.M) {
            const tpd_v8<TX> xv = gemv_load_x8<TX>((const TX *)p.x + (size_t)m * (size_t)p.ldx, k, p.K, p.x_vec);
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
          ((TX *)p.y)[(size_t)m * p.ldy + row[r]] = tpd_act<TX>::put(tpd_silu_mul(g, u));
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

template <typename TX, typename TW, int MT, int U, int SWIGLU>
static __global__ void __launch_bounds__(GEMV_THREADS) gemv_kernel(const tpd_gemv_params p) {
  gemv_body<TX, TW, MT, U, SWIGLU>(p);
}

typedef void (*tpd_gemv_fn)(const tpd_gemv_params);

/* The five row variants (1, 2, 4, 8, 16 rows of X) of one (TX, TW) pair.
 * bf16 weights unroll two K steps for 1 and 2 rows (8 independent 16-byte
 * weight loads per lane); f32 weights load 32 bytes per row and step, so one
 * step already has 8 in flight. */
#define TPD_GEMV_VARIANTS(TX, TW, SWIGLU)                                                              \
  {                                                                                                    \
    gemv_kernel<TX, TW, 1, sizeof(TW) == 2 ? 2 : 1, SWIGLU>, gemv_kernel<TX, TW, 2, sizeof(TW) == 2 ? 2 : 1, SWIGLU>, \
        gemv_kernel<TX, TW, 4, 1, SWIGLU>, gemv_kernel<TX, TW, 8, 1, SWIGLU>, gemv_kernel<TX, TW, 16, 1, SWIGLU> \
  }

/* Element sizes of a combo (see tpd_cuda_gemv_combo): X, then W. */
static inline int tpd_gemv_x_size(int combo) { return combo == 0 ? 2 : 4; }
static inline int tpd_gemv_w_size(int combo) { return combo == 2 ? 4 : 2; }
static const char *const tpd_gemv_combo_name[TPD_GEMV_N_COMBOS] = {"bf16 x, bf16 w", "f32 x, bf16 w", "f32 x, f32 w"};
/* Kernel names for error messages: [combo][variant], with the prefix P. */
#define TPD_GEMV_NAMES(P)                                                                                   \
  {{P "_m1<bf16 x, bf16 w>", P "_m2<bf16 x, bf16 w>", P "_m4<bf16 x, bf16 w>", P "_m8<bf16 x, bf16 w>",      \
    P "_m16<bf16 x, bf16 w>"},                                                                              \
   {P "_m1<f32 x, bf16 w>", P "_m2<f32 x, bf16 w>", P "_m4<f32 x, bf16 w>", P "_m8<f32 x, bf16 w>",          \
    P "_m16<f32 x, bf16 w>"},                                                                               \
   {P "_m1<f32 x, f32 w>", P "_m2<f32 x, f32 w>", P "_m4<f32 x, f32 w>", P "_m8<f32 x, f32 w>", P "_m16<f32 x, f32 w>"}}

/* Rows of X per launch for M rows: 1, 2, 4, 8 or 16, and its variant index. */
static inline int tpd_gemv_variant(int M) { return M <= 1 ? 0 : M <= 2 ? 1 : M <= 4 ? 2 : M <= 8 ? 3 : 4; }

/* ---- host: the one launch path of both GEMV flavours ---- */

/* Split-K finish: sums the S partials in a fixed order, then the epilogue. */
typedef void (*tpd_gemv_reduce_fn)(const tpd_gemv_params, int S);

/* A GEMV flavour: what tpd_cuda_gemv needs to launch it. */
typedef struct {
  const char *name; /* "gemv" or "gemv_swiglu", for the debug line */
  int swiglu;       /* the kernels' SWIGLU: 0 plain, 1 gate/up pairs */
  const tpd_gemv_fn (*kernels)[TPD_GEMV_N_VARIANTS];      /* [combo][variant] */
  const char *const (*kernel_names)[TPD_GEMV_N_VARIANTS]; /* [combo][variant] */
  tpd_gemv_reduce_fn reduce[TPD_GEMV_N_COMBOS];
  const char *reduce_names[TPD_GEMV_N_COMBOS];
} tpd_gemv_op;

/* Y = the op over all a->M rows of a->x and the weight a->w (bias a->bias),
 * GEMV_MAX_MT rows per pass, split over K when the rows alone would not fill
 * the GPU (matmul.cu).  y: [M, ldy], f32 when y_f32, else bf16 (swiglu: y
 * has the activation dtype, y_f32 = f32 activations). */
tpd_status tpd_cuda_gemv(tpd_cuda *c, const tpd_gemv_op *op, int combo, const tpd_matmul_args *a, void *y, int ldy,
                         int y_f32);

#endif
