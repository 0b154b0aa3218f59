/* tpdecode: tensor-parallel decode from a Hugging Face checkpoint.
 *   mpirun -np N tpdecode -m DIR --prompt "text" [-n 32] [--json] ...
 *   mpirun -np N tpdecode -m DIR --prompt-ids 1,2,3 [-n 32] [--json] ... */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launch/cli.h"
#include "launch/generate.h"
#include "launch/tools/stats.h"
#include "runtime/base/fileio.h"
#include "runtime/engine/tpdecode.h"
#include "runtime/model/chat.h"
#include "runtime/model/tokenizer.h"

static const char *PROG = "tpdecode";

#define MAX_N (1L << 24)
#define MAX_CTX (1L << 24)
#define MAX_TOP_K (1L << 30)
#define MAX_THREADS (1L << 20)
#define MAX_TEMP 1e6

static void usage(FILE *f) {
  fprintf(f,
          "usage: [mpirun -np N] tpdecode -m DIR (--prompt TEXT | --prompt-ids IDS) [options]\n"
          "  -m, --model DIR        Hugging Face checkpoint (config.json + safetensors); required\n"
          "  --prompt TEXT          prompt text, encoded with DIR/tokenizer.json; repeat for a batch; required\n"
          "                         unless --prompt-ids (the two may be mixed; sequences in argument order)\n"
          "  --prompt-ids 1,2,3     prompt token ids; repeat for a batch of prompts; required unless --prompt\n"
          "  --chat TEXT            a user message in the model's chat template, assistant turn opened (default: none;\n"
          "                         template from tokenizer_config.json, chat_template.jinja or the architecture;\n"
          "                         repeatable and mixable like --prompt)\n"
          "  --system TEXT          the system message of every --chat prompt (default: none)\n"
          "  -n N                   tokens to generate per prompt, 1..%ld (default 16)\n"
          "  --temp T               sampling temperature, 0..%g (default 0: greedy)\n"
          "  --top-k K              keep the K most likely tokens (default 0: off)\n"
          "  --top-p P              nucleus sampling mass, (0, 1] (default 1: off)\n"
          "  --seed S               random seed (default 0)\n"
          "  --ignore-eos           keep generating after an end-of-sequence token (default: stop)\n"
          "  --threads N            CPU threads per rank (default and maximum: online CPUs / ranks on the node)\n"
          "  --backend cpu|cuda     kernel backend (default cpu)\n"
          "  --activations auto|f32|bf16  activation dtype (default auto, the backend's; cuda bf16, f32 reproduces\n"
          "                         the f32 reference ids, see docs/cuda.md; cpu: the dtype bf16 weights' matmuls\n"
          "                         read, bf16 where the CPU's vdpbf16ps outruns its FMA, else f32, see docs/usage.md)\n"
          "  --kv-cache auto|f32|bf16  KV cache dtype (default auto: bf16 for a bf16 checkpoint on cpu, else f32;\n"
          "                         cuda: the activation dtype; see docs/architecture.md, \"KV cache dtype\")\n"
          "  --ctx N                context per sequence (default: longest prompt + n - 1, at most the model's)\n"
          "  --logits-out FILE      write the last step's float32 logits [batch, vocab] (rank 0; default: none)\n"
          "  --json                 print one JSON object (rank 0; default: plain text)\n"
          "  --version              print the version and the build's backends\n"
          "  -h, --help             this text\n",
          MAX_N, MAX_TEMP);
}

typedef struct {
  const char *model, *backend, *logits_out, *activations, *kv_cache;
  int32_t **prompts; /* a --prompt's ids once encoded (encode_prompts) */
  int *lens;
  const char **texts; /* [n_prompts] the --prompt or --chat text, NULL for --prompt-ids */
  unsigned char *chat; /* [n_prompts] 1: texts[i] is a --chat user message */
  const char *system;  /* --system */
  int n_prompts;
  long n, top_k, threads, ctx;
  double temp, top_p;
  long long seed;
  int json, ignore_eos, help, version;
} opts;

