/* The regression driver: a fuzz target built without libFuzzer (any
 * compiler), fed every file named on the command line, or every file of
 * every folder named there.  Exit status 0 when every input ran; a crash or
 * a failed check in the target aborts.  tests/fuzz/CMakeLists.txt runs it
 * on tests/fuzz/regress/<target>/ (inputs that once failed) and the seed
 * corpus tests/fuzz/corpus/<target>/. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz_util.h"

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "fuzz-regress: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, n = 0;
  uint8_t *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  if (!buf) {
    fprintf(stderr, "fuzz-regress: out of memory reading %s\n", path);
    return -1;
  }
  /* an exact-size copy, so that a read past the input is a read past a block */
  uint8_t *exact = malloc(n ? n : 1);
  if (!exact) return -1;
  memcpy(exact, buf, n);
  free(buf);
  LLVMFuzzerTestOneInput(exact, n);
  free(exact);
  return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
  int n_inputs = 0;
  for (int i = 1; i < argc; i++) {
    struct stat sb;
    if (stat(argv[i], &sb) != 0) {
      fprintf(stderr, "fuzz-regress: %s: %s\n", argv[i], strerror(errno));
      return 1;
    }
    if (!S_ISDIR(sb.st_mode)) {
      if (run_file(argv[i])) return 1;
      n_inputs++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (!d) {
      fprintf(stderr, "fuzz-regress: cannot list %s: %s\n", argv[i], strerror(errno));
      return 1;
    }
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      if (n == cap) names = realloc(names, sizeof *names * (size_t)(cap = cap ? 2 * cap : 64));
      names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int k = 0; k < n; k++) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], names[k]);
      fprintf(stderr, "fuzz-regress: %s\n", path);
      if (run_file(path)) return 1;
      n_inputs++;
      free(names[k]);
    }
    free(names);
  }
  printf("fuzz-regress: %d inputs ran without a failure\n", n_inputs);
  return n_inputs > 0 ? 0 : 1;
}
