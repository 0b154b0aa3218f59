/* The engine's state, shared by its two halves: engine_load.c (loading the
 * shard, buffers, create/destroy) and engine.c (options, sequences, the
 * step).  Not part of the public API. */
#ifndef TPD_ENGINE_INTERNAL_H
#define TPD_ENGINE_INTERNAL_H

#include "kernels/backend.h"
#include "runtime/engine/kvcache.h"
#include "runtime/engine/mem_plan.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/shard.h"
#include "runtime/engine/tpdecode.h"

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

  /* Memory (mem_plan.c): one arena per memory space, sized at create */
  tpd_mem_plan mem;
  void *step_arena; /* backend memory: the step buffers below (mem.act_bytes) */
  void *kv_storage; /* backend memory: the KV cache (mem.kv_bytes) */
  void *host_arena; /* host memory: the host buffers below, KV bookkeeping, sampler scratch (mem.host_bytes) */

  /* backend buffers, in step_arena */
  void *x, *h, *qkv, *att, *proj, *gu, *act, *last;
  float *logits, *amax_val;
  int32_t *amax_idx;
  int32_t *d_pos, *d_slot, *d_table; /* d_table: the KV pool's table itself on a host-memory backend */

  /* host buffers, in host_arena */
  int32_t *h_pos, *h_slot, *h_last_rows, *h_last_item;
  int32_t *h_tok;      /* [T_cap] token ids of one forward */
  void *h_embed;
  float *h_stage;      /* device backend + host comm: all-reduce staging, [T_cap, D] f32 */
  void *h_stage_act;
  float *h_logits;     /* [max_seqs, vocab_chunk] local slice, padded */
  float *h_logits_all; /* [tp, max_seqs, vocab_chunk] */
  float *h_full;       /* [vocab] one sequence's full logits */
  float *h_vals;       /* [max_seqs] local argmax values */
  int32_t *h_idxs;     /* [max_seqs] local argmax indices */
  struct pair { float val; int32_t idx; } *h_pairs, *h_pairs_all;
  tpd_sampler_scratch ss;
};

#endif
