#include "launch/tools/synth.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/base/fileio.h"

tpd_status tpd_synth_preset(const char *name, tpd_synth_spec *s) {
  memset(s, 0, sizeof *s);
  s->arch = "llama";
  s->dtype = TPD_BF16;
  s->seed = 1;
  s->rope_theta = 10000.0;
  s->n_shards = 1;
  if (!strcmp(name, "tiny")) { /* Llama-2 shape, a few hundred thousand weights */
    s->dim = 64, s->n_layers = 2, s->n_heads = 4, s->n_kv_heads = 2, s->ffn_dim = 172, s->vocab = 512;
    s->max_pos = 256;
  } else if (!strcmp(name, "small")) {
    s->dim = 256, s->n_layers = 4, s->n_heads = 8, s->n_kv_heads = 4, s->ffn_dim = 688, s->vocab = 4096;
    s->max_pos = 2048;
  } else if (!strcmp(name, "1b")) { /* Llama 3.2 1B shape */
    s->dim = 2048, s->n_layers = 16, s->n_heads = 32, s->n_kv_heads = 8, s->ffn_dim = 8192, s->vocab = 128256;
    s->max_pos = 131072, s->rope_theta = 500000.0, s->rope_llama3 = 1, s->rope_factor = 32.0;
    s->rope_orig_max_pos = 8192, s->tie = 1;
  } else if (!strcmp(name, "8b")) { /* Llama 3.1 8B shape */
    s->dim = 4096, s->n_layers = 32, s->n_heads = 32, s->n_kv_heads = 8, s->ffn_dim = 14336, s->vocab = 128256;
    s->max_pos = 131072, s->rope_theta = 500000.0, s->rope_llama3 = 1, s->rope_factor = 8.0;
    s->rope_orig_max_pos = 8192;
  } else {
    return TPD_FAIL(TPD_ERR_ARG, "unknown preset '%s' (tiny, small, 1b, 8b)", name);
  }
  return TPD_OK;
}

