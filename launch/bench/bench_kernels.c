/* tpdecode-bench --kernels: the CPU backend's decode kernels alone, against
 * the read probe of the same run (one process).
 *
 *   matmul     one pass = every layer's fused qkv, o, gate/up and down
 *              matmuls and the LM head at M = --batch rows: the model's
 *              shapes (config.json), random weights of the checkpoint's
 *              dtype in the backend's layout;
 *   attention  one pass = every layer's attention for --batch sequences of
 *              --ctx cached positions each (random K/V of the KV-cache dtype,
 *              one new token per sequence).
 *
 * Each timed pass follows one probe pass (as in the main table, so the
 * caches are as cold); the best pass is set against the best probe pass and
 * the median against the median probe.  What the step adds to these
 * kernels (norms, RoPE, SwiGLU, sampling, the pool's synchronisation) is the
 * difference to the main table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "launch/bench/bench.h"
#include "launch/tools/membw.h"
#include "launch/tools/stats.h"
#include "runtime/base/timer.h"
#include "runtime/model/config.h"
#include "runtime/model/safetensors.h"

typedef struct {
  const char *kernel;
  int batch, ctx;
  double bytes, flops, best_ms, med_ms, probe_best, probe_med;
  double paired; /* median over passes of (the pass's GB/s / the probe pass just before it) */
} krow;

/* the dtype of the checkpoint's weights: that of its first layer's down projection */
static tpd_status weight_dtype(const char *dir, tpd_dtype *out) {
  tpd_st *st = NULL;
  TPD_TRY(tpd_st_open(dir, &st));
  const tpd_st_tensor *t = tpd_st_find(st, "model.layers.0.mlp.down_proj.weight");
  tpd_status s = TPD_OK;
  if (!t) s = TPD_FAIL(TPD_ERR_FORMAT, "%s: no model.layers.0.mlp.down_proj.weight", dir);
  else if (t->dtype < 0) s = TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: weights of dtype %s", dir, t->dtype_name);
  else *out = (tpd_dtype)t->dtype;
  tpd_st_close(st);
  return s;
}

/* random values in [-1, 1) of dtype dt, n elements (xorshift) */
static void fill_random(void *p, tpd_dtype dt, size_t n, uint64_t *x) {
  for (size_t i = 0; i < n; i++) {
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    tpd_store_f32(p, dt, i, (float)((double)(*x >> 11) / 4503599627370496.0 - 1.0));
  }
}

typedef struct {
  tpd_backend *be;
  tpd_membw_probe *probe;
  int steps, warmup;
  double *ms, *gbs, *pair;
} kctx;

typedef tpd_status (*pass_fn)(void *arg);

/* warmup untimed passes, then steps timed ones, each after a probe pass;
 * r->bytes set.  Besides best against best and median against median, each
 * pass against the probe pass just before it (paired): the two are a few ms
 * apart, so a machine whose bandwidth moves between states over seconds
 * (docs/performance.md, "The read probe's two states") puts both in the
 * same state, and the pairs' median is the kernel's own fraction. */
static tpd_status time_passes(kctx *k, pass_fn fn, void *arg, krow *r) {
  for (int w = 0; w < k->warmup; w++) TPD_TRY(fn(arg));
  for (int s = 0; s < k->steps; s++) {
    k->gbs[s] = tpd_membw_pass(k->probe);
    const double t0 = tpd_now_ms();
    TPD_TRY(fn(arg));
    k->ms[s] = tpd_now_ms() - t0;
    k->pair[s] = r->bytes / (k->ms[s] * 1e-3) / 1e9 / k->gbs[s];
  }
  r->paired = tpd_percentile(k->pair, k->steps, 50);
  r->best_ms = tpd_percentile(k->ms, k->steps, 0);
  r->med_ms = tpd_percentile(k->ms, k->steps, 50);
  r->probe_best = tpd_percentile(k->gbs, k->steps, 100);
  r->probe_med = tpd_percentile(k->gbs, k->steps, 50);
  return TPD_OK;
}

typedef struct {
  tpd_backend *be;
  tpd_weight *w;
  int n_w, M;
  float *x, *y;
} mm_pass;

static tpd_status run_mm(void *arg) {
  mm_pass *p = arg;
  for (int i = 0; i < p->n_w; i++) {
    tpd_matmul_args a = {p->M, p->x, p->w[i].n_cols, &p->w[i], NULL, p->y, p->w[i].n_rows, TPD_F32};
    TPD_TRY(p->be->ops->matmul(p->be, &a));
  }
  return TPD_OK;
}

