/* Helpers shared by every communicator (which one a program uses: comm_select.c). */
#include <stdlib.h>

#include "comm/comm.h"

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
