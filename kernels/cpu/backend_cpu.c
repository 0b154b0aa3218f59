/* The CPU backend: host memory, fp32 activations, an f32 or bf16 KV cache
 * (tpd_backend_opts.kv_cache), weights kept
 * in their file dtype, a persistent thread pool. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/mm_tile.h"

static void cpu_destroy(tpd_backend *be) {
  tpd_cpu *cpu = be->impl;
  if (cpu) {
    tpd_pool_destroy(cpu->pool);
    tpd_cpu_free(cpu->scratch);
    tpd_cpu_free(cpu->att);
    free(cpu);
  }
  free(be);
}

static tpd_status cpu_alloc(tpd_backend *be, size_t n_bytes, void **out) {
  (void)be;
  *out = tpd_cpu_alloc(n_bytes);
  if (!*out) return TPD_FAIL(TPD_ERR_OOM, "out of host memory allocating %zu bytes", n_bytes);
  return TPD_OK;
}

static void cpu_free(tpd_backend *be, void *p) {
  (void)be;
  tpd_cpu_free(p);
}

static tpd_status cpu_copy(tpd_backend *be, void *dst, const void *src, size_t n_bytes) {
  (void)be;
  if (n_bytes) memmove(dst, src, n_bytes);
  return TPD_OK;
}

static tpd_status cpu_zero(tpd_backend *be, void *dst, size_t n_bytes) {
  (void)be;
  memset(dst, 0, n_bytes);
  return TPD_OK;
}

static tpd_status cpu_sync(tpd_backend *be) {
  (void)be;
  return TPD_OK;
}

static void *cpu_stream(tpd_backend *be) {
  (void)be;
  return NULL;
}

static tpd_status cpu_load_weight(tpd_backend *be, const void *host, tpd_dtype dtype, int n_rows, int n_cols,
                                  tpd_weight *out) {
  void *p = NULL;
  TPD_TRY(cpu_alloc(be, tpd_tiled_elems(n_rows, n_cols) * tpd_dtype_size(dtype), &p));
  tpd_tile_weight(p, host, dtype, n_rows, n_cols);
  out->data = p;
  out->dtype = dtype;
  out->n_rows = n_rows;
  out->n_cols = n_cols;
  return TPD_OK;
}

static tpd_status cpu_weight_view(tpd_backend *be, const tpd_weight *w, int row0, int n_rows, tpd_weight *out) {
  (void)be;
  if (row0 % TPD_PANEL || row0 < 0 || n_rows < 1 || row0 + n_rows > w->n_rows)
    return TPD_FAIL(TPD_ERR_INTERNAL, "weight view [%d, +%d) of %d rows", row0, n_rows, w->n_rows);
  *out = *w;
  out->data = (const char *)w->data + (size_t)row0 * tpd_tile_kp(w->n_cols) * tpd_dtype_size(w->dtype);
  out->n_rows = n_rows;
  return TPD_OK;
}

/* The workspaces for every step within the plan: the matmul scratch (x
 * rounded to bf16, where this backend's bf16 dot path may run) and the
 * attention workspace (kernels/cpu/matmul.c, attention.h). */
static void plan_sizes(const tpd_backend_plan *p, int n_threads, int bf16_dot, size_t *scratch, tpd_att_sizes *att) {
  const tpd_isa isa = tpd_isa_active();
  size_t need = 0;
  for (int i = 0; i < p->n_k && bf16_dot && isa >= TPD_ISA_AVX512BF16; i++) { /* at AMX's padding, which covers the other's */
    const size_t Mp = (size_t)tpd_amx_rows(p->max_rows) * (size_t)tpd_amx_ld(tpd_tile_kp(p->k[i]));
    if (Mp * sizeof(uint16_t) > need) need = Mp * sizeof(uint16_t);
  }
  *scratch = need;
  tpd_att_sizes_for(p->max_rows, p->max_ctx, p->n_q_heads, p->n_kv_heads, p->head_dim, n_threads, att);
}

