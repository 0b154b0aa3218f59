/* CPU emulation of the CUDA runtime, cuBLASLt and the SIMT execution model,
 * just enough to run the CUDA backend's kernels and the GPU tests on a
 * machine without a GPU (tests/gpu/emu).  It checks logic, not speed, and is
 * built to make ordering and bounds faults show:
 *
 *  - each CUDA thread is a coroutine on its own stack; a block runs until every
 *    thread has finished or waits; __syncthreads() releases when every live
 *    thread of the block waits there, __shfl_xor_sync when all 32 lanes of
 *    a warp do (anything else is reported as a divergence bug and aborts).
 *    EMU_REVERSE=1 runs the threads of a block in reverse order, which
 *    changes which side of a missing barrier wins
 *  - the blocks of a grid run one at a time in a seeded random order, so a
 *    kernel whose result depends on the order of its blocks (an inter-block
 *    race) gives seed-dependent results
 *  - work is deferred: every launch, copy, memset, collective and event
 *    record becomes an op in a DAG whose edges are only the real orderings
 *    (stream order; cudaStreamWaitEvent on an event recorded elsewhere; the
 *    legacy default stream against blocking streams; graph node edges).  Ops
 *    run when the host must see them (stream, event or device synchronize, a
 *    copy to host memory, cudaFree), and then only the ones the wait needs,
 *    one at a time, picked among the ops whose dependencies are done with
 *    the streams in a seeded random priority order (see drain).  A missing
 *    wait therefore gives wrong results for some seed
 *  - the seed is TPD_EMU_SEED (else time and pid); it is printed when the
 *    program fails (non-zero exit, sanitizer report, emulator error).
 *    TPD_EMU_DROP_WAIT=k ignores the k-th cudaStreamWaitEvent (1-based, over
 *    the whole run) to prove the tests catch a missing wait;
 *    TPD_EMU_TRACE=1 prints every wait and every op as it runs
 *  - a stream capture records nodes with the same edges instead; a replay
 *    enqueues them as ops.  The capture rules that matter here: global-mode
 *    captures are invalidated by a synchronisation, an allocation, or a copy
 *    to or from pageable host memory; other streams join through events and
 *    every captured node must be joined back before the capture ends
 *  - cudaMalloc returns exactly the bytes asked for (host memory, 256-byte
 *    aligned, filled with garbage), so under AddressSanitizer a kernel that
 *    reads one element past an allocation is reported; copies and memsets
 *    are checked against the allocation; 16-byte __ldg loads check their
 *    alignment; cudaFree checks that the pointer came from cudaMalloc
 *  - launch configurations are checked (block <= 1024 threads, grid.y/z <=
 *    65535, registers of the block <= 64 K); occupancy and function
 *    attributes come from the registers and shared memory ptxas reported for
 *    each kernel (TPD_EMU_PTXAS_TABLE) on an H200 (sm_90: 132 SMs)
 *  - cuBLASLt computes the documented column-major product in double
 *  - EMU_NO_DEVICE=1 makes cudaGetDeviceCount report no device;
 *    EMU_LT_NONE=1 makes the cuBLASLt heuristic find no algorithm
 *  - emu_fault_next_launch() makes the next kernel fault when it runs; the
 *    next synchronisation or copy to host reports cudaErrorIllegalAddress
 *    (once: not sticky). */
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cuda_runtime_api.h"
#include "cublasLt.h"
#include "cuda_bf16.h"
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

#ifndef TPD_EMU_PTXAS_TABLE
#define TPD_EMU_PTXAS_TABLE ""
#endif

dim3 threadIdx, blockIdx, blockDim, gridDim;

/* ------------------------------------------------------------------ */
/* the seed                                                            */

static uint64_t g_seed, g_rng;
static bool g_seeded;

static void print_seed(void) {
  fprintf(stderr, "emu: scheduler seed %llu (TPD_EMU_SEED=%llu repeats this run)\n", (unsigned long long)g_seed,
          (unsigned long long)g_seed);
  fflush(stderr);
}

[[noreturn]] static void emu_die(const char *what) {
  fprintf(stderr, "emu: %s\n", what);
  if (g_seeded) print_seed();
  fflush(stderr);
  abort();
}

static void exit_hook(int status, void *arg) {
  (void)arg;
  if (status != 0) print_seed();
}

