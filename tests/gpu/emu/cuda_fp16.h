/* CPU emulation of the f16 intrinsics the kernels use (tests/gpu/emu). */
#ifndef TPD_EMU_CUDA_FP16_H
#define TPD_EMU_CUDA_FP16_H
#include <math.h>
#include <stdint.h>

typedef struct {
  uint16_t x;
} __half;

static inline __half __ushort_as_half(unsigned short v) {
  __half h;
  h.x = v;
  return h;
}
static inline float __half2float(__half h) {
  const int s = h.x >> 15, e = (h.x >> 10) & 31, m = h.x & 1023;
  float v;
  if (e == 0) v = ldexpf((float)m, -24);
  else if (e == 31) v = m ? NAN : INFINITY;
  else v = ldexpf((float)(m | 1024), e - 25);
  return s ? -v : v;
}
#endif
