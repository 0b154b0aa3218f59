/* Allocation counters for test_alloc.c (see alloc_count.h).
 *
 * Two levels:
 *   "ours": the program is linked with -Wl,--wrap=malloc,... so every call
 *     that tpdecode's own code (libtpdecode is static) or the test makes
 *     lands in __wrap_X, which counts it and calls __real_X;
 *   "all": this file also defines malloc, calloc, realloc, posix_memalign,
 *     aligned_alloc and memalign for the whole process (glibc looks them up
 *     through the PLT, so allocations inside libc -- qsort's merge buffer,
 *     say -- and inside MPI land here too), counting and forwarding to
 *     glibc's own allocator (__libc_malloc, ...).  free stays glibc's: the
 *     blocks are glibc's.
 * __real_X resolves to the definition here, so "ours" is a subset of "all".
 * Counting happens only while the window is open; the sizes of "ours" are
 * recorded while recording is on. */
#include "alloc_count.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

static volatile int g_window, g_recording;
static long g_ours, g_all;
static int g_n_rec;
static ac_record g_rec[AC_REC_MAX];

static void count_all(void) {
  if (g_window) __atomic_fetch_add(&g_all, 1, __ATOMIC_RELAXED);
}

static void count_ours(char kind, size_t n_bytes) {
  if (g_window) __atomic_fetch_add(&g_ours, 1, __ATOMIC_RELAXED);
  if (g_recording) {
    const int i = __atomic_fetch_add(&g_n_rec, 1, __ATOMIC_RELAXED);
    if (i < AC_REC_MAX) g_rec[i] = (ac_record){kind, n_bytes};
  }
}

void ac_window(int open) { g_window = open; }
void ac_reset(void) { g_ours = g_all = 0; }
long ac_ours(void) { return __atomic_load_n(&g_ours, __ATOMIC_RELAXED); }
long ac_all(void) { return __atomic_load_n(&g_all, __ATOMIC_RELAXED); }
int ac_process_wide(void) {
#ifdef __GLIBC__
  return 1;
#else
  return 0;
#endif
}

void ac_record_start(void) {
  g_n_rec = 0;
  g_recording = 1;
}

int ac_record_stop(const ac_record **out) {
  g_recording = 0;
  *out = g_rec;
  return g_n_rec < AC_REC_MAX ? g_n_rec : AC_REC_MAX;
}

/* ---- level 1: the wrapped calls of tpdecode and the test ---- */
void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
int __wrap_posix_memalign(void **p, size_t align, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);

void *__wrap_malloc(size_t n) {
  count_ours('m', n);
  return __real_malloc(n);
}
void *__wrap_calloc(size_t k, size_t n) {
  count_ours('c', k * n);
  return __real_calloc(k, n);
}
void *__wrap_realloc(void *p, size_t n) {
  count_ours('r', n);
  return __real_realloc(p, n);
}
int __wrap_posix_memalign(void **p, size_t align, size_t n) {
  count_ours('a', n);
  return __real_posix_memalign(p, align, n);
}
void *__wrap_aligned_alloc(size_t align, size_t n) {
  count_ours('a', n);
  return __real_aligned_alloc(align, n);
}

/* ---- level 2: the process (glibc) ---- */
#ifdef __GLIBC__
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t k, size_t n);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
void *memalign(size_t align, size_t n);

void *malloc(size_t n) {
  count_all();
  return __libc_malloc(n);
}
void *calloc(size_t k, size_t n) {
  count_all();
  return __libc_calloc(k, n);
}
void *realloc(void *p, size_t n) {
  count_all();
  return __libc_realloc(p, n);
}
int posix_memalign(void **p, size_t align, size_t n) {
  count_all();
  if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
  void *q = __libc_memalign(align, n);
  if (!q) return ENOMEM;
  *p = q;
  return 0;
}
void *aligned_alloc(size_t align, size_t n) {
  count_all();
  return __libc_memalign(align, n);
}
void *memalign(size_t align, size_t n) {
  count_all();
  return __libc_memalign(align, n);
}
#endif