typedef struct {
  tpd_backend *be;
  const tpd_model_config *c;
  tpd_step_meta meta;
  void **k, **v;
  float *q, *out;
} att_pass;

static tpd_status run_att(void *arg) {
  att_pass *p = arg;
  const tpd_model_config *c = p->c;
  for (int l = 0; l < c->n_layers; l++) {
    tpd_attention_args a = {&p->meta, c->n_heads, c->n_kv_heads, c->head_dim, p->q,
                            (c->n_heads + 2 * c->n_kv_heads) * c->head_dim, p->k[l], p->v[l], p->out, 0,
                            (float)(1.0 / sqrt((double)c->head_dim))};
    TPD_TRY(p->be->ops->attention(p->be, &a));
  }
  return TPD_OK;
}

/* The shape of weight j (0 fused qkv, 1 o, 2 gate/up, 3 down: every
 * layer's; 4 the LM head): N outputs of K inputs. */
static void mm_shape(const tpd_model_config *c, int j, int *N, int *K) {
  const int D = c->dim, Q = (c->n_heads + 2 * c->n_kv_heads) * c->head_dim, F = c->ffn_dim;
  *N = j == 4 ? c->vocab : j == 0 ? Q : j == 1 ? D : j == 2 ? 2 * F : D;
  *K = j == 4 ? D : j == 0 ? D : j == 1 ? c->n_heads * c->head_dim : j == 2 ? D : F;
}

static tpd_status matmul_rows(kctx *k, const tpd_model_config *c, tpd_dtype wt, const bopts *o, krow *rows, int *n) {
  const int n_w = 4 * c->n_layers + 1;
  int maxM = 1, maxN = 1, maxK = 1;
  size_t biggest = 1; /* the largest weight, elements */
  for (int i = 0; i < o->n_batches; i++) maxM = o->batches[i] > maxM ? o->batches[i] : maxM;
  for (int j = 0; j <= 4; j++) {
    int N, K;
    mm_shape(c, j, &N, &K);
    maxN = N > maxN ? N : maxN, maxK = K > maxK ? K : maxK;
    biggest = (size_t)N * K > biggest ? (size_t)N * K : biggest;
  }
  mm_pass p = {.be = k->be, .n_w = 0};
  p.w = calloc((size_t)n_w, sizeof *p.w);
  p.x = malloc(sizeof(float) * (size_t)maxM * (size_t)maxK);
  p.y = malloc(sizeof(float) * (size_t)maxM * (size_t)maxN);
  void *h = malloc(biggest * tpd_dtype_size(wt));
  tpd_status s = p.w && p.x && p.y && h ? TPD_OK : TPD_FAIL(TPD_ERR_OOM, "out of memory for the matmul weights");
  uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)o->seed;
  double bytes = 0, macs = 0;
  for (int l = 0; l <= c->n_layers && s == TPD_OK; l++)
    for (int j = 0; j < 4 && s == TPD_OK; j++) {
      if (l == c->n_layers && j) break;
      int N, K;
      mm_shape(c, l == c->n_layers ? 4 : j, &N, &K);
      fill_random(h, wt, (size_t)N * K, &x);
      s = k->be->ops->load_weight(k->be, h, wt, N, K, &p.w[p.n_w]);
      if (s == TPD_OK) p.n_w++;
      bytes += (double)N * K * tpd_dtype_size(wt);
      macs += (double)N * K;
    }
  free(h);
  if (s == TPD_OK) fill_random(p.x, TPD_F32, (size_t)maxM * (size_t)maxK, &x);
  for (int i = 0; i < o->n_batches && s == TPD_OK; i++) {
    krow *r = &rows[(*n)++];
    memset(r, 0, sizeof *r);
    r->kernel = "matmul", r->batch = o->batches[i], r->ctx = -1, r->bytes = bytes, r->flops = 2 * macs * o->batches[i];
    p.M = o->batches[i];
    s = time_passes(k, run_mm, &p, r);
  }
  for (int i = 0; i < p.n_w; i++) k->be->ops->free(k->be, (void *)p.w[i].data);
  free(p.w), free(p.x), free(p.y);
  return s;
}

