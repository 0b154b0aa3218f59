/* tpdecode public C API: tensor-parallel LLM decode.
 *
 * One process per rank.  An engine runs in one of two modes (opts.mode):
 *
 *   SPMD (default): every rank creates the engine with the same options and
 *   calls the same functions in the same order with the same arguments;
 *   results (sampled tokens, gathered logits) are identical on all ranks.
 *
 *   LEADER: rank 0 (the leader) alone calls seq_open / seq_close / step /
 *   set_option / shutdown; every other rank calls tpd_engine_follow(), which
 *   runs what the leader sends until the leader calls tpd_engine_shutdown().
 *   Each leader step broadcasts one compact plan (the opens and closes since
 *   the last step, then the step's items); docs/architecture.md, "Leader and
 *   followers", gives the message.  A server drives the leader only.
 *
 *   tpd_comm *comm;   tpd_comm_create_default(&argc, &argv, &comm);
 *   tpd_engine_opts o; tpd_engine_opts_init(&o); o.model_dir = dir;
 *   tpd_engine *e;    tpd_engine_create(&o, comm, &e);
 *   int slot;         tpd_engine_seq_open(e, &slot);
 *   tpd_step_item it = {.slot = slot, .n_tokens = n, .tokens = prompt};
 *   int32_t next;     tpd_engine_step(e, &it, 1, &next, NULL);   // prefill
 *   it.n_tokens = 1; it.tokens = &next;  tpd_engine_step(...)     // decode
 *
 * Sequences may join and leave between steps (continuous batching): a step
 * takes any set of open slots, each with one or more new tokens.  The
 * scheduler (runtime/engine/tpdecode_sched.h) does that bookkeeping for a server.
 *
 * Statuses (runtime/base/error.h): TPD_ERR_NO_SLOT and TPD_ERR_KV_FULL say
 * "not now" (capacity), TPD_ERR_SLOT, _TOKEN, _TOO_LONG, _ARG, _VERSION say
 * "not this request"; after either kind the engine is unchanged and usable.
 * A failure inside a step on any rank is agreed: every rank returns the same
 * status from that step.  A device, communication, memory or internal
 * failure leaves the engine unusable (tpd_engine_usable() == 0; later calls
 * return TPD_ERR_STATE): destroy it.
 *
 * Threads: an engine is used by one thread at a time (calls on one engine
 * are not synchronised); distinct engines on distinct communicators may run
 * on distinct threads.  With the MPI communicator that thread must be MPI's
 * main thread (MPI_THREAD_FUNNELED).  tpd_last_error() is per thread.  The
 * scheduler's submit and cancel are safe from any thread (sched.h). */
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

typedef enum { TPD_MODE_SPMD = 0, TPD_MODE_LEADER = 1 } tpd_engine_mode;

/* Option structs start with their size and version: a library built with
 * another layout refuses them (TPD_ERR_VERSION) instead of misreading them.
 * Fill them with tpd_engine_opts_init (or TPD_ENGINE_OPTS_INIT in an
 * initializer), then set fields. */
#define TPD_ENGINE_OPTS_VERSION 2
typedef struct {
  uint32_t struct_size;   /* sizeof(tpd_engine_opts) */
  uint32_t version;       /* TPD_ENGINE_OPTS_VERSION */
  const char *model_dir;  /* config.json + model.safetensors[.index.json] */
  const char *backend;    /* "cpu" (default) or "cuda" */
  int n_threads;          /* CPU threads per rank; 0: cores on the node / ranks on the node */
  int max_ctx;            /* tokens per sequence; 0: min(max_position_embeddings, 4096) */
  int max_seqs;           /* concurrent sequences; 0: 1 */
  int max_step_tokens;    /* tokens per forward (longer prefills are chunked); 0: 512 */
  int kv_block_size;      /* tokens per KV block; 0: 16 */
  int kv_blocks;          /* KV pool size in blocks; 0: enough for max_seqs full contexts */
  int device;             /* CUDA device; -1: node-local rank */
  const char *activations; /* NULL/"auto": backend default; "f32"; "bf16".  cuda: the activations' dtype,
                            * auto bf16; f32 reproduces the f32 reference (docs/cuda.md, "Numerics
                            * policy").  cpu: activations stay f32, bf16 rounds bf16 weights' matmul
                            * inputs (needs AVX512-BF16); auto: TPD_CPU_BF16_DOT, else bf16 where the
                            * CPU's vdpbf16ps runs at >= 1.4x its FMA rate (measured), else f32; at
                            * TP > 1 bf16 only where every rank's auto is (docs/architecture.md, "CPU
                            * kernels").  An unknown value is an error */
  int mode;               /* tpd_engine_mode; the same on every rank */
  const char *kv_cache;   /* KV cache dtype (NULL: env TPD_KV_CACHE, else auto); "auto": bf16 when the
                           * model's projection weights are bf16 on the cpu backend, else f32 (cuda: its
                           * activation dtype); "f32"; "bf16".
                           * An unknown value, or on cuda one other than the activation dtype, is an
                           * error naming it (docs/architecture.md, "KV cache dtype") */
} tpd_engine_opts;
#define TPD_ENGINE_OPTS_INIT .struct_size = sizeof(tpd_engine_opts), .version = TPD_ENGINE_OPTS_VERSION
/* Zeroes o and sets struct_size and version (every other field: its default). */
void tpd_engine_opts_init(tpd_engine_opts *o);

/* per-item flags */
#define TPD_ITEM_NO_OUTPUT 1u /* no token wanted (a prefill chunk): no LM head, no sampling; token -1 */
#define TPD_MAX_TOP_LOGPROBS 20

