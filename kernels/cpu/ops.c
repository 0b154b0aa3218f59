/* CPU reference kernels other than matmul and attention (attention.c):
 * rmsnorm (+ residual add), rotary embedding + KV append (f32 or bf16 KV),
 * SwiGLU, row gather, argmax, logit statistics.  Plain C, fp32 activations,
 * double where a reduction or an angle benefits; threaded over rows. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"

/* Work below this many elements runs on the calling thread. */
enum { PAR_MIN_ELEMS = 1 << 14 };

static int worth_threads(const tpd_cpu *cpu, size_t n_elems) {
  return tpd_pool_size(cpu->pool) > 1 && n_elems >= PAR_MIN_ELEMS;
}

/* ---- rmsnorm ---- */
static void rmsnorm_task(void *arg, int ith, int nth) {
  const tpd_rmsnorm_args *a = arg;
  long t0, t1;
  tpd_split(a->T, ith, nth, 1, &t0, &t1);
  for (long t = t0; t < t1; t++) {
    float *x = (float *)a->x + (size_t)t * a->D;
    float *y = (float *)a->y + (size_t)t * a->D;
    if (a->delta) {
      const float *d = (const float *)a->delta + (size_t)t * a->D;
      for (int i = 0; i < a->D; i++) x[i] += d[i];
    }
    double ss = 0.0;
    for (int i = 0; i < a->D; i++) ss += (double)x[i] * x[i];
    const float r = (float)(1.0 / sqrt(ss / a->D + a->eps));
    for (int i = 0; i < a->D; i++) y[i] = x[i] * r * a->w[i];
  }
}

tpd_status tpd_cpu_rmsnorm(tpd_backend *be, const tpd_rmsnorm_args *a) {
  tpd_cpu *cpu = be->impl;
  if (worth_threads(cpu, (size_t)a->T * a->D)) tpd_pool_run(cpu->pool, rmsnorm_task, (void *)a);
  else rmsnorm_task((void *)a, 0, 1);
  return TPD_OK;
}

/* ---- rotary embedding (rotate-half layout) + KV append ---- */
static void rotate(float *v, const double *c, const double *s, int half) {
  for (int i = 0; i < half; i++) {
    const double x0 = v[i], x1 = v[i + half];
    v[i] = (float)(x0 * c[i] - x1 * s[i]);
    v[i + half] = (float)(x1 * c[i] + x0 * s[i]);
  }
}

typedef struct {
  const tpd_rope_kv_args *a;
  tpd_dtype kv;
} rope_job;

/* one cache row from an f32 row: a copy, or rounded to bf16 (nearest even) */
static void store_kv_row(void *cache, size_t row, tpd_dtype kv, const float *src, int Dh) {
  if (kv == TPD_BF16) {
    uint16_t *d = (uint16_t *)cache + row;
    for (int i = 0; i < Dh; i++) d[i] = tpd_f32_to_bf16(src[i]);
  } else {
    memcpy((float *)cache + row, src, sizeof(float) * (size_t)Dh);
  }
}

static void rope_kv_task(void *arg, int ith, int nth) {
  const rope_job *j = arg;
  const tpd_rope_kv_args *a = j->a;
  const tpd_step_meta *mt = a->meta;
  const int Dh = a->head_dim, half = Dh / 2, Hq = a->n_q_heads, Hkv = a->n_kv_heads;
  const int width = (Hq + 2 * Hkv) * Dh;
  double c[TPD_MAX_HEAD_DIM / 2], s[TPD_MAX_HEAD_DIM / 2];
  long t0, t1;
  tpd_split(mt->T, ith, nth, 1, &t0, &t1);
  for (long t = t0; t < t1; t++) {
    const int pos = mt->pos[t];
    for (int i = 0; i < half; i++) {
      const double ang = (double)pos * a->inv_freq[i];
      c[i] = cos(ang);
      s[i] = sin(ang);
    }
    float *row = (float *)a->qkv + (size_t)t * width;
    for (int h = 0; h < Hq + Hkv; h++) rotate(row + (size_t)h * Dh, c, s, half);
    const int blk = mt->block_table[(size_t)mt->slot[t] * mt->max_blocks + pos / mt->block_size];
    const int off = pos % mt->block_size;
    for (int h = 0; h < Hkv; h++) {
      const size_t dst = (((size_t)blk * Hkv + h) * mt->block_size + off) * Dh;
      store_kv_row(a->k_cache, dst, j->kv, row + (size_t)(Hq + h) * Dh, Dh);
      store_kv_row(a->v_cache, dst, j->kv, row + (size_t)(Hq + Hkv + h) * Dh, Dh);
    }
  }
}

tpd_status tpd_cpu_rope_kv(tpd_backend *be, const tpd_rope_kv_args *a) {
  tpd_cpu *cpu = be->impl;
  const size_t work = (size_t)a->meta->T * (a->n_q_heads + a->n_kv_heads) * a->head_dim;
  rope_job j = {a, be->kv_dtype};
  if (worth_threads(cpu, work)) tpd_pool_run(cpu->pool, rope_kv_task, &j);
  else rope_kv_task(&j, 0, 1);
  return TPD_OK;
}

