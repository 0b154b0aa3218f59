/* The CPU emulation of cuBLASLt (tests/gpu/emu): the documented
 * column-major product D = alpha op(A) op(B) + beta C, computed in double and
 * run in stream order; EMU_LT_NONE=1 makes the heuristic find no algorithm. */
#include <stdlib.h>
#include <string.h>

#include "cublasLt.h"
#include "cuda_bf16.h"
#include "emu_internal.h"

using namespace emu;

struct emu_lt {
  int dummy;
};
struct emu_lt_desc {
  int ta = 0, tb = 0;
};
struct emu_lt_layout {
  cudaDataType t;
  uint64_t rows, cols;
  int64_t ld;
};
struct emu_lt_pref {
  int dummy;
};

static double lt_load(const void *p, cudaDataType t, size_t i) {
  if (t == CUDA_R_32F) return ((const float *)p)[i];
  const uint16_t h = ((const uint16_t *)p)[i];
  if (t == CUDA_R_16BF) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
  emu_die("cuBLASLt emulation: unexpected data type");
}

static void lt_store(void *p, cudaDataType t, size_t i, double v) {
  if (t == CUDA_R_32F) {
    ((float *)p)[i] = (float)v;
    return;
  }
  if (t == CUDA_R_16BF) {
    ((uint16_t *)p)[i] = __bfloat16_as_ushort(__float2bfloat16_rn((float)v));
    return;
  }
  emu_die("cuBLASLt emulation: unexpected data type");
}

extern "C" {

const char *cublasLtGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    default: return "CUBLAS_STATUS_(emulated error)";
  }
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
  *h = new emu_lt;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t ct, cudaDataType_t scale) {
  if (ct != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  *d = new emu_lt_desc;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *buf,
                                              size_t n) {
  if (n != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
  const int op = *(const cublasOperation_t *)buf == CUBLAS_OP_T;
  if (a == CUBLASLT_MATMUL_DESC_TRANSA) d->ta = op;
  else if (a == CUBLASLT_MATMUL_DESC_TRANSB) d->tb = op;
  else return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
  if (ld < (int64_t)rows) return CUBLAS_STATUS_INVALID_VALUE;
  *l = new emu_lt_layout{t, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
  *p = new emu_lt_pref;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a, const void *buf,
                                                    size_t n) {
  (void)p, (void)buf;
  if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && n != sizeof(uint64_t)) return CUBLAS_STATUS_INVALID_VALUE;
  if (a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && n != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t p, int want,
                                              cublasLtMatmulHeuristicResult_t *res, int *n) {
  (void)h, (void)d, (void)a, (void)b, (void)c, (void)dl, (void)p;
  *n = 0;
  if (want < 1) return CUBLAS_STATUS_INVALID_VALUE;
  if (getenv("EMU_LT_NONE")) return CUBLAS_STATUS_NOT_SUPPORTED;
  memset(res, 0, sizeof *res);
  res->state = CUBLAS_STATUS_SUCCESS;
  *n = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                              const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes, cudaStream_t s) {
  (void)h, (void)algo, (void)ws, (void)ws_bytes;
  const uint64_t m = d->ta ? la->cols : la->rows, k = d->ta ? la->rows : la->cols;
  const uint64_t kb = d->tb ? lb->cols : lb->rows, n = d->tb ? lb->rows : lb->cols;
  if (kb != k || ld->rows != m || ld->cols != n || lc->rows != m || lc->cols != n) return CUBLAS_STATUS_INVALID_VALUE;
  const float al = *(const float *)alpha, be = *(const float *)beta;
  const emu_lt_desc dd = *d;
  const emu_lt_layout a = *la, b = *lb, cl = *lc, dl = *ld;
  const cudaError_t e = submit(s, [=]() {
    for (uint64_t j = 0; j < n; j++)
      for (uint64_t i = 0; i < m; i++) {
        double acc = 0;
        for (uint64_t q = 0; q < k; q++) {
          const double x = lt_load(A, a.t, dd.ta ? q + i * (uint64_t)a.ld : i + q * (uint64_t)a.ld);
          const double y = lt_load(B, b.t, dd.tb ? j + q * (uint64_t)b.ld : q + j * (uint64_t)b.ld);
          acc += x * y;
        }
        double v = al * acc;
        if (be != 0.0f) v += be * lt_load(C, cl.t, i + j * (uint64_t)cl.ld);
        lt_store(D, dl.t, i + j * (uint64_t)dl.ld, v);
      }
  }, "cublasLtMatmul");
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // extern "C"
