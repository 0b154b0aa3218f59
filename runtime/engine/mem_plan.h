/* The engine's memory plan: every buffer a step uses, sized once at create
 * from the engine options (max_seqs, max_step_tokens, max_ctx, KV blocks),
 * the shard plan and the backend's dtypes, in one arena per memory space:
 *
 *   step arena  (backend memory, one allocation): activations [T_cap, ...],
 *               LM-head logits and argmax, the rotary table, and on a device
 *               backend the step metadata (positions, slots, block table);
 *   KV arena    (backend memory, one allocation): K and V of every layer;
 *   workspace   (the backend's own, sized once by ops->reserve);
 *   host arena  (host memory, one allocation): embedding staging, token ids,
 *               all-reduce staging, logits gathers, sampler scratch sized for
 *               the vocabulary, and the KV pool's bookkeeping (block table,
 *               free list, per-slot state).
 * The weights are loaded tensor by tensor (the backend chooses their
 * layout); the plan counts them as tpd_engine_info.weight_bytes does.
 * Nothing is allocated on the hot path of a step.  Not part of the public
 * API (docs/architecture.md, "Memory plan"). */
#ifndef TPD_MEM_PLAN_H
#define TPD_MEM_PLAN_H

#include <stddef.h>

#include "runtime/base/error.h"

typedef struct tpd_engine tpd_engine;

typedef struct {
  size_t weight_bytes; /* projections as stored, plus f32 norms and biases */
  size_t kv_bytes;     /* KV arena */
  size_t act_bytes;    /* step arena */
  size_t ws_bytes;     /* backend workspaces */
  size_t host_bytes;   /* host arena */
} tpd_mem_plan;

static inline size_t tpd_mem_plan_total(const tpd_mem_plan *p) {
  return p->weight_bytes + p->kv_bytes + p->act_bytes + p->ws_bytes + p->host_bytes;
}

/* Fills e->mem (e->weight_bytes must hold the counted weights) and prints
 * it at TPD_LOG=info, one line per rank.  Allocates nothing. */
tpd_status tpd_mem_plan_make(tpd_engine *e);
/* Allocates the arenas of e->mem, places every buffer in them, reserves the
 * backend's workspaces, attaches the KV pool and sampler scratch. */
tpd_status tpd_mem_alloc(tpd_engine *e);
/* Frees the arenas (the backend's must still exist). */
void tpd_mem_free(tpd_engine *e);

#endif
