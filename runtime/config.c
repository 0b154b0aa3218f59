#include "runtime/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"

/* Reads an integer field; `required` fields must be present. */
static tpd_status get_int(const cJSON *root, const char *path, const char *key, int required,
                          int dflt, int *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!v || cJSON_IsNull(v)) {
    if (required) return TPD_FAIL(TPD_ERR_FORMAT, "%s: missing field \"%s\"", path, key);
    *out = dflt;
    return TPD_OK;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2e9)
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"%s\" must be an integer", path, key);
  *out = (int)v->valuedouble;
  return TPD_OK;
}

static tpd_status get_num(const cJSON *root, const char *path, const char *key, double dflt,
                          double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!v || cJSON_IsNull(v)) {
    *out = dflt;
    return TPD_OK;
  }
  if (!cJSON_IsNumber(v)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"%s\" must be a number", path, key);
  *out = v->valuedouble;
  return TPD_OK;
}

static tpd_status get_bool(const cJSON *root, const char *path, const char *key, int dflt, int *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!v || cJSON_IsNull(v)) {
    *out = dflt;
    return TPD_OK;
  }
  if (!cJSON_IsBool(v)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"%s\" must be true or false", path, key);
  *out = cJSON_IsTrue(v);
  return TPD_OK;
}

static tpd_status parse_rope_scaling(const cJSON *root, const char *path, tpd_model_config *c) {
  const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
  if (!rs || cJSON_IsNull(rs)) return TPD_OK;
  if (!cJSON_IsObject(rs)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"rope_scaling\" must be an object or null", path);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
  if (!t) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
  if (!cJSON_IsString(t))
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"rope_scaling.rope_type\" is missing", path);
  if (!strcmp(t->valuestring, "default")) return TPD_OK;
  if (strcmp(t->valuestring, "llama3"))
    return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                    "%s: rope_scaling.rope_type \"%s\" is not supported (supported: llama3)", path,
                    t->valuestring);
  c->rope_llama3 = 1;
  TPD_TRY(get_num(rs, path, "factor", 8.0, &c->rope_factor));
  TPD_TRY(get_num(rs, path, "low_freq_factor", 1.0, &c->rope_low_freq_factor));
  TPD_TRY(get_num(rs, path, "high_freq_factor", 4.0, &c->rope_high_freq_factor));
  TPD_TRY(get_int(rs, path, "original_max_position_embeddings", 1, 0, &c->rope_orig_max_pos));
  if (c->rope_factor <= 0 || c->rope_orig_max_pos <= 0 ||
      c->rope_high_freq_factor <= c->rope_low_freq_factor || c->rope_low_freq_factor <= 0)
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: rope_scaling (llama3) has inconsistent factors", path);
  return TPD_OK;
}

static tpd_status parse_eos(const cJSON *root, const char *path, tpd_model_config *c) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
  c->n_eos = 0;
  if (!v || cJSON_IsNull(v)) return TPD_OK;
  if (cJSON_IsNumber(v)) {
    c->eos_ids[c->n_eos++] = (int)v->valuedouble;
    return TPD_OK;
  }
  if (!cJSON_IsArray(v)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"eos_token_id\" must be an integer or a list", path);
  const cJSON *e;
  cJSON_ArrayForEach(e, v) {
    if (!cJSON_IsNumber(e)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"eos_token_id\" holds a non-integer", path);
    if (c->n_eos < TPD_MAX_EOS) c->eos_ids[c->n_eos++] = (int)e->valuedouble;
  }
  return TPD_OK;
}

