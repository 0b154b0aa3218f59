/* Element types and scalar conversions shared by the loader, the kernels and
 * the comm layer.  Conversions are exact where the target can represent the
 * value; float -> bf16/f16 rounds to nearest even. */
#ifndef TPD_DTYPE_H
#define TPD_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TPD_F32 = 0, TPD_BF16 = 1, TPD_F16 = 2, TPD_DTYPE_COUNT } tpd_dtype;

static inline size_t tpd_dtype_size(tpd_dtype t) { return t == TPD_F32 ? 4 : 2; }
static inline const char *tpd_dtype_name(tpd_dtype t) {
  return t == TPD_F32 ? "F32" : t == TPD_BF16 ? "BF16" : t == TPD_F16 ? "F16" : "?";
}

static inline float tpd_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t tpd_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static inline float tpd_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: renormalise */
      int e = -1;
      do { man <<= 1; e++; } while (!(man & 0x400u));
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t tpd_f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow -> inf */
  if (a < 0x38800000u) {                                  /* subnormal or zero */
    if (a < 0x33000000u) return (uint16_t)sign;
    uint32_t man = (a & 0x7fffffu) | 0x800000u;
    int shift = 126 - (int)(a >> 23);                    /* 14..24 */
    uint32_t half = 1u << (shift - 1);
    uint32_t r = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
  return (uint16_t)(sign | (r >> 13));
}

/* One element of a typed array as float. */
static inline float tpd_load_f32(const void *base, tpd_dtype t, size_t i) {
  switch (t) {
    case TPD_F32: return ((const float *)base)[i];
    case TPD_BF16: return tpd_bf16_to_f32(((const uint16_t *)base)[i]);
    case TPD_F16: return tpd_f16_to_f32(((const uint16_t *)base)[i]);
    default: return 0.0f;
  }
}

static inline void tpd_store_f32(void *base, tpd_dtype t, size_t i, float v) {
  switch (t) {
    case TPD_F32: ((float *)base)[i] = v; break;
    case TPD_BF16: ((uint16_t *)base)[i] = tpd_f32_to_bf16(v); break;
    case TPD_F16: ((uint16_t *)base)[i] = tpd_f32_to_f16(v); break;
    default: break;
  }
}

/* Converts n_elems elements between types (src and dst may not overlap). */
void tpd_convert(void *dst, tpd_dtype dst_t, const void *src, tpd_dtype src_t, size_t n_elems);

#ifdef __cplusplus
}
#endif
#endif
