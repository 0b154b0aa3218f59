/* The speed-of-light model (launch/tools/sol.c) against numbers it does not make
 * itself:
 *   - the engine: random small checkpoints are written, loaded at every TP
 *     degree and rank the shard plan allows, and the floor's memory time
 *     must equal (the bytes the largest rank's engine holds + the KV bytes
 *     per token it reports x tokens read + the embedding rows) / bandwidth;
 *   - a recount on random shapes: the checkpoint's tensors enumerated one
 *     by one, split rank by rank as the shard plan splits them, the ring
 *     all-reduce walked step by step;
 *   - the published parameter counts of Llama 3.2 1B, 3.1 8B and 3.1 70B;
 *   - one small case worked by hand (every term);
 *   - tpd_sol_check: a measurement faster than the floor is a fault. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "launch/tools/sol.h"
#include "launch/tools/synth.h"
#include "runtime/base/dtype.h"
#include "runtime/engine/tpdecode.h"

/* relative tolerance: the model and the recount add the same terms in a different order */
static int near_rel(double a, double b, double rel) {
  return isfinite(a) && isfinite(b) && fabs(a - b) <= rel * fmax(fabs(a), fabs(b));
}
#define NEAR(a, b) CHECK(near_rel((a), (b), 1e-12), "%.17g vs %.17g", (double)(a), (double)(b))
#define NEAR9(a, b) CHECK(near_rel((a), (b), 1e-9), "%.17g vs %.17g", (double)(a), (double)(b))

/* ------------------------------------------------------------------ */
/* a communicator for engine creation only (rank r of n; nothing is sent;
 * the one collective create makes, the agreement, echoes this rank) */

static void f_destroy(tpd_comm *c) { free(c); }
static tpd_status f_unused(void) { return TPD_FAIL(TPD_ERR_COMM, "test communicator: no collectives here"); }
static tpd_status f_allreduce(tpd_comm *c, void *b, size_t n, tpd_dtype dt, void *s) {
  (void)c, (void)b, (void)n, (void)dt, (void)s;
  return f_unused();
}
static tpd_status f_start(tpd_comm *c, void *b, size_t n, tpd_dtype dt, void *s, tpd_comm_req *r) {
  (void)c, (void)b, (void)n, (void)dt, (void)s, (void)r;
  return f_unused();
}
static tpd_status f_wait(tpd_comm *c, tpd_comm_req *r) {
  (void)c, (void)r;
  return f_unused();
}
static tpd_status f_allgather(tpd_comm *c, const void *a, void *b, size_t n, void *s) {
  (void)c, (void)a, (void)b, (void)n, (void)s;
  return f_unused();
}
static tpd_status f_broadcast(tpd_comm *c, void *b, size_t n, int root, void *s) {
  (void)c, (void)b, (void)n, (void)root, (void)s;
  return f_unused();
}
/* the engine's create agrees on its status: every (absent) rank is taken to report what this one does */
static tpd_status f_host_allgather(tpd_comm *c, const void *a, void *b, size_t n) {
  for (int r = 0; r < c->size; r++) memcpy((char *)b + (size_t)r * n, a, n);
  return TPD_OK;
}
static tpd_status f_host_broadcast(tpd_comm *c, void *b, size_t n, int root) {
  (void)c, (void)b, (void)n, (void)root;
  return f_unused();
}
static tpd_status f_barrier(tpd_comm *c) {
  (void)c;
  return f_unused();
}
static void f_abort(tpd_comm *c, int code) {
  (void)c;
  exit(code);
}
static const tpd_comm_ops fake_ops = {"fake", 0, f_destroy, f_allreduce, f_start, f_wait, f_allgather,
                                      f_broadcast, f_host_allgather, f_host_broadcast, f_barrier, f_abort, NULL};

static tpd_comm *fake(int rank, int size) {
  tpd_comm *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->ops = &fake_ops;
  c->rank = rank, c->size = size, c->local_rank = rank, c->local_size = size;
  return c;
}

/* the shard plan's rules for which TP degrees a shape allows */
static int tp_ok(int hq, int hkv, int ffn, int vocab, int tp) {
  if (hq % tp || (hkv % tp && tp % hkv) || ffn < tp || vocab < tp) return 0;
  const int chunk = (vocab + tp - 1) / tp;
  return (long)(tp - 1) * chunk < vocab;
}

