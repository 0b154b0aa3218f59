#ifndef TPD_TIMER_H
#define TPD_TIMER_H

#include <time.h>

static inline double tpd_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

#endif
