/* Every CPU kernel against a float64 reference on fresh random inputs, at
 * every instruction-set level this CPU supports, with shapes that have
 * tails, and with 1 and 3 threads. */
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "kernels/backend.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/mm_tile.h"
#include "kernels/cpu/pool.h"
#include "runtime/engine/kvcache.h"
#include "runtime/engine/sampler.h"
#include "testutil.h"

static tpd_backend *be1, *be3; /* 1 and 3 threads, f32 activations */
/* the same with bf16 matmul inputs (activations "bf16"), where the CPU has AVX512-BF16; g_dot: the
 * matmul tests run on these (be1 and be3 point at them) */
static tpd_backend *be1_bf16, *be3_bf16;
static int g_dot;

static void fill(float *x, size_t n, double scale) {
  for (size_t i = 0; i < n; i++) x[i] = (float)tu_uniform(-scale, scale);
}

/* ---- dtype conversions: exhaustive round trips ---- */
static void test_dtypes(void) {
  int bad_bf16 = 0, bad_f16 = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    const float fb = tpd_bf16_to_f32((uint16_t)h), fh = tpd_f16_to_f32((uint16_t)h);
    /* a NaN pattern need not keep its payload, but must stay NaN */
    if (isnan(fb) ? !isnan(tpd_bf16_to_f32(tpd_f32_to_bf16(fb))) : tpd_f32_to_bf16(fb) != h) bad_bf16++;
    if (isnan(fh) ? !isnan(tpd_f16_to_f32(tpd_f32_to_f16(fh))) : tpd_f32_to_f16(fh) != h) bad_f16++;
  }
  CHECK(isnan(tpd_bf16_to_f32(tpd_f32_to_bf16(NAN))) && isnan(tpd_f16_to_f32(tpd_f32_to_f16(NAN))),
        "f32 NaN does not convert to a NaN");
  CHECK(bad_bf16 == 0, "%d bf16 patterns do not round-trip", bad_bf16);
  CHECK(bad_f16 == 0, "%d f16 patterns do not round-trip", bad_f16);
  CHECK(tpd_f32_to_f16(1.0f) == 0x3c00 && tpd_f32_to_f16(65504.0f) == 0x7bff && tpd_f32_to_f16(1e6f) == 0x7c00,
        "f16 known values");
  CHECK(tpd_f32_to_f16(5.9604645e-8f) == 0x0001 && tpd_f16_to_f32(0x0001) == 5.9604645e-8f, "f16 subnormal");
  CHECK(tpd_f32_to_bf16(1.0f) == 0x3f80 && tpd_f32_to_bf16(-2.0f) == 0xc000, "bf16 known values");
  /* round to nearest even on random values, checked against double arithmetic */
  int bad = 0;
  for (int i = 0; i < 100000; i++) {
    const float x = (float)tu_uniform(-1e4, 1e4);
    const double e16 = tu_abs_diff(tpd_f16_to_f32(tpd_f32_to_f16(x)), x) / fabs(x);
    const double eb = tu_abs_diff(tpd_bf16_to_f32(tpd_f32_to_bf16(x)), x) / fabs(x);
    if (fabs(x) > 1e-3 && !(tu_within(e16, 0.5 * 0x1p-10) && tu_within(eb, 0.5 * 0x1p-7))) bad++;
  }
  CHECK(bad == 0, "%d random values round beyond half an ulp", bad);
}

/* ---- matmul ---- */
static void store_weights(void *w, tpd_dtype dt, const float *src, size_t n) { tpd_convert(w, dt, src, TPD_F32, n); }

static void test_matmul_case(tpd_dtype dt, int M, int N, int K, int with_bias) {
  float *wf = malloc(sizeof(float) * (size_t)N * K), *x = malloc(sizeof(float) * (size_t)M * (K + 3));
  float *bias = with_bias ? malloc(sizeof(float) * (size_t)N) : NULL;
  void *w = malloc(tpd_dtype_size(dt) * (size_t)N * K);
  fill(wf, (size_t)N * K, 1.0);
  fill(x, (size_t)M * (K + 3), 2.0);
  if (bias) fill(bias, (size_t)N, 1.0);
  store_weights(w, dt, wf, (size_t)N * K);
  const int ldx = K + 3, ldy = N + 2;
  float *y1 = malloc(sizeof(float) * (size_t)M * ldy), *y3 = malloc(sizeof(float) * (size_t)M * ldy);
  float *yrow = malloc(sizeof(float) * (size_t)ldy);
  tpd_weight W1, W3;
  CHECK_OK(be1->ops->load_weight(be1, w, dt, N, K, &W1));
  CHECK_OK(be3->ops->load_weight(be3, w, dt, N, K, &W3));
  memset(y1, 0xff, sizeof(float) * (size_t)M * ldy); /* NaN poison */
  memset(y3, 0xff, sizeof(float) * (size_t)M * ldy);
  tpd_matmul_args a = {M, x, ldx, &W1, bias, y1, ldy, TPD_F32};
  CHECK_OK(be1->ops->matmul(be1, &a));
  a.w = &W3;
  a.y = y3;
  CHECK_OK(be3->ops->matmul(be3, &a));
  double worst = 0;
  int unwritten = 0, thread_diff = 0, batch_diff = 0;
  /* the bf16 path (bf16 weights, bf16 matmul inputs, a level with AVX512-BF16) multiplies x rounded to
   * bf16 (nearest even): the float64 reference rounds it the same way, so both paths keep fp32's bound */
  const int dot = dt == TPD_BF16 && tpd_isa_active() >= TPD_ISA_AVX512BF16 && g_dot;
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = bias ? bias[n] : 0, mag = bias ? fabs(bias[n]) : 0;
      for (int k = 0; k < K; k++) {
        const double wv = tpd_load_f32(w, dt, (size_t)n * K + k);
        const float xv = x[(size_t)m * ldx + k], xr = dot ? tpd_bf16_to_f32(tpd_f32_to_bf16(xv)) : xv;
        s += wv * xr;
        mag += fabs(wv * xr);
      }
      const float got = y1[(size_t)m * ldy + n];
      if (isnan(got)) unwritten++;
      worst = tu_worst(worst, tu_abs_diff(got, s) / (mag + 1e-30));
      if (memcmp(&y1[(size_t)m * ldy + n], &y3[(size_t)m * ldy + n], sizeof(float))) thread_diff++;
    }
  /* the same row alone (M = 1) gives the same bits: results do not depend on the batch */
  for (int m = 0; m < M; m += (M > 4 ? M / 3 : 1)) {
    tpd_matmul_args one = {1, x + (size_t)m * ldx, ldx, &W3, bias, yrow, ldy, TPD_F32};
    CHECK_OK(be3->ops->matmul(be3, &one));
    if (memcmp(yrow, y1 + (size_t)m * ldy, sizeof(float) * (size_t)N)) batch_diff++;
  }
  CHECK(unwritten == 0, "%s %dx%dx%d: %d outputs unwritten", tpd_dtype_name(dt), M, N, K, unwritten);
  /* bound: fp32 accumulation */
  const double tol = 1e-6 * sqrt((double)K);
  CHECK(tu_within(worst, tol), "%s M=%d N=%d K=%d: error %.3g of sum |w x| (isa %s%s)", tpd_dtype_name(dt), M, N, K, worst,
        tpd_isa_name(tpd_isa_active()), dot ? ", bf16 dot" : "");
  CHECK(thread_diff == 0, "%s %dx%dx%d: 1 and 3 threads differ in %d outputs", tpd_dtype_name(dt), M, N, K, thread_diff);
  CHECK(batch_diff == 0, "%s %dx%dx%d: a row alone differs from the batch", tpd_dtype_name(dt), M, N, K);
  be1->ops->free(be1, (void *)W1.data);
  be3->ops->free(be3, (void *)W3.data);
  free(wf), free(x), free(bias), free(w), free(y1), free(y3), free(yrow);
}

static void test_matmul(void) {
  static const int Ms[] = {1, 2, 5, 7, 16, 70}, Ns[] = {1, 4, 5, 33, 130}, Ks[] = {1, 17, 32, 100, 257, 601};
  for (int d = 0; d < 3; d++)
    for (size_t i = 0; i < 6; i++)
      for (size_t j = 0; j < 5; j++)
        for (size_t k = 0; k < 6; k++)
          if ((i + j + k) % 2 == 0 || Ms[i] == 1) test_matmul_case((tpd_dtype)d, Ms[i], Ns[j], Ks[k], (int)((i + k) % 2));
  /* N large enough for shares of several panel pairs (the kernels' wide blocks: 4 panels per step) */
  for (int d = 0; d < 3; d++) {
    test_matmul_case((tpd_dtype)d, 1, 1100, 100, 1);
    test_matmul_case((tpd_dtype)d, 8, 1100, 100, 0); /* 5-8 rows: three panels a step (AVX-512), the rest after */
    test_matmul_case((tpd_dtype)d, 6, 35, 257, 1);
    test_matmul_case((tpd_dtype)d, 13, 1030, 257, 0);
    test_matmul_case((tpd_dtype)d, 40, 700, 64, 1);
    test_matmul_case((tpd_dtype)d, 20, 300, 512, 0); /* a part row tile second; Kp a multiple of 512 (AMX's padded x stride) */
    test_matmul_case((tpd_dtype)d, 50, 140, 96, 1);
  }
}

