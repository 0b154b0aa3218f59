/* Compares the results of test_tp at TP = 1, 2 and 4: identical greedy and
 * sampled ids, logits within a stated tolerance.  The ids of each run are
 * also checked against the float64 reference by test_tp itself, so equal
 * ids here are not equal garbage. */
#include "testutil.h"

enum { N_NEW = 12, N_MODELS = 3, V = 512 };

static int load(const char *dir, int tp, int32_t *ids, float *lg) {
  char path[600];
  snprintf(path, sizeof path, "%s/tp%d.bin", dir, tp);
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t n = 0;
  for (int m = 0; m < N_MODELS; m++) {
    n += fread(ids + (size_t)m * 6 * N_NEW, sizeof(int32_t), 6 * N_NEW, f);
    n += fread(lg + (size_t)m * N_NEW * 3 * V, sizeof(float), (size_t)N_NEW * 3 * V, f);
  }
  fclose(f);
  return n == (size_t)N_MODELS * (6 * N_NEW + N_NEW * 3 * V) ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  static int32_t ids[3][N_MODELS * 6 * N_NEW];
  static float lg[3][N_MODELS * N_NEW * 3 * V];
  const int tps[3] = {1, 2, 4};
  for (int i = 0; i < 3; i++) CHECK(load(argv[1], tps[i], ids[i], lg[i]) == 0, "results of TP=%d missing", tps[i]);
  if (tu_failures) return tu_finish("test_tp_compare");
  for (int i = 1; i < 3; i++) {
    CHECK(!memcmp(ids[0], ids[i], sizeof ids[0]), "TP=%d tokens (greedy or sampled) differ from TP=1", tps[i]);
    const size_t n = sizeof lg[0] / sizeof(float);
    const double worst = tu_max_abs_diff(lg[i], lg[0], n), rel = tu_max_diff_rel(lg[i], lg[0], n);
    /* partial sums are added in another order: expect float rounding, 1e-5
     * of the logit scale at most (a NaN or Inf on either side fails) */
    CHECK(tu_within(rel, 1e-5), "TP=%d logits differ from TP=1 by %.3g of max |logit|", tps[i], rel);
    printf("TP=%d vs TP=1: greedy and sampled ids identical; logits max diff %.2e (%.2e of max |logit|)\n", tps[i], worst,
           rel);
  }
  return tu_finish("test_tp_compare");
}