/* ------------------------------------------------------------------ */
/* 1. the floor's bytes against the engine's own count                   */

static void against_engine(const char *root, int trial) {
  tpd_synth_spec s;
  memset(&s, 0, sizeof s);
  s.arch = "llama";
  s.n_kv_heads = 1 << tu_int(0, 2);
  s.n_heads = s.n_kv_heads * tu_int(1, 3);
  s.head_dim = 8 * tu_int(1, 3);
  s.dim = 32 * tu_int(1, 3);
  s.n_layers = tu_int(1, 3);
  s.ffn_dim = tu_int(24, 200);  /* odd widths too: uneven FFN shards */
  s.vocab = tu_int(40, 700);    /* and uneven vocab shards */
  s.max_pos = 64;
  s.rope_theta = 10000.0;
  static const tpd_dtype dts[] = {TPD_F32, TPD_BF16, TPD_F16};
  s.dtype = dts[tu_int(0, 2)];
  s.seed = (unsigned long long)tu_int(1, 1 << 30);
  s.n_shards = 1;
  char dir[512];
  snprintf(dir, sizeof dir, "%s/m%d", root, trial);
  if (tpd_synth_write(&s, dir) != TPD_OK) {
    CHECK(0, "cannot write a random checkpoint: %s", tpd_last_error());
    tpd_clear_error();
    return;
  }
  const int B = tu_int(1, 9);
  const double C = tu_int(0, 3000) + tu_uniform(0, 1); /* mean positions read (the bench's ctx_attended) */
  tpd_sol_hw hw;
  memset(&hw, 0, sizeof hw);
  snprintf(hw.name, sizeof hw.name, "random");
  hw.mem_bw = tu_uniform(1e9, 5e12);
  hw.peak_flops = 1e30; /* memory-bound: the step is the bytes' time plus the all-reduces */
  hw.link_bw = tu_uniform(1e9, 1e12);
  hw.link_alpha = tu_uniform(0, 5e-6);
  int tested = 0;
  for (int tp = 1; tp <= 8; tp++) {
    if (!tp_ok(s.n_heads, s.n_kv_heads, s.ffn_dim, s.vocab, tp)) continue;
    double max_w = -1, kv_tok = -1, emb_row = -1;
    tpd_dtype wdt = TPD_F32, kvdt = TPD_F32;
    int ok = 1;
    tpd_model_config cfg;
    for (int r = 0; r < tp && ok; r++) {
      tpd_comm *c = fake(r, tp);
      tpd_engine *e = NULL;
      tpd_engine_opts eo = {TPD_ENGINE_OPTS_INIT, .model_dir = dir, .backend = "cpu", .n_threads = 1, .max_seqs = 1, .max_ctx = 16,
                            .device = -1};
      if (!c || tpd_engine_create(&eo, c, &e) != TPD_OK) {
        CHECK(0, "engine tp %d rank %d on %s: %s", tp, r, dir, tpd_last_error());
        tpd_clear_error();
        ok = 0;
      } else {
        tpd_engine_info info;
        tpd_engine_get_info(e, &info);
        if (info.weight_bytes > max_w) max_w = info.weight_bytes;
        /* every rank holds the same number of KV heads and reads the same embedding rows */
        if (r) CHECK(info.kv_bytes_per_token == kv_tok && info.embed_row_bytes == emb_row, "tp %d rank %d", tp, r);
        kv_tok = info.kv_bytes_per_token, emb_row = info.embed_row_bytes, wdt = info.weight_dtype, kvdt = info.kv_dtype;
        cfg = *tpd_engine_config(e);
        tpd_engine_destroy(e);
      }
      if (c) c->ops->destroy(c);
    }
    if (!ok) continue;
    /* the CPU engine: norms f32, KV in its dtype (auto: bf16 for a bf16 model), all-reduce in f32; embedding rows as stored */
    CHECK(kvdt == (wdt == TPD_BF16 ? TPD_BF16 : TPD_F32), "tp %d: a %s KV cache for %s weights", tp,
          tpd_dtype_name(kvdt), tpd_dtype_name(wdt));
    tpd_sol_model m;
    tpd_sol_model_from_config(&cfg, (double)tpd_dtype_size(wdt), 4.0, emb_row / cfg.dim, (double)tpd_dtype_size(kvdt), 4.0,
                              &m);
    tpd_sol_result r;
    CHECK(tpd_sol_eval(&m, &hw, tp, B, C, &r) == TPD_OK, "tp %d: %s", tp, tpd_last_error());
    const double bytes = max_w + B * C * kv_tok + B * emb_row;
    NEAR9(r.weight_bytes, max_w);
    NEAR9(r.bytes, bytes);
    NEAR9(r.t_mem, bytes / hw.mem_bw);
    CHECK(!r.compute_bound);
    /* the all-reduces: 2 per layer of B D f32, ring over tp ranks */
    const double m_bytes = (double)B * cfg.dim * 4;
    const double t_ar = tp > 1 ? 2.0 * (tp - 1) * (hw.link_alpha + m_bytes / tp / hw.link_bw) : 0;
    NEAR9(r.t_step, bytes / hw.mem_bw + 2.0 * cfg.n_layers * t_ar);
    tested++;
  }
  CHECK(tested >= 1, "no TP degree tested");
}

