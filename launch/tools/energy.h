/* Energy counters: cumulative joules from RAPL (CPU packages, Linux
 * powercap) or NVML (a GPU's total-energy counter, libnvidia-ml loaded with
 * dlopen, never linked).
 *
 * Opening a meter fails only when memory is short.  A counter that is absent
 * or unreadable gives a meter that is "not available" with a one-line human
 * reason (e.g. "RAPL: /sys/class/powercap not present"); benchmarks report
 * null plus that reason instead of a number. */
#ifndef TPD_ENERGY_H
#define TPD_ENERGY_H

#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tpd_energy tpd_energy;

/* RAPL package domains (<root>/intel-rapl:N/energy_uj, summed; sub-domains
 * intel-rapl:N:M are part of their package and not added again; wraps are
 * undone with max_energy_range_uj).  root NULL: $TPD_POWERCAP_ROOT, else
 * /sys/class/powercap. */
tpd_status tpd_energy_open_rapl(const char *root, tpd_energy **out);

/* NVML total energy of one GPU (NVML index).  lib NULL: $TPD_NVML_LIB, else
 * "libnvidia-ml.so.1". */
tpd_status tpd_energy_open_nvml(const char *lib, int device, tpd_energy **out);

int tpd_energy_available(const tpd_energy *m);
/* Why the meter is not available ("" when it is). */
const char *tpd_energy_reason(const tpd_energy *m);
/* What it measures, e.g. "RAPL package energy (1 domain)" ("" when not available). */
const char *tpd_energy_source(const tpd_energy *m);

/* Joules since the meter was opened.  TPD_ERR_UNSUPPORTED when the meter
 * is not available; TPD_ERR_IO when a counter read fails. */
tpd_status tpd_energy_read(tpd_energy *m, double *joules);

void tpd_energy_close(tpd_energy *m);

#ifdef __cplusplus
}
#endif
#endif
