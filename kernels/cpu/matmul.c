/* CPU matmul driver: the panel weight layout, the scalar reference kernel,
 * ISA dispatch, threading.  Threads take the N outputs in shares of whole
 * panel pairs (guided: the pairs left over the thread count, tpd_mm_share),
 * each share a contiguous run of W read once per step
 * (kernels/cpu/mm_tile.h). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/mm_tile.h"

/* Panel by panel, each source row read once in order: a row's k pair
 * (k, k + 1) is one 32-bit lane of a bf16 chunk ([16 rows][2 k]), or one
 * element in each half of an f16 / f32 chunk ([2 k][16 rows]). */
void tpd_tile_weight(void *dst, const void *src, tpd_dtype dt, int N, int K) {
  const int Kp = tpd_tile_kp(K), P = (N + TPD_PANEL - 1) / TPD_PANEL;
  const size_t es = tpd_dtype_size(dt), panel = (size_t)Kp * TPD_PANEL; /* elements */
  for (int p = 0; p < P; p++) {
    const int rows = N - p * TPD_PANEL < TPD_PANEL ? N - p * TPD_PANEL : TPD_PANEL;
    unsigned char *d = (unsigned char *)dst + (size_t)p * panel * es;
    if (rows < TPD_PANEL || K & 1) memset(d, 0, panel * es); /* the padding rows and the odd k's partner */
    const unsigned char *row0 = (const unsigned char *)src + (size_t)p * TPD_PANEL * K * es;
    const size_t ld = (size_t)K * es;
    if (dt == TPD_BF16) { /* a chunk (64 bytes) at a time: 16 rows' k pairs */
      for (int k = 0; k + 1 < K; k += 2) {
        unsigned char *c = d + (size_t)k * TPD_PANEL * 2;
        for (int r = 0; r < rows; r++) memcpy(c + 4 * r, row0 + r * ld + (size_t)k * 2, 4);
      }
      if (K & 1)
        for (int r = 0; r < rows; r++) memcpy(d + (size_t)(K - 1) * TPD_PANEL * 2 + 4 * r, row0 + r * ld + (size_t)(K - 1) * 2, 2);
    } else {
      for (int k = 0; k < K; k++) {
        unsigned char *c = d + ((size_t)(k / 2) * 2 * TPD_PANEL + (size_t)(k & 1) * TPD_PANEL) * es;
        for (int r = 0; r < rows; r++) memcpy(c + r * es, row0 + r * ld + (size_t)k * es, es);
      }
    }
  }
}

void tpd_mm_scalar(const tpd_mm *p, int m0, int m1, int n0, int n1) {
  for (int m = m0; m < m1; m++) {
    const float *x = p->x + (size_t)m * p->ldx;
    for (int n = n0; n < n1; n++) {
      float s = 0.0f;
      for (int k = 0; k < p->K; k++) s += tpd_load_f32(p->w, p->wt, tpd_tiled_index(n, k, p->Kp, p->wt)) * x[k];
      if (p->bias) s += p->bias[n];
      p->y[(size_t)m * p->ldy + n] = s;
    }
  }
}

/* The knobs below are read once, on first use, through the same checked
 * readers that tpd_backend_cpu_create runs before it starts anything: with
 * a backend they hold what its create accepted.  A program that runs the
 * kernels without creating a backend gets a bad value as a warning and the
 * default.  (TPD_CPU_BF16_DOT is read only by create: each backend keeps its
 * own choice, tpd_cpu.bf16_dot.) */
tpd_status tpd_cpu_bf16_dot_env(int *on) {
  long v = 0;
  TPD_TRY(tpd_param_range("CPU_BF16_DOT", -1, 0, 1, "0: f32 FMA, 1: bf16 dot products, unset: measured", &v));
  *on = (int)v;
  return TPD_OK;
}

tpd_status tpd_cpu_prefetch_env(int *n_bytes) {
  long v = 0;
  TPD_TRY(tpd_param_range("CPU_PREFETCH", TPD_CPU_PREFETCH_DEFAULT, 0, TPD_CPU_PREFETCH_MAX, "bytes", &v));
  *n_bytes = (int)v;
  return TPD_OK;
}


static int g_prefetch = -1;

int tpd_cpu_prefetch(void) {
  if (g_prefetch == -1) {
    tpd_error_state saved;
    tpd_error_save(&saved);
    int n_bytes = TPD_CPU_PREFETCH_DEFAULT;
    if (tpd_cpu_prefetch_env(&n_bytes) != TPD_OK)
      tpd_param_fallback(&saved, "the default (8192 bytes ahead shared among a block's weight streams; AMX 1024 a stream)");
    g_prefetch = n_bytes;
  }
  return g_prefetch;
}

