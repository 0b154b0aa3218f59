/* The CPU emulation's occupancy (tests/gpu/emu, emu_occupancy) against the
 * CUDA toolkit's own calculator (cuda_occupancy.h, header only: it needs no
 * GPU and no driver) for an H200, over every kernel of a ptxas table
 * (argv[1]) and block sizes 1..1024, with and without dynamic shared memory.
 * Built where the toolkit's headers are found; exit 0 when every answer
 * agrees. */
#include <cuda_occupancy.h>
#include <stdio.h>
#include <string.h>

#include "tests/testutil.h"

int emu_occupancy(int regs, size_t static_smem, int block, size_t dyn_smem);

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: emu_occupancy_ref PTXAS_TABLE\n");
    return 2;
  }
  FILE *f = fopen(argv[1], "r");
  if (!f) {
    fprintf(stderr, "FAIL: cannot read %s\n", argv[1]);
    return 1;
  }
  cudaOccDeviceProp p;
  p.computeMajor = 9;
  p.computeMinor = 0;
  p.maxThreadsPerBlock = 1024;
  p.maxThreadsPerMultiprocessor = 2048;
  p.regsPerBlock = 65536;
  p.regsPerMultiprocessor = 65536;
  p.warpSize = 32;
  p.sharedMemPerBlock = 48 * 1024;
  p.sharedMemPerMultiprocessor = 228 * 1024;
  p.numSms = 132;
  p.sharedMemPerBlockOptin = 227 * 1024;
  p.reservedSharedMemPerBlock = 1024;
  cudaOccDeviceState st;
  char line[1024], name[900];
  int kernels = 0;
  /* the table's kernels, then made-up ones that reach each limit */
  const int extra_regs[] = {0, 16, 64, 96, 168, 200, 255};
  const size_t extra_smem[] = {0, 4096, 16896, 40000, 48 * 1024};
  int extra = 0;
  for (;;) {
    int regs = 0;
    unsigned long smem = 0;
    if (f) {
      if (!fgets(line, sizeof line, f)) {
        fclose(f);
        f = NULL;
        continue;
      }
      if (line[0] == '#' || sscanf(line, "%899s %d %lu", name, &regs, &smem) != 3) continue;
      kernels++;
    } else {
      if (extra >= (int)(sizeof extra_regs / sizeof extra_regs[0] * (sizeof extra_smem / sizeof extra_smem[0]))) break;
      regs = extra_regs[extra % 7];
      smem = extra_smem[extra / 7];
      snprintf(name, sizeof name, "made-up(%d regs, %lu B)", regs, smem);
      extra++;
    }
    cudaOccFuncAttributes a;
    a.maxThreadsPerBlock = 1024;
    a.numRegs = regs;
    a.sharedSizeBytes = smem;
    a.shmemLimitConfig = FUNC_SHMEM_LIMIT_DEFAULT;
    a.maxDynamicSharedSizeBytes = smem < 48 * 1024 ? 48 * 1024 - smem : 0;
    a.numBlockBarriers = 1;
    const size_t dyns[] = {0, 1000, 8192, 30000};
    for (int block = 1; block <= 1024; block += block < 64 ? 1 : 32)
      for (size_t d : dyns) {
        cudaOccResult r;
        memset(&r, 0, sizeof r);
        const int want = cudaOccMaxActiveBlocksPerMultiprocessor(&r, &p, &a, &st, block, d) == CUDA_OCC_SUCCESS
                             ? r.activeBlocksPerMultiprocessor
                             : 0;
        const int got = emu_occupancy(regs, smem, block, d);
        if (!tu_count(got == want) && tu_failures <= 20)
          printf("FAIL %s, %d threads, %zu B dynamic: emulation %d blocks per SM, cuda_occupancy.h %d\n", name, block,
                 d, got, want);
      }
  }
  printf("%s emulated occupancy == cuda_occupancy.h for %d kernels of the table and %d made up: %d of %d differ\n",
         tu_failures ? "FAIL" : "ok  ", kernels, extra, tu_failures, tu_checks);
  tu_expect(kernels > 0, "the ptxas table lists kernels");
  return tu_finish("emu_occupancy_ref");
}
