/* Every CUDA op against its CPU twin (kernels/cpu), on fresh random inputs
 * (never zeros), with the GPU output poisoned (0xFF bytes, NaN) before each
 * run so that unwritten elements show, padding columns checked to stay
 * untouched, and the normalised error ||out - ref|| / ||ref|| held to the
 * bound of the activation dtype:
 *   bf16 activations (the default): inputs are bf16-exact, TOL_BF16 = 1e-2
 *   f32 activations (activations "f32"): inputs are NOT bf16-exact, so any
 *     kernel that rounded an activation to bf16 would show at ~2^-9; the
 *     bound TOL_F32 is fp32 summation-order noise (see below).
 * Shapes have tails (odd N, K not a multiple of 8 or 32), strides wider than
 * the rows, decode (T = 1 per sequence) and prefill (T > 1), GQA groups 1, 2,
 * 4 and 8, sliding windows, several KV blocks per sequence.  The matmuls run
 * three ways: default crossover, GEMV up to 16 rows (TPD_GEMV_MAX_M=16) and
 * cuBLASLt for every M (TPD_GEMV_MAX_M=0).
 *
 * Also: the attention split plan (attention_split.h) -- a context of 2000
 * live positions at max_ctx 131072 must not be walked by one block per KV
 * head -- and attention at (max_ctx, live length) pairs around the split
 * size, graph replays of one attention capture at growing live lengths, the
 * activations option of backend creation, and TPD_CUDA_SYNC=1 naming the
 * kernel that faulted.  Exit 77 when no CUDA device is present.
 *
 * One program in four files: this one (backend options, memory, the
 * TPD_CUDA_SYNC fault, the order of the checks), test_gpu_ops_dense.c
 * (matmul, fused gate/up + SwiGLU, rmsnorm, SwiGLU, gather, argmax),
 * test_gpu_ops_logit.c (logit_stats) and
 * test_gpu_ops_attention.c (rope + KV append, attention, the split plan);
 * test_gpu_ops.h holds the tolerances and input helpers they share. */
#include "tests/gpu/test_gpu_ops.h"

static const char *PROG = "test_gpu_ops";

static tpd_backend *make_gpu(const char *gemv_max_m, const char *activations) {
  if (gemv_max_m) setenv("TPD_GEMV_MAX_M", gemv_max_m, 1);
  else unsetenv("TPD_GEMV_MAX_M");
  tpd_backend_opts o = {.n_threads = 0, .device = -1, .local_rank = 0, .activations = activations};
  tpd_backend *be = NULL;
  TU_TRY(tpd_backend_create("cuda", &o, &be));
  unsetenv("TPD_GEMV_MAX_M");
  return be;
}

static void test_memory(tpd_backend *gpu) {
  const size_t n = 10007;
  unsigned char *h = tu_malloc(n), *back = tu_malloc(n);
  for (size_t i = 0; i < n; i++) h[i] = (unsigned char)(tu_next() | 1);
  void *d = tu_dev_poison(gpu, n);
  TU_TRY(gpu->ops->upload(gpu, d, h, n));
  TU_TRY(gpu->ops->download(gpu, back, d, n));
  tu_expect(memcmp(h, back, n) == 0, "upload / download round trip");
  TU_TRY(gpu->ops->zero(gpu, (char *)d + 13, n - 20));
  TU_TRY(gpu->ops->download(gpu, back, d, n));
  int ok = memcmp(back, h, 13) == 0 && memcmp(back + n - 7, h + n - 7, 7) == 0;
  for (size_t i = 13; i < n - 7; i++) ok &= back[i] == 0;
  tu_expect(ok, "zero of an unaligned range");
  gpu->ops->free(gpu, d);
  free(h), free(back);
}

/* The activations option: each value gives its dtype (the KV cache too);
 * an unknown value, and bf16 on the cpu backend, are errors naming it. */
