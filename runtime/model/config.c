#include "runtime/model/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/fileio.h"

/* Config files come from two generations of transformers:
 *   < 5:  top-level "rope_theta" and "rope_scaling" {"rope_type" (or the
 *         older "type"), "factor", ...}, sometimes "partial_rotary_factor";
 *   >= 5: "rope_parameters" {"rope_type", "rope_theta", "factor", ...,
 *         "partial_rotary_factor"} and no top-level rope fields.
 * Both are read; where a file carries both, they must agree.  A field that
 * changes the computation and is not implemented here is an error naming it,
 * never ignored. */

static const cJSON *item(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return v && !cJSON_IsNull(v) ? v : NULL; /* null means absent, as in transformers */
}

/* "key" at the top level, "obj.key" inside an object */
static const char *field_name(char *buf, size_t n, const char *obj, const char *key) {
  if (obj) snprintf(buf, n, "%s.%s", obj, key);
  else snprintf(buf, n, "%s", key);
  return buf;
}

/* Reads an integer field; `required` fields must be present. */
static tpd_status get_int(const cJSON *root, const char *path, const char *obj, const char *key, int required,
                          int dflt, int *out) {
  char f[96];
  const cJSON *v = item(root, key);
  if (!v) {
    if (required) return TPD_FAIL(TPD_ERR_FORMAT, "%s: missing field \"%s\"", path, field_name(f, sizeof f, obj, key));
    *out = dflt;
    return TPD_OK;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2e9)
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"%s\" must be an integer", path, field_name(f, sizeof f, obj, key));
  *out = (int)v->valuedouble;
  return TPD_OK;
}

static tpd_status get_num(const cJSON *root, const char *path, const char *obj, const char *key, int required,
                          double dflt, double *out) {
  char f[96];
  const cJSON *v = item(root, key);
  if (!v) {
    if (required) return TPD_FAIL(TPD_ERR_FORMAT, "%s: missing field \"%s\"", path, field_name(f, sizeof f, obj, key));
    *out = dflt;
    return TPD_OK;
  }
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"%s\" must be a number", path, field_name(f, sizeof f, obj, key));
  *out = v->valuedouble;
  return TPD_OK;
}

static tpd_status get_bool(const cJSON *root, const char *path, const char *key, int dflt, int *out) {
  const cJSON *v = item(root, key);
  if (!v) {
    *out = dflt;
    return TPD_OK;
  }
  if (!cJSON_IsBool(v)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"%s\" must be true or false", path, key);
  *out = cJSON_IsTrue(v);
  return TPD_OK;
}

/* partial_rotary_factor < 1 rotates only part of each head: not implemented. */
static tpd_status check_partial_rotary(const cJSON *obj, const char *path, const char *obj_name) {
  char f[96];
  double prf = 1.0;
  TPD_TRY(get_num(obj, path, obj_name, "partial_rotary_factor", 0, 1.0, &prf));
  if (prf != 1.0)
    return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                    "%s: \"%s\" = %g is not supported (rotary embedding over the whole head only, i.e. 1.0)", path,
                    field_name(f, sizeof f, obj_name, "partial_rotary_factor"), prf);
  return TPD_OK;
}

/* One RoPE description, as read from rope_parameters or rope_scaling. */
typedef struct {
  const char *src;   /* "rope_parameters" or "rope_scaling" */
  char type[32];     /* "default", "linear", "llama3" */
  int has_theta;
  double theta;
  double factor, low_freq_factor, high_freq_factor;
  int orig_max_pos;
} rope_spec;

