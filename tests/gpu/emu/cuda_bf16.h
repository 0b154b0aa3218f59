/* CPU emulation of the bf16 intrinsics the kernels use (tests/gpu/emu). */
#ifndef TPD_EMU_CUDA_BF16_H
#define TPD_EMU_CUDA_BF16_H
#include <stdint.h>
#include <string.h>

typedef struct {
  uint16_t x;
} __nv_bfloat16;

/* round to nearest even; NaN -> canonical 0x7fff (as cvt.rn.bf16.f32) */
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  __nv_bfloat16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    r.x = 0x7fff;
    return r;
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  r.x = (uint16_t)(u >> 16);
  return r;
}
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
#endif
