/* Token sampling: greedy, temperature, top-k, top-p (applied in that order,
 * as Hugging Face does), with a counter-based random stream so a token
 * depends only on (seed, sequence index, position) and the logits: the same
 * seed gives the same tokens at every TP degree and in any batch.
 *
 * Exactly what is drawn from, with P = softmax(logits / T):
 *   greedy   the first maximum (the lowest id among equal logits);
 *   top-k    every token whose logit is at least the k-th largest (equal
 *            logits at the boundary are all kept, so more than k may remain);
 *   top-p    over the top-k survivors in descending P, a token belongs to the
 *            nucleus when the mass of the tokens before it is below p: the
 *            most likely token always does, and tokens tied with the last
 *            member are members too;
 * then one token from the renormalised P over what remains.  A NaN or +inf
 * logit is an error; -inf logits are never drawn (all -inf is an error). */
#ifndef TPD_SAMPLER_H
#define TPD_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  float temperature; /* <= 0: greedy; NaN: error */
  int top_k;         /* <= 0 or >= V: off; 1: greedy */
  float top_p;       /* 0 (the zero default) or >= 1: off; NaN or < 0: error */
  uint64_t seed;
} tpd_sampling;

static inline int tpd_sampling_is_greedy(const tpd_sampling *s) {
  return !s || s->temperature <= 0.0f || s->top_k == 1;
}

/* Uniform double in [0, 1) from (seed, stream, counter). */
double tpd_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter);

/* Scratch of tpd_sample for temperature sampling (greedy needs none).  A
 * zeroed struct grows on demand (freed by tpd_sampler_scratch_free); one
 * attached to caller memory (tpd_sampler_scratch_attach, as the engine does
 * in its host arena) never allocates, and a vocabulary larger than it was
 * sized for is an error. */
typedef struct {
  int32_t *idx, *idx2; /* [cap] candidates; merge buffer of the top-p sort */
  double *prob;        /* [cap] */
  float *tmp;          /* [cap] top-k selection */
  int cap;
  int fixed; /* 1: caller memory, never grown or freed here */
} tpd_sampler_scratch;

/* Bytes of scratch for vocabularies of up to V tokens. */
size_t tpd_sampler_scratch_bytes(int V);
/* Places the scratch in mem (tpd_sampler_scratch_bytes(V) bytes, 8-byte
 * aligned, owned by the caller). */
void tpd_sampler_scratch_attach(tpd_sampler_scratch *s, void *mem, int V);
void tpd_sampler_scratch_free(tpd_sampler_scratch *s);

/* Samples one token from logits[V]. */
tpd_status tpd_sample(const float *logits, int V, const tpd_sampling *s, uint64_t stream, uint64_t counter,
                      tpd_sampler_scratch *scratch, int32_t *token);

#ifdef __cplusplus
}
#endif
#endif
