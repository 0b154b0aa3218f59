/* Leader and followers (docs/architecture.md, "Leader and followers").
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

static tpd_status apply_ops(tpd_engine *e, const tpd_plan_view *v) {
  for (int i = 0; i < v->head.n_ops; i++) {
    const tpd_plan_op *o = &v->ops[i];
    switch (o->op) {
      case TPD_PLAN_OP_OPEN: TPD_TRY(tpd_kv_acquire_slot(&e->kv, o->a)); break;
      case TPD_PLAN_OP_CLOSE:
        if (o->a < 0 || o->a >= e->kv.max_slots || !e->kv.in_use[o->a])
          return TPD_FAIL(TPD_ERR_INTERNAL, "plan closes slot %d, which is not open here", o->a);
        tpd_kv_release(&e->kv, o->a);
        break;
      case TPD_PLAN_OP_OPTION: TPD_TRY(tpd_eng_apply_option(e, o->a, o->b)); break;
      default: return TPD_FAIL(TPD_ERR_FORMAT, "plan message: unknown op %d", o->op);
    }
  }
  return TPD_OK;
}

tpd_status tpd_engine_follow(tpd_engine *e) {
  if (!e) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_follow: engine is NULL");
  if (e->mode != TPD_MODE_LEADER) return TPD_FAIL(TPD_ERR_STATE, "tpd_engine_follow: the engine is not in leader mode");
  if (e->comm->rank == 0) return TPD_FAIL(TPD_ERR_STATE, "tpd_engine_follow on rank 0, the leader");
  if (e->unusable || e->shut_down)
    return TPD_FAIL(TPD_ERR_STATE, "tpd_engine_follow: the engine is %s", e->unusable ? "unusable" : "shut down");
  for (;;) {
    tpd_status s = e->comm->ops->host_broadcast(e->comm, e->plan_buf, TPD_PLAN_PREFIX, 0);
    tpd_plan_view v;
    if (s == TPD_OK) s = tpd_plan_decode_head(e->plan_buf, e->max_ops, e->max_seqs, e->T_cap, &v.head);
    const size_t n = s == TPD_OK ? tpd_plan_size(&v.head) : 0;
    if (s == TPD_OK && n > TPD_PLAN_PREFIX)
      s = e->comm->ops->host_broadcast(e->comm, (uint8_t *)e->plan_buf + TPD_PLAN_PREFIX, n - TPD_PLAN_PREFIX, 0);
    if (s == TPD_OK) s = tpd_plan_decode(e->plan_buf, e->max_ops, e->max_seqs, e->T_cap, &v);
    if (s == TPD_OK && v.head.seq != e->plan_seq)
      s = TPD_FAIL(TPD_ERR_FORMAT, "plan %llu arrived, %llu expected", (unsigned long long)v.head.seq,
                   (unsigned long long)e->plan_seq);
    if (s != TPD_OK) { /* the leader and this rank no longer agree on anything */
      e->unusable = 1;
      return s;
    }
    e->plan_seq++;
    if (v.head.kind == TPD_PLAN_SHUTDOWN) {
      e->shut_down = 1;
      return TPD_OK;
    }
    /* a failure here is this rank's: it poisons the forward, so every rank learns it */
    tpd_eng_poison(e, apply_ops(e, &v));
    if (v.head.kind != TPD_PLAN_STEP) {
      if (e->poison != TPD_OK) { /* a SYNC plan has no gather to report in: nothing can be agreed */
        e->unusable = 1;
        return e->poison;
      }
      continue;
    }
    for (int i = 0; i < v.head.n_items; i++) e->part_orig[i] = i;
    s = tpd_eng_run_part(e, v.items, v.head.n_items, v.tokens, e->part_orig, e->h_out, NULL);
    if (s != TPD_OK || (v.head.flags & TPD_PLAN_LAST)) tpd_eng_commit(e, s == TPD_OK);
    if (s != TPD_OK && e->unusable) return s;
  }
}

tpd_status tpd_engine_shutdown(tpd_engine *e) {
  if (!e) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_shutdown: engine is NULL");
  if (e->mode != TPD_MODE_LEADER) return TPD_FAIL(TPD_ERR_STATE, "tpd_engine_shutdown: the engine is not in leader mode");
  if (e->comm->rank != 0) return TPD_FAIL(TPD_ERR_STATE, "tpd_engine_shutdown on follower rank %d", e->comm->rank);
  if (e->shut_down) return TPD_OK;
  if (e->unusable) return TPD_FAIL(TPD_ERR_STATE, "tpd_engine_shutdown: the engine is unusable; the followers have returned");
  e->shut_down = 1;
  e->n_ops = 0; /* the followers' sequences end with them */
  return tpd_eng_send_plan(e, TPD_PLAN_SHUTDOWN, 0, NULL, 0, NULL, 0);
}
