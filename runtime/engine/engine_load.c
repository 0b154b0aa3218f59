/* Loading: this rank's shard of the checkpoint into backend memory, the
 * step buffers, and the engine's create/destroy.  The step is engine.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/base/fileio.h"
#include "runtime/engine/engine_internal.h"


/* ------------------------------------------------------------------ */
/* loading                                                             */

typedef struct {
  const tpd_st_tensor *t;
  int r0, r1, c0, c1; /* rows [r0, r1), columns [c0, c1) */
} part;

/* Copies a block of a 2-D (or 1-D: one row) tensor into dst as dtype dt. */
static void copy_part(const tpd_st *st, const part *p, void *dst, tpd_dtype dt) {
  const tpd_st_tensor *t = p->t;
  const int64_t cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
  const size_t esz = tpd_dtype_size((tpd_dtype)t->dtype), osz = tpd_dtype_size(dt);
  const uint8_t *src = tpd_st_data(st, t);
  const int w = p->c1 - p->c0;
  /* read exactly this block's bytes, all requests queued before the first
   * touch: whole rows in one range, a column block one range per row */
  if (w == cols) {
    tpd_st_prefetch(st, t, (uint64_t)p->r0 * (uint64_t)cols * esz, (uint64_t)(p->r1 - p->r0) * (uint64_t)cols * esz);
  } else {
    for (int r = p->r0; r < p->r1; r++)
      tpd_st_prefetch(st, t, ((uint64_t)r * (uint64_t)cols + (uint64_t)p->c0) * esz, (uint64_t)w * esz);
  }
  for (int r = p->r0; r < p->r1; r++) {
    const uint8_t *s = src + ((size_t)r * (size_t)cols + (size_t)p->c0) * esz;
    uint8_t *d = (uint8_t *)dst + (size_t)(r - p->r0) * w * osz;
    tpd_convert(d, dt, s, (tpd_dtype)t->dtype, (size_t)w);
  }
}

/* The dtype load_stacked hands the backend for these parts: theirs when
 * they agree, else f32 (mixed dtypes widen). */
static tpd_dtype stacked_dtype(const part *parts, int n_parts) {
  tpd_dtype dt = (tpd_dtype)parts[0].t->dtype;
  for (int i = 1; i < n_parts; i++)
    if ((tpd_dtype)parts[i].t->dtype != dt) dt = TPD_F32;
  return dt;
}

/* Stacks parts vertically into one weight [sum rows, cols]. */
static tpd_status load_stacked(tpd_engine *e, const part *parts, int n_parts, tpd_weight *out) {
  const tpd_dtype dt = stacked_dtype(parts, n_parts);
  int rows = 0;
  const int cols = parts[0].c1 - parts[0].c0;
  for (int i = 0; i < n_parts; i++) rows += parts[i].r1 - parts[i].r0;
  if (e->counting) { /* the memory plan: what load_weight will store */
    const tpd_dtype stored = e->be->ops->weight_dtype ? e->be->ops->weight_dtype(e->be, dt) : dt;
    e->weight_bytes += (double)rows * cols * tpd_dtype_size(stored);
    return TPD_OK;
  }
  const size_t esz = tpd_dtype_size(dt);
  uint8_t *host = malloc((size_t)rows * cols * esz);
  if (!host) return TPD_FAIL(TPD_ERR_OOM, "out of host memory staging a %d x %d weight", rows, cols);
  size_t off = 0;
  for (int i = 0; i < n_parts; i++) {
    copy_part(e->st, &parts[i], host + off, dt);
    off += (size_t)(parts[i].r1 - parts[i].r0) * cols * esz;
  }
  tpd_status s = e->be->ops->load_weight(e->be, host, dt, rows, cols, out);
  free(host);
  if (s == TPD_OK) e->weight_bytes += (double)rows * cols * tpd_dtype_size(out->dtype);
  return s;
}