/* ---- SwiGLU ---- */
static void swiglu_task(void *arg, int ith, int nth) {
  const tpd_swiglu_args *a = arg;
  long t0, t1;
  tpd_split(a->T, ith, nth, 1, &t0, &t1);
  const tpd_isa isa = tpd_isa_active();
  (void)isa;
  for (long t = t0; t < t1; t++) {
    const float *g = (const float *)a->gu + (size_t)t * 2 * a->F, *u = g + a->F;
    float *o = (float *)a->out + (size_t)t * a->F;
#ifdef TPD_HAVE_X86_SIMD
    if (isa >= TPD_ISA_AVX512) {
      tpd_swiglu_row_avx512(g, u, o, a->F);
      continue;
    }
    if (isa >= TPD_ISA_AVX2) {
      tpd_swiglu_row_avx2(g, u, o, a->F);
      continue;
    }
#endif
    for (int i = 0; i < a->F; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
  }
}

tpd_status tpd_cpu_swiglu(tpd_backend *be, const tpd_swiglu_args *a) {
  tpd_cpu *cpu = be->impl;
  if (worth_threads(cpu, (size_t)a->T * a->F)) tpd_pool_run(cpu->pool, swiglu_task, (void *)a);
  else swiglu_task((void *)a, 0, 1);
  return TPD_OK;
}

/* ---- small ops ---- */
tpd_status tpd_cpu_gather_rows(tpd_backend *be, void *dst, const void *src, const int32_t *rows, int n, int D) {
  (void)be;
  for (int i = 0; i < n; i++)
    memmove((float *)dst + (size_t)i * D, (const float *)src + (size_t)rows[i] * D, sizeof(float) * (size_t)D);
  return TPD_OK;
}

static void argmax_task(void *arg, int ith, int nth) {
  const tpd_argmax_args *a = arg;
  long m0, m1;
  tpd_split(a->M, ith, nth, 1, &m0, &m1);
  for (long m = m0; m < m1; m++) {
    const float *l = a->logits + (size_t)m * a->N;
    int best = 0;
    float bv = -INFINITY;
    for (int n = 0; n < a->N; n++)
      if (l[n] > bv) { /* NaN never wins; first maximum kept */
        bv = l[n];
        best = n;
      }
    a->val[m] = bv;
    a->idx[m] = best + a->idx_offset;
  }
}

tpd_status tpd_cpu_argmax(tpd_backend *be, const tpd_argmax_args *a) {
  tpd_cpu *cpu = be->impl;
  if (a->M > 1 && worth_threads(cpu, (size_t)a->M * a->N)) tpd_pool_run(cpu->pool, argmax_task, (void *)a);
  else argmax_task((void *)a, 0, 1);
  return TPD_OK;
}

/* ---- logit statistics (max, sum of exp, top-k) ---- */
/* (v, i) ranks before (bv, bi): larger value, then lower index; NaN never does */
static int ls_better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

static void logit_stats_task(void *arg, int ith, int nth) {
  const tpd_logit_stats_args *a = arg;
  long m0, m1;
  tpd_split(a->M, ith, nth, 1, &m0, &m1);
  for (long m = m0; m < m1; m++) {
    const float *l = a->logits + (size_t)m * a->N;
    /* the top k, sorted; (-inf, INT_MAX) marks an empty entry */
    float tv[TPD_LOGIT_TOPK_MAX];
    int ti[TPD_LOGIT_TOPK_MAX];
    for (int j = 0; j < a->k; j++) tv[j] = -INFINITY, ti[j] = INT_MAX;
    float mx = -INFINITY;
    for (int n = 0; n < a->N; n++) {
      const float v = l[n];
      if (v > mx || isnan(v)) mx = v; /* a NaN, once seen, stays: nothing is > NaN */
      if (a->k == 0 || !ls_better(v, n, tv[a->k - 1], ti[a->k - 1])) continue;
      int j = a->k - 1;
      for (; j > 0 && ls_better(v, n, tv[j - 1], ti[j - 1]); j--) tv[j] = tv[j - 1], ti[j] = ti[j - 1];
      tv[j] = v, ti[j] = n;
    }
    double s = 0.0; /* a row with no value above -inf sums to 0 */
    if (mx != -INFINITY)
      for (int n = 0; n < a->N; n++) s += exp((double)l[n] - (double)mx);
    a->max[m] = mx;
    a->sumexp[m] = (float)s;
    for (int j = 0; j < a->k; j++) {
      a->top_val[(size_t)m * a->k + j] = tv[j];
      a->top_idx[(size_t)m * a->k + j] = ti[j] == INT_MAX ? -1 : ti[j] + a->idx_offset;
    }
  }
}

tpd_status tpd_cpu_logit_stats(tpd_backend *be, const tpd_logit_stats_args *a) {
  if (!a || a->M < 0 || a->N < 0 || a->k < 0 || a->k > TPD_LOGIT_TOPK_MAX)
    return TPD_FAIL(TPD_ERR_ARG, "logit_stats: M, N >= 0 and k in 0..%d are required", TPD_LOGIT_TOPK_MAX);
  if (a->M > 0 && (!a->logits || !a->max || !a->sumexp || (a->k > 0 && (!a->top_val || !a->top_idx))))
    return TPD_FAIL(TPD_ERR_ARG, "logit_stats: logits, max, sumexp (and top_val, top_idx when k > 0) are required");
  tpd_cpu *cpu = be->impl;
  if (a->M > 1 && worth_threads(cpu, (size_t)a->M * a->N)) tpd_pool_run(cpu->pool, logit_stats_task, (void *)a);
  else logit_stats_task((void *)a, 0, 1);
  return TPD_OK;
}
