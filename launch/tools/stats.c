#include "launch/tools/stats.h"

#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double tpd_percentile(const double *v, int n, double p) {
  if (n <= 0) return 0.0;
  double *s = malloc(sizeof *s * (size_t)n);
  if (!s) return 0.0;
  memcpy(s, v, sizeof *s * (size_t)n);
  qsort(s, (size_t)n, sizeof *s, cmp_double);
  int k = (int)(p / 100.0 * n + 0.999999) - 1; /* nearest rank */
  if (k < 0) k = 0;
  if (k >= n) k = n - 1;
  const double r = s[k];
  free(s);
  return r;
}
