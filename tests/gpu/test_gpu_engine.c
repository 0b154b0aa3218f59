/* Whole model: the engine on the CUDA backend against the engine on the CPU
 * backend (single-process communicator, TP = 1), on synthetic checkpoints
 * written with tpd_synth_write: GQA Llama with two sequences batched,
 * Mistral with a sliding window and a prompt longer than one forward, Qwen2
 * with q/k/v biases and F16 weights, Llama with o_proj bias, llama3 rope
 * scaling, F32 weights and a single KV head.
 *
 * Each case prefills the prompt(s), then decodes greedily for a few steps;
 * both engines are fed the CPU engine's tokens (teacher forcing) so every
 * step compares the same computation.  Checks: the normalised error of the
 * full logits, and equal greedy ids wherever the CPU's top two logits are
 * not a near tie.
 *
 * Then the numerics policy (docs/cuda.md, "Numerics policy") on the
 * conformance pack (tests/data/conformance), every case teacher-forced along
 * the pack's greedy ids, against the independent float64 reference model
 * (tests/unit/ref_model.c) at every step:
 *   f32 activations: the pack's greedy ids, all of them, identical; logits
 *     within the conformance tolerance of the pack's and within F32_REL of
 *     the float64 reference
 *   bf16 activations (default): logits within the stated bf16 bounds of the
 *     float64 reference (normwise rho_max, elementwise eta_max), and the
 *     greedy id equal to the reference's at every step whose reference top-2
 *     margin is at least 2 eta_max rms(logits) -- so every step before the
 *     first one below that margin.
 * Exit 77 when no CUDA device is present. */
#include <stdint.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "runtime/base/fileio.h"
#include "launch/tools/synth.h"
#include "runtime/engine/tpdecode.h"
#define TU_WITH_CUDA /* the device helpers of tests/testutil.h */
#include "tests/testutil.h"
#include "tests/gpu/numerics.h"

static const char *PROG = "test_gpu_engine";
static const double LOGIT_TOL = 3e-2; /* bf16 activations through every layer */

static void remove_model(const char *dir) {
  char p[4200];
  snprintf(p, sizeof p, "%s/config.json", dir);
  unlink(p);
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  unlink(p);
  rmdir(dir);
}

/* top-1 index of a row and its margin over the runner-up, in units of the
 * row's rms */
static int top1(const float *l, int V, double *margin) {
  int b = 0;
  for (int i = 1; i < V; i++)
    if (l[i] > l[b]) b = i;
  double second = -INFINITY, ss = 0;
  for (int i = 0; i < V; i++) {
    ss += (double)l[i] * l[i];
    if (i != b && l[i] > second) second = l[i];
  }
  const double rms = sqrt(ss / V);
  *margin = rms > 0 ? (l[b] - second) / rms : 0;
  return b;
}

typedef struct {
  const char *label;
  tpd_synth_spec spec;
  int prompt[2];   /* prompt lengths; [1] = 0: one sequence */
  int n_decode;
  int block_size;
  int step_tokens; /* max tokens per forward */
} engine_case;

