/* The engine at TP=1 against the independent float64 reference forward
 * (tests/unit/ref_model.c) on F32 and BF16 synthetic models of every
 * supported family, plus batching, chunked prefill, continuous batching,
 * thread-count independence, KV block reuse and a long decode. */
#include <sys/stat.h>
#include <unistd.h>

#include "launch/generate.h"
#include "launch/tools/synth.h"
#include "ref_model.h"
#include "runtime/engine/tpdecode.h"
#include "testutil.h"

static char g_tmp[256];
static tpd_comm *g_comm;

static void random_prompt(int32_t *p, int n, int V) {
  for (int i = 0; i < n; i++) p[i] = (int32_t)tu_int(0, V - 1);
}

static tpd_engine *open_engine(const char *dir, int threads, int max_seqs, int max_ctx, int step_tokens) {
  /* an f32 KV cache and f32 matmul inputs: the float64 reference's numerics (a bf16 cache, the
   * default for bf16 checkpoints, and bf16 matmul inputs, the default on CPUs whose vdpbf16ps outruns
   * their FMA, are held to their own bounds in test_conformance) */
  tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = dir, .n_threads = threads, .max_seqs = max_seqs, .max_ctx = max_ctx,
                       .max_step_tokens = step_tokens, .kv_block_size = 4, .kv_cache = "f32", .activations = "f32"};
  tpd_engine *e = NULL;
  CHECK_OK(tpd_engine_create(&o, g_comm, &e));
  return e;
}

/* Greedy generation of one prompt; logits of the last step. */
static void gen1(tpd_engine *e, const int32_t *prompt, int n_prompt, int n_new, int32_t *out, float *last) {
  const int32_t *pp[1] = {prompt};
  tpd_gen_request q = {.n_seqs = 1, .prompts = pp, .prompt_lens = &n_prompt, .n_new = n_new, .keep_logits = 1};
  tpd_gen_result r;
  CHECK_OK(tpd_generate(e, &q, &r));
  if (!r.tokens) return;
  memcpy(out, r.tokens[0], sizeof(int32_t) * (size_t)n_new);
  memcpy(last, r.last_logits, sizeof(float) * (size_t)tpd_engine_config(e)->vocab);
  tpd_gen_result_free(&r);
}

typedef struct {
  const char *name;
  const char *arch;
  tpd_dtype dtype;
  int llama3, tie, head_dim, window, attn_bias;
  double tol; /* max |logit - ref| / max |ref| */
} model_case;

static void write_model(const model_case *mc, char *dir, size_t cap) {
  tpd_synth_spec s;
  CHECK_OK(tpd_synth_preset("tiny", &s));
  s.arch = mc->arch;
  s.dtype = mc->dtype;
  s.seed = (unsigned long long)tu_next();
  s.rope_llama3 = mc->llama3;
  if (mc->llama3) s.rope_factor = 8.0, s.rope_orig_max_pos = 16, s.rope_theta = 500000.0;
  s.tie = mc->tie;
  s.head_dim = mc->head_dim;
  s.sliding_window = mc->window;
  s.attention_bias = mc->attn_bias;
  snprintf(dir, cap, "%s/%s", g_tmp, mc->name);
  CHECK_OK(tpd_synth_write(&s, dir));
}

