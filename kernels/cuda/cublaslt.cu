/* cuBLASLt for the large-M matmuls (prefill, big batches), with the
 * descriptors, layouts and heuristic result cached per shape so a decode or
 * prefill step never rebuilds them, and one workspace allocated at create.
 *
 * Row-major Y[M, N] = X[M, K] . W[N, K]^T is computed as the column-major
 * product Y^T[N, M] = op(A) . B with
 *   A = W as a column-major [K, N] matrix (ld = ldw), op(A) = A^T
 *   B = X as a column-major [K, M] matrix (ld = ldx), op(B) = B
 *   C = D = Y^T, column-major [N, M] (ld = ldy)
 * A and B both bf16 (D bf16 or f32) or both f32 (D f32: the float32-
 * activation mode with F32 weights); fp32 compute and scale
 * (CUBLAS_COMPUTE_32F: no TF32).  Any other mix (f32 X with bf16 W) is
 * refused with TPD_ERR_UNSUPPORTED and runs on the GEMV kernels. */
#include <string.h>

#include "kernels/cuda/cuda_backend.h"

/* Largest power of two (<= 256) dividing the address: the alignment the
 * heuristic may assume. */
static uint32_t ptr_align(const void *p) {
  uint32_t a = 256;
  while (a > 1 && ((uintptr_t)p % a) != 0) a >>= 1;
  return a;
}

static void plan_release(tpd_lt_plan *pl) {
  if (!pl->used) return;
  if (pl->ly) TPD_CUBLAS_WARN(cublasLtMatrixLayoutDestroy(pl->ly));
  if (pl->lx) TPD_CUBLAS_WARN(cublasLtMatrixLayoutDestroy(pl->lx));
  if (pl->lw) TPD_CUBLAS_WARN(cublasLtMatrixLayoutDestroy(pl->lw));
  if (pl->desc) TPD_CUBLAS_WARN(cublasLtMatmulDescDestroy(pl->desc));
  memset(pl, 0, sizeof *pl);
}

extern "C" void tpd_cuda_lt_destroy(tpd_cuda *c) {
  for (int i = 0; i < TPD_LT_CACHE; i++) plan_release(&c->plans[i]);
}

/* Builds descriptors and asks the heuristic; pl->ok = 0 when it has nothing. */
static tpd_status plan_build(tpd_cuda *c, tpd_lt_plan *pl) {
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  TPD_CUBLAS_CHECK(cublasLtMatmulDescCreate(&pl->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  TPD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t));
  TPD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n));
  const cudaDataType_t in_t = pl->in_f32 ? CUDA_R_32F : CUDA_R_16BF;
  TPD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&pl->lw, in_t, (uint64_t)pl->K, (uint64_t)pl->N, pl->ldw));
  TPD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&pl->lx, in_t, (uint64_t)pl->K, (uint64_t)pl->M, pl->ldx));
  TPD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&pl->ly, pl->y_f32 ? CUDA_R_32F : CUDA_R_16BF, (uint64_t)pl->N,
                                              (uint64_t)pl->M, pl->ldy));
  cublasLtMatmulPreference_t pref = NULL;
  TPD_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = c->lt_ws_bytes;
  const uint32_t aw = (uint32_t)pl->align_w, ax = (uint32_t)pl->align_x, ay = (uint32_t)pl->align_y;
  cublasStatus_t bs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  if (bs == CUBLAS_STATUS_SUCCESS)
    bs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aw, sizeof aw);
  if (bs == CUBLAS_STATUS_SUCCESS)
    bs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ax, sizeof ax);
  if (bs == CUBLAS_STATUS_SUCCESS)
    bs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ay, sizeof ay);
  if (bs == CUBLAS_STATUS_SUCCESS)
    bs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ay, sizeof ay);
  cublasLtMatmulHeuristicResult_t res;
  memset(&res, 0, sizeof res);
  int n_res = 0;
  cublasStatus_t hs = CUBLAS_STATUS_SUCCESS;
  if (bs == CUBLAS_STATUS_SUCCESS)
    hs = cublasLtMatmulAlgoGetHeuristic(c->lt, pl->desc, pl->lw, pl->lx, pl->ly, pl->ly, pref, 1, &res, &n_res);
  TPD_CUBLAS_WARN(cublasLtMatmulPreferenceDestroy(pref));
  TPD_CUBLAS_CHECK(bs);
  /* NOT_SUPPORTED means "no algorithm for this problem": the caller falls back */
  if (hs != CUBLAS_STATUS_SUCCESS && hs != CUBLAS_STATUS_NOT_SUPPORTED) TPD_CUBLAS_CHECK(hs);
  pl->ok = hs == CUBLAS_STATUS_SUCCESS && n_res > 0 && res.state == CUBLAS_STATUS_SUCCESS;
  if (pl->ok) {
    pl->algo = res.algo;
    pl->ws_bytes = res.workspaceSize;
  } else {
    TPD_INFO("cuBLASLt has no algorithm for M=%d N=%d K=%d (ldx %d, ldw %d, ldy %d, %s in, %s out); using the GEMV "
             "kernels",
             pl->M, pl->N, pl->K, pl->ldx, pl->ldw, pl->ldy, pl->in_f32 ? "f32" : "bf16", pl->y_f32 ? "f32" : "bf16");
  }
  return TPD_OK;
}

