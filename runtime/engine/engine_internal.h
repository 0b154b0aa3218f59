/* The engine's state, shared by its two halves: engine_load.c (loading the
 * shard, buffers, create/destroy) and engine.c (options, sequences, the
 * step).  Not part of the public API. */
#ifndef TPD_ENGINE_INTERNAL_H
#define TPD_ENGINE_INTERNAL_H

#include "kernels/backend.h"
#include "runtime/engine/kvcache.h"
#include "runtime/engine/mem_plan.h"
#include "runtime/engine/plan_msg.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/shard.h"
#include "runtime/engine/tpdecode.h"

#define TPD_POISON_MSG 176

typedef struct {
  tpd_weight qkv, o, gu, down;
  float *ln1, *ln2;                   /* [D] */
  float *b_qkv, *b_o, *b_gu, *b_down; /* biases or NULL (b_o, b_down only on rank 0) */
  void *k, *v;                        /* this layer's KV storage */
} layer_w;

struct tpd_engine {
  tpd_model_config cfg;
  tpd_shard_plan plan;
  tpd_comm *comm;
  tpd_backend *be;
  tpd_st *st;
  const tpd_st_tensor *embed;
  layer_w *layers;
  float *final_norm;
  tpd_weight lm_head;
  double *inv_freq;
  tpd_kv_pool kv;
  size_t kv_host_bytes; /* the KV pool's bookkeeping, placed in host_arena */
  int T_cap, n_threads;
  int overlap;        /* micro-batch ping-pong and chunked all-reduce */
  int ar_chunks;      /* chunks of a single row's row-parallel output */
  int use_graphs;     /* capture decode steps as device graphs */
  int skip_allreduce; /* benchmarks only: leave out communication (wrong results) */
  int event_ring;
  void **graphs;      /* [max_seqs + 1] captured decode step per batch size */
  struct sched_key {  /* what the captured graphs were recorded with (see sched_key_of) */
    int overlap, ar_chunks, skip_allreduce, act_dtype;
    const void *be, *comm, *x;
  } graph_key;
  int q_w, qkv_w, ffn_l, V_l; /* local widths */
  int max_seqs;
  double weight_bytes;
  int counting; /* the loading pass that only counts weight bytes (the plan) */

  /* Role and health */
  int mode;             /* tpd_engine_mode */
  int live;             /* created on every rank (the followers may be waiting for plans) */
  int shut_down;        /* leader: shutdown sent; follower: received */
  int unusable;         /* an agreed fatal failure happened */
  tpd_status poison;    /* a failure inside the current forward: compute stops, collectives go on */
  char poison_msg[TPD_POISON_MSG];
  struct { long after; tpd_status status; } fault; /* test hook (bench_hooks.h): fail forward `after` */
  long n_forwards;      /* forwards run on this rank */

  /* Leader/follower (leader.c): the op log since the last plan, the message */
  tpd_plan_op *ops;     /* [max_ops] */
  int n_ops, max_ops;
  void *plan_buf;       /* [plan_cap] */
  size_t plan_cap;
  uint64_t plan_seq;

  /* One step's forwards (engine_step.c) */
  tpd_plan_item *part;  /* [max_seqs] items of one forward */
  int32_t *part_orig;   /* [max_seqs] the caller's item of each */
  int32_t *pend_len;    /* [max_seqs] per slot: length after the step, or -1 */
  tpd_step_output *h_out; /* [max_seqs] outputs nobody asked for (followers, tpd_engine_step) */

  /* Memory (mem_plan.c): one arena per memory space, sized at create */
  tpd_mem_plan mem;
  void *step_arena; /* backend memory: the step buffers below (mem.act_bytes) */
  void *kv_storage; /* backend memory: the KV cache (mem.kv_bytes) */
  void *host_arena; /* host memory: the host buffers below, KV bookkeeping, sampler scratch (mem.host_bytes) */

  /* backend buffers, in step_arena */
  void *x, *h, *qkv, *att, *proj, *gu, *act, *last;
  float *logits, *amax_val;
  int32_t *amax_idx;
  float *st_max, *st_sum, *st_topv; /* logit_stats: [max_seqs], [max_seqs], [max_seqs, TPD_LOGIT_TOPK_MAX] */
  int32_t *st_topi;
  int32_t *d_pos, *d_slot, *d_table; /* d_table: the KV pool's table itself on a host-memory backend */

  /* host buffers, in host_arena */
  int32_t *h_pos, *h_slot, *h_last_rows, *h_last_item;
  int32_t *h_tok;      /* [T_cap] token ids of one forward */
  void *h_embed;
  float *h_stage;      /* device backend + host comm: all-reduce staging, [T_cap, D] f32 */
  void *h_stage_act;
  void *h_rec;          /* [rec_cap] this rank's record of a forward (engine_out.c) */
  void *h_rec_all;      /* [tp, rec_cap] every rank's */
  size_t rec_cap;
  float *h_full;       /* [vocab] one sequence's full logits */
  tpd_sampler_scratch ss;
};

/* engine.c: one forward of T tokens; the rows h_last_rows[0..n_last) get
 * logits and the local argmax (and logit_stats when lp_k >= 0).  A failure
 * poisons the forward (tpd_eng_poison) instead of returning: the collectives
 * still run, so that every rank reaches the record gather. */
void tpd_eng_forward(tpd_engine *e, int T, const int32_t *tokens, int n_last, int max_ctx, int lp_k);
/* Records the first failure of this forward; later ones are dropped. */
void tpd_eng_poison(tpd_engine *e, tpd_status s);

/* engine_out.c: gathers every rank's record of the forward (status and
 * message, local argmax, logit statistics, and the local logits when a row
 * samples or out_logits is wanted), agrees on the status and fills the
 * outputs of the rows.  Returns the agreed status. */
tpd_status tpd_eng_finish(tpd_engine *e, const tpd_plan_item *items, int n_last, int lp_k, int need_full,
                          const int32_t *orig, tpd_step_output *out, float *out_logits);
/* The size the record buffers need. */
size_t tpd_eng_rec_cap(const tpd_engine *e);

/* engine_step.c: runs one forward over plan items (positions given), with
 * the agreement; outputs go to out[orig[i]] (and out_logits rows). */
tpd_status tpd_eng_run_part(tpd_engine *e, const tpd_plan_item *items, int n_items, const int32_t *tokens,
                            const int32_t *orig, tpd_step_output *out, float *out_logits);
/* Applies the pending lengths of a finished step (or drops them). */
void tpd_eng_commit(tpd_engine *e, int ok);

/* leader.c */
int tpd_eng_max_ops(int max_seqs);
tpd_status tpd_eng_push_op(tpd_engine *e, int op, int a, int b);
tpd_status tpd_eng_send_plan(tpd_engine *e, int kind, uint32_t flags, const tpd_plan_item *items, int n_items,
                             const int32_t *tokens, int n_tokens);
tpd_status tpd_eng_apply_option(tpd_engine *e, int opt, int value);

#endif
