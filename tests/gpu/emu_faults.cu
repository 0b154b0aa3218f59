/* Faults the CPU emulation of CUDA (tests/gpu/emu) must catch: built only
 * against the emulation (its kernels are compiled as C++), one case per
 * run, named by the first argument.
 *
 *   streams    a producer kernel on stream A, a consumer on stream B: with
 *              the cudaStreamWaitEvent the result is right for every one of
 *              SEEDS scheduler seeds; without it, wrong for at least one.
 *              The same with the producer on the legacy default stream and
 *              the consumer on a blocking stream (ordered) or a
 *              non-blocking one (not ordered)
 *   graph      the same fork/join captured into a graph and replayed: the
 *              captured edges order the replay, or fail to
 *   blocks     every block of a grid writes the same word (an inter-block
 *              race): the value differs between seeds; one word per block
 *              gives the same answer for every seed
 *   occupancy  cudaFuncGetAttributes, cudaOccupancyMaxActiveBlocksPerMultiprocessor
 *              and the launch check read a kernel's registers and shared
 *              memory from the ptxas table (a table written here)
 *   inbounds   a kernel reads the last element of an allocation: passes
 *   overrun    a kernel reads one element past the end: AddressSanitizer
 *              must report a heap-buffer-overflow (the ctest looks for it)
 * Exit 0 when the case behaves as described, 1 otherwise. */
#include <unistd.h>

#define TU_WITH_CUDA /* the device helpers of tests/testutil.h */
#include "tests/testutil.h"

enum { N = 3000, SEEDS = 16 };

__global__ void fill_kernel(float *x, int n, float v) {
  const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) x[i] = v + (float)i;
}

__global__ void scale_kernel(const float *x, float *y, int n) {
  const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = 2.0f * x[i];
}

static const unsigned BLK = 256, GRID = (N + 255) / 256;

/* y == 2 (v + i) everywhere; y is on the device, read through stream s */
static int right(const float *y, float v, cudaStream_t s) {
  static float h[N];
  TU_CUDA(cudaMemcpyAsync(h, y, sizeof h, cudaMemcpyDeviceToHost, s));
  TU_CUDA(cudaStreamSynchronize(s));
  for (int i = 0; i < N; i++)
    if (h[i] != 2.0f * (v + (float)i)) return 0;
  return 1;
}

/* producer: 0 = stream A (non-blocking), 1 = the legacy stream.
 * consumer_flags: the consumer stream's flags.  Returns how many seeds
 * gave a wrong result. */
static int producer_consumer(int producer_legacy, unsigned consumer_flags, int with_wait, float *x, float *y) {
  int wrong = 0;
  for (int seed = 1; seed <= SEEDS; seed++) {
    emu_set_seed((uint64_t)seed);
    cudaStream_t a = NULL, b = NULL;
    cudaEvent_t ev = NULL;
    if (!producer_legacy) TU_CUDA(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking));
    TU_CUDA(cudaStreamCreateWithFlags(&b, consumer_flags));
    TU_CUDA(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    const float v = (float)(seed * 10000);
    fill_kernel<<<GRID, BLK, 0, a>>>(x, N, v);
    TU_CUDA(cudaGetLastError());
    if (with_wait) {
      TU_CUDA(cudaEventRecord(ev, a));
      TU_CUDA(cudaStreamWaitEvent(b, ev, 0));
    }
    scale_kernel<<<GRID, BLK, 0, b>>>(x, y, N);
    TU_CUDA(cudaGetLastError());
    wrong += !right(y, v, b);
    TU_CUDA(cudaDeviceSynchronize());
    TU_CUDA(cudaEventDestroy(ev));
    TU_CUDA(cudaStreamDestroy(b));
    if (a) TU_CUDA(cudaStreamDestroy(a));
  }
  return wrong;
}

static void case_streams(void) {
  float *x = NULL, *y = NULL;
  TU_CUDA(cudaMalloc((void **)&x, N * sizeof(float)));
  TU_CUDA(cudaMalloc((void **)&y, N * sizeof(float)));
  char what[200];
  int w = producer_consumer(0, cudaStreamNonBlocking, 1, x, y);
  snprintf(what, sizeof what, "stream B waits on an event recorded on A after the producer: wrong for %d of %d seeds",
           w, SEEDS);
  tu_expect(w == 0, what);
  w = producer_consumer(0, cudaStreamNonBlocking, 0, x, y);
  snprintf(what, sizeof what, "no wait: wrong for %d of %d seeds (must be at least one)", w, SEEDS);
  tu_expect(w > 0, what);
  w = producer_consumer(1, 0, 0, x, y);
  snprintf(what, sizeof what, "legacy stream, then a blocking stream: wrong for %d of %d seeds", w, SEEDS);
  tu_expect(w == 0, what);
  w = producer_consumer(1, cudaStreamNonBlocking, 0, x, y);
  snprintf(what, sizeof what, "legacy stream, then a non-blocking stream: wrong for %d of %d seeds (must be >= 1)", w,
           SEEDS);
  tu_expect(w > 0, what);
  TU_CUDA(cudaFree(x));
  TU_CUDA(cudaFree(y));
}

