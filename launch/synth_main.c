/* tpdecode-synth: writes a random model in Hugging Face layout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/cli.h"
#include "runtime/synth.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: tpdecode-synth --out DIR [--preset tiny|small|1b|8b] [--dtype f32|bf16|f16] [--seed N]\n"
          "                      [--layers N] [--dim N] [--heads N] [--kv-heads N] [--head-dim N] [--ffn N]\n"
          "                      [--vocab N] [--ctx N] [--arch llama|mistral|qwen2] [--tie 0|1]\n"
          "                      [--sliding-window N] [--attention-bias] [--rope-llama3] [--shards N]\n"
          "Values depend only on the seed and the tensor name.  Presets: tiny (64-dim, 2 layers),\n"
          "small (256-dim, 4 layers), 1b (Llama 3.2 1B shape), 8b (Llama 3.1 8B shape).\n");
}

static int die(const char *msg, const char *arg) {
  fprintf(stderr, "tpdecode-synth: error: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
  return 1;
}

int main(int argc, char **argv) {
  const char *out = NULL, *preset = "tiny";
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[i + 1];
  tpd_synth_spec s;
  if (tpd_synth_preset(preset, &s) != TPD_OK) return die(tpd_last_error(), NULL);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    long iv = 0;
    int *field = NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--attention-bias")) { s.attention_bias = 1; continue; }
    if (!strcmp(a, "--rope-llama3")) {
      s.rope_llama3 = 1;
      if (!s.rope_factor) s.rope_factor = 8.0;
      if (!s.rope_orig_max_pos) s.rope_orig_max_pos = s.max_pos / 4 > 0 ? s.max_pos / 4 : 1;
      continue;
    }
    if (!v) return die("option needs a value:", a);
    i++;
    if (!strcmp(a, "--out")) { out = v; continue; }
    if (!strcmp(a, "--preset")) continue;
    if (!strcmp(a, "--arch")) {
      if (strcmp(v, "llama") && strcmp(v, "mistral") && strcmp(v, "qwen2")) return die("--arch: expected llama, mistral or qwen2, got", v);
      s.arch = v;
      continue;
    }
    if (!strcmp(a, "--dtype")) {
      if (!strcmp(v, "f32")) s.dtype = TPD_F32;
      else if (!strcmp(v, "bf16")) s.dtype = TPD_BF16;
      else if (!strcmp(v, "f16")) s.dtype = TPD_F16;
      else return die("--dtype: expected f32, bf16 or f16, got", v);
      continue;
    }
    if (!strcmp(a, "--seed")) {
      if (!tpd_cli_int(v, 0, 0x7fffffffffffffffL, &iv)) return die("--seed: expected an integer >= 0, got", v);
      s.seed = (unsigned long long)iv;
      continue;
    }
    if (!strcmp(a, "--layers")) field = &s.n_layers;
    else if (!strcmp(a, "--dim")) field = &s.dim;
    else if (!strcmp(a, "--heads")) field = &s.n_heads;
    else if (!strcmp(a, "--kv-heads")) field = &s.n_kv_heads;
    else if (!strcmp(a, "--head-dim")) field = &s.head_dim;
    else if (!strcmp(a, "--ffn")) field = &s.ffn_dim;
    else if (!strcmp(a, "--vocab")) field = &s.vocab;
    else if (!strcmp(a, "--ctx")) field = &s.max_pos;
    else if (!strcmp(a, "--tie")) field = &s.tie;
    else if (!strcmp(a, "--sliding-window")) field = &s.sliding_window;
    else if (!strcmp(a, "--shards")) field = &s.n_shards;
    else return die("unknown option", a);
    if (!tpd_cli_int(v, 0, 1L << 30, &iv)) return die("expected a non-negative integer for", a);
    *field = (int)iv;
  }
  if (!out) {
    usage(stderr);
    return die("no output directory: pass --out DIR", NULL);
  }
  if (tpd_synth_write(&s, out) != TPD_OK) return die(tpd_last_error(), NULL);
  return 0;
}
