/* Shared by the libFuzzer targets of tests/fuzz/ (one LLVMFuzzerTestOneInput
 * per target file).  The same files build with gcc into the regression
 * driver (regress_main.c), so nothing here depends on clang.
 *
 * A target fails (abort(), which libFuzzer and ctest both see) when a parser
 * breaks a promise of its header: an error message that is empty or more
 * than one line, a success whose result is out of range.  The sanitizers
 * (in the libFuzzer build) catch the memory and undefined-behaviour errors. */
#ifndef TPD_FUZZ_UTIL_H
#define TPD_FUZZ_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond, ...)                                                      \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                              \
      fprintf(stderr, "\n");                                                     \
      abort();                                                                   \
    }                                                                            \
  } while (0)

/* The input as a NUL-terminated string (malloc'd; embedded NULs kept). */
char *fz_cstr(const uint8_t *data, size_t size);
/* A scratch folder for this process (tmpfs when /dev/shm exists), created
 * once; path valid for the process's life. */
const char *fz_scratch_dir(void);
/* Writes bytes to path (whole file); aborts on I/O failure (not the input's fault). */
void fz_write(const char *path, const void *data, size_t size);
/* Reads a file of tests/fuzz/data/ (malloc'd, NUL-terminated); aborts if missing. */
char *fz_data_file(const char *name, size_t *size);
/* The path of a file of tests/fuzz/data/ (static buffer). */
const char *fz_data_path(const char *name);
/* After a failed call: the status is an error and the message is one non-empty line. */
void fz_check_error(tpd_status st);
/* Silences the library's log (warnings on odd input) once. */
void fz_quiet(void);
#endif