/* ------------------------------------------------------------------ */
/* 2. a recount: tensors one by one, split rank by rank                 */

typedef enum { REPL, BY_QHEAD, BY_KVHEAD, BY_FFN, BY_VOCAB } split_kind;

/* rows (or columns) of a tensor dimension that rank k of tp holds */
static double share(split_kind how, int n, int hq, int hkv, int dh, int tp, int k) {
  switch (how) {
    case REPL: return n;
    case BY_QHEAD: return (double)(hq / tp) * dh;
    case BY_KVHEAD: return (double)(hkv >= tp ? hkv / tp : 1) * dh;
    case BY_FFN: { /* contiguous, as even as integer division makes them */
      long b = 0, e = 0;
      for (int j = 0; j <= k; j++) b = e, e = (long)n * (j + 1) / tp;
      return (double)(e - b);
    }
    case BY_VOCAB: { /* chunks of ceil(n / tp), the last one short */
      const int ch = (n + tp - 1) / tp;
      const int b = k * ch, e = (k + 1) * ch < n ? (k + 1) * ch : n;
      return e > b ? e - b : 0;
    }
  }
  return NAN;
}

static void recount(void) {
  for (int trial = 0; trial < 400; trial++) {
    tpd_sol_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "random");
    m.n_kv_heads = 1 << tu_int(0, 4);
    m.n_heads = m.n_kv_heads * (1 << tu_int(0, 3));
    m.head_dim = 1 << tu_int(3, 8);
    m.dim = tu_int(8, 16384);
    m.n_layers = tu_int(1, 96);
    m.ffn_dim = tu_int(16, 60000);
    m.vocab = tu_int(16, 260000);
    static const double el[] = {1, 2, 4};
    m.w_elem = el[tu_int(0, 2)], m.norm_elem = el[tu_int(0, 2)], m.emb_elem = el[tu_int(0, 2)];
    m.kv_elem = el[tu_int(0, 2)], m.act_elem = el[tu_int(0, 2)];
    int tp;
    do tp = tu_int(1, 16);
    while (!tp_ok(m.n_heads, m.n_kv_heads, m.ffn_dim, m.vocab, tp));
    const int B = tu_int(1, 512);
    const double C = tu_uniform(0, 1 << 17);
    tpd_sol_hw hw;
    memset(&hw, 0, sizeof hw);
    snprintf(hw.name, sizeof hw.name, "random");
    hw.mem_bw = tu_uniform(1e9, 1e13), hw.peak_flops = tu_uniform(1e10, 1e16);
    hw.link_bw = tu_uniform(1e8, 1e12), hw.link_alpha = tu_uniform(0, 1e-5);
    hw.power_w = tu_int(0, 1) ? tu_uniform(50, 1000) : 0;

    const int D = m.dim, L = m.n_layers, hq = m.n_heads, hkv = m.n_kv_heads, dh = m.head_dim;
    /* the checkpoint's projection tensors per layer, [out rows, in cols], and how TP splits each */
    const struct {
      int rows, cols;
      split_kind rs, cs;
    } t[] = {
        {hq * dh, D, BY_QHEAD, REPL},        /* q_proj: column-parallel */
        {hkv * dh, D, BY_KVHEAD, REPL},      /* k_proj */
        {hkv * dh, D, BY_KVHEAD, REPL},      /* v_proj */
        {D, hq * dh, REPL, BY_QHEAD},        /* o_proj: row-parallel */
        {m.ffn_dim, D, BY_FFN, REPL},        /* gate_proj */
        {m.ffn_dim, D, BY_FFN, REPL},        /* up_proj */
        {D, m.ffn_dim, REPL, BY_FFN},        /* down_proj */
    };
    double worst_elems = -1;
    for (int k = 0; k < tp; k++) {
      double e = 0;
      for (int l = 0; l < L; l++)
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
          e += share(t[i].rs, t[i].rows, hq, hkv, dh, tp, k) * share(t[i].cs, t[i].cols, hq, hkv, dh, tp, k);
      e += share(BY_VOCAB, m.vocab, hq, hkv, dh, tp, k) * D; /* lm_head, vocab-parallel */
      if (e > worst_elems) worst_elems = e;
    }
    const double norms = (2.0 * L + 1) * D; /* two per layer and the final one, replicated */
    const double w_bytes = worst_elems * m.w_elem + norms * m.norm_elem;
    const double kv = (double)B * C * L * 2 * share(BY_KVHEAD, 0, hq, hkv, dh, tp, 0) * m.kv_elem;
    const double act = (double)B * D * m.emb_elem;
    const double bytes = w_bytes + kv + act;
    const double flops = 2.0 * B * worst_elems + (double)B * C * L * share(BY_QHEAD, 0, hq, hkv, dh, tp, 0) * 2 * 2;
    /* ring all-reduce, walked: reduce-scatter then all-gather, tp - 1 steps each,
     * every rank sending one of tp chunks per step */
    double t_ar = 0;
    for (int phase = 0; phase < 2 && tp > 1; phase++)
      for (int step = 0; step < tp - 1; step++) t_ar += hw.link_alpha + (double)B * D * m.act_elem / tp / hw.link_bw;
    const double t_comm = 2.0 * L * t_ar;
    const double t_step = fmax(bytes / hw.mem_bw, flops / hw.peak_flops) + t_comm;

    tpd_sol_result r;
    CHECK(tpd_sol_eval(&m, &hw, tp, B, C, &r) == TPD_OK, "trial %d: %s", trial, tpd_last_error());
    NEAR9(r.weight_elems, worst_elems);
    NEAR9(r.weight_bytes, w_bytes);
    NEAR9(r.kv_bytes, kv);
    NEAR9(r.bytes, bytes);
    NEAR9(r.flops, flops);
    NEAR9(r.t_comm, t_comm);
    NEAR9(r.t_step, t_step);
    CHECK(r.compute_bound == (flops / hw.peak_flops > bytes / hw.mem_bw), "trial %d", trial);
    NEAR9(r.tok_s_user, 1 / t_step);
    NEAR9(r.tok_s_system, B / t_step);
    NEAR9(r.tok_s_rank, B / t_step / tp);
    if (hw.power_w > 0) {
      NEAR9(r.tok_s_per_w, B / t_step / (tp * hw.power_w));
      NEAR9(r.j_per_token, tp * hw.power_w * t_step / B);
    } else {
      CHECK(r.tok_s_per_w == 0 && r.j_per_token == 0);
    }
    if (tu_failures) {
      fprintf(stderr, "recount trial %d: D %d L %d Hq %d Hkv %d Dh %d F %d V %d tp %d B %d C %g\n", trial, D, L, hq,
              hkv, dh, m.ffn_dim, m.vocab, tp, B, C);
      return;
    }
  }
}

