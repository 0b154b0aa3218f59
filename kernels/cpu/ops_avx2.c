/* AVX2 + FMA SwiGLU: the steps of ops_avx512.c with 8 lanes. */
#include <immintrin.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/vexp.h"

void tpd_swiglu_row_avx2(const float *g, const float *u, float *o, int n) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int i = 0; i < n; i += 8) {
    const int left = n - i < 8 ? n - i : 8;
    const __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 gv = _mm256_maskload_ps(g + i, k), uv = _mm256_maskload_ps(u + i, k);
    const __m256 e = tpd_exp_neg256(_mm256_sub_ps(zero, _mm256_and_ps(gv, abs_mask)));
    const __m256 pos = _mm256_cmp_ps(gv, zero, _CMP_GE_OQ);
    const __m256 s = _mm256_div_ps(_mm256_blendv_ps(e, one, pos), _mm256_add_ps(one, e));
    _mm256_maskstore_ps(o + i, k, _mm256_mul_ps(_mm256_mul_ps(gv, s), uv));
  }
}
