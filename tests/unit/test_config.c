/* config.json as transformers writes it: the layout of transformers 4
 * (rope_theta + rope_scaling) and of transformers 5 (rope_parameters) must
 * give the same configuration, and the same logits end to end; every field
 * that changes the computation and is not implemented must be an error that
 * names it.
 *
 * The JSON texts, as save_pretrained wrote them: config_samples.c.
 *
 * usage: test_config CONFORMANCE_DIR */
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "badfiles.h"
#include "config_samples.h"
#include "launch/generate.h"
#include "launch/tools/synth.h"
#include "runtime/model/config.h"
#include "runtime/base/fileio.h"
#include "runtime/engine/tpdecode.h"
#include "testutil.h"

static char g_tmp[256];

/* ---- helpers ---- */

static int parse_ok(const char *json, tpd_model_config *c, const char *what) {
  tpd_clear_error();
  const tpd_status s = tpd_config_parse(json, what, c);
  CHECK(s == TPD_OK, "%s rejected: %s", what, tpd_last_error());
  tpd_clear_error();
  return s == TPD_OK;
}

/* `base` with `key` ("a" or "a.b") set to the JSON text `val`, or removed when
 * val is NULL.  The caller frees the result. */
static char *with_field(const char *base, const char *key, const char *val) {
  cJSON *root = cJSON_Parse(base);
  char k[128];
  snprintf(k, sizeof k, "%s", key);
  cJSON *obj = root;
  char *leaf = k, *dot = strchr(k, '.');
  if (dot) {
    *dot = 0;
    obj = cJSON_GetObjectItemCaseSensitive(root, k);
    leaf = dot + 1;
  }
  if (!obj) {
    cJSON_Delete(root);
    return NULL;
  }
  cJSON_DeleteItemFromObjectCaseSensitive(obj, leaf);
  if (val) cJSON_AddItemToObject(obj, leaf, cJSON_Parse(val));
  char *out = cJSON_Print(root);
  cJSON_Delete(root);
  return out;
}

/* `base` with one field changed must be rejected, with a one-line message naming `needle`. */
static void expect_rejected(const char *base, const char *key, const char *val, const char *needle) {
  char *json = with_field(base, key, val);
  CHECK(json != NULL, "building the %s=%s variant", key, val ? val : "(removed)");
  if (!json) return;
  tpd_model_config c;
  tpd_clear_error();
  const tpd_status s = tpd_config_parse(json, "config.json", &c);
  CHECK(s != TPD_OK, "%s=%s accepted", key, val ? val : "(removed)");
  CHECK(strstr(tpd_last_error(), needle) != NULL, "%s=%s: message '%s' does not name '%s'", key,
        val ? val : "(removed)", tpd_last_error(), needle);
  CHECK(strchr(tpd_last_error(), '\n') == NULL, "%s: message spans lines", key);
  tpd_clear_error();
  free(json);
}

/* `base` with one field changed must parse; the result in *c. */
static int accepted(const char *base, const char *key, const char *val, tpd_model_config *c) {
  char *json = with_field(base, key, val);
  char what[160];
  snprintf(what, sizeof what, "%s=%s", key, val ? val : "(removed)");
  const int ok = json && parse_ok(json, c, what);
  free(json);
  return ok;
}

/* theta^(-2i/d), computed differently from the library (exp/log) */
static double plain_freq(double theta, int i, int d) { return exp(-log(theta) * (2.0 * i) / d); }

/* relative difference; +INF when either is not finite (testutil) */
static double rel(double a, double b) { return tu_abs_diff(a, b) / fabs(b); }

/* ---- both layouts give the same configuration ---- */