/* ---- rmsnorm with fused residual add ---- */
static void test_rmsnorm(void) {
  const int T = tu_int(1, 9), D = tu_int(1, 300);
  float *x = malloc(sizeof(float) * (size_t)T * D), *d = malloc(sizeof(float) * (size_t)T * D);
  float *w = malloc(sizeof(float) * (size_t)D), *y = malloc(sizeof(float) * (size_t)T * D);
  float *x0 = malloc(sizeof(float) * (size_t)T * D);
  fill(x, (size_t)T * D, 3.0), fill(d, (size_t)T * D, 1.0), fill(w, (size_t)D, 2.0);
  memcpy(x0, x, sizeof(float) * (size_t)T * D);
  memset(y, 0xff, sizeof(float) * (size_t)T * D);
  tpd_rmsnorm_args a = {T, D, x, d, w, 1e-5f, y};
  CHECK_OK(be3->ops->rmsnorm(be3, &a));
  double *ref = malloc(sizeof(double) * (size_t)T * D), *xr = malloc(sizeof(double) * (size_t)T * D);
  for (int t = 0; t < T; t++) {
    double ss = 0;
    for (int i = 0; i < D; i++) {
      xr[(size_t)t * D + i] = (double)x0[(size_t)t * D + i] + d[(size_t)t * D + i];
      ss += xr[(size_t)t * D + i] * xr[(size_t)t * D + i];
    }
    for (int i = 0; i < D; i++) ref[(size_t)t * D + i] = xr[(size_t)t * D + i] / sqrt(ss / D + 1e-5) * w[i];
  }
  const double err = tu_rel_err(y, ref, (size_t)T * D), err_x = tu_rel_err(x, xr, (size_t)T * D);
  CHECK(tu_within(err, 1e-6), "rmsnorm T=%d D=%d err %.3g", T, D, err);
  CHECK(tu_within(err_x, 1e-7), "rmsnorm residual add: err %.3g", err_x);
  free(x), free(d), free(w), free(y), free(x0), free(ref), free(xr);
}

/* ---- paged KV: rope + append, then attention ---- */
typedef struct {
  int T, Hq, Hkv, Dh, bs, n_slots, max_blocks, n_blocks, window;
  int32_t *pos, *slot, *table;
  float *kc, *vc;
} kv_case;

static void make_case(kv_case *c) {
  c->Hkv = tu_int(1, 3);
  c->Hq = c->Hkv * (tu_int(0, 1) ? 1 : 4);
  c->Dh = 2 * tu_int(1, 24);
  c->bs = tu_int(1, 8);
  c->n_slots = tu_int(1, 3);
  c->max_blocks = tu_int(2, 6);
  c->n_blocks = c->n_slots * c->max_blocks;
  c->window = tu_int(0, 1) ? 0 : tu_int(1, 6);
  /* a random permutation of blocks for the table: the cache is paged */
  c->table = malloc(sizeof(int32_t) * (size_t)c->n_blocks);
  for (int i = 0; i < c->n_blocks; i++) c->table[i] = i;
  for (int i = c->n_blocks - 1; i > 0; i--) {
    int j = tu_int(0, i), t = c->table[i];
    c->table[i] = c->table[j];
    c->table[j] = t;
  }
  const size_t cache = (size_t)c->n_blocks * c->Hkv * c->bs * c->Dh;
  c->kc = malloc(sizeof(float) * cache);
  c->vc = malloc(sizeof(float) * cache);
  fill(c->kc, cache, 1.0);
  fill(c->vc, cache, 1.0);
  c->T = tu_int(1, 7);
  c->pos = malloc(sizeof(int32_t) * (size_t)c->T);
  c->slot = malloc(sizeof(int32_t) * (size_t)c->T);
  for (int t = 0; t < c->T; t++) {
    c->slot[t] = tu_int(0, c->n_slots - 1);
    c->pos[t] = tu_int(0, c->max_blocks * c->bs - 1);
  }
}

static void free_case(kv_case *c) { free(c->table), free(c->kc), free(c->vc), free(c->pos), free(c->slot); }

static size_t cache_at(const kv_case *c, int slot, int p, int h) {
  const int blk = c->table[slot * c->max_blocks + p / c->bs];
  return (((size_t)blk * c->Hkv + h) * c->bs + p % c->bs) * c->Dh;
}

static void test_rope_kv(void) {
  kv_case c;
  make_case(&c);
  for (int t = 0; t < c.T; t++) /* distinct (slot, pos) per token */
    for (int u = 0; u < t; u++)
      if (c.slot[u] == c.slot[t] && c.pos[u] == c.pos[t]) c.slot[t] = -1;
  int T = 0;
  for (int t = 0; t < c.T; t++)
    if (c.slot[t] >= 0) c.slot[T] = c.slot[t], c.pos[T++] = c.pos[t];
  c.T = T;
  const int W = (c.Hq + 2 * c.Hkv) * c.Dh;
  float *qkv = malloc(sizeof(float) * (size_t)T * W), *orig = malloc(sizeof(float) * (size_t)T * W);
  fill(qkv, (size_t)T * W, 2.0);
  memcpy(orig, qkv, sizeof(float) * (size_t)T * W);
  double *f = malloc(sizeof(double) * (size_t)c.Dh / 2);
  for (int i = 0; i < c.Dh / 2; i++) f[i] = pow(tu_uniform(100, 1e6), -2.0 * i / c.Dh);
  tpd_step_meta meta = {T, c.pos, c.slot, c.table, c.max_blocks, c.bs, c.max_blocks * c.bs};
  tpd_rope_kv_args a = {&meta, c.Hq, c.Hkv, c.Dh, qkv, f, c.kc, c.vc};
  CHECK_OK(be3->ops->rope_kv(be3, &a));
  double worst = 0;
  for (int t = 0; t < T; t++)
    for (int h = 0; h < c.Hq + 2 * c.Hkv; h++) {
      const float *src = orig + (size_t)t * W + (size_t)h * c.Dh;
      for (int i = 0; i < c.Dh; i++) {
        double r;
        if (h < c.Hq + c.Hkv) {
          const int j = i % (c.Dh / 2);
          const double cs = cos(c.pos[t] * f[j]), sn = sin(c.pos[t] * f[j]);
          r = i < c.Dh / 2 ? src[i] * cs - src[i + c.Dh / 2] * sn : src[i] * cs + src[i - c.Dh / 2] * sn;
        } else {
          r = src[i];
        }
        const float got_q = qkv[(size_t)t * W + (size_t)h * c.Dh + i];
        const float *cache = NULL;
        if (h >= c.Hq && h < c.Hq + c.Hkv) cache = c.kc + cache_at(&c, c.slot[t], c.pos[t], h - c.Hq);
        if (h >= c.Hq + c.Hkv) cache = c.vc + cache_at(&c, c.slot[t], c.pos[t], h - c.Hq - c.Hkv);
        if (h < c.Hq + c.Hkv) worst = tu_worst(worst, tu_abs_diff(got_q, r));
        if (cache) worst = tu_worst(worst, tu_abs_diff(cache[i], r));
      }
    }
  CHECK(tu_within(worst, 2e-6), "rope/kv append error %.3g (Dh %d)", worst, c.Dh);
  free(qkv), free(orig), free(f);
  free_case(&c);
}

static void test_attention(void) {
  kv_case c;
  make_case(&c);
  const int T = c.T, ldq = c.Hq * c.Dh + 5;
  float *q = malloc(sizeof(float) * (size_t)T * ldq), *out = malloc(sizeof(float) * (size_t)T * c.Hq * c.Dh);
  fill(q, (size_t)T * ldq, 2.0);
  memset(out, 0xff, sizeof(float) * (size_t)T * c.Hq * c.Dh);
  int max_ctx = 0;
  for (int t = 0; t < T; t++)
    if (c.pos[t] + 1 > max_ctx) max_ctx = c.pos[t] + 1;
  tpd_step_meta meta = {T, c.pos, c.slot, c.table, c.max_blocks, c.bs, max_ctx};
  const float scale = (float)(1.0 / sqrt((double)c.Dh));
  tpd_attention_args a = {&meta, c.Hq, c.Hkv, c.Dh, q, ldq, c.kc, c.vc, out, c.window, scale};
  CHECK_OK(be3->ops->attention(be3, &a));
  double *ref = calloc((size_t)T * c.Hq * c.Dh, sizeof(double));
  double *s = malloc(sizeof(double) * (size_t)max_ctx);
  for (int t = 0; t < T; t++)
    for (int h = 0; h < c.Hq; h++) {
      const int kh = h / (c.Hq / c.Hkv), p1 = c.pos[t];
      const int p0 = c.window && p1 - c.window + 1 > 0 ? p1 - c.window + 1 : 0;
      double mx = -INFINITY, z = 0;
      for (int p = p0; p <= p1; p++) {
        double d = 0;
        const float *k = c.kc + cache_at(&c, c.slot[t], p, kh);
        for (int i = 0; i < c.Dh; i++) d += (double)q[(size_t)t * ldq + h * c.Dh + i] * k[i];
        s[p] = d * scale;
        if (s[p] > mx) mx = s[p];
      }
      for (int p = p0; p <= p1; p++) z += (s[p] = exp(s[p] - mx));
      for (int p = p0; p <= p1; p++) {
        const float *v = c.vc + cache_at(&c, c.slot[t], p, kh);
        for (int i = 0; i < c.Dh; i++) ref[((size_t)t * c.Hq + h) * c.Dh + i] += s[p] / z * v[i];
      }
    }
  const double err = tu_rel_err(out, ref, (size_t)T * c.Hq * c.Dh);
  CHECK(tu_within(err, 1e-5), "attention T=%d Hq=%d Hkv=%d Dh=%d window=%d: err %.3g", T, c.Hq, c.Hkv, c.Dh, c.window, err);
  free(q), free(out), free(ref), free(s);
  free_case(&c);
}

