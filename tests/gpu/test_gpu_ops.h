/* Shared by the four files of test_gpu_ops (every CUDA op against its CPU
 * twin; the plan of the checks: test_gpu_ops.c): the tolerances, the random
 * activation inputs, and each file's entry point. */
#ifndef TPD_TEST_GPU_OPS_H
#define TPD_TEST_GPU_OPS_H

#define TU_WITH_CUDA /* the device helpers of tests/testutil.h */
#include "tests/testutil.h"

#define TOL_BF16 1e-2
/* f32 vs the f32 CPU twin: the two sum in different orders; each sum's
 * rounding error is ~2^-24 sqrt(K) relative (K <= 9000 here: ~6e-6), and
 * the rest (rsqrt, expf, double-rounded rope) is ~1e-7. */
#define TOL_F32 2e-5

static inline double tol_of(const tpd_backend *gpu) { return gpu->ops->act_dtype == TPD_F32 ? TOL_F32 : TOL_BF16; }
static inline const char *act_name(const tpd_backend *gpu) {
  return gpu->ops->act_dtype == TPD_F32 ? "f32 " : "bf16";
}

/* uniform in [-a, a), never zero, not rounded to bf16 */
static inline float raw_uniform(float a) {
  const double u = (double)(tu_next() >> 11) * (1.0 / 9007199254740992.0);
  const float v = (float)((2.0 * u - 1.0) * a);
  return v != 0.0f ? v : a * 0.5f;
}

/* An activation value for this backend: bf16-exact for bf16 activations, a
 * full f32 value for f32 activations. */
static inline float act_uniform(const tpd_backend *gpu, float a) {
  return gpu->ops->act_dtype == TPD_F32 ? raw_uniform(a) : tu_bf16_uniform(a);
}

static inline void act_fill(const tpd_backend *gpu, float *x, size_t n, float a) {
  for (size_t i = 0; i < n; i++) x[i] = act_uniform(gpu, a);
}

/* test_gpu_ops_dense.c: matmul (default, GEMV and cuBLASLt paths), the fused
 * gate/up + SwiGLU, rmsnorm (+ residual add), SwiGLU, row gather, argmax.
 * gpu16 forces the GEMV up to 16 rows, gpu_lt cuBLASLt for every M; full = 0:
 * a smaller set of shapes (the f32 mode). */
void run_dense_ops(tpd_backend *cpu, tpd_backend *gpu, tpd_backend *gpu16, tpd_backend *gpu_lt, int full);

/* test_gpu_ops_logit.c: logit_stats (max, sum of exp, top-k of f32 logits);
 * full = 0: fewer shapes. */
void run_logit_ops(tpd_backend *cpu, tpd_backend *gpu, int full);

/* test_gpu_ops_attention.c: rope + KV append and attention over a paged KV
 * cache (decode, prefill, mixed, around the split size, graph replays). */
void run_attention_ops(tpd_backend *cpu, tpd_backend *gpu, int full);
/* the attention split plan (attention_split.h) on its own */
void test_attention_plan(void);

#endif
