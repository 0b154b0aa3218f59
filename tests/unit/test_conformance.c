/* The conformance pack (tests/data/conformance, from shared/conformance):
 * greedy ids and float32 logits produced by independent implementations.
 * Run at every TP degree: with an f32 KV cache ids must match exactly,
 * logits within LOGIT_TOL, which is far inside each case's smallest top-2
 * margin.  Then with the default KV cache (auto: bf16 for the bf16
 * checkpoint): the same where that is f32; a bf16 cache is held to the
 * bounds of its roundings (below), teacher-forced along the pack's ids. */
#include <cjson/cJSON.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_isa.h"
#include "launch/generate.h"
#include "runtime/base/fileio.h"
#include "runtime/engine/tpdecode.h"
#include "ref_model.h"
#include "testutil.h"

#define LOGIT_TOL 1e-4 /* absolute, on logits of magnitude ~1..10 */

/* bf16 KV cache bounds (docs/architecture.md, "KV cache dtype"), derived as
 * docs/cuda.md "Numerics policy" does for the GPU's bf16 mode: each of the
 * R = 2 L roundings (K and V of each layer) has relative rms error
 * sigma = 2^-8 / sqrt(3); the logits' normwise relative error
 * rho = ||l - l_ref|| / ||l_ref|| <= kappa sigma sqrt(R) with kappa = 8
 * (the gain of the K/V sites, a property of the weights: a float64
 * simulation with K and V rounded measures 1.3 and 5.9 on the pack's two
 * models), elementwise max |l - l_ref| / rms(l_ref) <= 5 rho_max, and the
 * greedy id must equal the pack's at every step whose top-2 margin is at
 * least twice that elementwise bound.  Separately, against that float64
 * simulation (tests/unit/ref_model.c, ref_set_kv_bf16) the logits must agree
 * within KV_SIM_TOL: the engine's f32 K/V and the float64 ones can round to
 * neighbouring bf16 values where they straddle a rounding boundary (one
 * such element moved a case's logits by 1.3e-3; without one the difference
 * is <= 2e-5), so this is 20x below the rounding's own effect (~0.1), not
 * at the f32 level. */
static double kv_bf16_rho_max(int n_layers) { return 8.0 * 0x1p-8 / sqrt(3.0) * sqrt(2.0 * n_layers); }

/* bf16 activations in the CPU matmuls (activations "bf16": AMX tiles or
 * vdpbf16ps, bf16 weights), with an f32 KV cache: the matmul inputs are
 * rounded to bf16, R = 4 L + 1 sites (per layer the q/k/v input, the
 * attention output, the MLP input and the SwiGLU output; the final norm's
 * output), a subset of the GPU's bf16 mode's sites, so its policy applies
 * (docs/cuda.md, "Numerics policy": rho <= 5 sigma sqrt(R), eta <= 5 rho). */
static double act_bf16_rho_max(int n_layers) { return 5.0 * 0x1p-8 / sqrt(3.0) * sqrt(4.0 * n_layers + 1); }
#define KV_SIM_TOL 5e-3
/* The bf16-activation pass against the float64 reference with its matmul
 * inputs rounded the same way (ref_set_act_bf16): where no element straddles
 * a rounding boundary the two agree to <= 5e-7; one that does (f32 and
 * float64 round to neighbouring bf16 values) moved this pack's logits by up
 * to 2.2e-2 (vdpbf16ps) and 1.3e-2 (AMX), against 4e-2..0.14 for the
 * roundings' own effect.  The tolerance allows about two such elements; a
 * wrong tile, panel or k block moves logits by O(1). */
#define ACT_SIM_TOL 5e-2

typedef struct {
  double rho, eta;            /* worst over the steps */
  int ids_checked, ids_equal; /* steps whose margin is above the id bound */
  double sim;                 /* worst max |l - l_sim|: against the float64 reference with the same bf16 roundings */
  double dev;                 /* worst max |l - l_pack|: the roundings' own effect */
} forced_result;

