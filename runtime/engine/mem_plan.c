/* The memory plan (mem_plan.h): one function per arena places every buffer
 * in it; run without memory it measures the arena, run with it it assigns
 * the pointers, so the printed plan and the allocations cannot differ. */
#include "runtime/engine/mem_plan.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine/engine_internal.h"

enum { BE_ALIGN = 256, HOST_ALIGN = 64 };

/* Hands out consecutive aligned regions of an arena; base NULL: measures. */
typedef struct {
  uint8_t *base;
  size_t off, align;
} carve;

static void *take(carve *c, size_t n_bytes) {
  const size_t off = (c->off + c->align - 1) / c->align * c->align;
  c->off = off + n_bytes;
  return c->base ? c->base + off : NULL;
}

/* Backend memory: what one forward reads and writes. */
static void layout_step(tpd_engine *e, carve *c) {
  const tpd_backend_ops *b = e->be->ops;
  const size_t as = tpd_dtype_size(b->act_dtype), T = (size_t)e->T_cap, D = (size_t)e->cfg.dim;
  const size_t S = (size_t)e->max_seqs, i32 = sizeof(int32_t);
  e->x = take(c, T * D * as);
  e->h = take(c, T * D * as);
  e->qkv = take(c, T * (size_t)e->qkv_w * as);
  e->att = take(c, T * (size_t)e->q_w * as);
  e->proj = take(c, T * D * as);
  e->gu = b->matmul_swiglu ? NULL : take(c, T * 2 * (size_t)e->ffn_l * as); /* the fused op needs none */
  e->act = take(c, T * (size_t)e->ffn_l * as);
  e->last = take(c, S * D * as);
  e->logits = take(c, S * (size_t)e->V_l * sizeof(float));
  e->amax_val = take(c, S * sizeof(float));
  e->amax_idx = take(c, S * i32);
  e->st_max = take(c, S * sizeof(float));
  e->st_sum = take(c, S * sizeof(float));
  e->st_topv = take(c, S * TPD_LOGIT_TOPK_MAX * sizeof(float));
  e->st_topi = take(c, S * TPD_LOGIT_TOPK_MAX * i32);
  e->inv_freq = take(c, sizeof(double) * (size_t)(e->cfg.head_dim / 2));
  if (!b->host_memory) { /* host backends read the host arrays directly */
    e->d_pos = take(c, T * i32);
    e->d_slot = take(c, T * i32);
    e->d_table = take(c, (size_t)e->kv.max_slots * (size_t)e->kv.max_blocks * i32);
  }
}

/* Host memory: staging, gathers, sampler scratch, KV bookkeeping. */
static void layout_host(tpd_engine *e, carve *c) {
  const size_t as = tpd_dtype_size(e->be->ops->act_dtype), T = (size_t)e->T_cap, D = (size_t)e->cfg.dim;
  const size_t S = (size_t)e->max_seqs, tp = (size_t)e->plan.tp;
  const size_t i32 = sizeof(int32_t);
  e->h_pos = take(c, T * i32);
  e->h_slot = take(c, T * i32);
  e->h_tok = take(c, T * i32);
  e->h_last_rows = take(c, S * i32);
  e->h_last_item = take(c, S * i32);
  e->h_embed = take(c, T * D * as);
  e->rec_cap = tpd_eng_rec_cap(e);
  e->h_rec = take(c, e->rec_cap);
  e->h_rec_all = take(c, tp * e->rec_cap);
  e->h_full = take(c, (size_t)e->cfg.vocab * sizeof(float));
  e->max_ops = tpd_eng_max_ops(e->max_seqs);
  e->ops = take(c, (size_t)e->max_ops * sizeof *e->ops);
  e->plan_cap = tpd_plan_cap(e->max_ops, e->max_seqs, e->T_cap);
  if (e->plan_cap < TPD_PLAN_PREFIX) e->plan_cap = TPD_PLAN_PREFIX;
  e->plan_buf = take(c, e->plan_cap);
  e->part = take(c, S * sizeof *e->part);
  e->part_orig = take(c, S * i32);
  e->pend_len = take(c, S * i32);
  e->h_out = take(c, S * sizeof *e->h_out);
  if (tp > 1 && e->comm->ops->data_on_device == e->be->ops->host_memory) { /* all-reduce through the host */
    e->h_stage = take(c, T * D * sizeof(float));
    e->h_stage_act = take(c, T * D * as);
  }
  void *ss = take(c, tpd_sampler_scratch_bytes(e->cfg.vocab));
  void *kv = take(c, e->kv_host_bytes);
  if (c->base) {
    tpd_sampler_scratch_attach(&e->ss, ss, e->cfg.vocab);
    tpd_kv_attach(&e->kv, kv);
  }
}

/* What the backend sizes its workspaces from. */
static void backend_plan(const tpd_engine *e, tpd_backend_plan *p) {
  memset(p, 0, sizeof *p);
  p->max_rows = e->T_cap;
  p->max_ctx = e->kv.max_ctx;
  p->n_q_heads = e->plan.n_q_heads;
  p->n_kv_heads = e->plan.n_kv_heads;
  p->head_dim = e->cfg.head_dim;
  const int n[] = {e->qkv_w, e->cfg.dim, 2 * e->ffn_l, e->V_l}; /* q/k/v, o and down, gate/up, LM head */
  for (size_t i = 0; i < sizeof n / sizeof n[0]; i++)
    if (n[i] > p->max_n) p->max_n = n[i];
  const int k[] = {e->cfg.dim, e->q_w, e->ffn_l}; /* q/k/v, gate/up and LM head; o; down */
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    int seen = 0;
    for (int j = 0; j < p->n_k; j++) seen |= p->k[j] == k[i];
    if (!seen) p->k[p->n_k++] = k[i];
  }
  p->gate_up_rows = 2 * e->ffn_l;
}