static void seed_init(void) {
  if (g_seeded) return;
  const char *s = getenv("TPD_EMU_SEED");
  if (s && *s) {
    char *end = NULL;
    g_seed = strtoull(s, &end, 10);
    if (*end) emu_die("TPD_EMU_SEED is not a decimal number");
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    g_seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    g_seed %= 1000000000000ull; /* short enough to retype */
  }
  g_rng = g_seed;
  g_seeded = true;
  on_exit(exit_hook, NULL);
#if defined(EMU_ASAN) || defined(TPD_EMU_SANITIZE)
  __sanitizer_set_death_callback(print_seed);
#endif
}

static uint64_t rng_next(void) {
  seed_init();
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static size_t rng_below(size_t n) { return (size_t)(rng_next() % n); }

void emu_set_seed(uint64_t seed) {
  seed_init();
  g_seed = g_rng = seed;
}

static int env_int(const char *name) {
  const char *s = getenv(name);
  if (!s || !*s) return 0;
  char *end = NULL;
  const long v = strtol(s, &end, 10);
  if (*end || v < 0) {
    fprintf(stderr, "emu: %s=%s is not a non-negative integer\n", name, s);
    abort();
  }
  return (int)v;
}

static bool trace(void) {
  static const int t = env_int("TPD_EMU_TRACE");
  return t != 0;
}

/* TPD_EMU_DROP_WAIT: the cudaStreamWaitEvent call to ignore, or 0 */
static long drop_wait(void) {
  static const int k = env_int("TPD_EMU_DROP_WAIT");
  return k;
}

/* ------------------------------------------------------------------ */
/* kernel names (the executable's symbol table) and ptxas resources    */

/* The kernel's name as nvcc mangles it: the host compiler mangles a static
 * function _ZL<name>..., device code _Z<name>... */
static std::string kernel_name(const void *func) {
  static std::map<uintptr_t, std::string> *syms;
  if (!syms) {
    syms = new std::map<uintptr_t, std::string>;
    Dl_info di;
    const int fd = open("/proc/self/exe", O_RDONLY);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && dladdr((const void *)&kernel_name, &di)) {
      void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
      const unsigned char *f = (const unsigned char *)m;
      if (m != MAP_FAILED && (size_t)st.st_size >= sizeof(Elf64_Ehdr) && !memcmp(f, ELFMAG, SELFMAG) &&
          f[EI_CLASS] == ELFCLASS64) {
        const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f;
        const uintptr_t bias = eh->e_type == ET_DYN ? (uintptr_t)di.dli_fbase : 0;
        const Elf64_Shdr *sh = (const Elf64_Shdr *)(f + eh->e_shoff);
        for (int i = 0; i < eh->e_shnum; i++) {
          if (sh[i].sh_type != SHT_SYMTAB) continue;
          const Elf64_Sym *sym = (const Elf64_Sym *)(f + sh[i].sh_offset);
          const char *str = (const char *)(f + sh[sh[i].sh_link].sh_offset);
          for (size_t k = 0; k < sh[i].sh_size / sizeof(Elf64_Sym); k++)
            if (ELF64_ST_TYPE(sym[k].st_info) == STT_FUNC && sym[k].st_value)
              (*syms)[bias + sym[k].st_value] = str + sym[k].st_name;
        }
      }
      if (m != MAP_FAILED) munmap(m, (size_t)st.st_size);
    }
    if (fd >= 0) close(fd);
  }
  auto it = syms->find((uintptr_t)func);
  if (it == syms->end()) return "";
  std::string n = it->second;
  if (n.compare(0, 3, "_ZL") == 0) n.erase(2, 1);
  return n;
}

struct KernelRes {
  int regs;
  size_t smem; /* static shared memory, bytes */
};

static const char *ptxas_path(void) {
  const char *p = getenv("TPD_EMU_PTXAS_TABLE");
  return p && *p ? p : TPD_EMU_PTXAS_TABLE;
}

/* lines "name registers shared-bytes"; '#' starts a comment line */
static const std::map<std::string, KernelRes> &ptxas_table(void) {
  static std::map<std::string, KernelRes> *t;
  if (t) return *t;
  t = new std::map<std::string, KernelRes>;
  FILE *fp = fopen(ptxas_path(), "r");
  if (!fp) {
    char m[600];
    snprintf(m, sizeof m, "cannot read the ptxas table '%s' (TPD_EMU_PTXAS_TABLE)", ptxas_path());
    emu_die(m);
  }
  char line[1024], name[900];
  int regs;
  unsigned long smem;
  while (fgets(line, sizeof line, fp)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    if (sscanf(line, "%899s %d %lu", name, &regs, &smem) != 3) {
      char m[1200];
      snprintf(m, sizeof m, "ptxas table %s: bad line: %s", ptxas_path(), line);
      emu_die(m);
    }
    (*t)[name] = KernelRes{regs, (size_t)smem};
  }
  fclose(fp);
  return *t;
}