static void test_small_ops(void) {
  const int T = tu_int(1, 5), F = tu_int(1, 200);
  float *gu = malloc(sizeof(float) * (size_t)T * 2 * F), *o = malloc(sizeof(float) * (size_t)T * F);
  double *ref = malloc(sizeof(double) * (size_t)T * F);
  fill(gu, (size_t)T * 2 * F, 6.0);
  memset(o, 0xff, sizeof(float) * (size_t)T * F);
  tpd_swiglu_args sw = {T, F, gu, o};
  CHECK_OK(be3->ops->swiglu(be3, &sw));
  for (int t = 0; t < T; t++)
    for (int i = 0; i < F; i++) {
      const double g = gu[(size_t)t * 2 * F + i], u = gu[(size_t)t * 2 * F + F + i];
      ref[(size_t)t * F + i] = g / (1 + exp(-g)) * u;
    }
  const double err_sw = tu_rel_err(o, ref, (size_t)T * F);
  CHECK(tu_within(err_sw, 1e-6), "swiglu T=%d F=%d err %.3g", T, F, err_sw);
  double worst_sw = 0; /* elementwise too: the vector sigmoid (ops_avx*.c) at every lane, the masked tail included */
  for (size_t i = 0; i < (size_t)T * F; i++) worst_sw = tu_worst(worst_sw, tu_abs_diff(o[i], ref[i]) / (fabs(ref[i]) + 1e-30));
  CHECK(tu_within(worst_sw, 2e-6), "swiglu T=%d F=%d: elementwise relative error %.3g (isa %s)", T, F, worst_sw,
        tpd_isa_name(tpd_isa_active()));
  { /* the ends of the range and the special values, against the scalar formula in double (the vector exp
     * flushes e^x below x = -87 to 0, so an output under 1e-35 in magnitude may be 0) */
    static const float gs[] = {NAN, INFINITY, -INFINITY, 100.0f, -100.0f, 88.5f, -88.5f, 87.0f, -87.0f, 20.0f, -20.0f,
                               0.0f, -0.0f, 1e-30f, -1e-30f, 1e-3f, -1e-3f, 0.5f, -0.5f, 3.0f, -3.0f};
    enum { NS = sizeof gs / sizeof gs[0] };
    float sgu[2 * NS], so[NS];
    for (int i = 0; i < NS; i++) sgu[i] = gs[i], sgu[NS + i] = 1.5f;
    tpd_swiglu_args ss = {1, NS, sgu, so};
    CHECK_OK(be1->ops->swiglu(be1, &ss));
    for (int i = 0; i < NS; i++) {
      const double g = gs[i], want = g / (1 + exp(-g)) * 1.5;
      const int ok = isnan(want) ? isnan(so[i]) : isinf(want) ? so[i] == want
                                                   : fabs(so[i] - want) <= 2e-6 * fabs(want) + 1e-35;
      CHECK(ok, "swiglu(%g) * 1.5 = %g, want %g (isa %s)", g, so[i], want, tpd_isa_name(tpd_isa_active()));
    }
  }
  /* gather rows (the residual add is rmsnorm's: test_rmsnorm) */
  float *y = malloc(sizeof(float) * (size_t)T * F);
  fill(y, (size_t)T * F, 1.0);
  int32_t rows[3] = {T - 1, 0, T / 2};
  float *g = malloc(sizeof(float) * 3 * (size_t)F);
  CHECK_OK(be3->ops->gather_rows(be3, g, y, rows, 3, F));
  int bad = 0;
  for (int i = 0; i < 3; i++) bad += memcmp(g + (size_t)i * F, y + (size_t)rows[i] * F, sizeof(float) * (size_t)F) != 0;
  CHECK(bad == 0, "gather_rows");
  /* argmax: first maximum, offset applied, ties resolved to the lower index */
  const int M = 7, N = tu_int(0, 1) ? tu_int(2, 500) : tu_int(3000, 9000); /* the second: rows split across threads */
  float *l = malloc(sizeof(float) * (size_t)M * N), val[7];
  int32_t idx[7];
  fill(l, (size_t)M * N, 5.0);
  l[(size_t)1 * N + N - 1] = 100.0f;
  l[(size_t)2 * N + 0] = 100.0f;
  l[(size_t)2 * N + N - 1] = 100.0f;
  tpd_argmax_args am = {M, N, l, val, idx, 1000};
  CHECK_OK(be3->ops->argmax(be3, &am));
  for (int m = 0; m < M; m++) {
    int best = 0;
    for (int n = 1; n < N; n++)
      if (l[(size_t)m * N + n] > l[(size_t)m * N + best]) best = n;
    CHECK(idx[m] == best + 1000 && val[m] == l[(size_t)m * N + best], "argmax row %d: %d vs %d", m, idx[m], best + 1000);
  }
  free(gu), free(o), free(ref), free(y), free(g), free(l);
}

/* ---- logit statistics (max, sum of exp, top-k) against a float64 reference ----
 * The reference sorts the whole row (the kernel keeps a running list). */
typedef struct {
  float v;
  int i;
} ls_pair;

static int ls_pair_cmp(const void *pa, const void *pb) { /* larger value first, then lower index */
  const ls_pair *a = pa, *b = pb;
  if (a->v != b->v) return a->v > b->v ? -1 : 1;
  return (a->i > b->i) - (a->i < b->i);
}

/* Error of (max, sumexp) against float64: |max - ref| + relative sumexp error;
 * +INF whenever a NaN is on either side (tu_abs_diff).  A row whose reference
 * maximum is -inf must give exactly (-inf, 0). */
static double ls_stats_err(const float *l, int N, float mx, float se) {
  double rmax = -INFINITY;
  int any_nan = 0;
  for (int n = 0; n < N; n++) {
    any_nan |= isnan(l[n]);
    rmax = fmax(rmax, l[n]); /* drops a NaN: put back below */
  }
  if (any_nan) rmax = NAN;
  if (rmax == -INFINITY) return mx == -INFINITY && se == 0.0f ? 0.0 : INFINITY;
  double rs = 0;
  for (int n = 0; n < N; n++) rs += exp((double)l[n] - rmax);
  return tu_worst(tu_abs_diff(mx, rmax), tu_abs_diff(se, rs) / rs);
}

/* Mismatching top-k entries against the sorted row (NaN left out; (-inf, -1) past its end). */
static int ls_topk_bad(const float *l, int N, int k, int off, const float *tv, const int32_t *ti, ls_pair *buf) {
  int n_ok = 0, bad = 0;
  for (int n = 0; n < N; n++)
    if (!isnan(l[n])) buf[n_ok].v = l[n], buf[n_ok].i = n, n_ok++;
  qsort(buf, (size_t)n_ok, sizeof *buf, ls_pair_cmp);
  for (int j = 0; j < k; j++) {
    const float rv = j < n_ok ? buf[j].v : -INFINITY;
    const int ri = j < n_ok ? buf[j].i + off : -1;
    bad += !(tv[j] == rv && ti[j] == ri); /* a NaN value never matches */
  }
  return bad;
}

/* One row of a kind: 0 uniform, 1 few distinct values (ties), 2 some -inf,
 * 3 all -inf, 4 wide range (exp underflows) */
static void ls_fill_row(float *l, int N, int kind) {
  for (int n = 0; n < N; n++) {
    const double u = tu_uniform(0, 1);
    switch (kind) {
    case 1: l[n] = (float)(floor(u * 6) * 0.5 - 1.25); break;
    case 2: l[n] = tu_int(0, 9) == 0 ? -INFINITY : (float)(10 * u - 5); break;
    case 3: l[n] = -INFINITY; break;
    case 4: l[n] = (float)(200 * u - 100); break;
    default: l[n] = (float)(10 * u - 5); break;
    }
  }
}

static void test_logit_stats(void) {
  const int cases[][3] = {{1, 1, 1},   {3, 5, 20},     {4, 1000, 8},      {3, 20, 20}, {2, 33331, 20},
                          {6, 4099, 5}, {2, 100, 0},   {2, 0, 3},         {5, 7, TPD_LOGIT_TOPK_MAX}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const int M = cases[c][0], N = cases[c][1], k = cases[c][2], off = tu_int(0, 100000);
    float *l = malloc(sizeof(float) * ((size_t)M * N + 1)), mx[8], se[8];
    float *tv = malloc(sizeof(float) * ((size_t)M * k + 1));
    int32_t *ti = malloc(sizeof(int32_t) * ((size_t)M * k + 1));
    ls_pair *buf = malloc(sizeof(ls_pair) * ((size_t)N + 1));
    for (int m = 0; m < M; m++) ls_fill_row(l + (size_t)m * N, N, M > 1 && m == M - 1 ? 3 : tu_int(0, 4));
    for (int t = 0; t < 2; t++) {
      tpd_backend *be = t ? be3 : be1;
      for (int m = 0; m < M; m++) mx[m] = se[m] = NAN;
      for (size_t j = 0; j < (size_t)M * k; j++) tv[j] = NAN, ti[j] = -7777;
      tpd_logit_stats_args a = {M, N, k, l, mx, se, tv, ti, off};
      CHECK_OK(be->ops->logit_stats(be, &a));
      for (int m = 0; m < M; m++) {
        const float *row = l + (size_t)m * N;
        const double err = ls_stats_err(row, N, mx[m], se[m]);
        const int bad = ls_topk_bad(row, N, k, off, tv + (size_t)m * k, ti + (size_t)m * k, buf);
        CHECK(tu_within(err, 1e-6) && bad == 0, "logit_stats M=%d N=%d k=%d row %d (%d threads): err %.3g, %d top-k wrong",
              M, N, k, m, t ? 3 : 1, err, bad);
      }
    }
    /* a NaN: max and sumexp become NaN, which the comparison must reject;
     * the top-k leaves it out */
    if (N > 1) {
      l[tu_int(0, N - 1)] = NAN;
      tpd_logit_stats_args a = {1, N, k, l, mx, se, tv, ti, off};
      CHECK_OK(be1->ops->logit_stats(be1, &a));
      const double err = ls_stats_err(l, N, mx[0], se[0]);
      CHECK(isnan(mx[0]) && isnan(se[0]) && !tu_within(err, 1e-6), "logit_stats N=%d: a NaN logit gives max %g, sumexp %g, err %g",
            N, mx[0], se[0], err);
      CHECK(ls_topk_bad(l, N, k, off, tv, ti, buf) == 0, "logit_stats N=%d: top-k with a NaN logit", N);
    }
    free(l), free(tv), free(ti), free(buf);
  }
  /* +inf: max +inf, sumexp NaN (inf - inf), and it is the top entry */
  {
    float l[5] = {1.0f, 2.0f, INFINITY, -3.0f, 0.5f}, mx, se, tv[2];
    int32_t ti[2];
    tpd_logit_stats_args a = {1, 5, 2, l, &mx, &se, tv, ti, 10};
    CHECK_OK(be1->ops->logit_stats(be1, &a));
    CHECK(mx == INFINITY && isnan(se) && tv[0] == INFINITY && ti[0] == 12 && tv[1] == 2.0f && ti[1] == 11,
          "logit_stats with +inf: max %g sumexp %g top (%g, %d) (%g, %d)", mx, se, tv[0], ti[0], tv[1], ti[1]);
  }
  /* bad arguments: one line naming the rule */
  float v = 1.0f, m1, s1;
  tpd_logit_stats_args bad = {1, 1, TPD_LOGIT_TOPK_MAX + 1, &v, &m1, &s1, NULL, NULL, 0};
  CHECK(be1->ops->logit_stats(be1, &bad) == TPD_ERR_ARG && strstr(tpd_last_error(), "k in 0..20"), "logit_stats k > max");
  tpd_clear_error();
}