static void test_layouts(void) {
  tpd_model_config a, b, c;
  /* Llama 3.1: theta 500000 and llama3 scaling from all three writers */
  if (parse_ok(LLAMA3_TF5, &a, "llama3 tf5") && parse_ok(LLAMA3_TF4, &b, "llama3 tf4.57") &&
      parse_ok(LLAMA3_TF443, &c, "llama3 tf4.43")) {
    CHECK(a.rope_theta == 500000.0, "tf5 layout: rope_theta %g, expected 500000", a.rope_theta);
    CHECK(a.rope_llama3 && !a.rope_linear && a.rope_factor == 8.0 && a.rope_low_freq_factor == 1.0 &&
              a.rope_high_freq_factor == 4.0 && a.rope_orig_max_pos == 8192,
          "tf5 layout: llama3 scaling (llama3 %d, factor %g, low %g, high %g, original %d)", a.rope_llama3,
          a.rope_factor, a.rope_low_freq_factor, a.rope_high_freq_factor, a.rope_orig_max_pos);
    CHECK(a.dim == 64 && a.head_dim == 16 && a.n_kv_heads == 2 && a.norm_eps == 1e-5 && a.max_pos == 131072 &&
              !a.tie_embeddings && !a.qkv_bias && !a.o_bias && !a.mlp_bias && a.n_eos == 3 && a.eos_ids[2] == 4,
          "llama3 tf5: sizes and flags");
    CHECK(memcmp(&a, &b, sizeof a) == 0, "llama3: tf5 and tf4.57 layouts parse differently");
    CHECK(memcmp(&a, &c, sizeof a) == 0, "llama3: tf5 and tf4.43 layouts parse differently");
    double fa[8], fb[8];
    tpd_rope_inv_freq(&a, fa);
    tpd_rope_inv_freq(&b, fb);
    CHECK(memcmp(fa, fb, sizeof fa) == 0, "llama3: frequencies differ between layouts");
    /* with head_dim 16 and an original context of 8192 the lowest frequency
     * is scaled by 1/8 and the highest left alone */
    CHECK(tu_within(rel(fa[0], 1.0), 1e-15) && tu_within(rel(fa[7], plain_freq(500000.0, 7, 16) / 8.0), 1e-13),
          "llama3 frequencies: f[0] %.17g, f[7] %.17g", fa[0], fa[7]);
  }
  /* Qwen2: theta 1e6, q/k/v biases, tied */
  if (parse_ok(QWEN2_TF5, &a, "qwen2 tf5") && parse_ok(QWEN2_TF4, &b, "qwen2 tf4.57") &&
      parse_ok(QWEN2_TF443, &c, "qwen2 tf4.43")) {
    CHECK(a.rope_theta == 1e6 && !a.rope_llama3 && !a.rope_linear, "qwen2 tf5: rope_theta %g", a.rope_theta);
    CHECK(a.qkv_bias && !a.o_bias && !a.mlp_bias && a.tie_embeddings && a.sliding_window == 0 && a.norm_eps == 1e-6 &&
              a.max_pos == 32768 && a.n_kv_heads == 2 && a.bos_id == 5 && a.n_eos == 1 && a.eos_ids[0] == 6,
          "qwen2 tf5: sizes and flags");
    CHECK(memcmp(&a, &b, sizeof a) == 0, "qwen2: tf5 and tf4.57 layouts parse differently");
    CHECK(memcmp(&a, &c, sizeof a) == 0, "qwen2: tf5 and tf4.43 layouts parse differently");
    double f[8];
    tpd_rope_inv_freq(&a, f);
    double worst = 0;
    for (int i = 0; i < 8; i++) worst = tu_worst(worst, rel(f[i], plain_freq(1e6, i, 16)));
    CHECK(tu_within(worst, 1e-13), "qwen2 frequencies: relative error %.3g against theta^(-2i/d)", worst);
  }
  /* Mistral: tf4.57 writes head_dim null */
  if (parse_ok(MISTRAL_TF5, &a, "mistral tf5") && parse_ok(MISTRAL_TF4, &b, "mistral tf4.57")) {
    CHECK(a.rope_theta == 1e6 && a.head_dim == 16 && a.sliding_window == 0 && !a.qkv_bias && !a.o_bias,
          "mistral tf5: theta %g, head_dim %d, window %d", a.rope_theta, a.head_dim, a.sliding_window);
    CHECK(memcmp(&a, &b, sizeof a) == 0, "mistral: tf5 and tf4.57 layouts parse differently");
  }
  /* a file carrying both layouts, agreeing */
  char *both = with_field(LLAMA3_TF5, "rope_theta", "500000.0");
  char *both2 = both ? with_field(both, "rope_scaling",
                                  "{\"factor\":8.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
                                  "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\",\"type\":\"llama3\"}")
                     : NULL;
  if (both2 && parse_ok(both2, &b, "both layouts") && parse_ok(LLAMA3_TF5, &a, "llama3 tf5"))
    CHECK(memcmp(&a, &b, sizeof a) == 0, "both layouts together parse differently");
  free(both);
  free(both2);
}

