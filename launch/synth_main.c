/* tpdecode-synth: writes a random model in Hugging Face layout, with a
 * matching tokenizer (tokenizer.json, tokenizer_config.json). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/cli.h"
#include "launch/tools/synth.h"

static const char *PROG = "tpdecode-synth";
static const char *PRESETS[] = {"tiny", "small", "1b", "8b"};

static void usage(FILE *f) {
  fprintf(f,
          "usage: tpdecode-synth --out DIR [options]\n"
          "  --out DIR              output folder, created if missing; required.  Gets config.json, the\n"
          "                         weights and a byte-level BPE tokenizer.json + tokenizer_config.json\n"
          "                         (vocab >= %d).  The files of an earlier checkpoint there (config.json,\n"
          "                         model*.safetensors, the index, the tokenizer's) are removed first;\n"
          "                         other files are kept\n"
          "  --preset NAME          tiny, small, 1b or 8b (default tiny)\n"
          "  --dtype f32|bf16|f16   weight dtype (default bf16)\n"
          "  --seed N               values depend only on the seed and the tensor name (default 1)\n"
          "  --shards N             split the tensors over N files plus an index (default 1: model.safetensors)\n"
          "  --version              print the version and the build's backends\n"
          "  -h, --help             this text\n"
          "Overrides of the preset (default: the preset's value, below):\n"
          "  --layers N  --dim N  --heads N  --kv-heads N  --ffn N  --vocab N  --ctx N (max positions)\n"
          "  --head-dim N (default dim / heads)  --tie 0|1  --arch llama|mistral|qwen2 (default llama)\n"
          "  --sliding-window N (mistral; default 0: none)  --attention-bias  --rope-llama3\n"
          "Presets:\n",
          TPD_SYNTH_TOKENIZER_MIN_VOCAB);
  for (size_t i = 0; i < sizeof PRESETS / sizeof *PRESETS; i++) {
    tpd_synth_spec s;
    if (tpd_synth_preset(PRESETS[i], &s) != TPD_OK) continue;
    fprintf(f, "  %-5s  dim %d, %d layers, %d heads (%d kv), ffn %d, vocab %d, ctx %d, %s%s\n", PRESETS[i], s.dim,
            s.n_layers, s.n_heads, s.n_kv_heads, s.ffn_dim, s.vocab, s.max_pos, s.tie ? "tied embeddings" : "untied",
            s.rope_llama3 ? ", llama3 rope" : "");
  }
}

/* Options; `value` says whether one follows. */
typedef struct {
  const char *name;
  int value;
} opt_def;
static const opt_def OPTS[] = {
    {"--out", 1},    {"--preset", 1}, {"--dtype", 1},    {"--seed", 1},          {"--shards", 1},
    {"--layers", 1}, {"--dim", 1},    {"--heads", 1},    {"--kv-heads", 1},      {"--head-dim", 1},
    {"--ffn", 1},    {"--vocab", 1},  {"--ctx", 1},      {"--tie", 1},           {"--arch", 1},
    {"--sliding-window", 1},          {"--attention-bias", 0}, {"--rope-llama3", 0}, {"-h", 0}, {"--help", 0},
    {"--version", 0}};

static const opt_def *find_opt(const char *a) {
  for (size_t i = 0; i < sizeof OPTS / sizeof *OPTS; i++)
    if (!strcmp(a, OPTS[i].name)) return &OPTS[i];
  return NULL;
}

typedef struct {
  const char *out;
  int help, version;
} synth_opts;

/* Pass 1 checks every option's name and value presence and finds the
 * preset; pass 2 applies the values over the preset in order. */
