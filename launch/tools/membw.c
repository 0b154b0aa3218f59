#include "launch/tools/membw.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"
#include "launch/tools/stats.h"
#include "runtime/base/timer.h"

#ifdef TPD_HAVE_X86_SIMD
#include <immintrin.h>
#endif

struct tpd_membw_probe {
  tpd_pool *pool;
  float *src, *dst;
  size_t n_floats;
  int copy, use512, threads;
  unsigned n_pass; /* read passes so far: they take turns among the read kernels */
  float sink[64];
};

/* The read passes take turns among kernels: one sequential stream per thread
 * or four (the thread's share cut in four runs read side by side, as the
 * matmul streams four weight panels), each without and with a software
 * prefetch 1024 bytes ahead.  The floor is the best pass, so a kernel that
 * keeps more misses in flight (kernels/cpu/matmul_avx512.c) is measured
 * against a probe that does too, never against a slower one. */
#ifdef TPD_HAVE_X86_SIMD
static const int PF_DIST[] = {0, 1024, 0, 1024};
static const int STREAMS[] = {1, 1, 4, 4};
enum { N_VARIANTS = (int)(sizeof PF_DIST / sizeof PF_DIST[0]) };

/* n floats from p as `streams` runs read side by side, 128 floats (eight
 * 64-byte loads) per step, with software prefetch pf bytes ahead (0: none) */
__attribute__((target("avx512f"))) static float read512(const float *p, size_t n, int streams, int pf) {
  __m512 a[8];
  for (int j = 0; j < 8; j++) a[j] = _mm512_setzero_ps();
  const size_t run = n / (size_t)streams / 128 * 128, pf_floats = (size_t)pf / sizeof(float);
  const int per = 8 / streams; /* loads per stream per step */
  size_t i = 0;
  for (; i < run; i += (size_t)16 * per)
    for (int s = 0; s < streams; s++) {
      const float *q = p + (size_t)s * run + i;
      if (pf)
        for (int j = 0; j < per; j++) _mm_prefetch((const char *)(q + pf_floats + 16 * j), _MM_HINT_T0);
      for (int j = 0; j < per; j++) a[s * per + j] = _mm512_add_ps(a[s * per + j], _mm512_load_ps(q + 16 * j));
    }
  for (i = run * (size_t)streams; i < n; i += 16) a[0] = _mm512_add_ps(a[0], _mm512_load_ps(p + i));
  for (int j = 1; j < 8; j++) a[0] = _mm512_add_ps(a[0], a[j]);
  return _mm512_reduce_add_ps(a[0]);
}
#endif

static float read_generic(const float *p, size_t n) {
  float a[16] = {0};
  for (size_t i = 0; i < n; i += 16)
    for (int j = 0; j < 16; j++) a[j] += p[i + j];
  float s = 0;
  for (int j = 0; j < 16; j++) s += a[j];
  return s;
}

static void pass_task(void *arg, int ith, int nth) {
  tpd_membw_probe *p = arg;
  long b, e;
  tpd_split((long)p->n_floats, ith, nth, 1024, &b, &e);
  if (p->copy) {
    memcpy(p->dst + b, p->src + b, sizeof(float) * (size_t)(e - b));
    return;
  }
#ifdef TPD_HAVE_X86_SIMD
  if (p->use512) {
    p->sink[ith % 64] += read512(p->src + b, (size_t)(e - b), STREAMS[p->n_pass % N_VARIANTS], PF_DIST[p->n_pass % N_VARIANTS]);
    return;
  }
#endif
  p->sink[ith % 64] += read_generic(p->src + b, (size_t)(e - b));
}

static void init_task(void *arg, int ith, int nth) {
  tpd_membw_probe *p = arg;
  long b, e;
  tpd_split((long)p->n_floats, ith, nth, 1024, &b, &e);
  for (long i = b; i < e; i++) p->src[i] = (float)(i & 1023) * 0.001f; /* first touch by the same threads */
  if (p->dst) memset(p->dst + b, 0, sizeof(float) * (size_t)(e - b));
}

tpd_membw_probe *tpd_membw_open(int n_threads, size_t n_bytes, int copy) {
  const size_t n = n_bytes / sizeof(float) / 1024 * 1024;
  if (n == 0) return NULL;
  tpd_membw_probe *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n_floats = n;
  p->copy = copy;
  p->threads = n_threads < 1 ? 1 : n_threads;
  p->pool = tpd_pool_create(p->threads);
  p->src = tpd_cpu_alloc(n * sizeof(float));
  if (copy) p->dst = tpd_cpu_alloc(n * sizeof(float));
  if (!p->pool || !p->src || (copy && !p->dst)) {
    tpd_membw_close(p);
    return NULL;
  }
  p->use512 = tpd_isa_active() >= TPD_ISA_AVX512;
  tpd_pool_run(p->pool, init_task, p);
  return p;
}

double tpd_membw_pass(tpd_membw_probe *p) {
  const double t0 = tpd_now_ms();
  tpd_pool_run(p->pool, pass_task, p);
  const double s = (tpd_now_ms() - t0) * 1e-3;
  p->n_pass++;
  return (double)tpd_membw_bytes(p) / s / 1e9;
}

size_t tpd_membw_bytes(const tpd_membw_probe *p) { return p->n_floats * sizeof(float) * (p->copy ? 2 : 1); }

void tpd_membw_close(tpd_membw_probe *p) {
  if (!p) return;
  tpd_pool_destroy(p->pool);
  tpd_cpu_free(p->src);
  tpd_cpu_free(p->dst);
  free(p);
}

int tpd_membw_copy(int n_threads, size_t n_bytes, int reps, tpd_membw *out) {
  memset(out, 0, sizeof *out);
  if (reps < 1) return 0;
  tpd_membw_probe *p = tpd_membw_open(n_threads, n_bytes, 1);
  double *g = malloc(sizeof *g * (size_t)reps);
  if (!p || !g) {
    tpd_membw_close(p);
    free(g);
    return 0;
  }
  tpd_membw_pass(p); /* warm-up */
  for (int r = 0; r < reps; r++) g[r] = tpd_membw_pass(p);
  out->best_gbs = g[0];
  for (int r = 1; r < reps; r++)
    if (g[r] > out->best_gbs) out->best_gbs = g[r];
  out->median_gbs = tpd_percentile(g, reps, 50);
  out->n_bytes = tpd_membw_bytes(p);
  out->threads = p->threads;
  out->reps = reps;
  tpd_membw_close(p);
  free(g);
  return 1;
}