/* Concatenates 1-D slices [c0, c1) of vectors as f32 in backend memory. */
static tpd_status load_vec(tpd_engine *e, const part *parts, int n_parts, float **out) {
  int n = 0;
  for (int i = 0; i < n_parts; i++) n += parts[i].c1 - parts[i].c0;
  if (e->counting) {
    e->weight_bytes += sizeof(float) * (double)n;
    return TPD_OK;
  }
  float *host = malloc(sizeof(float) * (size_t)n);
  if (!host) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  int off = 0;
  for (int i = 0; i < n_parts; i++) {
    part p = parts[i];
    p.r0 = 0;
    p.r1 = 1;
    copy_part(e->st, &p, host + off, TPD_F32);
    off += p.c1 - p.c0;
  }
  void *dev = NULL;
  tpd_status s = e->be->ops->alloc(e->be, sizeof(float) * (size_t)n, &dev);
  if (s == TPD_OK) s = e->be->ops->upload(e->be, dev, host, sizeof(float) * (size_t)n);
  free(host);
  if (s != TPD_OK) {
    if (dev) e->be->ops->free(e->be, dev);
    return s;
  }
  e->weight_bytes += sizeof(float) * (double)n;
  *out = dev;
  return TPD_OK;
}

static const tpd_st_tensor *find(const tpd_engine *e, const char *fmt, int layer) {
  char name[256];
  snprintf(name, sizeof name, fmt, layer);
  return tpd_st_find(e->st, name);
}

/* Every tensor the config implies, with its exact shape, before any load. */
static tpd_status validate_tensors(tpd_engine *e) {
  const tpd_model_config *c = &e->cfg;
  const int64_t D = c->dim, Q = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
  const int64_t F = c->ffn_dim, V = c->vocab;
  char n[256];
  TPD_TRY(tpd_st_expect(e->st, "model.embed_tokens.weight", 2, V, D, &e->embed));
  TPD_TRY(tpd_st_expect(e->st, "model.norm.weight", 1, D, 0, NULL));
  /* tie_word_embeddings against the files: untied needs lm_head.weight;
   * tied ignores one that is there, as transformers does, and says so */
  if (!c->tie_embeddings && !tpd_st_find(e->st, "lm_head.weight"))
    return TPD_FAIL(TPD_ERR_FORMAT,
                    "missing tensor 'lm_head.weight' (config.json has tie_word_embeddings=false or does not set it)");
  if (!c->tie_embeddings) TPD_TRY(tpd_st_expect(e->st, "lm_head.weight", 2, V, D, NULL));
  if (c->tie_embeddings && tpd_st_find(e->st, "lm_head.weight") && tpd_log_rank() <= 0)
    TPD_WARN("config.json has tie_word_embeddings=true: lm_head.weight in the checkpoint is ignored and "
             "model.embed_tokens.weight is the output projection (as in transformers)");
  for (int l = 0; l < c->n_layers; l++) {
    const struct { const char *fmt; int ndim; int64_t d0, d1; int present; } want[] = {
        {"model.layers.%d.input_layernorm.weight", 1, D, 0, 1},
        {"model.layers.%d.post_attention_layernorm.weight", 1, D, 0, 1},
        {"model.layers.%d.self_attn.q_proj.weight", 2, Q, D, 1},
        {"model.layers.%d.self_attn.k_proj.weight", 2, KV, D, 1},
        {"model.layers.%d.self_attn.v_proj.weight", 2, KV, D, 1},
        {"model.layers.%d.self_attn.o_proj.weight", 2, D, Q, 1},
        {"model.layers.%d.mlp.gate_proj.weight", 2, F, D, 1},
        {"model.layers.%d.mlp.up_proj.weight", 2, F, D, 1},
        {"model.layers.%d.mlp.down_proj.weight", 2, D, F, 1},
        {"model.layers.%d.self_attn.q_proj.bias", 1, Q, 0, c->qkv_bias},
        {"model.layers.%d.self_attn.k_proj.bias", 1, KV, 0, c->qkv_bias},
        {"model.layers.%d.self_attn.v_proj.bias", 1, KV, 0, c->qkv_bias},
        {"model.layers.%d.self_attn.o_proj.bias", 1, D, 0, c->o_bias},
        {"model.layers.%d.mlp.gate_proj.bias", 1, F, 0, c->mlp_bias},
        {"model.layers.%d.mlp.up_proj.bias", 1, F, 0, c->mlp_bias},
        {"model.layers.%d.mlp.down_proj.bias", 1, D, 0, c->mlp_bias},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
      if (!want[i].present) continue;
      snprintf(n, sizeof n, want[i].fmt, l);
      TPD_TRY(tpd_st_expect(e->st, n, want[i].ndim, want[i].d0, want[i].d1, NULL));
    }
  }
  return TPD_OK;
}