static tpd_status read_rope_obj(const cJSON *o, const char *src, const char *path, int type_required, rope_spec *r) {
  memset(r, 0, sizeof *r);
  r->src = src;
  const cJSON *e;
  cJSON_ArrayForEach(e, o) {
    if (cJSON_IsObject(e))
      return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: \"%s.%s\": RoPE parameters per layer type are not supported", path,
                      src, e->string);
  }
  const cJSON *rt = item(o, "rope_type"), *t = item(o, "type");
  if ((rt && !cJSON_IsString(rt)) || (t && !cJSON_IsString(t)))
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"%s.rope_type\" must be a string", path, src);
  if (rt && t && strcmp(rt->valuestring, t->valuestring))
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: \"%s.rope_type\" (\"%s\") and \"%s.type\" (\"%s\") disagree", path, src,
                    rt->valuestring, src, t->valuestring);
  const char *name = rt ? rt->valuestring : t ? t->valuestring : NULL;
  if (!name) {
    /* transformers 5 takes a rope_parameters without a type as "default";
     * transformers 4 requires the type in rope_scaling */
    if (type_required) return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"%s.rope_type\" is missing", path, src);
    name = "default";
  }
  snprintf(r->type, sizeof r->type, "%s", name);
  if (item(o, "rope_theta")) {
    r->has_theta = 1;
    TPD_TRY(get_num(o, path, src, "rope_theta", 1, 0, &r->theta));
  }
  TPD_TRY(check_partial_rotary(o, path, src));
  if (!strcmp(name, "default")) return TPD_OK;
  if (!strcmp(name, "linear")) {
    TPD_TRY(get_num(o, path, src, "factor", 1, 0, &r->factor));
    if (r->factor <= 0)
      return TPD_FAIL(TPD_ERR_FORMAT, "%s: \"%s.factor\" (linear) must be positive, not %g", path, src, r->factor);
    return TPD_OK;
  }
  if (!strcmp(name, "llama3")) {
    TPD_TRY(get_num(o, path, src, "factor", 1, 0, &r->factor));
    TPD_TRY(get_num(o, path, src, "low_freq_factor", 1, 0, &r->low_freq_factor));
    TPD_TRY(get_num(o, path, src, "high_freq_factor", 1, 0, &r->high_freq_factor));
    TPD_TRY(get_int(o, path, src, "original_max_position_embeddings", 1, 0, &r->orig_max_pos));
    if (r->factor <= 0 || r->orig_max_pos <= 0 || r->high_freq_factor <= r->low_freq_factor ||
        r->low_freq_factor <= 0)
      return TPD_FAIL(TPD_ERR_FORMAT,
                      "%s: \"%s\" (llama3) has inconsistent factors (factor %g, low_freq_factor %g, "
                      "high_freq_factor %g, original_max_position_embeddings %d)",
                      path, src, r->factor, r->low_freq_factor, r->high_freq_factor, r->orig_max_pos);
    return TPD_OK;
  }
  return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: %s.rope_type \"%s\" is not supported (supported: default, linear, llama3)",
                  path, src, name);
}

/* The first field on which two RoPE descriptions differ, or NULL. */
static const char *rope_differs(const rope_spec *a, const rope_spec *b) {
  if (strcmp(a->type, b->type)) return "rope_type";
  if (a->has_theta && b->has_theta && a->theta != b->theta) return "rope_theta";
  if (a->factor != b->factor) return "factor";
  if (a->low_freq_factor != b->low_freq_factor) return "low_freq_factor";
  if (a->high_freq_factor != b->high_freq_factor) return "high_freq_factor";
  if (a->orig_max_pos != b->orig_max_pos) return "original_max_position_embeddings";
  return NULL;
}

static tpd_status parse_rope(const cJSON *root, const char *path, tpd_model_config *c) {
  const cJSON *rp = item(root, "rope_parameters"), *rs = item(root, "rope_scaling");
  if (rp && !cJSON_IsObject(rp))
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"rope_parameters\" must be an object or null", path);
  if (rs && !cJSON_IsObject(rs))
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"rope_scaling\" must be an object or null", path);
  rope_spec p, s, dflt = {.src = "default", .type = "default"};
  if (rp) TPD_TRY(read_rope_obj(rp, "rope_parameters", path, 0, &p));
  if (rs) TPD_TRY(read_rope_obj(rs, "rope_scaling", path, 1, &s));
  if (rp && rs) {
    const char *d = rope_differs(&p, &s);
    if (d)
      return TPD_FAIL(TPD_ERR_FORMAT, "%s: \"rope_parameters.%s\" and \"rope_scaling.%s\" disagree", path, d, d);
  }
  const rope_spec *r = rp ? &p : rs ? &s : &dflt;

  /* theta: inside the rope object (transformers 5) or at the top level
   * (transformers 4); 10000 when neither gives it, as both do */
  const int top_theta = item(root, "rope_theta") != NULL;
  double theta = 10000.0;
  TPD_TRY(get_num(root, path, NULL, "rope_theta", 0, 10000.0, &theta));
  const rope_spec *with_theta = rp && p.has_theta ? &p : rs && s.has_theta ? &s : NULL;
  if (with_theta) {
    if (top_theta && theta != with_theta->theta)
      return TPD_FAIL(TPD_ERR_FORMAT, "%s: \"rope_theta\" (%g) and \"%s.rope_theta\" (%g) disagree", path, theta,
                      with_theta->src, with_theta->theta);
    theta = with_theta->theta;
  }
  if (!(theta > 0)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: rope_theta must be positive", path);
  TPD_TRY(check_partial_rotary(root, path, NULL));

  c->rope_theta = theta;
  c->rope_llama3 = !strcmp(r->type, "llama3");
  c->rope_linear = !strcmp(r->type, "linear");
  c->rope_factor = r->factor;
  c->rope_low_freq_factor = r->low_freq_factor;
  c->rope_high_freq_factor = r->high_freq_factor;
  c->rope_orig_max_pos = r->orig_max_pos;
  return TPD_OK;
}

