/* The kernel backend interface: a small table of decode operations.
 *
 * The engine is written once against this table; kernels/cpu/ implements it
 * as the reference (and the CI path), kernels/cuda/ as the fast path.
 *
 * Glossary used by every args struct below:
 *   T   tokens in this step (all sequences together; 1 per sequence in decode)
 *   D   model dim            Dh  head dim
 *   Hq  query heads (local to this rank)   Hkv  KV heads (local to this rank)
 *   F   FFN width (local)    V   vocab rows (local)
 *   M,N,K  matmul sizes: Y[M,N] = X[M,K] . W[N,K]^T
 * "act" is the backend's activation dtype, chosen at creation
 * (tpd_backend_opts.activations; CPU: F32, CUDA: BF16 by default or F32).
 * All pointers are in backend memory unless marked host. */
#ifndef TPD_BACKEND_H
#define TPD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/dtype.h"
#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tpd_backend tpd_backend;

/* Largest head dim the kernels accept (checked when a model is loaded). */
#define TPD_MAX_HEAD_DIM 512

/* A weight matrix W[N, K] in backend memory, in a layout its backend chose
 * when it loaded it (the CPU backend tiles it, see kernels/cpu/mm_tile.h;
 * the CUDA backend keeps it row-major). */
typedef struct {
  const void *data;
  tpd_dtype dtype;
  int n_rows; /* N */
  int n_cols; /* K */
} tpd_weight;

typedef struct {
  int M;
  const void *x; /* [M, ldx] act */
  int ldx;
  const tpd_weight *w;
  const float *bias; /* [N] or NULL */
  void *y;           /* [M, ldy] of y_dtype */
  int ldy;
  tpd_dtype y_dtype; /* act, or F32 for logits */
} tpd_matmul_args;

typedef struct {
  int T, D;
  void *x;           /* [T, D] act: residual stream; x += delta first when delta != NULL */
  const void *delta; /* [T, D] act or NULL */
  const float *w;    /* [D] */
  float eps;
  void *y;           /* [T, D] act: rmsnorm(x) * w */
} tpd_rmsnorm_args;

/* Per-token metadata of a step, shared by rope/KV append and attention. */
typedef struct {
  int T;
  const int32_t *pos;         /* [T] position of each token in its sequence */
  const int32_t *slot;        /* [T] sequence slot of each token */
  const int32_t *block_table; /* [n_slots, max_blocks] KV block ids per slot */
  int max_blocks;
  int block_size;             /* tokens per KV block */
  int max_ctx;                /* host: upper bound on pos + 1 over the step */
} tpd_step_meta;

typedef struct {
  const tpd_step_meta *meta;
  int n_q_heads, n_kv_heads, head_dim;
  void *qkv;                /* [T, (Hq + 2 Hkv) Dh] act: q heads, k heads, v heads */
  const double *inv_freq;   /* [Dh/2] rotary inverse frequencies */
  void *k_cache, *v_cache;  /* [n_blocks, Hkv, block_size, Dh] of this layer, the backend's kv_dtype */
} tpd_rope_kv_args;

typedef struct {
  const tpd_step_meta *meta;
  int n_q_heads, n_kv_heads, head_dim;
  const void *q;            /* [T, ldq] act, rotated q heads first */
  int ldq;
  const void *k_cache, *v_cache; /* as in tpd_rope_kv_args */
  void *out;                /* [T, Hq Dh] act */
  int window;               /* sliding window in tokens, 0 = full causal */
  float scale;              /* 1/sqrt(Dh) */
} tpd_attention_args;

typedef struct {
  int T, F;
  const void *gu; /* [T, 2F] act: gate in [:, :F], up in [:, F:] */
  void *out;      /* [T, F] act: silu(gate) * up */
} tpd_swiglu_args;

typedef struct {
  int M, N;
  const float *logits; /* [M, N] */
  float *val;          /* [M] max value */
  int32_t *idx;        /* [M] index of the first maximum, plus idx_offset */
  int idx_offset;
} tpd_argmax_args;

/* Log-probability statistics of this rank's vocabulary slice, per row of
 * f32 logits [M, N]: the maximum, the sum of exp(logit - max) (accumulated
 * in f32 or wider), and the k largest logits with their indices (+
 * idx_offset), largest first, equal values by lower index.  k in
 * 0..TPD_LOGIT_TOPK_MAX; k > N leaves entries [N, k) as (-inf, -1).  The
 * engine merges the ranks' results into log_softmax over the whole
 * vocabulary without gathering the logits.  Special values are not hidden:
 * a NaN logit makes the row's max and sumexp NaN (it is never a top-k
 * entry: entries it leaves unfilled are (-inf, -1)); a +inf logit makes
 * sumexp NaN (inf - inf); -inf logits are ordinary entries (by index among
 * themselves); a row with no value above -inf (N = 0 included) has max
 * -inf and sumexp 0, which the caller must treat as "no probability mass
 * here".  top_val and top_idx may be NULL when k = 0. */
