#include "kernels/cpu/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/base/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

typedef struct {
  tpd_pool *pool;
  int index;
} worker_arg;

struct tpd_pool {
  int n;
  pthread_t *threads;
  worker_arg *args;
  tpd_pool_fn fn;
  void *arg;
  atomic_uint gen;      /* bumped once per run */
  atomic_int remaining; /* workers still running the current job */
  atomic_int sleeping;
  atomic_int stop;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  long spin_ns;
  int pin;             /* TPD_CPU_PIN: threads pinned within start_set */
  pthread_t creator;   /* pinned as thread 0: its own set is put back at destroy */
  cpu_set_t creator_cpus;
};

/* The CPUs the process could run on before any pool pinned a thread, read
 * once: a second pool created on a thread the first one pinned must not take
 * that thread's one CPU for the whole set (every thread of it would share
 * CPU 0). */
static pthread_once_t start_once = PTHREAD_ONCE_INIT;
static cpu_set_t start_set;
static int start_ok;
static void read_start_cpus(void) { start_ok = sched_getaffinity(0, sizeof start_set, &start_set) == 0; }

static long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

/* TPD_CPU_PIN=1: thread i runs only on the i-th CPU (mod their count) of the
 * set the process had before any pool pinned a thread (mpirun's binding,
 * taskset; start_set), so a thread's share of the weights stays with one
 * core's caches.  Off by default: docs/performance.md, "CPU decode at the
 * floor", has the measurement. */
static void pin_self(const cpu_set_t *allowed, int index) {
  const int n = CPU_COUNT(allowed);
  if (n < 1) return;
  for (int c = 0, seen = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, allowed) && seen++ == index % n) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(c, &one);
      if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0)
        TPD_WARN("TPD_CPU_PIN: cannot pin thread %d to cpu %d", index, c);
      return;
    }
}

static void *worker_main(void *vp) {
  worker_arg *wa = vp;
  tpd_pool *p = wa->pool;
  if (p->pin) pin_self(&start_set, wa->index);
  unsigned seen = 0;
  for (;;) {
    long t0 = now_ns();
    unsigned g;
    int spins = 0;
    while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
      CPU_RELAX();
      if (++spins % 64 == 0 && now_ns() - t0 > p->spin_ns) {
        pthread_mutex_lock(&p->mu);
        atomic_fetch_add(&p->sleeping, 1);
        while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
        atomic_fetch_sub(&p->sleeping, 1);
        pthread_mutex_unlock(&p->mu);
        t0 = now_ns();
      }
      if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
    }
    seen = g;
    if (atomic_load(&p->stop)) return NULL;
    p->fn(p->arg, wa->index, p->n);
    atomic_fetch_sub_explicit(&p->remaining, 1, memory_order_release);
  }
}

tpd_status tpd_pool_env(long *spin_us, int *pin) {
  long us = 0, on = 0;
  TPD_TRY(tpd_param_range("POOL_SPIN_US", TPD_POOL_SPIN_US_DEFAULT, 0, TPD_POOL_SPIN_US_MAX, "microseconds", &us));
  TPD_TRY(tpd_param_range("CPU_PIN", 0, 0, 1, "0: off, 1: pin each thread to one CPU", &on));
  *spin_us = us;
  *pin = (int)on;
  return TPD_OK;
}

tpd_pool *tpd_pool_create(int n_threads) {
  if (n_threads < 1) n_threads = 1;
  long spin_us = TPD_POOL_SPIN_US_DEFAULT;
  int pin = 0;
  tpd_error_state saved;
  tpd_error_save(&saved);
  if (tpd_pool_env(&spin_us, &pin) != TPD_OK) {
    spin_us = TPD_POOL_SPIN_US_DEFAULT;
    pin = 0;
    tpd_param_fallback(&saved, "the defaults (50 us spin, no pinning)");
  }
  tpd_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n = n_threads;
  p->spin_ns = spin_us * 1000L;
  if (pin) pthread_once(&start_once, read_start_cpus);
  p->pin = pin && start_ok && pthread_getaffinity_np(pthread_self(), sizeof p->creator_cpus, &p->creator_cpus) == 0;
  if (p->pin) {
    p->creator = pthread_self();
    pin_self(&start_set, 0);
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  if (n_threads > 1) {
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    p->args = calloc((size_t)n_threads, sizeof *p->args);
    if (!p->threads || !p->args) {
      tpd_pool_destroy(p);
      return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
      p->args[i].pool = p;
      p->args[i].index = i;
      if (pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]) != 0) {
        p->n = i; /* destroy joins the ones that started */
        tpd_pool_destroy(p);
        return NULL;
      }
    }
  }
  return p;
}

void tpd_pool_destroy(tpd_pool *p) {
  if (!p) return;
  atomic_store(&p->stop, 1);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add(&p->gen, 1);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->n; i++)
    if (p->threads) pthread_join(p->threads[i], NULL);
  if (p->pin && pthread_equal(p->creator, pthread_self())) /* as it was before create pinned it */
    (void)pthread_setaffinity_np(p->creator, sizeof p->creator_cpus, &p->creator_cpus);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->threads);
  free(p->args);
  free(p);
}

int tpd_pool_size(const tpd_pool *p) { return p->n; }

void tpd_pool_run(tpd_pool *p, tpd_pool_fn fn, void *arg) {
  if (p->n == 1) {
    fn(arg, 0, 1);
    return;
  }
  p->fn = fn;
  p->arg = arg;
  atomic_store(&p->remaining, p->n - 1);
  atomic_fetch_add(&p->gen, 1); /* seq_cst: pairs with the sleepers' check */
  if (atomic_load(&p->sleeping) > 0) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
  fn(arg, 0, p->n);
  /* spin, then yield: with more threads than cores a worker may need our core */
  for (int spins = 0; atomic_load_explicit(&p->remaining, memory_order_acquire) > 0; spins++) {
    if (spins < 4096) CPU_RELAX();
    else sched_yield();
  }
}