/* ---- sampler ---- */
static void test_sampler(void) {
  tpd_sampler_scratch sc = {0};
  const int V = 6;
  const float logits[6] = {1.0f, 2.0f, 0.5f, 2.0f, -1.0f, 0.0f};
  int32_t tok;
  tpd_sampling greedy = {0};
  CHECK_OK(tpd_sample(logits, V, &greedy, 0, 0, &sc, &tok));
  CHECK(tok == 1, "greedy picks the first maximum, got %d", tok);
  /* frequencies match softmax(logits / T) */
  tpd_sampling s = {.temperature = 0.7f, .top_p = 1.0f, .seed = 42};
  int counts[6] = {0};
  const int n = 60000;
  for (int i = 0; i < n; i++) {
    CHECK_OK(tpd_sample(logits, V, &s, 3, (uint64_t)i, &sc, &tok));
    counts[tok]++;
  }
  double z = 0, p[6];
  for (int i = 0; i < V; i++) z += (p[i] = exp(logits[i] / 0.7));
  double worst = 0;
  for (int i = 0; i < V; i++) {
    p[i] /= z;
    const double sd = sqrt(p[i] * (1 - p[i]) / n);
    worst = tu_worst(worst, tu_abs_diff(counts[i] / (double)n, p[i]) / (sd + 1e-12));
  }
  CHECK(tu_within(worst, 5.0), "sampled frequencies deviate by %.1f standard deviations", worst);
  /* top-k = 2 keeps the two 2.0 logits only; top-p keeps the nucleus */
  tpd_sampling k2 = {.temperature = 1.0f, .top_k = 2, .top_p = 1.0f, .seed = 7};
  tpd_sampling p5 = {.temperature = 1.0f, .top_p = 0.5f, .seed = 7};
  int outside_k = 0, outside_p = 0;
  for (int i = 0; i < 2000; i++) {
    CHECK_OK(tpd_sample(logits, V, &k2, 0, (uint64_t)i, &sc, &tok));
    outside_k += tok != 1 && tok != 3;
    CHECK_OK(tpd_sample(logits, V, &p5, 0, (uint64_t)i, &sc, &tok));
    outside_p += tok != 1 && tok != 3; /* p(1) = p(3) ~ 0.33 each: nucleus of 0.5 is {1, 3} */
  }
  CHECK(outside_k == 0, "top-k sampled %d tokens outside the top 2", outside_k);
  CHECK(outside_p == 0, "top-p sampled %d tokens outside the nucleus", outside_p);
  /* same (seed, stream, counter) -> same token; the stream matters */
  int32_t a, b, c2;
  CHECK_OK(tpd_sample(logits, V, &s, 1, 99, &sc, &a));
  CHECK_OK(tpd_sample(logits, V, &s, 1, 99, &sc, &b));
  CHECK(a == b, "sampling is not reproducible");
  int differs = 0;
  for (int i = 0; i < 50; i++) {
    CHECK_OK(tpd_sample(logits, V, &s, 1, (uint64_t)i, &sc, &a));
    CHECK_OK(tpd_sample(logits, V, &s, 2, (uint64_t)i, &sc, &c2));
    differs += a != c2;
  }
  CHECK(differs > 5, "different streams give the same tokens");
  tpd_sampler_scratch_free(&sc);
}

static void test_kv_pool(void) {
  tpd_kv_pool kv;
  CHECK_OK(tpd_kv_init(&kv, 2, 40, 16, 4));
  int s0, s1, s2;
  CHECK_OK(tpd_kv_acquire(&kv, &s0));
  CHECK_OK(tpd_kv_acquire(&kv, &s1));
  CHECK(tpd_kv_acquire(&kv, &s2) != TPD_OK, "a third slot was handed out");
  tpd_clear_error();
  CHECK_OK(tpd_kv_reserve(&kv, s0, 33)); /* 3 blocks */
  CHECK(kv.n_free == 1, "3 of 4 blocks used");
  CHECK(tpd_kv_reserve(&kv, s1, 20) != TPD_OK, "pool exhaustion not reported");
  tpd_clear_error();
  CHECK(tpd_kv_reserve(&kv, s0, 41) != TPD_OK, "context overflow not reported");
  tpd_clear_error();
  tpd_kv_release(&kv, s0);
  CHECK(kv.n_free == 4, "release returns blocks");
  CHECK_OK(tpd_kv_reserve(&kv, s1, 40));
  tpd_kv_free(&kv);
}


/* ---- flash-decoding attention: long contexts, GQA, bf16 KV, thread counts ----
 * Backends with 1, 2 and 3 threads for each KV dtype; each case runs on all
 * three (outputs must be bit-identical) and is checked against a float64
 * reference on the values the cache holds (bf16: the rounded ones), row by
 * row: max |out - ref| / max |ref| of each (token, head) row within
 * ATT_TOL.  The kernels accumulate in f32 in a fixed order; 2e-5 is about
 * 100 f32 ulps, 1/100 of a bf16 rounding step (2^-8), so a kernel that read
 * the bf16 values wrongly, or lost a chunk, fails. */
#define ATT_TOL 2e-5
static tpd_backend *be_kv[2][3]; /* [f32, bf16][1, 2, 3 threads] */
static int fa_bs = 16;            /* the KV block size fa_make gives a case */

typedef struct {
  int n_seqs, T, Hq, Hkv, Dh, bs, max_blocks, window;
  tpd_dtype kv;
  int32_t *pos, *slot, *table;
  void *kc, *vc;        /* the cache as the backend holds it */
  double *kd, *vd;      /* the same values in double */
  float *q;
  int ldq;
} fa_case;

static size_t fa_row(const fa_case *c, int slot, int p, int g) {
  const int blk = c->table[slot * c->max_blocks + p / c->bs];
  return (((size_t)blk * c->Hkv + g) * c->bs + p % c->bs) * c->Dh;
}

/* T tokens: seq_tokens[i] consecutive positions ending at len[i] - 1 for sequence i */
static void fa_make(fa_case *c, tpd_dtype kv, int n_seqs, const int *len, const int *n_tok, int Hkv, int G, int Dh,
                    int window) {
  memset(c, 0, sizeof *c);
  c->kv = kv, c->n_seqs = n_seqs, c->Hkv = Hkv, c->Hq = Hkv * G, c->Dh = Dh, c->bs = fa_bs, c->window = window;
  int max_len = 1;
  for (int i = 0; i < n_seqs; i++) {
    if (len[i] > max_len) max_len = len[i];
    c->T += n_tok[i];
  }
  c->max_blocks = (max_len + c->bs - 1) / c->bs;
  const int n_blocks = n_seqs * c->max_blocks;
  c->table = malloc(sizeof(int32_t) * (size_t)n_blocks);
  for (int i = 0; i < n_blocks; i++) c->table[i] = i;
  for (int i = n_blocks - 1; i > 0; i--) { /* paged: a random permutation */
    const int j = tu_int(0, i), t = c->table[i];
    c->table[i] = c->table[j], c->table[j] = t;
  }
  const size_t n = (size_t)n_blocks * Hkv * c->bs * Dh;
  c->kc = malloc(n * tpd_dtype_size(kv)), c->vc = malloc(n * tpd_dtype_size(kv));
  c->kd = malloc(sizeof(double) * n), c->vd = malloc(sizeof(double) * n);
  for (size_t i = 0; i < n; i++) {
    tpd_store_f32(c->kc, kv, i, (float)tu_uniform(-1, 1));
    tpd_store_f32(c->vc, kv, i, (float)tu_uniform(-1, 1));
    c->kd[i] = tpd_load_f32(c->kc, kv, i), c->vd[i] = tpd_load_f32(c->vc, kv, i);
  }
  c->pos = malloc(sizeof(int32_t) * (size_t)c->T), c->slot = malloc(sizeof(int32_t) * (size_t)c->T);
  int t = 0;
  for (int i = 0; i < n_seqs; i++)
    for (int k = 0; k < n_tok[i]; k++, t++) c->slot[t] = i, c->pos[t] = len[i] - n_tok[i] + k;
  c->ldq = c->Hq * Dh + 3;
  c->q = malloc(sizeof(float) * (size_t)c->T * c->ldq);
  fill(c->q, (size_t)c->T * c->ldq, 4.0); /* scores of a few units: softmax neither flat nor one-hot */
}

static void fa_free(fa_case *c) {
  free(c->pos), free(c->slot), free(c->table), free(c->kc), free(c->vc), free(c->kd), free(c->vd), free(c->q);
}

static int fa_max_ctx(const fa_case *c) {
  int m = 0;
  for (int t = 0; t < c->T; t++)
    if (c->pos[t] + 1 > m) m = c->pos[t] + 1;
  return m;
}

static tpd_status fa_run(tpd_backend *be, const fa_case *c, float *out) {
  tpd_step_meta meta = {c->T, c->pos, c->slot, c->table, c->max_blocks, c->bs, fa_max_ctx(c)};
  tpd_attention_args a = {&meta, c->Hq, c->Hkv, c->Dh, c->q, c->ldq, c->kc, c->vc, out, c->window,
                          (float)(1.0 / sqrt((double)c->Dh))};
  return be->ops->attention(be, &a);
}