/* ------------------------------------------------------------------ */
/* 3. the presets' shapes against the published parameter counts         */

static void published(void) {
  /* Llama 3.2 1B (tied embeddings): 1 235 814 400; Llama 3.1 8B: 8 030 261 248;
   * Llama 3.1 70B: 70 553 706 496 (the totals of the released checkpoints) */
  const struct {
    const char *name;
    int tied;
    double params;
  } p[] = {{"1b", 1, 1235814400.0}, {"8b", 0, 8030261248.0}, {"70b", 0, 70553706496.0}};
  tpd_sol_hw hw;
  CHECK(tpd_sol_hw_preset("h200", &hw) == TPD_OK);
  for (int i = 0; i < 3; i++) {
    tpd_sol_model m;
    CHECK(tpd_sol_model_preset(p[i].name, &m) == TPD_OK);
    tpd_sol_result r;
    hw.mem_bytes = 0;
    CHECK(tpd_sol_eval(&m, &hw, 1, 1, 0, &r) == TPD_OK);
    /* bf16 weights and norms: weight_bytes / 2 = projections + lm_head + norms; an untied
     * embedding table is one more V x D */
    const double params = r.weight_bytes / 2 + (p[i].tied ? 0 : (double)m.vocab * m.dim);
    CHECK(params == p[i].params, "%s: %.0f parameters, published %.0f", p[i].name, params, p[i].params);
  }
  tpd_sol_model m;
  CHECK(tpd_sol_model_preset("13b", &m) == TPD_ERR_ARG);
  CHECK(tpd_sol_hw_preset("b200", &hw) == TPD_ERR_ARG);
  tpd_clear_error();
}

