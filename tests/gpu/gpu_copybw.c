/* tpd-gpu-copybw: the device-to-device copy bandwidth of this GPU, the
 * ceiling tests/gpu/device_check.sh compares the decode benchmark with.
 * Copies a buffer of MB megabytes (default 2048: far above the L2) 20 times
 * after 3 warm-ups, timed with CUDA events; prints the median, counting
 * bytes read plus bytes written:
 *   copy_gbs <GB/s>
 * Exit 77 when no CUDA device is present. */
#include <stdlib.h>

#include "tests/gpu/gpu_test.h"

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  gt_require_gpu("tpd-gpu-copybw");
  const size_t mb = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 2048;
  const size_t n = mb << 20;
  void *a = NULL, *b = NULL;
  GT_CUDA(cudaMalloc(&a, n));
  GT_CUDA(cudaMalloc(&b, n));
  GT_CUDA(cudaMemset(a, 0x5A, n));
  cudaEvent_t e0, e1;
  GT_CUDA(cudaEventCreate(&e0));
  GT_CUDA(cudaEventCreate(&e1));
  enum { WARM = 3, REPS = 20 };
  double gbs[REPS];
  for (int i = 0; i < WARM + REPS; i++) {
    GT_CUDA(cudaEventRecord(e0, 0));
    GT_CUDA(cudaMemcpyAsync(i & 1 ? a : b, i & 1 ? b : a, n, cudaMemcpyDeviceToDevice, 0));
    GT_CUDA(cudaEventRecord(e1, 0));
    GT_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    GT_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= WARM) gbs[i - WARM] = 2.0 * (double)n / (ms * 1e-3) / 1e9;
  }
  qsort(gbs, REPS, sizeof gbs[0], cmp_double);
  printf("copy_gbs %.1f\n", gbs[REPS / 2]);
  printf("(device-to-device copy of %zu MB, read + write counted, median of %d; min %.1f, max %.1f)\n", mb, REPS,
         gbs[0], gbs[REPS - 1]);
  GT_CUDA(cudaFree(a));
  GT_CUDA(cudaFree(b));
  return 0;
}
