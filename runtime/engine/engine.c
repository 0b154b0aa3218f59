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
  switch ((int)opt) { /* int: TPD_OPT_SKIP_ALLREDUCE (bench_hooks.h) is outside the public enum */
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
                             (double)tpd_dtype_size(e->be->ops->kv_dtype);
  info->embed_row_bytes = (double)e->cfg.dim * (double)tpd_dtype_size((tpd_dtype)e->embed->dtype);
  info->weight_dtype = e->layers[0].qkv.dtype;
  info->act_dtype = e->be->ops->act_dtype;
  info->tp = e->plan.tp;
  info->backend = e->be->ops->name;
  info->kernels = e->be->kernels ? e->be->kernels : e->be->ops->name;
  info->n_threads = e->n_threads;
  info->kv_bytes = (double)e->mem.kv_bytes;
  info->act_bytes = (double)e->mem.act_bytes;
  info->workspace_bytes = (double)e->mem.ws_bytes;
  info->host_bytes = (double)e->mem.host_bytes;
}

tpd_status tpd_engine_seq_open(tpd_engine *e, int *slot) { return tpd_kv_acquire(&e->kv, slot); }
void tpd_engine_seq_close(tpd_engine *e, int slot) { tpd_kv_release(&e->kv, slot); }
tpd_status tpd_engine_seq_skip(tpd_engine *e, int slot, int n_tokens) {
  if (!e) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_seq_skip: engine is NULL");
  if (slot < 0 || slot >= e->kv.max_slots || !e->kv.in_use[slot])
    return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_seq_skip: slot %d is not open", slot);
  if (n_tokens < 0) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_seq_skip: n_tokens = %d is negative", n_tokens);
  if (n_tokens > e->kv.max_ctx - e->kv.n_tokens[slot]) /* 0 <= n_tokens[slot] <= max_ctx: no overflow */
    return TPD_FAIL(TPD_ERR_ARG,
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
static tpd_status staged_allreduce(tpd_engine *e, void *buf, size_t n) {
  const tpd_dtype at = e->be->ops->act_dtype;
  TPD_TRY(e->be->ops->download(e->be, e->h_stage_act, buf, n * tpd_dtype_size(at)));
  tpd_convert(e->h_stage, TPD_F32, e->h_stage_act, at, n);
  TPD_TRY(e->comm->ops->allreduce(e->comm, e->h_stage, n, TPD_F32, NULL));
  tpd_convert(e->h_stage_act, at, e->h_stage, TPD_F32, n);
  return e->be->ops->upload(e->be, buf, e->h_stage_act, n * tpd_dtype_size(at));
}

static tpd_status ar_start(tpd_engine *e, void *buf, size_t n, ar_op *op) {
  op->active = 0;
  op->event = -1;
  if (e->plan.tp == 1 || e->skip_allreduce) return TPD_OK;
  const tpd_backend_ops *b = e->be->ops;
  const tpd_dtype at = b->act_dtype;
  if (device_comm(e)) { /* the comm stream waits for the data, runs the collective, signals */
    const int ready = next_event(e), done = next_event(e);
    TPD_TRY(b->event_record(e->be, ready, 0));
    TPD_TRY(b->event_wait(e->be, ready, 1));
    TPD_TRY(e->comm->ops->allreduce(e->comm, buf, n, at, b->comm_stream(e->be)));
    TPD_TRY(b->event_record(e->be, done, 1));
    op->event = done;
    op->active = 1;
    return TPD_OK;
  }
  if (e->comm->ops->data_on_device != b->host_memory) {
    if (e->overlap) {
      TPD_TRY(e->comm->ops->allreduce_start(e->comm, buf, n, at, b->stream(e->be), &op->req));
      op->active = 1;
      return TPD_OK;
    }
    return e->comm->ops->allreduce(e->comm, buf, n, at, b->stream(e->be));
  }
  return staged_allreduce(e, buf, n);
}

static tpd_status ar_wait(tpd_engine *e, ar_op *op) {
  if (!op->active) return TPD_OK;
  op->active = 0;
  if (op->event >= 0) return e->be->ops->event_wait(e->be, op->event, 0);
  return e->comm->ops->wait(e->comm, &op->req);
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

static tpd_status wait_all(tpd_engine *e, mbatch *mb) {
  for (int i = 0; i < mb->n_ar; i++) TPD_TRY(ar_wait(e, &mb->ar[i]));
  mb->n_ar = 0;
  return TPD_OK;
}

/* Row-parallel projection y = a . W^T (+ bias on rank 0), then its all-reduce.
 * A single row is cut into chunks of output columns, each chunk's all-reduce
 * started before the next chunk is computed. */
static tpd_status row_parallel(tpd_engine *e, mbatch *mb, const void *a, int lda, const tpd_weight *w,
                               const float *bias) {
  const tpd_backend_ops *b = e->be->ops;
  const int D = e->cfg.dim;
  void *y = rows_at(e, e->proj, mb->r0, D);
  int chunks = mb->n == 1 && e->overlap && b->weight_view && e->plan.tp > 1 ? e->ar_chunks : 1;
  if (chunks > AR_MAX) chunks = AR_MAX;
  const int step = chunks > 1 ? (D / chunks + 63) / 64 * 64 : D;
  for (int n0 = 0; n0 < D; n0 += step) {
    const int nn = D - n0 < step ? D - n0 : step;
    tpd_weight view = *w;
    if (nn < D) TPD_TRY(b->weight_view(e->be, w, n0, nn, &view));
    tpd_matmul_args m = {mb->n, a, lda, &view, bias ? bias + n0 : NULL, (uint8_t *)y + (size_t)n0 * tpd_dtype_size(b->act_dtype), D,
                         b->act_dtype};
    TPD_TRY(b->matmul(e->be, &m));
    TPD_TRY(ar_start(e, nn < D ? m.y : y, nn < D ? (size_t)nn : (size_t)mb->n * D, &mb->ar[mb->n_ar++]));
  }
  return TPD_OK;
}

static tpd_status attn_part(tpd_engine *e, int l, mbatch *mb) {
  const tpd_model_config *c = &e->cfg;
  const tpd_backend_ops *b = e->be->ops;
  const layer_w *L = &e->layers[l];
  const int D = c->dim, Dh = c->head_dim;
  TPD_TRY(wait_all(e, mb));
  void *h = rows_at(e, e->h, mb->r0, D), *qkv = rows_at(e, e->qkv, mb->r0, e->qkv_w);
  void *att = rows_at(e, e->att, mb->r0, e->q_w);
  tpd_rmsnorm_args n1 = {mb->n, D, rows_at(e, e->x, mb->r0, D), l ? rows_at(e, e->proj, mb->r0, D) : NULL, L->ln1,
                         (float)c->norm_eps, h};
  TPD_TRY(b->rmsnorm(e->be, &n1));
  tpd_matmul_args mq = {mb->n, h, D, &L->qkv, L->b_qkv, qkv, e->qkv_w, b->act_dtype};
  TPD_TRY(b->matmul(e->be, &mq));
  tpd_rope_kv_args rk = {&mb->meta, e->plan.n_q_heads, e->plan.n_kv_heads, Dh, qkv, e->inv_freq, L->k, L->v};
  TPD_TRY(b->rope_kv(e->be, &rk));
  tpd_attention_args aa = {&mb->meta, e->plan.n_q_heads, e->plan.n_kv_heads, Dh, qkv, e->qkv_w, L->k, L->v, att,
                           c->sliding_window, (float)(1.0 / sqrt((double)Dh))};
  TPD_TRY(b->attention(e->be, &aa));
  return row_parallel(e, mb, att, e->q_w, &L->o, L->b_o);
}

static tpd_status mlp_part(tpd_engine *e, int l, mbatch *mb) {
  const tpd_model_config *c = &e->cfg;
  const tpd_backend_ops *b = e->be->ops;
  const layer_w *L = &e->layers[l];
  const int D = c->dim;
  TPD_TRY(wait_all(e, mb));
  void *h = rows_at(e, e->h, mb->r0, D), *act = rows_at(e, e->act, mb->r0, e->ffn_l);
  tpd_rmsnorm_args n2 = {mb->n, D, rows_at(e, e->x, mb->r0, D), rows_at(e, e->proj, mb->r0, D), L->ln2,
                         (float)c->norm_eps, h};
  TPD_TRY(b->rmsnorm(e->be, &n2));
  tpd_matmul_args mg = {mb->n, h, D, &L->gu, L->b_gu, e->gu ? rows_at(e, e->gu, mb->r0, 2 * e->ffn_l) : NULL, 2 * e->ffn_l,
                        b->act_dtype};
  if (b->matmul_swiglu) {
    TPD_TRY(b->matmul_swiglu(e->be, &mg, act, e->ffn_l));
  } else {
    TPD_TRY(b->matmul(e->be, &mg));
    tpd_swiglu_args sw = {mb->n, e->ffn_l, mg.y, act};
    TPD_TRY(b->swiglu(e->be, &sw));
  }
  return row_parallel(e, mb, act, e->ffn_l, &L->down, L->b_down);
}

/* Everything after the step's inputs are on the device: layers, final norm,
 * LM head, local argmax.  Captured as a graph for decode steps on a device. */
static tpd_status forward_body(tpd_engine *e, const tpd_step_meta *meta, int n_last) {
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
    for (int i = 0; i < n_mb; i++) TPD_TRY(attn_part(e, l, &mb[i]));
    for (int i = 0; i < n_mb; i++) TPD_TRY(mlp_part(e, l, &mb[i]));
  }
  for (int i = 0; i < n_mb; i++) TPD_TRY(wait_all(e, &mb[i]));
  tpd_rmsnorm_args fin = {T, D, e->x, e->proj, e->final_norm, (float)c->norm_eps, e->h};
  TPD_TRY(b->rmsnorm(e->be, &fin));
  TPD_TRY(b->gather_rows(e->be, e->last, e->h, e->h_last_rows, n_last, D));
  tpd_matmul_args ml = {n_last, e->last, D, &e->lm_head, NULL, e->logits, e->V_l, TPD_F32};
  TPD_TRY(b->matmul(e->be, &ml));
  tpd_argmax_args am = {n_last, e->V_l, e->logits, e->amax_val, e->amax_idx, e->plan.vocab.begin};
  return b->argmax(e->be, &am);
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

static tpd_status forward(tpd_engine *e, int T, const int32_t *tokens, int n_last, int max_ctx) {
  const tpd_model_config *c = &e->cfg;
  const tpd_backend_ops *b = e->be->ops;
  tpd_backend *be = e->be;
  const int D = c->dim;
  const tpd_dtype at = b->act_dtype;
  const size_t as = tpd_dtype_size(at);

  /* embedding rows straight from the mapped file: only the rows in use are read */
  const uint8_t *emb = tpd_st_data(e->st, e->embed);
  const size_t row_bytes = (size_t)D * tpd_dtype_size((tpd_dtype)e->embed->dtype);
  for (int t = 0; t < T; t++)
    tpd_convert((uint8_t *)e->h_embed + (size_t)t * D * as, at, emb + (size_t)tokens[t] * row_bytes,
                (tpd_dtype)e->embed->dtype, (size_t)D);
  TPD_TRY(b->upload(be, e->x, e->h_embed, (size_t)T * D * as));

  /* a decode step (one token per sequence) on a device replays a graph */
  const int graph = graphs_possible(e) && T == n_last && T <= e->kv.max_slots;
  tpd_step_meta meta = {.T = T, .max_blocks = e->kv.max_blocks, .block_size = e->kv.block_size,
                        .max_ctx = graph ? e->kv.max_ctx : max_ctx};
  if (b->host_memory) {
    meta.pos = e->h_pos;
    meta.slot = e->h_slot;
    meta.block_table = e->kv.table;
    tpd_kv_clean(&e->kv); /* the kernels read the table itself */
  } else {
    TPD_TRY(b->upload(be, e->d_pos, e->h_pos, sizeof(int32_t) * (size_t)T));
    TPD_TRY(b->upload(be, e->d_slot, e->h_slot, sizeof(int32_t) * (size_t)T));
    TPD_TRY(upload_changed_rows(e));
    meta.pos = e->d_pos;
    meta.slot = e->d_slot;
    meta.block_table = e->d_table;
  }
  if (!graph) return forward_body(e, &meta, n_last);
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
      const tpd_status body = forward_body(e, &meta, n_last);
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
      meta.max_ctx = max_ctx;
      return forward_body(e, &meta, n_last);
    }
    TPD_DEBUG("captured the decode step for batch %d as a graph", T);
  }
  return b->graph_launch(be, e->graphs[T]);
}

/* Picks the next token of each finished item from the vocab-parallel logits.
 * Greedy items without requested logits need only each rank's (max, argmax)
 * pair; otherwise the local slices are gathered into full rows. */
static tpd_status select_tokens(tpd_engine *e, const tpd_step_item *items, int n_last, int32_t *out_tokens,
                                float *out_logits) {
  const tpd_backend_ops *b = e->be->ops;
  const int tp = e->plan.tp, chunk = e->plan.vocab_chunk, V = e->cfg.vocab;
  int need_full = out_logits != NULL;
  for (int i = 0; i < n_last; i++)
    if (!tpd_sampling_is_greedy(&items[e->h_last_item[i]].sampling)) need_full = 1;
  if (!need_full) { /* the step computed each row's local (max, argmax) */
    TPD_TRY(b->download(e->be, e->h_vals, e->amax_val, sizeof(float) * (size_t)n_last));
    TPD_TRY(b->download(e->be, e->h_idxs, e->amax_idx, sizeof(int32_t) * (size_t)n_last));
    for (int i = 0; i < n_last; i++) e->h_pairs[i] = (struct pair){e->h_vals[i], e->h_idxs[i]};
    TPD_TRY(e->comm->ops->host_allgather(e->comm, e->h_pairs, e->h_pairs_all, sizeof(struct pair) * (size_t)n_last));
    for (int i = 0; i < n_last; i++) {
      struct pair best = e->h_pairs_all[i];
      for (int r = 1; r < tp; r++) {
        const struct pair p = e->h_pairs_all[(size_t)r * n_last + i];
        if (p.val > best.val || (p.val == best.val && p.idx < best.idx)) best = p;
      }
      out_tokens[e->h_last_item[i]] = best.idx;
    }
    return TPD_OK;
  }
  for (int i = 0; i < n_last; i++)
    TPD_TRY(b->download(e->be, e->h_logits + (size_t)i * chunk, e->logits + (size_t)i * e->V_l,
                        sizeof(float) * (size_t)e->V_l));
  TPD_TRY(e->comm->ops->host_allgather(e->comm, e->h_logits, e->h_logits_all,
                                       sizeof(float) * (size_t)n_last * chunk));
  for (int i = 0; i < n_last; i++) {
    for (int r = 0; r < tp; r++) {
      const int v0 = r * chunk, n = v0 + chunk <= V ? chunk : V - v0;
      if (n > 0)
        memcpy(e->h_full + v0, e->h_logits_all + ((size_t)r * n_last + i) * chunk, sizeof(float) * (size_t)n);
    }
    const int it = e->h_last_item[i];
    const tpd_step_item *item = &items[it];
    const uint64_t counter = (uint64_t)(e->kv.n_tokens[item->slot] + item->n_tokens);
    TPD_TRY(tpd_sample(e->h_full, V, &item->sampling, item->stream, counter, &e->ss, &out_tokens[it]));
    if (out_logits) memcpy(out_logits + (size_t)it * V, e->h_full, sizeof(float) * (size_t)V);
  }
  return TPD_OK;
}

static tpd_status check_items(const tpd_engine *e, const tpd_step_item *items, int n_items) {
  if (n_items < 1) return TPD_FAIL(TPD_ERR_ARG, "step with no sequences");
  if (n_items > e->kv.max_slots)
    return TPD_FAIL(TPD_ERR_ARG, "step with %d sequences; the engine holds %d", n_items, e->kv.max_slots);
  for (int i = 0; i < n_items; i++) {
    const tpd_step_item *it = &items[i];
    if (it->slot < 0 || it->slot >= e->kv.max_slots || !e->kv.in_use[it->slot])
      return TPD_FAIL(TPD_ERR_ARG, "sequence %d: slot %d is not open", i, it->slot);
    for (int j = 0; j < i; j++)
      if (items[j].slot == it->slot) return TPD_FAIL(TPD_ERR_ARG, "slot %d appears twice in one step", it->slot);
    if (it->n_tokens < 1 || !it->tokens) return TPD_FAIL(TPD_ERR_ARG, "sequence %d: no tokens", i);
    /* compared by subtraction: a huge n_tokens must not wrap the sum */
    if (it->n_tokens > e->kv.max_ctx - e->kv.n_tokens[it->slot])
      return TPD_FAIL(TPD_ERR_ARG, "sequence %d: %d cached + %d new tokens exceed the context of %d", i,
                      e->kv.n_tokens[it->slot], it->n_tokens, e->kv.max_ctx);
    for (int j = 0; j < it->n_tokens; j++)
      if (it->tokens[j] < 0 || it->tokens[j] >= e->cfg.vocab)
        return TPD_FAIL(TPD_ERR_ARG, "sequence %d: token id %d is outside the vocabulary [0, %d)", i, it->tokens[j],
                        e->cfg.vocab);
    const tpd_sampling *s = &it->sampling;
    if (!(s->temperature >= 0) || s->top_k < 0 || !(s->top_p >= 0))
      return TPD_FAIL(TPD_ERR_ARG, "sequence %d: sampling needs temperature >= 0, top_k >= 0, top_p >= 0", i);
  }
  return TPD_OK;
}

tpd_status tpd_engine_step(tpd_engine *e, const tpd_step_item *items, int n_items, int32_t *out_tokens,
                           float *out_logits) {
  TPD_TRY(check_items(e, items, n_items));
  for (int i = 0; i < n_items; i++) TPD_TRY(tpd_kv_reserve(&e->kv, items[i].slot, items[i].n_tokens));
  int32_t *tok = e->h_tok;
  tpd_status s = TPD_OK;
  int item = 0, off = 0;
  while (item < n_items && s == TPD_OK) {
    /* fill one forward with up to T_cap tokens; a long prompt spans forwards */
    int T = 0, n_last = 0, max_ctx = 0;
    while (item < n_items && T < e->T_cap) {
      const tpd_step_item *it = &items[item];
      const int take = it->n_tokens - off < e->T_cap - T ? it->n_tokens - off : e->T_cap - T;
      const int base = e->kv.n_tokens[it->slot] + off;
      for (int j = 0; j < take; j++) {
        e->h_pos[T + j] = base + j;
        e->h_slot[T + j] = it->slot;
        tok[T + j] = it->tokens[off + j];
      }
      if (base + take > max_ctx) max_ctx = base + take;
      T += take;
      off += take;
      if (off == it->n_tokens) {
        e->h_last_rows[n_last] = T - 1;
        e->h_last_item[n_last] = item;
        n_last++;
        item++;
        off = 0;
      }
    }
    s = forward(e, T, tok, n_last, max_ctx);
    if (s == TPD_OK && n_last > 0) s = select_tokens(e, items, n_last, out_tokens, out_logits);
  }
  if (s != TPD_OK) return s;
  for (int i = 0; i < n_items; i++) e->kv.n_tokens[items[i].slot] += items[i].n_tokens;
  return TPD_OK;
}
