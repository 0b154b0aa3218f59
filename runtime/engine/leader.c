/* The leader's side of the plans (docs/architecture.md, "Leader and
 * followers"); the followers' loop, tpd_engine_follow, is in engine_step.c
 * beside the forward it runs.
 *
 * The leader (rank 0) keeps a log of the opens, closes and option changes
 * made since its last plan; each forward of a step broadcasts one plan (the
 * log, then the forward's items and tokens; plan_msg.h): one broadcast of
 * TPD_PLAN_PREFIX bytes, and a second one only for a plan that is longer.  Followers apply
 * the log in order, then run the forward; every rank ends the forward in the
 * same record gather (engine_out.c), so a failure on any rank is every
 * rank's.  A log that fills up between steps goes out as a plan of its own
 * (SYNC); shutdown is a plan too. */
#include <string.h>

#include "runtime/engine/engine_internal.h"

int tpd_eng_max_ops(int max_seqs) { return 2 * max_seqs + 16; }

tpd_status tpd_eng_send_plan(tpd_engine *e, int kind, uint32_t flags, const tpd_plan_item *items, int n_items,
                             const int32_t *tokens, int n_tokens) {
  tpd_plan_head h = {.kind = (uint16_t)kind, .flags = flags, .n_ops = e->n_ops, .n_items = n_items,
                     .n_tokens = n_tokens, .seq = e->plan_seq};
  size_t n = 0;
  TPD_TRY(tpd_plan_encode(e->plan_buf, e->plan_cap, e->max_ops, e->max_seqs, e->T_cap, &h, e->ops, items, tokens, &n));
  if (e->plan.tp > 1) { /* the prefix every rank expects, then the rest when there is more */
    TPD_TRY(e->comm->ops->host_broadcast(e->comm, e->plan_buf, TPD_PLAN_PREFIX, 0));
    if (n > TPD_PLAN_PREFIX)
      TPD_TRY(e->comm->ops->host_broadcast(e->comm, (uint8_t *)e->plan_buf + TPD_PLAN_PREFIX, n - TPD_PLAN_PREFIX, 0));
  }
  e->n_ops = 0;
  e->plan_seq++;
  return TPD_OK;
}

tpd_status tpd_eng_push_op(tpd_engine *e, int op, int a, int b) {
  if (e->n_ops == e->max_ops) { /* the log is full: send it on its own */
    const tpd_status s = tpd_eng_send_plan(e, TPD_PLAN_SYNC, 0, NULL, 0, NULL, 0);
    if (s != TPD_OK) {
      e->unusable = 1;
      return s;
    }
  }
  e->ops[e->n_ops++] = (tpd_plan_op){op, a, b};
  return TPD_OK;
}