/* Parses argv; on error records a message and returns a status (identical on every rank). */
static tpd_status parse(int argc, char **argv, opts *o) {
  memset(o, 0, sizeof *o);
  o->n = 16;
  o->top_p = 1.0;
  o->backend = "cpu";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    long iv;
    double fv;
#define NEED_VALUE() \
  if (!v) return TPD_FAIL(TPD_ERR_ARG, "option %s needs a value", a); \
  i++
#define INT_VALUE(lo, hi) TPD_TRY(tpd_cli_int_opt(a, v, lo, hi, &iv))
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      o->help = 1;
      return TPD_OK;
    } else if (!strcmp(a, "--version")) {
      o->version = 1;
      return TPD_OK;
    } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
      NEED_VALUE();
      o->model = v;
    } else if (!strcmp(a, "--system")) {
      NEED_VALUE();
      o->system = v;
    } else if (!strcmp(a, "--prompt-ids") || !strcmp(a, "--prompt") || !strcmp(a, "--chat")) {
      NEED_VALUE();
      const int is_text = strcmp(a, "--prompt-ids") != 0;
      const char *err = NULL;
      int32_t *ids = NULL;
      int n = is_text ? 0 : tpd_cli_ids(v, &ids, &err);
      if (n < 0) return TPD_FAIL(TPD_ERR_ARG, "--prompt-ids '%s': %s", v, err);
      int32_t **p = realloc(o->prompts, sizeof *p * (size_t)(o->n_prompts + 1));
      if (p) o->prompts = p;
      int *l = realloc(o->lens, sizeof *l * (size_t)(o->n_prompts + 1));
      if (l) o->lens = l;
      const char **t = realloc(o->texts, sizeof *t * (size_t)(o->n_prompts + 1));
      if (t) o->texts = t;
      unsigned char *ch = realloc(o->chat, (size_t)(o->n_prompts + 1));
      if (ch) o->chat = ch;
      if (!p || !l || !t || !ch) {
        free(ids);
        return TPD_FAIL(TPD_ERR_OOM, "out of memory");
      }
      o->prompts[o->n_prompts] = ids;
      o->texts[o->n_prompts] = is_text ? v : NULL;
      o->chat[o->n_prompts] = !strcmp(a, "--chat");
      o->lens[o->n_prompts++] = n;
    } else if (!strcmp(a, "-n")) {
      NEED_VALUE();
      INT_VALUE(1, MAX_N);
      o->n = iv;
    } else if (!strcmp(a, "--temp")) {
      NEED_VALUE();
      if (!tpd_cli_float(v, 0.0, MAX_TEMP, &fv))
        return TPD_FAIL(TPD_ERR_ARG, "--temp '%s': expected a number in [0, %g]", v, MAX_TEMP);
      o->temp = fv;
    } else if (!strcmp(a, "--top-k")) {
      NEED_VALUE();
      INT_VALUE(0, MAX_TOP_K);
      o->top_k = iv;
    } else if (!strcmp(a, "--top-p")) {
      NEED_VALUE();
      if (!tpd_cli_float(v, 0.0, 1.0, &fv) || fv <= 0)
        return TPD_FAIL(TPD_ERR_ARG, "--top-p '%s': expected a number in (0, 1]", v);
      o->top_p = fv;
    } else if (!strcmp(a, "--seed")) {
      NEED_VALUE();
      INT_VALUE(0, LONG_MAX);
      o->seed = iv;
    } else if (!strcmp(a, "--threads")) {
      NEED_VALUE();
      INT_VALUE(1, MAX_THREADS);
      o->threads = iv;
    } else if (!strcmp(a, "--ctx")) {
      NEED_VALUE();
      INT_VALUE(1, MAX_CTX);
      o->ctx = iv;
    } else if (!strcmp(a, "--backend")) {
      NEED_VALUE();
      o->backend = v;
    } else if (!strcmp(a, "--activations")) {
      NEED_VALUE();
      o->activations = v;
    } else if (!strcmp(a, "--kv-cache")) {
      NEED_VALUE();
      o->kv_cache = v;
    } else if (!strcmp(a, "--logits-out")) {
      NEED_VALUE();
      o->logits_out = v;
    } else if (!strcmp(a, "--json")) {
      o->json = 1;
    } else if (!strcmp(a, "--ignore-eos")) {
      o->ignore_eos = 1;
    } else if (a[0] != '-') {
      return TPD_FAIL(TPD_ERR_ARG, "unexpected argument '%s' (options start with '-'; see --help)", a);
    } else {
      return TPD_FAIL(TPD_ERR_ARG, "unknown option '%s' (see --help)", a);
    }
