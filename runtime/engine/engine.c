/* The step: options, sequences and one forward over a batch, written once
 * against the backend (kernels/backend.h) and communicator (comm/comm.h)
 * interfaces; loading is engine_load.c.  See docs/architecture.md for the
 * data flow. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine/bench_hooks.h"
#include "runtime/engine/engine_internal.h"

void tpd_eng_poison(tpd_engine *e, tpd_status s) {
  if (s == TPD_OK || e->poison != TPD_OK) return;
  e->poison = s;
  snprintf(e->poison_msg, sizeof e->poison_msg, "%s", tpd_last_error());
}

/* A compute op of a forward: skipped once the forward is poisoned. */
#define OP(call)                                  \
  do {                                            \
    if (e->poison == TPD_OK) tpd_eng_poison(e, (call)); \
  } while (0)
/* A collective (or what orders it): runs even in a poisoned forward, so that
 * the other ranks are not left waiting. */
#define COLL(call) tpd_eng_poison(e, (call))

/* Destroys every captured decode graph; the next decode step captures anew. */
static void drop_graphs(tpd_engine *e) {
  if (!e->graphs) return;
  for (int i = 0; i <= e->kv.max_slots; i++) {
    if (e->graphs[i] && e->be->ops->graph_destroy) e->be->ops->graph_destroy(e->be, e->graphs[i]);
    e->graphs[i] = NULL;
  }
}

/* An option that changes what a step launches: graphs captured before it
 * would replay the old schedule (forward() also compares sched_key_of). */
static tpd_status schedule_changed(tpd_engine *e) {
  drop_graphs(e);
  return TPD_OK;
}

tpd_status tpd_engine_set_option(tpd_engine *e, tpd_engine_option opt, int value) {
  if (!e) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_set_option: engine is NULL");
  if (e->mode == TPD_MODE_LEADER) {
    if (e->comm->rank != 0) return TPD_FAIL(TPD_ERR_STATE, "tpd_engine_set_option on a follower rank (the leader sets options)");
    if (e->unusable || e->shut_down) return TPD_FAIL(TPD_ERR_STATE, "tpd_engine_set_option: the engine is %s", e->unusable ? "unusable after a failure" : "shut down");
    TPD_TRY(tpd_eng_apply_option(e, (int)opt, value));
    return tpd_eng_push_op(e, TPD_PLAN_OP_OPTION, (int)opt, value);
  }
  return tpd_eng_apply_option(e, (int)opt, value);
}

tpd_status tpd_eng_apply_option(tpd_engine *e, int opt, int value) {
  switch (opt) { /* int: TPD_OPT_SKIP_ALLREDUCE (bench_hooks.h) is outside the public enum */
    case TPD_OPT_OVERLAP: e->overlap = value != 0; return schedule_changed(e);
    case TPD_OPT_AR_CHUNKS:
      if (value < 1) return TPD_FAIL(TPD_ERR_ARG, "all-reduce chunks must be >= 1, got %d", value);
      e->ar_chunks = value;
      return schedule_changed(e);
    case TPD_OPT_GRAPHS: e->use_graphs = value != 0; return TPD_OK; /* captured graphs stay valid */
    case TPD_OPT_SKIP_ALLREDUCE: e->skip_allreduce = value != 0; return schedule_changed(e);
  }
  return TPD_FAIL(TPD_ERR_ARG, "unknown engine option %d", (int)opt);
}

int tpd_engine_get_option(const tpd_engine *e, tpd_engine_option opt) {
  switch ((int)opt) { /* int: TPD_OPT_SKIP_ALLREDUCE (bench_hooks.h) is outside the public enum */
    case TPD_OPT_OVERLAP: return e->overlap;
    case TPD_OPT_AR_CHUNKS: return e->ar_chunks;
    case TPD_OPT_GRAPHS: return e->use_graphs;
    case TPD_OPT_SKIP_ALLREDUCE: return e->skip_allreduce;
  }
  return -1;
}

