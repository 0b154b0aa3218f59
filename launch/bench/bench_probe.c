/* tpdecode-bench: peak arithmetic rate of the run's threads, for the
 * compute term of the speed-of-light floor on "this machine". */
#include <stdlib.h>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/pool.h"
#include "launch/bench/bench.h"
#include "runtime/base/timer.h"

typedef struct {
  tpd_probe_kind kind;
  long iters;
  float sink[64];
} probe;

static void task(void *arg, int ith, int nth) {
  (void)nth;
  probe *p = arg;
  p->sink[ith % 64] += tpd_cpu_probe_loop(p->kind, p->iters);
}

double bench_peak_flops(int n_threads, int bf16, const char **what) {
  probe p = {.kind = TPD_PROBE_SCALAR, .iters = 1 << 14};
  const tpd_isa isa = tpd_isa_active();
#ifdef TPD_HAVE_AMX
  if (bf16 && isa >= TPD_ISA_AMX && tpd_amx_grant()) p.kind = TPD_PROBE_AMX, *what = "AMX-BF16 tiles";
  else
#endif
  if (bf16 && isa >= TPD_ISA_AVX512BF16) p.kind = TPD_PROBE_BF16, *what = "AVX512_BF16 dot products";
  else if (isa >= TPD_ISA_AVX512) p.kind = TPD_PROBE_AVX512, *what = "AVX-512 f32 FMA";
  else if (isa >= TPD_ISA_AVX2) p.kind = TPD_PROBE_AVX2, *what = "AVX2 f32 FMA";
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
    const double rate = tpd_cpu_probe_flops(p.kind) * (double)p.iters * n_threads / (ms * 1e-3);
    if (rate > best) best = rate;
  }
  tpd_pool_destroy(pool);
  return best;
}
