/* The conformance pack (tests/data/conformance, from shared/conformance):
 * greedy ids and float32 logits produced by independent implementations.
 * Run at every TP degree: ids must match exactly, logits within LOGIT_TOL,
 * which is far inside each case's smallest top-2 margin. */
#include <cjson/cJSON.h>

#include "launch/generate.h"
#include "runtime/base/fileio.h"
#include "runtime/engine/tpdecode.h"
#include "testutil.h"

#define LOGIT_TOL 1e-4 /* absolute, on logits of magnitude ~1..10 */

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
  cJSON_ArrayForEach(c, cases) {
    const char *model = cJSON_GetObjectItem(c, "model")->valuestring;
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
    tpd_engine_opts o = {TPD_ENGINE_OPTS_INIT, .model_dir = path, .n_threads = 1, .max_seqs = 1, .max_ctx = np + n};
    tpd_engine *e = NULL;
    CHECK_OK(tpd_engine_create(&o, comm, &e));
    if (!e) break;
    CHECK(tpd_engine_config(e)->vocab == V, "vocab");
    const int32_t *pp[1] = {prompt};
    tpd_gen_request q = {.n_seqs = 1, .prompts = pp, .prompt_lens = &np, .n_new = n, .logits_steps = steps};
    tpd_gen_result r;
    int mism = n;
    CHECK_OK(tpd_generate(e, &q, &r));
    if (r.tokens) {
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
        printf("%-18s TP=%d prompt of %2d: %d of %d ids match; logits max |diff| %.2e (tolerance %.0e, min top-2 margin %.2e)\n",
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