void tpd_engine_get_info(const tpd_engine *e, tpd_engine_info *info) {
  memset(info, 0, sizeof *info);
  info->weight_bytes = e->weight_bytes;
  info->kv_bytes_per_token = 2.0 * e->cfg.n_layers * e->plan.n_kv_heads * e->cfg.head_dim *
                             (double)tpd_dtype_size(e->be->kv_dtype);
  info->embed_row_bytes = (double)e->cfg.dim * (double)tpd_dtype_size((tpd_dtype)e->embed->dtype);
  info->weight_dtype = e->layers[0].qkv.dtype;
  info->act_dtype = e->be->ops->act_dtype;
  info->kv_dtype = e->be->kv_dtype;
  /* the CPU's bf16 path rounds only bf16 weights' inputs */
  const int bf16_w = info->weight_dtype == TPD_BF16;
  info->matmul_act_dtype = bf16_w ? e->be->matmul_act_dtype : e->be->ops->act_dtype;
  info->tp = e->plan.tp;
  info->backend = e->be->ops->name;
  info->kernels = e->be->kernels ? e->be->kernels : e->be->ops->name;
  if (!bf16_w && e->be->kernels_f32) info->kernels = e->be->kernels_f32;
  info->n_threads = e->n_threads;
  info->kv_bytes = (double)e->mem.kv_bytes;
  info->act_bytes = (double)e->mem.act_bytes;
  info->workspace_bytes = (double)e->mem.ws_bytes;
  info->host_bytes = (double)e->mem.host_bytes;
}

/* Sequence calls of a leader-mode engine are the leader's; they travel in the next plan. */
static tpd_status leader_call(const tpd_engine *e, const char *fn) {
  if (!e) return TPD_FAIL(TPD_ERR_ARG, "%s: engine is NULL", fn);
  if (e->unusable) return TPD_FAIL(TPD_ERR_STATE, "%s: the engine is unusable after a failure; destroy it", fn);
  if (e->mode == TPD_MODE_LEADER && e->comm->rank != 0)
    return TPD_FAIL(TPD_ERR_STATE, "%s on follower rank %d: followers call tpd_engine_follow", fn, e->comm->rank);
  if (e->shut_down) return TPD_FAIL(TPD_ERR_STATE, "%s after tpd_engine_shutdown", fn);
  return TPD_OK;
}

tpd_status tpd_engine_seq_open(tpd_engine *e, int *slot) {
  TPD_TRY(leader_call(e, "tpd_engine_seq_open"));
  if (!slot) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_seq_open: slot is NULL");
  TPD_TRY(tpd_kv_acquire(&e->kv, slot));
  if (e->mode != TPD_MODE_LEADER) return TPD_OK;
  const tpd_status s = tpd_eng_push_op(e, TPD_PLAN_OP_OPEN, *slot, 0);
  if (s != TPD_OK) tpd_kv_release(&e->kv, *slot);
  return s;
}

tpd_status tpd_engine_seq_close(tpd_engine *e, int slot) {
  TPD_TRY(leader_call(e, "tpd_engine_seq_close"));
  if (slot < 0 || slot >= e->kv.max_slots || !e->kv.in_use[slot])
    return TPD_FAIL(TPD_ERR_SLOT, "tpd_engine_seq_close: slot %d is not open", slot);
  if (e->mode == TPD_MODE_LEADER) TPD_TRY(tpd_eng_push_op(e, TPD_PLAN_OP_CLOSE, slot, 0));
  tpd_kv_release(&e->kv, slot);
  return TPD_OK;
}

void tpd_engine_get_capacity(const tpd_engine *e, tpd_engine_capacity *cap) {
  memset(cap, 0, sizeof *cap);
  cap->max_slots = e->kv.max_slots;
  for (int i = 0; i < e->kv.max_slots; i++) cap->free_slots += !e->kv.in_use[i];
  cap->block_size = e->kv.block_size;
  cap->total_blocks = e->kv.n_blocks;
  cap->free_blocks = e->kv.n_free;
  cap->free_tokens = (long long)e->kv.n_free * e->kv.block_size;
  cap->max_ctx = e->kv.max_ctx;
  cap->max_step_tokens = e->T_cap;
}