/* ---- implemented fields ---- */

static void test_implemented(void) {
  tpd_model_config a, b;
  /* linear scaling, as transformers 4.57 (rope_type and type) and 5 write it */
  const char *lin4 = "{\"factor\":2.0,\"rope_type\":\"linear\",\"type\":\"linear\"}";
  const char *lin5 = "{\"factor\":2.0,\"rope_theta\":10000.0,\"rope_type\":\"linear\"}";
  char *t4 = with_field(LLAMA3_TF4, "rope_scaling", lin4);
  char *t4b = t4 ? with_field(t4, "rope_theta", "10000.0") : NULL;
  if (t4b && accepted(LLAMA3_TF5, "rope_parameters", lin5, &a) && parse_ok(t4b, &b, "linear tf4")) {
    CHECK(a.rope_linear && !a.rope_llama3 && a.rope_factor == 2.0 && a.rope_theta == 10000.0, "linear fields");
    CHECK(memcmp(&a, &b, sizeof a) == 0, "linear: tf5 and tf4 layouts parse differently");
    double f[8], worst = 0;
    tpd_rope_inv_freq(&a, f);
    for (int i = 0; i < 8; i++) worst = tu_worst(worst, rel(f[i], plain_freq(10000.0, i, 16) / 2.0));
    CHECK(tu_within(worst, 1e-13), "linear frequencies: relative error %.3g against theta^(-2i/d) / factor", worst);
  }
  free(t4);
  free(t4b);
  /* Llama biases are implemented */
  if (accepted(LLAMA3_TF5, "attention_bias", "true", &a)) CHECK(a.qkv_bias && a.o_bias && !a.mlp_bias, "llama attention_bias");
  if (accepted(LLAMA3_TF5, "mlp_bias", "true", &a)) CHECK(a.mlp_bias && !a.qkv_bias, "llama mlp_bias");
  /* Qwen2 has q/k/v biases whatever attention_bias says (transformers does not read it) */
  if (accepted(QWEN2_TF5, "attention_bias", "true", &a)) CHECK(a.qkv_bias && !a.o_bias, "qwen2 attention_bias ignored");
  /* partial_rotary_factor 1 is the whole head */
  if (accepted(QWEN2_TF5, "rope_parameters.partial_rotary_factor", "1.0", &a)) CHECK(a.rope_theta == 1e6, "prf 1");
  /* Mistral's window: absent means transformers' default 4096, null means none */
  if (accepted(MISTRAL_TF5, "sliding_window", NULL, &a)) CHECK(a.sliding_window == 4096, "mistral window absent: %d", a.sliding_window);
  if (accepted(MISTRAL_TF5, "sliding_window", "512", &a)) CHECK(a.sliding_window == 512, "mistral window 512");
  /* rope_parameters without theta takes the top-level one, then 10000 */
  if (accepted(QWEN2_TF5, "rope_parameters", "{\"rope_type\":\"default\"}", &a)) CHECK(a.rope_theta == 10000.0, "theta default");
  /* max_position_embeddings: transformers' class defaults */
  if (accepted(QWEN2_TF5, "max_position_embeddings", NULL, &a)) CHECK(a.max_pos == 32768, "qwen2 max_pos default");
  if (accepted(MISTRAL_TF5, "max_position_embeddings", NULL, &a)) CHECK(a.max_pos == 131072, "mistral max_pos default");
}

/* ---- fields that change the computation and are not implemented ---- */

