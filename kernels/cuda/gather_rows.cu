/* gather_rows: dst[i, :] = src[rows[i], :] for i < n, width D, in the
 * activation dtype (bf16, or f32 in the float32-activation mode): a copy of
 * row_bytes = D * element size per row.  The row indices are host memory:
 * they travel inside the kernel's parameters (up to 64 per launch), so the
 * launch is capturable and needs no upload.  grid (rows in this launch), 256
 * threads; 16-byte copies when the row bytes are a multiple of 16 and both
 * buffers are aligned, element copies otherwise. */
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

#define GATHER_ROWS_PER_LAUNCH 64

typedef struct {
  int rows[GATHER_ROWS_PER_LAUNCH];
} gather_list;

/* E: the element type copied when the rows are not 16-byte multiples */
template <typename E>
static __global__ void __launch_bounds__(256) gather_rows_kernel(char *dst, const char *src, const gather_list list,
                                                                size_t row_bytes, int vec) {
  const int i = blockIdx.x;
  int r = 0;
  /* pick rows[i] with constant indices only (no local copy of the list) */
#pragma unroll
  for (int k = 0; k < GATHER_ROWS_PER_LAUNCH; k++)
    if (k == i) r = list.rows[k];
  const char *s = src + (size_t)r * row_bytes;
  char *d = dst + (size_t)i * row_bytes;
  if (vec) {
    for (size_t c = threadIdx.x; c < row_bytes / 16; c += blockDim.x) ((uint4 *)d)[c] = ((const uint4 *)s)[c];
  } else {
    for (size_t e = threadIdx.x; e < row_bytes / sizeof(E); e += blockDim.x) ((E *)d)[e] = ((const E *)s)[e];
  }
}

extern "C" tpd_status tpd_cuda_gather_rows(tpd_backend *be, void *dst, const void *src, const int32_t *rows, int n,
                                           int D) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (n < 0 || D < 0 || (n > 0 && (!dst || !src || !rows)))
    return TPD_FAIL(TPD_ERR_ARG, "cuda gather_rows: dst, src, host rows and n, D >= 0 are required");
  if (n == 0 || D == 0) return TPD_OK;
  const size_t row_bytes = (size_t)D * tpd_dtype_size(c->act);
  const int vec = row_bytes % 16 == 0 && tpd_aligned16(dst) && tpd_aligned16(src);
  const auto kern = c->act == TPD_F32 ? gather_rows_kernel<uint32_t> : gather_rows_kernel<uint16_t>;
  const char *name = c->act == TPD_F32 ? "gather_rows_kernel<f32>" : "gather_rows_kernel<bf16>";
  for (int i0 = 0; i0 < n; i0 += GATHER_ROWS_PER_LAUNCH) {
    const int cnt = n - i0 < GATHER_ROWS_PER_LAUNCH ? n - i0 : GATHER_ROWS_PER_LAUNCH;
    gather_list list;
    for (int k = 0; k < GATHER_ROWS_PER_LAUNCH; k++) list.rows[k] = k < cnt ? rows[i0 + k] : 0;
    for (int k = 0; k < cnt; k++)
      if (list.rows[k] < 0) return TPD_FAIL(TPD_ERR_ARG, "cuda gather_rows: row %d is %d", i0 + k, list.rows[k]);
    kern<<<(unsigned)cnt, 256, 0, c->stream>>>((char *)dst + (size_t)i0 * row_bytes, (const char *)src, list, row_bytes,
                                           vec);
    TPD_CUDA_CHECK_LAUNCH(c, name);
  }
  return TPD_OK;
}
