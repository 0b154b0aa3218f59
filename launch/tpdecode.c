/* tpdecode: tensor-parallel decode from a Hugging Face checkpoint.
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

static const char *PROG = "tpdecode";

#define MAX_N (1L << 24)
#define MAX_CTX (1L << 24)
#define MAX_TOP_K (1L << 30)
#define MAX_THREADS (1L << 20)
#define MAX_TEMP 1e6

static void usage(FILE *f) {
  fprintf(f,
          "usage: [mpirun -np N] tpdecode -m DIR --prompt-ids IDS [options]\n"
          "  -m, --model DIR        Hugging Face checkpoint (config.json + safetensors); required\n"
          "  --prompt-ids 1,2,3     prompt token ids; repeat for a batch of prompts; required\n"
          "  -n N                   tokens to generate per prompt, 1..%ld (default 16)\n"
          "  --temp T               sampling temperature, 0..%g (default 0: greedy)\n"
          "  --top-k K              keep the K most likely tokens (default 0: off)\n"
          "  --top-p P              nucleus sampling mass, (0, 1] (default 1: off)\n"
          "  --seed S               random seed (default 0)\n"
          "  --ignore-eos           keep generating after an end-of-sequence token (default: stop)\n"
          "  --threads N            CPU threads per rank (default and maximum: online CPUs / ranks on the node)\n"
          "  --backend cpu|cuda     kernel backend (default cpu)\n"
          "  --activations f32|bf16 activation dtype (default: the backend's, cpu f32, cuda bf16; cuda f32\n"
          "                         reproduces the f32 reference ids, see docs/cuda.md)\n"
          "  --ctx N                context per sequence (default: longest prompt + n - 1, at most the model's)\n"
          "  --logits-out FILE      write the last step's float32 logits [batch, vocab] (rank 0; default: none)\n"
          "  --json                 print one JSON object (rank 0; default: plain text)\n"
          "  --version              print the version and the build's backends\n"
          "  -h, --help             this text\n",
          MAX_N, MAX_TEMP);
}

typedef struct {
  const char *model, *backend, *logits_out, *activations;
  int32_t **prompts;
  int *lens;
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
    } else if (!strcmp(a, "--prompt-ids")) {
      NEED_VALUE();
      const char *err = NULL;
      int32_t *ids = NULL;
      int n = tpd_cli_ids(v, &ids, &err);
      if (n < 0) return TPD_FAIL(TPD_ERR_ARG, "--prompt-ids '%s': %s", v, err);
      int32_t **p = realloc(o->prompts, sizeof *p * (size_t)(o->n_prompts + 1));
      int *l = realloc(o->lens, sizeof *l * (size_t)(o->n_prompts + 1));
      if (p) o->prompts = p;
      if (l) o->lens = l;
      if (!p || !l) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
      o->prompts[o->n_prompts] = ids;
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
  if (!o->n_prompts) return TPD_FAIL(TPD_ERR_ARG, "no prompt: pass --prompt-ids 1,2,3");
  if (strcmp(o->backend, "cpu") && strcmp(o->backend, "cuda"))
    return TPD_FAIL(TPD_ERR_ARG, "--backend '%s': expected cpu or cuda", o->backend);
  if (o->activations && strcmp(o->activations, "f32") && strcmp(o->activations, "bf16"))
    return TPD_FAIL(TPD_ERR_ARG, "--activations '%s': expected f32 or bf16", o->activations);
  return TPD_OK;
}

static void print_json(const opts *o, const tpd_gen_result *r, double med, double p90, double tps) {
  cJSON *root = cJSON_CreateObject();
  cJSON *seqs = cJSON_AddArrayToObject(root, "sequences");
  for (int i = 0; i < o->n_prompts; i++) {
    cJSON *s = cJSON_CreateObject();
    cJSON *p = cJSON_AddArrayToObject(s, "prompt_ids");
    for (int j = 0; j < o->lens[i]; j++) cJSON_AddItemToArray(p, cJSON_CreateNumber(o->prompts[i][j]));
    cJSON *q = cJSON_AddArrayToObject(s, "output_ids");
    for (int j = 0; j < r->n_tokens[i]; j++) cJSON_AddItemToArray(q, cJSON_CreateNumber(r->tokens[i][j]));
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
                        .max_seqs = o.n_prompts, .device = -1, .activations = o.activations};
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
  tpd_gen_result r;
  st = tpd_generate(e, &q, &r);
  /* every rank returns the same status from a failed step (input errors are found before any
   * collective, the rest agreed in the step's gather); only a broken collective is not agreed */
  if (st != TPD_OK) tpd_cli_die(PROG, comm, st, st != TPD_ERR_COMM);

  if (comm->rank == 0) {
    long generated = 0;
    for (int i = 0; i < r.n_seqs; i++) generated += r.n_tokens[i] - 1; /* decode steps' tokens */
    double total_ms = 0;
    for (int i = 0; i < r.n_steps; i++) total_ms += r.step_ms[i];
    const double med = tpd_percentile(r.step_ms, r.n_steps, 50), p90 = tpd_percentile(r.step_ms, r.n_steps, 90);
    const double tps = total_ms > 0 ? generated / (total_ms / 1e3) : 0.0;
    if (o.json) {
      print_json(&o, &r, med, p90, tps);
    } else {
      for (int i = 0; i < r.n_seqs; i++) {
        printf("seq %d:", i);
        for (int j = 0; j < r.n_tokens[i]; j++) printf(" %d", r.tokens[i][j]);
        printf("\n");
      }
      tpd_engine_info info;
      tpd_engine_get_info(e, &info);
      printf("prefill %.2f ms, decode %.2f ms/step median (p90 %.2f), %.1f tokens/s; TP=%d, %s/%s, %d thread%s per rank\n",
             r.prefill_ms, med, p90, tps, info.tp, info.backend, info.kernels, info.n_threads,
             info.n_threads == 1 ? "" : "s");
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
  tpd_gen_result_free(&r);
  tpd_engine_destroy(e);
  tpd_comm_destroy(nccl);
  for (int i = 0; i < o.n_prompts; i++) free(o.prompts[i]);
  free(o.prompts);
  free(o.lens);
  if (tpd_comm_agree(comm, write_ok, &bad) != TPD_OK) bad = 0;
  tpd_comm_destroy(comm);
  return bad >= 0 ? 1 : 0;
}