static tpd_status attention_row(kctx *k, const tpd_model_config *c, int B, int ctx, uint64_t seed, krow *r) {
  const int L = c->n_layers, Hkv = c->n_kv_heads, Dh = c->head_dim, bs = 16;
  const int mb = ctx / bs + 1, n_blocks = B * mb;
  const size_t es = tpd_dtype_size(k->be->kv_dtype), per_layer = (size_t)n_blocks * Hkv * bs * Dh;
  att_pass p = {.be = k->be, .c = c};
  p.k = calloc((size_t)L, sizeof(void *)), p.v = calloc((size_t)L, sizeof(void *));
  int32_t *table = malloc(sizeof(int32_t) * (size_t)n_blocks), *pos = malloc(sizeof(int32_t) * (size_t)B);
  int32_t *slot = malloc(sizeof(int32_t) * (size_t)B);
  const int W = (c->n_heads + 2 * Hkv) * Dh;
  p.q = malloc(sizeof(float) * (size_t)B * W), p.out = malloc(sizeof(float) * (size_t)B * c->n_heads * Dh);
  tpd_status s = p.k && p.v && table && pos && slot && p.q && p.out ? TPD_OK
                                                                    : TPD_FAIL(TPD_ERR_OOM, "out of memory for attention");
  uint64_t x = 0x2545f4914f6cdd1dull ^ seed;
  for (int l = 0; l < L && s == TPD_OK; l++) {
    s = k->be->ops->alloc(k->be, per_layer * es, &p.k[l]);
    if (s == TPD_OK) s = k->be->ops->alloc(k->be, per_layer * es, &p.v[l]);
    if (s == TPD_OK) fill_random(p.k[l], k->be->kv_dtype, per_layer, &x), fill_random(p.v[l], k->be->kv_dtype, per_layer, &x);
  }
  if (s == TPD_OK) {
    for (int i = 0; i < n_blocks; i++) table[i] = i; /* each sequence's blocks in order, as a fresh pool gives them */
    for (int b = 0; b < B; b++) pos[b] = ctx, slot[b] = b;
    fill_random(p.q, TPD_F32, (size_t)B * W, &x);
    p.meta = (tpd_step_meta){.T = B, .pos = pos, .slot = slot, .block_table = table, .max_blocks = mb,
                             .block_size = bs, .max_ctx = ctx + 1};
    memset(r, 0, sizeof *r);
    r->kernel = "attention", r->batch = B, r->ctx = ctx;
    r->bytes = 2.0 * L * B * (ctx + 1) * Hkv * Dh * (double)es;
    r->flops = 4.0 * L * B * (ctx + 1) * c->n_heads * Dh;
    s = time_passes(k, run_att, &p, r);
  }
  for (int l = 0; l < L; l++) {
    if (p.k && p.k[l]) k->be->ops->free(k->be, p.k[l]);
    if (p.v && p.v[l]) k->be->ops->free(k->be, p.v[l]);
  }
  free(p.k), free(p.v), free(table), free(pos), free(slot), free(p.q), free(p.out);
  return s;
}

static void print_rows(const bopts *o, const krow *rows, int n, double peak) {
  if (!o->json)
    printf("%-9s %6s %6s %9s %9s %9s %9s %8s %8s %8s %8s %8s\n", "kernel", "batch", "ctx", "MB/pass", "best ms",
           "median ms", "GB/s", "of read", "med/med", "paired", "GFLOP/s", "of peak");
  int faults = 0;
  for (int i = 0; i < n; i++) {
    const krow *r = &rows[i];
    const double gbs = r->bytes / (r->best_ms * 1e-3) / 1e9, frac = gbs / r->probe_best;
    const double frac_med = r->bytes / (r->med_ms * 1e-3) / 1e9 / r->probe_med;
    const double gfl = r->flops / (r->best_ms * 1e-3) / 1e9;
    const int fault = frac > 1 || r->paired > 1;
    faults += fault;
    if (o->json) {
      printf("{\"kind\":\"kernel\",\"kernel\":\"%s\",\"batch\":%d,\"ctx\":", r->kernel, r->batch);
      if (r->ctx < 0) printf("null");
      else printf("%d", r->ctx);
      printf(",\"bytes_per_pass\":%.0f,\"flops_per_pass\":%.0f,\"ms_best\":%.9g,\"ms_median\":%.9g,"
             "\"read_bw_gbs\":%.9g,\"read_bw_median_gbs\":%.9g,\"achieved_gbs\":%.9g,\"fraction_of_read_bw\":%.9g,"
             "\"fraction_of_read_bw_median\":%.9g,\"fraction_of_read_bw_paired\":%.9g,\"achieved_gflops\":%.9g,",
             r->bytes, r->flops, r->best_ms, r->med_ms, r->probe_best, r->probe_med, gbs, frac, frac_med, r->paired,
             gfl);
      if (peak > 0) printf("\"peak_gflops\":%.9g,\"fraction_of_peak_flops\":%.9g,", peak / 1e9, gfl * 1e9 / peak);
      else printf("\"peak_gflops\":null,\"fraction_of_peak_flops\":null,");
      printf("\"fault\":%s}\n", fault ? "\"faster than the read probe: the probe read too low\"" : "null");
    } else {
      char ctx[16], pk[16];
      snprintf(ctx, sizeof ctx, r->ctx < 0 ? "-" : "%d", r->ctx);
      snprintf(pk, sizeof pk, peak > 0 ? "%.3f" : "n/a", gfl * 1e9 / peak);
      printf("%-9s %6d %6s %9.1f %9.3f %9.3f %9.2f %8.3f %8.3f %8.3f %8.1f %8s%s\n", r->kernel, r->batch, ctx,
             r->bytes / 1e6, r->best_ms, r->med_ms, gbs, frac, frac_med, r->paired, gfl, pk, fault ? "  FAULT" : "");
    }
  }
  if (faults && !o->json)
    printf("FAULT: %d row%s read faster than the read probe: the probe read too low in this run\n", faults,
           faults > 1 ? "s" : "");
}