/* ------------------------------------------------------------------ */
/* 4. one case by hand                                                   */

/* The tiny preset's shape: D 64, L 2, Hq 4, Hkv 2, Dh 16, F 172, V 512;
 * bf16 weights and embedding (2), f32 norms, KV and activations (4);
 * 1 GB/s, 1 GFLOP/s, 1 GB/s link, 1 us per hop, 100 W; TP 2, B 4, C 10. */
static void by_hand(void) {
  tpd_sol_model m;
  memset(&m, 0, sizeof m);
  m.dim = 64, m.n_layers = 2, m.n_heads = 4, m.n_kv_heads = 2, m.head_dim = 16, m.ffn_dim = 172, m.vocab = 512;
  m.w_elem = 2, m.norm_elem = 4, m.emb_elem = 2, m.kv_elem = 4, m.act_elem = 4;
  tpd_sol_hw h;
  memset(&h, 0, sizeof h);
  h.mem_bw = 1e9, h.peak_flops = 1e9, h.link_bw = 1e9, h.link_alpha = 1e-6, h.power_w = 100;
  tpd_sol_result r;
  CHECK(tpd_sol_eval(&m, &h, 2, 4, 10, &r) == TPD_OK);
  /* per rank: Hq_r 2, Hkv_r 1, F_r 86, V_r 256 */
  CHECK(r.q_heads_r == 2 && r.kv_heads_r == 1 && r.ffn_r == 86 && r.vocab_r == 256);
  /* P_r = 2 (64*(2+2)*16 + 2*16*64 + 3*64*86) + 256*64 = 2 (4096 + 2048 + 16512) + 16384 = 61696 */
  NEAR(r.weight_elems, 61696);
  /* weights = 61696*2 + (2*2+1)*64*4 = 123392 + 1280 = 124672; KV = 4*10*2*2*1*16*4 = 10240; act = 4*64*2 */
  NEAR(r.weight_bytes, 124672);
  NEAR(r.kv_bytes, 10240);
  NEAR(r.act_bytes, 512);
  /* flops = 2*4*61696 + 4*4*10*2*2*16 = 493568 + 10240: compute bound at 1 GFLOP/s */
  NEAR(r.flops, 503808);
  CHECK(r.compute_bound);
  /* all-reduce: m = 4*64*4 = 1024 B, 2 hops: 2 us + 1024 B / 1 GB/s = 3.024 us; 4 of them */
  NEAR(r.t_ar, 3.024e-6);
  NEAR(r.t_step, 503.808e-6 + 4 * 3.024e-6);
  NEAR(r.j_per_token, 200 * 515.904e-6 / 4);
  /* an uneven split: F 171 over 2 ranks is 85 + 86, V 511 is 256 + 255; the
   * slowest rank holds the 86 FFN columns and 255 vocab rows:
   * 2 (4096 + 2048 + 3*64*86) + 255*64 = 45312 + 16320 = 61632 (not 61696) */
  m.ffn_dim = 171, m.vocab = 511;
  CHECK(tpd_sol_eval(&m, &h, 2, 4, 10, &r) == TPD_OK);
  NEAR(r.weight_elems, 61632);
  CHECK(r.ffn_r == 86 && r.vocab_r == 255, "ffn_r %d vocab_r %d", r.ffn_r, r.vocab_r);
  /* refused as the shard plan refuses: 3 heads of 4, KV 2 vs TP 3, vocab 5 over 4 ranks (2+2+1+0) */
  CHECK(tpd_sol_eval(&m, &h, 3, 1, 0, &r) == TPD_ERR_ARG);
  m.vocab = 5;
  CHECK(tpd_sol_eval(&m, &h, 4, 1, 0, &r) == TPD_ERR_ARG);
  m.vocab = 511;
  CHECK(tpd_sol_eval(&m, &h, 0, 1, 0, &r) == TPD_ERR_ARG);
  CHECK(tpd_sol_eval(&m, &h, 1, 0, 0, &r) == TPD_ERR_ARG);
  CHECK(tpd_sol_eval(&m, &h, 1, 1, -1, &r) == TPD_ERR_ARG);
  CHECK(tpd_sol_eval(&m, &h, 1, 1, NAN, &r) == TPD_ERR_ARG);
  tpd_clear_error();
  /* capacity: 70B in bf16 does not fit one 80 GiB H100, fits 8 */
  tpd_sol_model big;
  tpd_sol_hw h100;
  CHECK(tpd_sol_model_preset("70b", &big) == TPD_OK && tpd_sol_hw_preset("h100", &h100) == TPD_OK);
  CHECK(tpd_sol_eval(&big, &h100, 1, 1, 1024, &r) == TPD_OK && !r.fits);
  CHECK(tpd_sol_eval(&big, &h100, 8, 1, 1024, &r) == TPD_OK && r.fits);
}