/* One eos id: an integer in [0, 2^31) (a float, a negative or a huge value
 * is an error, never a truncation). */
static tpd_status eos_id(const cJSON *e, const char *path, int *out) {
  if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || !(e->valuedouble >= 0) ||
      e->valuedouble > 2147483647.0)
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"eos_token_id\" holds %g, not a token id (an integer >= 0)", path,
                    cJSON_IsNumber(e) ? e->valuedouble : NAN);
  *out = (int)e->valuedouble;
  return TPD_OK;
}

static tpd_status parse_eos(const cJSON *root, const char *path, tpd_model_config *c) {
  const cJSON *v = item(root, "eos_token_id");
  c->n_eos = 0;
  if (!v) return TPD_OK;
  if (cJSON_IsNumber(v)) {
    TPD_TRY(eos_id(v, path, &c->eos_ids[0]));
    c->n_eos = 1;
    return TPD_OK;
  }
  if (!cJSON_IsArray(v)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"eos_token_id\" must be an integer or a list", path);
  if (cJSON_GetArraySize(v) > TPD_MAX_EOS)
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: field \"eos_token_id\" lists %d ids; at most %d are supported", path,
                    cJSON_GetArraySize(v), TPD_MAX_EOS);
  const cJSON *e;
  cJSON_ArrayForEach(e, v) {
    if (!cJSON_IsNumber(e)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"eos_token_id\" holds a non-integer", path);
    TPD_TRY(eos_id(e, path, &c->eos_ids[c->n_eos]));
    c->n_eos++;
  }
  return TPD_OK;
}

/* Fields of other architectures that would change the computation if they
 * were meant: present and not null is an error. */
static tpd_status reject_present(const cJSON *root, const char *path) {
  static const char *const keys[] = {"quantization_config", "attn_logit_softcapping", "final_logit_softcapping"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (item(root, keys[i]))
      return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: field \"%s\" is set; it is not supported", path, keys[i]);
  return TPD_OK;
}