static void test_rejected(void) {
  /* other RoPE types, in either layout */
  /* eos ids: integers >= 0 only, never truncated or dropped (a float once hit a
   * float-to-int overflow: tests/fuzz/regress/config) */
  expect_rejected(LLAMA3_TF5, "eos_token_id", "1e300", "eos_token_id");
  expect_rejected(LLAMA3_TF5, "eos_token_id", "2.5", "eos_token_id");
  expect_rejected(LLAMA3_TF5, "eos_token_id", "-1", "eos_token_id");
  expect_rejected(LLAMA3_TF5, "eos_token_id", "[1, 3e10]", "eos_token_id");
  expect_rejected(LLAMA3_TF5, "eos_token_id", "[1, 2, 3, 4, 5, 6, 7, 8, 9]", "eos_token_id");
  {
    tpd_model_config ce;
    if (accepted(LLAMA3_TF5, "eos_token_id", "[1, 2, 3, 4, 5, 6, 7, 2147483647]", &ce))
      CHECK(ce.n_eos == 8 && ce.eos_ids[7] == 2147483647, "eight eos ids: %d, last %d", ce.n_eos, ce.eos_ids[7]);
  }
  expect_rejected(LLAMA3_TF5, "rope_parameters.rope_type", "\"yarn\"", "rope_parameters.rope_type");
  expect_rejected(LLAMA3_TF5, "rope_parameters.rope_type", "\"dynamic\"", "rope_parameters.rope_type");
  expect_rejected(LLAMA3_TF5, "rope_parameters.rope_type", "\"longrope\"", "rope_parameters.rope_type");
  expect_rejected(LLAMA3_TF4, "rope_scaling.rope_type", "\"yarn\"", "rope_scaling.rope_type");
  expect_rejected(LLAMA3_TF4, "rope_scaling", "{\"type\":\"dynamic\",\"factor\":2.0}", "rope_scaling.rope_type");
  expect_rejected(LLAMA3_TF4, "rope_scaling.type", "\"linear\"", "rope_scaling.rope_type");
  /* llama3 needs all its factors */
  expect_rejected(LLAMA3_TF5, "rope_parameters.factor", NULL, "rope_parameters.factor");
  expect_rejected(LLAMA3_TF4, "rope_scaling.low_freq_factor", NULL, "rope_scaling.low_freq_factor");
  /* per-layer-type RoPE */
  expect_rejected(LLAMA3_TF5, "rope_parameters", "{\"full_attention\":{\"rope_type\":\"default\",\"rope_theta\":1e4}}",
                  "rope_parameters.full_attention");
  /* the two layouts disagreeing */
  expect_rejected(LLAMA3_TF5, "rope_theta", "10000.0", "rope_theta");
  expect_rejected(LLAMA3_TF5, "rope_scaling", "{\"rope_type\":\"default\"}", "rope_type");
  /* partial rotary, in either place */
  expect_rejected(QWEN2_TF5, "rope_parameters.partial_rotary_factor", "0.5", "partial_rotary_factor");
  expect_rejected(QWEN2_TF4, "partial_rotary_factor", "0.5", "partial_rotary_factor");
  /* softcapping, quantization */
  expect_rejected(LLAMA3_TF5, "attn_logit_softcapping", "50.0", "attn_logit_softcapping");
  expect_rejected(LLAMA3_TF5, "final_logit_softcapping", "30.0", "final_logit_softcapping");
  expect_rejected(LLAMA3_TF5, "quantization_config", "{\"quant_method\":\"fp8\"}", "quantization_config");
  /* biases the architecture does not have */
  expect_rejected(QWEN2_TF5, "mlp_bias", "true", "mlp_bias");
  expect_rejected(MISTRAL_TF5, "mlp_bias", "true", "mlp_bias");
  expect_rejected(MISTRAL_TF5, "attention_bias", "true", "attention_bias");
  /* activation, norm */
  expect_rejected(LLAMA3_TF5, "hidden_act", "\"gelu\"", "hidden_act");
  expect_rejected(LLAMA3_TF5, "rms_norm_eps", NULL, "rms_norm_eps");
  /* Qwen2 sliding layers */
  expect_rejected(QWEN2_TF5, "use_sliding_window", "true", "use_sliding_window");
  expect_rejected(QWEN2_TF5, "layer_types", "[\"full_attention\",\"sliding_attention\"]", "layer_types");
  expect_rejected(QWEN2_TF5, "layer_types", "[\"full_attention\"]", "layer_types");
  /* sizes */
  expect_rejected(QWEN2_TF5, "num_key_value_heads", NULL, "num_key_value_heads");
  expect_rejected(MISTRAL_TF5, "num_key_value_heads", NULL, "num_key_value_heads");
  expect_rejected(LLAMA3_TF5, "head_dim", "15", "head_dim");
  expect_rejected(LLAMA3_TF5, "rope_parameters", "[1]", "rope_parameters");
}