static tpd_status parse_root(const cJSON *root, const char *path, tpd_model_config *c) {
  memset(c, 0, sizeof *c);
  if (!cJSON_IsObject(root)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: not a JSON object", path);

  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
  if (!cJSON_IsString(mt)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: missing field \"model_type\"", path);
  if (strcmp(mt->valuestring, "llama") && strcmp(mt->valuestring, "mistral") &&
      strcmp(mt->valuestring, "qwen2"))
    return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                    "%s: model_type \"%s\" is not supported (supported: llama, mistral, qwen2)", path,
                    mt->valuestring);
  snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
  const int is_qwen2 = !strcmp(c->model_type, "qwen2");
  const int is_mistral = !strcmp(c->model_type, "mistral");

  const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
  if (act && !(cJSON_IsString(act) && !strcmp(act->valuestring, "silu")))
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported (supported: silu)", path,
                    cJSON_IsString(act) ? act->valuestring : "?");

  TPD_TRY(get_int(root, path, "hidden_size", 1, 0, &c->dim));
  TPD_TRY(get_int(root, path, "num_hidden_layers", 1, 0, &c->n_layers));
  TPD_TRY(get_int(root, path, "num_attention_heads", 1, 0, &c->n_heads));
  TPD_TRY(get_int(root, path, "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads));
  TPD_TRY(get_int(root, path, "intermediate_size", 1, 0, &c->ffn_dim));
  TPD_TRY(get_int(root, path, "vocab_size", 1, 0, &c->vocab));
  TPD_TRY(get_int(root, path, "max_position_embeddings", 0, 2048, &c->max_pos));
  if (c->dim <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: hidden_size must be positive", path);
  if (c->n_layers <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: num_hidden_layers must be positive", path);
  if (c->n_heads <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: num_attention_heads must be positive", path);
  if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads)
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: num_key_value_heads (%d) must divide num_attention_heads (%d)",
                    path, c->n_kv_heads, c->n_heads);
  if (c->ffn_dim <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: intermediate_size must be positive", path);
  if (c->vocab <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: vocab_size must be positive", path);
  if (c->max_pos <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: max_position_embeddings must be positive", path);

  if (c->dim % c->n_heads && !cJSON_GetObjectItemCaseSensitive(root, "head_dim"))
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: hidden_size (%d) is not a multiple of num_attention_heads (%d) and no head_dim is given",
                    path, c->dim, c->n_heads);
  TPD_TRY(get_int(root, path, "head_dim", 0, c->dim / c->n_heads, &c->head_dim));
  if (c->head_dim <= 0 || c->head_dim % 2)
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: head_dim (%d) must be positive and even", path, c->head_dim);

  TPD_TRY(get_num(root, path, "rms_norm_eps", 1e-6, &c->norm_eps));
  TPD_TRY(get_num(root, path, "rope_theta", 10000.0, &c->rope_theta));
  if (c->rope_theta <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: rope_theta must be positive", path);
  TPD_TRY(parse_rope_scaling(root, path, c));
  TPD_TRY(get_bool(root, path, "tie_word_embeddings", 0, &c->tie_embeddings));

  int attention_bias = 0;
  TPD_TRY(get_bool(root, path, "attention_bias", 0, &attention_bias));
  TPD_TRY(get_bool(root, path, "mlp_bias", 0, &c->mlp_bias));
  c->qkv_bias = attention_bias || is_qwen2; /* Qwen2 always has q/k/v biases, never an o bias */
  c->o_bias = attention_bias && !is_qwen2;

  c->sliding_window = 0;
  if (is_mistral) {
    TPD_TRY(get_int(root, path, "sliding_window", 0, 0, &c->sliding_window));
    if (c->sliding_window < 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: sliding_window must be positive or null", path);
  } else if (is_qwen2) {
    int use_sw = 0;
    TPD_TRY(get_bool(root, path, "use_sliding_window", 0, &use_sw));
    if (use_sw)
      return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: use_sliding_window=true is not supported for qwen2", path);
  }
  TPD_TRY(get_int(root, path, "bos_token_id", 0, -1, &c->bos_id));
  TPD_TRY(parse_eos(root, path, c));
  return TPD_OK;
}

tpd_status tpd_config_parse(const char *text, const char *path, tpd_model_config *cfg) {
  cJSON *root = cJSON_Parse(text);
  if (!root) return TPD_FAIL(TPD_ERR_FORMAT, "%s: not valid JSON", path);
  tpd_status st = parse_root(root, path, cfg);
  cJSON_Delete(root);
  return st;
}

tpd_status tpd_config_load(const char *dir, tpd_model_config *cfg) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *text = NULL;
  TPD_TRY(tpd_read_text_file(path, &text, NULL));
  tpd_status st = tpd_config_parse(text, path, cfg);
  free(text);
  return st;
}

void tpd_rope_inv_freq(const tpd_model_config *c, double *out) {
  const int half = c->head_dim / 2;
  for (int i = 0; i < half; i++) {
    double f = 1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim);
    if (c->rope_llama3) {
      const double old_ctx = c->rope_orig_max_pos;
      const double low_wavelen = old_ctx / c->rope_low_freq_factor;
      const double high_wavelen = old_ctx / c->rope_high_freq_factor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = f / c->rope_factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_ctx / wavelen - c->rope_low_freq_factor) /
                              (c->rope_high_freq_factor - c->rope_low_freq_factor);
        f = (1.0 - smooth) * f / c->rope_factor + smooth * f;
      }
    }
    out[i] = f;
  }
}

double tpd_config_n_params(const tpd_model_config *c) {
  const double D = c->dim, Dh = c->head_dim, F = c->ffn_dim, V = c->vocab;
  const double q = c->n_heads * Dh, kv = c->n_kv_heads * Dh;
  const double per_layer = D * (q + 2 * kv) + q * D + 3.0 * D * F + 2 * D;
  return c->n_layers * per_layer + V * D * (c->tie_embeddings ? 1 : 2) + D;
}