/* NULL for a function ptxas never saw (the emulator's own test kernels) */
static const KernelRes *kernel_res(const void *func, std::string *name) {
  static std::map<const void *, const KernelRes *> cache;
  auto c = cache.find(func);
  if (c != cache.end() && !name) return c->second;
  const std::string n = kernel_name(func);
  if (name) *name = n.empty() ? "(no symbol)" : n;
  const auto &t = ptxas_table();
  auto it = t.find(n);
  const KernelRes *r = it == t.end() ? nullptr : &it->second;
  cache[func] = r;
  return r;
}

static const KernelRes &kernel_res_or_die(const void *func, const char *api) {
  std::string n;
  const KernelRes *r = kernel_res(func, &n);
  if (!r) {
    char m[1400];
    snprintf(m, sizeof m,
             "%s: kernel %s has no line in the ptxas table %s; regenerate it from a CUDA build "
             "(tests/gpu/emu/ptxas_table.sh)",
             api, n.c_str(), ptxas_path());
    emu_die(m);
  }
  return *r;
}

/* Resident blocks per SM of an H200 (compute capability 9.0): 64 K registers
 * in 4 sub-partitions, allocated per warp in units of 256 (a block's warps
 * counted in fours for the per-block limit of 64 K); 64 warps; 32 blocks;
 * 228 KB of shared memory, allocated in units of 128 bytes, of which a block
 * gets at most 48 KB (more needs an opt-in the backend never makes) plus the
 * 1 KB the system reserves for each block. */
int emu_occupancy(int regs, size_t static_smem, int block, size_t dyn_smem) {
  if (block < 1 || block > 1024 || regs > 255) return 0;
  const int warps = (block + 31) / 32;
  int n = std::min(32, 64 / warps);
  if (regs > 0) {
    const int per_warp = (regs * 32 + 255) / 256 * 256;
    if (per_warp * ((warps + 3) / 4 * 4) > 65536) return 0;
    n = std::min(n, 65536 / 4 / per_warp * 4 / warps);
  }
  const size_t per_block = (static_smem + dyn_smem + 1024 + 127) / 128 * 128;
  if (per_block > 48 * 1024 + 1024) return 0;
  return std::min(n, (int)(228 * 1024 / per_block));
}

/* ------------------------------------------------------------------ */
/* the SIMT scheduler                                                  */

enum { T_RUN, T_DONE, T_BAR, T_SHFL };

/* Switching between the scheduler and a thread.  On x86-64 a few lines of
 * assembly that save the callee-saved registers, the SSE and x87 control
 * words and the stack pointer (swapcontext also saves the signal mask, a
 * system call per switch, which was half of the emulator's time); elsewhere
 * ucontext. */
#if defined(__x86_64__) && !defined(TPD_EMU_UCONTEXT)
#define EMU_FAST_SWITCH 1
extern "C" void emu_switch_stack(void **save_sp, void *load_sp);
__asm__(
    ".text\n"
    ".globl emu_switch_stack\n"
    ".type emu_switch_stack,@function\n"
    "emu_switch_stack:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_switch_stack, .-emu_switch_stack\n");
#endif

struct EmuThread {
#ifdef EMU_FAST_SWITCH
  void *sp;
#else
  ucontext_t ctx;
#endif
  char *stack;
  int state;
  uint32_t val;
  int off;
  dim3 tid;
  void *fake; /* AddressSanitizer's fake stack while switched out */
};

/* Each CUDA thread's stack, with a guard page below it.  Small: under
 * AddressSanitizer the deepest kernel thread of gpu.emu.graph used 7.3 KB. */
static const size_t STACK_BYTES = 32 << 10;
#ifdef EMU_FAST_SWITCH
static void *g_sched_sp;
#else
static ucontext_t g_sched;
#endif
static EmuThread *g_cur;
static std::vector<EmuThread> g_threads;
static const std::function<void()> *g_body;
static int g_running; /* inside a kernel */
#ifdef EMU_ASAN
static const void *g_sched_bottom; /* the scheduler's stack, for the fiber annotations */
static size_t g_sched_size;
#endif

static void to_scheduler(EmuThread *t) {
#ifdef EMU_FAST_SWITCH
  emu_switch_stack(&t->sp, g_sched_sp);
#else
  swapcontext(&t->ctx, &g_sched);
#endif
}