int tpd_engine_blocks_needed(const tpd_engine *e, int slot, int n_new) { return tpd_kv_blocks_needed(&e->kv, slot, n_new); }
int tpd_engine_rank(const tpd_engine *e) { return e->comm->rank; }
tpd_engine_mode tpd_engine_mode_of(const tpd_engine *e) { return (tpd_engine_mode)e->mode; }
int tpd_engine_usable(const tpd_engine *e) { return e && !e->unusable; }
tpd_status tpd_engine_seq_skip(tpd_engine *e, int slot, int n_tokens) {
  if (!e) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_seq_skip: engine is NULL");
  if (e->mode == TPD_MODE_LEADER) return TPD_FAIL(TPD_ERR_STATE, "tpd_engine_seq_skip: SPMD engines only");
  if (slot < 0 || slot >= e->kv.max_slots || !e->kv.in_use[slot])
    return TPD_FAIL(TPD_ERR_SLOT, "tpd_engine_seq_skip: slot %d is not open", slot);
  if (n_tokens < 0) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_seq_skip: n_tokens = %d is negative", n_tokens);
  if (n_tokens > e->kv.max_ctx - e->kv.n_tokens[slot]) /* 0 <= n_tokens[slot] <= max_ctx: no overflow */
    return TPD_FAIL(TPD_ERR_TOO_LONG,
                    "tpd_engine_seq_skip: n_tokens = %d would take slot %d from %d tokens past the context of %d",
                    n_tokens, slot, e->kv.n_tokens[slot], e->kv.max_ctx);
  TPD_TRY(tpd_kv_reserve(&e->kv, slot, n_tokens));
  e->kv.n_tokens[slot] += n_tokens;
  return TPD_OK;
}

int tpd_engine_seq_len(const tpd_engine *e, int slot) {
  return slot >= 0 && slot < e->kv.max_slots && e->kv.in_use[slot] ? e->kv.n_tokens[slot] : -1;
}

/* ------------------------------------------------------------------ */
/* one forward                                                          */

/* ---- all-reduce of activation rows, started asynchronously where possible ---- */

typedef struct {
  tpd_comm_req req; /* host communicator: request in flight */
  int event;        /* device communicator: event recorded after the collective, or -1 */
  int active;
} ar_op;

enum { AR_MAX = 8 }; /* all-reduces in flight per micro-batch (chunks) */

/* NCCL on device buffers, with a backend that has a second stream and events */
static int device_comm(const tpd_engine *e) {
  const tpd_backend_ops *b = e->be->ops;
  return e->comm->ops->data_on_device && !b->host_memory && b->comm_stream && b->event_record && b->event_wait;
}

static int next_event(tpd_engine *e) {
  e->event_ring = (e->event_ring + 1) % 64;
  return e->event_ring;
}

/* Sums n_elems activations over the TP group through host memory in f32
 * (device activations, host communicator); synchronous. */
static void staged_allreduce(tpd_engine *e, void *buf, size_t n) {
  const tpd_dtype at = e->be->ops->act_dtype;
  OP(e->be->ops->download(e->be, e->h_stage_act, buf, n * tpd_dtype_size(at)));
  if (e->poison == TPD_OK) tpd_convert(e->h_stage, TPD_F32, e->h_stage_act, at, n);
  COLL(e->comm->ops->allreduce(e->comm, e->h_stage, n, TPD_F32, NULL));
  if (e->poison == TPD_OK) tpd_convert(e->h_stage_act, at, e->h_stage, TPD_F32, n);
  OP(e->be->ops->upload(e->be, buf, e->h_stage_act, n * tpd_dtype_size(at)));
}