/* This rank's rows of layer l's q, k and v projections, stacked as L->qkv. */
static void qkv_parts(const tpd_engine *e, int l, part qkv[3]) {
  const int D = e->cfg.dim, Dh = e->cfg.head_dim;
  const int q0 = e->plan.q_head0 * Dh, q1 = q0 + e->plan.n_q_heads * Dh;
  const int k0 = e->plan.kv_head0 * Dh, k1 = k0 + e->plan.n_kv_heads * Dh;
  qkv[0] = (part){find(e, "model.layers.%d.self_attn.q_proj.weight", l), q0, q1, 0, D};
  qkv[1] = (part){find(e, "model.layers.%d.self_attn.k_proj.weight", l), k0, k1, 0, D};
  qkv[2] = (part){find(e, "model.layers.%d.self_attn.v_proj.weight", l), k0, k1, 0, D};
}

static tpd_status load_layer(tpd_engine *e, int l) {
  const tpd_model_config *c = &e->cfg;
  const tpd_shard_plan *p = &e->plan;
  const int D = c->dim, Dh = c->head_dim;
  layer_w *L = &e->layers[l];
  const int q0 = p->q_head0 * Dh, q1 = q0 + p->n_q_heads * Dh;
  const int k0 = p->kv_head0 * Dh, k1 = k0 + p->n_kv_heads * Dh;
  const int f0 = p->ffn.begin, f1 = p->ffn.end;
#define T_(name) find(e, "model.layers.%d." name, l)
  part qkv[3];
  qkv_parts(e, l, qkv);
  TPD_TRY(load_stacked(e, qkv, 3, &L->qkv));
  part o = {T_("self_attn.o_proj.weight"), 0, D, q0, q1};
  TPD_TRY(load_stacked(e, &o, 1, &L->o));
  part gu[2] = {{T_("mlp.gate_proj.weight"), f0, f1, 0, D}, {T_("mlp.up_proj.weight"), f0, f1, 0, D}};
  TPD_TRY(load_stacked(e, gu, 2, &L->gu));
  part down = {T_("mlp.down_proj.weight"), 0, D, f0, f1};
  TPD_TRY(load_stacked(e, &down, 1, &L->down));
  part ln1 = {T_("input_layernorm.weight"), 0, 1, 0, D}, ln2 = {T_("post_attention_layernorm.weight"), 0, 1, 0, D};
  TPD_TRY(load_vec(e, &ln1, 1, &L->ln1));
  TPD_TRY(load_vec(e, &ln2, 1, &L->ln2));
  if (c->qkv_bias) {
    part b[3] = {{T_("self_attn.q_proj.bias"), 0, 1, q0, q1},
                 {T_("self_attn.k_proj.bias"), 0, 1, k0, k1},
                 {T_("self_attn.v_proj.bias"), 0, 1, k0, k1}};
    TPD_TRY(load_vec(e, b, 3, &L->b_qkv));
  }
  if (c->o_bias && p->rank == 0) { /* row-parallel bias: added once, before the all-reduce */
    part b = {T_("self_attn.o_proj.bias"), 0, 1, 0, D};
    TPD_TRY(load_vec(e, &b, 1, &L->b_o));
  }
  if (c->mlp_bias) {
    part b[2] = {{T_("mlp.gate_proj.bias"), 0, 1, f0, f1}, {T_("mlp.up_proj.bias"), 0, 1, f0, f1}};
    TPD_TRY(load_vec(e, b, 2, &L->b_gu));
    if (p->rank == 0) {
      part bd = {T_("mlp.down_proj.bias"), 0, 1, 0, D};
      TPD_TRY(load_vec(e, &bd, 1, &L->b_down));
    }
  }
#undef T_
  return TPD_OK;
}

/* Every weight of this rank's shard: layers, final norm, LM head.  With
 * e->counting set it only adds up e->weight_bytes (the memory plan). */