static tpd_status parse_root(const cJSON *root, const char *path, tpd_model_config *c) {
  memset(c, 0, sizeof *c);
  if (!cJSON_IsObject(root)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: not a JSON object", path);

  const cJSON *mt = item(root, "model_type");
  if (!cJSON_IsString(mt)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: missing field \"model_type\"", path);
  if (strcmp(mt->valuestring, "llama") && strcmp(mt->valuestring, "mistral") &&
      strcmp(mt->valuestring, "qwen2"))
    return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                    "%s: model_type \"%s\" is not supported (supported: llama, mistral, qwen2)", path,
                    mt->valuestring);
  snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
  const int is_llama = !strcmp(c->model_type, "llama");
  const int is_qwen2 = !strcmp(c->model_type, "qwen2");
  const int is_mistral = !strcmp(c->model_type, "mistral");

  const cJSON *act = item(root, "hidden_act");
  if (act && !(cJSON_IsString(act) && !strcmp(act->valuestring, "silu")))
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported (supported: silu)", path,
                    cJSON_IsString(act) ? act->valuestring : "?");
  TPD_TRY(reject_present(root, path));

  TPD_TRY(get_int(root, path, NULL, "hidden_size", 1, 0, &c->dim));
  TPD_TRY(get_int(root, path, NULL, "num_hidden_layers", 1, 0, &c->n_layers));
  TPD_TRY(get_int(root, path, NULL, "num_attention_heads", 1, 0, &c->n_heads));
  /* transformers' Llama takes a missing num_key_value_heads as
   * num_attention_heads; Qwen2 and Mistral fall back to fixed class defaults
   * (32, 8) that say nothing about the checkpoint, so there it is required */
  TPD_TRY(get_int(root, path, NULL, "num_key_value_heads", !is_llama, c->n_heads, &c->n_kv_heads));
  TPD_TRY(get_int(root, path, NULL, "intermediate_size", 1, 0, &c->ffn_dim));
  TPD_TRY(get_int(root, path, NULL, "vocab_size", 1, 0, &c->vocab));
  /* transformers' class defaults */
  const int default_max_pos = is_qwen2 ? 32768 : is_mistral ? 131072 : 2048;
  TPD_TRY(get_int(root, path, NULL, "max_position_embeddings", 0, default_max_pos, &c->max_pos));
  if (c->dim <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: hidden_size must be positive", path);
  if (c->n_layers <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: num_hidden_layers must be positive", path);
  if (c->n_heads <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: num_attention_heads must be positive", path);
  if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads)
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: num_key_value_heads (%d) must divide num_attention_heads (%d)",
                    path, c->n_kv_heads, c->n_heads);
  if (c->ffn_dim <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: intermediate_size must be positive", path);
  if (c->vocab <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: vocab_size must be positive", path);
  if (c->max_pos <= 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: max_position_embeddings must be positive", path);

  /* head_dim null (transformers 4.5x writes that for Mistral) means absent */
  if (c->dim % c->n_heads && !item(root, "head_dim"))
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: hidden_size (%d) is not a multiple of num_attention_heads (%d) and no head_dim is given",
                    path, c->dim, c->n_heads);
  TPD_TRY(get_int(root, path, NULL, "head_dim", 0, c->dim / c->n_heads, &c->head_dim));
  if (c->head_dim <= 0 || c->head_dim % 2)
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: head_dim (%d) must be positive and even", path, c->head_dim);

  /* required: Llama 2 uses 1e-5, transformers' default is 1e-6 */
  TPD_TRY(get_num(root, path, NULL, "rms_norm_eps", 1, 0, &c->norm_eps));
  if (!(c->norm_eps > 0)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: rms_norm_eps must be positive", path);
  TPD_TRY(parse_rope(root, path, c));
  TPD_TRY(get_bool(root, path, "tie_word_embeddings", 0, &c->tie_embeddings));

  /* biases: Llama reads attention_bias (q, k, v, o) and mlp_bias; Qwen2 has
   * q/k/v biases by architecture and neither field; Mistral has no biases */
  int attention_bias = 0;
  TPD_TRY(get_bool(root, path, "attention_bias", 0, &attention_bias));
  TPD_TRY(get_bool(root, path, "mlp_bias", 0, &c->mlp_bias));
  if (c->mlp_bias && !is_llama)
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: mlp_bias=true is not supported for model_type %s (it has no MLP biases)",
                    path, c->model_type);
  if (attention_bias && is_mistral)
    return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                    "%s: attention_bias=true is not supported for model_type mistral (it has no attention biases)", path);
  c->qkv_bias = (is_llama && attention_bias) || is_qwen2;
  c->o_bias = is_llama && attention_bias;

  c->sliding_window = 0;
  if (is_mistral) {
    /* transformers' Mistral: every layer uses the window; absent means its
     * class default 4096, null means full attention */
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    TPD_TRY(get_int(root, path, NULL, "sliding_window", 0, sw ? 0 : 4096, &c->sliding_window));
    if (c->sliding_window < 0) return TPD_FAIL(TPD_ERR_FORMAT, "%s: sliding_window must be positive or null", path);
  } else if (is_qwen2) {
    /* transformers' Qwen2 applies sliding_window only to the layers that
     * layer_types (or use_sliding_window with max_window_layers) mark as
     * sliding: not implemented, so every layer must be full attention */
    int use_sw = 0;
    TPD_TRY(get_bool(root, path, "use_sliding_window", 0, &use_sw));
    if (use_sw)
      return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: use_sliding_window=true is not supported for qwen2", path);
    const cJSON *lt = item(root, "layer_types");
    if (lt) {
      if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
        return TPD_FAIL(TPD_ERR_FORMAT, "%s: field \"layer_types\" must be a list of num_hidden_layers (%d) entries",
                        path, c->n_layers);
      int l = 0;
      const cJSON *e;
      cJSON_ArrayForEach(e, lt) {
        if (!cJSON_IsString(e) || strcmp(e->valuestring, "full_attention"))
          return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                          "%s: layer_types[%d] is \"%s\"; only \"full_attention\" is supported for qwen2", path, l,
                          cJSON_IsString(e) ? e->valuestring : "?");
        l++;
      }
    }
  }
  TPD_TRY(get_int(root, path, NULL, "bos_token_id", 0, -1, &c->bos_id));
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
    if (c->rope_linear) f /= c->rope_factor;
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
