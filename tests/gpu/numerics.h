/* The CUDA numerics policy (docs/cuda.md, "Numerics policy") as checks,
 * shared by test_gpu_engine.c (TP = 1) and test_gpu_mpi.c (TP = 2): the
 * conformance pack (tests/data/conformance) run on a cuda engine, teacher-
 * forced along the pack's greedy ids, against the pack and against the
 * independent float64 reference model (tests/unit/ref_model.c, compiled into
 * the including test: a test program is one translation unit).
 *
 * The stated bounds (derivation in docs/cuda.md), with u16 = 2^-8 and
 * u32 = 2^-24 the unit roundoffs, sigma = u / sqrt(3) the rms of one
 * rounding's relative error, kappa = 5 the network's amplification of
 * relative perturbations (calibrated, see the docs), R the bf16 roundings on
 * the path to the logits, R = L (10 + 4 w + 2 (TP - 1)) + 2 + w (L layers,
 * w = 1 when F32/F16 weights are rounded to bf16), K the largest
 * accumulation depth (max of D, F, Hq Dh):
 *   bf16 activations: rho = ||l - l_ref|| / ||l_ref|| <= rho_max =
 *     kappa sigma16 sqrt(R); max_i |l_i - l_ref,i| <= eta_max rms(l_ref),
 *     eta_max = 5 rho_max; the greedy id equals the reference's at every step
 *     whose reference top-2 margin is >= 2 eta_max rms(l_ref).
 *   f32 activations: the pack's ids identical; |l - l_pack| <= 1e-4 (the
 *     conformance tolerance); rho <= kappa sigma32 sqrt(R0 K), R0 = R with
 *     w = 0 and TP = 1 (nothing is rounded to bf16).
 * Steps whose logits are not requested take their id from the device argmax
 * (the production path); the others from the downloaded logits. */
#ifndef TPD_GPU_NUMERICS_H
#define TPD_GPU_NUMERICS_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "runtime/base/fileio.h"
#include "runtime/model/safetensors.h"
#include "runtime/engine/tpdecode.h"
#define TU_WITH_CUDA /* the device helpers of tests/testutil.h */
#include "tests/testutil.h"
#include "tests/unit/ref_model.c" /* the float64 reference (see above) */

#define GN_MAX_CASES 16
#define GN_MAX_TOKENS 128
#define GN_U16 (1.0 / 256.0)        /* bf16 unit roundoff 2^-8 */
#define GN_U32 (1.0 / 16777216.0)   /* f32 unit roundoff 2^-24 */
#define GN_KAPPA 5.0                /* amplification allowance (docs/cuda.md) */
#define GN_Z 5.0                    /* max over the vocabulary / rms, elementwise */
#define GN_PACK_TOL 1e-4            /* |logit - pack logit|, as tests/unit/test_conformance.c */
#define GN_BF16_STEPS 24            /* steps of the bf16 check (the emulation is slow) */

typedef struct {
  char model[128], logits_file[256];
  int np, n, steps, V;
  int32_t prompt[GN_MAX_TOKENS], out[GN_MAX_TOKENS];
  int n_layers, w_rounded, k_max; /* filled by gn_reference */
} gn_case;

/* tests/data/conformance beside this file's directory, or GT_CONFORMANCE */
static inline void gn_conformance_dir(char *buf, size_t cap) {
  const char *env = getenv("GT_CONFORMANCE");
  if (env && *env) {
    snprintf(buf, cap, "%s", env);
    return;
  }
  snprintf(buf, cap, "%s", __FILE__);
  char *cut = strstr(buf, "tests/gpu/numerics.h");
  if (cut) snprintf(cut, cap - (size_t)(cut - buf), "tests/data/conformance");
  else snprintf(buf, cap, "tests/data/conformance");
}

