/* An independent float64 reference forward of the Llama family (Hugging
 * Face semantics), written without the runtime's kernels or engine: whole
 * causal pass over the sequence, no KV cache.  It reuses only the config
 * parser and the safetensors reader (both checked separately, and by the
 * conformance pack). */
#ifndef TPD_REF_MODEL_H
#define TPD_REF_MODEL_H

#include "runtime/model/config.h"

typedef struct ref_model ref_model;

int ref_load(const char *dir, ref_model **out); /* 0 on success */
void ref_free(ref_model *m);
const tpd_model_config *ref_config(const ref_model *m);
/* logits[V] after the last of n tokens */
void ref_forward(const ref_model *m, const int *tokens, int n, double *logits);
/* on != 0: K (after rotation) and V rounded to bf16 (nearest even, via
 * float) before attention, as a bf16 KV cache stores them */
void ref_set_kv_bf16(ref_model *m, int on);
/* on != 0: every matmul's input (both rmsnorm outputs, the attention output,
 * the SwiGLU output, the final norm's output) rounded to bf16 the same way,
 * as the CPU's bf16-activation matmuls (activations "bf16") round theirs
 * (they do so only for bf16 weights: this assumes every matmul weight of
 * the checkpoint is bf16) */
void ref_set_act_bf16(ref_model *m, int on);
/* greedy continuation: out[n_new]; -1 from the first step whose logits are
 * not all finite (so a comparison with the engine's ids fails) */
void ref_greedy(const ref_model *m, const int *prompt, int n_prompt, int n_new, int *out, double *last_logits);
/* A near tie for the engine's greedy ids on f32 KV: twice the 1e-4 of max
 * |logit| its logits keep to this reference (test_tp), so a pair of logits
 * closer than that may fall either way. */
#define REF_GREEDY_TIE 2e-4
/* How far id's logit is below the largest, in units of max |logit| (0: the
 * argmax); NaN when a logit is not finite or id is outside [0, V). */
double ref_greedy_gap(const double *logits, int V, int id);
/* The engine's greedy ids got[0 .. n_new) after prompt, checked step by
 * step on the engine's own prefix: each id's reference logit must be within
 * tol x max |logit| of the reference's largest (0 when it is the argmax; a
 * near tie that f32 rounding may break either way is within tol).  Returns
 * the first step that is not (NaN logits and ids out of range are not), or
 * -1; *worst_gap: the largest gap seen, in units of max |logit|. */
int ref_check_greedy(const ref_model *m, const int *prompt, int n_prompt, const int *got, int n_new, double tol,
                     double *worst_gap);

#endif
