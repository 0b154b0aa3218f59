#include "runtime/base/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

tpd_status tpd_read_text_file(const char *path, char **out, size_t *n_bytes) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return TPD_FAIL(TPD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  if (fseek(f, 0, SEEK_END) != 0) {
    fclose(f);
    return TPD_FAIL(TPD_ERR_IO, "cannot seek in %s: %s", path, strerror(errno));
  }
  long n = ftell(f);
  rewind(f);
  if (n < 0) {
    fclose(f);
    return TPD_FAIL(TPD_ERR_IO, "cannot size %s", path);
  }
  char *buf = malloc((size_t)n + 1);
  if (!buf) {
    fclose(f);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory reading %s (%ld bytes)", path, n);
  }
  size_t got = fread(buf, 1, (size_t)n, f);
  fclose(f);
  if (got != (size_t)n) {
    free(buf);
    return TPD_FAIL(TPD_ERR_IO, "short read on %s", path);
  }
  buf[n] = 0;
  *out = buf;
  if (n_bytes) *n_bytes = (size_t)n;
  return TPD_OK;
}

tpd_status tpd_write_file(const char *path, const void *data, size_t n_bytes) {
  FILE *f = fopen(path, "wb");
  if (!f) return TPD_FAIL(TPD_ERR_IO, "cannot create %s: %s", path, strerror(errno));
  size_t put = fwrite(data, 1, n_bytes, f);
  int rc = fclose(f);
  if (put != n_bytes || rc != 0) return TPD_FAIL(TPD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
  return TPD_OK;
}

int tpd_path_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

int tpd_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
