/* tpdecode-bench: peak arithmetic rate of the run's threads, for the
 * compute term of the speed-of-light floor on "this machine". */
#include <stdint.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/pool.h"
#include "launch/bench/bench.h"
#include "runtime/base/timer.h"

#ifdef TPD_HAVE_X86_SIMD
#include <immintrin.h>
#endif

enum { KIND_SCALAR = 0, KIND_AVX2, KIND_AVX512, KIND_BF16, KIND_AMX };

typedef struct {
  int kind;
  long iters;
  float sink[64];
} probe;

/* 12 independent accumulator chains hide the FMA latency (4 cycles on Zen 4
 * and recent Intel cores, two pipes). */
#ifdef TPD_HAVE_X86_SIMD
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

/* flops of one iteration of the inner loop */
static double flops_per_iter(int kind) {
  switch (kind) {
    case KIND_AMX: return 4.0 * 16 * 16 * 32 * 2; /* 4 tiles of 16 x 16 outputs, 32 k each, multiply + add */
    case KIND_BF16: return 12.0 * 16 * 2 * 2; /* 16 lanes, 2 bf16 pairs each, multiply + add */
    case KIND_AVX512: return 12.0 * 16 * 2;
    case KIND_AVX2: return 12.0 * 8 * 2;
    default: return 12.0 * 2;
  }
}

static void task(void *arg, int ith, int nth) {
  (void)nth;
  probe *p = arg;
  float v;
#ifdef TPD_HAVE_X86_SIMD
  if (p->kind == KIND_BF16) v = run_bf16(p->iters);
#ifdef TPD_HAVE_AMX
  else if (p->kind == KIND_AMX) v = run_amx(p->iters);
#endif
  else if (p->kind == KIND_AVX512) v = run_avx512(p->iters);
  else if (p->kind == KIND_AVX2) v = run_avx2(p->iters);
  else v = run_scalar(p->iters);
#else
  v = run_scalar(p->iters);
#endif
  p->sink[ith % 64] += v;
}

double bench_peak_flops(int n_threads, int bf16, const char **what) {
  probe p = {.kind = KIND_SCALAR, .iters = 1 << 14};
  const tpd_isa isa = tpd_isa_active();
#ifdef TPD_HAVE_AMX
  if (bf16 && isa >= TPD_ISA_AMX && tpd_amx_grant()) p.kind = KIND_AMX, *what = "AMX-BF16 tiles";
  else
#endif
  if (bf16 && isa >= TPD_ISA_AVX512BF16) p.kind = KIND_BF16, *what = "AVX512_BF16 dot products";
  else if (isa >= TPD_ISA_AVX512) p.kind = KIND_AVX512, *what = "AVX-512 f32 FMA";
  else if (isa >= TPD_ISA_AVX2) p.kind = KIND_AVX2, *what = "AVX2 f32 FMA";
  else *what = "scalar f32 multiply-add";
  if (n_threads < 1) n_threads = 1;
  tpd_pool *pool = tpd_pool_create(n_threads);
  if (!pool) return 0;
  /* grow the loop until one run takes 10 ms, then keep the best of five (a shared host steals cycles) */
  double ms = 0;
  for (;;) {
    const double t0 = tpd_now_ms();
    tpd_pool_run(pool, task, &p);
    ms = tpd_now_ms() - t0;
    if (ms >= 10 || p.iters > (1L << 40)) break;
    p.iters *= 2;
  }
  double best = 0;
  for (int r = 0; r < 5; r++) {
    const double t0 = tpd_now_ms();
    tpd_pool_run(pool, task, &p);
    ms = tpd_now_ms() - t0;
    const double rate = flops_per_iter(p.kind) * (double)p.iters * n_threads / (ms * 1e-3);
    if (rate > best) best = rate;
  }
  tpd_pool_destroy(pool);
  return best;
}
