/* The Pareto frontier of (x, y) points where more is better on both axes. */
#ifndef TPD_PARETO_H
#define TPD_PARETO_H

#ifdef __cplusplus
extern "C" {
#endif

/* Indices of the points no other point dominates (q dominates p when
 * q.x >= p.x and q.y >= p.y with at least one strict), in order of
 * increasing x (so decreasing y).  Of exactly equal points only the lowest
 * index is kept.  Points with a NaN or infinite coordinate are ignored.
 * out_idx holds n entries; returns the frontier's size (0 also when memory
 * for n points is short). */
int tpd_pareto_frontier(const double *x, const double *y, int n, int *out_idx);

#ifdef __cplusplus
}
#endif
#endif