/* ---- reproducible values ---- */
static uint64_t splitmix(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

typedef struct {
  char name[128];
  int ndim;
  int64_t shape[2];
  double center, spread; /* values uniform in center +- spread */
  int alternate;         /* negate every second value */
  uint64_t offset;       /* within its file's data section */
  int shard;
} synth_tensor;

static uint64_t n_elems(const synth_tensor *t) {
  return t->ndim == 1 ? (uint64_t)t->shape[0] : (uint64_t)t->shape[0] * (uint64_t)t->shape[1];
}

static int add(synth_tensor *ts, int n, const char *name, int64_t d0, int64_t d1, double center, double std) {
  synth_tensor *t = &ts[n];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->ndim = d1 ? 2 : 1;
  t->shape[0] = d0;
  t->shape[1] = d1;
  t->center = center;
  t->spread = std * sqrt(3.0); /* uniform with this std */
  return n + 1;
}

/* The tensor list with init scales chosen so a random model decodes varied
 * greedy text: unit-scale embeddings (the current token stays a large part
 * of the residual stream), 1/sqrt(fan_in) projections, norms near 1, and an
 * LM head of std head_std = 3/sqrt(D), so that the logits of the unit-RMS
 * final hidden state have std about 3.
 *
 * Tied embeddings are the LM head too.  The final hidden state holds the
 * input token's own embedding e, so with positive final-norm weights w the
 * input token's logit gains sum_i w_i e_i^2 > 0: about D times the weight
 * scale, against a spread of about sqrt(D) times it for the other tokens,
 * and the model repeats its input ("42 42 42 ...") at any temperature.  So a
 * tied model's final-norm weights alternate in sign, +-head_std (10% jitter):
 * the self-score then has mean zero, and the logits still have std about 3.
 * (A small embedding instead would silence the self-score but also the
 * current token in the residual stream, and greedy text would loop.) */
static int list_tensors(const tpd_synth_spec *s, synth_tensor *ts) {
  const int D = s->dim, Dh = s->head_dim ? s->head_dim : s->dim / s->n_heads;
  const int64_t Q = (int64_t)s->n_heads * Dh, KV = (int64_t)s->n_kv_heads * Dh, F = s->ffn_dim;
  const int qwen2 = !strcmp(s->arch, "qwen2");
  const double head_std = 3.0 / sqrt(D);
  int n = 0;
  char b[128];
  n = add(ts, n, "model.embed_tokens.weight", s->vocab, D, 0.0, 1.0);
  for (int l = 0; l < s->n_layers; l++) {
#define NAME(x) (snprintf(b, sizeof b, "model.layers.%d.%s", l, x), b)
    n = add(ts, n, NAME("input_layernorm.weight"), D, 0, 1.0, 0.1);
    n = add(ts, n, NAME("self_attn.q_proj.weight"), Q, D, 0.0, 1.0 / sqrt(D));
    n = add(ts, n, NAME("self_attn.k_proj.weight"), KV, D, 0.0, 1.0 / sqrt(D));
    n = add(ts, n, NAME("self_attn.v_proj.weight"), KV, D, 0.0, 1.0 / sqrt(D));
    if (qwen2 || s->attention_bias) {
      n = add(ts, n, NAME("self_attn.q_proj.bias"), Q, 0, 0.0, 0.5);
      n = add(ts, n, NAME("self_attn.k_proj.bias"), KV, 0, 0.0, 0.5);
      n = add(ts, n, NAME("self_attn.v_proj.bias"), KV, 0, 0.0, 0.5);
    }
    n = add(ts, n, NAME("self_attn.o_proj.weight"), D, Q, 0.0, 1.0 / sqrt((double)Q));
    if (s->attention_bias && !qwen2) n = add(ts, n, NAME("self_attn.o_proj.bias"), D, 0, 0.0, 0.5);
    n = add(ts, n, NAME("post_attention_layernorm.weight"), D, 0, 1.0, 0.1);
    n = add(ts, n, NAME("mlp.gate_proj.weight"), F, D, 0.0, 1.0 / sqrt(D));
    n = add(ts, n, NAME("mlp.up_proj.weight"), F, D, 0.0, 1.0 / sqrt(D));
    n = add(ts, n, NAME("mlp.down_proj.weight"), D, F, 0.0, 1.0 / sqrt((double)F));
#undef NAME
  }
  if (s->tie) { /* +-head_std, alternating: see above */
    n = add(ts, n, "model.norm.weight", D, 0, head_std, 0.1 * head_std);
    ts[n - 1].alternate = 1;
  } else {
    n = add(ts, n, "model.norm.weight", D, 0, 1.0, 0.1);
  }
  if (!s->tie) n = add(ts, n, "lm_head.weight", s->vocab, D, 0.0, head_std);
  return n;
}

static cJSON *config_json(const tpd_synth_spec *s) {
  const char *arch = !strcmp(s->arch, "qwen2") ? "Qwen2ForCausalLM"
                     : !strcmp(s->arch, "mistral") ? "MistralForCausalLM" : "LlamaForCausalLM";
  cJSON *c = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(c, "architectures");
  cJSON_AddItemToArray(a, cJSON_CreateString(arch));
  cJSON_AddStringToObject(c, "model_type", s->arch);
  cJSON_AddNumberToObject(c, "hidden_size", s->dim);
  cJSON_AddNumberToObject(c, "intermediate_size", s->ffn_dim);
  cJSON_AddNumberToObject(c, "num_hidden_layers", s->n_layers);
  cJSON_AddNumberToObject(c, "num_attention_heads", s->n_heads);
  cJSON_AddNumberToObject(c, "num_key_value_heads", s->n_kv_heads);
  if (s->head_dim) cJSON_AddNumberToObject(c, "head_dim", s->head_dim);
  cJSON_AddNumberToObject(c, "vocab_size", s->vocab);
  cJSON_AddNumberToObject(c, "max_position_embeddings", s->max_pos);
  cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-5);
  cJSON_AddNumberToObject(c, "rope_theta", s->rope_theta);
  if (s->rope_llama3) {
    cJSON *r = cJSON_AddObjectToObject(c, "rope_scaling");
    cJSON_AddStringToObject(r, "rope_type", "llama3");
    cJSON_AddNumberToObject(r, "factor", s->rope_factor);
    cJSON_AddNumberToObject(r, "low_freq_factor", 1.0);
    cJSON_AddNumberToObject(r, "high_freq_factor", 4.0);
    cJSON_AddNumberToObject(r, "original_max_position_embeddings", s->rope_orig_max_pos);
  } else {
    cJSON_AddNullToObject(c, "rope_scaling");
  }
  cJSON_AddBoolToObject(c, "tie_word_embeddings", s->tie);
  cJSON_AddStringToObject(c, "hidden_act", "silu");
  if (!strcmp(s->arch, "llama")) {
    cJSON_AddBoolToObject(c, "attention_bias", s->attention_bias);
    cJSON_AddBoolToObject(c, "mlp_bias", 0);
  }
  if (!strcmp(s->arch, "mistral")) {
    if (s->sliding_window) cJSON_AddNumberToObject(c, "sliding_window", s->sliding_window);
    else cJSON_AddNullToObject(c, "sliding_window");
  }
  if (!strcmp(s->arch, "qwen2")) cJSON_AddBoolToObject(c, "use_sliding_window", 0);
  cJSON_AddStringToObject(c, "torch_dtype", s->dtype == TPD_F32 ? "float32" : s->dtype == TPD_F16 ? "float16" : "bfloat16");
  cJSON_AddNumberToObject(c, "bos_token_id", TPD_SYNTH_BOS_ID); /* the tokenizer's special tokens */
  cJSON_AddNumberToObject(c, "eos_token_id", TPD_SYNTH_EOS_ID);
  return c;
}

