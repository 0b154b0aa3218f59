/* Token sampling: greedy, temperature, top-k, top-p (applied in that order,
 * as Hugging Face does), with a counter-based random stream so a token
 * depends only on (seed, sequence index, position) and the logits: the same
 * seed gives the same tokens at every TP degree and in any batch. */
#ifndef TPD_SAMPLER_H
#define TPD_SAMPLER_H

#include <stdint.h>

#include "runtime/tpd_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  float temperature; /* <= 0: greedy */
  int top_k;         /* <= 0: off */
  float top_p;       /* >= 1: off */
  uint64_t seed;
} tpd_sampling;

static inline int tpd_sampling_is_greedy(const tpd_sampling *s) {
  return !s || s->temperature <= 0.0f || s->top_k == 1;
}

/* Uniform double in [0, 1) from (seed, stream, counter). */
double tpd_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter);

typedef struct {
  int32_t *idx;
  double *prob;
  float *tmp;
  int cap;
} tpd_sampler_scratch;

void tpd_sampler_scratch_free(tpd_sampler_scratch *s);

/* Samples one token from logits[V]. */
tpd_status tpd_sample(const float *logits, int V, const tpd_sampling *s, uint64_t stream, uint64_t counter,
                      tpd_sampler_scratch *scratch, int32_t *token);

#ifdef __cplusplus
}
#endif
#endif