[[noreturn]] static void thread_entry(void) {
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(NULL, &g_sched_bottom, &g_sched_size);
#endif
  (*g_body)();
  g_cur->state = T_DONE;
#ifdef EMU_ASAN
  __sanitizer_start_switch_fiber(NULL, g_sched_bottom, g_sched_size); /* this fiber ends */
#endif
  to_scheduler(g_cur); /* never resumed */
  abort();
}

/* a thread about to run thread_entry on its own stack */
static void thread_init(EmuThread &t) {
#ifdef EMU_FAST_SWITCH
  /* what emu_switch_stack pops: the control words, six registers, then
   * thread_entry as the return address, 16-byte aligned as after a call */
  uint64_t *top = (uint64_t *)(((uintptr_t)t.stack + STACK_BYTES) & ~(uintptr_t)15);
  uint64_t *sp = top - 2;
  sp[1] = 0; /* thread_entry's own return address: it never returns */
  sp[0] = (uint64_t)(uintptr_t)&thread_entry;
  sp -= 6;
  memset(sp, 0, 6 * sizeof *sp);
  sp -= 1;
  const uint32_t mxcsr = 0x1f80; /* the defaults: round to nearest, exceptions masked */
  const uint16_t fpcw = 0x037f;
  memcpy(sp, &mxcsr, 4);
  memcpy((char *)sp + 4, &fpcw, 2);
  t.sp = sp;
#else
  getcontext(&t.ctx);
  t.ctx.uc_stack.ss_sp = t.stack;
  t.ctx.uc_stack.ss_size = STACK_BYTES;
  t.ctx.uc_link = NULL;
  makecontext(&t.ctx, (void (*)(void))thread_entry, 0);
#endif
}

static void yield_to_scheduler(void) {
#ifdef EMU_ASAN
  __sanitizer_start_switch_fiber(&g_cur->fake, g_sched_bottom, g_sched_size);
#endif
  to_scheduler(g_cur);
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(g_cur->fake, NULL, NULL);
#endif
}

