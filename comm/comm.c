/* Helpers shared by every communicator (which one a program uses: comm_select.c). */
#include <math.h>
#include <stdlib.h>

#include "comm/comm.h"

/* TPD_<name> as seconds: unset = dflt; otherwise a finite number >= 0. */
static tpd_status seconds_param(const char *name, double dflt, double *out) {
  const char *s = tpd_param_str(name, NULL);
  *out = dflt;
  if (!s) return TPD_OK;
  char *end = NULL;
  const double v = strtod(s, &end);
  if (end == s || *end || !isfinite(v) || v < 0)
    return TPD_FAIL(TPD_ERR_ARG, "TPD_%s=%s: expected a number of seconds >= 0 (0 turns the watchdog off)", name, s);
  *out = v;
  return TPD_OK;
}

tpd_status tpd_comm_check_peers(tpd_comm *c) {
  if (!c) return TPD_FAIL(TPD_ERR_ARG, "tpd_comm_check_peers: comm is NULL");
  return c->ops->check_peers ? c->ops->check_peers(c) : TPD_OK;
}

tpd_status tpd_comm_timeouts(double *wait_s, double *load_s) {
  TPD_TRY(seconds_param("COMM_TIMEOUT", 60.0, wait_s));
  TPD_TRY(seconds_param("COMM_LOAD_TIMEOUT", 600.0, load_s));
  if (*wait_s == 0) *load_s = 0; /* off is off */
  else if (*load_s > 0 && *load_s < *wait_s) *load_s = *wait_s;
  return TPD_OK;
}

void tpd_comm_destroy(tpd_comm *c) {
  if (c) c->ops->destroy(c);
}

tpd_status tpd_comm_agree(tpd_comm *c, int ok, int *first_failed) {
  *first_failed = -1;
  if (c->size == 1) {
    if (!ok) *first_failed = 0;
    return TPD_OK;
  }
  int *all = malloc(sizeof(int) * (size_t)c->size);
  if (!all) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  int mine = ok ? 1 : 0;
  /* a rank that failed holds the message of its failure: should the
   * agreement fail too (a peer died), that message is still the one to
   * report, so it is kept and the communication failure only logged */
  tpd_error_state own;
  if (!ok) tpd_error_save(&own);
  tpd_status st = c->ops->host_allgather(c, &mine, all, sizeof(int));
  if (st != TPD_OK && !ok && own.has_error) {
    TPD_WARN("could not agree on this rank's failure with the other ranks: %s", tpd_last_error());
    tpd_error_restore(&own);
  }
  if (st == TPD_OK)
    for (int r = 0; r < c->size; r++)
      if (!all[r]) {
        *first_failed = r;
        break;
      }
  free(all);
  return st;
}
