/* Device helpers shared by the kernels: bf16 <-> f32, 16-byte loads, warp
 * reductions, and the activation-type helpers (tpd_act, tpd_v8) that let one
 * kernel template serve both activation dtypes.  bf16 values travel as raw
 * uint16_t (two per uint32_t, eight per uint4); conversions to f32 are exact
 * shifts, conversions from f32 round to nearest even (cvt.rn.bf16.f32).
 * f32 activations are plain float.  Include from .cu files only. */
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

/* Word i (0..3, a compile-time constant after unrolling) of a uint4. */
static __device__ __forceinline__ uint32_t tpd_u4_word(const uint4 v, const int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* ---- one element of an activation (or weight) of storage type T ----
 * T = uint16_t: bf16 bits (stores round to nearest even); T = float: f32. */
template <typename T>
struct tpd_act;
template <>
struct tpd_act<uint16_t> {
  static __device__ __forceinline__ float get(const uint16_t h) { return tpd_bf16_f32(h); }
  static __device__ __forceinline__ uint16_t put(const float f) { return tpd_f32_bf16(f); }
  static __device__ __forceinline__ uint32_t bits(const uint16_t h) { return (uint32_t)h; }
};
template <>
struct tpd_act<float> {
  static __device__ __forceinline__ float get(const float f) { return f; }
  static __device__ __forceinline__ float put(const float f) { return f; }
  static __device__ __forceinline__ uint32_t bits(const float f) { return __float_as_uint(f); }
};

/* ---- eight consecutive elements of type T as raw words ----
 * bf16: one uint4 (16 bytes); f32: two (32 bytes).  v[e] reads element e as
 * f32 (e a compile-time constant after unrolling).  The vector loads need
 * 16-byte alignment; pack() rounds to T. */
template <typename T>
struct tpd_v8;
template <>
struct tpd_v8<uint16_t> {
  uint4 a;
  __device__ __forceinline__ float operator[](const int e) const { return tpd_u4_elem(a, e); }
  static __device__ __forceinline__ tpd_v8 load(const uint16_t *p) {
    tpd_v8 r;
    r.a = *(const uint4 *)p;
    return r;
  }
  static __device__ __forceinline__ tpd_v8 load_ldg(const uint16_t *p) {
    tpd_v8 r;
    r.a = __ldg((const uint4 *)p);
    return r;
  }
  static __device__ __forceinline__ tpd_v8 load_stream(const uint16_t *p) {
    tpd_v8 r;
    r.a = tpd_ld_stream16(p);
    return r;
  }
  /* elements [0, n) through the read-only path, zeros after */
  static __device__ __forceinline__ tpd_v8 load_tail(const uint16_t *p, const int n) {
    uint32_t h[8];
#pragma unroll
    for (int e = 0; e < 8; e++) h[e] = e < n ? (uint32_t)__ldg(p + e) : 0u;
    tpd_v8 r;
    r.a = make_uint4(h[0] | (h[1] << 16), h[2] | (h[3] << 16), h[4] | (h[5] << 16), h[6] | (h[7] << 16));
    return r;
  }
  static __device__ __forceinline__ tpd_v8 zero() {
    tpd_v8 r;
    r.a = make_uint4(0u, 0u, 0u, 0u);
    return r;
  }
  static __device__ __forceinline__ tpd_v8 pack(const float *f) {
    tpd_v8 r;
    r.a = make_uint4(tpd_pack_bf16x2(f[0], f[1]), tpd_pack_bf16x2(f[2], f[3]), tpd_pack_bf16x2(f[4], f[5]),
                     tpd_pack_bf16x2(f[6], f[7]));
    return r;
  }
  __device__ __forceinline__ void store(uint16_t *p) const { *(uint4 *)p = a; }
};
template <>
struct tpd_v8<float> {
  uint4 a, b;
  __device__ __forceinline__ float operator[](const int e) const {
    return __uint_as_float(tpd_u4_word(e < 4 ? a : b, e & 3));
  }
  static __device__ __forceinline__ tpd_v8 load(const float *p) {
    tpd_v8 r;
    r.a = *(const uint4 *)p;
    r.b = *(const uint4 *)(p + 4);
    return r;
  }
  static __device__ __forceinline__ tpd_v8 load_ldg(const float *p) {
    tpd_v8 r;
    r.a = __ldg((const uint4 *)p);
    r.b = __ldg((const uint4 *)(p + 4));
    return r;
  }
  static __device__ __forceinline__ tpd_v8 load_stream(const float *p) {
    tpd_v8 r;
    r.a = tpd_ld_stream16(p);
    r.b = tpd_ld_stream16(p + 4);
    return r;
  }
  static __device__ __forceinline__ tpd_v8 load_tail(const float *p, const int n) {
    uint32_t h[8];
#pragma unroll
    for (int e = 0; e < 8; e++) h[e] = e < n ? __float_as_uint(__ldg(p + e)) : 0u;
    tpd_v8 r;
    r.a = make_uint4(h[0], h[1], h[2], h[3]);
    r.b = make_uint4(h[4], h[5], h[6], h[7]);
    return r;
  }
  static __device__ __forceinline__ tpd_v8 zero() {
    tpd_v8 r;
    r.a = r.b = make_uint4(0u, 0u, 0u, 0u);
    return r;
  }
  static __device__ __forceinline__ tpd_v8 pack(const float *f) {
    tpd_v8 r;
    r.a = make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
    r.b = make_uint4(__float_as_uint(f[4]), __float_as_uint(f[5]), __float_as_uint(f[6]), __float_as_uint(f[7]));
    return r;
  }
  __device__ __forceinline__ void store(float *p) const {
    *(uint4 *)p = a;
    *(uint4 *)(p + 4) = b;
  }
};

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