/* worst row error of out against the float64 reference */
static double fa_check(const fa_case *c, const float *out) {
  const int Dh = c->Dh, G = c->Hq / c->Hkv;
  double *s = malloc(sizeof(double) * (size_t)fa_max_ctx(c)), *ref = malloc(sizeof(double) * (size_t)Dh);
  const double scale = (float)(1.0 / sqrt((double)Dh));
  double worst = 0;
  for (int t = 0; t < c->T; t++)
    for (int h = 0; h < c->Hq; h++) {
      const int p1 = c->pos[t], p0 = c->window && p1 - c->window + 1 > 0 ? p1 - c->window + 1 : 0;
      const float *q = c->q + (size_t)t * c->ldq + (size_t)h * Dh;
      double mx = -INFINITY, z = 0;
      for (int p = p0; p <= p1; p++) {
        const double *k = c->kd + fa_row(c, c->slot[t], p, h / G);
        double d = 0;
        for (int i = 0; i < Dh; i++) d += (double)q[i] * k[i];
        s[p] = d * scale;
        if (s[p] > mx) mx = s[p];
      }
      for (int p = p0; p <= p1; p++) z += (s[p] = exp(s[p] - mx));
      for (int i = 0; i < Dh; i++) ref[i] = 0;
      for (int p = p0; p <= p1; p++) {
        const double *v = c->vd + fa_row(c, c->slot[t], p, h / G);
        for (int i = 0; i < Dh; i++) ref[i] += s[p] / z * v[i];
      }
      worst = tu_worst(worst, tu_max_diff_rel(out + ((size_t)t * c->Hq + h) * Dh, ref, Dh));
    }
  free(s), free(ref);
  return worst;
}

/* The items the driver built in one call, in the order each thread ran them
 * (a thread is known by its score scratch, it->s): whether each item's
 * prefetch of the thread's next item (next_k, next_rows) names that item's
 * first K rows.  A call runs in waves of tokens (a long prefill); the
 * driver names no next item across waves. */
typedef struct {
  const void *s, *k0, *next_k;
  int next_rows, n, scalar, wave;
} fa_rec;
static fa_rec fa_recs[4096];
static int fa_nrec;
static long fa_links; /* next_k checked against the item that followed, over all cases */
static pthread_mutex_t fa_mu = PTHREAD_MUTEX_INITIALIZER;

static void fa_hook(const tpd_att_item *it, tpd_att_item_fn kernel, int t0) {
  pthread_mutex_lock(&fa_mu);
  if (fa_nrec < (int)(sizeof fa_recs / sizeof fa_recs[0]))
    fa_recs[fa_nrec++] = (fa_rec){it->s, it->k[0], it->next_k, it->next_rows, it->n, kernel == tpd_att_item_scalar, t0};
  pthread_mutex_unlock(&fa_mu);
  kernel(it);
}

static void fa_check_next(const fa_case *c, tpd_backend *be, const char *what) {
  float *out = malloc(sizeof(float) * (size_t)c->T * c->Hq * c->Dh);
  fa_nrec = 0;
  tpd_att_set_hook(fa_hook);
  CHECK_OK(fa_run(be, c, out));
  tpd_att_set_hook(NULL);
  CHECK(fa_nrec < (int)(sizeof fa_recs / sizeof fa_recs[0]), "attention %s: over %d items", what, fa_nrec);
  const size_t row_bytes = (size_t)c->Dh * tpd_dtype_size(c->kv);
  int bad = 0;
  for (int i = 0; i < fa_nrec && !bad; i++) {
    const fa_rec *r = &fa_recs[i], *nx = NULL;
    for (int j = i + 1; j < fa_nrec && !nx; j++)
      if (fa_recs[j].s == r->s) nx = &fa_recs[j];
    if (!nx || nx->wave != r->wave) { /* the thread's last item of the call or of a wave */
      bad = r->next_k != NULL;
      CHECK(!bad, "attention %s (Dh=%d, bs=%d): a thread's last item names a next item", what, c->Dh, c->bs);
    } else if (r->next_k || !r->scalar) { /* the scalar kernel's items of a pair's other KV heads name none */
      const int in_block = (int)((size_t)((const unsigned char *)nx->k0 - (const unsigned char *)c->kc) / row_bytes % (size_t)c->bs);
      const int rows = c->bs - in_block < nx->n ? c->bs - in_block : nx->n;
      bad = r->next_k != nx->k0 || r->next_rows != rows;
      CHECK(!bad, "attention %s (Dh=%d, bs=%d): item %d prefetches %p, %d rows; its thread's next item starts at %p, %d rows",
            what, c->Dh, c->bs, i, r->next_k, r->next_rows, nx->k0, rows);
      fa_links++;
    }
  }
  free(out);
}

/* one case on 1, 2 and 3 threads in each order of reads (TPD_CPU_ATT_BLOCKS
 * 1 and 0): within ATT_TOL of the reference, the same bits */
static void fa_case_run(fa_case *c, const char *what) {
  const size_t n = (size_t)c->T * c->Hq * c->Dh;
  float *out[6];
  const int k = c->kv == TPD_BF16, old_blocks = tpd_cpu_att_blocks();
  for (int i = 0; i < 6; i++) {
    out[i] = malloc(sizeof(float) * n);
    memset(out[i], 0xff, sizeof(float) * n); /* NaN: a row left unwritten fails */
    tpd_cpu_set_att_blocks(i < 3 ? old_blocks : !old_blocks);
    CHECK_OK(fa_run(be_kv[k][i % 3], c, out[i]));
  }
  tpd_cpu_set_att_blocks(old_blocks);
  const double err = fa_check(c, out[0]);
  CHECK(tu_within(err, ATT_TOL), "attention %s (%s KV, T=%d Hq=%d Hkv=%d Dh=%d window=%d, %s): row error %.3g",
        what, tpd_dtype_name(c->kv), c->T, c->Hq, c->Hkv, c->Dh, c->window, tpd_isa_name(tpd_isa_active()), err);
  CHECK(!memcmp(out[0], out[1], sizeof(float) * n) && !memcmp(out[0], out[2], sizeof(float) * n),
        "attention %s (%s KV, Dh=%d, %s): 1, 2 and 3 threads differ", what, tpd_dtype_name(c->kv), c->Dh,
        tpd_isa_name(tpd_isa_active()));
  for (int i = 3; i < 6; i++)
    CHECK(!memcmp(out[0], out[i], sizeof(float) * n),
          "attention %s (%s KV, Dh=%d, %s): TPD_CPU_ATT_BLOCKS=%d on %d threads differs", what, tpd_dtype_name(c->kv),
          c->Dh, tpd_isa_name(tpd_isa_active()), !old_blocks, i - 2);
  for (int i = 0; i < 6; i++) free(out[i]);
  fa_check_next(c, be_kv[k][1], what);
  fa_check_next(c, be_kv[k][2], what);
}

static void test_attention_flash(void) {
  static const int lens[] = {1, 255, 256, 257, 3000}, one[] = {1, 1, 1, 1, 1};
  /* 96: two pair blocks then one (avx512); 48: a multiple of 16, not 32 (avx2 under avx512); 40: the avx2 kernel
   * only; 18: the scalar kernel */
  static const int dhs[] = {64, 128, 96, 48, 40, 18};
  for (int k = 0; k < 2; k++) {
    const tpd_dtype kv = k ? TPD_BF16 : TPD_F32;
    fa_case c;
    static const int gs[] = {1, 2, 3, 4, 6}; /* 3: one group of 3; 6: the avx512 kernel's groups of 4 then 2 */
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++)
      for (size_t d = 0; d < sizeof dhs / sizeof dhs[0]; d++) {
        const int G = gs[gi];
        fa_make(&c, kv, 5, lens, one, 2, G, dhs[d], 0); /* a decode batch of 5 lengths */
        fa_case_run(&c, "decode batch");
        fa_free(&c);
      }
    /* one sequence, fewer (token, chunk) pairs than twice the threads: the threads split its KV heads */
    static const int sl[] = {40, 200, 300, 700, 1100};
    for (size_t i = 0; i < sizeof sl / sizeof sl[0]; i++)
      for (int hkv = 1; hkv <= 3; hkv++) {
        fa_make(&c, kv, 1, &sl[i], one, hkv, 2, 64, 0);
        fa_case_run(&c, "one sequence");
        fa_free(&c);
      }
    /* KV blocks other than 16: the SIMD kernels read an item's KV heads a block at a time (4, 8, 12, 24,
     * 64: segments from the first block's end, 24 and 12 not dividing a chunk), or a whole chunk per head
     * when the block is not a multiple of 4 (6); GQA groups of 1 to 6, 3 to 8 KV heads, Dh 32 to 128;
     * windows start chunks mid-block */
    static const struct { int bs, hkv, g, dh, window; } bc[] = {
        {8, 4, 3, 64, 0},  {12, 4, 6, 96, 300}, {6, 4, 3, 64, 0},  {64, 4, 3, 128, 300},
        {24, 3, 2, 128, 0}, {24, 5, 1, 32, 300}, {16, 8, 4, 64, 0}, {4, 3, 2, 64, 100},
    };
    for (size_t b = 0; b < sizeof bc / sizeof bc[0]; b++) {
      fa_bs = bc[b].bs;
      fa_make(&c, kv, 5, lens, one, bc[b].hkv, bc[b].g, bc[b].dh, bc[b].window);
      char what[96];
      snprintf(what, sizeof what, "block size %d, %d KV heads of %d, window %d", fa_bs, bc[b].hkv, bc[b].g, bc[b].window);
      fa_case_run(&c, what);
      fa_free(&c);
      fa_bs = 16;
    }
    /* sliding windows: inside one chunk, across chunk edges, longer than some sequences */
    static const int wl[] = {3000, 600, 300, 40}, wins[] = {1, 100, 300};
    for (size_t w = 0; w < sizeof wins / sizeof wins[0]; w++) {
      fa_make(&c, kv, 4, wl, one, 2, 2, 64, wins[w]);
      fa_case_run(&c, "sliding window");
      fa_free(&c);
    }
    /* prefill (causal, T > 1 of one sequence) across a chunk edge, mixed with decode tokens, and from 0 */
    static const int pl[] = {270, 3000, 20}, pt[] = {20, 1, 20};
    fa_make(&c, kv, 3, pl, pt, 3, 2, 128, 0);
    fa_case_run(&c, "prefill + decode");
    fa_free(&c);
    fa_make(&c, kv, 3, pl, pt, 3, 2, 128, 260);
    fa_case_run(&c, "prefill + decode, window 260");
    fa_free(&c);
    /* NaN in one K or V element of a middle chunk reaches that group's rows */
    static const int nl[] = {700}, nt[] = {1};
    for (int which = 0; which < 2; which++) {
      fa_make(&c, kv, 1, nl, nt, 2, 2, 64, 0);
      tpd_store_f32(which ? c.vc : c.kc, kv, fa_row(&c, 0, 300, 1) + 5, NAN);
      float *o = malloc(sizeof(float) * (size_t)c.Hq * c.Dh);
      CHECK_OK(fa_run(be_kv[k][2], &c, o));
      int nan_g0 = 0, nan_g1 = 0;
      for (int i = 0; i < 2 * c.Dh; i++) nan_g0 += isnan(o[i]), nan_g1 += isnan(o[2 * c.Dh + i]);
      CHECK(nan_g0 == 0 && nan_g1 >= (which ? 2 : 2 * c.Dh),
            "attention: NaN in %s of KV head 1 gave %d NaN outputs in group 1 and %d in group 0 (%s KV, %s)",
            which ? "V" : "K", nan_g1, nan_g0, tpd_dtype_name(kv), tpd_isa_name(tpd_isa_active()));
      CHECK(!tu_within(fa_check(&c, o), ATT_TOL), "attention: the NaN output passes the comparison");
      free(o);
      fa_free(&c);
    }
  }
  CHECK(fa_links > 100, "attention: only %ld items' next-item prefetches were checked", fa_links);
}