/* fork on A, producer on A, consumer on B, join back to A */
static cudaGraphExec_t capture_fork_join(int with_wait, float *x, float *y, float v) {
  cudaStream_t a, b;
  TU_CUDA(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking));
  TU_CUDA(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking));
  cudaEvent_t e0, e1, e2;
  TU_CUDA(cudaEventCreate(&e0));
  TU_CUDA(cudaEventCreate(&e1));
  TU_CUDA(cudaEventCreate(&e2));
  TU_CUDA(cudaStreamBeginCapture(a, cudaStreamCaptureModeRelaxed));
  TU_CUDA(cudaEventRecord(e0, a));
  TU_CUDA(cudaStreamWaitEvent(b, e0, 0));
  fill_kernel<<<GRID, BLK, 0, a>>>(x, N, v);
  if (with_wait) {
    TU_CUDA(cudaEventRecord(e1, a));
    TU_CUDA(cudaStreamWaitEvent(b, e1, 0));
  }
  scale_kernel<<<GRID, BLK, 0, b>>>(x, y, N);
  TU_CUDA(cudaEventRecord(e2, b));
  TU_CUDA(cudaStreamWaitEvent(a, e2, 0));
  cudaGraph_t g = NULL;
  TU_CUDA(cudaStreamEndCapture(a, &g));
  cudaGraphExec_t ex = NULL;
  TU_CUDA(cudaGraphInstantiate(&ex, g, 0));
  TU_CUDA(cudaGraphDestroy(g));
  TU_CUDA(cudaEventDestroy(e0));
  TU_CUDA(cudaEventDestroy(e1));
  TU_CUDA(cudaEventDestroy(e2));
  TU_CUDA(cudaStreamDestroy(a));
  TU_CUDA(cudaStreamDestroy(b));
  return ex;
}

static void case_graph(void) {
  float *x = NULL, *y = NULL;
  TU_CUDA(cudaMalloc((void **)&x, N * sizeof(float)));
  TU_CUDA(cudaMalloc((void **)&y, N * sizeof(float)));
  const float v = 777.0f;
  for (int with_wait = 1; with_wait >= 0; with_wait--) {
    cudaGraphExec_t ex = capture_fork_join(with_wait, x, y, v);
    cudaStream_t s;
    TU_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    int wrong = 0;
    for (int seed = 1; seed <= SEEDS; seed++) {
      emu_set_seed((uint64_t)seed);
      TU_CUDA(cudaMemsetAsync(x, 0, N * sizeof(float), s));
      TU_CUDA(cudaMemsetAsync(y, 0, N * sizeof(float), s));
      TU_CUDA(cudaGraphLaunch(ex, s));
      wrong += !right(y, v, s);
    }
    char what[200];
    snprintf(what, sizeof what, "graph replay, consumer %s: wrong for %d of %d seeds%s",
             with_wait ? "after the producer's event" : "with no edge from the producer", wrong, SEEDS,
             with_wait ? "" : " (must be >= 1)");
    tu_expect(with_wait ? wrong == 0 : wrong > 0, what);
    TU_CUDA(cudaGraphExecDestroy(ex));
    TU_CUDA(cudaStreamDestroy(s));
  }
  TU_CUDA(cudaFree(x));
  TU_CUDA(cudaFree(y));
}

__global__ void same_word_kernel(int *out) {
  if (threadIdx.x == 0) out[0] = (int)blockIdx.x;
}

__global__ void own_word_kernel(int *out) {
  if (threadIdx.x == 0) out[blockIdx.x] = (int)blockIdx.x * 3 + 1;
}

