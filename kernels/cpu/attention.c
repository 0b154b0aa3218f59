/* CPU attention driver: items (token, chunk) with every KV head, or
 * (token, KV head, chunk), over the pool, then one combine per (token,
 * query head); the scalar chunk kernel.  The design
 * is in kernels/cpu/attention.h. */
#include "kernels/cpu/attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_isa.h"

/* Partials of one wave: beyond this many bytes the tokens of a step (a long
 * prefill) are taken in several waves; a wave always holds one whole token. */
enum { ATT_PART_BUDGET = 8 << 20, ATT_PAR_MIN_ELEMS = 1 << 14 };
/* Fewer (token, chunk) pairs than twice the threads and at least this many
 * positions in the wave: the threads split the pairs' KV heads (below it, a
 * pool run cost more than the one thread's work at batch 1, ctx 64). */
enum { ATT_HEAD_SPLIT_MIN_ROWS = 128 };

static size_t round64(size_t n) { return (n + 63) / 64 * 64; }

void tpd_att_sizes_for(int max_rows, int max_ctx, int n_q_heads, int n_kv_heads, int head_dim, int n_threads,
                       tpd_att_sizes *out) {
  const int H = n_q_heads > 0 ? n_q_heads : 1; /* an item's query heads: every group's (SIMD kernels) at most */
  const size_t mc = (size_t)tpd_att_max_chunks(max_ctx), rows = max_rows > 1 ? (size_t)max_rows : 1;
  const size_t row_bytes = (size_t)n_q_heads * (size_t)tpd_att_part_stride(head_dim) * sizeof(float);
  size_t budget = row_bytes ? ATT_PART_BUDGET / row_bytes : mc;
  if (budget < mc) budget = mc;
  memset(out, 0, sizeof *out);
  out->thread_bytes = round64((size_t)H * TPD_ATT_CHUNK * sizeof(float) + 2 * (size_t)TPD_ATT_CHUNK * sizeof(void *)) +
                      round64((size_t)H * (size_t)(head_dim > 0 ? head_dim : 1) * sizeof(float));
  out->part_chunks = rows * mc < budget ? rows * mc : budget;
  out->part_bytes = round64(out->part_chunks * row_bytes);
  out->rows = rows;
  out->index_bytes = round64((rows + 1) * sizeof(int));
  out->total_bytes = (size_t)(n_threads > 0 ? n_threads : 1) * out->thread_bytes + out->part_bytes + out->index_bytes;
}

/* ---- the scalar chunk kernel (TPD_CPU_ISA=scalar, and head dims the SIMD kernels do not take) ---- */

static inline float kv_at(const void *row, tpd_dtype kv, int i) {
  return kv == TPD_BF16 ? tpd_bf16_to_f32(((const uint16_t *)row)[i]) : ((const float *)row)[i];
}

/* q . k with 8 running partial sums in a fixed order */
static float dot_kv(const float *q, const void *k, tpd_dtype kv, int n) {
  float s[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) s[j] += q[i + j] * kv_at(k, kv, i + j);
  float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < n; i++) r += q[i] * kv_at(k, kv, i);
  return r;
}

void tpd_att_item_scalar(const tpd_att_item *it) {
  const int G = it->G, Dh = it->Dh, n = it->n;
  for (int j = 0; j < n; j++)
    for (int h = 0; h < G; h++) it->s[h * TPD_ATT_CHUNK + j] = dot_kv(it->q + (size_t)h * Dh, it->k[j], it->kv, Dh) * it->scale;
  for (int h = 0; h < G; h++) {
    float *sc = it->s + h * TPD_ATT_CHUNK, *acc = it->part + (size_t)h * it->stride;
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j < n; j++)
      if (sc[j] > m) m = sc[j];
    for (int j = 0; j < n; j++) { /* a NaN score (not the max) gives a NaN weight: it propagates */
      sc[j] = expf(sc[j] - m);
      l += sc[j];
    }
    for (int i = 0; i < Dh; i++) acc[i] = 0.0f;
    for (int j = 0; j < n; j++)
      for (int i = 0; i < Dh; i++) acc[i] += sc[j] * kv_at(it->v[j], it->kv, i);
    acc[Dh] = m;
    acc[Dh + 1] = l;
  }
}

/* ---- driver ---- */