static tpd_status plan_get(tpd_cuda *c, const tpd_lt_plan *key, tpd_lt_plan **out) {
  tpd_lt_plan *victim = &c->plans[0];
  for (int i = 0; i < TPD_LT_CACHE; i++) {
    tpd_lt_plan *pl = &c->plans[i];
    if (pl->used && pl->M == key->M && pl->N == key->N && pl->K == key->K && pl->ldx == key->ldx &&
        pl->ldw == key->ldw && pl->ldy == key->ldy && pl->y_f32 == key->y_f32 && pl->in_f32 == key->in_f32 && pl->align_x == key->align_x &&
        pl->align_w == key->align_w && pl->align_y == key->align_y) {
      pl->stamp = ++c->plan_clock;
      *out = pl;
      return TPD_OK;
    }
    if (!pl->used) {
      if (victim->used) victim = pl;
    } else if (victim->used && pl->stamp < victim->stamp) {
      victim = pl;
    }
  }
  plan_release(victim);
  *victim = *key;
  victim->used = 1;
  victim->stamp = ++c->plan_clock;
  const tpd_status st = plan_build(c, victim);
  if (st != TPD_OK) {
    plan_release(victim);
    return st;
  }
  *out = victim;
  return TPD_OK;
}

extern "C" tpd_status tpd_cuda_lt_matmul(tpd_cuda *c, int M, int N, int K, const void *x, int ldx, tpd_dtype x_dt,
                                         const void *w, int ldw, tpd_dtype w_dt, void *y, int ldy, int y_f32) {
  const int in_f32 = x_dt == TPD_F32;
  /* cuBLASLt's fp32-compute types: bf16 x bf16 -> bf16/f32, f32 x f32 -> f32 */
  if (x_dt != w_dt || (x_dt != TPD_BF16 && x_dt != TPD_F32) || (in_f32 && !y_f32)) return TPD_ERR_UNSUPPORTED;
  tpd_lt_plan key;
  memset(&key, 0, sizeof key);
  key.M = M;
  key.N = N;
  key.K = K;
  key.ldx = ldx;
  key.ldw = ldw;
  key.ldy = ldy;
  key.y_f32 = y_f32;
  key.in_f32 = in_f32;
  key.align_x = (int)ptr_align(x);
  key.align_w = (int)ptr_align(w);
  key.align_y = (int)ptr_align(y);
  tpd_lt_plan *pl = NULL;
  TPD_TRY(plan_get(c, &key, &pl));
  if (!pl->ok) return TPD_ERR_UNSUPPORTED;
  const float alpha = 1.0f, beta = 0.0f;
  TPD_CUBLAS_CHECK(cublasLtMatmul(c->lt, pl->desc, &alpha, w, pl->lw, x, pl->lx, &beta, y, pl->ly, y, pl->ly,
                                  &pl->algo, c->lt_ws, c->lt_ws_bytes, c->stream));
  TPD_CUDA_CHECK_LAUNCH(c, "cublasLtMatmul");
  return TPD_OK;
}
