/* A persistent thread pool for the CPU kernels.
 *
 * tpd_pool_run(pool, fn, arg) calls fn(arg, i, n) once on each of the n pool
 * threads (the caller is thread 0) and returns when all have finished.  Each
 * kernel partitions its own work from (i, n), so a given output is always
 * computed by the same code path whatever the thread count.
 * Workers spin briefly between runs (TPD_POOL_SPIN_US, default 50) then sleep. */
#ifndef TPD_CPU_POOL_H
#define TPD_CPU_POOL_H

#include "runtime/base/error.h"

typedef struct tpd_pool tpd_pool;
typedef void (*tpd_pool_fn)(void *arg, int ith, int nth);

/* The pool's settings from the environment, checked (tpd_backend_cpu_create
 * runs this before it starts anything): TPD_POOL_SPIN_US an integer in
 * [0, TPD_POOL_SPIN_US_MAX] (default 50), TPD_CPU_PIN 0 or 1 (default 0).
 * Anything else is TPD_ERR_ARG naming the variable, its value and the range.
 * tpd_pool_create reads them the same way; where a program creates a pool
 * with no such check first, a bad value is a warning and the default. */
#define TPD_POOL_SPIN_US_DEFAULT 50
#define TPD_POOL_SPIN_US_MAX 1000000
tpd_status tpd_pool_env(long *spin_us, int *pin);

/* With TPD_CPU_PIN=1 the creating thread is thread 0 and is pinned too;
 * destroying the pool on that thread gives it back the CPUs it had. */
tpd_pool *tpd_pool_create(int n_threads);
void tpd_pool_destroy(tpd_pool *p);
int tpd_pool_size(const tpd_pool *p);
void tpd_pool_run(tpd_pool *p, tpd_pool_fn fn, void *arg);

/* The contiguous share [*begin, *end) of n items for thread ith of nth,
 * in units of `align` items (the last share takes the remainder). */
static inline void tpd_split(long n, int ith, int nth, long align, long *begin, long *end) {
  long units = (n + align - 1) / align;
  long b = units * ith / nth * align, e = units * (ith + 1) / nth * align;
  *begin = b < n ? b : n;
  *end = e < n ? e : n;
}

#endif
