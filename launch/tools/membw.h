/* Memory bandwidth probes: the floor the CPU benchmark compares against,
 * measured in the same run, with the same number of threads, interleaved
 * with the timed steps so both see the same state of a shared machine. */
#ifndef TPD_MEMBW_H
#define TPD_MEMBW_H

#include <stddef.h>

typedef struct tpd_membw_probe tpd_membw_probe;

/* A probe streaming n_bytes (rounded down to 4 KiB) with n_threads threads.
 * copy = 0: reads (bytes counted: n_bytes); copy = 1: memcpy (bytes counted:
 * read + written = 2 n_bytes).  NULL when memory or threads are short. */
tpd_membw_probe *tpd_membw_open(int n_threads, size_t n_bytes, int copy);
/* One timed pass; returns GB/s (1e9 bytes per second).  Read passes take
 * turns among four AVX-512 kernels (one or four streams per thread, without
 * and with software prefetch): the best of several passes is the best of
 * these probes. */
double tpd_membw_pass(tpd_membw_probe *p);
size_t tpd_membw_bytes(const tpd_membw_probe *p);
void tpd_membw_close(tpd_membw_probe *p);

typedef struct {
  double best_gbs, median_gbs;
  size_t n_bytes; /* bytes counted per pass */
  int threads, reps;
} tpd_membw;

/* A copy probe: open + one untimed pass + reps timed passes + close;
 * returns 0 on failure.  (The read floor is measured interleaved with the
 * timed steps, through the probe above.) */
int tpd_membw_copy(int n_threads, size_t n_bytes, int reps, tpd_membw *out);

#endif
