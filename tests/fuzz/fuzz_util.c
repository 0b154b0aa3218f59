/* Helpers of the fuzz targets (see fuzz_util.h). */
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef TPD_FUZZ_DATA
#error "TPD_FUZZ_DATA (the path of tests/fuzz/data) must be defined"
#endif

char *fz_cstr(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  FZ_CHECK(s != NULL, "out of memory");
  if (size) memcpy(s, data, size);
  s[size] = 0;
  return s;
}

const char *fz_scratch_dir(void) {
  static char dir[256];
  if (!dir[0]) {
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(dir, sizeof dir, "%s/tpd-fuzz-XXXXXX", base);
    FZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
  }
  return dir;
}

void fz_write(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  FZ_CHECK(f != NULL, "cannot create %s: %s", path, strerror(errno));
  FZ_CHECK(size == 0 || fwrite(data, 1, size, f) == size, "cannot write %s", path);
  FZ_CHECK(fclose(f) == 0, "cannot close %s", path);
}

const char *fz_data_path(const char *name) {
  static char path[4096];
  snprintf(path, sizeof path, "%s/%s", TPD_FUZZ_DATA, name);
  return path;
}

char *fz_data_file(const char *name, size_t *size) {
  const char *path = fz_data_path(name);
  FILE *f = fopen(path, "rb");
  FZ_CHECK(f != NULL, "cannot open %s: %s", path, strerror(errno));
  FZ_CHECK(fseek(f, 0, SEEK_END) == 0, "seek %s", path);
  long n = ftell(f);
  FZ_CHECK(n >= 0, "size of %s", path);
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  FZ_CHECK(buf != NULL, "out of memory");
  FZ_CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n, "read %s", path);
  fclose(f);
  buf[n] = 0;
  if (size) *size = (size_t)n;
  return buf;
}

void fz_check_error(tpd_status st) {
  FZ_CHECK(st != TPD_OK, "expected a failure");
  const char *m = tpd_last_error();
  FZ_CHECK(m && m[0], "failure (%s) without a message", tpd_status_name(st));
  FZ_CHECK(strchr(m, '\n') == NULL, "the message is more than one line: %s", m);
}

static void quiet_sink(void *user, tpd_log_level lvl, const char *line) {
  (void)user;
  (void)lvl;
  (void)line;
}

void fz_quiet(void) {
  static int done;
  if (!done) {
    tpd_log_set_sink(quiet_sink, NULL);
    done = 1;
  }
}