/* The case teacher-forced along the pack's ids: the prompt, then ids[0 ..
 * steps-2] one at a time; each step's logits against the pack's. */
static void forced_run(tpd_engine *e, const ref_model *sim, const int32_t *prompt, int np, const cJSON *ids,
                       int steps, int V, const float *ref, double eta_max, forced_result *fr) {
  memset(fr, 0, sizeof *fr);
  float *l = malloc(sizeof(float) * (size_t)V);
  double *ls = malloc(sizeof(double) * (size_t)V);
  int *toks = malloc(sizeof(int) * (size_t)(np + steps));
  for (int i = 0; i < np; i++) toks[i] = prompt[i];
  int slot = -1;
  CHECK_OK(tpd_engine_seq_open(e, &slot));
  for (int s = 0; s < steps && slot >= 0; s++) {
    int32_t tok = s ? cJSON_GetArrayItem(ids, s - 1)->valueint : 0, next = -1;
    tpd_step_item it = {.slot = slot, .n_tokens = s ? 1 : np, .tokens = s ? &tok : prompt};
    CHECK_OK(tpd_engine_step(e, &it, 1, &next, l));
    if (s) toks[np + s - 1] = tok;
    if (sim) {
      ref_forward(sim, toks, np + s, ls);
      fr->sim = tu_worst(fr->sim, tu_max_abs_diff(l, ls, V));
    }
    const float *r = ref + (size_t)s * V;
    double num = 0, den = 0, worst = 0, top = -INFINITY, second = -INFINITY;
    for (int i = 0; i < V; i++) {
      const double d = (double)l[i] - r[i];
      num += d * d, den += (double)r[i] * r[i];
      worst = tu_worst(worst, tu_abs_diff(l[i], r[i]));
      fr->dev = tu_worst(fr->dev, tu_abs_diff(l[i], r[i]));
      if (r[i] > top) second = top, top = r[i];
      else if (r[i] > second) second = r[i];
    }
    const double rms = sqrt(den / V), rho = den > 0 ? sqrt(num / den) : INFINITY, eta = rms > 0 ? worst / rms : INFINITY;
    fr->rho = tu_worst(fr->rho, isfinite(rho) ? rho : INFINITY);
    fr->eta = tu_worst(fr->eta, isfinite(eta) ? eta : INFINITY);
    if (top - second >= 2 * eta_max * rms) {
      fr->ids_checked++;
      fr->ids_equal += next == cJSON_GetArrayItem(ids, s)->valueint;
    }
  }
  if (slot >= 0) CHECK_OK(tpd_engine_seq_close(e, slot));
  free(l), free(ls), free(toks);
}

