/* CPU matmul driver: weight tiling, scalar reference kernel, ISA dispatch,
 * threading.  Threads split the N outputs into contiguous ranges of whole
 * tiles, so each thread streams its own part of W once per 64-row block of X. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/mm_tile.h"

void tpd_tile_weight(void *dst, const void *src, tpd_dtype dt, int N, int K) {
  const size_t esz = tpd_dtype_size(dt);
  const int Kp = tpd_tile_kp(K);
  memset(dst, 0, tpd_tiled_elems(N, K) * esz);
  for (int n = 0; n < N; n++)
    for (int k0 = 0; k0 < K; k0 += TPD_TILE_K) {
      const int len = K - k0 < TPD_TILE_K ? K - k0 : TPD_TILE_K;
      memcpy((char *)dst + tpd_tiled_index(n, k0, Kp) * esz, (const char *)src + ((size_t)n * K + k0) * esz,
             (size_t)len * esz);
    }
}

void tpd_mm_scalar(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  for (int m = m0; m < m1; m++) {
    const float *x = p->x + (size_t)m * p->ldx;
    for (int n = n0; n < n1; n++) {
      float s = 0.0f;
      for (int k = 0; k < p->K; k++) s += tpd_load_f32(p->w, p->wt, tpd_tiled_index(n, k, p->Kp)) * x[k];
      if (p->bias) s += p->bias[n];
      p->y[(size_t)m * p->ldy + n] = s;
    }
  }
}

static int g_bf16_dot = -1;

int tpd_cpu_bf16_dot(void) {
  if (g_bf16_dot < 0) g_bf16_dot = tpd_param_int("CPU_BF16_DOT", 0) != 0;
  return g_bf16_dot;
}

void tpd_cpu_set_bf16_dot(int on) { g_bf16_dot = on != 0; }

typedef void (*mm_kernel)(const tpd_mm *, int, int, int, int);

typedef struct {
  tpd_mm mm;
  mm_kernel kernel;
  const float *x_src; /* the caller's x when it needs padding or rounding */
  int x_ld;
  float *x_pad;       /* [M, Kp] zero-padded copy, or NULL */
} mm_job;

enum { MM_BLOCK_M = 64 };

/* Prepares rows of x: a zero-padded fp32 copy, or x rounded to bf16. */
static void prep_task(void *arg, int ith, int nth) {
  mm_job *j = arg;
  long b, e;
  tpd_split(j->mm.M, ith, nth, 1, &b, &e);
  const int K = j->mm.K, Kp = j->mm.Kp;
  for (long m = b; m < e; m++) {
    const float *src = j->x_src + (size_t)m * j->x_ld;
    if (j->x_pad) {
      float *d = j->x_pad + (size_t)m * Kp;
      memcpy(d, src, sizeof(float) * (size_t)K);
      for (int k = K; k < Kp; k++) d[k] = 0.0f;
    }
#ifdef TPD_HAVE_X86_SIMD
    if (j->mm.xb) {
      uint16_t *xb = (uint16_t *)j->mm.xb + (size_t)m * Kp;
      tpd_bf16_round_avx512bf16(src, K, xb);
      for (int k = K; k < Kp; k++) xb[k] = 0;
    }
#endif
  }
}

static void mm_task(void *arg, int ith, int nth) {
  const mm_job *j = arg;
  long n0, n1;
  /* shares of whole 4-tiles keep each thread's stream contiguous */
  tpd_split(j->mm.N, ith, nth, 4 * TPD_TILE_N, &n0, &n1);
  if (n0 >= n1) return;
  for (int m0 = 0; m0 < j->mm.M; m0 += MM_BLOCK_M) {
    const int m1 = m0 + MM_BLOCK_M < j->mm.M ? m0 + MM_BLOCK_M : j->mm.M;
    j->kernel(&j->mm, m0, m1, (int)n0, (int)n1);
  }
}

tpd_status tpd_cpu_matmul(tpd_backend *be, const tpd_matmul_args *a) {
  tpd_cpu *cpu = be->impl;
  if (a->y_dtype != TPD_F32) return TPD_FAIL(TPD_ERR_INTERNAL, "cpu matmul writes F32 only");
  mm_job j;
  memset(&j, 0, sizeof j);
  j.mm.M = a->M;
  j.mm.N = a->w->n_rows;
  j.mm.K = a->w->n_cols;
  j.mm.Kp = tpd_tile_kp(j.mm.K);
  j.mm.x = a->x;
  j.mm.ldx = a->ldx;
  j.mm.w = a->w->data;
  j.mm.wt = a->w->dtype;
  j.mm.bias = a->bias;
  j.mm.y = a->y;
  j.mm.ldy = a->ldy;
  j.x_src = a->x;
  j.x_ld = a->ldx;
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
  const size_t Mp = (size_t)a->M * j.mm.Kp;
  const int dot = isa == TPD_ISA_AVX512BF16 && j.mm.wt == TPD_BF16 && tpd_cpu_bf16_dot();
  const int pad = !dot && j.mm.Kp != j.mm.K && j.kernel != tpd_mm_scalar;
  if (dot || pad) {
    TPD_TRY(tpd_cpu_scratch(cpu, dot ? Mp * sizeof(uint16_t) : Mp * sizeof(float)));
    if (dot) {
      j.mm.xb = cpu->scratch;
    } else {
      j.x_pad = (float *)cpu->scratch;
      j.mm.x = j.x_pad;
      j.mm.ldx = j.mm.Kp;
    }
    if (a->M > 1) tpd_pool_run(cpu->pool, prep_task, &j);
    else prep_task(&j, 0, 1);
  }
  tpd_pool_run(cpu->pool, mm_task, &j);
  return TPD_OK;
}