/* expected.json -> cases; returns how many (0 on any problem, reported) */
static inline int gn_load_cases(const char *dir, gn_case *cases, int cap) {
  char path[4200];
  snprintf(path, sizeof path, "%.3000s/expected.json", dir);
  char *text = NULL;
  if (tpd_read_text_file(path, &text, NULL) != TPD_OK) {
    printf("FAIL cannot read %s: %s\n", path, tpd_last_error());
    return 0;
  }
  cJSON *root = cJSON_Parse(text);
  const cJSON *list = cJSON_GetObjectItem(root, "cases"), *c;
  int n = 0;
  cJSON_ArrayForEach(c, list) {
    if (n == cap) break;
    gn_case *g = &cases[n];
    memset(g, 0, sizeof *g);
    const cJSON *pj = cJSON_GetObjectItem(c, "prompt_ids"), *oj = cJSON_GetObjectItem(c, "output_ids");
    const cJSON *shape = cJSON_GetObjectItem(c, "logits_shape");
    snprintf(g->model, sizeof g->model, "%s", cJSON_GetObjectItem(c, "model")->valuestring);
    snprintf(g->logits_file, sizeof g->logits_file, "%s", cJSON_GetObjectItem(c, "logits_file")->valuestring);
    g->np = cJSON_GetArraySize(pj);
    g->n = cJSON_GetObjectItem(c, "n")->valueint;
    g->steps = cJSON_GetArrayItem(shape, 0)->valueint;
    g->V = cJSON_GetArrayItem(shape, 1)->valueint;
    if (g->np < 1 || g->np > GN_MAX_TOKENS || g->n < 1 || g->n > GN_MAX_TOKENS || g->np + g->n > GN_MAX_TOKENS ||
        cJSON_GetArraySize(oj) != g->n || g->steps > g->n) {
      printf("FAIL %s: a case of %s does not fit this test (prompt %d, n %d)\n", path, g->model, g->np, g->n);
      n = 0;
      break;
    }
    for (int i = 0; i < g->np; i++) g->prompt[i] = cJSON_GetArrayItem(pj, i)->valueint;
    for (int i = 0; i < g->n; i++) g->out[i] = cJSON_GetArrayItem(oj, i)->valueint;
    n++;
  }
  cJSON_Delete(root);
  free(text);
  return n;
}

/* Float64 reference logits of every step along the pack's ids: *ref =
 * [n, V] (NULL on failure); also fills n_layers and w_rounded. */
static inline void gn_reference(const char *dir, gn_case *pc, double **ref) {
  *ref = NULL;
  char path[4200];
  snprintf(path, sizeof path, "%.3000s/%.120s", dir, pc->model);
  ref_model *m = NULL;
  if (ref_load(path, &m) != 0) return;
  tpd_st *st = NULL;
  if (tpd_st_open(path, &st) != TPD_OK) {
    ref_free(m);
    return;
  }
  const tpd_st_tensor *t = tpd_st_find(st, "model.layers.0.mlp.down_proj.weight");
  pc->w_rounded = t && (t->dtype == TPD_F32 || t->dtype == TPD_F16);
  tpd_st_close(st);
  const tpd_model_config *cfg = ref_config(m);
  pc->n_layers = cfg->n_layers;
  pc->k_max = cfg->dim;
  if (cfg->ffn_dim > pc->k_max) pc->k_max = cfg->ffn_dim;
  if (cfg->n_heads * cfg->head_dim > pc->k_max) pc->k_max = cfg->n_heads * cfg->head_dim;
  double *r = (double *)tu_malloc(sizeof(double) * (size_t)pc->n * pc->V);
  int tokens[2 * GN_MAX_TOKENS];
  for (int i = 0; i < pc->np; i++) tokens[i] = pc->prompt[i];
  for (int i = 0; i < pc->n; i++) {
    if (i > 0) tokens[pc->np + i - 1] = pc->out[i - 1];
    ref_forward(m, tokens, pc->np + i, r + (size_t)i * pc->V);
  }
  ref_free(m);
  *ref = r;
}

/* One sequence on engine e: the prompt, then the pack's ids one per step,
 * n steps; picks[i] is the engine's greedy choice of step i, and logits[i]
 * ([n, V]) its logits where with_logits[i] (elsewhere the step asks for none,
 * so the id comes from the device argmax, and logits[i] is left alone). */