static void ar_start(tpd_engine *e, void *buf, size_t n, ar_op *op) {
  op->active = 0;
  op->event = -1;
  if (e->plan.tp == 1 || e->skip_allreduce) return;
  const tpd_backend_ops *b = e->be->ops;
  const tpd_dtype at = b->act_dtype;
  if (device_comm(e)) { /* the comm stream waits for the data, runs the collective, signals */
    const int ready = next_event(e), done = next_event(e);
    COLL(b->event_record(e->be, ready, 0));
    COLL(b->event_wait(e->be, ready, 1));
    COLL(e->comm->ops->allreduce(e->comm, buf, n, at, b->comm_stream(e->be)));
    COLL(b->event_record(e->be, done, 1));
    op->event = done;
    op->active = 1;
    return;
  }
  if (e->comm->ops->data_on_device != b->host_memory) {
    if (e->overlap) {
      const tpd_status s = e->comm->ops->allreduce_start(e->comm, buf, n, at, b->stream(e->be), &op->req);
      COLL(s);
      op->active = s == TPD_OK;
      return;
    }
    COLL(e->comm->ops->allreduce(e->comm, buf, n, at, b->stream(e->be)));
    return;
  }
  staged_allreduce(e, buf, n);
}

static void ar_wait(tpd_engine *e, ar_op *op) {
  if (!op->active) return;
  op->active = 0;
  if (op->event >= 0) COLL(e->be->ops->event_wait(e->be, op->event, 0));
  else COLL(e->comm->ops->wait(e->comm, &op->req));
}

/* ---- one forward ---- */

/* A micro-batch: rows [r0, r0 + n) of the step, with its pending all-reduces. */
typedef struct {
  int r0, n;
  tpd_step_meta meta;
  ar_op ar[AR_MAX];
  int n_ar;
} mbatch;

static void *rows_at(const tpd_engine *e, void *buf, int r0, int width) {
  return (uint8_t *)buf + (size_t)r0 * width * tpd_dtype_size(e->be->ops->act_dtype);
}

static void wait_all(tpd_engine *e, mbatch *mb) {
  for (int i = 0; i < mb->n_ar; i++) ar_wait(e, &mb->ar[i]);
  mb->n_ar = 0;
}

/* Row-parallel projection y = a . W^T (+ bias on rank 0), then its all-reduce.
 * A single row is cut into chunks of output columns, each chunk's all-reduce
 * started before the next chunk is computed. */
static void row_parallel(tpd_engine *e, mbatch *mb, const void *a, int lda, const tpd_weight *w, const float *bias) {
  const tpd_backend_ops *b = e->be->ops;
  const int D = e->cfg.dim;
  void *y = rows_at(e, e->proj, mb->r0, D);
  int chunks = mb->n == 1 && e->overlap && b->weight_view && e->plan.tp > 1 ? e->ar_chunks : 1;
  if (chunks > AR_MAX) chunks = AR_MAX;
  const int step = chunks > 1 ? (D / chunks + 63) / 64 * 64 : D;
  for (int n0 = 0; n0 < D; n0 += step) {
    const int nn = D - n0 < step ? D - n0 : step;
    tpd_weight view = *w;
    if (nn < D) OP(b->weight_view(e->be, w, n0, nn, &view));
    tpd_matmul_args m = {mb->n, a, lda, &view, bias ? bias + n0 : NULL, (uint8_t *)y + (size_t)n0 * tpd_dtype_size(b->act_dtype), D,
                         b->act_dtype};
    OP(b->matmul(e->be, &m));
    ar_start(e, nn < D ? m.y : y, nn < D ? (size_t)nn : (size_t)mb->n * D, &mb->ar[mb->n_ar++]);
  }
}

