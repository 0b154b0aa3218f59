/* Internal state of the CUDA backend, shared by its .cu files (each op's
 * launcher lives in its own file; backend_cuda.cu fills the ops table).
 *
 * Memory: activations and the KV cache share one dtype, chosen when the
 * backend is created (tpd_backend_opts.activations): bf16 by default, f32 in
 * the float32-activation mode (docs/cuda.md, "Numerics policy").  Weights
 * are row-major with the row stride padded to a multiple of 8 elements so
 * that every row starts 16-byte aligned: W[N, K] is stored as
 * [N, tpd_cuda_ldw(K)] with zeros in the padding, in bf16 -- except in the
 * f32 mode, where F32 and F16 checkpoints are stored as f32 (BF16 ones stay
 * bf16).  Norm weights, biases and logits are f32.
 *
 * Workspaces (cuBLASLt, split-K partials, attention partials, the gate/up
 * scratch of the large-M fused SwiGLU): ops.reserve, which the engine calls
 * at create with its memory plan, sizes all four once, in one allocation
 * (ws_block); after it they never grow, and an op needing more fails naming
 * the workspace (a planning bug).  Without a reserve (the op tests) the
 * attention and gate/up workspaces grow on demand by allocating a larger
 * buffer; the old one is kept (freed at destroy) because a graph captured
 * earlier may still use it.  Growth inside a capture is allowed in relaxed
 * capture mode (the default) and refused in global mode. */
#ifndef TPD_CUDA_BACKEND_H
#define TPD_CUDA_BACKEND_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_check.h"

#define TPD_CUDA_N_EVENTS 64   /* event ids 0..63 for event_record / event_wait */
#define TPD_LT_CACHE 64        /* cuBLASLt plans kept (least recently used is replaced) */
#define TPD_GEMV_HARD_MAX_M 16 /* the GEMV kernels handle at most 16 rows of X per pass */
/* The crossover between the GEMV kernels and cuBLASLt, in rows of X
 * (TPD_GEMV_MAX_M overrides it, 0..16; 0 sends every matmul to cuBLASLt).
 * Default 1, measured on an H200 (2026-12-04, tests/gpu/device_check.sh, the
 * Llama-3.1-8B shapes at TP 1 and 8, docs/cuda.md "First run on a GPU"): the
 * GEMV's time grows about linearly with M (M = 8 took 2.4-3.6x M = 1), while
 * cuBLASLt's stays flat from M = 8 to 16 at 0.93-1.24x the GEMV's M = 1 time;
 * at M = 8 the GEMV was 2.2-3.8x slower than cuBLASLt.  The first default, 8,
 * was a datasheet estimate that the GEMV stays memory-bound to M = 8. */
#define TPD_GEMV_MAX_M_DEFAULT 1
/* Positions each attention warp loads per round before using them
 * (TPD_ATT_PP, 2 or 4; Dh > 128 always takes 2).  Measured on the H200
 * (docs/cuda.md, "Attention, the schedules tried"): 4 against 2 at batch
 * 64, ctx 4096 32.6 against 47.7 ms per step; 8 was tried (44.4 ms) and
 * not kept. */
#define TPD_ATT_PP_DEFAULT 4
#define TPD_GEMV_N_VARIANTS 5  /* rows of X per pass: 1, 2, 4, 8, 16 */
#define TPD_GEMV_N_COMBOS 3    /* (X, W) dtypes: (bf16, bf16), (f32, bf16), (f32, f32) */

/* Row stride (elements) of a stored weight with K columns. */
static inline int tpd_cuda_ldw(int K) { return (K + 7) / 8 * 8; }

/* One cached cuBLASLt matmul: descriptors, layouts and the chosen algorithm
 * for one (M, N, K, strides, alignments, output dtype). */
typedef struct {
  int used;
  unsigned long long stamp; /* last use, for replacement */
  int M, N, K, ldx, ldw, ldy, y_f32;
  int in_f32; /* 0: bf16 X and W; 1: f32 X and W */
  int align_x, align_w, align_y;
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t lw, lx, ly;
  cublasLtMatmulAlgo_t algo;
  size_t ws_bytes;
  int ok; /* 0: the heuristic found no algorithm (cached so it is asked once) */
} tpd_lt_plan;

