/* Energy counters: RAPL through Linux powercap files, NVML through dlopen. */
#include "launch/tools/energy.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_RAPL 16

typedef enum { KIND_NONE = 0, KIND_RAPL, KIND_NVML } meter_kind;

/* NVML's C types, declared here so that no NVML header is needed:
 * nvmlReturn_t is an int enum (0 = success), nvmlDevice_t an opaque pointer. */
typedef int (*nvml_init_fn)(void);
typedef int (*nvml_shutdown_fn)(void);
typedef int (*nvml_handle_fn)(unsigned int index, void **device);
typedef int (*nvml_energy_fn)(void *device, unsigned long long *millijoules);
typedef const char *(*nvml_errstr_fn)(int result);

struct tpd_energy {
  meter_kind kind;
  char reason[512];
  char source[128];
  /* RAPL */
  int n_domains;
  char path[MAX_RAPL][4400];
  uint64_t range_uj[MAX_RAPL]; /* 0: unknown (a decrease then counts as a reset) */
  uint64_t last_uj[MAX_RAPL];
  double total_uj;
  /* NVML */
  void *dl;
  void *device;
  nvml_shutdown_fn shutdown;
  nvml_energy_fn energy;
  nvml_errstr_fn errstr;
  unsigned long long start_mj;
};

static tpd_energy *meter_new(void) { return calloc(1, sizeof(tpd_energy)); }

static void unavailable(tpd_energy *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void unavailable(tpd_energy *m, const char *fmt, ...) {
  m->kind = KIND_NONE;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m->reason, sizeof m->reason, fmt, ap);
  va_end(ap);
}

/* Reads one unsigned decimal from a sysfs file; 0 on success, else errno. */
static int read_u64(const char *path, uint64_t *out) {
  FILE *f = fopen(path, "r");
  if (!f) return errno ? errno : EIO;
  unsigned long long v = 0;
  const int ok = fscanf(f, "%llu", &v) == 1;
  fclose(f);
  if (!ok) return EINVAL;
  *out = (uint64_t)v;
  return 0;
}

