/* Energy readers (runtime/energy.c) on fake powercap trees and a missing
 * NVML library: present -> joules (wraps undone), absent -> not available
 * with a reason. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "runtime/energy.h"

static char root[256];

static void put(const char *rel, const char *text) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", root, rel);
  FILE *f = fopen(p, "w");
  if (!f) {
    fprintf(stderr, "cannot write %s\n", p);
    exit(1);
  }
  fputs(text, f);
  fclose(f);
}

static void dir(const char *rel) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", root, rel);
  mkdir(p, 0755);
}

static void absent(void) {
  tpd_energy *m = NULL;
  CHECK(tpd_energy_open_rapl("/nonexistent/powercap", &m) == TPD_OK);
  CHECK(m && !tpd_energy_available(m));
  CHECK(strstr(tpd_energy_reason(m), "RAPL: /nonexistent/powercap not present") != NULL);
  CHECK(strcmp(tpd_energy_source(m), "") == 0);
  double j = -1;
  CHECK(tpd_energy_read(m, &j) == TPD_ERR_UNSUPPORTED);
  CHECK(j == 0);
  tpd_energy_close(m);
  tpd_clear_error();

  /* a powercap directory without RAPL package domains */
  dir("empty");
  char p[512];
  snprintf(p, sizeof p, "%s/empty", root);
  CHECK(tpd_energy_open_rapl(p, &m) == TPD_OK);
  CHECK(!tpd_energy_available(m));
  CHECK(strstr(tpd_energy_reason(m), "no intel-rapl:N package domains") != NULL);
  tpd_energy_close(m);

  /* a domain whose counter is missing */
  dir("broken");
  dir("broken/intel-rapl:0");
  snprintf(p, sizeof p, "%s/broken", root);
  CHECK(tpd_energy_open_rapl(p, &m) == TPD_OK);
  CHECK(!tpd_energy_available(m));
  CHECK(strstr(tpd_energy_reason(m), "RAPL: cannot read") != NULL);
  CHECK(strstr(tpd_energy_reason(m), "energy_uj") != NULL);
  tpd_energy_close(m);

  /* NVML: a library that is not there */
  CHECK(tpd_energy_open_nvml("/nonexistent/libnvidia-ml.so.1", 0, &m) == TPD_OK);
  CHECK(!tpd_energy_available(m));
  CHECK(strncmp(tpd_energy_reason(m), "NVML: cannot load /nonexistent/libnvidia-ml.so.1", 48) == 0);
  CHECK(tpd_energy_read(m, &j) == TPD_ERR_UNSUPPORTED);
  tpd_energy_close(m);
  tpd_clear_error();

  /* the real library, wherever this runs: either a working counter or a reason */
  CHECK(tpd_energy_open_nvml(NULL, 0, &m) == TPD_OK);
  if (tpd_energy_available(m)) {
    CHECK(tpd_energy_read(m, &j) == TPD_OK && j >= 0);
  } else {
    CHECK(strncmp(tpd_energy_reason(m), "NVML: ", 6) == 0);
  }
  tpd_energy_close(m);
}

static void present(void) {
  dir("pc");
  dir("pc/intel-rapl:0");
  dir("pc/intel-rapl:0:0"); /* a sub-domain: part of package 0, not added again */
  dir("pc/intel-rapl:1");
  put("pc/intel-rapl:0/energy_uj", "1000000\n");
  put("pc/intel-rapl:0/max_energy_range_uj", "2000000\n");
  put("pc/intel-rapl:0:0/energy_uj", "777\n");
  put("pc/intel-rapl:1/energy_uj", "500\n");
  put("pc/intel-rapl:1/max_energy_range_uj", "262143328850\n");
  char p[512];
  snprintf(p, sizeof p, "%s/pc", root);
  /* through the environment variable, as the bench would find it */
  setenv("TPD_POWERCAP_ROOT", p, 1);
  tpd_energy *m = NULL;
  CHECK(tpd_energy_open_rapl(NULL, &m) == TPD_OK);
  unsetenv("TPD_POWERCAP_ROOT");
  CHECK(tpd_energy_available(m));
  CHECK(strcmp(tpd_energy_reason(m), "") == 0);
  CHECK(strcmp(tpd_energy_source(m), "RAPL package energy (2 domains)") == 0);
  double j = -1;
  CHECK(tpd_energy_read(m, &j) == TPD_OK && j == 0);
  /* +0.5 J on package 0, +0.001 J on package 1; the sub-domain's change is ignored */
  put("pc/intel-rapl:0/energy_uj", "1500000\n");
  put("pc/intel-rapl:0:0/energy_uj", "999999\n");
  put("pc/intel-rapl:1/energy_uj", "1500\n");
  CHECK(tpd_energy_read(m, &j) == TPD_OK);
  CHECK(fabs(j - 0.501) < 1e-12);
  /* package 0 wraps: 1500000 -> 2000000 (range) -> 100000 is +0.6 J */
  put("pc/intel-rapl:0/energy_uj", "100000\n");
  CHECK(tpd_energy_read(m, &j) == TPD_OK);
  CHECK(fabs(j - 1.101) < 1e-12);
  /* a counter that disappears mid-run is an I/O error, not a silent zero */
  char f[600];
  snprintf(f, sizeof f, "%s/pc/intel-rapl:1/energy_uj", root);
  unlink(f);
  CHECK(tpd_energy_read(m, &j) == TPD_ERR_IO);
  tpd_clear_error();
  tpd_energy_close(m);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/tpd-energy-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  absent();
  present();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
  if (tu_failures) {
    fprintf(stderr, "test_energy: %d check(s) failed\n", tu_failures);
    return 1;
  }
  printf("test_energy: ok\n");
  return 0;
}
