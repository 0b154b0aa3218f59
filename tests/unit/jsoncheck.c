/* jsoncheck N_SEQS N_NEW [--prompts]: validates `tpdecode --json` output on
 * stdin and prints each sequence's output ids (with --prompts: its prompt
 * ids) on one line, for comparing runs. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *why) {
  fprintf(stderr, "jsoncheck: %s\n", why);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3 || (argc > 3 && strcmp(argv[3], "--prompts"))) return fail("usage: jsoncheck N_SEQS N_NEW [--prompts]");
  const int n_seqs = atoi(argv[1]), n_new = atoi(argv[2]), prompts = argc > 3;
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf - 1, stdin);
  buf[n] = 0;
  cJSON *root = cJSON_Parse(buf);
  if (!root) return fail("not JSON");
  const cJSON *seqs = cJSON_GetObjectItemCaseSensitive(root, "sequences");
  const cJSON *timing = cJSON_GetObjectItemCaseSensitive(root, "timing");
  if (!cJSON_IsArray(seqs) || cJSON_GetArraySize(seqs) != n_seqs) return fail("sequences: wrong count");
  if (!cJSON_IsObject(timing)) return fail("timing missing");
  const char *keys[] = {"prefill_ms", "ms_per_token_median", "ms_per_token_p90", "tokens_per_s"};
  for (int i = 0; i < 4; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(timing, keys[i]);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0) return fail(keys[i]);
  }
  const cJSON *s;
  cJSON_ArrayForEach(s, seqs) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(s, "prompt_ids"), *o = cJSON_GetObjectItemCaseSensitive(s, "output_ids");
    if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) < 1) return fail("prompt_ids");
    if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != n_new) return fail("output_ids: wrong length");
    const cJSON *t;
    cJSON_ArrayForEach(t, p) {
      if (!cJSON_IsNumber(t) || t->valuedouble < 0) return fail("prompt id");
    }
    cJSON_ArrayForEach(t, o) {
      if (!cJSON_IsNumber(t) || t->valuedouble < 0) return fail("output id");
    }
    const cJSON *shown = prompts ? p : o;
    cJSON_ArrayForEach(t, shown) printf("%d ", t->valueint);
    printf("\n");
  }
  cJSON_Delete(root);
  return 0;
}