static tpd_status load_weights(tpd_engine *e) {
  const tpd_model_config *c = &e->cfg;
  e->weight_bytes = 0;
  for (int l = 0; l < c->n_layers; l++) TPD_TRY(load_layer(e, l));
  part fn = {tpd_st_find(e->st, "model.norm.weight"), 0, 1, 0, c->dim};
  TPD_TRY(load_vec(e, &fn, 1, &e->final_norm));
  part lm = {tpd_st_find(e->st, c->tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight"),
             e->plan.vocab.begin, e->plan.vocab.end, 0, c->dim};
  return load_stacked(e, &lm, 1, &e->lm_head);
}

static int default_threads(const tpd_comm *comm) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int per = (int)(cores / (comm->local_size > 0 ? comm->local_size : 1));
  return per > 0 ? per : 1;
}

void tpd_engine_opts_init(tpd_engine_opts *o) {
  memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
  o->version = TPD_ENGINE_OPTS_VERSION;
}

void tpd_engine_inject_fault(tpd_engine *e, long after, tpd_status status) {
  e->fault.after = after;
  e->fault.status = status;
}

/* The engine's weight dtype, as tpd_engine_info.weight_dtype reports it: the
 * dtype layer 0's stacked q/k/v projections are stored in, i.e. the one
 * load_stacked hands the backend for them (mixed dtypes widen to f32).
 * Known before the backend exists; create() checks it against the loaded
 * weight once they are in (a backend that converts weights as it stores
 * them, the weight_dtype hook, would make them differ). */
static tpd_dtype engine_weight_dtype(const tpd_engine *e) {
  part qkv[3];
  qkv_parts(e, 0, qkv);
  return stacked_dtype(qkv, 3);
}

/* opts.kv_cache (NULL: the environment's TPD_KV_CACHE, else auto) for the
 * backend: "auto" on the cpu backend is bf16 when the engine's weight dtype
 * (engine_weight_dtype) is bf16, f32 otherwise, and *from_weights says so;
 * the backend resolves every other value (and rejects unknown ones, naming
 * them). */
static const char *kv_cache_for(const tpd_engine_opts *o, tpd_dtype weight_dtype, int *from_weights) {
  const char *kv = o->kv_cache ? o->kv_cache : tpd_param_str("KV_CACHE", NULL);
  *from_weights = 0;
  if (kv && strcmp(kv, "auto")) return kv;
  if (o->backend && strcmp(o->backend, "cpu")) return kv;
  *from_weights = 1;
  return weight_dtype == TPD_BF16 ? "bf16" : "f32";
}

