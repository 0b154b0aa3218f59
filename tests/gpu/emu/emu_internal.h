/* What the parts of the CPU emulation of CUDA share (tests/gpu/emu; what
 * the emulation does and why: emu_runtime.cpp).  The kernels never see this
 * (they are compiled against emu_device.h).
 *   emu_runtime.cpp   the seed and the environment knobs, the last error,
 *                     kernel names and ptxas resources, occupancy, device
 *                     queries
 *   emu_simt.cpp      the SIMT scheduler: each CUDA thread a coroutine
 *   emu_streams.cpp   deferred work: ops, streams, events, captures, graphs,
 *                     kernel launches
 *   emu_memory.cpp    device allocations, copies and memsets
 *   emu_cublaslt.cpp  cuBLASLt, computed in double
 *   emu_nccl.cpp      NCCL over MPI */
#ifndef TPD_EMU_INTERNAL_H
#define TPD_EMU_INTERNAL_H

#include <stdint.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuda_runtime_api.h"
#include "emu_device.h"

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#if defined(EMU_ASAN) || defined(TPD_EMU_SANITIZE)
#include <sanitizer/common_interface_defs.h>
#endif

namespace emu {

/* ---- emu_runtime.cpp ---- */
/* prints "emu: what" and the scheduler seed, then aborts */
[[noreturn]] void emu_die(const char *what);
/* the scheduler's random sequence (TPD_EMU_SEED) */
uint64_t rng_next(void);
size_t rng_below(size_t n);
bool trace(void);     /* TPD_EMU_TRACE: print every wait and every op as it runs */
long drop_wait(void); /* TPD_EMU_DROP_WAIT: the cudaStreamWaitEvent call to ignore, or 0 */
/* keeps e as the last error (cudaGetLastError) unless one is pending; returns e */
cudaError_t set_err(cudaError_t e);
/* a kernel's name as nvcc mangles it, from the executable's symbol table */
std::string kernel_name(const void *func);
struct KernelRes {
  int regs;
  size_t smem; /* static shared memory, bytes */
};
/* the ptxas table's line for a kernel, NULL for one ptxas never saw (the
 * emulator's own test kernels); name (may be NULL) gets the kernel's name */
const KernelRes *kernel_res(const void *func, std::string *name);

/* ---- emu_simt.cpp ---- */
/* runs every block of a grid, one at a time in a random order */
void run_grid(const dim3 &grid, const dim3 &block, const std::function<void()> &body);
bool in_kernel(void); /* inside run_grid */

/* ---- emu_streams.cpp ---- */
struct Op {
  std::function<void()> fn; /* empty for a marker (wait, record, graph start/end) */
  std::vector<std::shared_ptr<Op>> deps;
  const char *what;
  const void *func; /* the kernel, for traces */
  int stream = 0;   /* for traces */
  bool done = false;
};
typedef std::shared_ptr<Op> OpP;

struct Node { /* a captured op; deps index the graph's nodes */
  std::function<void()> fn;
  std::vector<int> deps;
  const char *what;
  const void *func;
  int stream; /* the stream it was captured on: its lane in a replay */
};

struct Capture {
  long id = 0;
  std::vector<Node> nodes;
  bool invalid = false;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  emu_stream *origin = nullptr;
  std::vector<emu_stream *> members;
};

}  // namespace emu

struct emu_stream {
  int id = 0;           /* 0 the legacy stream, then 1, 2, ... in creation order, for traces */
  emu::OpP last;        /* the newest op; the next one depends on it */
  bool blocking = true; /* ordered against the legacy default stream */
  emu::Capture *cap = nullptr;
  std::vector<int> tail; /* in a capture: the nodes the next node depends on */
};

namespace emu {

emu_stream *S(cudaStream_t s); /* the stream, or the legacy one for NULL */
/* Enqueues (or, in a capture, records) work on stream hs; *out (may be NULL)
 * gets the op when it was enqueued. */
cudaError_t submit(cudaStream_t hs, std::function<void()> fn, const char *what, const void *func = nullptr,
                   OpP *out = nullptr);
/* runs the pending ops the targets depend on, and the targets */
void drain(const std::vector<OpP> &targets);
void drain_all(void);
/* the error of an injected fault that ran (emu_fault_next_launch), once */
cudaError_t take_fault(void);
/* a call that global-mode capture forbids: invalidates such a capture */
cudaError_t unsafe_call(void);

}  // namespace emu

#endif
