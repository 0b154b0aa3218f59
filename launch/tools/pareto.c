/* The Pareto frontier of points where more is better on both axes. */
#include "launch/tools/pareto.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
  double x, y;
  int i;
} pt;

static int by_x_desc(const void *a, const void *b) {
  const pt *p = a, *q = b;
  if (p->x != q->x) return p->x > q->x ? -1 : 1;
  if (p->y != q->y) return p->y > q->y ? -1 : 1;
  return p->i - q->i;
}

int tpd_pareto_frontier(const double *x, const double *y, int n, int *out_idx) {
  if (n <= 0) return 0;
  pt *p = malloc(sizeof *p * (size_t)n);
  if (!p) return 0;
  int m = 0;
  for (int i = 0; i < n; i++)
    if (isfinite(x[i]) && isfinite(y[i])) p[m++] = (pt){x[i], y[i], i};
  qsort(p, (size_t)m, sizeof *p, by_x_desc);
  /* walking from the largest x down, a point survives only if its y beats
   * every point with a larger (or equal) x */
  int k = 0;
  double best = -INFINITY;
  for (int j = 0; j < m; j++)
    if (p[j].y > best) {
      best = p[j].y;
      out_idx[k++] = p[j].i;
    }
  for (int a = 0, b = k - 1; a < b; a++, b--) {
    const int t = out_idx[a];
    out_idx[a] = out_idx[b];
    out_idx[b] = t;
  }
  free(p);
  return k;
}
