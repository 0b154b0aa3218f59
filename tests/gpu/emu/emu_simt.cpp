/* The CPU emulation's SIMT scheduler (tests/gpu/emu; the design:
 * emu_runtime.cpp): each CUDA thread of a block a coroutine on its own
 * guarded stack; a block runs until every thread has finished or waits at a
 * barrier (__syncthreads) or a warp exchange (__shfl_xor_sync), and the
 * blocks of a grid run one at a time in a seeded random order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "emu_internal.h"

using namespace emu;

dim3 threadIdx, blockIdx, blockDim, gridDim;

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

bool emu::in_kernel(void) { return g_running != 0; }

void emu::run_grid(const dim3 &grid, const dim3 &block, const std::function<void()> &body) {
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