static void attn_part(tpd_engine *e, int l, mbatch *mb) {
  const tpd_model_config *c = &e->cfg;
  const tpd_backend_ops *b = e->be->ops;
  const layer_w *L = &e->layers[l];
  const int D = c->dim, Dh = c->head_dim;
  wait_all(e, mb);
  void *h = rows_at(e, e->h, mb->r0, D), *qkv = rows_at(e, e->qkv, mb->r0, e->qkv_w);
  void *att = rows_at(e, e->att, mb->r0, e->q_w);
  tpd_rmsnorm_args n1 = {mb->n, D, rows_at(e, e->x, mb->r0, D), l ? rows_at(e, e->proj, mb->r0, D) : NULL, L->ln1,
                         (float)c->norm_eps, h};
  OP(b->rmsnorm(e->be, &n1));
  tpd_matmul_args mq = {mb->n, h, D, &L->qkv, L->b_qkv, qkv, e->qkv_w, b->act_dtype};
  OP(b->matmul(e->be, &mq));
  tpd_rope_kv_args rk = {&mb->meta, e->plan.n_q_heads, e->plan.n_kv_heads, Dh, qkv, e->inv_freq, L->k, L->v};
  OP(b->rope_kv(e->be, &rk));
  tpd_attention_args aa = {&mb->meta, e->plan.n_q_heads, e->plan.n_kv_heads, Dh, qkv, e->qkv_w, L->k, L->v, att,
                           c->sliding_window, (float)(1.0 / sqrt((double)Dh))};
  OP(b->attention(e->be, &aa));
  row_parallel(e, mb, att, e->q_w, &L->o, L->b_o);
}

static void mlp_part(tpd_engine *e, int l, mbatch *mb) {
  const tpd_model_config *c = &e->cfg;
  const tpd_backend_ops *b = e->be->ops;
  const layer_w *L = &e->layers[l];
  const int D = c->dim;
  wait_all(e, mb);
  void *h = rows_at(e, e->h, mb->r0, D), *act = rows_at(e, e->act, mb->r0, e->ffn_l);
  tpd_rmsnorm_args n2 = {mb->n, D, rows_at(e, e->x, mb->r0, D), rows_at(e, e->proj, mb->r0, D), L->ln2,
                         (float)c->norm_eps, h};
  OP(b->rmsnorm(e->be, &n2));
  tpd_matmul_args mg = {mb->n, h, D, &L->gu, L->b_gu, e->gu ? rows_at(e, e->gu, mb->r0, 2 * e->ffn_l) : NULL, 2 * e->ffn_l,
                        b->act_dtype};
  if (b->matmul_swiglu) {
    OP(b->matmul_swiglu(e->be, &mg, act, e->ffn_l));
  } else {
    OP(b->matmul(e->be, &mg));
    tpd_swiglu_args sw = {mb->n, e->ffn_l, mg.y, act};
    OP(b->swiglu(e->be, &sw));
  }
  row_parallel(e, mb, act, e->ffn_l, &L->down, L->b_down);
}

/* Everything after the step's inputs are on the device: layers, final norm,
 * LM head (only for the n_last rows that want a token; none when n_last is
 * 0), local argmax and logit statistics.  Captured as a graph for decode
 * steps on a device. */
static void forward_body(tpd_engine *e, const tpd_step_meta *meta, int n_last, int lp_k) {
  const tpd_model_config *c = &e->cfg;
  const tpd_backend_ops *b = e->be->ops;
  const int T = meta->T, D = c->dim;
  /* two micro-batches ping-pong so one's all-reduce runs while the other computes */
  mbatch mb[2];
  const int n_mb = e->overlap && e->plan.tp > 1 && T >= 2 ? 2 : 1;
  for (int i = 0; i < n_mb; i++) {
    mb[i].r0 = i == 0 ? 0 : T / 2;
    mb[i].n = n_mb == 1 ? T : i == 0 ? T / 2 : T - T / 2;
    mb[i].meta = *meta;
    mb[i].meta.T = mb[i].n;
    mb[i].meta.pos = meta->pos + mb[i].r0;
    mb[i].meta.slot = meta->slot + mb[i].r0;
    mb[i].n_ar = 0;
  }
  for (int l = 0; l < c->n_layers; l++) {
    for (int i = 0; i < n_mb; i++) attn_part(e, l, &mb[i]);
    for (int i = 0; i < n_mb; i++) mlp_part(e, l, &mb[i]);
  }
  for (int i = 0; i < n_mb; i++) wait_all(e, &mb[i]);
  if (n_last == 0) return;
  tpd_rmsnorm_args fin = {T, D, e->x, e->proj, e->final_norm, (float)c->norm_eps, e->h};
  OP(b->rmsnorm(e->be, &fin));
  OP(b->gather_rows(e->be, e->last, e->h, e->h_last_rows, n_last, D));
  tpd_matmul_args ml = {n_last, e->last, D, &e->lm_head, NULL, e->logits, e->V_l, TPD_F32};
  OP(b->matmul(e->be, &ml));
  tpd_argmax_args am = {n_last, e->V_l, e->logits, e->amax_val, e->amax_idx, e->plan.vocab.begin};
  OP(b->argmax(e->be, &am));
  if (lp_k >= 0) {
    tpd_logit_stats_args ls = {n_last, e->V_l, lp_k, e->logits, e->st_max, e->st_sum, e->st_topv, e->st_topi,
                               e->plan.vocab.begin};
    OP(b->logit_stats ? b->logit_stats(e->be, &ls)
                      : TPD_FAIL(TPD_ERR_UNSUPPORTED, "the %s backend has no logit_stats (log-probabilities)", b->name));
  }
}