static void run_case(const engine_case *ec, tpd_comm *comm) {
  const char *tmp = getenv("TMPDIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tpd-gpu-engine-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir)) {
    printf("FAIL %s: cannot create a temporary directory\n", ec->label);
    tu_count(0); /* a failure */
    return;
  }
  TU_TRY(tpd_synth_write(&ec->spec, dir));
  tpd_engine_opts o;
  tpd_engine_opts_init(&o);
  o.model_dir = dir;
  o.n_threads = 2;
  o.max_ctx = 256;
  o.max_seqs = 2;
  o.max_step_tokens = ec->step_tokens;
  o.kv_block_size = ec->block_size;
  o.device = -1;
  tpd_engine *e[2] = {NULL, NULL}; /* 0: cpu, 1: cuda */
  o.backend = "cpu";
  o.kv_cache = "f32"; /* the f32 reference (auto would pick bf16 for a bf16 model) */
  o.activations = "f32"; /* (auto rounds bf16 weights' matmul inputs on a CPU whose vdpbf16ps outruns its FMA) */
  TU_TRY(tpd_engine_create(&o, comm, &e[0]));
  o.backend = "cuda";
  o.kv_cache = NULL; /* cuda: the activation dtype */
  o.activations = NULL;
  TU_TRY(tpd_engine_create(&o, comm, &e[1]));
  tpd_engine_info info;
  tpd_engine_get_info(e[1], &info);
  tu_expect(!strcmp(info.backend, "cuda"), "engine reports the cuda backend");
  const int V = tpd_engine_config(e[0])->vocab;
  const int n_seq = ec->prompt[1] > 0 ? 2 : 1;
  int slots[2][2];
  int32_t *prompt[2] = {NULL, NULL};
  for (int k = 0; k < 2; k++)
    for (int s = 0; s < n_seq; s++) TU_TRY(tpd_engine_seq_open(e[k], &slots[k][s]));
  for (int s = 0; s < n_seq; s++) {
    prompt[s] = tu_malloc(sizeof(int32_t) * (size_t)ec->prompt[s]);
    for (int i = 0; i < ec->prompt[s]; i++) prompt[s][i] = (int32_t)tu_int(0, V - 1);
  }
  float *logits[2] = {tu_malloc(sizeof(float) * (size_t)n_seq * V), tu_malloc(sizeof(float) * (size_t)n_seq * V)};
  int32_t next[2][2], feed[2];
  tu_cmp worst = {0, 0};
  int mismatches = 0, near_ties = 0, compared = 0;
  for (int step = 0; step <= ec->n_decode; step++) {
    for (int k = 0; k < 2; k++) {
      tpd_step_item items[2];
      memset(items, 0, sizeof items);
      for (int s = 0; s < n_seq; s++) {
        items[s].slot = slots[k][s];
        items[s].n_tokens = step == 0 ? ec->prompt[s] : 1;
        items[s].tokens = step == 0 ? prompt[s] : &feed[s];
        items[s].stream = (uint64_t)s;
      }
      TU_TRY(tpd_engine_step(e[k], items, n_seq, next[k], logits[k]));
    }
    for (int s = 0; s < n_seq; s++) {
      const tu_cmp c = tu_compare(logits[1] + (size_t)s * V, V, logits[0] + (size_t)s * V, V, 1, V);
      worst.err = tu_worst(worst.err, c.err); /* NaN-safe running maximum */
      worst.n_nan += c.n_nan;
      double margin = 0;
      const int want = top1(logits[0] + (size_t)s * V, V, &margin);
      compared++;
      if (next[1][s] != want) {
        if (margin > 0.05) {
          printf("     %s step %d seq %d: cuda picked %d, cpu %d (margin %.3f rms)\n", ec->label, step, s, next[1][s],
                 want, margin);
          mismatches++;
        } else {
          near_ties++;
        }
      }
      feed[s] = next[0][s];
    }
  }
  char what[200];
  snprintf(what, sizeof what, "engine %s: logits over %d steps x %d seq", ec->label, ec->n_decode + 1, n_seq);
  tu_report(what, worst, LOGIT_TOL);
  snprintf(what, sizeof what, "engine %s: greedy ids equal (%d compared, %d near ties excused)", ec->label, compared,
           near_ties);
  tu_expect(mismatches == 0, what);
  for (int k = 0; k < 2; k++) tpd_engine_destroy(e[k]);
  for (int s = 0; s < n_seq; s++) free(prompt[s]);
  free(logits[0]), free(logits[1]);
  remove_model(dir);
}

/* ------------------------------------------------------------------ */
/* the numerics policy on the conformance pack                          */

/* Runs one conformance case for n steps on a cuda engine with the given
 * activations, teacher-forced along the pack's ids (gn_forced_run). */
static void run_pack_case(const gn_case *pc, const char *dir, const char *activations, tpd_comm *comm, int n,
                          const int *with_logits, int32_t *picks, float *logits) {
  char path[4200];
  snprintf(path, sizeof path, "%.3000s/%.120s", dir, pc->model);
  tpd_engine_opts o;
  tpd_engine_opts_init(&o);
  o.model_dir = path;
  o.backend = "cuda";
  o.activations = activations;
  o.n_threads = 1;
  o.max_seqs = 1;
  o.max_ctx = pc->np + pc->n;
  o.device = -1;
  tpd_engine *e = NULL;
  TU_TRY(tpd_engine_create(&o, comm, &e));
  TU_TRY(gn_forced_run(e, pc, n, with_logits, picks, logits));
  tpd_engine_destroy(e);
}

