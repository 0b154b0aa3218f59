/* Speed-of-light model: the formulas are stated in sol.h and derived in
 * docs/performance.md.  Nothing here reads a clock, a file or a device. */
#include "launch/tools/sol.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void shape(tpd_sol_model *m, const char *name, int dim, int layers, int heads, int kv_heads, int head_dim,
                  int ffn, int vocab) {
  memset(m, 0, sizeof *m);
  snprintf(m->name, sizeof m->name, "%s", name);
  m->dim = dim, m->n_layers = layers, m->n_heads = heads, m->n_kv_heads = kv_heads, m->head_dim = head_dim;
  m->ffn_dim = ffn, m->vocab = vocab;
  /* a GPU build: everything in bf16 */
  m->w_elem = m->norm_elem = m->emb_elem = m->kv_elem = m->act_elem = 2.0;
}

tpd_status tpd_sol_model_preset(const char *name, tpd_sol_model *out) {
  if (!name) return TPD_FAIL(TPD_ERR_ARG, "model shape: name is NULL");
  if (!strcmp(name, "1b")) shape(out, "1b", 2048, 16, 32, 8, 64, 8192, 128256);
  else if (!strcmp(name, "8b")) shape(out, "8b", 4096, 32, 32, 8, 128, 14336, 128256);
  else if (!strcmp(name, "70b")) shape(out, "70b", 8192, 80, 64, 8, 128, 28672, 128256);
  else return TPD_FAIL(TPD_ERR_ARG, "unknown model shape '%s' (1b, 8b, 70b)", name);
  return TPD_OK;
}

void tpd_sol_model_from_config(const tpd_model_config *c, double w_elem, double norm_elem, double emb_elem,
                               double kv_elem, double act_elem, tpd_sol_model *out) {
  shape(out, c->model_type, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_dim, c->vocab);
  out->w_elem = w_elem, out->norm_elem = norm_elem, out->emb_elem = emb_elem;
  out->kv_elem = kv_elem, out->act_elem = act_elem;
}

tpd_status tpd_sol_hw_preset(const char *name, tpd_sol_hw *out) {
  if (!name) return TPD_FAIL(TPD_ERR_ARG, "hardware preset: name is NULL");
  memset(out, 0, sizeof *out);
  /* NVIDIA datasheet figures (dense bf16 without sparsity; NVLink 4: 900 GB/s
   * total = 450 GB/s per direction per GPU).  The per-hop latency is not a
   * datasheet figure: 1 us per ring step is an assumption of the order NCCL's
   * low-latency protocol reaches inside one NVSwitch node. */
  if (!strcmp(name, "h100")) {
    snprintf(out->name, sizeof out->name, "H100 SXM");
    out->mem_bw = 3.35e12;
    out->mem_bytes = 80.0 * 1073741824.0;
  } else if (!strcmp(name, "h200")) {
    snprintf(out->name, sizeof out->name, "H200 SXM");
    out->mem_bw = 4.8e12;
    out->mem_bytes = 141.0 * 1073741824.0;
  } else {
    return TPD_FAIL(TPD_ERR_ARG, "unknown hardware preset '%s' (h100, h200)", name);
  }
  snprintf(out->source, sizeof out->source, "datasheet (hop latency assumed)");
  out->peak_flops = 989e12;
  out->link_bw = 450e9;
  out->link_alpha = 1e-6;
  out->power_w = 700.0;
  out->max_tp = 8;
  return TPD_OK;
}

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