/* act: the activations agreed across ranks (tpd_engine_create), else NULL: o's */
static tpd_status create(const tpd_engine_opts *o, const char *act, tpd_comm *comm, tpd_engine **out) {
  *out = NULL;
  if (!o) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_create: options are NULL");
  if (o->struct_size != sizeof *o || o->version != TPD_ENGINE_OPTS_VERSION)
    return TPD_FAIL(TPD_ERR_VERSION,
                    "engine options of %u bytes, version %u; this library takes %zu bytes, version %d "
                    "(fill them with tpd_engine_opts_init)",
                    o->struct_size, o->version, sizeof *o, TPD_ENGINE_OPTS_VERSION);
  if (!o->model_dir) return TPD_FAIL(TPD_ERR_ARG, "engine options: model_dir is required");
  if (o->mode != TPD_MODE_SPMD && o->mode != TPD_MODE_LEADER)
    return TPD_FAIL(TPD_ERR_ARG, "engine options: mode = %d (0: SPMD, 1: leader)", o->mode);
  if (o->max_ctx < 0 || o->max_seqs < 0 || o->max_step_tokens < 0 || o->kv_block_size < 0 || o->n_threads < 0)
    return TPD_FAIL(TPD_ERR_ARG, "engine options: negative size");
  tpd_engine *e = calloc(1, sizeof *e);
  if (!e) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  e->comm = comm;
  e->mode = o->mode;
  e->fault.after = -1;
  tpd_status s;
  const tpd_model_config *c = &e->cfg;
  if (!tpd_is_dir(o->model_dir)) {
    s = TPD_FAIL(TPD_ERR_IO, "model directory %s does not exist", o->model_dir);
    goto fail;
  }
  TPD_TRY_GOTO(tpd_config_load(o->model_dir, &e->cfg), s, fail);
  if (c->head_dim > TPD_MAX_HEAD_DIM) {
    s = TPD_FAIL(TPD_ERR_UNSUPPORTED, "head_dim %d exceeds the supported %d", c->head_dim, TPD_MAX_HEAD_DIM);
    goto fail;
  }
  TPD_TRY_GOTO(tpd_shard_plan_make(c, comm->size, comm->rank, &e->plan), s, fail);
  TPD_TRY_GOTO(tpd_st_open(o->model_dir, &e->st), s, fail);
  TPD_TRY_GOTO(validate_tensors(e), s, fail);

  e->n_threads = o->n_threads > 0 ? o->n_threads : default_threads(comm);
  int kv_from_weights = 0;
  const tpd_dtype weight_dtype = engine_weight_dtype(e);
  tpd_backend_opts bo = {.n_threads = e->n_threads, .device = o->device, .local_rank = comm->local_rank,
                         .activations = act ? act : o->activations,
                         .kv_cache = kv_cache_for(o, weight_dtype, &kv_from_weights)};
  TPD_TRY_GOTO(tpd_backend_create(o->backend ? o->backend : "cpu", &bo, &e->be), s, fail);

  const int max_ctx = o->max_ctx > 0 ? o->max_ctx : (c->max_pos < 4096 ? c->max_pos : 4096);
  const int max_seqs = o->max_seqs > 0 ? o->max_seqs : 1;
  e->max_seqs = max_seqs;
  e->T_cap = o->max_step_tokens > 0 ? o->max_step_tokens : 512;
  if (e->T_cap < max_seqs) e->T_cap = max_seqs;
  TPD_TRY_GOTO(tpd_kv_plan(&e->kv, max_seqs, max_ctx, o->kv_block_size > 0 ? o->kv_block_size : 16, o->kv_blocks,
                           &e->kv_host_bytes),
               s, fail);

  e->q_w = e->plan.n_q_heads * c->head_dim;
  e->qkv_w = (e->plan.n_q_heads + 2 * e->plan.n_kv_heads) * c->head_dim;
  e->ffn_l = e->plan.ffn.end - e->plan.ffn.begin;
  e->V_l = e->plan.vocab.end - e->plan.vocab.begin;

  e->layers = calloc((size_t)c->n_layers, sizeof *e->layers);
  if (!e->layers) {
    s = TPD_FAIL(TPD_ERR_OOM, "out of memory");
    goto fail;
  }
  /* the memory plan, printed before the arenas are allocated and the weights loaded */
  e->counting = 1;
  s = load_weights(e);
  e->counting = 0;
  if (s != TPD_OK) goto fail;
  TPD_TRY_GOTO(tpd_mem_plan_make(e), s, fail);
  TPD_TRY_GOTO(tpd_mem_alloc(e), s, fail);
  TPD_TRY_GOTO(load_weights(e), s, fail);
  if (kv_from_weights && e->layers[0].qkv.dtype != weight_dtype) {
    s = TPD_FAIL(TPD_ERR_INTERNAL, "kv cache auto: chosen for %s weights, the %s backend stored them as %s",
                 tpd_dtype_name(weight_dtype), e->be->ops->name, tpd_dtype_name(e->layers[0].qkv.dtype));
    goto fail;
  }
  if ((size_t)e->weight_bytes != e->mem.weight_bytes) {
    s = TPD_FAIL(TPD_ERR_INTERNAL, "memory plan: the loaded weights hold %.0f bytes, the plan counted %zu",
                 e->weight_bytes, e->mem.weight_bytes);
    goto fail;
  }
  e->graphs = calloc((size_t)max_seqs + 1, sizeof *e->graphs);
  if (!e->graphs) {
    s = TPD_FAIL(TPD_ERR_OOM, "out of memory");
    goto fail;
  }
  /* Overlap and chunking are off by default everywhere, NCCL included, until
   * a GPU measures that they pay: 4 chunks turn 2 all-reduces per layer into
   * 8, each hiding only a 1-3 us GEMV chunk, and at batch >= 2 the
   * micro-batch ping-pong reads every weight twice (docs/cuda.md). */
  e->overlap = (int)tpd_param_int("OVERLAP", 0) != 0;
  e->ar_chunks = (int)tpd_param_int("AR_CHUNKS", 1);
  if (e->ar_chunks < 1) e->ar_chunks = 1;
  e->use_graphs = (int)tpd_param_int("GRAPHS", 1) != 0;
  TPD_INFO("rank %d/%d: %.1f MB of weights, %d q heads, %d kv heads, ffn [%d, %d), vocab [%d, %d)", comm->rank,
           comm->size, e->weight_bytes / 1e6, e->plan.n_q_heads, e->plan.n_kv_heads, e->plan.ffn.begin,
           e->plan.ffn.end, e->plan.vocab.begin, e->plan.vocab.end);
  *out = e;
  return TPD_OK;
fail:
  tpd_engine_destroy(e);
  return s;
}

