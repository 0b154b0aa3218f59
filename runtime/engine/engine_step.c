/* A step: the caller's items checked, cut into forwards of at most T_cap
 * tokens, each forward run (and, in leader mode, broadcast first as a plan)
 * and agreed across ranks; the sequences' new lengths count only once the
 * whole step has succeeded. */
#include <math.h>
#include <string.h>

#include "runtime/engine/engine_internal.h"

static tpd_status check_items(const tpd_engine *e, const tpd_step_item *items, int n_items) {
  if (!items) return TPD_FAIL(TPD_ERR_ARG, "step: items is NULL");
  if (n_items < 1) return TPD_FAIL(TPD_ERR_ARG, "step with %d sequences (need >= 1)", n_items);
  if (n_items > e->kv.max_slots)
    return TPD_FAIL(TPD_ERR_ARG, "step with %d sequences; the engine holds %d", n_items, e->kv.max_slots);
  for (int i = 0; i < n_items; i++) {
    const tpd_step_item *it = &items[i];
    if (it->slot < 0 || it->slot >= e->kv.max_slots || !e->kv.in_use[it->slot])
      return TPD_FAIL(TPD_ERR_SLOT, "sequence %d: slot %d is not open", i, it->slot);
    for (int j = 0; j < i; j++)
      if (items[j].slot == it->slot) return TPD_FAIL(TPD_ERR_ARG, "slot %d appears twice in one step", it->slot);
    if (it->n_tokens < 1 || !it->tokens)
      return TPD_FAIL(TPD_ERR_ARG, "sequence %d: %d new tokens%s (need >= 1)", i, it->n_tokens,
                      it->tokens ? "" : " and no token array");
    /* compared by subtraction: a huge n_tokens must not wrap the sum */
    if (it->n_tokens > e->kv.max_ctx - e->kv.n_tokens[it->slot])
      return TPD_FAIL(TPD_ERR_TOO_LONG, "sequence %d: %d cached + %d new tokens exceed the context of %d", i,
                      e->kv.n_tokens[it->slot], it->n_tokens, e->kv.max_ctx);
    for (int j = 0; j < it->n_tokens; j++)
      if (it->tokens[j] < 0 || it->tokens[j] >= e->cfg.vocab)
        return TPD_FAIL(TPD_ERR_TOKEN, "sequence %d: token id %d is outside the vocabulary [0, %d)", i, it->tokens[j],
                        e->cfg.vocab);
    const tpd_sampling *s = &it->sampling;
    if (!(s->temperature >= 0) || s->top_k < 0 || !(s->top_p >= 0))
      return TPD_FAIL(TPD_ERR_ARG, "sequence %d: sampling needs temperature >= 0, top_k >= 0, top_p >= 0", i);
    if (it->flags & ~TPD_ITEM_NO_OUTPUT) return TPD_FAIL(TPD_ERR_ARG, "sequence %d: unknown flags 0x%x", i, it->flags);
    if (it->logprobs < 0 || it->logprobs > 1 + TPD_MAX_TOP_LOGPROBS)
      return TPD_FAIL(TPD_ERR_ARG, "sequence %d: logprobs = %d (0: none; 1 + k with k in 0..%d)", i, it->logprobs,
                      TPD_MAX_TOP_LOGPROBS);
  }
  /* all or nothing: the blocks of every item, counted before any is taken */
  long long need = 0;
  for (int i = 0; i < n_items; i++) need += tpd_kv_blocks_needed(&e->kv, items[i].slot, items[i].n_tokens);
  if (need > e->kv.n_free)
    return TPD_FAIL(TPD_ERR_KV_FULL, "KV pool exhausted: the step needs %lld blocks, %d are free", need, e->kv.n_free);
  return TPD_OK;
}

void tpd_eng_commit(tpd_engine *e, int ok) {
  for (int s = 0; s < e->kv.max_slots; s++) {
    if (ok && e->pend_len[s] >= 0 && e->kv.in_use[s]) e->kv.n_tokens[s] = e->pend_len[s];
    e->pend_len[s] = -1;
  }
}