typedef struct {
  int slot;               /* from tpd_engine_seq_open */
  int n_tokens;           /* new tokens (a prompt, or 1 in decode) */
  const int32_t *tokens;  /* host [n_tokens] */
  tpd_sampling sampling;  /* zero: greedy */
  uint64_t stream;        /* random stream of this sequence (e.g. its index) */
  uint32_t flags;         /* TPD_ITEM_* */
  int logprobs;           /* 0: none; 1 + k (k in 0..TPD_MAX_TOP_LOGPROBS): the sampled token's
                           * log-probability and the k most likely tokens' (tpd_step_output) */
} tpd_step_item;

/* What one item of a step produced.  Log-probabilities are of the model's
 * distribution, log_softmax of the logits (before temperature, top-k and
 * top-p), computed over the vocab-parallel LM head: each rank reduces its
 * slice to (max, sum of exp, top k) and only those travel. */
typedef struct {
  int32_t token;     /* the sampled token; -1 for TPD_ITEM_NO_OUTPUT */
  float logprob;     /* log P(token); NAN when item.logprobs == 0 */
  int n_top;         /* k: top_ids / top_logprobs valid entries, most likely first (ties: lower id) */
  int32_t top_ids[TPD_MAX_TOP_LOGPROBS];
  float top_logprobs[TPD_MAX_TOP_LOGPROBS];
} tpd_step_output;

/* What the engine can take now (tpd_engine_get_capacity). */
typedef struct {
  int max_slots, free_slots;
  int block_size;           /* tokens per KV block */
  int total_blocks, free_blocks;
  long long free_tokens;    /* free_blocks * block_size */
  int max_ctx;              /* tokens per sequence */
  int max_step_tokens;      /* tokens per forward (a step with more runs several) */
} tpd_engine_capacity;

typedef struct {
  double weight_bytes;       /* weights held by this rank */
  double kv_bytes_per_token; /* KV bytes per cached token on this rank (K and V, all layers) */
  double embed_row_bytes;    /* bytes read from the embedding per input token */
  tpd_dtype weight_dtype;    /* dtype the projections are stored in */
  tpd_dtype act_dtype;       /* activations (and all-reduce messages) */
  tpd_dtype kv_dtype;        /* the KV cache's elements */
  int tp;
  const char *backend;
  const char *kernels;       /* e.g. "avx512bf16"; "avx512bf16-dot" or "amx-bf16": bf16 matmul inputs on the CPU */
  int n_threads;
  /* the rest of this rank's memory plan, fixed at create (docs/architecture.md, "Memory plan") */
  double kv_bytes;           /* KV cache (backend memory) */
  double act_bytes;          /* step buffers: activations, logits, step metadata (backend memory) */
  double workspace_bytes;    /* the backend's kernel workspaces */
  double host_bytes;         /* host step buffers, sampler scratch, KV bookkeeping */
  /* the dtype this engine's matmuls read activations in: act_dtype, except
   * on the CPU with bf16 weights, whose bf16 path (the opts' activations
   * "bf16", or auto on a CPU whose vdpbf16ps outruns its FMA) rounds each
   * matmul's input to bf16 while the activations stay f32 (reported for the
   * q/k/v projection's dtype, weight_dtype) */
  tpd_dtype matmul_act_dtype;
} tpd_engine_info;

tpd_status tpd_engine_create(const tpd_engine_opts *opts, tpd_comm *comm, tpd_engine **out);
void tpd_engine_destroy(tpd_engine *e);

const tpd_model_config *tpd_engine_config(const tpd_engine *e);
void tpd_engine_get_info(const tpd_engine *e, tpd_engine_info *info);
tpd_comm *tpd_engine_comm(const tpd_engine *e);

/* Claims a free slot (TPD_ERR_NO_SLOT when all are open). */
tpd_status tpd_engine_seq_open(tpd_engine *e, int *slot);
/* Frees the slot and its KV blocks (cancellation included); TPD_ERR_SLOT
 * when it is not open.  The blocks are free for the next step. */
tpd_status tpd_engine_seq_close(tpd_engine *e, int slot);
int tpd_engine_seq_len(const tpd_engine *e, int slot); /* tokens cached; -1 when not open */
int tpd_engine_max_ctx(const tpd_engine *e);
void tpd_engine_get_capacity(const tpd_engine *e, tpd_engine_capacity *cap);
/* KV blocks the slot must take to hold n_new more tokens (0 when it has room);
 * -1 for a slot that is not open or a negative n_new. */
int tpd_engine_blocks_needed(const tpd_engine *e, int slot, int n_new);

/* Leader mode.  Followers (rank != 0) call tpd_engine_follow once; it runs
 * the leader's plans and returns TPD_OK when the leader shuts down, or the
 * agreed status of a failure that left the engine unusable.  The leader
 * calls tpd_engine_shutdown once before tpd_engine_destroy (destroy calls it
 * when it was not called).  In SPMD mode both return TPD_ERR_STATE. */
tpd_status tpd_engine_follow(tpd_engine *e);
tpd_status tpd_engine_shutdown(tpd_engine *e);
int tpd_engine_rank(const tpd_engine *e);  /* in the TP group; 0 is the leader */
tpd_engine_mode tpd_engine_mode_of(const tpd_engine *e);
int tpd_engine_usable(const tpd_engine *e); /* 0 after a device, communication or internal failure */

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
/* The same step with each item's output (token, log-probabilities).  A step
 * either runs whole or changes nothing: a bad item, or too few free KV
 * blocks for all items (TPD_ERR_KV_FULL), fails it before any work. */
tpd_status tpd_engine_step_out(tpd_engine *e, const tpd_step_item *items, int n_items, tpd_step_output *out);

#ifdef __cplusplus
}
#endif
#endif