static tpd_status write_values(FILE *f, const char *path, const synth_tensor *t, tpd_dtype dt, uint64_t seed) {
  enum { CHUNK = 1 << 16 };
  static float buf[CHUNK];
  static uint16_t half[CHUNK];
  uint64_t state = seed ^ name_hash(t->name);
  splitmix(&state);
  const uint64_t n = n_elems(t);
  for (uint64_t i = 0; i < n; i += CHUNK) {
    const size_t m = n - i < CHUNK ? (size_t)(n - i) : CHUNK;
    for (size_t j = 0; j < m; j++) {
      const double u = (double)(splitmix(&state) >> 11) * (1.0 / 9007199254740992.0);
      const double x = t->center + t->spread * (2.0 * u - 1.0);
      buf[j] = (float)(t->alternate && ((i + j) & 1) ? -x : x);
    }
    size_t put;
    if (dt == TPD_F32) {
      put = fwrite(buf, sizeof(float), m, f);
    } else {
      tpd_convert(half, dt, buf, TPD_F32, m);
      put = fwrite(half, sizeof(uint16_t), m, f);
    }
    if (put != m) return TPD_FAIL(TPD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
  }
  return TPD_OK;
}

static tpd_status write_shard(const tpd_synth_spec *s, const char *path, synth_tensor *ts, int n, int shard,
                              unsigned long long *n_bytes) {
  const size_t esz = tpd_dtype_size(s->dtype);
  cJSON *h = cJSON_CreateObject();
  cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
  cJSON_AddStringToObject(meta, "format", "pt");
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    if (ts[i].shard != shard) continue;
    cJSON *e = cJSON_AddObjectToObject(h, ts[i].name);
    cJSON_AddStringToObject(e, "dtype", tpd_dtype_name(s->dtype));
    cJSON *sh = cJSON_AddArrayToObject(e, "shape");
    for (int d = 0; d < ts[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)ts[i].shape[d]));
    cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
    ts[i].offset = off;
    off += n_elems(&ts[i]) * esz;
    cJSON_AddItemToArray(o, cJSON_CreateNumber((double)ts[i].offset));
    cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
  }
  char *text = cJSON_PrintUnformatted(h);
  cJSON_Delete(h);
  if (!text) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  size_t hlen = strlen(text);
  const size_t padded = (hlen + 7) / 8 * 8;
  FILE *f = fopen(path, "wb");
  if (!f) {
    free(text);
    return TPD_FAIL(TPD_ERR_IO, "cannot create %s: %s", path, strerror(errno));
  }
  uint8_t len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
  int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(text, 1, hlen, f) == hlen;
  for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
  free(text);
  tpd_status st = ok ? TPD_OK : TPD_FAIL(TPD_ERR_IO, "cannot write %s", path);
  for (int i = 0; st == TPD_OK && i < n; i++)
    if (ts[i].shard == shard) st = write_values(f, path, &ts[i], s->dtype, s->seed);
  if (fclose(f) != 0 && st == TPD_OK) st = TPD_FAIL(TPD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
  *n_bytes = 8 + padded + off;
  return st;
}