#undef INT_VALUE
#undef NEED_VALUE
  }
  if (!o->model) return TPD_FAIL(TPD_ERR_ARG, "no model: pass -m DIR");
  if (!o->n_prompts) return TPD_FAIL(TPD_ERR_ARG, "no prompt: pass --prompt TEXT or --prompt-ids 1,2,3");
  if (strcmp(o->backend, "cpu") && strcmp(o->backend, "cuda"))
    return TPD_FAIL(TPD_ERR_ARG, "--backend '%s': expected cpu or cuda", o->backend);
  if (o->activations) TPD_TRY(tpd_cli_dtype_opt("--activations", o->activations, &o->activations));
  if (o->kv_cache) TPD_TRY(tpd_cli_dtype_opt("--kv-cache", o->kv_cache, &o->kv_cache));
  return TPD_OK;
}

/* ---- text: the tokenizer, the prompts' ids, the generated text ---- */

/* A --chat message (with --system) through the model's chat template. */
static tpd_status render_chat(const tpd_tokenizer *t, const tpd_model_config *cfg, const char *system,
                              const char *user, int i, char **out) {
  tpd_chat_kind kind;
  const tpd_status st = tpd_chat_kind_for(tpd_tokenizer_chat_template(t), cfg->model_type,
                                          tpd_tokenizer_token_id(t, "<|start_header_id|>") >= 0, &kind);
  if (st != TPD_OK) return TPD_FAIL(st, "--chat of sequence %d: %s", i, tpd_last_error());
  tpd_chat_message m[2] = {{"system", system}, {"user", user}};
  const int off = system ? 0 : 1;
  const tpd_status rs =
      tpd_chat_render(kind, tpd_tokenizer_bos_text(t), tpd_tokenizer_eos_text(t), m + off, 2 - off, 1, out);
  if (rs != TPD_OK)
    return TPD_FAIL(rs, "--chat of sequence %d (%s template): %s", i, tpd_chat_kind_name(kind), tpd_last_error());
  return TPD_OK;
}

/* Loads DIR/tokenizer.json where it is needed or useful and encodes the
 * --prompt texts into o->prompts.  With a --prompt the tokenizer is
 * required (every rank encodes); otherwise rank 0 loads it, when present,
 * for --json's output_text, and a tokenizer that does not load puts a
 * warning in warn (the ids still work).  *tok stays NULL when there is
 * none to use. */
static tpd_status load_tokenizer(opts *o, const tpd_model_config *cfg, int rank, tpd_tokenizer **tok, char *warn,
                                 size_t warn_cap) {
  *tok = NULL;
  warn[0] = 0;
  int n_text = 0;
  for (int i = 0; i < o->n_prompts; i++) n_text += o->texts[i] != NULL;
  char path[4200];
  snprintf(path, sizeof path, "%s/tokenizer.json", o->model);
  if (!n_text) {
    if (!o->json || rank != 0 || !tpd_path_exists(path)) return TPD_OK;
    if (tpd_tokenizer_load(o->model, tok) != TPD_OK) {
      snprintf(warn, warn_cap, "%s: warning: %s; --json has no output_text", PROG, tpd_last_error());
      *tok = NULL;
    }
    return TPD_OK;
  }
  if (!tpd_path_exists(path))
    return TPD_FAIL(TPD_ERR_IO, "--prompt needs the model's tokenizer, and %s does not exist (pass token ids with --prompt-ids)",
                    path);
  TPD_TRY(tpd_tokenizer_load(o->model, tok));
  for (int i = 0; i < o->n_prompts; i++) {
    if (!o->texts[i]) continue;
    int32_t *ids = NULL;
    int n = 0;
    char *rendered = NULL;
    if (o->chat[i]) TPD_TRY(render_chat(*tok, cfg, o->system, o->texts[i], i, &rendered));
    const char *text = rendered ? rendered : o->texts[i];
    /* a rendered chat holds its special tokens as text: nothing more is added */
    const tpd_status st = tpd_tokenizer_encode(*tok, text, strlen(text), !rendered, &ids, &n);
    free(rendered);
    if (st != TPD_OK) return TPD_FAIL(st, "--prompt of sequence %d: %s", i, tpd_last_error());
    o->prompts[i] = ids;
    o->lens[i] = n;
    if (n == 0) return TPD_FAIL(TPD_ERR_ARG, "--prompt of sequence %d: the text gives no tokens", i);
    for (int j = 0; j < n; j++)
      if (ids[j] < 0 || ids[j] >= cfg->vocab)
        return TPD_FAIL(TPD_ERR_ARG, "--prompt of sequence %d: %s gives token id %d, beyond the model's vocab_size %d", i,
                        path, ids[j], cfg->vocab);
  }
  return TPD_OK;
}

