#include "kernels/cpu/cpu_isa.h"

#include <string.h>

#include "runtime/base/error.h"

static int g_forced = -1;

tpd_isa tpd_isa_detect(void) {
#if defined(__x86_64__) && defined(TPD_HAVE_X86_SIMD)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    if (__builtin_cpu_supports("avx512bf16")) return TPD_ISA_AVX512BF16;
    return TPD_ISA_AVX512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return TPD_ISA_AVX2;
#endif
  return TPD_ISA_SCALAR;
}

const char *tpd_isa_name(tpd_isa isa) {
  switch (isa) {
    case TPD_ISA_SCALAR: return "scalar";
    case TPD_ISA_AVX2: return "avx2";
    case TPD_ISA_AVX512: return "avx512";
    case TPD_ISA_AVX512BF16: return "avx512bf16";
  }
  return "?";
}

void tpd_isa_force(tpd_isa isa) { g_forced = (int)isa; }

tpd_status tpd_isa_env(tpd_isa *cap) {
  const char *want = tpd_param_str("CPU_ISA", NULL);
  if (!want) {
    *cap = TPD_ISA_AVX512BF16;
    return TPD_OK;
  }
  for (int i = TPD_ISA_SCALAR; i <= TPD_ISA_AVX512BF16; i++)
    if (!strcmp(want, tpd_isa_name((tpd_isa)i))) {
      *cap = (tpd_isa)i;
      return TPD_OK;
    }
  return TPD_FAIL(TPD_ERR_ARG, "TPD_CPU_ISA=%.64s: need scalar, avx2, avx512 or avx512bf16", want);
}

tpd_isa tpd_isa_active(void) {
  static int cached = -1;
  tpd_isa best = tpd_isa_detect();
  if (g_forced >= 0) return (tpd_isa)g_forced < best ? (tpd_isa)g_forced : best;
  if (cached < 0) {
    tpd_error_state saved;
    tpd_error_save(&saved);
    tpd_isa cap = best;
    if (tpd_isa_env(&cap) != TPD_OK) tpd_param_fallback(&saved, "the best level the CPU supports");
    cached = (int)(cap < best ? cap : best);
  }
  return (tpd_isa)cached;
}