typedef struct {
  const tpd_attention_args *a;
  tpd_att_item_fn fn;
  tpd_dtype kv;
  int G, P;
  int t0, nt;        /* this wave's tokens [t0, t0 + nt) */
  const int *cb;     /* [nt + 1] first partial row of each wave token */
  float *part;       /* [cb[nt], Hq, P] */
  unsigned char *scratch;
  size_t thread_bytes;
  int per;           /* work units per (token, chunk) pair: 1 (every KV head in turn), or n_kv_heads */
  int nkv;           /* KV heads per kernel call: n_kv_heads (SIMD kernels, per 1), else 1 */
  long rows;         /* positions attended, summed over the wave's tokens */
} att_job;

/* The first position token t attends to, and its first chunk. */
static int att_start(const tpd_attention_args *a, int t) {
  const int pos = a->meta->pos[t];
  return a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
}

static int att_chunks(const tpd_attention_args *a, int t) {
  return a->meta->pos[t] / TPD_ATT_CHUNK - att_start(a, t) / TPD_ATT_CHUNK + 1;
}

/* Positions [*p0, *p1] of chunk ci of wave token t. */
static void item_span(const att_job *j, int t, int ci, int *p0, int *p1) {
  const int tt = j->t0 + t, pos = j->a->meta->pos[tt], start = att_start(j->a, tt), c = start / TPD_ATT_CHUNK + ci;
  *p0 = c * TPD_ATT_CHUNK > start ? c * TPD_ATT_CHUNK : start;
  *p1 = c * TPD_ATT_CHUNK + TPD_ATT_CHUNK - 1 < pos ? c * TPD_ATT_CHUNK + TPD_ATT_CHUNK - 1 : pos;
}

/* This thread's units [*i0, *i1) (unit i: pair i / per, KV head i % per
 * when per > 1; a pair is a (token, chunk)): contiguous runs with about
 * equal positions (a unit goes to the thread whose share holds its middle
 * position), so a short last chunk or short sequences do not leave a thread
 * idle.  Which units make an output never depends on the split. */
static void split_by_rows(const att_job *j, int ith, int nth, long *i0, long *i1) {
  const long n = (long)j->cb[j->nt] * j->per;
  if (nth <= 1) {
    *i0 = 0, *i1 = n;
    return;
  }
  const long total = j->rows * j->per;
  long before = 0, first = n, last = n;
  int t = 0;
  for (long i = 0; i < n; i++) {
    const long pair = i / j->per;
    while ((long)j->cb[t + 1] <= pair) t++;
    int p0, p1;
    item_span(j, t, (int)(pair - (long)j->cb[t]), &p0, &p1);
    const long rows = p1 - p0 + 1, owner = (2 * before + rows) * nth / (2 * total);
    if (owner >= ith && first == n) first = i;
    if (owner > ith) {
      last = i;
      break;
    }
    before += rows;
  }
  *i0 = first, *i1 = last > first ? last : first;
}

static tpd_att_hook_fn g_hook;

void tpd_att_set_hook(tpd_att_hook_fn hook) { g_hook = hook; }

/* Unit i's first K row (head 0 of its item: the unit's KV head when units
 * are single heads) and its rows to the end of that row's KV block; t: the
 * wave token of unit i - 1 or earlier. */
static const unsigned char *unit_first_k(const att_job *j, long i, int t, size_t row_bytes, int *rows) {
  const tpd_step_meta *mt = j->a->meta;
  const long pair = i / j->per;
  const int bs = mt->block_size;
  while ((long)j->cb[t + 1] <= pair) t++;
  int p0, p1;
  item_span(j, t, (int)(pair - (long)j->cb[t]), &p0, &p1);
  const int32_t *table = mt->block_table + (size_t)mt->slot[j->t0 + t] * mt->max_blocks;
  const int g = j->per > 1 ? (int)(i % j->per) : 0;
  *rows = bs - p0 % bs < p1 - p0 + 1 ? bs - p0 % bs : p1 - p0 + 1;
  return (const unsigned char *)j->a->k_cache + (((size_t)table[p0 / bs] * j->a->n_kv_heads + g) * bs + p0 % bs) * row_bytes;
}

