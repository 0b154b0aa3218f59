/* Device helpers shared by the kernels: bf16 <-> f32, 16-byte loads, warp
 * reductions.  bf16 values travel as raw uint16_t (two per uint32_t, eight
 * per uint4); conversions to f32 are exact shifts, conversions from f32
 * round to nearest even (cvt.rn.bf16.f32).  Include from .cu files only. */
#ifndef TPD_CUDA_UTIL_H
#define TPD_CUDA_UTIL_H

#include <cuda_bf16.h>
#include <stdint.h>

#define TPD_FULL_MASK 0xffffffffu

static __device__ __forceinline__ float tpd_bf16_lo(uint32_t v) { return __uint_as_float(v << 16); }
static __device__ __forceinline__ float tpd_bf16_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }
static __device__ __forceinline__ float tpd_bf16_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

static __device__ __forceinline__ uint16_t tpd_f32_bf16(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

static __device__ __forceinline__ uint32_t tpd_pack_bf16x2(float lo, float hi) {
  return (uint32_t)tpd_f32_bf16(lo) | ((uint32_t)tpd_f32_bf16(hi) << 16);
}

/* The eight bf16 of a uint4 as floats; e indexes 0..7 and must be a
 * compile-time constant after unrolling. */
static __device__ __forceinline__ float tpd_u4_elem(const uint4 v, const int e) {
  const uint32_t w = e < 2 ? v.x : e < 4 ? v.y : e < 6 ? v.z : v.w;
  return (e & 1) ? tpd_bf16_hi(w) : tpd_bf16_lo(w);
}

/* 16-byte load of data read once (weights): bypasses L1 so that the
 * activations other warps re-read stay there. */
static __device__ __forceinline__ uint4 tpd_ld_stream16(const void *p) {
#ifdef TPD_CUDA_EMU /* tests/gpu/emu: the CPU emulation has no PTX */
  return __ldg((const uint4 *)p);
#else
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
#endif
}

static __device__ __forceinline__ float tpd_warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(TPD_FULL_MASK, v, o);
  return v;
}

static __device__ __forceinline__ float tpd_warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(TPD_FULL_MASK, v, o));
  return v;
}

/* silu(g) * u, the CPU twin's order of operations: g / (1 + e^-g) * u. */
static __device__ __forceinline__ float tpd_silu_mul(float g, float u) { return g / (1.0f + __expf(-g)) * u; }

static __host__ __device__ __forceinline__ int tpd_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

#endif
