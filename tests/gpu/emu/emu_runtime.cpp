/* CPU emulation of the CUDA runtime, cuBLASLt and the SIMT execution model,
 * just enough to run the CUDA backend's kernels and the GPU tests on a
 * machine without a GPU (tests/gpu/emu).  It checks logic, not speed:
 *
 *  - each CUDA thread is a ucontext coroutine; a block runs until every
 *    thread has finished or waits; __syncthreads() releases when every live
 *    thread of the block waits there, __shfl_xor_sync when all 32 lanes of
 *    a warp do (anything else is reported as a divergence bug and aborts)
 *  - EMU_REVERSE=1 runs the threads of a block in reverse order, which
 *    changes which side of a missing barrier wins
 *  - launch configurations are checked (block <= 1024 threads, grid.y/z <=
 *    65535); 16-byte __ldg loads check their alignment; cudaFree checks that
 *    the pointer came from cudaMalloc
 *  - streams execute in order at once; a stream capture records closures
 *    instead, with the rules that matter here: global-mode captures are
 *    invalidated by a synchronisation, an allocation, or a copy to or from
 *    pageable host memory; other streams join through events and must be
 *    joined back before the capture ends
 *  - cuBLASLt computes the documented column-major product in double
 *  - EMU_NO_DEVICE=1 makes cudaGetDeviceCount report no device;
 *    EMU_LT_NONE=1 makes the cuBLASLt heuristic find no algorithm. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <map>
#include <vector>

#include "cuda_runtime_api.h"
#include "cublasLt.h"
#include "cuda_bf16.h"
#include "emu_device.h"

dim3 threadIdx, blockIdx, blockDim, gridDim;

[[noreturn]] static void emu_die(const char *what) {
  fprintf(stderr, "emu: %s\n", what);
  fflush(stderr);
  abort();
}

/* ------------------------------------------------------------------ */
/* the SIMT scheduler                                                  */

enum { T_RUN, T_DONE, T_BAR, T_SHFL };

struct EmuThread {
  ucontext_t ctx;
  char *stack;
  int state;
  uint32_t val;
  int off;
  dim3 tid;
};

static const size_t STACK_BYTES = 256 << 10;
static ucontext_t g_sched;
static EmuThread *g_cur;
static std::vector<EmuThread> g_threads;
static const std::function<void()> *g_body;
static int g_running; /* inside a kernel */

static void thread_entry(void) {
  (*g_body)();
  g_cur->state = T_DONE;
}

void __syncthreads(void) {
  g_cur->state = T_BAR;
  swapcontext(&g_cur->ctx, &g_sched);
}

uint32_t emu_shfl_xor(uint32_t v, int lane_mask) {
  g_cur->state = T_SHFL;
  g_cur->val = v;
  g_cur->off = lane_mask;
  swapcontext(&g_cur->ctx, &g_sched);
  return g_cur->val;
}

void emu_check_align(const void *p, size_t align, const char *what) {
  if ((uintptr_t)p % align) {
    char m[160];
    snprintf(m, sizeof m, "%s: misaligned %zu-byte access at %p (block %u,%u,%u thread %u)", what, align, p, blockIdx.x,
             blockIdx.y, blockIdx.z, threadIdx.x);
    emu_die(m);
  }
}