#define TPD_LOGIT_TOPK_MAX 20
typedef struct {
  int M, N, k;
  const float *logits; /* [M, N] */
  float *max;          /* [M] */
  float *sumexp;       /* [M] */
  float *top_val;      /* [M, k] */
  int32_t *top_idx;    /* [M, k] */
  int idx_offset;
} tpd_logit_stats_args;

/* What an engine will ask of a backend, known when it is created: the
 * backend sizes every workspace from it once (tpd_backend_ops.reserve).
 * Sizes are this rank's. */
#define TPD_PLAN_MAX_K 8
typedef struct {
  int max_rows;              /* M of any matmul, T of any step (tokens in one forward) */
  int max_ctx;               /* bound on tpd_step_meta.max_ctx */
  int n_q_heads, n_kv_heads; /* Hq, Hkv */
  int head_dim;              /* Dh */
  int max_n;                 /* largest N of any matmul (LM head and fused gate/up included) */
  int n_k;                   /* number of distinct K ... */
  int k[TPD_PLAN_MAX_K];     /* ... of the matmuls (input widths) */
  int gate_up_rows;          /* N (2F) of the weights given to matmul_swiglu */
} tpd_backend_plan;

typedef struct tpd_backend_ops {
  const char *name;
  tpd_dtype act_dtype; /* fixed when the backend is created (tpd_backend_opts.activations) */
  int host_memory; /* 1 when backend pointers are host pointers */

  void (*destroy)(tpd_backend *be);
  tpd_status (*alloc)(tpd_backend *be, size_t n_bytes, void **out);
  void (*free)(tpd_backend *be, void *p);
  tpd_status (*upload)(tpd_backend *be, void *dst, const void *host_src, size_t n_bytes);
  tpd_status (*download)(tpd_backend *be, void *host_dst, const void *src, size_t n_bytes);
  tpd_status (*zero)(tpd_backend *be, void *dst, size_t n_bytes);
  tpd_status (*synchronize)(tpd_backend *be);
  /* the stream kernels run on (a cudaStream_t), NULL for host backends */
  void *(*stream)(tpd_backend *be);

  /* Prepares a weight from host rows (any of F32/BF16/F16) into backend
   * memory; the backend chooses the stored dtype (CPU keeps it). */
  tpd_status (*load_weight)(tpd_backend *be, const void *host, tpd_dtype dtype, int n_rows, int n_cols,
                            tpd_weight *out);

  tpd_status (*matmul)(tpd_backend *be, const tpd_matmul_args *a);
  tpd_status (*rmsnorm)(tpd_backend *be, const tpd_rmsnorm_args *a);
  tpd_status (*rope_kv)(tpd_backend *be, const tpd_rope_kv_args *a);
  tpd_status (*attention)(tpd_backend *be, const tpd_attention_args *a);
  tpd_status (*swiglu)(tpd_backend *be, const tpd_swiglu_args *a);
  /* dst[i, :] = src[rows[i], :] for i < n, width D, act; rows is host memory */
  tpd_status (*gather_rows)(tpd_backend *be, void *dst, const void *src, const int32_t *rows, int n, int D);
  tpd_status (*argmax)(tpd_backend *be, const tpd_argmax_args *a);
  tpd_status (*logit_stats)(tpd_backend *be, const tpd_logit_stats_args *a);

  /* ---- optional: NULL where a backend does not provide them ---- */
  /* Sizes every workspace the ops use (matmul scratch, attention partials,
   * ...) for all steps within the plan; *n_bytes = their total.  commit = 0
   * only computes it; commit = 1 allocates them, at once.  After a committed
   * reserve no op allocates: one that would need more than planned fails
   * naming the workspace and both sizes (a planning bug).  Without a reserve
   * the workspaces grow on demand.  NULL: the backend has none. */
  tpd_status (*reserve)(tpd_backend *be, const tpd_backend_plan *p, int commit, size_t *n_bytes);
  /* The dtype load_weight stores a weight given in `dtype` in (NULL: the
   * same dtype), for planning memory before loading. */
  tpd_dtype (*weight_dtype)(tpd_backend *be, tpd_dtype dtype);
  /* A view of rows [row0, row0 + n_rows) of a loaded weight (no copy);
   * row0 must be a multiple of 64.  Used to split a row-parallel matmul into
   * chunks whose all-reduces start while the next chunk computes. */
  tpd_status (*weight_view)(tpd_backend *be, const tpd_weight *w, int row0, int n_rows, tpd_weight *out);
  /* Fused gate/up + SwiGLU: W (a->w) is [gate rows; up rows] (2F x K);
   * out[M, F] (row stride ld_out, act) = silu(X Wg^T + bg) * (X Wu^T + bu).
   * a->y and a->ldy are ignored. */
  tpd_status (*matmul_swiglu)(tpd_backend *be, const tpd_matmul_args *a, void *out, int ld_out);
  /* A second stream for communication; events (small integer ids, at least
   * 64) order the two without host synchronisation. */
  void *(*comm_stream)(tpd_backend *be);
  tpd_status (*event_record)(tpd_backend *be, int event, int on_comm_stream);
  tpd_status (*event_wait)(tpd_backend *be, int event, int on_comm_stream); /* that stream waits */
  /* Graph capture of all work enqueued on both streams between begin and
   * end (collectives on the comm stream included); launch replays it. */
  tpd_status (*graph_begin)(tpd_backend *be);
  tpd_status (*graph_end)(tpd_backend *be, void **graph);
  tpd_status (*graph_launch)(tpd_backend *be, void *graph);
  void (*graph_destroy)(tpd_backend *be, void *graph);
} tpd_backend_ops;

