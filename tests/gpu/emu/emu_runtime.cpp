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
 *    (once: not sticky).
 * This file: the seed, the environment knobs, the last error, kernel names
 * and ptxas resources, occupancy and the device queries; the other parts:
 * emu_internal.h. */
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>

#include "emu_internal.h"

#ifndef TPD_EMU_PTXAS_TABLE
#define TPD_EMU_PTXAS_TABLE ""
#endif

using namespace emu;

/* ------------------------------------------------------------------ */
/* the seed                                                            */

static uint64_t g_seed, g_rng;
static bool g_seeded;

static void print_seed(void) {
  fprintf(stderr, "emu: scheduler seed %llu (TPD_EMU_SEED=%llu repeats this run)\n", (unsigned long long)g_seed,
          (unsigned long long)g_seed);
  fflush(stderr);
}

[[noreturn]] void emu::emu_die(const char *what) {
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

uint64_t emu::rng_next(void) {
  seed_init();
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

size_t emu::rng_below(size_t n) { return (size_t)(rng_next() % n); }

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

bool emu::trace(void) {
  static const int t = env_int("TPD_EMU_TRACE");
  return t != 0;
}

long emu::drop_wait(void) {
  static const int k = env_int("TPD_EMU_DROP_WAIT");
  return k;
}

/* ------------------------------------------------------------------ */
/* the last error                                                      */

static cudaError_t g_last = cudaSuccess;

cudaError_t emu::set_err(cudaError_t e) {
  if (e != cudaSuccess && g_last == cudaSuccess) g_last = e;
  return e;
}

/* ------------------------------------------------------------------ */
/* kernel names (the executable's symbol table) and ptxas resources    */

/* The kernel's name as nvcc mangles it: the host compiler mangles a static
 * function _ZL<name>..., device code _Z<name>... */
std::string emu::kernel_name(const void *func) {
  static std::map<uintptr_t, std::string> *syms;
  if (!syms) {
    syms = new std::map<uintptr_t, std::string>;
    Dl_info di;
    const int fd = open("/proc/self/exe", O_RDONLY);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && dladdr((const void *)&emu::kernel_name, &di)) {
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

const KernelRes *emu::kernel_res(const void *func, std::string *name) {
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
    case cudaErrorNotReady: return "device not ready";
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

}  // extern "C"
