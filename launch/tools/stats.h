/* Order statistics of timing samples, shared by the benchmark, the probes
 * and the CLI's summary line. */
#ifndef TPD_STATS_H
#define TPD_STATS_H

#ifdef __cplusplus
extern "C" {
#endif

/* The p-th percentile (0..100) of n values by nearest rank (p = 50: the
 * median); 0 when n <= 0 or memory is short.  v is not changed. */
double tpd_percentile(const double *v, int n, double p);

#ifdef __cplusplus
}
#endif
#endif