static void item_task(void *arg, int ith, int nth) {
  const att_job *j = arg;
  const tpd_attention_args *a = j->a;
  const tpd_step_meta *mt = a->meta;
  const int Hq = a->n_q_heads, Hkv = a->n_kv_heads, Dh = a->head_dim, G = j->G, bs = mt->block_size;
  const size_t row_bytes = (size_t)Dh * tpd_dtype_size(j->kv);
  const int seg = bs % 4 == 0 ? bs : TPD_ATT_CHUNK; /* a KV block, or (not a multiple of 4) the whole chunk */
  long i0, i1;
  /* a thread's units are (token, chunk) pairs, each for every KV head (in
   * one item, SIMD kernels, or in turn): the heads of one KV block lie side by
   * side ([block][head][row]), so one thread reads a chunk's blocks whole
   * instead of one head's slice of each.  With fewer pairs than twice the
   * threads (one sequence's short context) the units are (pair, KV head),
   * so that more threads work. */
  split_by_rows(j, ith, nth, &i0, &i1);
  float *s = (float *)(j->scratch + (size_t)ith * j->thread_bytes);
  const void **rk = (const void **)(s + (size_t)Hq * TPD_ATT_CHUNK), **rv = rk + TPD_ATT_CHUNK;
  float *qd = (float *)((unsigned char *)s + round64((size_t)Hq * TPD_ATT_CHUNK * sizeof(float) +
                                                     2 * (size_t)TPD_ATT_CHUNK * sizeof(void *)));
  tpd_att_item it = {.G = G, .Dh = Dh, .k = rk, .v = rv, .kv = j->kv, .scale = a->scale, .s = s, .qd = qd,
                     .stride = j->P, .nkv = j->nkv, .seg = seg, .hstride = (size_t)bs * row_bytes};
  int t = 0;
  for (long i = i0; i < i1; i++) {
    const long pair = i / j->per;
    while ((long)j->cb[t + 1] <= pair) t++;
    const int ci = (int)(pair - (long)j->cb[t]), tt = j->t0 + t;
    int p0, p1;
    item_span(j, t, ci, &p0, &p1);
    const int32_t *table = mt->block_table + (size_t)mt->slot[tt] * mt->max_blocks;
    const int g0 = j->per > 1 ? (int)(i % j->per) : 0, g1 = j->per > 1 ? g0 + 1 : Hkv;
    for (int g = g0; g < g1; g += j->nkv) {
      for (int p = p0, bi = p0 / bs, off = p0 % bs; p <= p1; bi++, off = 0) { /* block by block */
        const unsigned char *kb = (const unsigned char *)a->k_cache + ((size_t)table[bi] * Hkv + g) * bs * row_bytes;
        const unsigned char *vb = (const unsigned char *)a->v_cache + ((size_t)table[bi] * Hkv + g) * bs * row_bytes;
        for (; off < bs && p <= p1; off++, p++) {
          rk[p - p0] = kb + (size_t)off * row_bytes;
          rv[p - p0] = vb + (size_t)off * row_bytes;
        }
      }
      it.n = p1 - p0 + 1;
      it.seg0 = seg - p0 % seg; /* to the end of p0's block (or chunk: the whole item) */
      it.q = (const float *)a->q + (size_t)tt * a->ldq + (size_t)g * G * Dh;
      it.part = j->part + ((size_t)(j->cb[t] + ci) * Hq + (size_t)g * G) * j->P;
      /* the thread's next unit, after this unit's last item (the scalar
       * kernel's items of one KV head do not prefetch) */
      it.next_k = i + 1 < i1 && g + j->nkv >= g1 ? unit_first_k(j, i + 1, t, row_bytes, &it.next_rows) : NULL;
      if (g_hook) g_hook(&it, j->fn, j->t0);
      else j->fn(&it);
    }
  }
}

