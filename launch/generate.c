#include "launch/generate.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/base/timer.h"

void tpd_gen_result_free(tpd_gen_result *r) {
  if (r->tokens)
    for (int i = 0; i < r->n_seqs; i++) free(r->tokens[i]);
  free(r->tokens);
  free(r->n_tokens);
  free(r->last_logits);
  free(r->step_logits);
  free(r->step_ms);
  memset(r, 0, sizeof *r);
}

static int is_eos(const tpd_model_config *c, int32_t t) {
  for (int i = 0; i < c->n_eos; i++)
    if (c->eos_ids[i] == t) return 1;
  return 0;
}

tpd_status tpd_generate(tpd_engine *e, const tpd_gen_request *q, tpd_gen_result *r) {
  memset(r, 0, sizeof *r);
  const tpd_model_config *c = tpd_engine_config(e);
  const int B = q->n_seqs, V = c->vocab;
  if (B < 1) return TPD_FAIL(TPD_ERR_ARG, "no prompts");
  if (q->n_new < 1) return TPD_FAIL(TPD_ERR_ARG, "number of tokens to generate must be at least 1");
  for (int i = 0; i < B; i++) {
    if (q->prompt_lens[i] < 1) return TPD_FAIL(TPD_ERR_ARG, "prompt %d is empty", i);
    if (q->prompt_lens[i] + q->n_new - 1 > tpd_engine_max_ctx(e))
      return TPD_FAIL(TPD_ERR_ARG, "prompt %d: %d prompt tokens + %d new exceed the context of %d tokens", i,
                      q->prompt_lens[i], q->n_new, tpd_engine_max_ctx(e));
  }
  const int want_logits = q->keep_logits || q->logits_steps > 0;
  r->n_seqs = B;
  r->tokens = calloc((size_t)B, sizeof *r->tokens);
  r->n_tokens = calloc((size_t)B, sizeof *r->n_tokens);
  r->step_ms = calloc((size_t)q->n_new, sizeof *r->step_ms);
  int *slot = malloc(sizeof *slot * (size_t)B);
  int *active = malloc(sizeof *active * (size_t)B);
  tpd_step_item *items = calloc((size_t)B, sizeof *items);
  int32_t *next = calloc((size_t)B, sizeof *next);
  int32_t *out = calloc((size_t)B, sizeof *out);
  float *logits = want_logits ? malloc(sizeof(float) * (size_t)B * V) : NULL;
  if (q->keep_logits) r->last_logits = calloc((size_t)B * V, sizeof(float));
  if (q->logits_steps > 0) r->step_logits = calloc((size_t)q->logits_steps * B * V, sizeof(float));
  tpd_status s = TPD_OK;
  if (!r->tokens || !r->n_tokens || !r->step_ms || !slot || !active || !items || !next || !out ||
      (want_logits && !logits) || (q->keep_logits && !r->last_logits) || (q->logits_steps > 0 && !r->step_logits)) {
    s = TPD_FAIL(TPD_ERR_OOM, "out of memory");
    goto done;
  }
  for (int i = 0; i < B; i++) slot[i] = -1;
  for (int i = 0; i < B; i++) {
    r->tokens[i] = malloc(sizeof(int32_t) * (size_t)q->n_new);
    if (!r->tokens[i]) {
      s = TPD_FAIL(TPD_ERR_OOM, "out of memory");
      goto done;
    }
    TPD_TRY_GOTO(tpd_engine_seq_open(e, &slot[i]), s, done);
    active[i] = 1;
  }
  for (int step = 0; step < q->n_new; step++) {
    int n = 0;
    for (int i = 0; i < B; i++) {
      if (!active[i]) continue;
      items[n].slot = slot[i];
      items[n].tokens = step == 0 ? q->prompts[i] : &next[i];
      items[n].n_tokens = step == 0 ? q->prompt_lens[i] : 1;
      items[n].sampling = q->sampling;
      items[n].stream = (uint64_t)i;
      n++;
    }
    if (n == 0) break;
    const double t0 = tpd_now_ms();
    TPD_TRY_GOTO(tpd_engine_step(e, items, n, out, logits), s, done);
    const double dt = tpd_now_ms() - t0;
    if (step == 0) r->prefill_ms = dt;
    else r->step_ms[r->n_steps++] = dt;
    for (int i = 0, k = 0; i < B; i++) {
      if (!active[i]) continue;
      next[i] = out[k];
      r->tokens[i][r->n_tokens[i]++] = out[k];
      if (q->keep_logits) memcpy(r->last_logits + (size_t)i * V, logits + (size_t)k * V, sizeof(float) * (size_t)V);
      if (step < q->logits_steps)
        memcpy(r->step_logits + ((size_t)step * B + i) * V, logits + (size_t)k * V, sizeof(float) * (size_t)V);
      if (q->stop_at_eos && is_eos(c, out[k])) active[i] = 0;
      if (q->on_token) q->on_token(q->on_token_ctx, i, out[k]);
      k++;
    }
  }
done:
  /* the first failure's message is what the caller prints: closing slots of
   * an engine a failure left unusable would only replace it */
  if (slot && tpd_engine_usable(e)) {
    tpd_error_state first;
    tpd_error_save(&first);
    for (int i = 0; i < B; i++)
      if (slot[i] >= 0) tpd_engine_seq_close(e, slot[i]);
    if (s != TPD_OK) tpd_error_restore(&first);
  }
  free(slot);
  free(active);
  free(items);
  free(next);
  free(out);
  free(logits);
  if (s != TPD_OK) tpd_gen_result_free(r);
  return s;
}
