/* Speed-of-light arithmetic against hand-computed cases (runtime/sol.c).
 * Every expected number below is worked out in the comment above it. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "runtime/sol.h"

/* relative tolerance 1e-12: the model is a handful of double operations */
#define NEAR(a, b)                                                                                            \
  do {                                                                                                        \
    const double a_ = (a), b_ = (b);                                                                          \
    if (!(fabs(a_ - b_) <= 1e-12 * fmax(fabs(a_), fabs(b_)))) {                                               \
      fprintf(stderr, "%s:%d: %s = %.17g, expected %.17g\n", __FILE__, __LINE__, #a, a_, b_);                 \
      tu_failures++;                                                                                             \
    }                                                                                                         \
  } while (0)

/* The tiny preset's shape: D 64, L 2, Hq 4, Hkv 2, Dh 16, F 172, V 512;
 * bf16 weights and embedding (2), f32 norms, KV and activations (4). */
static tpd_sol_model tiny(void) {
  tpd_sol_model m;
  memset(&m, 0, sizeof m);
  snprintf(m.name, sizeof m.name, "tiny");
  m.dim = 64, m.n_layers = 2, m.n_heads = 4, m.n_kv_heads = 2, m.head_dim = 16, m.ffn_dim = 172, m.vocab = 512;
  m.w_elem = 2, m.norm_elem = 4, m.emb_elem = 2, m.kv_elem = 4, m.act_elem = 4;
  return m;
}

/* Round numbers: 1 GB/s, 1 GFLOP/s, 1 GB/s link, 1 us per hop, 100 W. */
static tpd_sol_hw unit_hw(void) {
  tpd_sol_hw h;
  memset(&h, 0, sizeof h);
  snprintf(h.name, sizeof h.name, "unit");
  h.mem_bw = 1e9, h.peak_flops = 1e9, h.link_bw = 1e9, h.link_alpha = 1e-6, h.power_w = 100;
  return h;
}

static void tiny_tp2(void) {
  const tpd_sol_model m = tiny();
  const tpd_sol_hw h = unit_hw();
  tpd_sol_result r;
  CHECK(tpd_sol_eval(&m, &h, 2, 4, 10, &r) == TPD_OK);
  /* per rank: Hq_r 2, Hkv_r 1, F_r 86, V_r 256 */
  CHECK(r.q_heads_r == 2 && r.kv_heads_r == 1 && r.ffn_r == 86 && r.vocab_r == 256);
  /* P_r = 2 (64*(2+2)*16 + 2*16*64 + 3*64*86) + 256*64 = 2 (4096 + 2048 + 16512) + 16384 = 61696 */
  NEAR(r.weight_elems, 61696);
  /* weights = 61696*2 + (2*2+1)*64*4 = 123392 + 1280 = 124672 */
  NEAR(r.weight_bytes, 124672);
  /* KV = B C 2 L Hkv_r Dh k = 4*10*2*2*1*16*4 = 10240; act = 4*64*2 = 512 */
  NEAR(r.kv_bytes, 10240);
  NEAR(r.act_bytes, 512);
  NEAR(r.bytes, 135424);
  /* flops = 2*4*61696 + 4*4*10*2*2*16 = 493568 + 10240 = 503808 */
  NEAR(r.flops_dense, 493568);
  NEAR(r.flops_attn, 10240);
  NEAR(r.flops, 503808);
  /* t_mem = 135424 ns, t_compute = 503808 ns: compute bound */
  NEAR(r.t_mem, 135424e-9);
  NEAR(r.t_compute, 503808e-9);
  CHECK(r.compute_bound);
  /* all-reduce: m = 4*64*4 = 1024 B, hops 2; t_ar = 2 us + 1024*2*1/2/1e9 = 3.024 us; 4 of them */
  NEAR(r.ar_msg_bytes, 1024);
  CHECK(r.ar_hops == 2 && r.n_allreduce == 4);
  NEAR(r.t_ar, 3.024e-6);
  NEAR(r.t_comm, 12.096e-6);
  /* floor = 503.808 + 12.096 = 515.904 us */
  NEAR(r.t_step, 515.904e-6);
  NEAR(r.tok_s_user, 1 / 515.904e-6);
  NEAR(r.tok_s_system, 4 / 515.904e-6);
  NEAR(r.tok_s_rank, 2 / 515.904e-6);
  /* power: 2 ranks x 100 W; J/token = 200 * 515.904e-6 / 4 */
  NEAR(r.tok_s_per_w, 4 / 515.904e-6 / 200);
  NEAR(r.j_per_token, 200 * 515.904e-6 / 4);
  CHECK(r.fits);
}

static void tiny_tp1_memory_bound(void) {
  const tpd_sol_model m = tiny();
  tpd_sol_hw h = unit_hw();
  h.peak_flops = 1e12;
  h.power_w = 0; /* unknown */
  tpd_sol_result r;
  CHECK(tpd_sol_eval(&m, &h, 1, 1, 0, &r) == TPD_OK);
  /* P = 2 (64*(4+4)*16 + 4*16*64 + 3*64*172) + 512*64 = 2 (8192 + 4096 + 33024) + 32768 = 123392 */
  NEAR(r.weight_elems, 123392);
  /* bytes = 246784 + 1280 + 0 + 128 = 248192; no all-reduce at TP 1 */
  NEAR(r.bytes, 248192);
  CHECK(r.n_allreduce == 0 && r.t_comm == 0);
  CHECK(!r.compute_bound);
  NEAR(r.t_step, 248192e-9);
  CHECK(r.tok_s_per_w == 0 && r.j_per_token == 0);
}

/* Llama 3.1 8B on the H200 preset, bf16 throughout, batch 1, ctx 1024. */
static void h200_8b(void) {
  tpd_sol_model m;
  tpd_sol_hw h;
  CHECK(tpd_sol_model_preset("8b", &m) == TPD_OK);
  CHECK(tpd_sol_hw_preset("h200", &h) == TPD_OK);
  NEAR(h.mem_bw, 4.8e12);
  NEAR(h.peak_flops, 989e12);
  NEAR(h.link_bw, 450e9);
  NEAR(h.power_w, 700);
  tpd_sol_result r;
  CHECK(tpd_sol_eval(&m, &h, 1, 1, 1024, &r) == TPD_OK);
  /* per layer 4096*48*128 + 32*128*4096 + 3*4096*14336 = 25165824 + 16777216 + 176160768 = 218103808;
   * x 32 = 6979321856; + lm_head 128256*4096 = 525336576 -> 7504658432 */
  NEAR(r.weight_elems, 7504658432.0);
  /* 2 P + 65*4096*2 = 15009316864 + 532480 */
  NEAR(r.weight_bytes, 15009849344.0);
  /* KV 1024*2*32*8*128*2 = 134217728; act 8192 */
  NEAR(r.kv_bytes, 134217728.0);
  NEAR(r.bytes, 15144075264.0);
  NEAR(r.t_mem, 15144075264.0 / 4.8e12);
  /* flops 2 P + 4*1024*32*32*128 = 15009316864 + 536870912 */
  NEAR(r.flops, 15546187776.0);
  CHECK(!r.compute_bound);
  NEAR(r.t_step, 15144075264.0 / 4.8e12);
  NEAR(r.tok_s_per_w, 4.8e12 / 15144075264.0 / 700);

  /* TP 8: Hq_r 4, Hkv_r 1, F_r 1792, V_r 16032;
   * P_r = 32 (4096*6*128 + 4*128*4096 + 3*4096*1792) + 16032*4096 = 32*27262976 + 65667072 = 938082304 */
  CHECK(tpd_sol_eval(&m, &h, 8, 1, 1024, &r) == TPD_OK);
  CHECK(r.kv_heads_r == 1 && r.ffn_r == 1792 && r.vocab_r == 16032);
  NEAR(r.weight_elems, 938082304.0);
  /* t_ar = 14 * 1 us + 8192 * 2*7/8 / 450e9; 64 of them */
  NEAR(r.t_ar, 14e-6 + 14336.0 / 450e9);
  NEAR(r.t_comm, 64 * (14e-6 + 14336.0 / 450e9));
}

/* 70B: 8 KV heads, TP 16 replicates one KV head per rank; TP 3 is refused. */
static void shapes(void) {
  tpd_sol_model m;
  tpd_sol_hw h;
  CHECK(tpd_sol_model_preset("70b", &m) == TPD_OK);
  CHECK(m.dim == 8192 && m.n_layers == 80 && m.n_heads == 64 && m.n_kv_heads == 8 && m.ffn_dim == 28672 &&
        m.vocab == 128256 && m.head_dim == 128);
  CHECK(tpd_sol_hw_preset("h100", &h) == TPD_OK);
  NEAR(h.mem_bw, 3.35e12);
  h.max_tp = 0;
  tpd_sol_result r;
  CHECK(tpd_sol_eval(&m, &h, 16, 2, 100, &r) == TPD_OK);
  CHECK(r.q_heads_r == 4 && r.kv_heads_r == 1);
  /* KV = 2*100*2*80*1*128*2 */
  NEAR(r.kv_bytes, 2.0 * 100 * 2 * 80 * 128 * 2);
  CHECK(tpd_sol_eval(&m, &h, 3, 1, 0, &r) == TPD_ERR_ARG);
  CHECK(tpd_sol_eval(&m, &h, 0, 1, 0, &r) == TPD_ERR_ARG);
  CHECK(tpd_sol_eval(&m, &h, 1, 0, 0, &r) == TPD_ERR_ARG);
  CHECK(tpd_sol_eval(&m, &h, 1, 1, -1, &r) == TPD_ERR_ARG);
  /* 70B in bf16 (141 GB) does not fit one 80 GiB H100; it fits 8 of them */
  CHECK(tpd_sol_eval(&m, &h, 1, 1, 1024, &r) == TPD_OK);
  CHECK(!r.fits);
  CHECK(tpd_sol_eval(&m, &h, 8, 1, 1024, &r) == TPD_OK);
  CHECK(r.fits);
  CHECK(tpd_sol_model_preset("13b", &m) == TPD_ERR_ARG);
  CHECK(tpd_sol_hw_preset("b200", &h) == TPD_ERR_ARG);
  tpd_clear_error();
}

/* From a loaded config: the shape and element sizes pass through. */
static void from_config(void) {
  tpd_model_config c;
  memset(&c, 0, sizeof c);
  snprintf(c.model_type, sizeof c.model_type, "llama");
  c.dim = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 16, c.ffn_dim = 172, c.vocab = 512;
  tpd_sol_model m;
  tpd_sol_model_from_config(&c, 2, 4, 2, 4, 4, &m);
  const tpd_sol_model t = tiny();
  CHECK(m.dim == t.dim && m.n_layers == t.n_layers && m.n_heads == t.n_heads && m.n_kv_heads == t.n_kv_heads &&
        m.head_dim == t.head_dim && m.ffn_dim == t.ffn_dim && m.vocab == t.vocab);
  CHECK(m.w_elem == 2 && m.norm_elem == 4 && m.emb_elem == 2 && m.kv_elem == 4 && m.act_elem == 4);
}

int main(void) {
  tiny_tp2();
  tiny_tp1_memory_bound();
  h200_8b();
  shapes();
  from_config();
  if (tu_failures) {
    fprintf(stderr, "test_sol: %d check(s) failed\n", tu_failures);
    return 1;
  }
  printf("test_sol: ok\n");
  return 0;
}