/* A backend reserved for one row and 3000 positions takes a 40-token
 * prefill in 40 waves, to the same bits; past its max_ctx it fails naming
 * the workspace (no allocation after a reserve). */
static void test_attention_workspace(void) {
  static const int len[] = {3000, 900}, nt[] = {30, 10};
  fa_case c;
  fa_make(&c, TPD_F32, 2, len, nt, 2, 4, 64, 0);
  tpd_backend_opts o = {.n_threads = 2};
  tpd_backend *be = NULL;
  CHECK_OK(tpd_backend_create("cpu", &o, &be));
  if (!be) return;
  tpd_backend_plan p = {.max_rows = 1, .max_ctx = 3000, .n_q_heads = c.Hq, .n_kv_heads = c.Hkv, .head_dim = c.Dh,
                        .max_n = 64, .n_k = 1, .k = {64}, .gate_up_rows = 64};
  size_t nb = 0;
  CHECK_OK(be->ops->reserve(be, &p, 1, &nb));
  const size_t n = (size_t)c.T * c.Hq * c.Dh;
  float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
  memset(a, 0xff, sizeof(float) * n);
  CHECK_OK(fa_run(be, &c, a));
  CHECK_OK(fa_run(be_kv[0][1], &c, b));
  CHECK(!memcmp(a, b, sizeof(float) * n) && tu_within(fa_check(&c, a), ATT_TOL),
        "attention in one-token waves differs from one wave");
  fa_free(&c);
  static const int len2[] = {3001}, nt2[] = {1};
  fa_make(&c, TPD_F32, 1, len2, nt2, 2, 4, 64, 0);
  c.pos[0] = 3000 + TPD_ATT_CHUNK; /* one chunk more than planned */
  c.max_blocks = (3000 + TPD_ATT_CHUNK) / c.bs + 1;
  EXPECT_FAIL(fa_run(be, &c, a), TPD_ERR_INTERNAL, "attention workspace");
  c.pos[0] = 3000, c.Hq = 0; /* no query heads: refused, not a division by zero */
  EXPECT_FAIL(fa_run(be, &c, a), TPD_ERR_INTERNAL, "attention: 0 query heads");
  fa_free(&c);
  free(a), free(b);
  tpd_backend_destroy(be);
}

/* rope_kv into a bf16 cache stores each rotated K and V element rounded to nearest even */
static void test_rope_kv_bf16(void) {
  const int Hq = 4, Hkv = 2, Dh = 64, bs = 16, T = 3, W = (Hq + 2 * Hkv) * Dh;
  int32_t pos[3] = {0, 17, 40}, slot[3] = {0, 0, 1}, table[6] = {5, 0, 3, 1, 4, 2};
  float qkv[3 * 8 * 64], orig[3 * 8 * 64];
  fill(qkv, (size_t)T * W, 2.0);
  memcpy(orig, qkv, sizeof qkv);
  uint16_t *kc = calloc(6 * (size_t)Hkv * bs * Dh, 2), *vc = calloc(6 * (size_t)Hkv * bs * Dh, 2);
  double f[32];
  for (int i = 0; i < Dh / 2; i++) f[i] = pow(10000.0, -2.0 * i / Dh);
  tpd_step_meta meta = {T, pos, slot, table, 3, bs, 41};
  tpd_rope_kv_args a = {&meta, Hq, Hkv, Dh, qkv, f, kc, vc};
  CHECK_OK(be_kv[1][2]->ops->rope_kv(be_kv[1][2], &a));
  int bad = 0, checked = 0;
  for (int t = 0; t < T; t++)
    for (int h = 0; h < 2 * Hkv; h++) {
      const int g = h % Hkv, blk = table[slot[t] * 3 + pos[t] / bs];
      const uint16_t *row = (h < Hkv ? kc : vc) + (((size_t)blk * Hkv + g) * bs + pos[t] % bs) * Dh;
      const float *src = qkv + (size_t)t * W + (size_t)(Hq + h) * Dh; /* the rotated f32 row the step keeps */
      for (int i = 0; i < Dh; i++, checked++) bad += row[i] != tpd_f32_to_bf16(src[i]);
      (void)orig;
    }
  CHECK(checked == T * 2 * Hkv * Dh && bad == 0, "rope_kv bf16: %d of %d cache elements not the rounded value", bad,
        checked);
  free(kc), free(vc);
}