static void test_against_reference(const model_case *mc) {
  char dir[300];
  write_model(mc, dir, sizeof dir);
  ref_model *ref = NULL;
  CHECK(ref_load(dir, &ref) == 0, "%s: reference could not load", mc->name);
  tpd_engine *e = open_engine(dir, 2, 1, 0, 0);
  if (!ref || !e) return;
  const int V = ref_config(ref)->vocab, n_prompt = tu_int(1, 14), n_new = 10;
  int32_t prompt[16], got[16];
  int want[16], pi[16];
  random_prompt(prompt, n_prompt, V);
  for (int i = 0; i < n_prompt; i++) pi[i] = prompt[i];
  float *lg = malloc(sizeof(float) * (size_t)V);
  double *rl = malloc(sizeof(double) * (size_t)V);
  gen1(e, prompt, n_prompt, n_new, got, lg);
  ref_greedy(ref, pi, n_prompt, n_new, want, rl);
  /* compare logits of the step that produced the last token, on the engine's own prefix */
  int *seq = malloc(sizeof(int) * (size_t)(n_prompt + n_new));
  memcpy(seq, pi, sizeof(int) * (size_t)n_prompt);
  for (int i = 0; i < n_new; i++) seq[n_prompt + i] = got[i];
  ref_forward(ref, seq, n_prompt + n_new - 1, rl);
  const double err = tu_max_diff_rel(lg, rl, V);
  int same = 1, gi[16];
  for (int i = 0; i < n_new; i++) same &= got[i] == want[i], gi[i] = got[i];
  /* or a near tie on the engine's own prefix: twice the case's logit tolerance (ref_check_greedy) */
  double gap = 0;
  const int bad = ref_check_greedy(ref, pi, n_prompt, gi, n_new, 2 * mc->tol, &gap);
  CHECK(bad < 0, "%s: greedy id %d is %.3g of max |logit| below the float64 reference's best%s", mc->name, bad, gap,
        same ? "" : " (the free-running reference's ids differ)");
  CHECK(tu_within(err, mc->tol), "%s: logits differ from the reference by %.3g of max |logit| (tolerance %.1g)", mc->name, err,
        mc->tol);
  printf("  %-24s logits max err %.2e of max |logit|, %d greedy ids %s\n", mc->name, err, n_new, same ? "equal" : "DIFFER");
  free(lg), free(rl), free(seq);
  ref_free(ref);
  tpd_engine_destroy(e);
}

/* A batch of three prompts of different lengths gives each what it gives alone;
 * so does a prefill split into small chunks and a different thread count. */
static void test_batching(void) {
  char dir[300];
  model_case mc = {"batching", "llama", TPD_BF16, 0, 0, 0, 0, 0, 0};
  write_model(&mc, dir, sizeof dir);
  tpd_engine *big = open_engine(dir, 2, 3, 64, 0), *alone = open_engine(dir, 1, 1, 64, 5);
  if (!big || !alone) return;
  const int V = tpd_engine_config(big)->vocab, n_new = 12;
  int32_t p[3][20];
  int lens[3] = {1, 7, 19};
  for (int i = 0; i < 3; i++) random_prompt(p[i], lens[i], V);
  const int32_t *pp[3] = {p[0], p[1], p[2]};
  tpd_gen_request q = {.n_seqs = 3, .prompts = pp, .prompt_lens = lens, .n_new = n_new, .keep_logits = 1};
  tpd_gen_result r;
  CHECK_OK(tpd_generate(big, &q, &r));
  float *lg = malloc(sizeof(float) * (size_t)V);
  int32_t out[16];
  for (int i = 0; i < 3 && r.tokens; i++) {
    gen1(alone, p[i], lens[i], n_new, out, lg); /* 1 thread, prefill in chunks of 5 tokens */
    CHECK(!memcmp(out, r.tokens[i], sizeof(int32_t) * n_new), "prompt %d: batched ids differ from alone", i);
    const double d = tu_max_abs_diff(lg, r.last_logits + (size_t)i * V, V);
    CHECK(tu_within(d, 0.0), "prompt %d: batched logits differ from alone by %.3g", i, d);
  }
  tpd_gen_result_free(&r);
  free(lg);
  tpd_engine_destroy(big);
  tpd_engine_destroy(alone);
}

/* Sequences join and leave between steps (continuous batching), blocks are
 * reused, and each sequence still gets what it gets alone: the same ids and
 * the same logits (bits) at the step that produces its last token. */
