/* Energy readers (launch/tools/energy.c) on fake powercap trees and a missing
 * NVML library: present -> joules (wraps undone), absent -> not available
 * with a reason; and on this machine as it is: the meter's verdict and its
 * reason must be the ones the test finds by looking at /sys/class/powercap
 * and at the NVML library itself. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "launch/tools/energy.h"

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

  /* a root named through the environment that is not there: the reason names it */
  snprintf(p, sizeof p, "%s/no-such-powercap", root);
  setenv("TPD_POWERCAP_ROOT", p, 1);
  CHECK(tpd_energy_open_rapl(NULL, &m) == TPD_OK);
  unsetenv("TPD_POWERCAP_ROOT");
  char want[700];
  snprintf(want, sizeof want, "RAPL: %s not present", p);
  CHECK(!tpd_energy_available(m) && !strcmp(tpd_energy_reason(m), want), "'%s'", tpd_energy_reason(m));
  tpd_energy_close(m);

  /* a counter only root may read (kernels since 5.10): the reason says so */
  dir("locked");
  dir("locked/intel-rapl:0");
  put("locked/intel-rapl:0/energy_uj", "123\n");
  char f[600];
  snprintf(f, sizeof f, "%s/locked/intel-rapl:0/energy_uj", root);
  chmod(f, 0);
  FILE *probe = fopen(f, "r");
  if (probe) { /* root reads it anyway: then the meter must be available */
    fclose(probe);
    snprintf(p, sizeof p, "%s/locked", root);
    CHECK(tpd_energy_open_rapl(p, &m) == TPD_OK && tpd_energy_available(m), "'%s'", tpd_energy_reason(m));
  } else {
    snprintf(p, sizeof p, "%s/locked", root);
    CHECK(tpd_energy_open_rapl(p, &m) == TPD_OK && !tpd_energy_available(m));
    snprintf(want, sizeof want, "RAPL: cannot read %s: %s (energy_uj is readable by root only on recent kernels)", f,
             strerror(EACCES));
    CHECK(!strcmp(tpd_energy_reason(m), want), "'%s', expected '%s'", tpd_energy_reason(m), want);
  }
  tpd_energy_close(m);
}

/* This machine: work out, without energy.c, what its default RAPL root and
 * NVML library allow, then demand exactly that verdict and reason. */
static void this_machine(void) {
  unsetenv("TPD_POWERCAP_ROOT");
  unsetenv("TPD_NVML_LIB");
  const char *pc = "/sys/class/powercap";
  char want[1200] = "";
  int want_available = 0;
  struct stat sb;
  if (stat(pc, &sb) != 0 && errno == ENOENT) {
    snprintf(want, sizeof want, "RAPL: %s not present", pc);
  } else {
    DIR *d = opendir(pc);
    char first[300] = "";
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
      const char *nm = e->d_name;
      if (strncmp(nm, "intel-rapl:", 11) || !nm[11] || strspn(nm + 11, "0123456789") != strlen(nm + 11)) continue;
      if (!n++ || strcmp(nm, first) < 0) snprintf(first, sizeof first, "%s", nm);
    }
    if (d) closedir(d);
    if (!d) {
      snprintf(want, sizeof want, "RAPL: cannot");
    } else if (!n) {
      snprintf(want, sizeof want, "RAPL: no intel-rapl:N package domains under %s", pc);
    } else {
      /* the first domain in name order is read first: its failure is the reason */
      char path[700];
      snprintf(path, sizeof path, "%s/%s/energy_uj", pc, first);
      FILE *fp = fopen(path, "r");
      unsigned long long v;
      if (!fp) {
        snprintf(want, sizeof want, "RAPL: cannot read %s: %s", path, strerror(errno));
      } else {
        want_available = fscanf(fp, "%llu", &v) == 1;
        if (!want_available) snprintf(want, sizeof want, "RAPL: cannot read %s", path);
        fclose(fp);
      }
    }
  }
  tpd_energy *m = NULL;
  CHECK(tpd_energy_open_rapl(NULL, &m) == TPD_OK);
  printf("test_energy: this machine's RAPL: %s\n", tpd_energy_available(m) ? tpd_energy_source(m) : tpd_energy_reason(m));
  if (want_available) {
    CHECK(tpd_energy_available(m), "%s readable here, yet: '%s'", pc, tpd_energy_reason(m));
    double j = -1;
    CHECK(tpd_energy_read(m, &j) == TPD_OK && j >= 0);
  } else {
    CHECK(!tpd_energy_available(m), "expected not available: %s", want);
    CHECK(!strncmp(tpd_energy_reason(m), want, strlen(want)), "reason '%s', expected '%s'", tpd_energy_reason(m), want);
  }
  tpd_energy_close(m);

  /* NVML: the library under its default name, loaded here first */
  dlerror();
  void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  CHECK(tpd_energy_open_nvml(NULL, 0, &m) == TPD_OK);
  printf("test_energy: this machine's NVML: %s\n", tpd_energy_available(m) ? tpd_energy_source(m) : tpd_energy_reason(m));
  if (!lib) {
    CHECK(!tpd_energy_available(m));
    CHECK(!strncmp(tpd_energy_reason(m), "NVML: cannot load libnvidia-ml.so.1 (", 37), "'%s'", tpd_energy_reason(m));
  } else if (!dlsym(lib, "nvmlDeviceGetTotalEnergyConsumption")) {
    CHECK(!tpd_energy_available(m) && strstr(tpd_energy_reason(m), "lacks nvmlDeviceGetTotalEnergyConsumption"),
          "'%s'", tpd_energy_reason(m));
  } else if (tpd_energy_available(m)) {
    CHECK(!strcmp(tpd_energy_source(m), "NVML total energy (GPU 0)"), "'%s'", tpd_energy_source(m));
    double j = -1;
    CHECK(tpd_energy_read(m, &j) == TPD_OK && j >= 0);
  } else { /* the driver is there; only its own answer says why not */
    CHECK(!strncmp(tpd_energy_reason(m), "NVML: nvmlInit failed: ", 23) ||
              !strncmp(tpd_energy_reason(m), "NVML: GPU 0 has no readable total-energy counter: ", 50),
          "'%s'", tpd_energy_reason(m));
  }
  if (lib) dlclose(lib);
  tpd_energy_close(m);
  tpd_clear_error();
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
  this_machine();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
  return tu_finish("test_energy");
}