int main(int argc, char **argv) {
  tpd_comm *comm = NULL;
  if (tpd_comm_create_default(&argc, &argv, &comm) != TPD_OK) return 1;
  if (argc < 2) return 2;
  const char *dir = argv[1];
  char path[1024];
  snprintf(path, sizeof path, "%s/expected.json", dir);
  char *text = NULL;
  CHECK_OK(tpd_read_text_file(path, &text, NULL));
  cJSON *root = text ? cJSON_Parse(text) : NULL;
  const cJSON *cases = cJSON_GetObjectItem(root, "cases");
  CHECK(cJSON_GetArraySize(cases) >= 6, "expected.json has its cases");
  const cJSON *c;
  int first_without = -1; /* every rank runs the same passes: all have AVX512-BF16, or none checks bf16 activations */
  CHECK_OK(tpd_comm_agree(comm, tpd_isa_active() >= TPD_ISA_AVX512BF16, &first_without));
  const int bf16_isa = first_without < 0;
  if (!bf16_isa && comm->rank == 0)
    printf("bf16 activations (activations 'bf16') not checked: rank %d's CPU has no AVX512-BF16\n", first_without);
  /* What the default (activations auto: TPD_CPU_BF16_DOT, else the rate probe) gives: the engine
   * agrees bf16 matmul inputs where every rank's own choice is bf16, else f32 on every rank */
  tpd_dtype auto_dt = TPD_F32;
  CHECK_OK(tpd_backend_auto_activations("cpu", &auto_dt));
  const int auto_mine = auto_dt == TPD_BF16;
  int first_f32 = -1;
  CHECK_OK(tpd_comm_agree(comm, auto_mine, &first_f32));
  const int auto_bf16 = first_f32 < 0;
  if (comm->rank == 0)
    printf("the default's activations: %s (vdpbf16ps / f32 FMA rate on rank 0: %.2f)\n",
           auto_bf16 ? "bf16 matmul inputs" : "f32", tpd_cpu_bf16_dot_speedup());
  /* f32 KV and activations; then the defaults (KV cache auto, activations as the rate probe chose); then
   * bf16 activations with an f32 KV cache */
  for (int kvi = 0; kvi < 2 + bf16_isa; kvi++)
  cJSON_ArrayForEach(c, cases) {
    const char *model = cJSON_GetObjectItem(c, "model")->valuestring;
    /* only the bf16 checkpoint has a bf16 matmul path */
    const int act_bf16 = strstr(model, "bf16") && (kvi == 2 || (kvi == 1 && auto_bf16));
    if (kvi == 2 && !act_bf16) continue;
    const cJSON *pj = cJSON_GetObjectItem(c, "prompt_ids"), *oj = cJSON_GetObjectItem(c, "output_ids");
    const cJSON *shape = cJSON_GetObjectItem(c, "logits_shape");
    const int n = cJSON_GetObjectItem(c, "n")->valueint, np = cJSON_GetArraySize(pj);
    const int steps = cJSON_GetArrayItem(shape, 0)->valueint, V = cJSON_GetArrayItem(shape, 1)->valueint;
    const double margin = cJSON_GetObjectItem(c, "min_top2_margin")->valuedouble;
    CHECK(cJSON_GetArraySize(oj) == n && steps >= 1 && steps <= n, "%s: %d expected ids for n = %d, %d logit steps",
          model, cJSON_GetArraySize(oj), n, steps);
    if (cJSON_GetArraySize(oj) != n || steps < 1 || steps > n) break;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)np);
    for (int i = 0; i < np; i++) prompt[i] = cJSON_GetArrayItem(pj, i)->valueint;
    snprintf(path, sizeof path, "%s/%s", dir, model);
    tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = path, .n_threads = 1, .max_seqs = 1, .max_ctx = np + n,
                         .kv_cache = kvi == 1 ? "auto" : "f32", .activations = kvi == 1 ? NULL : kvi ? "bf16" : "f32"};
    tpd_engine *e = NULL;
    CHECK_OK(tpd_engine_create(&o, comm, &e));
    if (!e) break;
    CHECK(tpd_engine_config(e)->vocab == V, "vocab");
    tpd_engine_info info;
    tpd_engine_get_info(e, &info);
    const int bf16_kv = kvi == 1 && strstr(model, "bf16") != NULL; /* auto: bf16 for the bf16 checkpoint */
    CHECK(info.kv_dtype == (bf16_kv ? TPD_BF16 : TPD_F32), "%s kv_cache %s: a %s KV cache", model, o.kv_cache,
          tpd_dtype_name(info.kv_dtype));
    CHECK(info.matmul_act_dtype == (act_bf16 ? TPD_BF16 : TPD_F32), "%s activations %s: matmul inputs %s", model,
          o.activations ? o.activations : "auto", tpd_dtype_name(info.matmul_act_dtype));
    /* the kernels named: a bf16 path only where it runs (f32 weights report the f32 kernels) */
    const int bf16_named = strstr(info.kernels, "-dot") || strstr(info.kernels, "amx-bf16");
    CHECK(bf16_named == act_bf16, "%s activations %s: kernels %s", model, o.activations ? o.activations : "auto",
          info.kernels);
    const int32_t *pp[1] = {prompt};
    tpd_gen_request q = {.n_seqs = 1, .prompts = pp, .prompt_lens = &np, .n_new = n, .logits_steps = steps};
    tpd_gen_result r;
    int mism = n;
    CHECK_OK(tpd_generate(e, &q, &r));
    if (r.tokens && (bf16_kv || act_bf16)) { /* it decodes; the bounds, teacher-forced */
      const char *what = act_bf16 ? info.kernels : "bf16 KV";
      int valid = r.n_tokens[0] == n;
      for (int i = 0; i < r.n_tokens[0]; i++) valid &= r.tokens[0][i] >= 0 && r.tokens[0][i] < V;
      CHECK(valid, "%s prompt of %d, %s: %d tokens generated, %d wanted, all in the vocabulary", model, np, what,
            r.n_tokens[0], n);
      int same = 0;
      for (int i = 0; valid && i < n; i++) same += r.tokens[0][i] == cJSON_GetArrayItem(oj, i)->valueint;
      tpd_gen_result_free(&r);
      snprintf(path, sizeof path, "%s/%s", dir, cJSON_GetObjectItem(c, "logits_file")->valuestring);
      char *raw = NULL;
      size_t nb = 0;
      CHECK_OK(tpd_read_text_file(path, &raw, &nb));
      forced_result fr = {INFINITY, INFINITY, 0, 0, INFINITY, 0};
      const int L = tpd_engine_config(e)->n_layers;
      /* both roundings (the default where the probe chose bf16): independent errors add in squares */
      const double rho_act = act_bf16 ? act_bf16_rho_max(L) : 0, rho_kv = bf16_kv ? kv_bf16_rho_max(L) : 0;
      const double rho_max = sqrt(rho_act * rho_act + rho_kv * rho_kv), eta_max = 5 * rho_max;
      snprintf(path, sizeof path, "%s/%s", dir, model);
      ref_model *sim = NULL; /* the float64 simulation of the roundings */
      CHECK(ref_load(path, &sim) == 0, "%s: the float64 reference loads", model);
      if (sim) ref_set_act_bf16(sim, act_bf16), ref_set_kv_bf16(sim, bf16_kv);
      if (sim && raw && nb == sizeof(float) * (size_t)steps * V)
        forced_run(e, sim, prompt, np, oj, steps, V, (const float *)raw, eta_max, &fr);
      forced_result kv_only = {0, 0, 0, 0, -1, 0}; /* .sim -1: not run */
      if (sim && act_bf16 && bf16_kv && raw && nb == sizeof(float) * (size_t)steps * V) {
        /* that the matmuls' rounding ran, with the KV cache's as well: the logits are further from the
         * simulation of the KV rounding alone than that simulation's own tolerance */
        ref_set_act_bf16(sim, 0);
        forced_run(e, sim, prompt, np, oj, steps, V, (const float *)raw, eta_max, &kv_only);
        CHECK(kv_only.sim > KV_SIM_TOL, "%s prompt of %d, %s: logits within %.3g of the bf16-KV-only simulation "
              "(the bf16 matmul path did not run?)", model, np, what, kv_only.sim);
      }
      ref_free(sim);
      const double sim_tol = act_bf16 ? ACT_SIM_TOL : KV_SIM_TOL;
      CHECK(tu_within(fr.sim, sim_tol), "%s prompt of %d, %s: logits differ from the float64 reference with the same "
            "bf16 roundings by %.3g (tolerance %.0e)", model, np, what, fr.sim, sim_tol);
      CHECK(tu_within(fr.rho, rho_max) && tu_within(fr.eta, eta_max),
            "%s prompt of %d, %s: normwise %.3g (bound %.3g), elementwise %.3g (bound %.3g)", model, np, what, fr.rho,
            rho_max, fr.eta, eta_max);
      CHECK(fr.ids_equal == fr.ids_checked, "%s prompt of %d, %s: %d of %d ids above the margin bound differ", model,
            np, what, fr.ids_checked - fr.ids_equal, fr.ids_checked);
      /* (with the bf16 KV cache as well, its rounding alone moves the logits that much) */
      CHECK(!act_bf16 || bf16_kv || fr.rho > 1e-4, "%s prompt of %d, %s: logits within f32 rounding of the pack (the bf16 path did not run?)",
            model, np, what);
      if (comm->rank == 0 && act_bf16)
        printf("%-18s TP=%d prompt of %2d, %s KV, matmuls %s (bf16 activations; teacher-forced, %d steps): normwise "
               "%.2e (bound %.2e), elementwise %.2e (bound %.2e), %d of %d ids above the margin bound equal; vs "
               "float64 with bf16 matmul inputs%s %.2e (vs pack %.2e%s%.2e); free-running %d of %d ids as the pack\n",
               model, comm->size, np, bf16_kv ? "BF16" : "F32", what, steps, fr.rho, rho_max, fr.eta, eta_max,
               fr.ids_equal, fr.ids_checked, bf16_kv ? " and K/V" : "", fr.sim, fr.dev,
               kv_only.sim >= 0 ? ", vs K/V rounded alone " : "", kv_only.sim >= 0 ? kv_only.sim : 0.0, same, n);
      else if (comm->rank == 0)
        printf("%-18s TP=%d prompt of %2d, BF16 KV (teacher-forced, %d steps): normwise %.2e (bound %.2e), "
               "elementwise %.2e (bound %.2e), %d of %d ids above the margin bound equal; vs float64 with bf16 K/V "
               "%.2e; free-running %d of %d ids as the pack\n",
               model, comm->size, np, steps, fr.rho, rho_max, fr.eta, eta_max, fr.ids_equal, fr.ids_checked, fr.sim,
               same, n);
      free(raw);
    } else if (r.tokens) {
      mism = 0;
      for (int i = 0; i < n; i++) mism += r.tokens[0][i] != cJSON_GetArrayItem(oj, i)->valueint;
      CHECK(mism == 0, "%s prompt of %d: %d of %d greedy ids differ", model, np, mism, n);
      snprintf(path, sizeof path, "%s/%s", dir, cJSON_GetObjectItem(c, "logits_file")->valuestring);
      char *raw = NULL;
      size_t nb = 0;
      CHECK_OK(tpd_read_text_file(path, &raw, &nb));
      CHECK(nb == sizeof(float) * (size_t)steps * V, "logits file size");
      /* NaN or Inf on either side, or nothing to compare: +INF, a failure */
      const double worst = raw && nb == sizeof(float) * (size_t)steps * V
                               ? tu_max_abs_diff(r.step_logits, (const float *)raw, (size_t)steps * V)
                               : INFINITY;
      CHECK(tu_within(worst, LOGIT_TOL), "%s prompt of %d: logits differ by %.3g", model, np, worst);
      CHECK(tu_within(LOGIT_TOL, margin / 10), "tolerance not well inside the top-2 margin %.3g", margin);
      if (comm->rank == 0)
        printf("%-18s TP=%d prompt of %2d, F32 KV: %d of %d ids match; logits max |diff| %.2e (tolerance %.0e, min "
               "top-2 margin %.2e)\n",
               model, comm->size, np, n - mism, n, worst, LOGIT_TOL, margin);
      free(raw);
      tpd_gen_result_free(&r);
    }
    tpd_engine_destroy(e);
    free(prompt);
  }
  cJSON_Delete(root);
  free(text);
  int bad = -1;
  tpd_comm_agree(comm, tu_failures == 0, &bad);
  const int rank = comm->rank;
  tpd_comm_destroy(comm);
  if (bad >= 0 && !tu_failures) tu_failures = 1;
  return tu_finish(rank == 0 ? "test_conformance" : "test_conformance (rank > 0)");
}