static void test_continuous(void) {
  char dir[300];
  model_case mc = {"continuous", "llama", TPD_F32, 0, 0, 0, 0, 0, 0};
  write_model(&mc, dir, sizeof dir);
  tpd_engine *e = open_engine(dir, 2, 2, 48, 0), *solo = open_engine(dir, 2, 1, 48, 0);
  if (!e || !solo) return;
  const int V = tpd_engine_config(e)->vocab;
  int32_t pa[6], pb[9], pc[3];
  random_prompt(pa, 6, V), random_prompt(pb, 9, V), random_prompt(pc, 3, V);
  int32_t wa[8], wb[8], wc[8];
  float *want = malloc(sizeof(float) * 3 * (size_t)V), *got = malloc(sizeof(float) * 3 * (size_t)V);
  float *step_lg = malloc(sizeof(float) * 2 * (size_t)V);
  gen1(solo, pa, 6, 8, wa, want);
  gen1(solo, pb, 9, 8, wb, want + V);
  gen1(solo, pc, 3, 8, wc, want + 2 * (size_t)V);
  int sa, sb, sc;
  CHECK_OK(tpd_engine_seq_open(e, &sa));
  tpd_step_item it[2] = {{.slot = sa, .n_tokens = 6, .tokens = pa}};
  int32_t ga[8], gb[8], gc[8], tok[2];
  CHECK_OK(tpd_engine_step(e, it, 1, tok, NULL)); /* A prefill */
  ga[0] = tok[0];
  CHECK_OK(tpd_engine_seq_open(e, &sb));
  it[0] = (tpd_step_item){.slot = sa, .n_tokens = 1, .tokens = &ga[0]};
  it[1] = (tpd_step_item){.slot = sb, .n_tokens = 9, .tokens = pb}; /* B prefills while A decodes */
  CHECK_OK(tpd_engine_step(e, it, 2, tok, NULL));
  ga[1] = tok[0], gb[0] = tok[1];
  for (int s = 1; s < 7; s++) {
    it[0] = (tpd_step_item){.slot = sa, .n_tokens = 1, .tokens = &ga[s]};
    it[1] = (tpd_step_item){.slot = sb, .n_tokens = 1, .tokens = &gb[s - 1]};
    CHECK_OK(tpd_engine_step(e, it, 2, tok, s == 6 ? step_lg : NULL));
    ga[s + 1] = tok[0], gb[s] = tok[1];
  }
  memcpy(got, step_lg, sizeof(float) * (size_t)V); /* A's last token */
  tpd_engine_seq_close(e, sa); /* A leaves, C takes its slot and blocks */
  CHECK_OK(tpd_engine_seq_open(e, &sc));
  it[0] = (tpd_step_item){.slot = sb, .n_tokens = 1, .tokens = &gb[6]};
  it[1] = (tpd_step_item){.slot = sc, .n_tokens = 3, .tokens = pc};
  CHECK_OK(tpd_engine_step(e, it, 2, tok, step_lg));
  gb[7] = tok[0], gc[0] = tok[1];
  memcpy(got + V, step_lg, sizeof(float) * (size_t)V); /* B's last token */
  for (int s = 1; s < 8; s++) {
    it[0] = (tpd_step_item){.slot = sc, .n_tokens = 1, .tokens = &gc[s - 1]};
    CHECK_OK(tpd_engine_step(e, it, 1, tok, s == 7 ? step_lg : NULL));
    gc[s] = tok[0];
  }
  memcpy(got + 2 * (size_t)V, step_lg, sizeof(float) * (size_t)V); /* C's last token */
  CHECK(!memcmp(ga, wa, sizeof ga) && !memcmp(gb, wb, sizeof gb) && !memcmp(gc, wc, sizeof gc),
        "continuous batching changed a sequence's tokens");
  for (int q = 0; q < 3; q++) {
    const double d = tu_max_abs_diff(got + (size_t)q * V, want + (size_t)q * V, V);
    CHECK(tu_within(d, 0.0), "sequence %c: logits with continuous batching differ from alone by %.3g", 'A' + q, d);
  }
  /* a step over the context is refused before anything runs */
  int32_t many[48] = {0};
  it[0] = (tpd_step_item){.slot = sc, .n_tokens = 48, .tokens = many};
  tpd_clear_error();
  CHECK(tpd_engine_step(e, it, 1, tok, NULL) == TPD_ERR_TOO_LONG && strstr(tpd_last_error(), "exceed the context"),
        "context overflow: %s", tpd_last_error());
  tpd_clear_error();
  free(want), free(got), free(step_lg);
  tpd_engine_destroy(e);
  tpd_engine_destroy(solo);
}