static inline tpd_status gn_forced_run(tpd_engine *e, const gn_case *pc, int n, const int *with_logits,
                                       int32_t *picks, float *logits) {
  int slot = -1;
  TPD_TRY(tpd_engine_seq_open(e, &slot));
  for (int i = 0; i < n; i++) {
    tpd_step_item it;
    memset(&it, 0, sizeof it);
    it.slot = slot;
    it.n_tokens = i == 0 ? pc->np : 1;
    it.tokens = i == 0 ? pc->prompt : &pc->out[i - 1];
    TPD_TRY(tpd_engine_step(e, &it, 1, &picks[i], with_logits[i] ? logits + (size_t)i * pc->V : NULL));
  }
  tpd_engine_seq_close(e, slot);
  return TPD_OK;
}

/* which steps of each check ask for logits: f32, the pack's logits steps;
 * bf16, every other step (the rest test the device argmax) */
static inline void gn_logit_steps(const gn_case *pc, int bf16, int *with_logits) {
  for (int i = 0; i < pc->n; i++) with_logits[i] = bf16 ? i % 2 == 0 : i < pc->steps;
}

/* ---- bounds ---- */
static inline int gn_roundings(int n_layers, int tp, int w_rounded) {
  return n_layers * (10 + 4 * w_rounded + 2 * (tp - 1)) + 2 + w_rounded;
}
static inline double gn_rho_max(int n_layers, int tp, int w_rounded) {
  return GN_KAPPA * (GN_U16 / sqrt(3.0)) * sqrt((double)gn_roundings(n_layers, tp, w_rounded));
}
static inline double gn_eta_max(int n_layers, int tp, int w_rounded) { return GN_Z * gn_rho_max(n_layers, tp, w_rounded); }
static inline double gn_rho_max_f32(const gn_case *pc) {
  return GN_KAPPA * (GN_U32 / sqrt(3.0)) * sqrt((double)gn_roundings(pc->n_layers, 1, 0) * pc->k_max);
}

/* rms, argmax and top-2 margin of a reference row */
static inline void gn_row(const double *r, int V, double *rms, int *top, double *margin) {
  double ss = 0, second = -INFINITY;
  int b = 0;
  for (int i = 0; i < V; i++) {
    ss += r[i] * r[i];
    if (r[i] > r[b]) b = i;
  }
  for (int i = 0; i < V; i++)
    if (i != b && r[i] > second) second = r[i];
  *rms = sqrt(ss / V);
  *top = b;
  *margin = r[b] - second;
}

typedef struct {
  double rho, eta;               /* worst over every step of every case */
  int steps, compared, mismatches, ids, id_mismatches;
  double pack_diff;
} gn_stats;

static inline void gn_stats_init(gn_stats *s) { memset(s, 0, sizeof *s); }

/* f32 activations: the pack's ids and logits, and the float64 reference */
static inline void gn_check_f32(const gn_case *pc, const char *dir, const int32_t *picks, const float *logits,
                                const int *with_logits, const double *ref, int tp, gn_stats *all) {
  int mism = 0;
  for (int i = 0; i < pc->n; i++) mism += picks[i] != pc->out[i];
  char path[4200], what[600];
  snprintf(path, sizeof path, "%.3000s/%.250s", dir, pc->logits_file);
  char *raw = NULL;
  size_t nb = 0;
  double pack = INFINITY, rho = 0;
  if (tpd_read_text_file(path, &raw, &nb) == TPD_OK && nb == sizeof(float) * (size_t)pc->steps * pc->V)
    pack = tu_max_abs_diff(logits, (const float *)raw, (size_t)pc->steps * pc->V);
  free(raw);
  int n_logits = 0;
  for (int i = 0; i < pc->n; i++)
    if (with_logits[i]) {
      rho = tu_worst(rho, tu_rel_err(logits + (size_t)i * pc->V, ref + (size_t)i * pc->V, pc->V));
      n_logits++;
    }
  snprintf(what, sizeof what, "f32  TP=%d %-18.100s prompt %2d: %d of %d pack ids identical, logits vs pack %.2e (<= %.0e)",
           tp, pc->model, pc->np, pc->n - mism, pc->n, pack, GN_PACK_TOL);
  tu_expect(mism == 0 && tu_within(pack, GN_PACK_TOL), what);
  snprintf(what, sizeof what, "f32  TP=%d %-18.100s prompt %2d: rho vs float64 over %d steps", tp, pc->model, pc->np,
           n_logits);
  const tu_cmp c = {rho, isfinite(rho) ? 0u : 1u};
  tu_report(what, c, gn_rho_max_f32(pc));
  all->rho = tu_worst(all->rho, rho);
  all->pack_diff = tu_worst(all->pack_diff, pack);
  all->ids += pc->n;
  all->id_mismatches += mism;
  all->steps += pc->n;
}

