#include "kernels/cpu/cpu_isa.h"

#include <string.h>

#if defined(__x86_64__) && defined(TPD_HAVE_X86_SIMD) && defined(__linux__)
#include <cpuid.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "runtime/base/error.h"

static int g_forced = -1;

/* AMX-BF16 in hardware and OS: the CPU has it (CPUID 7.0 EDX bits 22
 * AMX-BF16 and 24 AMX-TILE) and the OS manages its state (XCR0 bits 17-18);
 * the kernel is built only where the compiler has the intrinsics
 * (TPD_HAVE_AMX).  Linux must still grant the process the tile data
 * (tpd_amx_grant), asked only when the AMX kernel is about to be used: the
 * grant enlarges every signal frame of the process. */
__attribute__((unused)) static int amx_hw(void) {
#if defined(__x86_64__) && defined(TPD_HAVE_X86_SIMD) && defined(__linux__) && defined(TPD_HAVE_AMX)
  static atomic_int state = 0; /* 0 unknown, 1 yes, 2 no */
  int s = atomic_load(&state);
  if (s) return s == 1;
  unsigned a, b, c, d, lo, hi;
  int ok = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 22 & 1) && (d >> 24 & 1);
  if (ok) {
    __get_cpuid(1, &a, &b, &c, &d);
    ok = c >> 27 & 1; /* OSXSAVE: xgetbv is there */
  }
  if (ok) {
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    ok = (lo >> 17 & 3) == 3;
  }
  atomic_store(&state, ok ? 1 : 2);
  return ok;
#else
  return 0;
#endif
}

int tpd_amx_grant(void) {
#if defined(__x86_64__) && defined(TPD_HAVE_X86_SIMD) && defined(__linux__) && defined(TPD_HAVE_AMX)
  static atomic_int state = 0; /* 0 not asked, 1 granted, 2 refused */
  int s = atomic_load(&state);
  if (s) return s == 1;
  const int ok = amx_hw() && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
  atomic_store(&state, ok ? 1 : 2);
  return ok;
#else
  return 0;
#endif
}

tpd_isa tpd_isa_detect(void) {
#if defined(__x86_64__) && defined(TPD_HAVE_X86_SIMD)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    if (__builtin_cpu_supports("avx512bf16")) return amx_hw() ? TPD_ISA_AMX : TPD_ISA_AVX512BF16;
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
    case TPD_ISA_AMX: return "amx";
  }
  return "?";
}

void tpd_isa_force(tpd_isa isa) { g_forced = (int)isa; }

tpd_status tpd_isa_env(tpd_isa *cap) {
  const char *want = tpd_param_str("CPU_ISA", NULL);
  if (!want) {
    *cap = TPD_ISA_BEST;
    return TPD_OK;
  }
  for (int i = TPD_ISA_SCALAR; i <= TPD_ISA_BEST; i++)
    if (!strcmp(want, tpd_isa_name((tpd_isa)i))) {
      *cap = (tpd_isa)i;
      return TPD_OK;
    }
  return TPD_FAIL(TPD_ERR_ARG, "TPD_CPU_ISA=%.64s: need scalar, avx2, avx512, avx512bf16 or amx", want);
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