struct tpd_backend {
  const tpd_backend_ops *ops;
  void *impl;
  /* the kernels this instance runs, for reports: the CPU backend's
   * instruction-set level ("avx512bf16", ...) or bf16 path
   * ("avx512bf16-dot", "amx-bf16"); NULL = ops->name.  kernels_f32: what
   * f32 and f16 weights run (the CPU's bf16 path is for bf16 weights only;
   * the same name where it takes no bf16 path); NULL = kernels */
  const char *kernels;
  const char *kernels_f32;
  /* dtype of this instance's KV cache (tpd_backend_opts.kv_cache), set at
   * create: what rope_kv writes and attention reads */
  tpd_dtype kv_dtype;
  /* dtype the matmuls of bf16 weights read their activations in, set at
   * create: ops->act_dtype, except on the CPU backend, whose activations
   * stay f32 between ops and whose bf16 path rounds a matmul's input to
   * bf16 as it reads it (tpd_backend_opts.activations) */
  tpd_dtype matmul_act_dtype;
};

typedef struct {
  int n_threads;  /* CPU: worker threads, 0 = all cores */
  int device;     /* CUDA: device ordinal, -1 = pick from the node-local rank */
  int local_rank; /* node-local rank (device choice) */
  /* Activation dtype: NULL or "auto" = the backend's default, "f32",
   * "bf16"; anything else is an error naming the value.  cuda: activations
   * stored in that dtype, auto = bf16.  cpu: activations stay f32 between
   * ops; "bf16" rounds the input of every matmul of bf16 weights to bf16
   * (AVX512-BF16 dot products or AMX-BF16 tiles; refused, naming the level,
   * where the CPU kernels' level has neither); auto = TPD_CPU_BF16_DOT
   * (0 or 1) where it is set, else bf16 where the CPU's vdpbf16ps rate,
   * measured once per process, is at least 1.4x its f32 FMA rate, else f32
   * (kernels/cpu/cpu_isa.h). */
  const char *activations;
  /* KV-cache dtype: NULL or "auto" = the backend's default (cpu: f32; cuda:
   * its activation dtype), "f32", "bf16" (cpu: K and V rounded to nearest
   * even as rope_kv stores them, widened to f32 as attention reads them).
   * Anything else is TPD_ERR_ARG naming it; on cuda a value other than the
   * activation dtype is TPD_ERR_UNSUPPORTED naming it. */
  const char *kv_cache;
} tpd_backend_opts;

/* "cpu" always; "cuda" when built with CUDA and a device is present. */
tpd_status tpd_backend_create(const char *name, const tpd_backend_opts *opts, tpd_backend **out);
/* What activations NULL or "auto" give the named backend in this process,
 * without creating one: cuda bf16; cpu bf16 (matmul inputs) where the
 * environment (TPD_CPU_BF16_DOT, TPD_CPU_ISA, checked as create checks
 * them) or the rate probe chooses it, else f32.  The engine agrees one
 * choice for all ranks with it. */
tpd_status tpd_backend_auto_activations(const char *name, tpd_dtype *out);
/* Resolves opts->activations for the named backend: *out = the dtype (cpu:
 * of the matmuls' inputs; auto there is f32, its create measures instead),
 * or TPD_ERR_ARG for an unknown value. */
tpd_status tpd_backend_activations(const char *backend, const tpd_backend_opts *opts, tpd_dtype *out);
/* Resolves opts->kv_cache for the named backend whose activations are act,
 * as tpd_backend_activations does. */
tpd_status tpd_backend_kv_cache(const char *backend, const tpd_backend_opts *opts, tpd_dtype act, tpd_dtype *out);
void tpd_backend_destroy(tpd_backend *be);
/* 1 if this build contains the named backend. */
int tpd_backend_available(const char *name);

tpd_status tpd_backend_cpu_create(const tpd_backend_opts *opts, tpd_backend **out);
tpd_status tpd_backend_cpu_auto_activations(tpd_dtype *out);
#ifdef TPD_HAVE_CUDA
tpd_status tpd_backend_cuda_create(const tpd_backend_opts *opts, tpd_backend **out);
#endif

#ifdef __cplusplus
}
#endif
#endif