/* bf16 activations over the first n steps: the stated bounds against the
 * float64 reference */
static inline void gn_check_bf16(const gn_case *pc, int n, const int32_t *picks, const float *logits,
                                 const int *with_logits, const double *ref, int tp, gn_stats *all) {
  const double rho_max = gn_rho_max(pc->n_layers, tp, pc->w_rounded);
  const double eta_max = gn_eta_max(pc->n_layers, tp, pc->w_rounded);
  double rho = 0, eta = 0;
  int compared = 0, mism = 0, first_low = -1, matched_before_low = 0, n_logits = 0;
  for (int i = 0; i < n; i++) {
    const float *l = logits + (size_t)i * pc->V;
    const double *r = ref + (size_t)i * pc->V;
    double rms, margin;
    int top;
    gn_row(r, pc->V, &rms, &top, &margin);
    if (with_logits[i]) {
      rho = tu_worst(rho, tu_rel_err(l, r, pc->V));
      eta = tu_worst(eta, rms > 0 ? tu_max_abs_diff(l, r, pc->V) / rms : INFINITY);
      n_logits++;
    }
    if (margin >= 2.0 * eta_max * rms) {
      compared++;
      if (picks[i] != top) {
        mism++;
        printf("     bf16 TP=%d %s prompt %d step %d: cuda picked %d, float64 %d (margin %.3f rms >= %.3f)\n", tp,
               pc->model, pc->np, i, picks[i], top, margin / rms, 2.0 * eta_max);
      }
    } else if (first_low < 0) {
      first_low = i;
    }
    if (first_low < 0 && picks[i] == top) matched_before_low++;
  }
  char what[600];
  snprintf(what, sizeof what, "bf16 TP=%d %-18.100s prompt %2d: rho over %d steps (R=%d)", tp, pc->model, pc->np,
           n_logits, gn_roundings(pc->n_layers, tp, pc->w_rounded));
  const tu_cmp c1 = {rho, isfinite(rho) ? 0u : 1u};
  tu_report(what, c1, rho_max);
  snprintf(what, sizeof what, "bf16 TP=%d %-18.100s prompt %2d: eta = max|diff| / rms", tp, pc->model, pc->np);
  const tu_cmp c2 = {eta, isfinite(eta) ? 0u : 1u};
  tu_report(what, c2, eta_max);
  snprintf(what, sizeof what,
           "bf16 TP=%d %-18.100s prompt %2d: greedy ids = float64 at %d of %d steps with margin >= %.2f rms (first "
           "step below it: %d; %d before it)",
           tp, pc->model, pc->np, compared - mism, compared, 2.0 * eta_max, first_low, matched_before_low);
  tu_expect(mism == 0, what);
  all->rho = tu_worst(all->rho, rho / rho_max); /* as a fraction of each case's bound */
  all->eta = tu_worst(all->eta, eta / eta_max);
  all->steps += n;
  all->compared += compared;
  all->mismatches += mism;
}

static inline void gn_stats_print(const char *label, const gn_stats *s) {
  if (s->ids)
    printf("%s: %d steps: %d of %d pack ids identical, worst |logit - pack| %.2e, worst rho vs float64 %.2e\n", label,
           s->steps, s->ids - s->id_mismatches, s->ids, s->pack_diff, s->rho);
  else
    printf("%s: %d steps: worst rho %.2f and eta %.2f of their bounds; ids compared at %d steps, %d differ\n", label,
           s->steps, s->rho, s->eta, s->compared, s->mismatches);
}

#endif