static void test_activations_option(void) {
  struct { const char *backend, *value; tpd_status want; tpd_dtype dt; } cases[] = {
      {"cuda", NULL, TPD_OK, TPD_BF16},     {"cuda", "auto", TPD_OK, TPD_BF16},
      {"cuda", "bf16", TPD_OK, TPD_BF16},   {"cuda", "f32", TPD_OK, TPD_F32},
      {"cuda", "fp8", TPD_ERR_ARG, TPD_F32}, {"cpu", NULL, TPD_OK, TPD_F32},
      {"cpu", "f32", TPD_OK, TPD_F32},      {"cpu", "bf16", TPD_ERR_UNSUPPORTED, TPD_F32},
      {"cpu", "F32 ", TPD_ERR_ARG, TPD_F32},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tpd_backend_opts o = {.n_threads = 1, .device = -1, .local_rank = 0, .activations = cases[i].value};
    tpd_backend *be = NULL;
    tpd_clear_error();
    const tpd_status st = tpd_backend_create(cases[i].backend, &o, &be);
    int ok = st == cases[i].want;
    if (st == TPD_OK) ok = ok && be->ops->act_dtype == cases[i].dt && be->kv_dtype == cases[i].dt;
    else ok = ok && !be && strstr(tpd_last_error(), cases[i].value) != NULL && !strchr(tpd_last_error(), '\n');
    char what[300];
    snprintf(what, sizeof what, "backend %s, activations %s%s%s -> %s%s%s", cases[i].backend,
             cases[i].value ? "'" : "", cases[i].value ? cases[i].value : "NULL", cases[i].value ? "'" : "",
             st == TPD_OK ? tpd_dtype_name(be->ops->act_dtype) : tpd_status_name(st), st == TPD_OK ? "" : ": ",
             st == TPD_OK ? "" : tpd_last_error());
    tu_expect(ok, what);
    tpd_backend_destroy(be);
  }
}

/* bug 4: a kernel that faults while running.  Without TPD_CUDA_SYNC the
 * launch reports success and the fault surfaces at the next copy, blamed on
 * that copy; with TPD_CUDA_SYNC=1 the op that launched it fails, naming the
 * kernel and its launcher's file:line.  Under the emulation the fault is
 * injected (emu_fault_next_launch) into an rmsnorm; on a GPU a gather of a
 * row far outside its buffer makes a real one, which leaves the CUDA context
 * unusable, so that case runs last. */
static tpd_backend *make_sync_gpu(const char *activations) {
  setenv("TPD_CUDA_SYNC", "1", 1);
  tpd_backend *be = make_gpu(NULL, activations);
  unsetenv("TPD_CUDA_SYNC");
  return be;
}

#ifdef TPD_CUDA_EMU
static tpd_status rmsnorm_once(tpd_backend *gpu, void *dx, float *dw, void *dy, int D) {
  tpd_rmsnorm_args a = {1, D, dx, NULL, dw, 1e-5f, dy};
  return gpu->ops->rmsnorm(gpu, &a);
}