typedef struct tpd_cuda {
  tpd_backend_ops ops;
  int device, n_sm;
  tpd_dtype act;     /* activations and KV cache: TPD_BF16 or TPD_F32 (ops.act_dtype) */
  int sync_launches; /* TPD_CUDA_SYNC=1: synchronise and check after every launch */
  cudaStream_t stream;      /* compute */
  cudaStream_t comm_stream; /* collectives */
  cudaEvent_t events[TPD_CUDA_N_EVENTS];
  cudaEvent_t join; /* graph_end: joins the comm stream back into the capture */
  int capturing;
  int capture_broken; /* an op failed inside the capture: graph_end fails */
  cudaStreamCaptureMode capture_mode;
  void **retired; /* outgrown workspaces, freed at destroy */
  int n_retired, cap_retired;

  cublasLtHandle_t lt;
  void *lt_ws;
  size_t lt_ws_bytes;
  tpd_lt_plan plans[TPD_LT_CACHE];
  unsigned long long plan_clock;

  float *splitk; /* GEMV split-K partials, fixed size */
  size_t splitk_bytes;
  void *att_ws; /* attention partials, grows */
  size_t att_ws_bytes;
  void *gu_scratch; /* large-M matmul_swiglu gate/up, grows */
  size_t gu_scratch_bytes;
  void *ws_block;   /* reserve: the one allocation holding the four workspaces above, or NULL */
  size_t ws_block_bytes;
  int planned;      /* reserve ran: workspaces are fixed */
  int captured_any; /* a graph was instantiated (it may name the workspaces of the time) */

  int gemv_max_m;                                  /* M <= this: GEMV kernels; above: cuBLASLt */
  int att_pp;                                      /* attention: K/V positions per warp and round (2 or 4) */
  int gemv_blocks_per_sm[2][TPD_GEMV_N_COMBOS][TPD_GEMV_N_VARIANTS]; /* occupancy, [plain|swiglu][combo][variant]; 0 = not asked */
} tpd_cuda;

#ifdef __cplusplus
extern "C" {
#endif

/* Makes *buf hold at least need bytes of device memory (at least doubling
 * when it grows; the old buffer is retired, not freed).  Refused inside a
 * global-mode capture, and after ops.reserve (the memory plan): then a need
 * above the planned size is an error naming the workspace and both sizes. */
tpd_status tpd_cuda_reserve(tpd_cuda *c, void **buf, size_t *cap, size_t need, const char *what);

/* ---- ops (one .cu file each) ---- */
tpd_status tpd_cuda_matmul(tpd_backend *be, const tpd_matmul_args *a);
tpd_status tpd_cuda_matmul_swiglu(tpd_backend *be, const tpd_matmul_args *a, void *out, int ld_out);
tpd_status tpd_cuda_rmsnorm(tpd_backend *be, const tpd_rmsnorm_args *a);
tpd_status tpd_cuda_rope_kv(tpd_backend *be, const tpd_rope_kv_args *a);
tpd_status tpd_cuda_attention(tpd_backend *be, const tpd_attention_args *a);
tpd_status tpd_cuda_swiglu(tpd_backend *be, const tpd_swiglu_args *a);
tpd_status tpd_cuda_gather_rows(tpd_backend *be, void *dst, const void *src, const int32_t *rows, int n, int D);
tpd_status tpd_cuda_argmax(tpd_backend *be, const tpd_argmax_args *a);
tpd_status tpd_cuda_logit_stats(tpd_backend *be, const tpd_logit_stats_args *a);
tpd_status tpd_cuda_weight_view(tpd_backend *be, const tpd_weight *w, int row0, int n_rows, tpd_weight *out);
tpd_status tpd_cuda_load_weight(tpd_backend *be, const void *host, tpd_dtype dtype, int n_rows, int n_cols,
                                tpd_weight *out);

/* ---- shared launchers ---- */
/* matmul.cu: the GEMV kernel family for activations `act` and weights `w`
 * (0: bf16/bf16, 1: f32/bf16, 2: f32/f32), or -1 when the pair is not one. */
int tpd_cuda_gemv_combo(tpd_dtype act, tpd_dtype w);
/* swiglu.cu: out[t, :F] (stride ld_out) = silu(gu[t, :F]) * gu[t, F:2F] (stride ld_gu), act dtype. */
tpd_status tpd_cuda_swiglu_launch(tpd_cuda *c, int T, int F, const void *gu, int ld_gu, void *out, int ld_out);
/* matmul.cu: y[m, n] += bias[n] for m < M, n < N (y bf16 or f32, row stride ldy). */
tpd_status tpd_cuda_bias_add(tpd_cuda *c, void *y, int ldy, int y_f32, const float *bias, int M, int N);
/* matmul.cu: the number of K-splits (and *k_per_split) for a GEMV needing
 * n_warps_needed warps for its rows, at blocks_per_sm resident blocks. */
int tpd_cuda_gemv_split(const tpd_cuda *c, int blocks_per_sm, int n_warps_needed, int K, size_t partial_bytes_per_split,
                        int *k_per_split);
/* cublaslt.cu: Y[M, N] (row stride ldy, bf16 or f32) = X[M, K] (stride ldx) . W[N, K]^T
 * (stride ldw), X and W both bf16 or both f32 (in_f32; f32 inputs need an
 * f32 Y).  Returns TPD_ERR_UNSUPPORTED, recording no error, for any other
 * dtype mix or when cuBLASLt offers no algorithm for the shape (the caller
 * falls back to the GEMV kernels). */
tpd_status tpd_cuda_lt_matmul(tpd_cuda *c, int M, int N, int K, const void *x, int ldx, tpd_dtype x_dt, const void *w,
                              int ldw, tpd_dtype w_dt, void *y, int ldy, int y_f32);
void tpd_cuda_lt_destroy(tpd_cuda *c);

#ifdef __cplusplus
}
#endif
#endif
