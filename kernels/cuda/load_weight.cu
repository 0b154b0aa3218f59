/* load_weight: host rows of F32, BF16 or F16 -> row-major on the device,
 * row stride padded to tpd_cuda_ldw(K) (a multiple of 8 elements, so every
 * row is 16-byte aligned for the GEMV loads), zeros in the padding.  Stored
 * dtype: bf16, except with f32 activations (the float32-activation mode),
 * where F32 and F16 rows are stored as f32 (F16 -> F32 is exact) and only
 * BF16 rows stay bf16.  Rows already in the stored dtype are copied as they
 * are (one strided copy); others go through a device staging buffer of at
 * most 64 MB and a conversion kernel (to bf16: round to nearest even).
 * weight_view (rows of a stored weight) is here too: the same layout, a
 * pointer offset. */
#include <cuda_fp16.h>
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

static __global__ void __launch_bounds__(256) convert_rows_kernel(const void *src, int src_f16, int rows, int K,
                                                                 void *dst, int to_f32, int ldw) {
  const size_t n = (size_t)rows * K;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const int r = (int)(i / K), k = (int)(i % K);
    const float f = src_f16 ? __half2float(__ushort_as_half(((const uint16_t *)src)[i])) : ((const float *)src)[i];
    if (to_f32) ((float *)dst)[(size_t)r * ldw + k] = f;
    else ((uint16_t *)dst)[(size_t)r * ldw + k] = tpd_f32_bf16(f);
  }
}

enum { STAGE_BYTES = 64 << 20 };

/* Converts host rows of `dtype` (F32 or F16) into dst of `to` (BF16 or F32). */
static tpd_status upload_converted(tpd_cuda *c, const void *host, tpd_dtype dtype, int n_rows, int K, void *dst,
                                   tpd_dtype to, int ldw) {
  const size_t esz = tpd_dtype_size(dtype), row_bytes = (size_t)K * esz, osz = tpd_dtype_size(to);
  size_t chunk = row_bytes ? STAGE_BYTES / row_bytes : (size_t)n_rows;
  if (chunk < 1) chunk = 1;
  if (chunk > (size_t)n_rows) chunk = (size_t)n_rows;
  void *stage = NULL;
  TPD_CUDA_CHECK(cudaMalloc(&stage, chunk * row_bytes));
  tpd_status st = TPD_OK;
  for (size_t r0 = 0; r0 < (size_t)n_rows && st == TPD_OK; r0 += chunk) {
    const int cnt = (int)((size_t)n_rows - r0 < chunk ? (size_t)n_rows - r0 : chunk);
    TPD_CUDA_CHECK_GOTO(cudaMemcpyAsync(stage, (const char *)host + r0 * row_bytes, (size_t)cnt * row_bytes,
                                        cudaMemcpyHostToDevice, c->stream),
                        st, done);
    size_t blocks = ((size_t)cnt * K + 255) / 256;
    if (blocks > (size_t)c->n_sm * 16) blocks = (size_t)c->n_sm * 16;
    convert_rows_kernel<<<(unsigned)(blocks ? blocks : 1), 256, 0, c->stream>>>(
        stage, dtype == TPD_F16, cnt, K, (char *)dst + r0 * ldw * osz, to == TPD_F32, ldw);
    st = tpd_cuda_after_launch(c, "convert_rows_kernel", __FILE__, __LINE__);
    if (st != TPD_OK) goto done;
    /* the staging buffer is reused by the next chunk */
    TPD_CUDA_CHECK_GOTO(cudaStreamSynchronize(c->stream), st, done);
  }
done:
  TPD_CUDA_WARN(cudaFree(stage));
  return st;
}

extern "C" tpd_status tpd_cuda_load_weight(tpd_backend *be, const void *host, tpd_dtype dtype, int n_rows, int n_cols,
                                           tpd_weight *out) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!out || n_rows < 0 || n_cols < 0 || (!host && (size_t)n_rows * n_cols > 0))
    return TPD_FAIL(TPD_ERR_ARG, "cuda load_weight: host rows, out and n_rows, n_cols >= 0 are required");
  if (dtype != TPD_F32 && dtype != TPD_BF16 && dtype != TPD_F16)
    return TPD_FAIL(TPD_ERR_ARG, "cuda load_weight: dtype %d (expected F32, BF16 or F16)", (int)dtype);
  /* f32 activations keep F32/F16 weights exact; bf16 activations use bf16 weights */
  const tpd_dtype sd = c->act == TPD_F32 && dtype != TPD_BF16 ? TPD_F32 : TPD_BF16;
  const size_t osz = tpd_dtype_size(sd);
  const int ldw = tpd_cuda_ldw(n_cols);
  const size_t n_bytes = (size_t)n_rows * ldw * osz;
  void *d = NULL;
  tpd_status st = TPD_OK;
  if (cudaMalloc(&d, n_bytes ? n_bytes : 256) != cudaSuccess) {
    (void)cudaGetLastError();
    return TPD_FAIL(TPD_ERR_OOM, "cuda load_weight: out of device memory for a %d x %d weight (%zu bytes, device %d)",
                    n_rows, n_cols, n_bytes, c->device);
  }
  if (ldw != n_cols && n_bytes) TPD_CUDA_CHECK_GOTO(cudaMemsetAsync(d, 0, n_bytes, c->stream), st, fail);
  if (n_bytes && n_cols) {
    if (dtype == sd)
      TPD_CUDA_CHECK_GOTO(cudaMemcpy2DAsync(d, (size_t)ldw * osz, host, (size_t)n_cols * osz, (size_t)n_cols * osz,
                                            (size_t)n_rows, cudaMemcpyHostToDevice, c->stream),
                          st, fail);
    else
      TPD_TRY_GOTO(upload_converted(c, host, dtype, n_rows, n_cols, d, sd, ldw), st, fail);
  }
  TPD_CUDA_CHECK_GOTO(cudaStreamSynchronize(c->stream), st, fail);
  out->data = d;
  out->dtype = sd;
  out->n_rows = n_rows;
  out->n_cols = n_cols;
  return TPD_OK;
fail:
  TPD_CUDA_WARN(cudaFree(d));
  return st;
}

/* Rows [row0, row0 + n_rows) of a stored weight: the same rows, a pointer
 * offset (every row starts 16-byte aligned, so any row0 works). */
extern "C" tpd_status tpd_cuda_weight_view(tpd_backend *be, const tpd_weight *w, int row0, int n_rows,
                                           tpd_weight *out) {
  (void)be;
  if (!w || !out || row0 < 0 || n_rows < 1 || row0 + n_rows > w->n_rows ||
      (w->dtype != TPD_BF16 && w->dtype != TPD_F32))
    return TPD_FAIL(TPD_ERR_ARG, "cuda weight_view: rows [%d, +%d) of a %d-row weight", row0, n_rows,
                    w ? w->n_rows : 0);
  *out = *w;
  out->data = (const char *)w->data + (size_t)row0 * tpd_cuda_ldw(w->n_cols) * tpd_dtype_size(w->dtype);
  out->n_rows = n_rows;
  return TPD_OK;
}