/* KV storage per layer and tensor: [n_blocks, Hkv, block_size, Dh] of the kv dtype */
static size_t kv_per_tensor(const tpd_engine *e) {
  return (size_t)e->kv.n_blocks * (size_t)e->plan.n_kv_heads * (size_t)e->kv.block_size * (size_t)e->cfg.head_dim *
         tpd_dtype_size(e->be->kv_dtype);
}

static const char *human(char *buf, size_t cap, size_t n_bytes) {
  if ((double)n_bytes >= 1e9) snprintf(buf, cap, "%.2f GB", (double)n_bytes / 1e9);
  else snprintf(buf, cap, "%.2f MB", (double)n_bytes / 1e6);
  return buf;
}

tpd_status tpd_mem_plan_make(tpd_engine *e) {
  tpd_mem_plan *m = &e->mem;
  memset(m, 0, sizeof *m);
  m->weight_bytes = (size_t)e->weight_bytes;
  const double kv = (double)kv_per_tensor(e) * 2.0 * e->cfg.n_layers;
  if (kv > 4e18)
    return TPD_FAIL(TPD_ERR_ARG, "KV cache of %d blocks of %d tokens is %.3g bytes: too large", e->kv.n_blocks,
                    e->kv.block_size, kv);
  m->kv_bytes = kv_per_tensor(e) * 2 * (size_t)e->cfg.n_layers;
  carve step = {NULL, 0, BE_ALIGN}, host = {NULL, 0, HOST_ALIGN};
  layout_step(e, &step);
  layout_host(e, &host);
  m->act_bytes = step.off;
  m->host_bytes = host.off;
  if (e->be->ops->reserve) {
    tpd_backend_plan bp;
    backend_plan(e, &bp);
    TPD_TRY(e->be->ops->reserve(e->be, &bp, 0, &m->ws_bytes));
  }
  char w[32], k[32], a[32], ws[32], h[32], t[32];
  TPD_INFO("rank %d/%d memory plan: weights %s, KV %s, activations %s, workspace %s, host %s, total %s",
           e->comm->rank, e->comm->size, human(w, sizeof w, m->weight_bytes), human(k, sizeof k, m->kv_bytes),
           human(a, sizeof a, m->act_bytes), human(ws, sizeof ws, m->ws_bytes), human(h, sizeof h, m->host_bytes),
           human(t, sizeof t, tpd_mem_plan_total(m)));
  return TPD_OK;
}

tpd_status tpd_mem_alloc(tpd_engine *e) {
  const tpd_backend_ops *b = e->be->ops;
  const tpd_mem_plan *m = &e->mem;
  if (b->reserve) {
    tpd_backend_plan bp;
    backend_plan(e, &bp);
    size_t got = 0;
    TPD_TRY(b->reserve(e->be, &bp, 1, &got));
    if (got != m->ws_bytes)
      return TPD_FAIL(TPD_ERR_INTERNAL, "memory plan: the %s backend reserved %zu bytes of workspace, planned %zu",
                      b->name, got, m->ws_bytes);
  }
  TPD_TRY(b->alloc(e->be, m->act_bytes, &e->step_arena));
  TPD_TRY(b->alloc(e->be, m->kv_bytes, &e->kv_storage));
  e->host_arena = calloc(1, m->host_bytes);
  if (!e->host_arena)
    return TPD_FAIL(TPD_ERR_OOM, "out of host memory for the step buffers (%zu bytes)", m->host_bytes);
  carve step = {e->step_arena, 0, BE_ALIGN}, host = {e->host_arena, 0, HOST_ALIGN};
  layout_step(e, &step);
  layout_host(e, &host);
  if (step.off != m->act_bytes || host.off != m->host_bytes)
    return TPD_FAIL(TPD_ERR_INTERNAL, "memory plan: arenas laid out as %zu + %zu bytes, planned %zu + %zu", step.off,
                    host.off, m->act_bytes, m->host_bytes);
  for (int i = 0; i < e->max_seqs; i++) e->pend_len[i] = -1;
  if (b->host_memory) e->d_table = e->kv.table;
  else TPD_TRY(b->zero(e->be, e->d_table, sizeof(int32_t) * (size_t)e->kv.max_slots * e->kv.max_blocks));
  TPD_TRY(b->zero(e->be, e->kv_storage, m->kv_bytes));
  const size_t per = kv_per_tensor(e);
  for (int l = 0; l < e->cfg.n_layers; l++) {
    e->layers[l].k = (uint8_t *)e->kv_storage + per * (2 * (size_t)l);
    e->layers[l].v = (uint8_t *)e->kv_storage + per * (2 * (size_t)l + 1);
  }
  double inv_freq[TPD_MAX_HEAD_DIM / 2];
  tpd_rope_inv_freq(&e->cfg, inv_freq);
  return b->upload(e->be, e->inv_freq, inv_freq, sizeof(double) * (size_t)(e->cfg.head_dim / 2));
}

void tpd_mem_free(tpd_engine *e) {
  if (e->be) {
    if (e->step_arena) e->be->ops->free(e->be, e->step_arena);
    if (e->kv_storage) e->be->ops->free(e->be, e->kv_storage);
  }
  e->step_arena = e->kv_storage = NULL;
  free(e->host_arena);
  e->host_arena = NULL;
}