static void run_block(const dim3 &grid, const dim3 &block, const dim3 &bid, const std::function<void()> &body) {
  const int n = (int)(block.x * block.y * block.z);
  if ((int)g_threads.size() < n) {
    const size_t old = g_threads.size();
    g_threads.resize((size_t)n);
    for (size_t i = old; i < (size_t)n; i++) {
      g_threads[i].stack = (char *)malloc(STACK_BYTES);
      if (!g_threads[i].stack) emu_die("out of memory for thread stacks");
    }
  }
  static const int reverse = getenv("EMU_REVERSE") != NULL;
  g_body = &body;
  blockIdx = bid;
  blockDim = block;
  gridDim = grid;
  for (int i = 0; i < n; i++) {
    EmuThread &t = g_threads[(size_t)i];
    t.state = T_RUN;
    t.tid = dim3((unsigned)i % block.x, ((unsigned)i / block.x) % block.y, (unsigned)i / (block.x * block.y));
    getcontext(&t.ctx);
    t.ctx.uc_stack.ss_sp = t.stack;
    t.ctx.uc_stack.ss_size = STACK_BYTES;
    t.ctx.uc_link = &g_sched;
    makecontext(&t.ctx, thread_entry, 0);
  }
  int alive = n;
  for (;;) {
    for (int k = 0; k < n; k++) {
      EmuThread &t = g_threads[(size_t)(reverse ? n - 1 - k : k)];
      if (t.state != T_RUN) continue;
      g_cur = &t;
      threadIdx = t.tid;
      swapcontext(&g_sched, &t.ctx);
      if (t.state == T_DONE) alive--;
    }
    if (alive == 0) break;
    int progressed = 0;
    for (int w0 = 0; w0 < n; w0 += 32) {
      const int w1 = w0 + 32 < n ? w0 + 32 : n;
      int live = 0, shfl = 0;
      for (int i = w0; i < w1; i++) {
        live += g_threads[(size_t)i].state != T_DONE;
        shfl += g_threads[(size_t)i].state == T_SHFL;
      }
      if (!live || shfl != live) continue;
      if (live != 32) emu_die("__shfl_xor_sync with lanes missing (exited, or a partial warp)");
      uint32_t v[32];
      const int off = g_threads[(size_t)w0].off;
      for (int i = 0; i < 32; i++) {
        v[i] = g_threads[(size_t)(w0 + i)].val;
        if (g_threads[(size_t)(w0 + i)].off != off) emu_die("__shfl_xor_sync lanes disagree on the lane mask");
      }
      for (int i = 0; i < 32; i++) {
        g_threads[(size_t)(w0 + i)].val = v[i ^ off];
        g_threads[(size_t)(w0 + i)].state = T_RUN;
      }
      progressed = 1;
    }
    if (progressed) continue;
    int bar = 0;
    for (int i = 0; i < n; i++) bar += g_threads[(size_t)i].state == T_BAR;
    if (bar != alive) emu_die("deadlock: threads wait at different barriers or shuffles (divergent __syncthreads?)");
    for (int i = 0; i < n; i++)
      if (g_threads[(size_t)i].state == T_BAR) g_threads[(size_t)i].state = T_RUN;
  }
}

static void run_grid(const dim3 &grid, const dim3 &block, const std::function<void()> &body) {
  g_running = 1;
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) run_block(grid, block, dim3(x, y, z), body);
  g_running = 0;
}

/* ------------------------------------------------------------------ */
/* streams, events, captures                                           */

struct Capture;
struct emu_stream {
  Capture *cap = nullptr;
  bool side = false, unjoined = false;
  long ops = 0;
};
struct Capture {
  std::vector<std::function<void()>> nodes;
  bool invalid = false;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  emu_stream *origin = nullptr;
  std::vector<emu_stream *> sides;
};
struct emu_event {
  emu_stream *stream = nullptr;
  long ops = 0;
  Capture *cap = nullptr;
};
struct emu_graph {
  std::vector<std::function<void()>> nodes;
};

static Capture *g_capture;
static cudaError_t g_last = cudaSuccess;
static std::map<uintptr_t, size_t> g_allocs;

static cudaError_t set_err(cudaError_t e) {
  if (e != cudaSuccess && g_last == cudaSuccess) g_last = e;
  return e;
}

/* a call that global-mode capture forbids */
static cudaError_t unsafe_call(void) {
  if (g_capture && g_capture->mode == cudaStreamCaptureModeGlobal) {
    g_capture->invalid = true;
    return cudaErrorStreamCaptureUnsupported;
  }
  return cudaSuccess;
}

