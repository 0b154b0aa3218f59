/* Megatron-style tensor-parallel shard plan for one rank.
 *
 *   q_proj, k_proj, v_proj  split by heads (output rows); KV heads replicated
 *                           when the TP degree exceeds them (tp % Hkv == 0)
 *   o_proj                  split by input columns (the local q heads)
 *   gate_proj, up_proj      split by output rows  [ffn.begin, ffn.end)
 *   down_proj               split by input columns [ffn.begin, ffn.end)
 *   lm_head                 split by vocab rows    [vocab.begin, vocab.end)
 *   norms, embeddings       replicated (embedding rows are read per step)
 * Two all-reduces per layer: after o_proj and after down_proj. */
#ifndef TPD_SHARD_H
#define TPD_SHARD_H

#include "runtime/model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int begin, end; /* [begin, end) */
} tpd_range;

typedef struct {
  int tp, rank;
  int q_head0, n_q_heads;   /* local query heads */
  int kv_head0, n_kv_heads; /* local KV heads */
  tpd_range ffn;            /* local FFN columns */
  tpd_range vocab;          /* local vocab rows */
  int vocab_chunk;          /* ceil(V / tp): stride of gathered logits */
} tpd_shard_plan;

tpd_status tpd_shard_plan_make(const tpd_model_config *cfg, int tp, int rank, tpd_shard_plan *out);

#ifdef __cplusplus
}
#endif
#endif
