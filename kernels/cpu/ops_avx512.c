/* AVX-512 SwiGLU: o = silu(g) * u with a vector sigmoid.  sigmoid(g) is
 * 1 / (1 + e) for g >= 0 and e / (1 + e) below, e = exp(-|g|) (vexp.h), so
 * the exponential only ever sees x <= 0 and never overflows; NaN stays NaN,
 * +inf gives u * inf and -inf NaN, as g / (1 + expf(-g)) * u does.  The
 * last partial vector is masked, so every element takes the same steps. */
#include <immintrin.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/vexp.h"

void tpd_swiglu_row_avx512(const float *g, const float *u, float *o, int n) {
  const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  for (int i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    const __m512 gv = _mm512_maskz_loadu_ps(k, g + i), uv = _mm512_maskz_loadu_ps(k, u + i);
    const __m512 e = tpd_exp_neg512(_mm512_sub_ps(zero, _mm512_abs_ps(gv)));
    const __mmask16 pos = _mm512_cmp_ps_mask(gv, zero, _CMP_GE_OQ);
    const __m512 s = _mm512_div_ps(_mm512_mask_mov_ps(e, pos, one), _mm512_add_ps(one, e));
    _mm512_mask_storeu_ps(o + i, k, _mm512_mul_ps(_mm512_mul_ps(gv, s), uv));
  }
}
