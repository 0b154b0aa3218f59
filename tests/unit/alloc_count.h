/* Counting heap allocations in a window of a test program (alloc_count.c):
 * "ours" counts the calls made by tpdecode's code and the test (the program
 * is linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,
 * --wrap=posix_memalign,--wrap=aligned_alloc), "all" every allocation in the
 * process, libc's and MPI's included (glibc only; ac_process_wide() says
 * whether it is counted). */
#ifndef TPD_ALLOC_COUNT_H
#define TPD_ALLOC_COUNT_H

#include <stddef.h>

void ac_window(int open); /* count while open */
void ac_reset(void);
long ac_ours(void);
long ac_all(void);
int ac_process_wide(void);

/* The sizes of tpdecode's own allocations while recording (kinds: 'm'alloc,
 * 'c'alloc (k * n), 'r'ealloc, 'a'ligned). */
enum { AC_REC_MAX = 4096 };
typedef struct {
  char kind;
  size_t n_bytes;
} ac_record;
void ac_record_start(void);
int ac_record_stop(const ac_record **out);

#endif
