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
/* Writes the checkpoint into dir (created if missing).  First removes the
 * files of any earlier checkpoint there: config.json, model.safetensors,
 * model.safetensors.index.json and model-NNNNN-of-NNNNN.safetensors, so no
 * stale shard or index can be loaded in place of the new model; any other
 * file in dir is kept. */
tpd_status tpd_synth_write(const tpd_synth_spec *spec, const char *dir);

/* Told of each file tpd_synth_write_ex writes (what = "wrote") and of each
 * earlier file it removes that the new model does not replace (what =
 * "removed"), with the file's size. */
typedef void (*tpd_synth_note_fn)(void *ctx, const char *what, const char *path, unsigned long long n_bytes);
tpd_status tpd_synth_write_ex(const tpd_synth_spec *spec, const char *dir, tpd_synth_note_fn note, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
