/* Arithmetic-rate probes: one thread's loop of independent accumulator
 * chains of one instruction kind.  The CPU backend times two of them once
 * per process to choose its bf16-activation default (choose_bf16_dot,
 * kernels/cpu/backend_cpu.c); tpdecode-bench runs one on every thread for the
 * compute term of its floor (launch/bench/bench_probe.c). */
#include <pthread.h>
#include <stdint.h>

#include "kernels/cpu/cpu_isa.h"
#include "runtime/base/timer.h"

#ifdef TPD_HAVE_X86_SIMD
#include <immintrin.h>

/* 12 independent chains hide the FMA latency (4 cycles on Zen 4/5 and
 * recent Intel cores, two pipes). */
__attribute__((target("avx512f,avx512bf16"))) static float run_bf16(long iters) {
  __m512 acc[12];
  for (int k = 0; k < 12; k++) acc[k] = _mm512_setzero_ps();
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3a83); /* ~1e-3 */
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3a83);
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 12; k++) acc[k] = _mm512_dpbf16_ps(acc[k], a, b);
  __m512 s = acc[0];
  for (int k = 1; k < 12; k++) s = _mm512_add_ps(s, acc[k]);
  return _mm512_reduce_add_ps(s);
}

#ifdef TPD_HAVE_AMX
/* 4 independent 16 x 16 accumulator tiles, as the AMX matmul keeps
 * (kernels/cpu/matmul_amx.c); run only once the OS granted the tiles
 * (tpd_amx_grant). */
__attribute__((target("amx-tile,amx-bf16"))) static float run_amx(long iters) {
  struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
  } cfg = {.palette = 1};
  for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
  _Alignas(64) uint16_t ab[16 * 32];
  _Alignas(64) float c[16 * 16];
  for (int i = 0; i < 16 * 32; i++) ab[i] = 0x3a83; /* ~1e-3 */
  _tile_loadconfig(&cfg);
  _tile_loadd(4, ab, 64);
  _tile_loadd(5, ab, 64);
  _tile_loadd(6, ab, 64);
  _tile_loadd(7, ab, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (long i = 0; i < iters; i++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  float s = 0;
  _tile_stored(0, c, 64);
  s += c[0];
  _tile_stored(3, c, 64);
  s += c[255];
  _tile_release();
  return s;
}
#endif

__attribute__((target("avx512f,fma"))) static float run_avx512(long iters) {
  __m512 acc[12];
  for (int k = 0; k < 12; k++) acc[k] = _mm512_setzero_ps();
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 12; k++) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
  __m512 s = acc[0];
  for (int k = 1; k < 12; k++) s = _mm512_add_ps(s, acc[k]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float run_avx2(long iters) {
  __m256 acc[12];
  for (int k = 0; k < 12; k++) acc[k] = _mm256_setzero_ps();
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 12; k++) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
  __m256 s = acc[0];
  for (int k = 1; k < 12; k++) s = _mm256_add_ps(s, acc[k]);
  float v[8];
  _mm256_storeu_ps(v, s);
  return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}
#endif

static float run_scalar(long iters) {
  float acc[12] = {0};
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 12; k++) acc[k] = acc[k] * 0.999f + 1e-3f;
  float s = 0;
  for (int k = 0; k < 12; k++) s += acc[k];
  return s;
}

float tpd_cpu_probe_loop(tpd_probe_kind kind, long iters) {
#ifdef TPD_HAVE_X86_SIMD
  switch (kind) {
    case TPD_PROBE_BF16: return run_bf16(iters);
#ifdef TPD_HAVE_AMX
    case TPD_PROBE_AMX: return run_amx(iters);
#endif
    case TPD_PROBE_AVX512: return run_avx512(iters);
    case TPD_PROBE_AVX2: return run_avx2(iters);
    default: break;
  }
#else
  (void)kind;
#endif
  return run_scalar(iters);
}

double tpd_cpu_probe_flops(tpd_probe_kind kind) {
  switch (kind) {
    case TPD_PROBE_AMX: return 4.0 * 16 * 16 * 32 * 2; /* 4 tiles of 16 x 16 outputs, 32 k each, multiply + add */
    case TPD_PROBE_BF16: return 12.0 * 16 * 2 * 2;     /* 16 lanes, 2 bf16 pairs each, multiply + add */
    case TPD_PROBE_AVX512: return 12.0 * 16 * 2;
    case TPD_PROBE_AVX2: return 12.0 * 8 * 2;
    default: return 12.0 * 2;
  }
}

/* Alternating short loops of each (2^13 iterations, about 10 us apiece at
 * 4 GHz, so most run between two preemptions), the best rate of each kept:
 * a preempted or slowed loop only lowers its own sample, so the bests
 * approach the free rates.  32 pairs, and up to three more rounds of 32
 * while the ratio is within 20 % of the threshold (ranks sharing cores
 * measured 1.27 once, against 1.58-2.15 otherwise, with nine longer loops). */
static double g_speedup;

static void measure_speedup(void) {
#ifdef TPD_HAVE_X86_SIMD
  if (tpd_isa_detect() < TPD_ISA_AVX512BF16) return;
  const long iters = 1L << 13;
  double best[2] = {0, 0};
  volatile float sink = 0;
  for (int i = 0; i < 2; i++) sink += tpd_cpu_probe_loop(i ? TPD_PROBE_BF16 : TPD_PROBE_AVX512, iters); /* warm */
  for (int round = 0; round < 4; round++) {
    for (int rep = 0; rep < 32; rep++)
      for (int i = 0; i < 2; i++) {
        const tpd_probe_kind kind = i ? TPD_PROBE_BF16 : TPD_PROBE_AVX512;
        const double t0 = tpd_now_ms();
        sink += tpd_cpu_probe_loop(kind, iters);
        const double ms = tpd_now_ms() - t0;
        const double rate = tpd_cpu_probe_flops(kind) * (double)iters / (ms > 1e-6 ? ms : 1e-6);
        if (rate > best[i]) best[i] = rate;
      }
    g_speedup = best[0] > 0 ? best[1] / best[0] : 0;
    if (g_speedup < TPD_CPU_BF16_AUTO_MIN / 1.2 || g_speedup > TPD_CPU_BF16_AUTO_MIN * 1.2) break;
  }
  (void)sink;
#endif
}

double tpd_cpu_bf16_dot_speedup(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, measure_speedup);
  return g_speedup;
}
