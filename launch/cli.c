#include "launch/cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "runtime/engine/tpdecode.h"

int tpd_cli_int(const char *s, long lo, long hi, long *out) {
  if (!s || !*s) return 0;
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return 0;
  *out = v;
  return 1;
}

int tpd_cli_float(const char *s, double lo, double hi, double *out) {
  if (!s || !*s) return 0;
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !isfinite(v) || v < lo || v > hi) return 0;
  *out = v;
  return 1;
}

int tpd_cli_ids(const char *s, int32_t **out, const char **err) {
  *out = NULL;
  int cap = 16, n = 0;
  int32_t *ids = malloc(sizeof *ids * (size_t)cap);
  if (!ids) {
    *err = "out of memory";
    return -1;
  }
  const char *p = s;
  while (*p) {
    char *end = NULL;
    errno = 0;
    /* digits only: strtol alone would take " 1", "+1" and a trailing comma */
    long v = *p >= '0' && *p <= '9' ? strtol(p, &end, 10) : -1;
    if (v < 0 || end == p || errno || v > 0x7fffffff || (*end && *end != ',') || (*end == ',' && !end[1])) {
      free(ids);
      *err = "expected comma-separated non-negative token ids";
      return -1;
    }
    if (n == cap) {
      cap *= 2;
      int32_t *g = realloc(ids, sizeof *ids * (size_t)cap);
      if (!g) {
        free(ids);
        *err = "out of memory";
        return -1;
      }
      ids = g;
    }
    ids[n++] = (int32_t)v;
    p = *end ? end + 1 : end;
  }
  if (n == 0) {
    free(ids);
    *err = "empty list of token ids";
    return -1;
  }
  *out = ids;
  return n;
}

tpd_status tpd_cli_int_opt(const char *opt, const char *v, long lo, long hi, long *out) {
  if (tpd_cli_int(v, lo, hi, out)) return TPD_OK;
  if (hi == LONG_MAX) return TPD_FAIL(TPD_ERR_ARG, "%s '%s': expected an integer >= %ld", opt, v, lo);
  return TPD_FAIL(TPD_ERR_ARG, "%s '%s': expected an integer in [%ld, %ld]", opt, v, lo, hi);
}

tpd_status tpd_cli_dtype_opt(const char *opt, const char *v, const char **out) {
  if (strcmp(v, "auto") && strcmp(v, "f32") && strcmp(v, "bf16"))
    return TPD_FAIL(TPD_ERR_ARG, "%s '%s': expected auto, f32 or bf16", opt, v);
  *out = v;
  return TPD_OK;
}

long tpd_cli_cpu_share(const tpd_comm *comm) {
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const long ranks = comm && comm->local_size > 0 ? comm->local_size : 1;
  const long share = cores > 0 ? cores / ranks : 1;
  return share > 0 ? share : 1;
}

int tpd_cli_threads(const char *prog, const tpd_comm *comm, long requested) {
  const long share = tpd_cli_cpu_share(comm);
  if (requested <= share) return (int)requested;
  if (!comm || comm->local_rank == 0) {
    const long ranks = comm && comm->local_size > 0 ? comm->local_size : 1;
    fprintf(stderr, "%s: warning: --threads %ld is more than the %ld online CPU%s per rank on this node (%ld rank%s); using %ld\n",
            prog, requested, share, share == 1 ? "" : "s", ranks, ranks == 1 ? "" : "s", share);
    fflush(stderr);
  }
  return (int)share;
}

void tpd_cli_version(const char *prog) {
  printf("%s %s (backends: cpu%s; MPI: %s; NCCL: %s)\n", prog, tpd_version(), tpd_backend_available("cuda") ? ", cuda" : "",
#ifdef TPD_HAVE_MPI
         "yes",
#else
         "no",
#endif
#ifdef TPD_HAVE_NCCL
         "yes"
#else
         "no"
#endif
  );
}

static void report(const char *prog, const tpd_comm *comm, int with_rank) {
  const char *msg = tpd_last_error();
  if (!*msg) msg = "failed";
  if (with_rank && comm && comm->size > 1)
    fprintf(stderr, "%s: error (rank %d): %s\n", prog, comm->rank, msg);
  else
    fprintf(stderr, "%s: error: %s\n", prog, msg);
  if (tpd_log_enabled(TPD_LOG_INFO)) fprintf(stderr, "%s: (recorded at %s)\n", prog, tpd_last_error_loc());
  fflush(stderr);
}

_Noreturn void tpd_cli_die(const char *prog, tpd_comm *comm, tpd_status st, int deterministic) {
  (void)st;
  if (!comm || comm->size == 1 || deterministic) {
    if (!comm || comm->rank == 0) report(prog, comm, 0);
    tpd_comm_destroy(comm);
    exit(1);
  }
  report(prog, comm, 1);
  comm->ops->abort(comm, 1);
  exit(1);
}

_Noreturn void tpd_cli_die_agreed(const char *prog, tpd_comm *comm, int first_failed) {
  if (comm->rank == first_failed) report(prog, comm, comm->size > 1 && first_failed != 0);
  tpd_comm_destroy(comm);
  exit(1);
}