static int graphs_possible(const tpd_engine *e) {
  const tpd_backend_ops *b = e->be->ops;
  return e->use_graphs && !b->host_memory && b->graph_begin && b->graph_end && b->graph_launch &&
         (e->plan.tp == 1 || device_comm(e) || e->skip_allreduce);
}

/* Everything a captured decode step bakes in besides its batch size: the
 * schedule (micro-batches, all-reduce chunks, whether all-reduces run), the
 * activation dtype, and the backend, communicator and buffer pointers its
 * launches name.  What changes per step is read from device memory at
 * replay: embeddings (x), positions, slots and the block table (uploaded
 * into fixed buffers before the launch); the attention grid is sized from
 * the engine's maximum context; gather_rows' row list is baked but is always
 * 0..T-1 for a decode step.  A new field that changes what forward_body
 * launches belongs here too. */
static void sched_key_of(const tpd_engine *e, struct sched_key *k) {
  memset(k, 0, sizeof *k);
  k->overlap = e->overlap;
  k->ar_chunks = e->ar_chunks;
  k->skip_allreduce = e->skip_allreduce;
  k->act_dtype = (int)e->be->ops->act_dtype;
  k->be = e->be;
  k->comm = e->comm;
  k->x = e->x;
}

static int same_sched(const struct sched_key *a, const struct sched_key *b) {
  return a->overlap == b->overlap && a->ar_chunks == b->ar_chunks && a->skip_allreduce == b->skip_allreduce &&
         a->act_dtype == b->act_dtype && a->be == b->be && a->comm == b->comm && a->x == b->x;
}

/* The block-table rows that changed since the last upload (slots that took
 * blocks or were released), one copy per run of consecutive rows. */
static tpd_status upload_changed_rows(tpd_engine *e) {
  tpd_kv_pool *kv = &e->kv;
  if (!kv->n_dirty) return TPD_OK;
  const size_t row_bytes = sizeof(int32_t) * (size_t)kv->max_blocks;
  for (int s0 = 0; s0 < kv->max_slots;) {
    if (!kv->dirty[s0]) {
      s0++;
      continue;
    }
    int s1 = s0 + 1;
    while (s1 < kv->max_slots && kv->dirty[s1]) s1++;
    TPD_TRY(e->be->ops->upload(e->be, (uint8_t *)e->d_table + (size_t)s0 * row_bytes,
                               kv->table + (size_t)s0 * kv->max_blocks, (size_t)(s1 - s0) * row_bytes));
    s0 = s1;
  }
  tpd_kv_clean(kv);
  return TPD_OK;
}

/* A decode step (one token per sequence, all wanting a token) on a device
 * replays a captured graph; a capture that fails falls back to launches
 * for good.  Returns 0 when the step must run eagerly instead. */