static cudaError_t submit(cudaStream_t s, std::function<void()> fn) {
  if (s && s->cap) {
    if (s->cap->invalid) return set_err(cudaErrorStreamCaptureInvalidated);
    s->cap->nodes.push_back(std::move(fn));
    s->ops++;
    if (s->side) s->unjoined = true;
    return cudaSuccess;
  }
  fn();
  if (s) s->ops++;
  return cudaSuccess;
}

void emu_submit(cudaStream_t s, std::function<void()> fn) { (void)submit(s, std::move(fn)); }

void emu_enqueue(cudaStream_t s, dim3 grid, dim3 block, std::function<void()> body) {
  const unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
  if (nt < 1 || nt > 1024 || block.z > 64 || grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 0x7fffffffu ||
      grid.y > 65535 || grid.z > 65535) {
    set_err(cudaErrorInvalidConfiguration);
    return;
  }
  if (g_running) emu_die("kernel launch from inside a kernel");
  submit(s, [grid, block, body]() { run_grid(grid, block, body); });
}

static bool is_device(const void *p) {
  const uintptr_t a = (uintptr_t)p;
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  --it;
  return a >= it->first && a < it->first + it->second;
}

extern "C" {

const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (emulated)";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnjoined: return "capture sequence contains a fork that was not joined to the primary stream";
    case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorIllegalState: return "the operation is not permitted in the current state";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}

cudaError_t cudaGetDeviceCount(int *n) {
  if (getenv("EMU_NO_DEVICE")) {
    *n = 0;
    return set_err(cudaErrorNoDevice);
  }
  *n = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int *d) {
  *d = 0;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : set_err(cudaErrorInvalidDevice); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
  if (d != 0) return set_err(cudaErrorInvalidDevice);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "CPU emulation");
  const char *sms = getenv("EMU_SMS");
  p->multiProcessorCount = sms ? atoi(sms) : 132;
  p->major = 9;
  p->minor = 0;
  p->totalGlobalMem = (size_t)16 << 30;
  return cudaSuccess;
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, const void *func) {
  memset(a, 0, sizeof *a);
  return func ? cudaSuccess : set_err(cudaErrorInvalidDeviceFunction);
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, const void *func, int block, size_t smem) {
  (void)func, (void)smem;
  *n = block <= 256 ? 3 : 1;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n) {
  *p = NULL;
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  void *q = aligned_alloc(256, (n + 255) / 256 * 256 + 256);
  if (!q) return set_err(cudaErrorMemoryAllocation);
  memset(q, 0xA5, (n + 255) / 256 * 256); /* device memory starts as garbage, not zeros */
  g_allocs[(uintptr_t)q] = n ? n : 1;
  *p = q;
  return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
  if (!p) return cudaSuccess;
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  auto it = g_allocs.find((uintptr_t)p);
  if (it == g_allocs.end()) emu_die("cudaFree of a pointer cudaMalloc did not return");
  g_allocs.erase(it);
  free(p);
  return cudaSuccess;
}