/* A long greedy decode (40 steps over 4-token KV blocks) has the float64
 * reference's logits at every step, on the engine's own prefix.  (This
 * replaces "greedy output has >= 8 distinct tokens": a random model can
 * fall into a 2-token loop and did for about 1 seed in 40, so that check
 * failed on a correct engine; a wrong position or KV block shows here as
 * wrong logits instead.) */
static void test_long_decode(void) {
  char dir[300];
  model_case mc = {"long-decode", "llama", TPD_BF16, 0, 0, 0, 0, 0, 1e-4};
  write_model(&mc, dir, sizeof dir);
  ref_model *ref = NULL;
  CHECK(ref_load(dir, &ref) == 0, "%s: reference could not load", mc.name);
  tpd_engine *e = open_engine(dir, 2, 1, 64, 0);
  enum { NP = 4, NN = 40 };
  int32_t p[NP];
  random_prompt(p, NP, 512);
  const int32_t *pp[1] = {p};
  const int np = NP;
  tpd_gen_request q = {.n_seqs = 1, .prompts = pp, .prompt_lens = &np, .n_new = NN, .logits_steps = NN};
  tpd_gen_result r = {0};
  if (e) CHECK_OK(tpd_generate(e, &q, &r));
  if (ref && r.tokens) {
    const int V = ref_config(ref)->vocab;
    int seq[NP + NN], distinct = 0;
    double *rl = malloc(sizeof(double) * (size_t)V), worst = 0;
    for (int i = 0; i < NP; i++) seq[i] = p[i];
    for (int t = 0; t < NN; t++) {
      ref_forward(ref, seq, NP + t, rl);
      worst = tu_worst(worst, tu_max_diff_rel(r.step_logits + (size_t)t * V, rl, V));
      seq[NP + t] = r.tokens[0][t];
      int seen = 0;
      for (int j = 0; j < t; j++) seen |= r.tokens[0][j] == r.tokens[0][t];
      distinct += !seen;
    }
    CHECK(tu_within(worst, mc.tol), "%d-step decode: logits differ from the reference by %.3g of max |logit|", NN,
          worst);
    printf("  %-24s %d steps: logits max err %.2e of max |logit| (%d distinct greedy ids)\n", mc.name, NN, worst,
           distinct);
    free(rl);
  }
  tpd_gen_result_free(&r);
  ref_free(ref);
  tpd_engine_destroy(e);
}

int main(void) {
  tu_seed("test_engine");
  snprintf(g_tmp, sizeof g_tmp, "/tmp/tpd-test-engine-%d", (int)getpid());
  mkdir(g_tmp, 0755);
  CHECK_OK(tpd_comm_single_create(&g_comm));
  static const model_case cases[] = {
      {"llama2-f32", "llama", TPD_F32, 0, 0, 0, 0, 0, 1e-5},
      {"llama3-tied-f32", "llama", TPD_F32, 1, 1, 0, 0, 0, 1e-5},
      {"llama-headdim-bias-f32", "llama", TPD_F32, 0, 0, 24, 0, 1, 1e-5},
      {"qwen2-f32", "qwen2", TPD_F32, 0, 1, 0, 0, 0, 1e-5},
      {"mistral-window-f32", "mistral", TPD_F32, 0, 0, 0, 5, 0, 1e-5},
      {"llama2-bf16", "llama", TPD_BF16, 0, 0, 0, 0, 0, 1e-4},
      {"llama3-f16", "llama", TPD_F16, 1, 0, 0, 0, 0, 1e-4},
  };
  printf("engine (TP=1) against the float64 reference:\n");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_against_reference(&cases[i]);
  test_batching();
  test_continuous();
  test_long_decode();
  tpd_comm_destroy(g_comm);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
  return tu_finish("test_engine");
}