static int run_graph(tpd_engine *e, tpd_step_meta *meta, int n_last, int max_ctx) {
  const tpd_backend_ops *b = e->be->ops;
  tpd_backend *be = e->be;
  const int T = meta->T;
  struct sched_key key;
  sched_key_of(e, &key);
  if (!same_sched(&key, &e->graph_key)) { /* captured under another schedule: capture anew */
    drop_graphs(e);
    e->graph_key = key;
  }
  if (!e->graphs[T]) {
    tpd_error_state saved; /* a failed capture is recovered from below: the caller's message stays */
    tpd_error_save(&saved);
    tpd_status s = b->graph_begin(be);
    if (s == TPD_OK) {
      forward_body(e, meta, n_last, -1);
      const tpd_status body = e->poison;
      e->poison = TPD_OK;
      void *g = NULL;
      s = b->graph_end(be, &g); /* always end the capture, even after a failed body */
      if (s == TPD_OK && body != TPD_OK) { /* an op refused to be captured: nothing ran */
        if (b->graph_destroy) b->graph_destroy(be, g);
        s = body;
      } else if (s == TPD_OK) {
        e->graphs[T] = g;
      }
    }
    if (s != TPD_OK) { /* fall back to eager launches for good */
      TPD_WARN("CUDA graph capture failed (%s); running kernels without graphs", tpd_last_error());
      tpd_error_restore(&saved);
      e->use_graphs = 0;
      meta->max_ctx = max_ctx;
      return 0;
    }
    TPD_DEBUG("captured the decode step for batch %d as a graph", T);
  }
  COLL(b->graph_launch(be, e->graphs[T]));
  return 1;
}

void tpd_eng_forward(tpd_engine *e, int T, const int32_t *tokens, int n_last, int max_ctx, int lp_k) {
  const tpd_model_config *c = &e->cfg;
  const tpd_backend_ops *b = e->be->ops;
  tpd_backend *be = e->be;
  const int D = c->dim;
  const tpd_dtype at = b->act_dtype;
  const size_t as = tpd_dtype_size(at);
  if (e->fault.after >= 0 && e->n_forwards == e->fault.after) /* test hook (bench_hooks.h) */
    tpd_eng_poison(e, TPD_FAIL(e->fault.status, "injected fault in forward %ld on rank %d", e->n_forwards,
                               e->comm->rank));
  tpd_comm_set_step(e->comm, e->n_forwards); /* named by the comm watchdog; >= 0: no longer loading */
  e->n_forwards++;

  /* embedding rows straight from the mapped file: only the rows in use are read */
  const uint8_t *emb = tpd_st_data(e->st, e->embed);
  const size_t row_bytes = (size_t)D * tpd_dtype_size((tpd_dtype)e->embed->dtype);
  if (e->poison == TPD_OK)
    for (int t = 0; t < T; t++)
      tpd_convert((uint8_t *)e->h_embed + (size_t)t * D * as, at, emb + (size_t)tokens[t] * row_bytes,
                  (tpd_dtype)e->embed->dtype, (size_t)D);
  OP(b->upload(be, e->x, e->h_embed, (size_t)T * D * as));

  const int graph = graphs_possible(e) && T == n_last && T <= e->kv.max_slots && lp_k < 0 && e->poison == TPD_OK;
  tpd_step_meta meta = {.T = T, .max_blocks = e->kv.max_blocks, .block_size = e->kv.block_size,
                        .max_ctx = graph ? e->kv.max_ctx : max_ctx};
  if (b->host_memory) {
    meta.pos = e->h_pos;
    meta.slot = e->h_slot;
    meta.block_table = e->kv.table;
    tpd_kv_clean(&e->kv); /* the kernels read the table itself */
  } else {
    OP(b->upload(be, e->d_pos, e->h_pos, sizeof(int32_t) * (size_t)T));
    OP(b->upload(be, e->d_slot, e->h_slot, sizeof(int32_t) * (size_t)T));
    OP(upload_changed_rows(e));
    meta.pos = e->d_pos;
    meta.slot = e->d_slot;
    meta.block_table = e->d_table;
  }
  if (graph && run_graph(e, &meta, n_last, max_ctx)) return;
  forward_body(e, &meta, n_last, lp_k);
}