/* Whether the tokenizer has a text for id (*known); a status other than
 * TPD_OK only for a failure other than "no such id". */
static tpd_status in_tokenizer(const tpd_tokenizer *t, int32_t id, int *known) {
  *known = 0;
  if (id < 0 || id >= tpd_tokenizer_n_tokens(t)) return TPD_OK;
  tpd_error_state saved;
  tpd_error_save(&saved);
  char *text = NULL;
  size_t len = 0;
  const tpd_status st = tpd_tokenizer_decode(t, &id, 1, 0, &text, &len);
  free(text);
  if (st == TPD_ERR_TOKEN) {
    tpd_error_restore(&saved);
    return TPD_OK;
  }
  *known = st == TPD_OK;
  return st;
}

/* A sequence's generated text: the decode (special tokens left out) of the
 * ids the tokenizer has; the others (a model's vocab_size may be padded
 * beyond its tokenizer) are listed in unknown. */
typedef struct {
  char *text;
  size_t len;
  int32_t *unknown;
  int n_unknown;
} seq_text;

static void seq_text_free(seq_text *x) {
  free(x->text);
  free(x->unknown);
  memset(x, 0, sizeof *x);
}

static tpd_status text_of(const tpd_tokenizer *t, const int32_t *ids, int n, seq_text *x) {
  memset(x, 0, sizeof *x);
  int32_t *keep = malloc(sizeof *keep * (size_t)(n + 1));
  x->unknown = malloc(sizeof *x->unknown * (size_t)(n + 1));
  if (!keep || !x->unknown) {
    free(keep);
    seq_text_free(x);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  }
  int n_keep = 0, known = 0;
  tpd_status st = TPD_OK;
  for (int j = 0; j < n && st == TPD_OK; j++) {
    st = in_tokenizer(t, ids[j], &known);
    if (known) keep[n_keep++] = ids[j];
    else x->unknown[x->n_unknown++] = ids[j];
  }
  if (st == TPD_OK && n_keep > 0) {
    st = tpd_tokenizer_decode(t, keep, n_keep, 1, &x->text, &x->len);
  } else if (st == TPD_OK) {
    x->text = calloc(1, 1);
    if (!x->text) st = TPD_FAIL(TPD_ERR_OOM, "out of memory");
  }
  free(keep);
  if (st != TPD_OK) seq_text_free(x);
  return st;
}

/* One line on stderr for a sequence whose text leaves ids out. */
static void note_unknown(int seq, const seq_text *x, const tpd_tokenizer *t, int vocab) {
  if (!x->n_unknown) return;
  fprintf(stderr, "%s: note: seq %d: %d generated id%s not in the tokenizer (%d tokens; the model's vocab_size is %d) "
                  "left out of the text:", PROG, seq, x->n_unknown, x->n_unknown == 1 ? "" : "s", tpd_tokenizer_n_tokens(t),
          vocab);
  for (int j = 0; j < x->n_unknown && j < 8; j++) fprintf(stderr, " %d", x->unknown[j]);
  fprintf(stderr, "%s\n", x->n_unknown > 8 ? " ..." : "");
}

/* Streams sequence 0's text as it is generated (plain output, one prompt). */
typedef struct {
  const tpd_tokenizer *tok;
  tpd_detok *detok;
  tpd_status st;
  tpd_error_state err; /* the message of a failure (st) */
} text_stream;

static void stream_put(const char *piece, size_t len) {
  if (len) fwrite(piece, 1, len, stdout);
  fflush(stdout);
}

static void stream_token(void *ctx, int seq, int32_t id) {
  text_stream *s = ctx;
  if (seq != 0 || s->st != TPD_OK) return;
  int known = 0;
  const char *piece = NULL;
  size_t len = 0;
  tpd_status st = in_tokenizer(s->tok, id, &known);
  if (st == TPD_OK && known) st = tpd_detok_push(s->detok, id, &piece, &len);
  if (st == TPD_OK && known) stream_put(piece, len);
  if (st != TPD_OK) {
    s->st = st;
    tpd_error_save(&s->err);
  }
}