void tpd_cpu_set_prefetch(int bytes) { g_prefetch = bytes < 0 && bytes != TPD_CPU_PREFETCH_AUTO ? -1 : bytes; }

typedef void (*mm_kernel)(const tpd_mm *, int, int, int, int);

typedef struct {
  tpd_mm mm;
  mm_kernel kernel;
  const float *x_src; /* the caller's x, rounded to bf16 into mm.xb */
  int x_ld;
  int xb_rows;        /* rows of mm.xb (M, or M padded to whole AMX tiles) */
  atomic_int next;    /* the first output row no thread has taken */
} mm_job;

/* Rounds rows of x to bf16 (the bf16 paths, tpd_cpu.bf16_dot) into mm.xb, rows
 * [0, xb_rows) at stride ldxb, zeros beyond K and beyond M. */
static void prep_task(void *arg, int ith, int nth) {
  mm_job *j = arg;
  long b, e;
  tpd_split(j->xb_rows, ith, nth, 1, &b, &e);
  const int ld = j->mm.ldxb;
  for (long m = b; m < e; m++) {
    uint16_t *xb = (uint16_t *)j->mm.xb + (size_t)m * ld;
    int k = 0;
#ifdef TPD_HAVE_X86_SIMD
    if (m < j->mm.M) tpd_bf16_round_avx512bf16(j->x_src + (size_t)m * j->x_ld, j->mm.K, xb), k = j->mm.K;
#endif
    for (; k < ld; k++) xb[k] = 0;
  }
}

/* Threads take shares of whole panel pairs (each a contiguous stream of W)
 * from a shared cursor until none is left, so a thread slowed by its core's
 * neighbours (a shared VM, a hybrid CPU's slower cores) does less of the
 * work instead of holding the others at the end of the matmul.  A share is
 * the pairs left over the thread count (guided): the first ones are long
 * streams, the last ones single pairs, so the threads end within about one
 * pair of each other (measured 2-5 % faster than 8 equal shares a thread
 * at batch 1-8 on the Xeon at hand: docs/performance.md, "Guided matmul
 * shares").
 * Which thread computes an output does not change its sum. */
static void mm_task(void *arg, int ith, int nth) {
  mm_job *j = arg;
  (void)ith;
  for (;;) {
    int n0 = atomic_load_explicit(&j->next, memory_order_relaxed), n1;
    do { /* n1 <= N: the last share is cut at N (a share of N - n0 near INT_MAX cannot wrap) */
      if (n0 >= j->mm.N) return;
      const long end = (long)n0 + tpd_mm_share(j->mm.N - n0, nth);
      n1 = end < j->mm.N ? (int)end : j->mm.N;
    } while (!atomic_compare_exchange_weak_explicit(&j->next, &n0, n1, memory_order_relaxed, memory_order_relaxed));
    j->kernel(&j->mm, 0, j->mm.M, n0, n1);
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
  j.mm.pf = tpd_cpu_prefetch();
  j.x_src = a->x;
  j.x_ld = a->ldx;
  if (a->M <= 0 || j.mm.N <= 0) return TPD_OK;
  const tpd_isa isa = tpd_isa_active();
  switch (isa) {
#ifdef TPD_HAVE_X86_SIMD
    case TPD_ISA_AMX: /* the f32 kernel unless the bf16 path is on (below) */
    case TPD_ISA_AVX512BF16: j.kernel = tpd_mm_avx512bf16; break;
    case TPD_ISA_AVX512: j.kernel = tpd_mm_avx512; break;
    case TPD_ISA_AVX2: j.kernel = tpd_mm_avx2; break;
#endif
    default: j.kernel = tpd_mm_scalar; break;
  }
  if (isa >= TPD_ISA_AVX512BF16 && j.mm.wt == TPD_BF16 && cpu->bf16_dot) {
    const int amx = isa >= TPD_ISA_AMX && tpd_amx_grant();
#ifdef TPD_HAVE_AMX
    if (amx) j.kernel = tpd_mm_amx;
#endif
    j.xb_rows = amx ? tpd_amx_rows(a->M) : a->M;
    j.mm.ldxb = amx ? tpd_amx_ld(j.mm.Kp) : j.mm.Kp;
    TPD_TRY(tpd_cpu_scratch(cpu, (size_t)j.xb_rows * j.mm.ldxb * sizeof(uint16_t)));
    j.mm.xb = cpu->scratch;
    if (a->M > 1) tpd_pool_run(cpu->pool, prep_task, &j);
    else prep_task(&j, 0, 1);
  }
  atomic_init(&j.next, 0);
  tpd_pool_run(cpu->pool, mm_task, &j);
  return TPD_OK;
}