tpd_status bench_run_kernels(const bopts *o, const char *dir) {
  tpd_model_config c;
  TPD_TRY(tpd_config_load(dir, &c));
  tpd_dtype wt = TPD_F32;
  TPD_TRY(weight_dtype(dir, &wt));
  /* as the engines: --kv-cache, else TPD_KV_CACHE, else auto (bf16 for bf16 weights) */
  const char *kv = o->kv_cache ? o->kv_cache : getenv("TPD_KV_CACHE");
  if (!kv || !*kv || !strcmp(kv, "auto")) kv = wt == TPD_BF16 ? "bf16" : "f32";
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  const int threads = o->threads > 0 ? (int)o->threads : online > 0 ? (int)online : 1;
  tpd_backend_opts bo = {.n_threads = threads, .kv_cache = kv, .activations = o->activations};
  tpd_backend *be = NULL;
  TPD_TRY(tpd_backend_create("cpu", &bo, &be));
  kctx k = {.be = be, .steps = (int)o->steps, .warmup = (int)o->warmup};
  k.ms = malloc(sizeof(double) * (size_t)o->steps), k.gbs = malloc(sizeof(double) * (size_t)o->steps);
  k.pair = malloc(sizeof(double) * (size_t)o->steps);
  k.probe = tpd_membw_open(threads, (size_t)o->membw_mb << 20, 0);
  krow *rows = calloc((size_t)o->n_batches * (size_t)(1 + o->n_ctxs), sizeof *rows);
  tpd_status s = k.ms && k.gbs && k.pair && k.probe && rows ? TPD_OK : TPD_FAIL(TPD_ERR_OOM, "out of memory for the probes");
  int n = 0;
  const char *what = NULL;
  const double peak = s == TPD_OK ? bench_peak_flops(threads, wt == TPD_BF16 && be->matmul_act_dtype == TPD_BF16, &what) : 0;
  if (s == TPD_OK && !o->json)
    printf("tpdecode-bench --kernels: %s (dim %d, %d layers, %d/%d heads, ffn %d, vocab %d), %s weights, %s KV "
           "cache, cpu/%s, %d threads\nfloor: a %ld MB read-probe pass before every timed pass; of read = best "
           "pass / best probe, med/med = median pass / median probe, paired = median of each pass / the probe pass "
           "before it; peak %.1f GFLOP/s (%s)\n",
           dir, c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn_dim, c.vocab, tpd_dtype_name(wt),
           tpd_dtype_name(be->kv_dtype),
           wt != TPD_BF16 && be->kernels_f32 ? be->kernels_f32 : be->kernels ? be->kernels : "cpu", threads, o->membw_mb,
           peak / 1e9,
           what ? what : "n/a");
  if (s == TPD_OK) s = matmul_rows(&k, &c, wt, o, rows, &n);
  for (int i = 0; i < o->n_batches && s == TPD_OK; i++)
    for (int j = 0; j < o->n_ctxs && s == TPD_OK; j++) {
      s = attention_row(&k, &c, o->batches[i], o->ctxs[j], (uint64_t)o->seed, &rows[n]);
      if (s == TPD_OK) n++;
    }
  if (s == TPD_OK) print_rows(o, rows, n, peak);
  tpd_membw_close(k.probe);
  free(k.ms), free(k.gbs), free(k.pair), free(rows);
  tpd_backend_destroy(be);
  return s;
}