/* ---- end to end: the conformance model with its config in both layouts ---- */

static int copy_model(const char *src_dir, const char *dst_dir, const char *config_text) {
  char a[600], b[600];
  mkdir(dst_dir, 0755);
  snprintf(a, sizeof a, "%s/model.safetensors", src_dir);
  snprintf(b, sizeof b, "%s/model.safetensors", dst_dir);
  if (tpd_copy_file(a, b)) return -1;
  snprintf(b, sizeof b, "%s/config.json", dst_dir);
  if (config_text) return tpd_write_file(b, config_text, strlen(config_text)) == TPD_OK ? 0 : -1;
  snprintf(a, sizeof a, "%s/config.json", src_dir);
  return tpd_copy_file(a, b);
}

typedef struct {
  float *logits; /* [steps, V] */
  int32_t *tokens;
  tpd_model_config cfg;
  int ok;
} run_out;

static run_out run_model(const char *dir, const int32_t *prompt, int np, int n) {
  run_out r = {0};
  tpd_comm *comm = NULL;
  CHECK_OK(tpd_comm_single_create(&comm));
  tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = dir, .n_threads = 1, .max_seqs = 1, .max_ctx = np + n};
  tpd_engine *e = NULL;
  CHECK_OK(tpd_engine_create(&o, comm, &e));
  if (e) {
    r.cfg = *tpd_engine_config(e);
    const int32_t *pp[1] = {prompt};
    tpd_gen_request q = {.n_seqs = 1, .prompts = pp, .prompt_lens = &np, .n_new = n, .logits_steps = n};
    tpd_gen_result g;
    tpd_status s = tpd_generate(e, &q, &g);
    CHECK(s == TPD_OK, "generate on %s: %s", dir, tpd_last_error());
    if (s == TPD_OK) {
      const size_t nl = (size_t)n * r.cfg.vocab;
      r.logits = malloc(sizeof(float) * nl);
      r.tokens = malloc(sizeof(int32_t) * (size_t)n);
      memcpy(r.logits, g.step_logits, sizeof(float) * nl);
      memcpy(r.tokens, g.tokens[0], sizeof(int32_t) * (size_t)n);
      r.ok = 1;
      tpd_gen_result_free(&g);
    }
  }
  tpd_engine_destroy(e);
  tpd_comm_destroy(comm);
  return r;
}

static void test_end_to_end(const char *conf) {
  char src[600], old_dir[300], new_dir[300], ctl_dir[300];
  snprintf(src, sizeof src, "%s/llama31-tiny-bf16", conf);
  snprintf(old_dir, sizeof old_dir, "%s/old", g_tmp);
  snprintf(new_dir, sizeof new_dir, "%s/new", g_tmp);
  snprintf(ctl_dir, sizeof ctl_dir, "%s/control", g_tmp);
  /* control: what a reader that ignores rope_parameters computes (theta 10000, no scaling) */
  char *ctl_cfg = with_field(CONF_TF5, "rope_parameters", "{\"rope_theta\":10000.0,\"rope_type\":\"default\"}");
  CHECK(copy_model(src, old_dir, NULL) == 0 && copy_model(src, new_dir, CONF_TF5) == 0 &&
            ctl_cfg && copy_model(src, ctl_dir, ctl_cfg) == 0,
        "copying %s", src);
  free(ctl_cfg);

  /* a fresh random prompt: positions past the original context (64) and before */
  const int np = 48 + (int)(tu_next() % 24), n = 8;
  int32_t prompt[80];
  for (int i = 0; i < np; i++) prompt[i] = (int32_t)(tu_next() % 640);
  run_out o = run_model(old_dir, prompt, np, n), w = run_model(new_dir, prompt, np, n);
  run_out k = run_model(ctl_dir, prompt, np, n);
  if (o.ok && w.ok && k.ok) {
    const size_t nl = (size_t)n * o.cfg.vocab;
    CHECK(memcmp(&o.cfg, &w.cfg, sizeof o.cfg) == 0, "engine configs differ between the layouts");
    const double same = tu_max_abs_diff(o.logits, w.logits, nl), ctl = tu_max_abs_diff(o.logits, k.logits, nl);
    CHECK(tu_within(same, 0.0), "tf5 layout vs tf4 layout: logits differ by %.3g", same);
    CHECK(memcmp(o.tokens, w.tokens, sizeof(int32_t) * n) == 0, "greedy ids differ between the layouts");
    /* the comparison can see a RoPE difference: the control is far off */
    CHECK(isfinite(ctl) && ctl > 1e-2, "control (theta 10000, no llama3 scaling) differs by only %.3g", ctl);
    printf("end to end (prompt of %d, %d steps): tf5 vs tf4 layout max |diff| %.3g; "
           "vs a reader that ignores rope_parameters %.3g\n", np, n, same, ctl);
  }
  free(o.logits), free(o.tokens), free(w.logits), free(w.tokens), free(k.logits), free(k.tokens);
}