/* kv_cache values: resolved, or one-line errors naming them */
static void test_kv_cache_option(void) {
  const struct { const char *backend, *value; tpd_dtype act; tpd_status want; tpd_dtype dt; } cases[] = {
      {"cpu", NULL, TPD_F32, TPD_OK, TPD_F32},       {"cpu", "auto", TPD_F32, TPD_OK, TPD_F32},
      {"cpu", "f32", TPD_F32, TPD_OK, TPD_F32},      {"cpu", "bf16", TPD_F32, TPD_OK, TPD_BF16},
      {"cpu", "bogus", TPD_F32, TPD_ERR_ARG, 0},     {"cuda", NULL, TPD_BF16, TPD_OK, TPD_BF16},
      {"cuda", "bf16", TPD_BF16, TPD_OK, TPD_BF16},  {"cuda", "f32", TPD_F32, TPD_OK, TPD_F32},
      {"cuda", "bf16", TPD_F32, TPD_ERR_UNSUPPORTED, 0}, {"cuda", "f32", TPD_BF16, TPD_ERR_UNSUPPORTED, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tpd_backend_opts o = {.n_threads = 1, .kv_cache = cases[i].value};
    tpd_dtype dt = TPD_DTYPE_COUNT;
    tpd_clear_error();
    const tpd_status st = tpd_backend_kv_cache(cases[i].backend, &o, cases[i].act, &dt);
    CHECK(st == cases[i].want && (st != TPD_OK || dt == cases[i].dt) &&
              (st == TPD_OK || (strstr(tpd_last_error(), cases[i].value) && !strchr(tpd_last_error(), '\n'))),
          "kv_cache %s on %s: %s (%s)", cases[i].value ? cases[i].value : "NULL", cases[i].backend,
          tpd_status_name(st), tpd_last_error());
  }
  tpd_backend_opts bad = {.n_threads = 1, .kv_cache = "bogus"};
  tpd_backend *be = NULL;
  EXPECT_FAIL(tpd_backend_create("cpu", &bad, &be), TPD_ERR_ARG, "'bogus'");
  CHECK(be == NULL && be_kv[1][0]->kv_dtype == TPD_BF16 && be_kv[0][0]->kv_dtype == TPD_F32, "kv_dtype per instance");
}

/* ---- the environment's CPU settings: checked at create, one line naming the bad one ---- */

/* Sets `var` to `value` (NULL: unset) and returns its old value (malloc'd, NULL when unset). */
static char *env_swap(const char *var, const char *value) {
  const char *old = getenv(var);
  char *saved = old ? strdup(old) : NULL;
  if (value) setenv(var, value, 1);
  else unsetenv(var);
  return saved;
}

static void env_restore(const char *var, char *saved) {
  if (saved) setenv(var, saved, 1);
  else unsetenv(var);
  free(saved);
}

static void test_env_settings(void) {
  const struct { const char *var, *value; int ok; } cases[] = {
      {"TPD_CPU_PREFETCH", "70000", 0},   {"TPD_CPU_PREFETCH", "65537", 0}, {"TPD_CPU_PREFETCH", "-1", 0},
      {"TPD_CPU_PREFETCH", "12abc", 0},   {"TPD_CPU_PREFETCH", " 64", 0},   {"TPD_CPU_PREFETCH", "0x40", 0},
      {"TPD_CPU_PREFETCH", "99999999999999999999999", 0}, {"TPD_CPU_PREFETCH", "-", 0},
      {"TPD_CPU_PREFETCH", "0", 1},       {"TPD_CPU_PREFETCH", "65536", 1}, {"TPD_CPU_PREFETCH", "", 1},
      {"TPD_CPU_PIN", "2", 0},            {"TPD_CPU_PIN", "-1", 0},         {"TPD_CPU_PIN", "1abc", 0},
      {"TPD_CPU_PIN", "yes", 0},          {"TPD_CPU_PIN", "0", 1},          {"TPD_CPU_PIN", "1", 1},
      {"TPD_CPU_BF16_DOT", "2", 0},       {"TPD_CPU_BF16_DOT", "-1", 0},    {"TPD_CPU_BF16_DOT", "12abc", 0},
      {"TPD_CPU_BF16_DOT", "on", 0},      {"TPD_CPU_BF16_DOT", "0", 1},
      {"TPD_CPU_ATT_BLOCKS", "2", 0},     {"TPD_CPU_ATT_BLOCKS", "yes", 0}, {"TPD_CPU_ATT_BLOCKS", "1x", 0},
      {"TPD_CPU_ATT_BLOCKS", "0", 1},     {"TPD_CPU_ATT_BLOCKS", "1", 1},
      {"TPD_POOL_SPIN_US", "1000001", 0}, {"TPD_POOL_SPIN_US", "-5", 0},    {"TPD_POOL_SPIN_US", "50us", 0},
      {"TPD_POOL_SPIN_US", "0", 1},       {"TPD_POOL_SPIN_US", "1000000", 1},
      {"TPD_CPU_ISA", "avx3", 0},         {"TPD_CPU_ISA", "AVX2", 0},       {"TPD_CPU_ISA", "scalar ", 0},
      {"TPD_CPU_ISA", "scalar", 1},       {"TPD_CPU_ISA", "avx512bf16", 1}, {"TPD_CPU_ISA", "amx", 1}, {"TPD_CPU_ISA", "", 1},
  };
  const int old_prefetch = tpd_cpu_prefetch(); /* put back at the end */
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *saved = env_swap(cases[i].var, cases[i].value);
    tpd_backend_opts o = {.n_threads = 2};
    tpd_backend *be = NULL;
    tpd_clear_error();
    const tpd_status st = tpd_backend_create("cpu", &o, &be);
    const char *msg = tpd_last_error();
    if (cases[i].ok)
      CHECK(st == TPD_OK && be, "%s=\"%s\" is accepted: %s (%s)", cases[i].var, cases[i].value, tpd_status_name(st),
            msg);
    else
      CHECK(st == TPD_ERR_ARG && !be && strstr(msg, cases[i].var) && strstr(msg, cases[i].value) &&
                strstr(msg, "need") && !strchr(msg, '\n'),
            "%s=\"%s\" must be a one-line TPD_ERR_ARG naming it: %s (%s)", cases[i].var, cases[i].value,
            tpd_status_name(st), msg);
    tpd_backend_destroy(be);
    env_restore(cases[i].var, saved); /* TPD_CPU_PIN=1: destroy gave this thread its CPUs back */
  }
  /* TPD_CPU_BF16_DOT=1 is taken where the kernels' level has AVX512-BF16 and refused, naming it and the
   * level, where nothing would do it: on this CPU as it is, and capped at avx2 */
  tpd_backend_opts o = {.n_threads = 1};
  tpd_backend *be = NULL;
  char *saved = env_swap("TPD_CPU_BF16_DOT", "1");
  for (int capped = 0; capped < 2; capped++) {
    char *saved_isa = env_swap("TPD_CPU_ISA", capped ? "avx2" : "");
    const tpd_isa best = tpd_isa_detect(), level = capped && TPD_ISA_AVX2 < best ? TPD_ISA_AVX2 : best;
    tpd_clear_error();
    const tpd_status st = tpd_backend_create("cpu", &o, &be);
    const char *msg = tpd_last_error();
    if (level >= TPD_ISA_AVX512BF16)
      CHECK(st == TPD_OK && be, "TPD_CPU_BF16_DOT=1 at level %s is accepted: %s (%s)", tpd_isa_name(level),
            tpd_status_name(st), msg);
    else
      CHECK(st == TPD_ERR_UNSUPPORTED && !be && strstr(msg, "TPD_CPU_BF16_DOT=1") && strstr(msg, tpd_isa_name(level)) &&
                strstr(msg, level < best ? "capped by TPD_CPU_ISA" : "this CPU's best") && !strchr(msg, '\n'),
            "TPD_CPU_BF16_DOT=1 at level %s must be refused in one line naming both: %s (%s)", tpd_isa_name(level),
            tpd_status_name(st), msg);
    tpd_backend_destroy(be);
    be = NULL;
    env_restore("TPD_CPU_ISA", saved_isa);
  }
  env_restore("TPD_CPU_BF16_DOT", saved);
  /* the message gives the range */
  saved = env_swap("TPD_CPU_PREFETCH", "70000");
  EXPECT_FAIL(tpd_backend_create("cpu", &o, &be), TPD_ERR_ARG,
              "TPD_CPU_PREFETCH=70000: need an integer in [0, 65536] (bytes)");
  /* the kernels read the value create accepted; read without a create, a bad value is the
   * default (with a warning) and the caller's error message stays */
  tpd_cpu_set_prefetch(-1);
  CHECK(tpd_cpu_prefetch() == TPD_CPU_PREFETCH_DEFAULT, "TPD_CPU_PREFETCH=70000 read by the kernels: %d",
        tpd_cpu_prefetch());
  CHECK(strstr(tpd_last_error(), "TPD_CPU_PREFETCH=70000") != NULL, "the caller's message was lost: '%s'",
        tpd_last_error());
  setenv("TPD_CPU_PREFETCH", "4096", 1);
  tpd_cpu_set_prefetch(-1);
  CHECK_OK(tpd_backend_create("cpu", &o, &be));
  CHECK(tpd_cpu_prefetch() == 4096, "TPD_CPU_PREFETCH=4096 accepted, the kernels read %d", tpd_cpu_prefetch());
  tpd_backend_destroy(be);
  /* a set distance is each stream's whatever the block; unset, 8192 bytes are shared among the block's streams */
  tpd_mm mm = {.pf = tpd_cpu_prefetch()};
  CHECK(tpd_mm_pf(&mm, 4) == 4096 && tpd_mm_pf(&mm, 2) == 4096 && tpd_mm_pf(&mm, 1) == 4096,
        "TPD_CPU_PREFETCH=4096: every stream 4096 bytes ahead, got %d %d %d", tpd_mm_pf(&mm, 4), tpd_mm_pf(&mm, 2),
        tpd_mm_pf(&mm, 1));
  unsetenv("TPD_CPU_PREFETCH");
  tpd_cpu_set_prefetch(-1);
  mm.pf = tpd_cpu_prefetch();
  CHECK(tpd_mm_pf(&mm, 4) == 2048 && tpd_mm_pf(&mm, 2) == 4096 && tpd_mm_pf(&mm, 1) == 8192 && tpd_mm_pf(&mm, 3) == 2688,
        "unset: 8192 bytes over 4, 2, 1, 3 streams in whole lines, got %d %d %d %d", tpd_mm_pf(&mm, 4),
        tpd_mm_pf(&mm, 2), tpd_mm_pf(&mm, 1), tpd_mm_pf(&mm, 3));
  mm.pf = 0;
  CHECK(tpd_mm_pf(&mm, 4) == 0, "TPD_CPU_PREFETCH=0 must stay off, got %d", tpd_mm_pf(&mm, 4));
  /* matmul shares (guided): whole panel pairs, never growing, the first the pairs over the threads, the
   * last a single pair, all of N covered once; one thread takes everything at once */
  for (int c = 0; c < 200; c++) {
    const int N = c < 3 ? (int[]){1, 32, 33}[c] : tu_int(1, 20000), nth = tu_int(1, 4), unit = 2 * TPD_PANEL;
    long n0 = 0, prev = 1L << 30;
    int shares = 0, ok = 1;
    const long first = tpd_mm_share(N, nth);
    while (n0 < N && shares <= N) {
      const long size = tpd_mm_share((int)(N - n0), nth);
      ok &= size >= unit && size % unit == 0 && size <= prev;
      if (N - n0 <= unit) ok &= size == unit;
      prev = size, n0 += size, shares++;
    }
    CHECK(ok && n0 - N < unit && n0 >= N && first == ((N + unit - 1) / unit + nth - 1) / nth * unit &&
              (nth > 1 || shares == 1),
          "matmul shares of N=%d over %d threads: %d shares ending at %ld (first %ld)", N, nth, shares, n0, first);
  }
  /* a share near INT_MAX does not wrap (the rule computes in long) */
  CHECK(tpd_mm_share(INT_MAX, 1) == ((long)INT_MAX + 2 * TPD_PANEL - 1) / (2 * TPD_PANEL) * (2 * TPD_PANEL) &&
            tpd_mm_share(INT_MAX - 40, 2) > 0,
        "matmul share near INT_MAX: %ld, %ld", tpd_mm_share(INT_MAX, 1), tpd_mm_share(INT_MAX - 40, 2));
  env_restore("TPD_CPU_PREFETCH", saved);
  /* The rate probe: without AVX512-BF16 it says 0 (and auto is f32); any real CPU's ratio lies well
   * inside (0.25, 8): vdpbf16ps does twice the FMA's work per lane, at most one issue per FMA issue, at
   * least a quarter of the FMA's issue rate (half on the Xeons measured).  What auto makes of it, with
   * and without TPD_CPU_BF16_DOT: test_activations_option. */
  const double speedup = tpd_cpu_bf16_dot_speedup();
  if (tpd_isa_detect() >= TPD_ISA_AVX512BF16)
    CHECK(speedup > 0.25 && speedup < 8, "vdpbf16ps / f32 FMA rate measured %g", speedup);
  else
    CHECK(speedup == 0, "no AVX512-BF16, yet the rate probe says %g", speedup);
  tpd_cpu_set_prefetch(old_prefetch);
  tpd_clear_error();
}

/* The cpu backend's activations option, per instance: "f32" and "bf16" whatever TPD_CPU_BF16_DOT
 * says, bf16 refused in one line naming the level where the kernels' level has no bf16 dot products
 * (this CPU's best, or capped at avx2), auto as TPD_CPU_BF16_DOT or the rate probe decide; an unknown
 * value is TPD_ERR_ARG naming it.  The reported kernels follow. */