static void test_sync_fault(tpd_backend *gpu) {
  const int D = 256;
  float *x = tu_malloc(sizeof(float) * D), *w = tu_malloc(sizeof(float) * D), *back = tu_malloc(sizeof(float) * D);
  tu_fill_bf16(x, D, 1.0f);
  for (int i = 0; i < D; i++) w[i] = 1.0f + raw_uniform(0.5f);
  /* the default backend: the fault is blamed on the copy after it */
  {
    void *dx = tu_dev_from(gpu, x, D, TPD_BF16), *dy = tu_dev_poison(gpu, (size_t)D * 2);
    float *dw = (float *)tu_dev_from(gpu, w, D, TPD_F32);
    emu_fault_next_launch();
    const tpd_status launched = rmsnorm_once(gpu, dx, dw, dy, D);
    tpd_clear_error();
    const tpd_status copied = gpu->ops->download(gpu, back, dy, (size_t)D * 2);
    char what[600];
    snprintf(what, sizeof what, "without TPD_CUDA_SYNC a faulting rmsnorm returns %s, the next copy %s: %s",
             tpd_status_name(launched), tpd_status_name(copied), tpd_last_error());
    tu_expect(launched == TPD_OK && copied == TPD_ERR_DEVICE && !strstr(tpd_last_error(), "rmsnorm"), what);
    gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy), gpu->ops->free(gpu, dw);
  }
  /* TPD_CUDA_SYNC=1: the rmsnorm itself fails, naming its kernel */
  {
    tpd_backend *sg = make_sync_gpu(NULL);
    void *dx = tu_dev_from(sg, x, D, TPD_BF16), *dy = tu_dev_poison(sg, (size_t)D * 2);
    float *dw = (float *)tu_dev_from(sg, w, D, TPD_F32);
    emu_fault_next_launch();
    tpd_clear_error();
    const tpd_status launched = rmsnorm_once(sg, dx, dw, dy, D);
    char what[600];
    snprintf(what, sizeof what, "TPD_CUDA_SYNC=1: a faulting rmsnorm fails itself: %s: %s", tpd_status_name(launched),
             tpd_last_error());
    tu_expect(launched == TPD_ERR_DEVICE && strstr(tpd_last_error(), "rmsnorm_kernel<bf16>") &&
                  strstr(tpd_last_error(), "kernels/cuda/rmsnorm.cu:") &&
                  strstr(tpd_last_error(), "failed while running") && !strchr(tpd_last_error(), '\n'),
              what);
    /* and without a fault the same op runs and is right */
    TU_TRY(rmsnorm_once(sg, dx, dw, dy, D));
    float *y = tu_host_from(sg, dy, D, TPD_BF16), *ref = tu_malloc(sizeof(float) * D);
    double ss = 0;
    for (int i = 0; i < D; i++) ss += (double)x[i] * x[i];
    for (int i = 0; i < D; i++) ref[i] = (float)(x[i] / sqrt(ss / D + 1e-5) * w[i]);
    tu_report("TPD_CUDA_SYNC=1: rmsnorm without a fault vs float64", tu_compare(y, D, ref, D, 1, D), TOL_BF16);
    sg->ops->free(sg, dx), sg->ops->free(sg, dy), sg->ops->free(sg, dw);
    free(y), free(ref);
    tpd_backend_destroy(sg);
  }
  free(x), free(w), free(back);
}
#else
/* Real GPU: leaves the context broken; the caller exits right after. */
static void test_sync_fault_last(void) {
  if (tu_planned_faults_off("TPD_CUDA_SYNC=1: a gather far out of bounds fails itself")) return;
  tpd_backend *sg = make_sync_gpu(NULL);
  const int D = 1000;
  void *dsrc = NULL, *ddst = NULL;
  TU_TRY(sg->ops->alloc(sg, (size_t)D * 2, &dsrc));
  TU_TRY(sg->ops->alloc(sg, (size_t)D * 2, &ddst));
  const int32_t rows[1] = {1 << 28}; /* 512 GB past the buffer */
  tpd_clear_error();
  const tpd_status st = sg->ops->gather_rows(sg, ddst, dsrc, rows, 1, D);
  char what[600];
  snprintf(what, sizeof what, "TPD_CUDA_SYNC=1: a gather far out of bounds fails itself: %s: %s", tpd_status_name(st),
           tpd_last_error());
  tu_expect(st == TPD_ERR_DEVICE && strstr(tpd_last_error(), "gather_rows_kernel") &&
                strstr(tpd_last_error(), "kernels/cuda/gather_rows.cu:"),
            what);
}
#endif

/* Every op of one backend (its activation dtype) against the CPU twin.
 * full = 0: a smaller set of shapes (the f32 mode). */
static void run_ops(tpd_backend *cpu, tpd_backend *gpu, tpd_backend *gpu16, tpd_backend *gpu_lt, int full) {
  run_dense_ops(cpu, gpu, gpu16, gpu_lt, full);
  run_logit_ops(cpu, gpu, full);
  run_attention_ops(cpu, gpu, full);
}