/* out(t, h) = sum_c e^(m_c - M) acc_c / sum_c e^(m_c - M) l_c, chunks in order */
static void combine_task(void *arg, int ith, int nth) {
  const att_job *j = arg;
  const tpd_attention_args *a = j->a;
  const int Hq = a->n_q_heads, Dh = a->head_dim, P = j->P;
  long i0, i1;
  tpd_split((long)j->nt * Hq, ith, nth, 1, &i0, &i1);
  for (long i = i0; i < i1; i++) {
    const int t = (int)(i / Hq), h = (int)(i % Hq), nch = j->cb[t + 1] - j->cb[t];
    const float *p0 = j->part + ((size_t)j->cb[t] * Hq + h) * P;
    float *out = (float *)a->out + (size_t)(j->t0 + t) * Hq * Dh + (size_t)h * Dh;
    float M = -INFINITY, L = 0.0f;
    for (int c = 0; c < nch; c++)
      if (p0[(size_t)c * Hq * P + Dh] > M) M = p0[(size_t)c * Hq * P + Dh];
    for (int d = 0; d < Dh; d++) out[d] = 0.0f;
    for (int c = 0; c < nch; c++) {
      const float *pc = p0 + (size_t)c * Hq * P, w = expf(pc[Dh] - M);
      L += w * pc[Dh + 1];
      for (int d = 0; d < Dh; d++) out[d] += w * pc[d];
    }
    const float inv = 1.0f / L;
    for (int d = 0; d < Dh; d++) out[d] *= inv;
  }
}

tpd_status tpd_cpu_att_blocks_env(int *on) {
  long v = 0;
  TPD_TRY(tpd_param_range("CPU_ATT_BLOCKS", 1, 0, 1, "1: a pair's KV blocks in address order, 0: one KV head at a time",
                          &v));
  *on = (int)v;
  return TPD_OK;
}

static int g_att_blocks = -1;

/* read once, as tpd_cpu_prefetch (kernels/cpu/matmul.c) */
int tpd_cpu_att_blocks(void) {
  if (g_att_blocks < 0) {
    tpd_error_state saved;
    tpd_error_save(&saved);
    int on = 1;
    if (tpd_cpu_att_blocks_env(&on) != TPD_OK) tpd_param_fallback(&saved, "the default, 1 (KV blocks in address order)");
    g_att_blocks = on;
  }
  return g_att_blocks;
}

void tpd_cpu_set_att_blocks(int on) { g_att_blocks = on < 0 ? -1 : on != 0; }

/* Whether the kernel takes several KV heads in one item. */
static int takes_heads(tpd_att_item_fn fn) {
#ifdef TPD_HAVE_X86_SIMD
  return fn == tpd_att_item_avx512 || fn == tpd_att_item_avx2;
#else
  (void)fn;
  return 0;
#endif
}

static tpd_att_item_fn pick_kernel(int Dh) {
#ifdef TPD_HAVE_X86_SIMD
  const tpd_isa isa = tpd_isa_active();
  if (isa >= TPD_ISA_AVX512 && Dh % 32 == 0) return tpd_att_item_avx512;
  if (isa >= TPD_ISA_AVX2 && Dh % 8 == 0) return tpd_att_item_avx2;
#else
  (void)Dh;
#endif
  return tpd_att_item_scalar;
}

/* The workspace for this call: what reserve sized, or grown on demand
 * without one. */
static tpd_status att_workspace(tpd_cpu *cpu, const tpd_attention_args *a) {
  const int n_threads = tpd_pool_size(cpu->pool);
  tpd_att_sizes need;
  tpd_att_sizes_for(a->meta->T, a->meta->max_ctx, a->n_q_heads, a->n_kv_heads, a->head_dim, n_threads, &need);
  const size_t row_bytes = (size_t)a->n_q_heads * tpd_att_part_stride(a->head_dim) * sizeof(float);
  const size_t mc = (size_t)tpd_att_max_chunks(a->meta->max_ctx);
  const tpd_att_sizes *have = &cpu->att_sz;
  if (cpu->att && have->thread_bytes >= need.thread_bytes && have->part_bytes >= mc * row_bytes && have->rows >= 1)
    return TPD_OK;
  if (cpu->planned)
    return TPD_FAIL(TPD_ERR_INTERNAL,
                    "cpu: the attention workspace needs %zu bytes per thread and %zu bytes of partials but the memory "
                    "plan gave it %zu and %zu (a planning bug)",
                    need.thread_bytes, mc * row_bytes, have->thread_bytes, have->part_bytes);
  tpd_att_sizes grown = need;
  if (have->thread_bytes > grown.thread_bytes) grown.thread_bytes = have->thread_bytes;
  if (have->part_bytes > grown.part_bytes) grown.part_bytes = have->part_bytes;
  if (have->rows > grown.rows) grown.rows = have->rows, grown.index_bytes = have->index_bytes;
  grown.total_bytes = (size_t)n_threads * grown.thread_bytes + grown.part_bytes + grown.index_bytes;
  TPD_TRY(tpd_cpu_att_alloc(cpu, &grown));
  return TPD_OK;
}

