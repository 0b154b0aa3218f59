/* CPU matmul driver: scalar reference kernel, ISA dispatch, threading.
 * Threads split the N outputs (weight rows) into contiguous ranges, so each
 * thread streams its own part of W once per 64-row tile of X. */
#include <stdlib.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/matmul_impl.h"

void tpd_mm_scalar(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  const int K = p->K;
  for (int m = m0; m < m1; m++) {
    const float *x = p->x + (size_t)m * p->ldx;
    for (int n = n0; n < n1; n++) {
      float s = 0.0f;
      const size_t row = (size_t)n * K;
      switch (p->wt) {
        case TPD_F32: {
          const float *w = (const float *)p->w + row;
          for (int k = 0; k < K; k++) s += w[k] * x[k];
          break;
        }
        case TPD_BF16: {
          const uint16_t *w = (const uint16_t *)p->w + row;
          for (int k = 0; k < K; k++) s += tpd_bf16_to_f32(w[k]) * x[k];
          break;
        }
        default: {
          const uint16_t *w = (const uint16_t *)p->w + row;
          for (int k = 0; k < K; k++) s += tpd_f16_to_f32(w[k]) * x[k];
          break;
        }
      }
      if (p->bias) s += p->bias[n];
      p->y[(size_t)m * p->ldy + n] = s;
    }
  }
}

typedef void (*mm_kernel)(const tpd_mm *, int, int, int, int);

typedef struct {
  tpd_mm mm;
  mm_kernel kernel;
  int split; /* bf16 hi/lo split of x needed first */
} mm_job;

enum { MM_TILE_M = 64 };

static void split_rows(const mm_job *j, int ith, int nth) {
  long b, e;
  tpd_split(j->mm.M, ith, nth, 1, &b, &e);
  for (long m = b; m < e; m++) {
    uint16_t *hi = (uint16_t *)j->mm.xh + (size_t)m * j->mm.ldxb;
    uint16_t *lo = (uint16_t *)j->mm.xl + (size_t)m * j->mm.ldxb;
    tpd_bf16_split_avx512bf16(j->mm.x + (size_t)m * j->mm.ldx, j->mm.K, hi, lo);
    for (int k = j->mm.K; k < j->mm.ldxb; k++) hi[k] = lo[k] = 0;
  }
}

static void mm_task(void *arg, int ith, int nth) {
  const mm_job *j = arg;
  long n0, n1;
  /* shares in multiples of 16 rows keep tiles whole and rows cache-line apart */
  tpd_split(j->mm.N, ith, nth, 16, &n0, &n1);
  for (int m0 = 0; m0 < j->mm.M; m0 += MM_TILE_M) {
    int m1 = m0 + MM_TILE_M < j->mm.M ? m0 + MM_TILE_M : j->mm.M;
    if (n0 < n1) j->kernel(&j->mm, m0, m1, (int)n0, (int)n1);
  }
}

static void split_task(void *arg, int ith, int nth) { split_rows(arg, ith, nth); }

tpd_status tpd_cpu_matmul(tpd_backend *be, const tpd_matmul_args *a) {
  tpd_cpu *cpu = be->impl;
  if (a->y_dtype != TPD_F32) return TPD_FAIL(TPD_ERR_INTERNAL, "cpu matmul writes F32 only");
  mm_job j = {0};
  j.mm.M = a->M;
  j.mm.N = a->w->n_rows;
  j.mm.K = a->w->n_cols;
  j.mm.x = a->x;
  j.mm.ldx = a->ldx;
  j.mm.w = a->w->data;
  j.mm.wt = a->w->dtype;
  j.mm.bias = a->bias;
  j.mm.y = a->y;
  j.mm.ldy = a->ldy;
  if (a->M <= 0 || j.mm.N <= 0) return TPD_OK;
  const tpd_isa isa = tpd_isa_active();
  switch (isa) {
#ifdef TPD_HAVE_X86_SIMD
    case TPD_ISA_AVX512BF16: j.kernel = tpd_mm_avx512bf16; break;
    case TPD_ISA_AVX512: j.kernel = tpd_mm_avx512; break;
    case TPD_ISA_AVX2: j.kernel = tpd_mm_avx2; break;
#endif
    default: j.kernel = tpd_mm_scalar; break;
  }
#ifdef TPD_HAVE_X86_SIMD
  if (isa == TPD_ISA_AVX512BF16 && j.mm.wt == TPD_BF16) {
    j.mm.ldxb = (j.mm.K + 31) & ~31;
    size_t need = (size_t)a->M * j.mm.ldxb * 2 * sizeof(uint16_t);
    TPD_TRY(tpd_cpu_scratch(cpu, need));
    j.mm.xh = cpu->scratch;
    j.mm.xl = cpu->scratch + (size_t)a->M * j.mm.ldxb;
    if (a->M > 1) tpd_pool_run(cpu->pool, split_task, &j);
    else split_rows(&j, 0, 1);
  }
#endif
  tpd_pool_run(cpu->pool, mm_task, &j);
  return TPD_OK;
}