/* mkdir -p */
static tpd_status make_dirs(const char *dir) {
  char p[4096];
  snprintf(p, sizeof p, "%s", dir);
  for (char *c = p + 1; *c; c++)
    if (*c == '/') {
      *c = 0;
      if (mkdir(p, 0755) != 0 && errno != EEXIST) return TPD_FAIL(TPD_ERR_IO, "cannot create %s: %s", p, strerror(errno));
      *c = '/';
    }
  if (mkdir(p, 0755) != 0 && errno != EEXIST) return TPD_FAIL(TPD_ERR_IO, "cannot create %s: %s", p, strerror(errno));
  return TPD_OK;
}

/* The names of the files a checkpoint in this layout consists of. */
static int checkpoint_file(const char *name) {
  if (!strcmp(name, "config.json") || !strcmp(name, "model.safetensors") || !strcmp(name, "model.safetensors.index.json") ||
      !strcmp(name, "tokenizer.json") || !strcmp(name, "tokenizer_config.json"))
    return 1;
  int k = 0, of = 0, len = 0;
  if (sscanf(name, "model-%5d-of-%5d.safetensors%n", &k, &of, &len) != 2 || len != (int)strlen(name)) return 0;
  char canon[64];
  snprintf(canon, sizeof canon, "model-%05d-of-%05d.safetensors", k, of);
  return !strcmp(canon, name);
}

/* Whether a checkpoint of `shards` files (with a tokenizer or not) writes a file of this name. */
static int rewritten(const char *name, int shards, int tokenizer) {
  if (!strcmp(name, "config.json")) return 1;
  if (!strcmp(name, "tokenizer.json") || !strcmp(name, "tokenizer_config.json")) return tokenizer;
  if (shards == 1) return !strcmp(name, "model.safetensors");
  if (!strcmp(name, "model.safetensors.index.json")) return 1;
  int k = 0, of = 0;
  return sscanf(name, "model-%5d-of-%5d", &k, &of) == 2 && of == shards && k >= 1 && k <= shards;
}