static tpd_status cpu_reserve(tpd_backend *be, const tpd_backend_plan *p, int commit, size_t *n_bytes) {
  tpd_cpu *cpu = be->impl;
  size_t scratch = 0;
  tpd_att_sizes att;
  plan_sizes(p, tpd_pool_size(cpu->pool), cpu->bf16_dot, &scratch, &att);
  *n_bytes = scratch + att.total_bytes;
  if (!commit) return TPD_OK;
  tpd_cpu_free(cpu->scratch);
  cpu->scratch = scratch ? tpd_cpu_alloc(scratch) : NULL;
  cpu->scratch_bytes = cpu->scratch ? scratch : 0;
  if ((scratch && !cpu->scratch) || tpd_cpu_att_alloc(cpu, &att) != TPD_OK)
    return TPD_FAIL(TPD_ERR_OOM, "out of memory for the cpu workspaces (%zu bytes)", *n_bytes);
  cpu->planned = 1;
  return TPD_OK;
}

static const tpd_backend_ops cpu_ops = {
    .name = "cpu",
    .act_dtype = TPD_F32,
    .host_memory = 1,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .zero = cpu_zero,
    .synchronize = cpu_sync,
    .stream = cpu_stream,
    .load_weight = cpu_load_weight,
    .matmul = tpd_cpu_matmul,
    .rmsnorm = tpd_cpu_rmsnorm,
    .rope_kv = tpd_cpu_rope_kv,
    .attention = tpd_cpu_attention,
    .swiglu = tpd_cpu_swiglu,
    .gather_rows = tpd_cpu_gather_rows,
    .argmax = tpd_cpu_argmax,
    .logit_stats = tpd_cpu_logit_stats,
    .weight_view = cpu_weight_view,
    .reserve = cpu_reserve,
};

/* The environment's CPU settings, checked before anything starts: a value
 * the kernels do not implement is an error naming it, never a default.  The
 * kernels read each later through the same reader (kernels/cpu/cpu_isa.h,
 * pool.h), so they run with what was accepted here; the bf16 choice is the
 * backend's own (choose_bf16_dot).  *env_dot: TPD_CPU_BF16_DOT, -1 unset;
 * *level: the kernels' level (TPD_CPU_ISA's cap, or a test's
 * tpd_isa_force), *best: the CPU's. */
static tpd_status check_env(int *env_dot, tpd_isa *level, tpd_isa *best) {
  *best = tpd_isa_detect();
  tpd_isa cap = *best;
  int on, n_bytes;
  long spin_us;
  TPD_TRY(tpd_isa_env(&cap));
  TPD_TRY(tpd_cpu_bf16_dot_env(env_dot));
  const tpd_isa active = tpd_isa_active();
  *level = cap < *best ? cap : *best;
  if (active < *level) *level = active;
  TPD_TRY(tpd_cpu_prefetch_env(&n_bytes));
  TPD_TRY(tpd_cpu_att_blocks_env(&on));
  TPD_TRY(tpd_pool_env(&spin_us, &on));
  return TPD_OK;
}

/* What the kernels run for bf16 weights: the level's name, except that
 * AMX runs only with bf16 activations ("amx-bf16", the OS's grant asked
 * here; without them the amx level runs the avx512bf16 kernels), and the
 * vdpbf16ps path is "avx512bf16-dot".  F32 and F16 weights always take the
 * f32 kernels of the level (the engine reports those for such checkpoints). */
static const char *kernels_name(tpd_isa isa, int bf16_dot) {
  if (isa >= TPD_ISA_AVX512BF16 && bf16_dot)
    return isa >= TPD_ISA_AMX && tpd_amx_grant() ? "amx-bf16" : "avx512bf16-dot";
  return tpd_isa_name(isa >= TPD_ISA_AMX ? TPD_ISA_AVX512BF16 : isa);
}

/* Whether bf16 weights' matmuls round their input to bf16
 * (tpd_backend_opts.activations): asked ("bf16", refused where the level
 * has no bf16 dot products; "f32"), or auto: TPD_CPU_BF16_DOT (1 refused
 * likewise), else the rate probe (tpd_cpu_bf16_dot_speedup).  *measured: the probe
 * chose. */