tpd_status tpd_cpu_att_alloc(tpd_cpu *cpu, const tpd_att_sizes *sz) {
  tpd_cpu_free(cpu->att);
  memset(&cpu->att_sz, 0, sizeof cpu->att_sz);
  cpu->att = tpd_cpu_alloc(sz->total_bytes);
  if (!cpu->att) return TPD_FAIL(TPD_ERR_OOM, "out of memory for the attention workspace (%zu bytes)", sz->total_bytes);
  cpu->att_sz = *sz;
  return TPD_OK;
}

tpd_status tpd_cpu_attention(tpd_backend *be, const tpd_attention_args *a) {
  tpd_cpu *cpu = be->impl;
  const tpd_step_meta *mt = a->meta;
  if (mt->T <= 0) return TPD_OK;
  if (a->n_kv_heads < 1 || a->n_q_heads < 1 || a->n_q_heads % a->n_kv_heads || a->head_dim < 1 ||
      a->head_dim > TPD_MAX_HEAD_DIM)
    return TPD_FAIL(TPD_ERR_INTERNAL, "attention: %d query heads, %d KV heads, head dim %d", a->n_q_heads,
                    a->n_kv_heads, a->head_dim);
  TPD_TRY(att_workspace(cpu, a));
  const int n_threads = tpd_pool_size(cpu->pool), Hq = a->n_q_heads;
  const tpd_att_sizes *sz = &cpu->att_sz;
  att_job j = {.a = a, .fn = pick_kernel(a->head_dim), .kv = be->kv_dtype, .G = Hq / a->n_kv_heads,
               .P = tpd_att_part_stride(a->head_dim), .scratch = cpu->att, .thread_bytes = sz->thread_bytes};
  j.part = (float *)(cpu->att + (size_t)n_threads * sz->thread_bytes);
  int *cb = (int *)((unsigned char *)j.part + sz->part_bytes);
  const size_t cap = sz->part_bytes / ((size_t)Hq * j.P * sizeof(float));
  for (int t0 = 0; t0 < mt->T;) { /* waves of whole tokens whose partials fit */
    int nt = 0;
    cb[0] = 0;
    while (t0 + nt < mt->T && (size_t)nt < sz->rows && (size_t)(cb[nt] + att_chunks(a, t0 + nt)) <= cap) {
      cb[nt + 1] = cb[nt] + att_chunks(a, t0 + nt);
      nt++;
    }
    if (nt == 0) /* only a position at or past meta->max_ctx can need more chunks than planned */
      return TPD_FAIL(TPD_ERR_INTERNAL, "attention: token %d at position %d needs %d chunks; the step's max_ctx %d allows %d",
                      t0, mt->pos[t0], att_chunks(a, t0), mt->max_ctx, tpd_att_max_chunks(mt->max_ctx));
    j.t0 = t0;
    j.nt = nt;
    j.cb = cb;
    j.rows = 0;
    for (int t = t0; t < t0 + nt; t++) j.rows += mt->pos[t] - att_start(a, t) + 1;
    j.per = cb[nt] < 2 * n_threads && j.rows >= ATT_HEAD_SPLIT_MIN_ROWS ? a->n_kv_heads : 1;
    /* every KV head of a pair in one item, whatever their bytes: 8 heads of Dh 128 (1 MB of K and V a
     * chunk in bf16) were faster in one item than in items of 2 heads or one at a time (docs/performance.md,
     * "Attention in address order") */
    j.nkv = j.per == 1 && takes_heads(j.fn) && tpd_cpu_att_blocks() ? a->n_kv_heads : 1;
    const size_t work = (size_t)cb[nt] * TPD_ATT_CHUNK * Hq * a->head_dim;
    const int par = n_threads > 1 && (size_t)cb[nt] * j.per > 1 && work >= ATT_PAR_MIN_ELEMS;
    if (par) tpd_pool_run(cpu->pool, item_task, &j);
    else item_task(&j, 0, 1);
    if (n_threads > 1 && (size_t)cb[nt] * Hq * a->head_dim >= ATT_PAR_MIN_ELEMS) tpd_pool_run(cpu->pool, combine_task, &j);
    else combine_task(&j, 0, 1);
    t0 += nt;
  }
  return TPD_OK;
}