static tpd_status parse(int argc, char **argv, tpd_synth_spec *s, synth_opts *o) {
  memset(o, 0, sizeof *o);
  const char *preset = "tiny";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const opt_def *d = find_opt(a);
    if (!d && a[0] != '-')
      return TPD_FAIL(TPD_ERR_ARG, "unexpected argument '%s' (options start with '-'; see --help)", a);
    if (!d) return TPD_FAIL(TPD_ERR_ARG, "unknown option '%s' (see --help)", a);
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) o->help = 1;
    if (!strcmp(a, "--version")) o->version = 1;
    if (!d->value) continue;
    if (i + 1 >= argc) return TPD_FAIL(TPD_ERR_ARG, "option %s needs a value", a);
    if (!strcmp(a, "--preset")) preset = argv[i + 1];
    i++;
  }
  if (o->help || o->version) return TPD_OK;
  TPD_TRY(tpd_synth_preset(preset, s));
  int rope_llama3 = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!find_opt(a)->value) {
      if (!strcmp(a, "--attention-bias")) s->attention_bias = 1;
      if (!strcmp(a, "--rope-llama3")) rope_llama3 = 1;
      continue;
    }
    const char *v = argv[++i];
    long iv = 0;
    int *field = NULL;
    long lo = 1, hi = 1L << 30;
    if (!strcmp(a, "--out")) {
      o->out = v;
    } else if (!strcmp(a, "--preset")) {
      /* applied first */
    } else if (!strcmp(a, "--arch")) {
      if (strcmp(v, "llama") && strcmp(v, "mistral") && strcmp(v, "qwen2"))
        return TPD_FAIL(TPD_ERR_ARG, "--arch '%s': expected llama, mistral or qwen2", v);
      s->arch = v;
    } else if (!strcmp(a, "--dtype")) {
      if (!strcmp(v, "f32")) s->dtype = TPD_F32;
      else if (!strcmp(v, "bf16")) s->dtype = TPD_BF16;
      else if (!strcmp(v, "f16")) s->dtype = TPD_F16;
      else return TPD_FAIL(TPD_ERR_ARG, "--dtype '%s': expected f32, bf16 or f16", v);
    } else if (!strcmp(a, "--seed")) {
      TPD_TRY(tpd_cli_int_opt(a, v, 0, LONG_MAX, &iv));
      s->seed = (unsigned long long)iv;
    } else {
      if (!strcmp(a, "--layers")) field = &s->n_layers, hi = 1000000;
      else if (!strcmp(a, "--dim")) field = &s->dim;
      else if (!strcmp(a, "--heads")) field = &s->n_heads;
      else if (!strcmp(a, "--kv-heads")) field = &s->n_kv_heads;
      else if (!strcmp(a, "--head-dim")) field = &s->head_dim;
      else if (!strcmp(a, "--ffn")) field = &s->ffn_dim;
      else if (!strcmp(a, "--vocab")) field = &s->vocab;
      else if (!strcmp(a, "--ctx")) field = &s->max_pos;
      else if (!strcmp(a, "--tie")) field = &s->tie, lo = 0, hi = 1;
      else if (!strcmp(a, "--sliding-window")) field = &s->sliding_window, lo = 0;
      else if (!strcmp(a, "--shards")) field = &s->n_shards, hi = 99999;
      else return TPD_FAIL(TPD_ERR_INTERNAL, "option %s has no handler", a);
      TPD_TRY(tpd_cli_int_opt(a, v, lo, hi, &iv));
      *field = (int)iv;
    }
  }
  if (rope_llama3) {
    s->rope_llama3 = 1;
    if (!s->rope_factor) s->rope_factor = 8.0;
    if (!s->rope_orig_max_pos) s->rope_orig_max_pos = s->max_pos / 4 > 0 ? s->max_pos / 4 : 1;
  }
  if (s->sliding_window && strcmp(s->arch, "mistral"))
    return TPD_FAIL(TPD_ERR_ARG, "--sliding-window is written for --arch mistral only (arch is %s)", s->arch);
  if (!o->out) return TPD_FAIL(TPD_ERR_ARG, "no output directory: pass --out DIR (see --help)");
  return TPD_OK;
}

typedef struct {
  int n_files;
  unsigned long long n_bytes;
} tally;

static void print_size(unsigned long long n_bytes) {
  if (n_bytes >= 1000000ull) printf("%.1f MB", (double)n_bytes / 1e6);
  else printf("%llu bytes", n_bytes);
}

static void note(void *ctx, const char *what, const char *path, unsigned long long n_bytes) {
  tally *t = ctx;
  printf("%s: %s %s (", PROG, what, path);
  print_size(n_bytes);
  printf("%s)\n", strcmp(what, "removed") ? "" : ", from an earlier model");
  if (!strcmp(what, "wrote")) {
    t->n_files++;
    t->n_bytes += n_bytes;
  }
  fflush(stdout);
}

int main(int argc, char **argv) {
  tpd_synth_spec s;
  synth_opts o;
  tpd_status st = parse(argc, argv, &s, &o);
  if (st != TPD_OK) tpd_cli_die(PROG, NULL, st, 1);
  if (o.help) {
    usage(stdout);
    return 0;
  }
  if (o.version) {
    tpd_cli_version(PROG);
    return 0;
  }
  tally t = {0, 0};
  st = tpd_synth_write_ex(&s, o.out, note, &t);
  if (st != TPD_OK) tpd_cli_die(PROG, NULL, st, 1);
  printf("%s: %d files, ", PROG, t.n_files);
  print_size(t.n_bytes);
  printf(", in %s (%s, seed %llu)\n", o.out, s.dtype == TPD_F32 ? "f32" : s.dtype == TPD_F16 ? "f16" : "bf16", s.seed);
  if (s.vocab < TPD_SYNTH_TOKENIZER_MIN_VOCAB)
    printf("%s: no tokenizer: vocab %d is below the %d ids of its 256 bytes, BOS and EOS (--prompt-ids only)\n", PROG,
           s.vocab, TPD_SYNTH_TOKENIZER_MIN_VOCAB);
  return 0;
}