tpd_status tpd_eng_run_part(tpd_engine *e, const tpd_plan_item *items, int n_items, const int32_t *tokens,
                            const int32_t *orig, tpd_step_output *out, float *out_logits) {
  int T = 0, n_last = 0, max_ctx = 0, lp_k = -1, need_full = out_logits != NULL;
  for (int i = 0; i < n_items; i++) {
    const tpd_plan_item *it = &items[i];
    /* the blocks for these tokens (taken in the same order on every rank) */
    const int have = e->pend_len[it->slot] >= 0 ? e->pend_len[it->slot] : e->kv.n_tokens[it->slot];
    if (e->poison == TPD_OK && it->pos != have)
      tpd_eng_poison(e, TPD_FAIL(TPD_ERR_INTERNAL, "plan item for slot %d starts at %d; the sequence holds %d",
                                 it->slot, it->pos, have));
    if (e->poison == TPD_OK)
      tpd_eng_poison(e, tpd_kv_reserve(&e->kv, it->slot, it->pos + it->n_tokens - e->kv.n_tokens[it->slot]));
    for (int j = 0; j < it->n_tokens; j++) {
      e->h_pos[T + j] = it->pos + j;
      e->h_slot[T + j] = it->slot;
    }
    if (tokens != e->h_tok) memcpy(e->h_tok + T, tokens + T, sizeof(int32_t) * (size_t)it->n_tokens);
    T += it->n_tokens;
    if (it->pos + it->n_tokens > max_ctx) max_ctx = it->pos + it->n_tokens;
    if (it->flags & TPD_PLAN_ITEM_OUTPUT) {
      e->h_last_rows[n_last] = T - 1;
      e->h_last_item[n_last] = i;
      n_last++;
      if (it->logprobs > 0 && it->logprobs - 1 > lp_k) lp_k = it->logprobs - 1;
      const tpd_sampling smp = {it->temperature, it->top_k, it->top_p, it->seed};
      if (!tpd_sampling_is_greedy(&smp)) need_full = 1;
    }
  }
  if (n_last == 0) need_full = 0;
  tpd_eng_forward(e, T, e->h_tok, n_last, max_ctx, lp_k);
  const tpd_status s = tpd_eng_finish(e, items, n_last, lp_k, need_full, orig, out, out_logits);
  if (s == TPD_OK)
    for (int i = 0; i < n_items; i++) e->pend_len[items[i].slot] = items[i].pos + items[i].n_tokens;
  return s;
}

static tpd_status step(tpd_engine *e, const tpd_step_item *items, int n_items, tpd_step_output *out,
                       float *out_logits) {
  if (!e) return TPD_FAIL(TPD_ERR_ARG, "step: engine is NULL");
  if (e->unusable) return TPD_FAIL(TPD_ERR_STATE, "step: the engine is unusable after a failure; destroy it");
  const int leader = e->mode == TPD_MODE_LEADER;
  if (leader && e->comm->rank != 0)
    return TPD_FAIL(TPD_ERR_STATE, "step on follower rank %d: followers call tpd_engine_follow", e->comm->rank);
  if (e->shut_down) return TPD_FAIL(TPD_ERR_STATE, "step after tpd_engine_shutdown");
  TPD_TRY(check_items(e, items, n_items));
  for (int i = 0; i < n_items; i++) {
    out[i].token = -1;
    out[i].logprob = NAN;
    out[i].n_top = 0;
  }
  /* forwards of up to T_cap tokens; a long prompt spans several */
  tpd_status s = TPD_OK;
  int item = 0, off = 0;
  while (item < n_items && s == TPD_OK) {
    int T = 0, n = 0;
    while (item < n_items && T < e->T_cap) {
      const tpd_step_item *it = &items[item];
      const int take = it->n_tokens - off < e->T_cap - T ? it->n_tokens - off : e->T_cap - T;
      memcpy(e->h_tok + T, it->tokens + off, sizeof(int32_t) * (size_t)take);
      const int last = off + take == it->n_tokens;
      e->part[n] = (tpd_plan_item){.slot = it->slot, .pos = e->kv.n_tokens[it->slot] + off, .n_tokens = take,
                                   .flags = last && !(it->flags & TPD_ITEM_NO_OUTPUT) ? TPD_PLAN_ITEM_OUTPUT : 0,
                                   .logprobs = it->logprobs, .top_k = it->sampling.top_k,
                                   .temperature = it->sampling.temperature, .top_p = it->sampling.top_p,
                                   .seed = it->sampling.seed, .stream = it->stream};
      e->part_orig[n++] = item;
      T += take;
      off += take;
      if (last) item++, off = 0;
    }
    if (leader) {
      s = tpd_eng_send_plan(e, TPD_PLAN_STEP, item == n_items ? TPD_PLAN_LAST : 0, e->part, n, e->h_tok, T);
      if (s != TPD_OK) {
        e->unusable = 1; /* the followers may be left anywhere */
        break;
      }
    }
    /* tokens travel in h_tok; run_part copies them in place (same buffer) */
    s = tpd_eng_run_part(e, e->part, n, e->h_tok, e->part_orig, out, out_logits);
  }
  tpd_eng_commit(e, s == TPD_OK);
  return s;
}

tpd_status tpd_engine_step_out(tpd_engine *e, const tpd_step_item *items, int n_items, tpd_step_output *out) {
  if (!out) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_step_out: out is NULL");
  return step(e, items, n_items, out, NULL);
}

tpd_status tpd_engine_step(tpd_engine *e, const tpd_step_item *items, int n_items, int32_t *out_tokens,
                           float *out_logits) {
  if (!out_tokens) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_step: out_tokens is NULL");
  if (!e) return TPD_FAIL(TPD_ERR_ARG, "step: engine is NULL");
  /* step() checks n_items (<= max_seqs, the size of h_out) before it writes any output */
  TPD_TRY(step(e, items, n_items, e->h_out, out_logits));
  for (int i = 0; i < n_items; i++) out_tokens[i] = e->h_out[i].token;
  return TPD_OK;
}

/* ---- followers: apply each plan, run its forward (leader.c sends them) ---- */

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
    tpd_comm_idle_next(e->comm); /* the next plan may be a long time coming: no watchdog timeout */
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