/* ---- tie_word_embeddings against the files ---- */

static void test_tie(const char *conf) {
  char src[600], dir[300];
  tpd_comm *comm = NULL;
  CHECK_OK(tpd_comm_single_create(&comm));
  /* untied config, file without lm_head.weight: an error naming both */
  snprintf(src, sizeof src, "%s/llama31-tiny-bf16", conf);
  snprintf(dir, sizeof dir, "%s/untied", g_tmp);
  char *untied = with_field(CONF_TF5, "tie_word_embeddings", "false");
  CHECK(untied && copy_model(src, dir, untied) == 0, "writing %s", dir);
  free(untied);
  tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = dir, .n_threads = 1, .max_seqs = 1};
  tpd_engine *e = NULL;
  tpd_clear_error();
  CHECK(tpd_engine_create(&o, comm, &e) != TPD_OK, "untied config without lm_head.weight accepted");
  CHECK(strstr(tpd_last_error(), "lm_head.weight") && strstr(tpd_last_error(), "tie_word_embeddings"),
        "message '%s' does not name both lm_head.weight and tie_word_embeddings", tpd_last_error());
  tpd_clear_error();
  tpd_engine_destroy(e);
  e = NULL;

  /* tied config, file with lm_head.weight: loads (transformers ignores it) and warns once */
  tpd_synth_spec s;
  CHECK_OK(tpd_synth_preset("tiny", &s));
  s.tie = 0;
  s.seed = tu_next();
  snprintf(dir, sizeof dir, "%s/tied-with-head", g_tmp);
  CHECK_OK(tpd_synth_write(&s, dir));
  char path[400], log[400];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *text = NULL;
  CHECK_OK(tpd_read_text_file(path, &text, NULL));
  char *tied = text ? with_field(text, "tie_word_embeddings", "true") : NULL;
  CHECK(tied && tpd_write_file(path, tied, strlen(tied)) == TPD_OK, "rewriting %s", path);
  free(text);
  free(tied);
  snprintf(log, sizeof log, "%s/stderr.txt", g_tmp);
  o.model_dir = dir;
  const int h = tpd_stderr_to_file(log);
  const tpd_status st = tpd_engine_create(&o, comm, &e);
  tpd_stderr_restore(h);
  CHECK(h >= 0 && st == TPD_OK, "tied config with lm_head.weight: %s", tpd_last_error());
  char *warn = NULL;
  CHECK_OK(tpd_read_text_file(log, &warn, NULL));
  const char *nl = warn ? strchr(warn, '\n') : NULL;
  CHECK(warn && strstr(warn, "tie_word_embeddings") && strstr(warn, "lm_head.weight") && nl && !nl[1],
        "expected one warning line naming tie_word_embeddings and lm_head.weight, got '%s'", warn ? warn : "");
  free(warn);
  tpd_engine_destroy(e);
  tpd_comm_destroy(comm);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_config CONFORMANCE_DIR\n");
    return 2;
  }
  tu_seed("test_config");
  snprintf(g_tmp, sizeof g_tmp, "/tmp/tpd-test-config-%d", (int)getpid());
  mkdir(g_tmp, 0755);
  test_layouts();
  test_implemented();
  test_rejected();
  test_end_to_end(argv[1]);
  test_tie(argv[1]);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
  return tu_finish("test_config");
}