/* Removes the checkpoint files in dir (see checkpoint_file); keeps all else. */
static tpd_status remove_checkpoint(const char *dir, int shards, int tokenizer, tpd_synth_note_fn note, void *ctx) {
  DIR *d = opendir(dir);
  if (!d) return TPD_FAIL(TPD_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
  tpd_status st = TPD_OK;
  char path[4096];
  for (struct dirent *de; st == TPD_OK && (de = readdir(d)) != NULL;) {
    if (!checkpoint_file(de->d_name)) continue;
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    struct stat sb;
    if (lstat(path, &sb) != 0) continue;
    if (S_ISDIR(sb.st_mode))
      st = TPD_FAIL(TPD_ERR_IO, "%s is a directory; a checkpoint file of that name cannot be written", path);
    else if (unlink(path) != 0)
      st = TPD_FAIL(TPD_ERR_IO, "cannot remove the earlier %s: %s", path, strerror(errno));
    else if (note && !rewritten(de->d_name, shards, tokenizer))
      note(ctx, "removed", path, (unsigned long long)sb.st_size);
  }
  closedir(d);
  return st;
}

static tpd_status write_text(const char *path, const char *text, tpd_synth_note_fn note, void *ctx) {
  if (!text) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  TPD_TRY(tpd_write_file(path, text, strlen(text)));
  if (note) note(ctx, "wrote", path, (unsigned long long)strlen(text));
  return TPD_OK;
}

static tpd_status write_tokenizer(const tpd_synth_spec *s, const char *dir, tpd_synth_note_fn note, void *ctx) {
  tpd_synth_tokenizer_files f;
  TPD_TRY(tpd_synth_tokenizer(s->vocab, s->max_pos, &f));
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  tpd_status st = write_text(path, f.tokenizer_json, note, ctx);
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  if (st == TPD_OK) st = write_text(path, f.config_json, note, ctx);
  tpd_synth_tokenizer_free(&f);
  return st;
}

tpd_status tpd_synth_write(const tpd_synth_spec *s, const char *dir) { return tpd_synth_write_ex(s, dir, NULL, NULL); }

tpd_status tpd_synth_write_ex(const tpd_synth_spec *s, const char *dir, tpd_synth_note_fn note, void *ctx) {
  if (s->dim <= 0 || s->n_layers <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0 || s->ffn_dim <= 0 || s->vocab <= 0)
    return TPD_FAIL(TPD_ERR_ARG, "synthetic model: all sizes must be positive");
  if (s->n_heads % s->n_kv_heads) return TPD_FAIL(TPD_ERR_ARG, "synthetic model: kv heads must divide heads");
  if (!s->head_dim && s->dim % s->n_heads) return TPD_FAIL(TPD_ERR_ARG, "synthetic model: heads must divide dim");
  if (s->n_layers > 1000000) return TPD_FAIL(TPD_ERR_ARG, "synthetic model: %d layers is too many", s->n_layers);
  if (s->n_shards < 0 || s->n_shards > 99999)
    return TPD_FAIL(TPD_ERR_ARG, "synthetic model: %d shards (1 to 99999)", s->n_shards);
  if (strlen(dir) > 3900) return TPD_FAIL(TPD_ERR_ARG, "synthetic model: output path too long (%zu bytes)", strlen(dir));
  const int max_tensors = 16 * s->n_layers + 4;
  synth_tensor *ts = calloc((size_t)max_tensors, sizeof *ts);
  if (!ts) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  const int n = list_tensors(s, ts);
  const int shards = s->n_shards > 1 ? s->n_shards : 1;
  if (shards > n) {
    free(ts);
    return TPD_FAIL(TPD_ERR_ARG, "synthetic model: %d shards for %d tensors (at most one shard per tensor)", shards, n);
  }
  for (int i = 0; i < n; i++) ts[i].shard = (int)((long)i * shards / n);
  const int tokenizer = s->vocab >= TPD_SYNTH_TOKENIZER_MIN_VOCAB;
  tpd_status st = make_dirs(dir);
  if (st == TPD_OK) st = remove_checkpoint(dir, shards, tokenizer, note, ctx);
  if (st != TPD_OK) {
    free(ts);
    return st;
  }
  char path[4096];
  cJSON *cfg = config_json(s);
  char *text = cJSON_Print(cfg);
  cJSON_Delete(cfg);
  snprintf(path, sizeof path, "%s/config.json", dir);
  st = write_text(path, text, note, ctx);
  free(text);
  cJSON *index = shards > 1 ? cJSON_CreateObject() : NULL;
  cJSON *wm = index ? cJSON_AddObjectToObject(index, "weight_map") : NULL;
  for (int k = 0; st == TPD_OK && k < shards; k++) {
    char file[128];
    if (shards > 1) snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", k + 1, shards);
    else snprintf(file, sizeof file, "model.safetensors");
    snprintf(path, sizeof path, "%s/%s", dir, file);
    unsigned long long n_bytes = 0;
    st = write_shard(s, path, ts, n, k, &n_bytes);
    if (st == TPD_OK && note) note(ctx, "wrote", path, n_bytes);
    for (int i = 0; wm && i < n; i++)
      if (ts[i].shard == k) cJSON_AddStringToObject(wm, ts[i].name, file);
  }
  if (st == TPD_OK && index) {
    text = cJSON_Print(index);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    st = write_text(path, text, note, ctx);
    free(text);
  }
  cJSON_Delete(index);
  free(ts);
  if (st == TPD_OK && tokenizer) st = write_tokenizer(s, dir, note, ctx);
  return st;
}
