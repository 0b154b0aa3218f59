/* test_gpu_ops, logit_stats (max, sum of exp, top-k of f32 logits) against
 * the CPU twin (the plan of the checks: test_gpu_ops.c).  Top-k values and
 * indices and the maximum must match exactly, the sum of exp to 1e-5
 * relative (f32 sums in another order against the twin's float64).  Rows:
 * uniform, few distinct values (ties across threads), some -inf, all -inf,
 * one NaN (max and sumexp NaN on both sides), and a row whose 20 largest all
 * sit in one or four threads' shares (the merge must take up to k from one
 * thread).  Both the 16-byte path (N % 4 == 0, aligned) and the element path
 * (odd N, or a logits pointer one float off alignment). */
#include "tests/gpu/test_gpu_ops.h"

enum { ROW_UNIFORM, ROW_TIES, ROW_SOME_NEG_INF, ROW_ALL_NEG_INF, ROW_NAN, ROW_ONE_THREAD, N_ROW_KINDS };
static const char *const row_kind_name[N_ROW_KINDS] = {"uniform", "ties", "some -inf", "all -inf", "NaN",
                                                       "top in one thread"};

static void fill_row(float *l, int N, int kind) {
  for (int n = 0; n < N; n++) l[n] = raw_uniform(8.0f);
  switch (kind) {
  case ROW_TIES: /* six distinct values */
    for (int n = 0; n < N; n++) l[n] = (float)tu_int(0, 5) * 0.5f - 1.25f;
    break;
  case ROW_SOME_NEG_INF:
    for (int n = 0; n < N; n++)
      if (tu_int(0, 7) == 0) l[n] = -INFINITY;
    break;
  case ROW_ALL_NEG_INF:
    for (int n = 0; n < N; n++) l[n] = -INFINITY;
    break;
  case ROW_NAN:
    l[tu_int(0, N - 1)] = NAN;
    break;
  case ROW_ONE_THREAD: /* indices 2048 j + q: one thread's share of a 512-thread block on the 16-byte path */
    for (int j = 0; 2048 * j < N; j++)
      for (int q = 0; q < 4 && 2048 * j + q < N; q++) l[2048 * j + q] = 20.0f + (float)(j % 3) + 0.25f * (float)q;
    break;
  default: break;
  }
}