static void test_policy(tpd_comm *comm) {
  char dir[4096];
  gn_conformance_dir(dir, sizeof dir);
  gn_case cases[GN_MAX_CASES];
  const int n_cases = gn_load_cases(dir, cases, GN_MAX_CASES);
  char what[400];
  snprintf(what, sizeof what, "conformance pack %.300s: %d cases", dir, n_cases);
  tu_expect(n_cases >= 6, what);
  gn_stats f32_all, bf_all;
  gn_stats_init(&f32_all);
  gn_stats_init(&bf_all);
  for (int i = 0; i < n_cases; i++) {
    gn_case *pc = &cases[i];
    double *ref = NULL;
    gn_reference(dir, pc, &ref);
    if (!ref) {
      printf("FAIL %s: the float64 reference model did not load\n", pc->model);
      tu_count(0); /* a failure */
      continue;
    }
    const size_t nl = (size_t)pc->n * pc->V;
    int32_t *picks = tu_malloc(sizeof(int32_t) * (size_t)pc->n);
    int *with_logits = tu_malloc(sizeof(int) * (size_t)pc->n);
    float *logits = tu_malloc(sizeof(float) * nl);
    /* f32 activations: the pack's ids exactly, its logits, the float64 reference */
    gn_logit_steps(pc, 0, with_logits);
    run_pack_case(pc, dir, "f32", comm, pc->n, with_logits, picks, logits);
    gn_check_f32(pc, dir, picks, logits, with_logits, ref, 1, &f32_all);
    /* bf16 activations (the default): the stated bounds */
    const int nb = pc->n < GN_BF16_STEPS ? pc->n : GN_BF16_STEPS;
    gn_logit_steps(pc, 1, with_logits);
    run_pack_case(pc, dir, NULL, comm, nb, with_logits, picks, logits);
    gn_check_bf16(pc, nb, picks, logits, with_logits, ref, 1, &bf_all);
    free(picks), free(with_logits), free(logits), free(ref);
  }
  gn_stats_print("f32  TP=1", &f32_all);
  gn_stats_print("bf16 TP=1", &bf_all);
  tu_expect(bf_all.compared > 0, "bf16 TP=1: some steps had a margin large enough to compare ids");
}

/* no argument: everything; "engine": the engines against the CPU; "policy":
 * the numerics policy (ctest runs the two halves side by side under the
 * emulation) */
int main(int argc, char **argv) {
  const char *part = argc > 1 ? argv[1] : "all";
  if (strcmp(part, "all") && strcmp(part, "engine") && strcmp(part, "policy")) {
    fprintf(stderr, "%s: unknown part '%s' (all, engine or policy)\n", PROG, part);
    return 1;
  }
  tu_require_gpu(PROG);
  tu_seed(PROG);
  tpd_comm *comm = NULL;
  TU_TRY(tpd_comm_single_create(&comm));
  engine_case cases[4];
  memset(cases, 0, sizeof cases);
  int n = 0;
  {
    engine_case *c = &cases[n++];
    c->label = "llama gqa, 2 seqs";
    TU_TRY(tpd_synth_preset("small", &c->spec));
    c->spec.n_layers = 2, c->spec.vocab = 1000, c->spec.seed = tu_next();
    c->prompt[0] = 40, c->prompt[1] = 17, c->n_decode = 5, c->block_size = 16, c->step_tokens = 64;
  }
  {
    engine_case *c = &cases[n++];
    c->label = "mistral window 24, chunked prefill";
    TU_TRY(tpd_synth_preset("small", &c->spec));
    c->spec.arch = "mistral", c->spec.sliding_window = 24, c->spec.n_heads = 4, c->spec.n_kv_heads = 4;
    c->spec.n_layers = 2, c->spec.vocab = 999, c->spec.seed = tu_next();
    c->prompt[0] = 100, c->n_decode = 4, c->block_size = 8, c->step_tokens = 64;
  }
  {
    engine_case *c = &cases[n++];
    c->label = "qwen2 biases, f16 weights";
    TU_TRY(tpd_synth_preset("small", &c->spec));
    c->spec.arch = "qwen2", c->spec.dtype = TPD_F16, c->spec.tie = 1, c->spec.n_layers = 2, c->spec.vocab = 1003;
    c->spec.seed = tu_next();
    c->prompt[0] = 30, c->prompt[1] = 3, c->n_decode = 4, c->block_size = 16, c->step_tokens = 64;
  }
  {
    engine_case *c = &cases[n++];
    c->label = "llama o-bias, llama3 rope, f32, 1 kv head";
    TU_TRY(tpd_synth_preset("tiny", &c->spec));
    c->spec.dim = 128, c->spec.n_heads = 4, c->spec.n_kv_heads = 1, c->spec.ffn_dim = 300, c->spec.vocab = 777;
    c->spec.attention_bias = 1, c->spec.rope_llama3 = 1, c->spec.rope_factor = 8.0, c->spec.rope_orig_max_pos = 64;
    c->spec.dtype = TPD_F32, c->spec.seed = tu_next();
    c->prompt[0] = 20, c->n_decode = 4, c->block_size = 4, c->step_tokens = 16;
  }
  if (strcmp(part, "policy"))
    for (int i = 0; i < n; i++) run_case(&cases[i], comm);
  if (strcmp(part, "engine")) test_policy(comm);
  tpd_comm_destroy(comm);
  return tu_finish(PROG);
}