tpd_status tpd_sol_eval(const tpd_sol_model *m, const tpd_sol_hw *hw, int tp, int batch, double ctx,
                        tpd_sol_result *r) {
  memset(r, 0, sizeof *r);
  if (!m || !hw) return TPD_FAIL(TPD_ERR_ARG, "speed-of-light: model and hardware are required");
  if (tp < 1 || batch < 1 || !(ctx >= 0) || !isfinite(ctx))
    return TPD_FAIL(TPD_ERR_ARG, "speed-of-light: tp %d, batch %d, ctx %g out of range", tp, batch, ctx);
  if (m->dim < 1 || m->n_layers < 1 || m->n_heads < 1 || m->n_kv_heads < 1 || m->head_dim < 1 || m->ffn_dim < 1 ||
      m->vocab < 1)
    return TPD_FAIL(TPD_ERR_ARG, "speed-of-light: model '%s' has a non-positive dimension", m->name);
  if (!(hw->mem_bw > 0) || !(hw->peak_flops > 0))
    return TPD_FAIL(TPD_ERR_ARG, "speed-of-light: hardware '%s' needs memory bandwidth and peak rate", hw->name);
  if (tp > 1 && !(hw->link_bw > 0))
    return TPD_FAIL(TPD_ERR_ARG, "speed-of-light: hardware '%s' has no link bandwidth for TP %d", hw->name, tp);
  /* the shard plan's rules (runtime/model/shard.c) */
  if (m->n_heads % tp)
    return TPD_FAIL(TPD_ERR_ARG, "speed-of-light: %d heads do not split %d ways", m->n_heads, tp);
  if (m->n_kv_heads % tp && tp % m->n_kv_heads)
    return TPD_FAIL(TPD_ERR_ARG, "speed-of-light: %d KV heads and TP %d: one must divide the other", m->n_kv_heads, tp);
  if (m->ffn_dim < tp || m->vocab < tp)
    return TPD_FAIL(TPD_ERR_ARG, "speed-of-light: FFN %d or vocab %d smaller than TP %d", m->ffn_dim, m->vocab, tp);
  const int v_chunk = ceil_div(m->vocab, tp);
  if ((long)(tp - 1) * v_chunk >= m->vocab)
    return TPD_FAIL(TPD_ERR_ARG, "speed-of-light: vocab %d leaves the last of %d ranks no rows", m->vocab, tp);

  const double B = batch, C = ctx, D = m->dim, L = m->n_layers, Dh = m->head_dim;
  r->tp = tp, r->batch = batch, r->ctx = ctx;
  r->q_heads_r = m->n_heads / tp;
  r->kv_heads_r = m->n_kv_heads >= tp ? m->n_kv_heads / tp : 1;
  const double Hq = r->q_heads_r, Hkv = r->kv_heads_r;
  /* the slowest rank: the one holding the most weight elements under the
   * shard plan's split (runtime/model/shard.c): FFN columns [F k / tp, F (k+1) / tp),
   * vocab rows in chunks of ceil(V / tp), the last rank's shorter.  The rank
   * with the widest FFN shard need not hold the widest vocab shard, so the
   * largest of each is not added up. */
  r->weight_elems = -1;
  for (int k = 0; k < tp; k++) {
    const int f = (int)((long)m->ffn_dim * (k + 1) / tp - (long)m->ffn_dim * k / tp);
    const int v0 = k * v_chunk, v1 = (k + 1) * v_chunk < m->vocab ? (k + 1) * v_chunk : m->vocab;
    const double e = L * (D * (Hq + 2 * Hkv) * Dh + Hq * Dh * D + 3 * D * f) + (double)(v1 - v0) * D;
    if (e > r->weight_elems) r->weight_elems = e, r->ffn_r = f, r->vocab_r = v1 - v0;
  }
  r->weight_bytes = r->weight_elems * m->w_elem + (2 * L + 1) * D * m->norm_elem;
  r->kv_bytes = B * C * 2 * L * Hkv * Dh * m->kv_elem;
  r->act_bytes = B * D * m->emb_elem;
  r->bytes = r->weight_bytes + r->kv_bytes + r->act_bytes;

  r->flops_dense = 2 * B * r->weight_elems;
  r->flops_attn = 4 * B * C * L * Hq * Dh;
  r->flops = r->flops_dense + r->flops_attn;

  r->ar_msg_bytes = B * D * m->act_elem;
  if (tp > 1) {
    r->n_allreduce = 2 * m->n_layers;
    r->ar_hops = 2 * (tp - 1);
    r->t_ar = hw->link_alpha * r->ar_hops + r->ar_msg_bytes * 2.0 * (tp - 1) / tp / hw->link_bw;
  }
  r->t_mem = r->bytes / hw->mem_bw;
  r->t_compute = r->flops / hw->peak_flops;
  r->t_comm = r->n_allreduce * r->t_ar;
  r->compute_bound = r->t_compute > r->t_mem;
  r->t_step = (r->compute_bound ? r->t_compute : r->t_mem) + r->t_comm;

  r->tok_s_user = 1.0 / r->t_step;
  r->tok_s_system = B / r->t_step;
  r->tok_s_rank = r->tok_s_system / tp;
  if (hw->power_w > 0) {
    r->tok_s_per_w = r->tok_s_system / (tp * hw->power_w);
    r->j_per_token = tp * hw->power_w * r->t_step / B;
  }
  /* capacity: weights, the replicated embedding table and the batch's KV
   * cache (activations and workspace ignored) */
  const double held = r->weight_bytes + (double)m->vocab * D * m->emb_elem + r->kv_bytes;
  r->fits = !(hw->mem_bytes > 0) || held <= hw->mem_bytes;
  return TPD_OK;
}

double tpd_sol_check(const tpd_sol_hw *hw, const tpd_sol_result *r, double measured_s, char *fault, size_t cap) {
  if (fault && cap) fault[0] = 0;
  if (!(measured_s > 0) || !isfinite(measured_s)) {
    if (fault && cap) snprintf(fault, cap, "measured time %g s is not a positive number", measured_s);
    return NAN;
  }
  if (!r || !(r->t_step > 0) || !isfinite(r->t_step)) {
    if (fault && cap) snprintf(fault, cap, "floor is not a positive time");
    return NAN;
  }
  const double ratio = measured_s / r->t_step;
  if (ratio < 1 && fault && cap) {
    const int measured = hw && !strcmp(hw->source, "measured");
    const char *what = r->compute_bound ? (measured ? "the compute probe" : "peak flop/s")
                                        : (measured ? "the memory read probe" : "memory bandwidth");
    snprintf(fault, cap, "measured faster than floor: %s too low (%s; measured / floor %.3f)",
             measured ? "probe" : "hardware figures", what, ratio);
  }
  return ratio;
}
