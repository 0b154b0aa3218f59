/* Batch generation on top of tpd_engine_step: prefill every prompt in one
 * step, then decode one token per sequence per step.  A helper of the
 * programs (part of tpd_cli, not of libtpdecode); the CLI and the tests use
 * it. */
#ifndef TPD_GENERATE_H
#define TPD_GENERATE_H

#include "runtime/engine/tpdecode.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int n_seqs;
  const int32_t *const *prompts; /* [n_seqs][prompt_lens[i]] */
  const int *prompt_lens;
  int n_new;                     /* tokens to generate per sequence */
  tpd_sampling sampling;         /* sequence i uses random stream i */
  int stop_at_eos;
  int keep_logits;               /* keep each sequence's logits of its last step */
  int logits_steps;              /* > 0: also keep the first logits_steps steps' logits */
  /* optional: told each new token as its step ends (every rank, in
   * sequence order; outside the timed step), e.g. to stream text */
  void (*on_token)(void *ctx, int seq, int32_t token);
  void *on_token_ctx;
} tpd_gen_request;

typedef struct {
  int n_seqs;
  int32_t **tokens;   /* [n_seqs][n_tokens[i]] generated ids */
  int *n_tokens;
  float *last_logits; /* [n_seqs, vocab] when keep_logits */
  float *step_logits; /* [logits_steps, n_seqs, vocab] when logits_steps > 0 */
  double prefill_ms;  /* the prefill step (produces the first token) */
  double *step_ms;    /* each decode step */
  int n_steps;
} tpd_gen_result;

tpd_status tpd_generate(tpd_engine *e, const tpd_gen_request *req, tpd_gen_result *res);
void tpd_gen_result_free(tpd_gen_result *res);

#ifdef __cplusplus
}
#endif
#endif