static int is_package_domain(const char *name) {
  /* "intel-rapl:<digits>" exactly; "intel-rapl:0:1" is a sub-domain */
  const char *p = "intel-rapl:";
  if (strncmp(name, p, strlen(p))) return 0;
  const char *d = name + strlen(p);
  if (!*d) return 0;
  for (; *d; d++)
    if (*d < '0' || *d > '9') return 0;
  return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

tpd_status tpd_energy_open_rapl(const char *root, tpd_energy **out) {
  *out = NULL;
  tpd_energy *m = meter_new();
  if (!m) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  *out = m;
  if (!root) root = tpd_param_str("POWERCAP_ROOT", "/sys/class/powercap");
  struct stat sb;
  if (stat(root, &sb) != 0) {
    if (errno == ENOENT) unavailable(m, "RAPL: %s not present", root);
    else unavailable(m, "RAPL: cannot stat %s: %s", root, strerror(errno));
    return TPD_OK;
  }
  DIR *dir = opendir(root);
  if (!dir) {
    unavailable(m, "RAPL: cannot list %s: %s", root, strerror(errno));
    return TPD_OK;
  }
  char names[MAX_RAPL][256];
  int n = 0;
  for (struct dirent *d; (d = readdir(dir)) != NULL;)
    if (is_package_domain(d->d_name) && n < MAX_RAPL) snprintf(names[n++], sizeof names[0], "%s", d->d_name);
  closedir(dir);
  if (n == 0) {
    unavailable(m, "RAPL: no intel-rapl:N package domains under %s", root);
    return TPD_OK;
  }
  qsort(names, (size_t)n, sizeof names[0], cmp_str);
  for (int i = 0; i < n; i++) {
    snprintf(m->path[i], sizeof m->path[i], "%s/%s/energy_uj", root, names[i]);
    const int err = read_u64(m->path[i], &m->last_uj[i]);
    if (err) {
      char why[160];
      snprintf(why, sizeof why, "%s%s", strerror(err),
               err == EACCES || err == EPERM ? " (energy_uj is readable by root only on recent kernels)" : "");
      unavailable(m, "RAPL: cannot read %s: %s", m->path[i], why);
      return TPD_OK;
    }
    char range_path[4400];
    snprintf(range_path, sizeof range_path, "%s/%s/max_energy_range_uj", root, names[i]);
    if (read_u64(range_path, &m->range_uj[i])) m->range_uj[i] = 0;
  }
  m->n_domains = n;
  m->kind = KIND_RAPL;
  snprintf(m->source, sizeof m->source, "RAPL package energy (%d domain%s)", n, n == 1 ? "" : "s");
  return TPD_OK;
}

static tpd_status read_rapl(tpd_energy *m, double *joules) {
  for (int i = 0; i < m->n_domains; i++) {
    uint64_t now = 0;
    const int err = read_u64(m->path[i], &now);
    if (err) return TPD_FAIL(TPD_ERR_IO, "RAPL: cannot read %s: %s", m->path[i], strerror(err));
    uint64_t delta;
    if (now >= m->last_uj[i]) delta = now - m->last_uj[i];
    else if (m->range_uj[i] > m->last_uj[i]) delta = m->range_uj[i] - m->last_uj[i] + now; /* wrapped */
    else delta = now; /* reset with an unknown range */
    m->last_uj[i] = now;
    m->total_uj += (double)delta;
  }
  *joules = m->total_uj * 1e-6;
  return TPD_OK;
}

tpd_status tpd_energy_open_nvml(const char *lib, int device, tpd_energy **out) {
  *out = NULL;
  tpd_energy *m = meter_new();
  if (!m) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  *out = m;
  if (!lib) lib = tpd_param_str("NVML_LIB", "libnvidia-ml.so.1");
  if (device < 0) {
    unavailable(m, "NVML: no GPU index given (device %d)", device);
    return TPD_OK;
  }
  dlerror();
  m->dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!m->dl) {
    const char *e = dlerror();
    unavailable(m, "NVML: cannot load %s (%s)", lib, e ? e : "no NVIDIA driver");
    return TPD_OK;
  }
  nvml_init_fn init = (nvml_init_fn)dlsym(m->dl, "nvmlInit_v2");
  nvml_handle_fn handle = (nvml_handle_fn)dlsym(m->dl, "nvmlDeviceGetHandleByIndex_v2");
  m->shutdown = (nvml_shutdown_fn)dlsym(m->dl, "nvmlShutdown");
  m->energy = (nvml_energy_fn)dlsym(m->dl, "nvmlDeviceGetTotalEnergyConsumption");
  m->errstr = (nvml_errstr_fn)dlsym(m->dl, "nvmlErrorString");
  if (!init || !handle || !m->shutdown || !m->energy) {
    unavailable(m, "NVML: %s lacks %s", lib,
                !m->energy ? "nvmlDeviceGetTotalEnergyConsumption (driver older than Volta support)"
                           : "nvmlInit_v2 / nvmlDeviceGetHandleByIndex_v2 / nvmlShutdown");
    dlclose(m->dl);
    m->dl = NULL;
    return TPD_OK;
  }
  int rc = init();
  if (rc != 0) {
    unavailable(m, "NVML: nvmlInit failed: %s", m->errstr ? m->errstr(rc) : "error");
    dlclose(m->dl);
    m->dl = NULL;
    return TPD_OK;
  }
  rc = handle((unsigned int)device, &m->device);
  if (rc == 0) rc = m->energy(m->device, &m->start_mj);
  if (rc != 0) {
    char why[256];
    snprintf(why, sizeof why, "%s", m->errstr ? m->errstr(rc) : "error");
    unavailable(m, "NVML: GPU %d has no readable total-energy counter: %s", device, why);
    m->shutdown();
    dlclose(m->dl);
    m->dl = NULL;
    return TPD_OK;
  }
  m->kind = KIND_NVML;
  snprintf(m->source, sizeof m->source, "NVML total energy (GPU %d)", device);
  return TPD_OK;
}

static tpd_status read_nvml(tpd_energy *m, double *joules) {
  unsigned long long mj = 0;
  const int rc = m->energy(m->device, &mj);
  if (rc != 0)
    return TPD_FAIL(TPD_ERR_IO, "NVML: nvmlDeviceGetTotalEnergyConsumption failed: %s",
                    m->errstr ? m->errstr(rc) : "error");
  *joules = (double)(mj - m->start_mj) * 1e-3;
  return TPD_OK;
}

int tpd_energy_available(const tpd_energy *m) { return m && m->kind != KIND_NONE; }
const char *tpd_energy_reason(const tpd_energy *m) { return m ? m->reason : "no meter"; }
const char *tpd_energy_source(const tpd_energy *m) { return m ? m->source : ""; }

tpd_status tpd_energy_read(tpd_energy *m, double *joules) {
  *joules = 0;
  if (!tpd_energy_available(m))
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "energy counter not available: %s", tpd_energy_reason(m));
  return m->kind == KIND_RAPL ? read_rapl(m, joules) : read_nvml(m, joules);
}

void tpd_energy_close(tpd_energy *m) {
  if (!m) return;
  if (m->dl) {
    if (m->kind == KIND_NVML && m->shutdown) m->shutdown();
    dlclose(m->dl);
  }
  free(m);
}