/* Every rank returns the same status from create: the lowest failing
 * rank's, with its message (a server on rank 0 learns why a follower could
 * not load its shard, and no rank is left waiting for another that gave up). */
tpd_status tpd_engine_create(const tpd_engine_opts *o, tpd_comm *comm, tpd_engine **out) {
  if (!out) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_create: out is NULL");
  *out = NULL;
  if (!comm) return TPD_FAIL(TPD_ERR_ARG, "tpd_engine_create: a communicator is required");
  /* Activations auto on the cpu backend: each process's choice comes from
   * its environment and a rate probe (kernels/backend.h), which can differ
   * between processes (different CPUs, or a probe disturbed by ranks sharing
   * cores); the ranks take one: bf16 where every rank's is, else f32.  Every
   * rank takes part in the agreement whatever its options (the same on all
   * ranks by contract; a rank without auto on the cpu votes neither way), so
   * the collectives match even when they are not.  A rank whose own choice
   * fails (its environment refused) votes neither way and keeps auto, so its
   * create fails with that message, which every rank then reports. */
  const char *act = NULL;
  int first_f32 = -1, first_bf16 = -1;
  if (comm->size > 1) {
    int auto_cpu = o && o->struct_size == sizeof *o && o->version == TPD_ENGINE_OPTS_VERSION &&
                   (!o->activations || !strcmp(o->activations, "auto")) && (!o->backend || !strcmp(o->backend, "cpu"));
    tpd_dtype mine = TPD_F32;
    if (auto_cpu) {
      tpd_error_state saved;
      tpd_error_save(&saved);
      if (tpd_backend_auto_activations("cpu", &mine) != TPD_OK) auto_cpu = 0;
      tpd_error_restore(&saved);
    }
    /* 1 bf16, 0 f32, -1 neither; up to 64 ranks on the stack */
    const int32_t vote = auto_cpu ? mine == TPD_BF16 : -1;
    int32_t votes_fixed[64], *votes = comm->size <= 64 ? votes_fixed : calloc((size_t)comm->size, sizeof vote);
    if (!votes) return TPD_FAIL(TPD_ERR_OOM, "out of memory for %d ranks' votes", comm->size);
    const tpd_status g = comm->ops->host_allgather(comm, &vote, votes, sizeof vote);
    for (int r = 0; g == TPD_OK && r < comm->size; r++) {
      if (votes[r] == 0 && first_f32 < 0) first_f32 = r;
      if (votes[r] == 1 && first_bf16 < 0) first_bf16 = r;
    }
    if (votes != votes_fixed) free(votes);
    TPD_TRY(g);
    if (auto_cpu) act = first_f32 < 0 ? "bf16" : "f32";
  }
  tpd_status s = create(o, act, comm, out);
  if (comm->size == 1) {
    if (s == TPD_OK) (*out)->live = 1;
    return s;
  }
  struct {
    int32_t status;
    char msg[TPD_POISON_MSG];
    char kernels[32]; /* what this rank's backend runs: ranks may choose differently (CPU levels, rate probes) */
  } mine = {(int32_t)s, {0}, {0}}, *all = calloc((size_t)comm->size, sizeof mine);
  tpd_engine_info info;
  if (s != TPD_OK) snprintf(mine.msg, sizeof mine.msg, "%s", tpd_last_error());
  else {
    tpd_engine_get_info(*out, &info);
    snprintf(mine.kernels, sizeof mine.kernels, "%s", info.kernels);
  }
  tpd_status g = all ? comm->ops->host_allgather(comm, &mine, all, sizeof mine) : TPD_FAIL(TPD_ERR_OOM, "out of memory");
  for (int r = 0; g == TPD_OK && r < comm->size; r++) {
    if (all[r].status == TPD_OK) continue;
    all[r].msg[sizeof all[r].msg - 1] = 0;
    g = (tpd_status)all[r].status;
    if (r != comm->rank) TPD_FAIL(g, "rank %d could not create its engine: %s", r, all[r].msg);
  }
  /* (nothing differs for f32 and f16 weights: their matmuls read f32 either way) */
  if (g == TPD_OK && comm->rank == 0 && first_f32 >= 0 && first_bf16 >= 0 && info.weight_dtype == TPD_BF16)
    TPD_WARN("activations auto: rank %d chose bf16 matmul inputs and rank %d f32; every rank takes f32 "
             "(--activations or TPD_CPU_BF16_DOT sets one choice for all)", first_bf16, first_f32);
  for (int r = 1; g == TPD_OK && comm->rank == 0 && r < comm->size; r++) {
    all[r].kernels[sizeof all[r].kernels - 1] = 0;
    if (!strcmp(all[r].kernels, all[0].kernels)) continue;
    TPD_WARN("rank %d runs kernels %s, rank 0 %s: the ranks' roundings differ (on CPUs TPD_CPU_ISA caps the "
             "level of all)", r, all[r].kernels, all[0].kernels);
    break; /* the first is enough to say so */
  }
  free(all);
  if (g != TPD_OK) {
    tpd_engine_destroy(*out); /* not live: a leader sends nothing */
    *out = NULL;
  } else {
    (*out)->live = 1;
  }
  return g;
}