static void test_logit_stats(tpd_backend *cpu, tpd_backend *gpu, int M, int N, int k, int misalign) {
  const size_t n_l = (size_t)M * N, n_k = (size_t)M * k;
  float *l = tu_malloc(sizeof(float) * (n_l + 1));
  int kinds[64];
  for (int m = 0; m < M; m++) {
    kinds[m] = N == 0 ? ROW_ALL_NEG_INF : m % N_ROW_KINDS;
    fill_row(l + (size_t)m * N, N, kinds[m]);
  }
  float *mc = tu_malloc(sizeof(float) * M), *sc = tu_malloc(sizeof(float) * M), *tvc = tu_malloc(sizeof(float) * n_k);
  int32_t *tic = tu_malloc(sizeof(int32_t) * n_k);
  const int off = tu_int(0, 200000);
  tpd_logit_stats_args ac = {M, N, k, l, mc, sc, k ? tvc : NULL, k ? tic : NULL, off};
  TU_TRY(cpu->ops->logit_stats(cpu, &ac));

  /* misalign: the logits one float into their buffer (the element path) */
  float *dbuf = (float *)tu_dev_poison(gpu, sizeof(float) * (n_l + 1));
  float *dl = dbuf + (misalign ? 1 : 0);
  TU_TRY(gpu->ops->upload(gpu, dl, l, sizeof(float) * n_l));
  float *dm = (float *)tu_dev_poison(gpu, sizeof(float) * M), *ds = (float *)tu_dev_poison(gpu, sizeof(float) * M);
  float *dtv = k ? (float *)tu_dev_poison(gpu, sizeof(float) * n_k) : NULL;
  int32_t *dti = k ? (int32_t *)tu_dev_poison(gpu, sizeof(int32_t) * n_k) : NULL;
  tpd_logit_stats_args ag = {M, N, k, dl, dm, ds, dtv, dti, off};
  TU_TRY(gpu->ops->logit_stats(gpu, &ag));
  float *mg = tu_malloc(sizeof(float) * M), *sg = tu_malloc(sizeof(float) * M), *tvg = tu_malloc(sizeof(float) * n_k);
  int32_t *tig = tu_malloc(sizeof(int32_t) * n_k);
  TU_TRY(gpu->ops->download(gpu, mg, dm, sizeof(float) * M));
  TU_TRY(gpu->ops->download(gpu, sg, ds, sizeof(float) * M));
  if (k) {
    TU_TRY(gpu->ops->download(gpu, tvg, dtv, sizeof(float) * n_k));
    TU_TRY(gpu->ops->download(gpu, tig, dti, sizeof(int32_t) * n_k));
  }

  int bad = 0;
  double worst = 0;
  for (int m = 0; m < M; m++) {
    int ok;
    if (kinds[m] == ROW_NAN) { /* both propagate it */
      ok = isnan(mc[m]) && isnan(sc[m]) && isnan(mg[m]) && isnan(sg[m]);
    } else if (kinds[m] == ROW_ALL_NEG_INF) {
      ok = mc[m] == -INFINITY && mg[m] == -INFINITY && sc[m] == 0.0f && sg[m] == 0.0f;
    } else {
      const double e = tu_abs_diff(sg[m], sc[m]) / sc[m]; /* +INF for a NaN on either side */
      worst = tu_worst(worst, e);
      ok = mg[m] == mc[m] && tu_within(e, 1e-5);
    }
    for (int j = 0; j < k; j++) {
      const size_t i = (size_t)m * k + j;
      ok &= tvg[i] == tvc[i] && tig[i] == tic[i]; /* a NaN value never matches */
    }
    if (!ok) {
      printf("     row %d (%s): cpu max %g sumexp %.9g, cuda max %g sumexp %.9g\n", m, row_kind_name[kinds[m]], mc[m],
             sc[m], mg[m], sg[m]);
      for (int j = 0; j < k; j++) {
        const size_t i = (size_t)m * k + j;
        if (!(tvg[i] == tvc[i] && tig[i] == tic[i]))
          printf("       top %d: cpu (%g, %d), cuda (%g, %d)\n", j, tvc[i], tic[i], tvg[i], tig[i]);
      }
      bad++;
    }
  }
  char what[200];
  snprintf(what, sizeof what, "%s logit_stats M=%d N=%d k=%d%s: %d rows wrong, sumexp err %.2e", act_name(gpu), M, N,
           k, misalign ? " misaligned" : "", bad, worst);
  tu_expect(bad == 0, what);
  gpu->ops->free(gpu, dbuf), gpu->ops->free(gpu, dm), gpu->ops->free(gpu, ds);
  if (k) gpu->ops->free(gpu, dtv), gpu->ops->free(gpu, dti);
  free(l), free(mc), free(sc), free(tvc), free(tic), free(mg), free(sg), free(tvg), free(tig);
}

/* bad arguments: refused with one line naming the rule */
static void test_logit_stats_args(tpd_backend *gpu) {
  float *d = (float *)tu_dev_poison(gpu, 64);
  tpd_logit_stats_args a = {1, 4, TPD_LOGIT_TOPK_MAX + 1, d, d, d, d, (int32_t *)d, 0};
  tpd_clear_error();
  const tpd_status st = gpu->ops->logit_stats(gpu, &a);
  char what[300];
  snprintf(what, sizeof what, "logit_stats k = %d refused: %s: %s", a.k, tpd_status_name(st), tpd_last_error());
  tu_expect(st == TPD_ERR_ARG && strstr(tpd_last_error(), "k in 0..") && !strchr(tpd_last_error(), '\n'), what);
  tpd_clear_error();
  gpu->ops->free(gpu, d);
}

void run_logit_ops(tpd_backend *cpu, tpd_backend *gpu, int full) {
  test_logit_stats_args(gpu);
  test_logit_stats(cpu, gpu, 6, 128256, TPD_LOGIT_TOPK_MAX, 0); /* a whole vocabulary, 16-byte path */
  test_logit_stats(cpu, gpu, 6, 12289, 20, 0);                  /* odd N: element path */
  test_logit_stats(cpu, gpu, 7, 5, 20, 0);                      /* N < k */
  test_logit_stats(cpu, gpu, 2, 0, 3, 0);                       /* N = 0 */
  if (!full) return;
  test_logit_stats(cpu, gpu, 6, 12288, 17, 1); /* aligned size, misaligned pointer */
  test_logit_stats(cpu, gpu, 12, 1000, 8, 0);
  test_logit_stats(cpu, gpu, 6, 777, 1, 0);
  test_logit_stats(cpu, gpu, 3, 100, 0, 0); /* k = 0: only max and sumexp, no top-k buffers */
  test_logit_stats(cpu, gpu, 1, 1, 1, 0);
}