int main(void) {
  tu_require_gpu(PROG);
  tu_seed(PROG);
  tpd_backend_opts co = {.n_threads = 2, .device = -1, .local_rank = 0};
  tpd_backend *cpu = NULL;
  TU_TRY(tpd_backend_cpu_create(&co, &cpu));
  test_activations_option();
  test_attention_plan();

  tpd_backend *gpu = make_gpu(NULL, NULL), *gpu16 = make_gpu("16", NULL), *gpu_lt = make_gpu("0", NULL);
  tu_expect(!strcmp(gpu->ops->name, "cuda") && gpu->ops->act_dtype == TPD_BF16 && gpu->kv_dtype == TPD_BF16 &&
                !gpu->ops->host_memory && gpu->ops->stream(gpu) && gpu->ops->comm_stream &&
                gpu->ops->matmul_swiglu && gpu->ops->graph_begin,
            "ops table: cuda, bf16 activations and KV by default, device memory, every optional op");
  test_memory(gpu);
  run_ops(cpu, gpu, gpu16, gpu_lt, 1);
#ifdef TPD_CUDA_EMU
  test_sync_fault(gpu);
#endif
  tpd_backend_destroy(gpu_lt);
  tpd_backend_destroy(gpu16);
  tpd_backend_destroy(gpu);

  /* the attention's other schedule (2 positions per warp and round) and a
   * value it refuses */
  for (int a = 0; a < 2; a++) {
    setenv("TPD_ATT_PP", "2", 1);
    gpu = make_gpu(NULL, a ? "f32" : NULL);
    unsetenv("TPD_ATT_PP");
    printf("     TPD_ATT_PP=2, %s activations:\n", a ? "f32" : "bf16");
    run_attention_ops(cpu, gpu, 0);
    tpd_backend_destroy(gpu);
  }
  {
    setenv("TPD_ATT_PP", "3", 1);
    tpd_backend_opts o = {.n_threads = 0, .device = -1, .local_rank = 0};
    tpd_backend *bad = NULL;
    tpd_clear_error();
    const tpd_status st = tpd_backend_create("cuda", &o, &bad);
    unsetenv("TPD_ATT_PP");
    tu_expect(st == TPD_ERR_ARG && !bad && strstr(tpd_last_error(), "TPD_ATT_PP=3"),
              "TPD_ATT_PP=3 is refused by name");
    tpd_clear_error();
    const char *bad_env[][2] = {{"TPD_GEMV_MAX_M", "17"}, {"TPD_GEMV_MAX_M", "1e3"}, {"TPD_ATT_PP", "two"},
                                {"TPD_ATT_PP", "4x"}, {"TPD_ATT_PP", "8"}};
    for (size_t i = 0; i < sizeof bad_env / sizeof bad_env[0]; i++) {
      char want[64], what[128];
      snprintf(want, sizeof want, "%s=%s", bad_env[i][0], bad_env[i][1]);
      setenv(bad_env[i][0], bad_env[i][1], 1);
      const tpd_status sg = tpd_backend_create("cuda", &o, &bad);
      unsetenv(bad_env[i][0]);
      snprintf(what, sizeof what, "%s is refused by name", want);
      tu_expect(sg == TPD_ERR_ARG && !bad && strstr(tpd_last_error(), want), what);
      tpd_clear_error();
    }
  }

  /* the float32-activation mode: every op again, inputs not bf16-exact */
  gpu = make_gpu(NULL, "f32"), gpu16 = make_gpu("16", "f32"), gpu_lt = make_gpu("0", "f32");
  tu_expect(gpu->ops->act_dtype == TPD_F32 && gpu->kv_dtype == TPD_F32, "ops table: f32 activations and KV");
  run_ops(cpu, gpu, gpu16, gpu_lt, 0);
  tpd_backend_destroy(gpu_lt);
  tpd_backend_destroy(gpu16);
  tpd_backend_destroy(gpu);
#ifndef TPD_CUDA_EMU
  test_sync_fault_last(); /* breaks the CUDA context: nothing on the device after it */
  tpd_backend_destroy(cpu);
  return tu_finish(PROG);
#else
  tpd_backend_destroy(cpu);
  return tu_finish(PROG);
#endif
}
