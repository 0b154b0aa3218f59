/* gather_rows: dst[i, :] = src[rows[i], :] for i < n, width D, bf16.  The
 * row indices are host memory: they travel inside the kernel's parameters
 * (up to 64 per launch), so the launch is capturable and needs no upload.
 * grid (rows in this launch), 256 threads; 16-byte copies when D % 8 == 0
 * and both buffers are aligned. */
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

#define GATHER_ROWS_PER_LAUNCH 64

typedef struct {
  int rows[GATHER_ROWS_PER_LAUNCH];
} gather_list;

static __global__ void __launch_bounds__(256) gather_rows_kernel(uint16_t *dst, const uint16_t *src,
                                                                const gather_list list, int D, int vec) {
  const int i = blockIdx.x;
  int r = 0;
  /* pick rows[i] with constant indices only (no local copy of the list) */
#pragma unroll
  for (int k = 0; k < GATHER_ROWS_PER_LAUNCH; k++)
    if (k == i) r = list.rows[k];
  const uint16_t *s = src + (size_t)r * D;
  uint16_t *d = dst + (size_t)i * D;
  if (vec) {
    for (int c = threadIdx.x; c < D / 8; c += blockDim.x) ((uint4 *)d)[c] = ((const uint4 *)s)[c];
  } else {
    for (int e = threadIdx.x; e < D; e += blockDim.x) d[e] = s[e];
  }
}

extern "C" tpd_status tpd_cuda_gather_rows(tpd_backend *be, void *dst, const void *src, const int32_t *rows, int n,
                                           int D) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (n < 0 || D < 0 || (n > 0 && (!dst || !src || !rows)))
    return TPD_FAIL(TPD_ERR_ARG, "cuda gather_rows: dst, src, host rows and n, D >= 0 are required");
  if (n == 0 || D == 0) return TPD_OK;
  const int vec = D % 8 == 0 && tpd_aligned16(dst) && tpd_aligned16(src);
  for (int i0 = 0; i0 < n; i0 += GATHER_ROWS_PER_LAUNCH) {
    const int cnt = n - i0 < GATHER_ROWS_PER_LAUNCH ? n - i0 : GATHER_ROWS_PER_LAUNCH;
    gather_list list;
    for (int k = 0; k < GATHER_ROWS_PER_LAUNCH; k++) list.rows[k] = k < cnt ? rows[i0 + k] : 0;
    for (int k = 0; k < cnt; k++)
      if (list.rows[k] < 0) return TPD_FAIL(TPD_ERR_ARG, "cuda gather_rows: row %d is %d", i0 + k, list.rows[k]);
    gather_rows_kernel<<<(unsigned)cnt, 256, 0, c->stream>>>((uint16_t *)dst + (size_t)i0 * D, (const uint16_t *)src,
                                                            list, D, vec);
    TPD_CUDA_CHECK_LAUNCH("gather_rows_kernel");
  }
  return TPD_OK;
}
