/* Speed-of-light model of one tensor-parallel decode step: the shortest time
 * the hardware could take, from the bytes each rank must read, the flops it
 * must do and the all-reduces it must wait for.  Pure arithmetic, no I/O.
 * docs/performance.md derives every formula; this header states them.
 *
 * Glossary: B batch (sequences, one new token each), C context (positions
 * each sequence attends to in this step, the new one included), D model dim,
 * L layers, Hq / Hkv query / KV heads, Dh head dim, F FFN width, V vocab,
 * tp the TP degree.  Per rank k (the shard plan of runtime/model/shard.h):
 *   Hq_r = Hq / tp      Hkv_r = Hkv / tp, or 1 when tp > Hkv (replicated)
 *   F_k = floor(F (k+1) / tp) - floor(F k / tp)
 *   V_k = rows of [k ceil(V / tp), (k+1) ceil(V / tp)) inside [0, V)
 * Weight elements (projections + lm_head) of the slowest rank, the one with the most:
 *   P_r = max over k of  L (D (Hq_r + 2 Hkv_r) Dh + Hq_r Dh D + 3 D F_k) + V_k D
 *   (F_r, V_r: that rank's shares)
 * Bytes per step per rank:
 *   weights  = P_r w + (2L + 1) D n            w, n: weight / norm element bytes
 *   KV       = B C 2 L Hkv_r Dh k              k: KV element bytes
 *   act      = B D e                           e: embedding element bytes (rows read)
 * Flops per step per rank:
 *   dense    = 2 B P_r
 *   attention= 4 B C L Hq_r Dh                 (q.k and p.v, 2 flops per MAC each)
 * All-reduce (ring, 2 per layer, message m = B D a bytes, a: activation bytes):
 *   t_ar     = alpha 2(tp-1) + m 2(tp-1)/tp / link_bw        (0 when tp = 1)
 * Floor:
 *   t_step   = max(bytes / mem_bw, flops / peak) + 2 L t_ar
 * Every user receives one token per step, so t_step is also the floor time
 * per output token; system tokens/s = B / t_step. */
#ifndef TPD_SOL_H
#define TPD_SOL_H

#include "runtime/model/config.h"
#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A model shape and the element sizes (bytes) each kind of tensor is stored in. */
typedef struct {
  char name[64];
  int dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab;
  double w_elem;    /* projections and lm_head */
  double norm_elem; /* RMSNorm weights (the CPU engine keeps them in f32) */
  double emb_elem;  /* embedding rows read per input token */
  double kv_elem;   /* one cached K or V element */
  double act_elem;  /* one activation element in the all-reduce */
} tpd_sol_model;

/* One accelerator (or one CPU rank) and the link between ranks.  Rates are
 * per rank; power 0 means unknown. */
typedef struct {
  char name[48];
  char source[64];    /* "datasheet", "measured", ... */
  double mem_bw;      /* bytes/s */
  double peak_flops;  /* flop/s, dense, in the weights' dtype */
  double link_bw;     /* bytes/s per direction per rank */
  double link_alpha;  /* s per ring step (hop) */
  double power_w;     /* W per rank; 0: unknown */
  double mem_bytes;   /* capacity per rank; 0: unknown (no capacity check) */
  int max_tp;         /* ranks in one node (8 for an HGX board); 0: no limit */
} tpd_sol_hw;

/* Every term of the floor of one step, per rank. */
typedef struct {
  int tp, batch;
  double ctx;
  int q_heads_r, kv_heads_r, ffn_r, vocab_r;
  double weight_elems;            /* P_r */
  double weight_bytes, kv_bytes, act_bytes, bytes;
  double flops_dense, flops_attn, flops;
  double ar_msg_bytes;            /* m */
  int n_allreduce;                /* 2 L when tp > 1 */
  int ar_hops;                    /* 2 (tp - 1) */
  double t_ar;                    /* s, one all-reduce */
  double t_mem, t_compute, t_comm; /* s */
  double t_step;                  /* s: the floor per step = per output token */
  int compute_bound;              /* t_compute > t_mem */
  double tok_s_user, tok_s_system, tok_s_rank;
  double tok_s_per_w;             /* system tokens/s / (tp power); 0 when power unknown */
  double j_per_token;             /* tp power t_step / B; 0 when power unknown */
  int fits;                       /* weights + embedding table + KV fit the rank's memory (1: capacity unknown) */
} tpd_sol_result;

/* Named shapes in bf16 throughout (a GPU build): "1b" (Llama 3.2 1B),
 * "8b" (Llama 3.1 8B), "70b" (Llama 3.1 70B). */
tpd_status tpd_sol_model_preset(const char *name, tpd_sol_model *out);
/* A shape from a loaded config with the given element sizes. */
void tpd_sol_model_from_config(const tpd_model_config *cfg, double w_elem, double norm_elem, double emb_elem,
                               double kv_elem, double act_elem, tpd_sol_model *out);

/* Datasheet presets: "h100" (H100 SXM5 80 GB), "h200" (H200 SXM 141 GB). */
tpd_status tpd_sol_hw_preset(const char *name, tpd_sol_hw *out);

/* Evaluates the floor.  Fails (TPD_ERR_ARG) when the shape cannot be split
 * tp ways (the same rules as the shard plan) or an input is out of range. */
tpd_status tpd_sol_eval(const tpd_sol_model *m, const tpd_sol_hw *hw, int tp, int batch, double ctx,
                        tpd_sol_result *out);

/* Compares a measured step time (seconds) with its floor r->t_step.
 * Returns measured / floor, or NaN when either is not a positive finite
 * number.  fault (cap bytes) receives "" when the comparison is sound, else
 * one line saying why the row is a measurement fault: a ratio below 1 means
 * the step ran faster than the speed of light, so an input of the floor was
 * too low ("measured faster than floor: probe too low (...)" when
 * hw->source is "measured", "... hardware figures too low (...)" otherwise). */
double tpd_sol_check(const tpd_sol_hw *hw, const tpd_sol_result *r, double measured_s, char *fault, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
