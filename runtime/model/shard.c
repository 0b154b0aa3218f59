#include "runtime/model/shard.h"

#include <string.h>

tpd_status tpd_shard_plan_make(const tpd_model_config *c, int tp, int rank, tpd_shard_plan *p) {
  memset(p, 0, sizeof *p);
  if (tp < 1 || rank < 0 || rank >= tp) return TPD_FAIL(TPD_ERR_ARG, "rank %d of TP degree %d", rank, tp);
  if (c->n_heads % tp)
    return TPD_FAIL(TPD_ERR_ARG, "num_attention_heads (%d) is not divisible by the TP degree (%d)", c->n_heads, tp);
  if (c->n_kv_heads % tp && tp % c->n_kv_heads)
    return TPD_FAIL(TPD_ERR_ARG,
                    "num_key_value_heads (%d) and the TP degree (%d): one must divide the other", c->n_kv_heads, tp);
  if (c->ffn_dim < tp)
    return TPD_FAIL(TPD_ERR_ARG, "intermediate_size (%d) is smaller than the TP degree (%d)", c->ffn_dim, tp);
  if (c->vocab < tp) return TPD_FAIL(TPD_ERR_ARG, "vocab_size (%d) is smaller than the TP degree (%d)", c->vocab, tp);
  p->tp = tp;
  p->rank = rank;
  p->n_q_heads = c->n_heads / tp;
  p->q_head0 = rank * p->n_q_heads;
  if (c->n_kv_heads >= tp) {
    p->n_kv_heads = c->n_kv_heads / tp;
    p->kv_head0 = rank * p->n_kv_heads;
  } else { /* each rank's query heads fall in one KV group: replicate that head */
    p->n_kv_heads = 1;
    p->kv_head0 = p->q_head0 / (c->n_heads / c->n_kv_heads);
  }
  p->ffn.begin = (int)((long)c->ffn_dim * rank / tp);
  p->ffn.end = (int)((long)c->ffn_dim * (rank + 1) / tp);
  p->vocab_chunk = (c->vocab + tp - 1) / tp;
  p->vocab.begin = rank * p->vocab_chunk < c->vocab ? rank * p->vocab_chunk : c->vocab;
  p->vocab.end = (rank + 1) * p->vocab_chunk < c->vocab ? (rank + 1) * p->vocab_chunk : c->vocab;
  if (p->vocab.end <= p->vocab.begin)
    return TPD_FAIL(TPD_ERR_ARG, "vocab_size (%d) leaves rank %d of %d no vocab rows", c->vocab, rank, tp);
  return TPD_OK;
}
