/* Synthetic checkpoints in Hugging Face layout (config.json +
 * model.safetensors, or shards + index), reproducible by seed: each tensor's
 * values depend only on (seed, tensor name). */
#ifndef TPD_SYNTH_H
#define TPD_SYNTH_H

#include "runtime/base/dtype.h"
#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const char *arch;  /* "llama" (default), "mistral", "qwen2" */
  int dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab, max_pos;
  double rope_theta;
  int rope_llama3;   /* write rope_scaling {rope_type: llama3} */
  double rope_factor;
  int rope_orig_max_pos;
  int tie;
  int sliding_window; /* mistral only; 0: null */
  int attention_bias; /* llama: q/k/v/o biases */
  tpd_dtype dtype;
  unsigned long long seed;
  int n_shards;       /* > 1: model-0000i-of-0000n.safetensors + index */
} tpd_synth_spec;

/* Fills spec with a named preset ("tiny", "small", "1b", "8b"). */
tpd_status tpd_synth_preset(const char *name, tpd_synth_spec *spec);
/* Writes the checkpoint into dir (created if missing): config.json, the
 * weights, and tokenizer.json + tokenizer_config.json (see
 * tpd_synth_tokenizer; none below its minimum vocab).  First removes the
 * files of any earlier checkpoint there: config.json, model.safetensors,
 * model.safetensors.index.json, model-NNNNN-of-NNNNN.safetensors,
 * tokenizer.json and tokenizer_config.json, so no stale shard, index or
 * tokenizer can be loaded with the new model; any other file in dir is
 * kept. */
tpd_status tpd_synth_write(const tpd_synth_spec *spec, const char *dir);

/* Told of each file tpd_synth_write_ex writes (what = "wrote") and of each
 * earlier file it removes that the new model does not replace (what =
 * "removed"), with the file's size. */
typedef void (*tpd_synth_note_fn)(void *ctx, const char *what, const char *path, unsigned long long n_bytes);
tpd_status tpd_synth_write_ex(const tpd_synth_spec *spec, const char *dir, tpd_synth_note_fn note, void *ctx);

/* The tokenizer written beside a model (tokenizer.json and
 * tokenizer_config.json) when its vocab is at least
 * TPD_SYNTH_TOKENIZER_MIN_VOCAB: a byte-level BPE in Llama 3's layout
 * (pre-tokenizer Split on Llama 3's pattern then ByteLevel, ByteLevel
 * decoder, TemplateProcessing adding BOS, ignore_merges) with exactly
 * `vocab` ids: the 256 bytes, BOS and EOS as special tokens (added tokens,
 * and in the BPE vocabulary) at config.json's bos_token_id and
 * eos_token_id, merges learnt by counting
 * pairs on a built-in English-like corpus, then whole pseudo-words (reached
 * only through ignore_merges) filling the rest.  It depends on vocab only. */
#define TPD_SYNTH_TOKENIZER_MIN_VOCAB 258
#define TPD_SYNTH_BOS_ID 1
#define TPD_SYNTH_EOS_ID 2
#define TPD_SYNTH_BOS_TEXT "<|begin_of_text|>"
#define TPD_SYNTH_EOS_TEXT "<|end_of_text|>"
typedef struct {
  char *tokenizer_json; /* malloc'd */
  size_t tokenizer_len;
  char *config_json;    /* malloc'd, NUL-terminated */
  int n_merges, n_words; /* merges learnt; whole words after them */
} tpd_synth_tokenizer_files;
tpd_status tpd_synth_tokenizer(int vocab, int max_pos, tpd_synth_tokenizer_files *out);
void tpd_synth_tokenizer_free(tpd_synth_tokenizer_files *f);

#ifdef __cplusplus
}
#endif
#endif