void tpd_engine_destroy(tpd_engine *e) {
  if (!e) return;
  if (e->live && e->mode == TPD_MODE_LEADER && e->comm->rank == 0 && !e->shut_down && !e->unusable &&
      tpd_engine_shutdown(e) != TPD_OK)
    TPD_WARN("could not tell the followers to shut down: %s", tpd_last_error());
  if (e->graphs) {
    for (int i = 0; i <= e->kv.max_slots; i++)
      if (e->graphs[i] && e->be && e->be->ops->graph_destroy) e->be->ops->graph_destroy(e->be, e->graphs[i]);
    free(e->graphs);
  }
  if (e->be) {
    const tpd_backend_ops *b = e->be->ops;
    if (e->layers)
      for (int l = 0; l < e->cfg.n_layers; l++) {
        layer_w *L = &e->layers[l];
        b->free(e->be, (void *)L->qkv.data);
        b->free(e->be, (void *)L->o.data);
        b->free(e->be, (void *)L->gu.data);
        b->free(e->be, (void *)L->down.data);
        b->free(e->be, L->ln1);
        b->free(e->be, L->ln2);
        b->free(e->be, L->b_qkv);
        b->free(e->be, L->b_o);
        b->free(e->be, L->b_gu);
        b->free(e->be, L->b_down);
      }
    b->free(e->be, e->final_norm);
    b->free(e->be, (void *)e->lm_head.data);
    tpd_mem_free(e);
    tpd_backend_destroy(e->be);
  }
  tpd_mem_free(e); /* the host arena, when the backend was never made */
  free(e->layers);
  tpd_kv_free(&e->kv);             /* its memory is in the host arena */
  tpd_sampler_scratch_free(&e->ss); /* likewise */
  tpd_st_close(e->st);
  free(e);
}

const tpd_model_config *tpd_engine_config(const tpd_engine *e) { return &e->cfg; }
tpd_comm *tpd_engine_comm(const tpd_engine *e) { return e->comm; }
int tpd_engine_max_ctx(const tpd_engine *e) { return e->kv.max_ctx; }