static cudaError_t copy_on(cudaStream_t s, void *dst, const void *src, size_t n) {
  if (s && s->cap && (!is_device(dst) || !is_device(src))) {
    s->cap->invalid = true; /* pageable host memory cannot be captured */
    return set_err(cudaErrorStreamCaptureUnsupported);
  }
  if (n && is_device(dst) && !is_device((const char *)dst + n - 1)) emu_die("copy past the end of a device allocation");
  if (n && is_device(src) && !is_device((const char *)src + n - 1)) emu_die("copy from past the end of a device allocation");
  return submit(s, [dst, src, n]() { memmove(dst, src, n); });
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
  (void)k;
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  return copy_on(NULL, dst, src, n);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s) {
  (void)k;
  return copy_on(s, dst, src, n);
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind k, cudaStream_t s) {
  (void)k;
  if (width > dpitch || width > spitch) return set_err(cudaErrorInvalidValue);
  for (size_t r = 0; r < height; r++) {
    const cudaError_t e = copy_on(s, (char *)dst + r * dpitch, (const char *)src + r * spitch, width);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int v, size_t n) {
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  return cudaMemsetAsync(p, v, n, NULL);
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
  if (n && (!is_device(p) || !is_device((char *)p + n - 1))) emu_die("cudaMemset outside a device allocation");
  return submit(s, [p, v, n]() { memset(p, v, n); });
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p) {
  memset(a, 0, sizeof *a);
  a->type = is_device(p) ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
  a->device = 0;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) {
  *s = new emu_stream;
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
  (void)flags;
  return cudaStreamCreate(s);
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (s && s->cap) {
    s->cap->invalid = true;
    return set_err(cudaErrorStreamCaptureUnsupported);
  }
  const cudaError_t u = unsafe_call();
  return u != cudaSuccess ? set_err(u) : cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  if (g_capture) { /* would wait for the capturing stream */
    g_capture->invalid = true;
    return set_err(cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) {
  *e = new emu_event;
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
  (void)flags;
  return cudaEventCreate(e);
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (s && s->cap && s->cap->invalid) return set_err(cudaErrorStreamCaptureInvalidated);
  e->stream = s;
  e->ops = s ? s->ops : 0;
  e->cap = s ? s->cap : nullptr;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  (void)e;
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
  (void)a, (void)b;
  *ms = 1.0f;
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
  (void)flags;
  if (!e->cap) {
    if (s && s->cap) { /* waiting inside a capture on work outside it */
      s->cap->invalid = true;
      return set_err(cudaErrorStreamCaptureIsolation);
    }
    return cudaSuccess;
  }
  Capture *c = e->cap;
  if (c != g_capture) return set_err(cudaErrorStreamCaptureIsolation);
  if (c->invalid) return set_err(cudaErrorStreamCaptureInvalidated);
  if (!s) emu_die("legacy stream waits on a captured event");
  if (!s->cap) { /* fork: s joins the capture */
    s->cap = c;
    s->side = true;
    s->unjoined = true;
    c->sides.push_back(s);
  } else if (s == c->origin && e->stream && e->stream->side && e->ops == e->stream->ops) {
    e->stream->unjoined = false; /* joined back */
  }
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  if (!s || s->cap || g_capture) return set_err(cudaErrorIllegalState);
  g_capture = new Capture;
  g_capture->mode = mode;
  g_capture->origin = s;
  s->cap = g_capture;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
  *g = NULL;
  if (!s || !s->cap || s->cap->origin != s) return set_err(cudaErrorIllegalState);
  Capture *c = s->cap;
  cudaError_t e = c->invalid ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
  for (emu_stream *x : c->sides) {
    if (e == cudaSuccess && x->unjoined) e = cudaErrorStreamCaptureUnjoined;
    x->cap = nullptr;
    x->side = x->unjoined = false;
  }
  s->cap = nullptr;
  if (e == cudaSuccess) {
    *g = new emu_graph;
    (*g)->nodes = std::move(c->nodes);
  }
  delete c;
  g_capture = nullptr;
  return e == cudaSuccess ? cudaSuccess : set_err(e);
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *st) {
  *st = !s || !s->cap ? cudaStreamCaptureStatusNone
                      : s->cap->invalid ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t g, unsigned long long flags) {
  (void)flags;
  *exec = new emu_graph(*g);
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t g) {
  delete g;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t g, cudaStream_t s) {
  if (s && s->cap) emu_die("graph launch inside a capture (not used by the backend)");
  for (auto &n : g->nodes) n();
  if (s) s->ops++;
  return cudaSuccess;
}

/* ------------------------------------------------------------------ */
/* cuBLASLt                                                            */

}  // extern "C"

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
  });
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // extern "C"