static void resume(EmuThread &t) {
  g_cur = &t;
  threadIdx = t.tid;
#ifdef EMU_ASAN
  void *fake = NULL;
  __sanitizer_start_switch_fiber(&fake, t.stack, STACK_BYTES);
#endif
#ifdef EMU_FAST_SWITCH
  emu_switch_stack(&g_sched_sp, t.sp);
#else
  swapcontext(&g_sched, &t.ctx);
#endif
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

void __syncthreads(void) {
  g_cur->state = T_BAR;
  yield_to_scheduler();
}

uint32_t emu_shfl_xor(uint32_t v, int lane_mask) {
  g_cur->state = T_SHFL;
  g_cur->val = v;
  g_cur->off = lane_mask;
  yield_to_scheduler();
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
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t i = old; i < (size_t)n; i++) {
      void *m = mmap(NULL, STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED || mprotect(m, page, PROT_NONE) != 0) emu_die("out of memory for thread stacks");
      g_threads[i].stack = (char *)m + page;
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
    t.fake = NULL;
    t.tid = dim3((unsigned)i % block.x, ((unsigned)i / block.x) % block.y, (unsigned)i / (block.x * block.y));
    thread_init(t);
  }
  int alive = n;
  for (;;) {
    for (int k = 0; k < n; k++) {
      EmuThread &t = g_threads[(size_t)(reverse ? n - 1 - k : k)];
      if (t.state != T_RUN) continue;
      resume(t);
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

/* the blocks one at a time, in a random order */
static void run_grid(const dim3 &grid, const dim3 &block, const std::function<void()> &body) {
  const size_t nb = (size_t)grid.x * grid.y * grid.z;
  std::vector<size_t> order(nb);
  for (size_t i = 0; i < nb; i++) order[i] = i;
  for (size_t i = nb; i > 1; i--) std::swap(order[i - 1], order[rng_below(i)]);
  g_running = 1;
  for (size_t b : order)
    run_block(grid, block, dim3((unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / grid.x / grid.y)),
              body);
  g_running = 0;
}

/* ------------------------------------------------------------------ */
/* deferred work: ops, streams, events, captures, graphs               */

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

struct emu_stream {
  int id = 0;           /* 0 the legacy stream, then 1, 2, ... in creation order, for traces */
  OpP last;             /* the newest op; the next one depends on it */
  bool blocking = true; /* ordered against the legacy default stream */
  Capture *cap = nullptr;
  std::vector<int> tail; /* in a capture: the nodes the next node depends on */
};

struct emu_event {
  bool recorded = false;
  OpP op;          /* eager record: done when this op is */
  std::string after; /* for traces: the last work on the stream when recorded */
  long cap_id = 0; /* recorded inside this capture */
  std::vector<int> tail;
  int stream = -1; /* the recording stream's id, for traces */
};

struct emu_graph {
  std::vector<Node> nodes;
};

static emu_stream g_legacy;
static std::set<emu_stream *> g_blocking; /* created without cudaStreamNonBlocking */
static std::vector<OpP> g_pending;
static Capture *g_capture;
static long g_capture_ids;
static long g_waits; /* cudaStreamWaitEvent calls so far */
static int g_stream_ids;
static cudaError_t g_last = cudaSuccess;
static std::map<uintptr_t, size_t> g_allocs;

static emu_stream *S(cudaStream_t s) { return s ? s : &g_legacy; }

static cudaError_t set_err(cudaError_t e) {
  if (e != cudaSuccess && g_last == cudaSuccess) g_last = e;
  return e;
}

/* emu_fault_next_launch: when armed, the next launch's body is replaced by a
 * fault, which a call that waits for the device then reports (take_fault) */
static bool g_fault_armed;
static cudaError_t g_fault_pending = cudaSuccess;

static cudaError_t take_fault(void) {
  const cudaError_t e = g_fault_pending;
  g_fault_pending = cudaSuccess;
  return e == cudaSuccess ? e : set_err(e);
}

static void run_op(const OpP &o) {
  if (trace()) {
    std::string n = o->func ? kernel_name(o->func) : "";
    fprintf(stderr, "emu: run on stream %d: %s %s\n", o->stream, o->what, n.c_str());
  }
  if (o->fn) {
    if (g_running) emu_die("device work started from inside a kernel");
    o->fn();
  }
  o->done = true;
  o->deps.clear(); /* nothing waits on what is done: free the chain */
  o->fn = nullptr;
}

/* Runs the pending ops the targets depend on (and the targets), one at a
 * time.  Each stream (each captured stream's lane, in a graph replay) gets
 * a random priority and the ready op of the highest runs; the priorities
 * are drawn again after 1 op in 32 on average.  So one stream often runs far
 * ahead of another, as far as the real dependencies allow, which is what
 * makes a missing wait show (a uniform pick among the ready ops keeps the
 * streams close together and hides most of them). */
static void drain(const std::vector<OpP> &targets) {
  std::vector<OpP> todo;
  std::set<Op *> seen;
  std::vector<OpP> stack;
  for (const OpP &t : targets)
    if (t && !t->done) stack.push_back(t);
  while (!stack.empty()) {
    OpP o = stack.back();
    stack.pop_back();
    if (o->done || !seen.insert(o.get()).second) continue;
    todo.push_back(o);
    for (const OpP &d : o->deps) stack.push_back(d);
  }
  std::vector<size_t> ready;
  std::map<int, uint64_t> prio;
  while (!todo.empty()) {
    ready.clear();
    if (rng_below(32) == 0) prio.clear();
    uint64_t best = 0;
    for (size_t i = 0; i < todo.size(); i++) {
      bool ok = true;
      for (const OpP &d : todo[i]->deps) ok = ok && d->done;
      if (!ok) continue;
      auto pr = prio.find(todo[i]->stream);
      const uint64_t p = pr != prio.end() ? pr->second : (prio[todo[i]->stream] = rng_next() | 1);
      if (p > best) ready.clear(), best = p;
      if (p == best) ready.push_back(i);
    }
    if (ready.empty()) emu_die("internal: pending ops wait on each other");
    const size_t k = ready[rng_below(ready.size())];
    OpP o = todo[k];
    todo[k] = todo.back();
    todo.pop_back();
    run_op(o);
  }
  g_pending.erase(std::remove_if(g_pending.begin(), g_pending.end(), [](const OpP &o) { return o->done; }),
                  g_pending.end());
}

static void drain_all(void) { drain(std::vector<OpP>(g_pending)); }

static OpP new_op(std::function<void()> fn, const char *what, const void *func) {
  OpP o = std::make_shared<Op>();
  o->fn = std::move(fn);
  o->what = what;
  o->func = func;
  return o;
}

static void add_dep(const OpP &o, const OpP &d) {
  if (d && !d->done && d != o) o->deps.push_back(d);
}

/* appends an op to an eager stream */
static OpP enqueue(emu_stream *s, std::function<void()> fn, const char *what, const void *func = nullptr,
                   const std::vector<OpP> &extra = {}) {
  OpP o = new_op(std::move(fn), what, func);
  o->stream = s->id;
  add_dep(o, s->last);
  if (s == &g_legacy) {
    for (emu_stream *b : g_blocking) add_dep(o, b->last);
  } else if (s->blocking) {
    add_dep(o, g_legacy.last);
  }
  for (const OpP &d : extra) add_dep(o, d);
  s->last = o;
  g_pending.push_back(o);
  return o;
}

/* a call that global-mode capture forbids */
static cudaError_t unsafe_call(void) {
  if (g_capture && g_capture->mode == cudaStreamCaptureModeGlobal) {
    g_capture->invalid = true;
    return cudaErrorStreamCaptureUnsupported;
  }
  return cudaSuccess;
}

/* Enqueues (or, in a capture, records) work on stream hs. */
static cudaError_t submit(cudaStream_t hs, std::function<void()> fn, const char *what, const void *func = nullptr,
                          OpP *out = nullptr) {
  emu_stream *s = S(hs);
  if (s->cap) {
    Capture *c = s->cap;
    if (c->invalid) return set_err(cudaErrorStreamCaptureInvalidated);
    c->nodes.push_back(Node{std::move(fn), s->tail, what, func, s->id});
    s->tail.assign(1, (int)c->nodes.size() - 1);
    return cudaSuccess;
  }
  if (s == &g_legacy)
    for (emu_stream *b : g_blocking)
      if (b->cap) { /* the legacy stream would wait on a capturing blocking stream */
        b->cap->invalid = true;
        return set_err(cudaErrorStreamCaptureImplicit);
      }
  OpP o = enqueue(s, std::move(fn), what, func);
  if (out) *out = o;
  return cudaSuccess;
}

void emu_submit(cudaStream_t s, std::function<void()> fn) { (void)submit(s, std::move(fn), "host function"); }

void emu_enqueue(cudaStream_t s, dim3 grid, dim3 block, std::function<void()> body, const void *func) {
  const unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
  if (nt < 1 || nt > 1024 || block.z > 64 || grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 0x7fffffffu ||
      grid.y > 65535 || grid.z > 65535) {
    set_err(cudaErrorInvalidConfiguration);
    return;
  }
  if (g_running) emu_die("kernel launch from inside a kernel");
  const KernelRes *r = func ? kernel_res(func, nullptr) : nullptr;
  if (r && emu_occupancy(r->regs, r->smem, (int)nt, 0) == 0) { /* more registers than an SM has */
    set_err(cudaErrorLaunchOutOfResources);
    return;
  }
  if (g_fault_armed) {
    g_fault_armed = false;
    submit(s, []() { g_fault_pending = cudaErrorIllegalAddress; }, "kernel (injected fault)", func);
    return;
  }
  submit(s, [grid, block, body]() { run_grid(grid, block, body); }, "kernel", func);
}

void emu_fault_next_launch(void) { g_fault_armed = true; }

static bool is_device(const void *p) {
  const uintptr_t a = (uintptr_t)p;
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  --it;
  return a >= it->first && a < it->first + it->second;
}

static void check_range(const void *p, size_t n, const char *what) {
  if (n && is_device(p) && !is_device((const char *)p + n - 1)) {
    char m[160];
    snprintf(m, sizeof m, "%s past the end of a device allocation", what);
    emu_die(m);
  }
}

/* A copy of `rows` rows of `width` bytes.  Device to device: deferred.  From
 * pageable host memory: the source is read now (as CUDA stages it), the
 * device is written in stream order.  To pageable host memory: returns once
 * the copy has run.  Host to host: at once. */
static cudaError_t copy_on(cudaStream_t hs, void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                           size_t rows) {
  const bool dd = is_device(dst), sd = is_device(src);
  emu_stream *s = S(hs);
  if (s->cap && (!dd || !sd)) {
    s->cap->invalid = true; /* pageable host memory cannot be captured */
    return set_err(cudaErrorStreamCaptureUnsupported);
  }
  for (size_t r = 0; r < rows; r++) {
    check_range((const char *)dst + r * dpitch, width, "copy to");
    check_range((const char *)src + r * spitch, width, "copy from");
  }
  if (!width || !rows) return cudaSuccess;
  if (!dd && !sd) {
    for (size_t r = 0; r < rows; r++) memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
    return cudaSuccess;
  }
  if (!sd) {
    auto staged = std::make_shared<std::vector<char>>(width * rows);
    for (size_t r = 0; r < rows; r++) memcpy(staged->data() + r * width, (const char *)src + r * spitch, width);
    return submit(hs, [=]() {
      for (size_t r = 0; r < rows; r++) memcpy((char *)dst + r * dpitch, staged->data() + r * width, width);
    }, "copy host to device");
  }
  OpP o;
  const cudaError_t e = submit(hs, [=]() {
    for (size_t r = 0; r < rows; r++) memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
  }, dd ? "copy device to device" : "copy device to host", nullptr, &o);
  if (e == cudaSuccess && !dd) {
    drain({o});
    return take_fault();
  }
  return e;
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
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered (emulated fault)";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return g_last; }

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
  snprintf(p->name, sizeof p->name, "CPU emulation of an H200");
  const char *sms = getenv("EMU_SMS");
  p->multiProcessorCount = sms ? atoi(sms) : 132;
  p->major = 9;
  p->minor = 0;
  p->totalGlobalMem = (size_t)16 << 30; /* host memory backs it */
  return cudaSuccess;
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, const void *func) {
  memset(a, 0, sizeof *a);
  if (!func) return set_err(cudaErrorInvalidDeviceFunction);
  const KernelRes &r = kernel_res_or_die(func, "cudaFuncGetAttributes");
  a->numRegs = r.regs;
  a->sharedSizeBytes = r.smem;
  return cudaSuccess;
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, const void *func, int block, size_t smem) {
  *n = 0;
  if (!func) return set_err(cudaErrorInvalidDeviceFunction);
  if (block < 1 || block > 1024) return set_err(cudaErrorInvalidValue);
  const KernelRes &r = kernel_res_or_die(func, "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  *n = emu_occupancy(r.regs, r.smem, block, smem);
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n) {
  *p = NULL;
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  void *q = NULL;
  if (posix_memalign(&q, 256, n ? n : 1) != 0) return set_err(cudaErrorMemoryAllocation);
  memset(q, 0xA5, n); /* device memory starts as garbage, not zeros */
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
  drain_all(); /* cudaFree waits for the device */
  g_allocs.erase(it);
  free(p);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
  (void)k;
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  return copy_on(NULL, dst, n, src, n, n, 1);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s) {
  (void)k;
  return copy_on(s, dst, n, src, n, n, 1);
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind k, cudaStream_t s) {
  (void)k;
  if (width > dpitch || width > spitch) return set_err(cudaErrorInvalidValue);
  return copy_on(s, dst, dpitch, src, spitch, width, height);
}

cudaError_t cudaMemset(void *p, int v, size_t n) {
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  return cudaMemsetAsync(p, v, n, NULL);
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
  if (n && (!is_device(p) || !is_device((char *)p + n - 1))) emu_die("cudaMemset outside a device allocation");
  return submit(s, [p, v, n]() { memset(p, v, n); }, "memset");
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p) {
  memset(a, 0, sizeof *a);
  a->type = is_device(p) ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
  a->device = 0;
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
  *s = new emu_stream;
  (*s)->id = ++g_stream_ids;
  (*s)->blocking = !(flags & cudaStreamNonBlocking);
  if ((*s)->blocking) g_blocking.insert(*s);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s) return set_err(cudaErrorInvalidValue);
  /* its pending work still runs; the ops keep their own references */
  g_blocking.erase(s);
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (S(s)->cap) {
    S(s)->cap->invalid = true;
    return set_err(cudaErrorStreamCaptureUnsupported);
  }
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  drain({S(s)->last});
  return take_fault();
}

cudaError_t cudaDeviceSynchronize(void) {
  if (g_capture) { /* would wait for the capturing stream */
    g_capture->invalid = true;
    return set_err(cudaErrorStreamCaptureUnsupported);
  }
  drain_all();
  return take_fault();
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

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t hs) {
  emu_stream *s = S(hs);
  e->recorded = true;
  e->stream = s->id;
  e->tail.clear();
  e->op = nullptr;
  e->after.clear();
  if (trace() || drop_wait()) {
    if (s->cap && !s->tail.empty()) {
      const Node &n = s->cap->nodes[(size_t)s->tail.back()];
      e->after = std::string(n.what) + " " + (n.func ? kernel_name(n.func) : "");
    } else if (!s->cap && s->last) {
      e->after = std::string(s->last->what) + " " + (s->last->func ? kernel_name(s->last->func) : "");
    }
  }
  if (s->cap) {
    if (s->cap->invalid) return set_err(cudaErrorStreamCaptureInvalidated);
    e->cap_id = s->cap->id;
    e->tail = s->tail;
    return cudaSuccess;
  }
  e->cap_id = 0;
  OpP o;
  const cudaError_t r = submit(hs, nullptr, "event record", nullptr, &o);
  e->op = o;
  return r;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (e->cap_id) return set_err(cudaErrorIllegalState);
  drain({e->op});
  return take_fault();
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
  (void)a, (void)b;
  *ms = 1.0f;
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t hs, cudaEvent_t e, unsigned flags) {
  (void)flags;
  emu_stream *s = S(hs);
  const long k = ++g_waits, drop = drop_wait();
  if (trace() || k == drop)
    fprintf(stderr,
            "emu: cudaStreamWaitEvent #%ld: %s stream %d waits on event %p, recorded on stream %d%s after: %s%s\n", k,
            s->cap ? "capturing" : "eager", s->id, (void *)e, e->stream,
            e->cap_id ? " in a capture" : "", e->after.empty() ? "(nothing)" : e->after.c_str(),
            k == drop ? " -- DROPPED (TPD_EMU_DROP_WAIT)" : "");
  if (k == drop) return cudaSuccess;
  if (!e->recorded) return cudaSuccess; /* nothing to wait for */
  if (!e->cap_id) {
    if (s->cap) { /* waiting inside a capture on work outside it */
      s->cap->invalid = true;
      return set_err(cudaErrorStreamCaptureIsolation);
    }
    enqueue(s, nullptr, "event wait", nullptr, {e->op});
    return cudaSuccess;
  }
  Capture *c = g_capture;
  if (!c || c->id != e->cap_id) return set_err(cudaErrorStreamCaptureIsolation);
  if (c->invalid) return set_err(cudaErrorStreamCaptureInvalidated);
  if (s == &g_legacy) emu_die("the legacy stream waits on a captured event");
  if (!s->cap) { /* fork: s joins the capture */
    s->cap = c;
    s->tail = e->tail;
    c->members.push_back(s);
    return cudaSuccess;
  }
  for (int n : e->tail)
    if (std::find(s->tail.begin(), s->tail.end(), n) == s->tail.end()) s->tail.push_back(n);
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  if (!s || s->cap || g_capture) return set_err(cudaErrorIllegalState);
  g_capture = new Capture;
  g_capture->id = ++g_capture_ids;
  g_capture->mode = mode;
  g_capture->origin = s;
  g_capture->members.push_back(s);
  s->cap = g_capture;
  s->tail.clear();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
  *g = NULL;
  if (!s || !s->cap || s->cap->origin != s) return set_err(cudaErrorIllegalState);
  Capture *c = s->cap;
  cudaError_t e = c->invalid ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
  if (e == cudaSuccess) { /* every node must lead into the origin stream's last nodes */
    std::vector<char> joined(c->nodes.size(), 0);
    std::vector<int> stack(s->tail);
    while (!stack.empty()) {
      const int n = stack.back();
      stack.pop_back();
      if (joined[(size_t)n]) continue;
      joined[(size_t)n] = 1;
      for (int d : c->nodes[(size_t)n].deps) stack.push_back(d);
    }
    if (std::find(joined.begin(), joined.end(), 0) != joined.end()) e = cudaErrorStreamCaptureUnjoined;
  }
  for (emu_stream *x : c->members) {
    x->cap = nullptr;
    x->tail.clear();
  }
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

/* the graph's nodes as ops: after the stream's earlier work, with the
 * captured edges; the stream's next op waits for all of them */
cudaError_t cudaGraphLaunch(cudaGraphExec_t g, cudaStream_t hs) {
  emu_stream *s = S(hs);
  if (s->cap) emu_die("graph launch inside a capture (not used by the backend)");
  OpP start = enqueue(s, nullptr, "graph start");
  std::vector<OpP> ops(g->nodes.size());
  for (size_t i = 0; i < g->nodes.size(); i++) {
    const Node &n = g->nodes[i];
    ops[i] = new_op(n.fn, n.what, n.func);
    ops[i]->stream = n.stream;
    add_dep(ops[i], start);
    for (int d : n.deps) add_dep(ops[i], ops[(size_t)d]);
    g_pending.push_back(ops[i]);
  }
  enqueue(s, nullptr, "graph end", nullptr, ops);
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
  }, "cublasLtMatmul");
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // extern "C"
