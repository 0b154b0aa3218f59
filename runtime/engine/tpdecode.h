/* tpdecode public C API: tensor-parallel LLM decode.
 *
 * One process per rank.  Every rank creates the engine with the same options
 * and calls the same functions in the same order with the same arguments;
 * results (sampled tokens, gathered logits) are identical on all ranks.
 *
 *   tpd_comm *comm;   tpd_comm_create_default(&argc, &argv, &comm);
 *   tpd_engine *e;    tpd_engine_create(&opts, comm, &e);
 *   int slot;         tpd_engine_seq_open(e, &slot);
 *   tpd_step_item it = {.slot = slot, .n_tokens = n, .tokens = prompt};
 *   int32_t next;     tpd_engine_step(e, &it, 1, &next, NULL);   // prefill
 *   it.n_tokens = 1; it.tokens = &next;  tpd_engine_step(...)     // decode
 *
 * Sequences may join and leave between steps (continuous batching): a step
 * takes any set of open slots, each with one or more new tokens. */
#ifndef TPDECODE_H
#define TPDECODE_H

#include <stdint.h>

#include "comm/comm.h"
#include "runtime/model/config.h"
#include "runtime/engine/sampler.h"
#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, "MAJOR.MINOR.PATCH" (CMake's PROJECT_VERSION; the
 * shared library's SONAME carries MAJOR).  Static storage; never NULL. */
const char *tpd_version(void);

typedef struct tpd_engine tpd_engine;

typedef struct {
  const char *model_dir;  /* config.json + model.safetensors[.index.json] */
  const char *backend;    /* "cpu" (default) or "cuda" */
  int n_threads;          /* CPU threads per rank; 0: cores on the node / ranks on the node */
  int max_ctx;            /* tokens per sequence; 0: min(max_position_embeddings, 4096) */
  int max_seqs;           /* concurrent sequences; 0: 1 */
  int max_step_tokens;    /* tokens per forward (longer prefills are chunked); 0: 512 */
  int kv_block_size;      /* tokens per KV block; 0: 16 */
  int kv_blocks;          /* KV pool size in blocks; 0: enough for max_seqs full contexts */
  int device;             /* CUDA device; -1: node-local rank */
  const char *activations; /* NULL/"auto": backend default (cpu f32, cuda bf16); "f32"; "bf16".  f32 on
                            * cuda reproduces the f32 reference (docs/cuda.md, "Numerics policy"); an
                            * unknown value, or bf16 on cpu, is an error naming it */
} tpd_engine_opts;

typedef struct {
  int slot;               /* from tpd_engine_seq_open */
  int n_tokens;           /* new tokens (a prompt, or 1 in decode) */
  const int32_t *tokens;  /* host [n_tokens] */
  tpd_sampling sampling;  /* zero: greedy */
  uint64_t stream;        /* random stream of this sequence (e.g. its index) */
} tpd_step_item;

typedef struct {
  double weight_bytes;       /* weights held by this rank */
  double kv_bytes_per_token; /* KV bytes per cached token on this rank (K and V, all layers) */
  double embed_row_bytes;    /* bytes read from the embedding per input token */
  tpd_dtype weight_dtype;    /* dtype the projections are stored in */
  tpd_dtype act_dtype;       /* activations (and all-reduce messages) */
  int tp;
  const char *backend;
  const char *kernels;       /* e.g. "avx512bf16" */
  int n_threads;
  /* the rest of this rank's memory plan, fixed at create (docs/architecture.md, "Memory plan") */
  double kv_bytes;           /* KV cache (backend memory) */
  double act_bytes;          /* step buffers: activations, logits, step metadata (backend memory) */
  double workspace_bytes;    /* the backend's kernel workspaces */
  double host_bytes;         /* host step buffers, sampler scratch, KV bookkeeping */
} tpd_engine_info;

tpd_status tpd_engine_create(const tpd_engine_opts *opts, tpd_comm *comm, tpd_engine **out);
void tpd_engine_destroy(tpd_engine *e);

const tpd_model_config *tpd_engine_config(const tpd_engine *e);
void tpd_engine_get_info(const tpd_engine *e, tpd_engine_info *info);
tpd_comm *tpd_engine_comm(const tpd_engine *e);

tpd_status tpd_engine_seq_open(tpd_engine *e, int *slot);
void tpd_engine_seq_close(tpd_engine *e, int slot);
int tpd_engine_seq_len(const tpd_engine *e, int slot);
int tpd_engine_max_ctx(const tpd_engine *e);

/* Tunables of a running engine (same value on every rank).
 *   OVERLAP         micro-batch ping-pong (batch >= 2) and chunked all-reduce
 *                   (batch 1); default off, NCCL included, until a GPU measures
 *                   that it pays (env TPD_OVERLAP)
 *   AR_CHUNKS       chunks of a single row's row-parallel output, used only
 *                   with OVERLAP (TPD_AR_CHUNKS, default 1)
 *   GRAPHS          capture decode steps as device graphs (TPD_GRAPHS, 1)
 * Changing OVERLAP or AR_CHUNKS drops the captured decode graphs; the next
 * decode step captures them again.  (Benchmark-only options and hooks are in
 * runtime/engine/bench_hooks.h, not part of this API.) */
typedef enum { TPD_OPT_OVERLAP = 1, TPD_OPT_AR_CHUNKS, TPD_OPT_GRAPHS } tpd_engine_option;
tpd_status tpd_engine_set_option(tpd_engine *e, tpd_engine_option opt, int value);
int tpd_engine_get_option(const tpd_engine *e, tpd_engine_option opt);

/* Appends each item's tokens to its sequence and returns, per item, the next
 * token sampled from the logits after its last token.  out_logits, when not
 * NULL, receives the full-vocabulary logits [n_items, vocab] (gathered from
 * every rank; costs an all-gather, so pass NULL in production). */
tpd_status tpd_engine_step(tpd_engine *e, const tpd_step_item *items, int n_items, int32_t *out_tokens,
                           float *out_logits);

#ifdef __cplusplus
}
#endif
#endif