static void test_activations_option(void) {
  const tpd_isa best = tpd_isa_detect();
  for (int capped = 0; capped < 2; capped++)
    for (int env = -1; env <= 1; env++) {
      char *saved_isa = env_swap("TPD_CPU_ISA", capped ? "avx2" : NULL);
      char *saved_dot = env_swap("TPD_CPU_BF16_DOT", env < 0 ? NULL : env ? "1" : "0");
      const tpd_isa level = capped && TPD_ISA_AVX2 < best ? TPD_ISA_AVX2 : best;
      const int has = level >= TPD_ISA_AVX512BF16;
      const char *values[] = {NULL, "auto", "f32", "bf16", "fp8", "BF16"};
      /* what the engine agrees across ranks with: the auto backend's choice, or its refusal */
      tpd_dtype auto_dt = TPD_DTYPE_COUNT;
      const tpd_status auto_st = tpd_backend_auto_activations("cpu", &auto_dt);
      for (int i = 0; i < 6; i++) {
        tpd_backend_opts o = {.n_threads = 1, .activations = values[i]};
        tpd_backend *be = NULL;
        tpd_clear_error();
        const tpd_status st = tpd_backend_create("cpu", &o, &be);
        const char *msg = tpd_last_error();
        if (i >= 4) {
          CHECK(st == TPD_ERR_ARG && !be && strstr(msg, values[i]) && !strchr(msg, '\n'),
                "activations '%s' must be a one-line TPD_ERR_ARG naming it: %s (%s)", values[i], tpd_status_name(st),
                msg);
        } else if ((i == 3 || (i < 2 && env == 1)) && !has) {
          /* asked for by the option or, for auto, by TPD_CPU_BF16_DOT=1 (f32 wins over the variable) */
          CHECK(st == TPD_ERR_UNSUPPORTED && !be && strstr(msg, i == 3 ? "'bf16'" : "TPD_CPU_BF16_DOT=1") &&
                    strstr(msg, tpd_isa_name(level)) && (!capped || strstr(msg, "capped by TPD_CPU_ISA")) &&
                    !strchr(msg, '\n'),
                "activations %s, TPD_CPU_BF16_DOT %d at level %s must be refused in one line naming both: %s (%s)",
                values[i] ? values[i] : "NULL", env, tpd_isa_name(level), tpd_status_name(st), msg);
          if (i == 0)
            CHECK(auto_st == TPD_ERR_UNSUPPORTED, "tpd_backend_auto_activations where create refuses: %s",
                  tpd_status_name(auto_st));
        } else {
          const int want = i == 3 || (i < 2 && has && (env < 0 ? tpd_cpu_bf16_dot_speedup() >= TPD_CPU_BF16_AUTO_MIN
                                                                 : env == 1));
          CHECK(st == TPD_OK && be && be->matmul_act_dtype == (want ? TPD_BF16 : TPD_F32),
                "activations %s, TPD_CPU_BF16_DOT %d, level %s: %s, matmul inputs %s, kernels %s (%s)",
                values[i] ? values[i] : "NULL", env, tpd_isa_name(level), tpd_status_name(st),
                be ? tpd_dtype_name(be->matmul_act_dtype) : "-", be ? be->kernels : "-", msg);
          if (i == 0)
            CHECK(auto_st == TPD_OK && auto_dt == (want ? TPD_BF16 : TPD_F32),
                  "tpd_backend_auto_activations: %s %s, the auto backend's matmul inputs %s", tpd_status_name(auto_st),
                  auto_dt < TPD_DTYPE_COUNT ? tpd_dtype_name(auto_dt) : "-", want ? "BF16" : "F32");
          if (be) {
            const int named = strstr(be->kernels, "-dot") || strstr(be->kernels, "amx-bf16");
            CHECK(named == want, "activations %s at level %s: kernels %s", values[i] ? values[i] : "NULL",
                  tpd_isa_name(level), be->kernels);
          }
        }
        tpd_backend_destroy(be);
      }
      env_restore("TPD_CPU_BF16_DOT", saved_dot);
      env_restore("TPD_CPU_ISA", saved_isa);
    }
  tpd_clear_error();
}

/* Whether Linux has granted this process the AMX tile data (arch_prctl
 * ARCH_GET_XCOMP_PERM, feature 18); -1 where that cannot be asked. */
static int amx_granted(void) {
#if defined(__x86_64__) && defined(__linux__)
  unsigned long features = 0;
  if (syscall(SYS_arch_prctl, 0x1022 /* ARCH_GET_XCOMP_PERM */, &features) != 0) return -1;
  return (int)(features >> 18 & 1);
#else
  return -1;
#endif
}

/* TPD_CPU_PIN=1: thread i of every pool runs on the i-th CPU the process
 * started with, also in a pool created on a thread an earlier pool pinned
 * (it once took that thread's one CPU for the set and put all its threads
 * there); destroying a pool puts its creator's CPUs back. */
typedef struct {
  int count[2], cpu[2];
} pin_seen;

static void record_pin(void *arg, int ith, int nth) {
  pin_seen *ps = arg;
  cpu_set_t s;
  (void)nth;
  if (ith > 1 || pthread_getaffinity_np(pthread_self(), sizeof s, &s) != 0) return;
  ps->count[ith] = CPU_COUNT(&s);
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &s)) {
      ps->cpu[ith] = c;
      break;
    }
}

static cpu_set_t main_cpus; /* this thread's CPUs when main began */
static int main_cpus_ok;

static void test_pool_pinning(void) {
  cpu_set_t start;
  if (!main_cpus_ok || sched_getaffinity(0, sizeof start, &start) != 0) return;
  /* the TPD_CPU_PIN=1 backends of test_env_settings were destroyed on this thread */
  CHECK(CPU_EQUAL(&start, &main_cpus), "pool pinning: this thread has %d CPU(s) after pinned backends were destroyed, not its %d",
        CPU_COUNT(&start), CPU_COUNT(&main_cpus));
  start = main_cpus;
  sched_setaffinity(0, sizeof start, &start);
  if (CPU_COUNT(&start) < 2) {
    printf("pool pinning: skipped (fewer than 2 CPUs allowed)\n");
    return;
  }
  int first = -1, second = -1;
  for (int c = 0; c < CPU_SETSIZE && second < 0; c++)
    if (CPU_ISSET(c, &start)) {
      if (first < 0) first = c;
      else second = c;
    }
  char *saved = env_swap("TPD_CPU_PIN", "1");
  tpd_pool *a = tpd_pool_create(2), *b = tpd_pool_create(2);
  CHECK(a && b, "pool pinning: pools not created");
  for (int k = 0; a && b && k < 2; k++) {
    pin_seen ps = {{-1, -1}, {-1, -1}};
    tpd_pool_run(k ? b : a, record_pin, &ps);
    CHECK(ps.count[0] == 1 && ps.count[1] == 1 && ps.cpu[0] == first && ps.cpu[1] == second,
          "pool pinning: pool %d's threads on %d CPU(s) from %d and %d CPU(s) from %d; want one each, %d and %d",
          k + 1, ps.count[0], ps.cpu[0], ps.count[1], ps.cpu[1], first, second);
  }
  tpd_pool_destroy(b);
  tpd_pool_destroy(a);
  env_restore("TPD_CPU_PIN", saved);
  cpu_set_t now;
  CHECK(sched_getaffinity(0, sizeof now, &now) == 0 && CPU_EQUAL(&now, &start),
        "pool pinning: the creating thread has %d CPU(s) after the pools were destroyed, not its %d", CPU_COUNT(&now),
        CPU_COUNT(&start));
  sched_setaffinity(0, sizeof start, &start);
}

int main(void) {
  main_cpus_ok = sched_getaffinity(0, sizeof main_cpus, &main_cpus) == 0;
  tu_seed("test_kernels");
  tpd_backend_opts o1 = {.n_threads = 1, .activations = "f32"}, o3 = {.n_threads = 3, .activations = "f32"};
  CHECK_OK(tpd_backend_create("cpu", &o1, &be1));
  CHECK_OK(tpd_backend_create("cpu", &o3, &be3));
  if (!be1 || !be3) return 1;
  if (tpd_isa_active() >= TPD_ISA_AVX512BF16) { /* the CPU's level, or TPD_CPU_ISA's cap */
    o1.activations = o3.activations = "bf16";
    CHECK_OK(tpd_backend_create("cpu", &o1, &be1_bf16));
    CHECK_OK(tpd_backend_create("cpu", &o3, &be3_bf16));
    if (!be1_bf16 || !be3_bf16) return 1;
  }
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 3; i++) {
      tpd_backend_opts o = {.n_threads = i + 1, .kv_cache = k ? "bf16" : "f32"};
      CHECK_OK(tpd_backend_create("cpu", &o, &be_kv[k][i]));
      if (!be_kv[k][i]) return 1;
    }
  /* the tile grant is asked only when the AMX path is chosen: not by detection or by backends without it */
  CHECK(amx_granted() <= 0, "AMX tile data granted before any AMX kernel ran (%s)", tpd_isa_name(tpd_isa_detect()));
  test_dtypes();
  test_kv_cache_option();
  test_env_settings();
  test_activations_option();
  test_pool_pinning();
  const tpd_isa best = tpd_isa_detect();
  for (int isa = TPD_ISA_SCALAR; isa <= (int)best; isa++) {
    tpd_isa_force((tpd_isa)isa);
    printf("kernels at %s\n", tpd_isa_name(tpd_isa_active()));
    test_matmul();
    if (isa >= TPD_ISA_AVX512BF16 && be1_bf16) { /* vdpbf16ps, or AMX tiles */
      printf("kernels at %s, bf16 activations\n", tpd_isa_name(tpd_isa_active()));
      tpd_backend *f1 = be1, *f3 = be3;
      be1 = be1_bf16, be3 = be3_bf16, g_dot = 1;
      test_matmul();
      be1 = f1, be3 = f3, g_dot = 0;
      if (isa == TPD_ISA_AMX)
        CHECK(amx_granted() != 0, "the AMX path ran without the tile grant (arch_prctl reports %d)", amx_granted());
    }
    for (int rep = 0; rep < 20; rep++) {
      test_rmsnorm();
      test_rope_kv();
      test_attention();
      test_small_ops();
    }
    test_attention_flash();
    test_attention_workspace();
    test_rope_kv_bf16();
  }
  for (int rep = 0; rep < 5; rep++) test_logit_stats();
  test_sampler();
  test_kv_pool();
  tpd_backend_destroy(be1);
  tpd_backend_destroy(be3);
  tpd_backend_destroy(be1_bf16);
  tpd_backend_destroy(be3_bf16);
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 3; i++) tpd_backend_destroy(be_kv[k][i]);
  return tu_finish("test_kernels");
}