/* text as a JSON string (cJSON's strings end at a NUL byte, which a decoded
 * byte 0 is); malloc'd. */
static char *json_string(const char *text, size_t len) {
  char *out = malloc(6 * len + 3), *p = out;
  if (!out) return NULL;
  *p++ = '"';
  for (size_t i = 0; i < len; i++) {
    const unsigned char c = (unsigned char)text[i];
    if (c == '"' || c == '\\') {
      *p++ = '\\';
      *p++ = (char)c;
    } else if (c < 0x20) {
      p += sprintf(p, "\\u%04x", c);
    } else {
      *p++ = (char)c;
    }
  }
  *p++ = '"';
  *p = 0;
  return out;
}

static void print_json(const opts *o, const tpd_gen_result *r, const seq_text *texts, double med, double p90,
                       double tps) {
  cJSON *root = cJSON_CreateObject();
  cJSON *seqs = cJSON_AddArrayToObject(root, "sequences");
  for (int i = 0; i < o->n_prompts; i++) {
    cJSON *s = cJSON_CreateObject();
    cJSON *p = cJSON_AddArrayToObject(s, "prompt_ids");
    for (int j = 0; j < o->lens[i]; j++) cJSON_AddItemToArray(p, cJSON_CreateNumber(o->prompts[i][j]));
    cJSON *q = cJSON_AddArrayToObject(s, "output_ids");
    for (int j = 0; j < r->n_tokens[i]; j++) cJSON_AddItemToArray(q, cJSON_CreateNumber(r->tokens[i][j]));
    if (texts) {
      char *js = json_string(texts[i].text, texts[i].len);
      cJSON_AddItemToObject(s, "output_text", js ? cJSON_CreateRaw(js) : cJSON_CreateNull());
      free(js);
      cJSON *u = cJSON_AddArrayToObject(s, "output_ids_not_in_tokenizer");
      for (int j = 0; j < texts[i].n_unknown; j++) cJSON_AddItemToArray(u, cJSON_CreateNumber(texts[i].unknown[j]));
    }
    cJSON_AddItemToArray(seqs, s);
  }
  cJSON *t = cJSON_AddObjectToObject(root, "timing");
  cJSON_AddNumberToObject(t, "prefill_ms", r->prefill_ms);
  cJSON_AddNumberToObject(t, "ms_per_token_median", med);
  cJSON_AddNumberToObject(t, "ms_per_token_p90", p90);
  cJSON_AddNumberToObject(t, "tokens_per_s", tps);
  char *text = cJSON_PrintUnformatted(root);
  if (text) puts(text);
  free(text);
  cJSON_Delete(root);
}

/* --logits-out is opened before any work, so a path that cannot be written
 * fails at once; a run that fails after that removes the file (at exit). */
static const char *g_unfinished_logits;
static void remove_unfinished_logits(void) {
  if (g_unfinished_logits) unlink(g_unfinished_logits);
}

