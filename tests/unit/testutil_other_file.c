/* A second file of test_testutil: a test program may be several files, and
 * their checks and random draws must go to the one set of counters and the
 * one generator of tests/testutil.h (test_two_files). */
#include <stdint.h>

#include "testutil.h"

void other_file_checks(int n);
uint64_t other_file_draw(void);

void other_file_checks(int n) {
  for (int i = 0; i < n; i++) CHECK(i >= 0, "a check in the second file");
}

uint64_t other_file_draw(void) { return tu_next(); }