static void case_blocks(void) {
  enum { B = 64 };
  int *d = NULL, h[B];
  TU_CUDA(cudaMalloc((void **)&d, sizeof h));
  int seen[B] = {0}, distinct = 0, stable = 1;
  for (int seed = 1; seed <= SEEDS; seed++) {
    emu_set_seed((uint64_t)seed);
    same_word_kernel<<<B, 32, 0, 0>>>(d);
    TU_CUDA(cudaMemcpy(h, d, sizeof(int), cudaMemcpyDeviceToHost));
    if (h[0] < 0 || h[0] >= B) {
      tu_expect(0, "the racing kernel wrote a block index");
      break;
    }
    distinct += !seen[h[0]]++;
    own_word_kernel<<<B, 32, 0, 0>>>(d);
    TU_CUDA(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    for (int i = 0; i < B; i++) stable = stable && h[i] == i * 3 + 1;
  }
  char what[200];
  snprintf(what, sizeof what, "every block writes one word: %d different winners over %d seeds (must be >= 2)",
           distinct, SEEDS);
  tu_expect(distinct >= 2, what);
  tu_expect(stable, "one word per block: the same, right answer for every seed");
  TU_CUDA(cudaFree(d));
}

__global__ void heavy_kernel(float *x) {
  if (x) x[threadIdx.x] = 1.0f;
}

static void case_occupancy(void) {
  /* the nvcc name of heavy_kernel, with 128 registers and 8 KB of shared memory */
  char path[] = "/tmp/tpd-emu-ptxas-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) {
    tu_expect(0, "a temporary ptxas table");
    return;
  }
  const char table[] = "# test table\n_Z12heavy_kernelPf 128 8192\n";
  const int wrote = (int)write(fd, table, sizeof table - 1) == (int)(sizeof table - 1);
  close(fd);
  tu_expect(wrote, "wrote a temporary ptxas table");
  setenv("TPD_EMU_PTXAS_TABLE", path, 1);
  cudaFuncAttributes fa;
  TU_CUDA(cudaFuncGetAttributes(&fa, (const void *)heavy_kernel));
  tu_expect(fa.numRegs == 128 && fa.sharedSizeBytes == 8192, "cudaFuncGetAttributes: registers and shared memory of the table");
  /* 128 registers: 4096 per warp, 16 warps per SM; (8 K + 1 K) of shared memory per block fits 25 times */
  const int block[4] = {128, 256, 512, 1024}, want[4] = {4, 2, 1, 0};
  for (int i = 0; i < 4; i++) {
    int n = -1;
    TU_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, (const void *)heavy_kernel, block[i], 0));
    char what[160];
    snprintf(what, sizeof what, "occupancy at %d threads: %d blocks per SM (want %d)", block[i], n, want[i]);
    tu_expect(n == want[i], what);
  }
  /* one warp: 16 blocks by registers; 8 K + 40 K + 1 K of shared memory: 4 blocks in 228 K */
  int n = -1;
  TU_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, (const void *)heavy_kernel, 32, 40 * 1024));
  tu_expect(n == 4, "occupancy with 40 KB of dynamic shared memory: 4 blocks per SM");
  TU_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, (const void *)heavy_kernel, 32, 41 * 1024));
  tu_expect(n == 0, "occupancy past 48 KB of shared memory per block (no opt-in): 0 blocks per SM");
  heavy_kernel<<<1, 1024, 0, 0>>>((float *)NULL);
  const cudaError_t e = cudaGetLastError();
  tu_expect(e == cudaErrorLaunchOutOfResources, "a launch of 1024 threads x 128 registers fails: too many resources");
  heavy_kernel<<<1, 512, 0, 0>>>((float *)NULL);
  TU_CUDA(cudaGetLastError());
  TU_CUDA(cudaDeviceSynchronize());
  unlink(path);
}

__global__ void read_at_kernel(const float *x, int i, float *y) {
  if (blockIdx.x == 0 && threadIdx.x == 0) y[0] = x[i];
}

/* n = 1001 floats: 4004 bytes, not a multiple of any padding */
static void case_read(int past_end) {
  const int n = 1001;
  float *x = NULL, *y = NULL, h = 0;
  TU_CUDA(cudaMalloc((void **)&x, n * sizeof(float)));
  TU_CUDA(cudaMalloc((void **)&y, sizeof(float)));
  TU_CUDA(cudaMemset(x, 0, n * sizeof(float)));
  read_at_kernel<<<1, 32, 0, 0>>>(x, past_end ? n : n - 1, y);
  TU_CUDA(cudaMemcpy(&h, y, sizeof h, cudaMemcpyDeviceToHost));
  tu_expect(h == 0.0f, past_end ? "read one past the end went unnoticed" : "read the last element");
  TU_CUDA(cudaFree(x));
  TU_CUDA(cudaFree(y));
}

int main(int argc, char **argv) {
  const char *c = argc > 1 ? argv[1] : "";
  if (!strcmp(c, "streams")) case_streams();
  else if (!strcmp(c, "graph")) case_graph();
  else if (!strcmp(c, "blocks")) case_blocks();
  else if (!strcmp(c, "occupancy")) case_occupancy();
  else if (!strcmp(c, "inbounds")) case_read(0);
  else if (!strcmp(c, "overrun")) case_read(1);
  else {
    fprintf(stderr, "usage: emu_faults streams|graph|blocks|occupancy|inbounds|overrun\n");
    return 2;
  }
  char name[64];
  snprintf(name, sizeof name, "emu_faults %s", c);
  return tu_finish(name);
}