int main(int argc, char **argv) {
  tpd_comm *comm = NULL;
  tpd_status st = tpd_comm_create_default(&argc, &argv, &comm);
  if (st != TPD_OK) tpd_cli_die(PROG, NULL, st, 1);
  opts o;
  st = parse(argc, argv, &o);
  if (st != TPD_OK) tpd_cli_die(PROG, comm, st, 1);
  if (o.help || o.version) {
    if (comm->rank == 0) {
      if (o.help) usage(stdout);
      else tpd_cli_version(PROG);
    }
    tpd_comm_destroy(comm);
    return 0;
  }
  tpd_engine_opts eo = {TPD_ENGINE_OPTS_INIT, .model_dir = o.model, .backend = o.backend, .n_threads = tpd_cli_threads(PROG, comm, o.threads),
                        .max_seqs = o.n_prompts, .device = -1, .activations = o.activations, .kv_cache = o.kv_cache};
  int ok = 1, bad = -1;
  FILE *logits_f = NULL;
  if (o.logits_out && comm->rank == 0) {
    logits_f = fopen(o.logits_out, "wb");
    if (!logits_f) {
      st = TPD_FAIL(TPD_ERR_IO, "--logits-out %s: cannot open for writing: %s", o.logits_out, strerror(errno));
      ok = 0;
    } else {
      g_unfinished_logits = o.logits_out;
      atexit(remove_unfinished_logits);
    }
  }
  /* context: what the prompts need unless --ctx says otherwise; the model's
   * limit is checked against the request in tpd_generate */
  tpd_model_config cfg;
  if (ok) {
    st = tpd_is_dir(o.model) ? tpd_config_load(o.model, &cfg)
                             : TPD_FAIL(TPD_ERR_IO, "model directory %s does not exist", o.model);
    ok = st == TPD_OK;
  }
  /* the tokenizer, and the --prompt texts' ids (every rank encodes its own copy) */
  tpd_tokenizer *tok = NULL;
  char tok_warning[1200] = "";
  if (ok) ok = (st = load_tokenizer(&o, &cfg, comm->rank, &tok, tok_warning, sizeof tok_warning)) == TPD_OK;
  if (ok) {
    long need = 0;
    for (int i = 0; i < o.n_prompts; i++)
      if (o.lens[i] + o.n - 1 > need) need = o.lens[i] + o.n - 1;
    eo.max_ctx = (int)(o.ctx ? o.ctx : need < cfg.max_pos ? need : cfg.max_pos);
    if (eo.max_ctx > cfg.max_pos) {
      st = TPD_FAIL(TPD_ERR_ARG, "--ctx %d exceeds the model's max_position_embeddings (%d)", eo.max_ctx, cfg.max_pos);
      ok = 0;
    }
  }
  if (tpd_comm_agree(comm, ok, &bad) != TPD_OK) tpd_cli_die(PROG, comm, TPD_ERR_COMM, 0);
  if (bad >= 0) tpd_cli_die_agreed(PROG, comm, bad);
  /* with --backend cuda and TP > 1 the all-reduces go over NCCL when the build has it */
  tpd_comm *ecomm = comm, *nccl = NULL;
  char note[400] = "";
  if (tpd_comm_for_backend(comm, o.backend, &ecomm, &nccl, note, sizeof note) != TPD_OK)
    tpd_cli_die(PROG, comm, TPD_ERR_COMM, 0);
  if (note[0] && comm->rank == 0) fprintf(stderr, "%s: note: %s\n", PROG, note);
  if (tok_warning[0]) fprintf(stderr, "%s\n", tok_warning);
  tpd_engine *e = NULL;
  ok = (st = tpd_engine_create(&eo, ecomm, &e)) == TPD_OK;
  if (tpd_comm_agree(comm, ok, &bad) != TPD_OK) tpd_cli_die(PROG, comm, TPD_ERR_COMM, 0);
  if (bad >= 0) tpd_cli_die_agreed(PROG, comm, bad);

  tpd_gen_request q = {.n_seqs = o.n_prompts, .prompts = (const int32_t *const *)o.prompts,
                       .prompt_lens = o.lens, .n_new = (int)o.n, .stop_at_eos = !o.ignore_eos,
                       .keep_logits = o.logits_out != NULL};
  q.sampling.temperature = (float)o.temp;
  q.sampling.top_k = (int)o.top_k;
  q.sampling.top_p = (float)o.top_p;
  q.sampling.seed = (uint64_t)o.seed;
  /* plain output of one --prompt: its text appears token by token (rank 0) */
  text_stream stream = {.tok = tok, .st = TPD_OK};
  const int streaming = comm->rank == 0 && !o.json && tok && o.n_prompts == 1 && o.texts[0];
  if (streaming) {
    if ((st = tpd_detok_create(tok, 1, &stream.detok)) != TPD_OK) tpd_cli_die(PROG, comm, st, 0);
    q.on_token = stream_token;
    q.on_token_ctx = &stream;
    printf("seq 0: ");
    fflush(stdout);
  }
  tpd_gen_result r;
  st = tpd_generate(e, &q, &r);
  if (streaming) {
    const char *piece = NULL;
    size_t len = 0;
    if (stream.st == TPD_OK && tpd_detok_flush(stream.detok, &piece, &len) == TPD_OK) stream_put(piece, len);
    printf("\n");
    fflush(stdout);
    tpd_detok_free(stream.detok);
  }
  /* every rank returns the same status from a failed step (input errors are found before any
   * collective, the rest agreed in the step's gather); only a broken collective is not agreed */
  if (st != TPD_OK) tpd_cli_die(PROG, comm, st, st != TPD_ERR_COMM);
  /* the text of each sequence whose text is shown: every one in --json, a --prompt's in plain output
   * (rank 0; a failure there is reported by rank 0 and agreed at the end, like --logits-out's) */
  seq_text *texts = NULL;
  if (streaming && stream.st != TPD_OK) {
    tpd_error_restore(&stream.err);
    st = stream.st;
  }
  if (st == TPD_OK && comm->rank == 0 && tok) {
    texts = calloc((size_t)r.n_seqs, sizeof *texts);
    if (!texts) st = TPD_FAIL(TPD_ERR_OOM, "out of memory");
    for (int i = 0; texts && st == TPD_OK && i < r.n_seqs; i++)
      if (o.json || o.texts[i]) st = text_of(tok, r.tokens[i], r.n_tokens[i], &texts[i]);
  }
  if (st != TPD_OK) {
    fprintf(stderr, "%s: error: %s\n", PROG, tpd_last_error());
    fflush(stderr);
  }

  if (comm->rank == 0 && st == TPD_OK) {
    long generated = 0;
    for (int i = 0; i < r.n_seqs; i++) generated += r.n_tokens[i] - 1; /* decode steps' tokens */
    double total_ms = 0;
    for (int i = 0; i < r.n_steps; i++) total_ms += r.step_ms[i];
    const double med = tpd_percentile(r.step_ms, r.n_steps, 50), p90 = tpd_percentile(r.step_ms, r.n_steps, 90);
    const double tps = total_ms > 0 ? generated / (total_ms / 1e3) : 0.0;
    if (o.json) {
      print_json(&o, &r, texts, med, p90, tps);
    } else {
      for (int i = 0; i < r.n_seqs; i++) {
        if (texts && o.texts[i]) { /* text; the streamed one is out already */
          if (!streaming) {
            printf("seq %d: ", i);
            fwrite(texts[i].text, 1, texts[i].len, stdout);
            printf("\n");
          }
          fflush(stdout);
          note_unknown(i, &texts[i], tok, cfg.vocab);
          continue;
        }
        printf("seq %d:", i);
        for (int j = 0; j < r.n_tokens[i]; j++) printf(" %d", r.tokens[i][j]);
        printf("\n");
      }
      tpd_engine_info info;
      tpd_engine_get_info(e, &info);
      printf("prefill %.2f ms, decode %.2f ms/step median (p90 %.2f), %.1f tokens/s; TP=%d, %s/%s, KV %s, %d thread%s "
             "per rank\n",
             r.prefill_ms, med, p90, tps, info.tp, info.backend, info.kernels, tpd_dtype_name(info.kv_dtype),
             info.n_threads, info.n_threads == 1 ? "" : "s");
    }
    if (logits_f) {
      const size_t n_elems = (size_t)r.n_seqs * (size_t)cfg.vocab;
      const int put = fwrite(r.last_logits, sizeof(float), n_elems, logits_f) == n_elems;
      const int err = errno;
      if (fclose(logits_f) != 0 || !put) {
        st = TPD_FAIL(TPD_ERR_IO, "--logits-out %s: cannot write: %s", o.logits_out, strerror(put ? errno : err));
        fprintf(stderr, "%s: error: %s\n", PROG, tpd_last_error());
      } else {
        g_unfinished_logits = NULL;
      }
      logits_f = NULL;
    }
    fflush(stdout);
  }
  int write_ok = st == TPD_OK;
  if (texts)
    for (int i = 0; i < r.n_seqs; i++) seq_text_free(&texts[i]);
  free(texts);
  tpd_tokenizer_free(tok);
  tpd_gen_result_free(&r);
  tpd_engine_destroy(e);
  tpd_comm_destroy(nccl);
  for (int i = 0; i < o.n_prompts; i++) free(o.prompts[i]);
  free(o.prompts);
  free(o.lens);
  free(o.texts);
  free(o.chat);
  if (tpd_comm_agree(comm, write_ok, &bad) != TPD_OK) bad = 0;
  tpd_comm_destroy(comm);
  return bad >= 0 ? 1 : 0;
}