static tpd_status choose_bf16_dot(const char *a, int env_dot, tpd_isa level, tpd_isa best, int *on, int *measured) {
  const char *why = level < best ? "capped by TPD_CPU_ISA" : "this CPU's best";
  *measured = 0;
  if (!a || !strcmp(a, "auto")) {
    if (env_dot == 1 && level < TPD_ISA_AVX512BF16) /* asked for, and nothing here would do it */
      return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                      "TPD_CPU_BF16_DOT=1: bf16 dot products need AVX512-BF16 or AMX-BF16, and the CPU kernels run at "
                      "level %s (%s); unset it or set 0 for f32 FMA",
                      tpd_isa_name(level), why);
    *on = level >= TPD_ISA_AVX512BF16 &&
          (env_dot >= 0 ? env_dot : tpd_cpu_bf16_dot_speedup() >= TPD_CPU_BF16_AUTO_MIN);
    *measured = env_dot < 0 && level >= TPD_ISA_AVX512BF16;
    return TPD_OK;
  }
  tpd_backend_opts o = {.activations = a};
  tpd_dtype want;
  TPD_TRY(tpd_backend_activations("cpu", &o, &want));
  if (want == TPD_BF16 && level < TPD_ISA_AVX512BF16)
    return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                    "activations 'bf16' on the cpu backend need AVX512-BF16 or AMX-BF16 dot products, and the CPU "
                    "kernels run at level %s (%s); use f32 or auto",
                    tpd_isa_name(level), why);
  *on = want == TPD_BF16;
  return TPD_OK;
}

tpd_status tpd_backend_cpu_auto_activations(tpd_dtype *out) {
  int env_dot, on = 0, measured;
  tpd_isa level, best;
  TPD_TRY(check_env(&env_dot, &level, &best));
  TPD_TRY(choose_bf16_dot(NULL, env_dot, level, best, &on, &measured));
  *out = on ? TPD_BF16 : TPD_F32;
  if (measured)
    TPD_INFO("cpu activations auto: %s (bf16 weights' matmul inputs; vdpbf16ps measured at %.2fx the f32 FMA rate, "
             "the threshold %.1f)", on ? "bf16" : "f32", tpd_cpu_bf16_dot_speedup(), TPD_CPU_BF16_AUTO_MIN);
  return TPD_OK;
}

tpd_status tpd_backend_cpu_create(const tpd_backend_opts *opts, tpd_backend **out) {
  *out = NULL;
  int env_dot; /* what TPD_CPU_BF16_DOT asks: -1 (unset) the rate probe chooses */
  tpd_isa level, best;
  TPD_TRY(check_env(&env_dot, &level, &best));
  int bf16_dot = 0, measured = 0;
  TPD_TRY(choose_bf16_dot(opts ? opts->activations : NULL, env_dot, level, best, &bf16_dot, &measured));
  tpd_dtype kv;
  TPD_TRY(tpd_backend_kv_cache("cpu", opts, TPD_F32, &kv));
  int n = opts && opts->n_threads > 0 ? opts->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  tpd_backend *be = calloc(1, sizeof *be);
  tpd_cpu *cpu = calloc(1, sizeof *cpu);
  if (!be || !cpu) {
    free(be);
    free(cpu);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  }
  be->ops = &cpu_ops;
  be->impl = cpu;
  be->kv_dtype = kv;
  be->matmul_act_dtype = bf16_dot ? TPD_BF16 : TPD_F32;
  cpu->bf16_dot = bf16_dot;
  be->kernels = kernels_name(level, bf16_dot);
  be->kernels_f32 = kernels_name(level, 0);
  cpu->pool = tpd_pool_create(n);
  if (!cpu->pool) {
    cpu_destroy(be);
    return TPD_FAIL(TPD_ERR_OOM, "cannot start %d CPU threads", n);
  }
  if (measured)
    TPD_INFO("cpu backend: %d threads, kernels %s for bf16 weights (%s activations, vdpbf16ps measured at %.2fx the "
             "f32 FMA rate, the threshold %.1f; --activations or TPD_CPU_BF16_DOT sets them), %s for others, KV "
             "cache %s",
             n, be->kernels, bf16_dot ? "bf16" : "f32", tpd_cpu_bf16_dot_speedup(), TPD_CPU_BF16_AUTO_MIN,
             be->kernels_f32, tpd_dtype_name(kv));
  else
    TPD_INFO("cpu backend: %d threads, kernels %s for bf16 weights, %s for others, KV cache %s", n, be->kernels,
             be->kernels_f32, tpd_dtype_name(kv));
  *out = be;
  return TPD_OK;
}
