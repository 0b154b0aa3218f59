/* Force-included into the kernel sources when they are compiled for the CPU
 * emulation (tests/gpu/emu): maps the CUDA C keywords and intrinsics the
 * kernels use onto host code.  Each CUDA thread runs as a coroutine; every
 * __syncthreads() is a block barrier and every __shfl_xor_sync a warp-wide
 * exchange, resolved by the scheduler in emu_simt.cpp.  `<<<...>>>`
 * launches were rewritten into emu_launch() calls by emu_convert.cmake and
 * are deferred: they run when a synchronisation needs them (emu_streams.cpp).
 * Not CUDA; a harness to run the kernels' logic where no GPU exists. */
#ifndef TPD_EMU_DEVICE_H
#define TPD_EMU_DEVICE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>

#include "cuda_runtime_api.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

extern dim3 threadIdx, blockIdx, blockDim, gridDim;

void __syncthreads(void);
uint32_t emu_shfl_xor(uint32_t v, int lane_mask);
void emu_check_align(const void *p, size_t align, const char *what);

static inline float __shfl_xor_sync(unsigned mask, float v, int o) {
  (void)mask;
  uint32_t u;
  memcpy(&u, &v, 4);
  u = emu_shfl_xor(u, o);
  float r;
  memcpy(&r, &u, 4);
  return r;
}
static inline int __shfl_xor_sync(unsigned mask, int v, int o) {
  (void)mask;
  return (int)emu_shfl_xor((uint32_t)v, o);
}
template <typename T>
static inline T __ldg(const T *p) {
  emu_check_align(p, alignof(T), "__ldg");
  return *p;
}
static inline float __uint_as_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
#define __expf(x) expf(x) /* glibc declares its own __expf */
static inline void sincospi(double x, double *s, double *c) {
  *s = sin(M_PI * x);
  *c = cos(M_PI * x);
}
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) {
  uint4 r;
  r.x = a, r.y = b, r.z = c, r.w = d;
  return r;
}

/* Enqueues (or, inside a capture, records) one launch of kernel func on
 * stream s; it runs when a synchronisation needs it. */
void emu_enqueue(cudaStream_t s, dim3 grid, dim3 block, std::function<void()> body, const void *func);
/* Enqueues (or records) host work in stream order: the emulated collectives. */
void emu_submit(cudaStream_t s, std::function<void()> fn);
/* For the emulator's own tests: restart the scheduler's random sequence. */
void emu_set_seed(uint64_t seed);
/* Resident blocks per SM of an H200 for a kernel of regs registers per
 * thread and static_smem bytes of static shared memory. */
int emu_occupancy(int regs, size_t static_smem, int block, size_t dyn_smem);

/* kernel<<<grid, block, smem, stream>>>(args...): the arguments are converted
 * to the kernel's parameter types now, as a launch would. */
template <typename... P, typename... A>
static inline void emu_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t s, void (*k)(P...), A... args) {
  (void)smem;
  std::tuple<typename std::decay<P>::type...> t(args...);
  emu_enqueue(s, grid, block, [k, t]() { std::apply(k, t); }, (const void *)k);
}

#endif
