/* Model configuration read from a Hugging Face config.json, as written by
 * transformers 4 (rope_theta + rope_scaling) or 5 (rope_parameters).
 * Supported: Llama 2/3/3.1, Mistral, Qwen2; RoPE types default, linear and
 * llama3.  A field that changes the computation and is not implemented
 * (another rope_type, partial_rotary_factor != 1, softcapping, quantization,
 * sliding layers in Qwen2, ...) is an error naming the field. */
#ifndef TPD_CONFIG_H
#define TPD_CONFIG_H

#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TPD_MAX_EOS 8

typedef struct {
  char model_type[32];  /* "llama", "mistral", "qwen2" */
  int dim;              /* D: hidden_size */
  int n_layers;
  int n_heads;          /* Hq */
  int n_kv_heads;       /* Hkv (GQA when < Hq) */
  int head_dim;         /* Dh */
  int ffn_dim;          /* F: intermediate_size */
  int vocab;            /* V */
  int max_pos;          /* max_position_embeddings */
  double norm_eps;
  double rope_theta;
  int rope_llama3;      /* rope_type "llama3" (rope_scaling or rope_parameters) */
  int rope_linear;      /* rope_type "linear": every frequency divided by rope_factor */
  double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
  int rope_orig_max_pos;
  int tie_embeddings;
  int qkv_bias;         /* q/k/v projections carry a bias (Qwen2, attention_bias) */
  int o_bias;           /* o_proj carries a bias (attention_bias) */
  int mlp_bias;         /* gate/up/down carry biases (mlp_bias) */
  int sliding_window;   /* 0: full attention */
  int bos_id;
  int eos_ids[TPD_MAX_EOS];
  int n_eos;
} tpd_model_config;

/* Reads and validates <dir>/config.json. */
tpd_status tpd_config_load(const char *dir, tpd_model_config *cfg);
/* Parses config text (path only names the source in messages). */
tpd_status tpd_config_parse(const char *json_text, const char *path, tpd_model_config *cfg);

/* Rotary inverse frequencies, Hugging Face semantics, linear or llama3 scaling applied:
 * out[i] for i < head_dim/2. */
void tpd_rope_inv_freq(const tpd_model_config *cfg, double *out);

/* Parameter count (weights only, tied embeddings counted once). */
double tpd_config_n_params(const tpd_model_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