/* ------------------------------------------------------------------ */
/* 5. measured against the floor                                         */

static void check_fn(void) {
  tpd_sol_model m;
  tpd_sol_hw hw;
  CHECK(tpd_sol_model_preset("8b", &m) == TPD_OK && tpd_sol_hw_preset("h200", &hw) == TPD_OK);
  tpd_sol_result r;
  CHECK(tpd_sol_eval(&m, &hw, 1, 1, 1024, &r) == TPD_OK);
  char fault[200];
  /* slower than the floor: sound */
  double q = tpd_sol_check(&hw, &r, 1.3 * r.t_step, fault, sizeof fault);
  CHECK(near_rel(q, 1.3, 1e-12) && fault[0] == 0, "ratio %g fault '%s'", q, fault);
  q = tpd_sol_check(&hw, &r, r.t_step, fault, sizeof fault);
  CHECK(near_rel(q, 1.0, 1e-12) && fault[0] == 0, "ratio %g fault '%s'", q, fault);
  /* faster than the floor, datasheet hardware: the figures are too low */
  q = tpd_sol_check(&hw, &r, 0.75 * r.t_step, fault, sizeof fault);
  CHECK(near_rel(q, 0.75, 1e-12), "ratio %g", q);
  CHECK(!strncmp(fault, "measured faster than floor: hardware figures too low", 52), "'%s'", fault);
  CHECK(strstr(fault, "memory bandwidth") != NULL, "'%s'", fault); /* memory-bound */
  /* measured hardware: the probe read too low */
  snprintf(hw.source, sizeof hw.source, "measured");
  q = tpd_sol_check(&hw, &r, 0.999 * r.t_step, fault, sizeof fault);
  CHECK(q < 1 && !strncmp(fault, "measured faster than floor: probe too low", 41), "'%s'", fault);
  CHECK(strstr(fault, "memory read probe") != NULL && strchr(fault, ',') == NULL, "'%s'", fault); /* CSV-safe */
  /* nonsense measurements are faults, never ratios */
  q = tpd_sol_check(&hw, &r, NAN, fault, sizeof fault);
  CHECK(isnan(q) && fault[0], "NaN measured: ratio %g, fault '%s'", q, fault);
  q = tpd_sol_check(&hw, &r, 0, fault, sizeof fault);
  CHECK(isnan(q) && fault[0], "zero measured: ratio %g, fault '%s'", q, fault);
  tpd_sol_result bad = r;
  bad.t_step = 0;
  q = tpd_sol_check(&hw, &bad, 1e-3, fault, sizeof fault);
  CHECK(isnan(q) && fault[0], "zero floor: ratio %g, fault '%s'", q, fault);
}

int main(void) {
  tu_seed("test_sol");
  char root[] = "/tmp/tpd-sol-XXXXXX";
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  for (int t = 0; t < 6; t++) against_engine(root, t);
  recount();
  published();
  by_hand();
  check_fn();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
  return tu_finish("test_sol");
}
