/* tpd-gpu-bw: the bandwidth ceilings of this GPU and the bandwidth the
 * decode matmuls reach, for tests/gpu/device_check.sh.
 *
 *   tpd-gpu-bw read [MB]     read-only probe: every 16-byte word of an MB
 *                            buffer (default 4096: far above the L2) read
 *                            once with wide loads, XOR-reduced into one word
 *                            per warp (a few KB written).  Decode streams
 *                            weights it only reads, so this, not the copy,
 *                            is its ceiling.  Several launch shapes and two
 *                            load flavours (__ldg; ld.global.nc with
 *                            L1::no_allocate, the GEMV's); prints each
 *                            variant's median and last `read_gbs <best>`.
 *   tpd-gpu-bw copy [MB]     device-to-device copy, read + write counted:
 *                            `copy_gbs <median>`.
 *   tpd-gpu-bw gemv [--tp LIST] [--batch LIST] [--read-gbs X] [--activations f32|bf16] [--tiny]
 *                            the backend's matmul (and the fused gate/up +
 *                            SwiGLU) at the Llama-3.1-8B shapes of each TP
 *                            degree (default 1,2,8) and batch (default
 *                            1,8,64): CSV rows
 *                              gemv,tp,op,M,N,K,path,us,gbs,frac_of_read
 *                            us = median time per call inside a captured
 *                            graph of back-to-back calls (decode replays
 *                            graphs), gbs = (weight + X + Y bytes) / us,
 *                            frac_of_read = gbs / --read-gbs.  Weights
 *                            rotate over enough copies to make each pass
 *                            >= 512 MB, so no call finds its weight in the
 *                            L2.  --tiny: small shapes (the CPU emulation).
 * Random data everywhere (never zeros).  Exit 77 when no CUDA device is
 * present, 1 on any error. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "runtime/base/dtype.h"
#include "runtime/base/error.h"
#define TU_WITH_CUDA /* TU_TRY, TU_CUDA, tu_malloc, tu_require_gpu */
#include "tests/testutil.h"

static const char *PROG = "tpd-gpu-bw";

/* ---- kernels ---- */

static __device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return (uint32_t)x;
}

/* p[i] = hash(seed, i): never all zeros */
__global__ void fill_kernel(uint32_t *p, size_t n, uint64_t seed) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    p[i] = hash32(seed * 0x9e3779b97f4a7c15ull + i) | 1u;
}

template <int NC>
static __device__ __forceinline__ uint4 load16(const uint4 *p) {
#ifdef TPD_CUDA_EMU /* the CPU emulation has no PTX */
  return __ldg(p);
#else
  if (NC) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
  }
  return __ldg(p);
#endif
}

/* Grid-stride read of n16 16-byte words, U independent loads in flight per
 * thread; one XOR word per warp goes to out[global warp]. */
template <int U, int NC>
__global__ void read_kernel(const uint4 *p, size_t n16, uint32_t *out) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  uint32_t acc = 0;
  for (; i + (size_t)(U - 1) * stride < n16; i += (size_t)U * stride) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; u++) v[u] = load16<NC>(p + i + (size_t)u * stride);
#pragma unroll
    for (int u = 0; u < U; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n16; i += stride) {
    const uint4 v = load16<NC>(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  for (int o = 16; o > 0; o >>= 1) acc ^= (uint32_t)__shfl_xor_sync(0xffffffffu, (int)acc, o);
  if ((threadIdx.x & 31) == 0) out[((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5] = acc;
}

/* ---- helpers ---- */

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof v[0], cmp_double);
  return v[n / 2];
}

static void fill_device(void *p, size_t n_bytes, uint64_t seed, cudaStream_t s) {
  fill_kernel<<<256, 256, 0, s>>>((uint32_t *)p, n_bytes / 4, seed);
  TU_CUDA(cudaGetLastError());
}

static int parse_list(const char *v, int *out, int cap) {
  int n = 0;
  while (*v && n < cap) {
    char *end = NULL;
    const long x = strtol(v, &end, 10);
    if (end == v || x < 1 || x > 1 << 20) {
      fprintf(stderr, "%s: bad list '%s' (comma-separated positive integers)\n", PROG, v);
      exit(1);
    }
    out[n++] = (int)x;
    v = *end == ',' ? end + 1 : end;
  }
  return n;
}

/* ---- read ---- */

typedef void (*read_fn)(const uint4 *, size_t, uint32_t *);

static int cmd_read(size_t mb, int tiny) {
  const size_t n_bytes = mb << 20, n16 = n_bytes / 16;
  cudaDeviceProp prop;
  TU_CUDA(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  void *buf = NULL;
  uint32_t *out = NULL;
  TU_CUDA(cudaMalloc(&buf, n_bytes));
  fill_device(buf, n_bytes, 12345, 0);
  struct variant {
    const char *name;
    read_fn fn;
    int threads, blocks_per_sm;
  } vs[] = {
      {"ldg u4 512x4", read_kernel<4, 0>, 512, 4},       {"ldg u8 512x4", read_kernel<8, 0>, 512, 4},
      {"nc  u4 512x4", read_kernel<4, 1>, 512, 4},       {"nc  u8 512x4", read_kernel<8, 1>, 512, 4},
      {"nc  u4 1024x2", read_kernel<4, 1>, 1024, 2},     {"nc  u8 256x8", read_kernel<8, 1>, 256, 8},
      {"ldg u4 256x8", read_kernel<4, 0>, 256, 8},       {"nc  u16 512x2", read_kernel<16, 1>, 512, 2},
  };
  const int n_var = tiny ? 2 : (int)(sizeof vs / sizeof vs[0]);
  size_t max_warps = 0;
  for (int v = 0; v < n_var; v++) {
    const size_t w = (size_t)(tiny ? 2 : sms * vs[v].blocks_per_sm) * (size_t)(tiny ? 64 : vs[v].threads) / 32;
    if (w > max_warps) max_warps = w;
  }
  TU_CUDA(cudaMalloc((void **)&out, max_warps * sizeof(uint32_t)));
  cudaEvent_t e0, e1;
  TU_CUDA(cudaEventCreate(&e0));
  TU_CUDA(cudaEventCreate(&e1));
  const int WARM = tiny ? 1 : 2, REPS = tiny ? 3 : 11;
  double best = 0;
  printf("read probe: %zu MB, %d SMs, median of %d after %d warm-ups\n", mb, sms, REPS, WARM);
  for (int v = 0; v < n_var; v++) {
    const int threads = tiny ? 64 : vs[v].threads, blocks = tiny ? 2 : sms * vs[v].blocks_per_sm;
    double gbs[11];
    for (int r = 0; r < WARM + REPS; r++) {
      TU_CUDA(cudaEventRecord(e0, 0));
      const read_fn fn = vs[v].fn; /* a plain name before the launch (the emulation rewrites it) */
      fn<<<blocks, threads, 0, 0>>>((const uint4 *)buf, n16, out);
      TU_CUDA(cudaGetLastError());
      TU_CUDA(cudaEventRecord(e1, 0));
      TU_CUDA(cudaEventSynchronize(e1));
      float ms = 0;
      TU_CUDA(cudaEventElapsedTime(&ms, e0, e1));
      if (r >= WARM) gbs[r - WARM] = (double)n_bytes / (ms * 1e-3) / 1e9;
    }
    const double med = median(gbs, REPS);
    printf("read_variant %-14s %5d blocks x %4d threads: %8.1f GB/s (min %.1f, max %.1f)\n", vs[v].name, blocks, threads,
           med, gbs[0], gbs[REPS - 1]);
    if (med > best) best = med;
  }
  /* the result is used: a compiler may not drop the loads */
  uint32_t h = 0;
  TU_CUDA(cudaMemcpy(&h, out, sizeof h, cudaMemcpyDeviceToHost));
  printf("(checksum word %08x)\n", h);
  printf("read_gbs %.1f\n", best);
  TU_CUDA(cudaFree(buf));
  TU_CUDA(cudaFree(out));
  return 0;
}

/* ---- copy ---- */

static int cmd_copy(size_t mb) {
  const size_t n = mb << 20;
  void *a = NULL, *b = NULL;
  TU_CUDA(cudaMalloc(&a, n));
  TU_CUDA(cudaMalloc(&b, n));
  fill_device(a, n, 777, 0);
  fill_device(b, n, 778, 0);
  cudaEvent_t e0, e1;
  TU_CUDA(cudaEventCreate(&e0));
  TU_CUDA(cudaEventCreate(&e1));
  enum { WARM = 3, REPS = 15 };
  double gbs[REPS];
  for (int i = 0; i < WARM + REPS; i++) {
    TU_CUDA(cudaEventRecord(e0, 0));
    TU_CUDA(cudaMemcpyAsync(i & 1 ? a : b, i & 1 ? b : a, n, cudaMemcpyDeviceToDevice, 0));
    TU_CUDA(cudaEventRecord(e1, 0));
    TU_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    TU_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= WARM) gbs[i - WARM] = 2.0 * (double)n / (ms * 1e-3) / 1e9;
  }
  const double med = median(gbs, REPS);
  printf("copy: %zu MB device to device, read + write counted, median of %d (min %.1f, max %.1f)\n", mb, REPS, gbs[0],
         gbs[REPS - 1]);
  printf("copy_gbs %.1f\n", med);
  TU_CUDA(cudaFree(a));
  TU_CUDA(cudaFree(b));
  return 0;
}

/* ---- gemv ---- */

typedef struct {
  int dim, n_heads, n_kv_heads, head_dim, ffn, vocab;
} shape_model;

typedef struct {
  const char *op;
  int N, K, swiglu, logits;
} shape;

/* The per-rank matmuls of one layer and the LM head at TP degree P, as
 * runtime/model/shard.c cuts them (q/k/v stacked, gate/up stacked and fused). */
static shape mk_shape(const char *op, int N, int K, int swiglu, int logits) {
  shape s;
  s.op = op, s.N = N, s.K = K, s.swiglu = swiglu, s.logits = logits;
  return s;
}

static int shapes_of(const shape_model *m, int P, shape *out) {
  const int hq = m->n_heads / P, hkv = m->n_kv_heads >= P ? m->n_kv_heads / P : 1;
  const int f = (m->ffn + P - 1) / P;
  int n = 0;
  out[n++] = mk_shape("qkv", (hq + 2 * hkv) * m->head_dim, m->dim, 0, 0);
  out[n++] = mk_shape("o", m->dim, hq * m->head_dim, 0, 0);
  out[n++] = mk_shape("gate_up", 2 * f, m->dim, 1, 0);
  out[n++] = mk_shape("down", m->dim, f, 0, 0);
  out[n++] = mk_shape("lm_head", (m->vocab + P - 1) / P, m->dim, 0, 1);
  return n;
}

/* host bf16 random values in [-0.05, 0.05), xorshift */
static uint16_t *host_random_bf16(size_t n, uint64_t seed) {
  uint16_t *h = (uint16_t *)tu_malloc(n * 2);
  uint64_t s = seed | 1;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    const float u = (float)((s >> 11) * (1.0 / 9007199254740992.0));
    const float v = (2.0f * u - 1.0f) * 0.05f;
    h[i] = tpd_f32_to_bf16(v != 0.0f ? v : 0.01f);
  }
  return h;
}

static int cmd_gemv(int argc, char **argv) {
  int tps[8] = {1, 2, 8}, n_tp = 3, batches[16] = {1, 8, 64}, n_b = 3, tiny = 0;
  double read_gbs = 0;
  const char *act = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--tiny")) {
      tiny = 1;
      continue;
    }
    if (!v) {
      fprintf(stderr, "%s gemv: %s needs a value\n", PROG, a);
      return 1;
    }
    if (!strcmp(a, "--tp")) n_tp = parse_list(v, tps, 8);
    else if (!strcmp(a, "--batch")) n_b = parse_list(v, batches, 16);
    else if (!strcmp(a, "--read-gbs")) read_gbs = atof(v);
    else if (!strcmp(a, "--activations")) act = v;
    else {
      fprintf(stderr, "%s gemv: unknown option %s\n", PROG, a);
      return 1;
    }
    i++;
  }
  /* Llama-3.1-8B; --tiny: a small model of the same structure */
  const shape_model m8b = {4096, 32, 8, 128, 14336, 128256}, mtiny = {256, 8, 2, 32, 512, 1000};
  const shape_model *m = tiny ? &mtiny : &m8b;
  const size_t pass_bytes = tiny ? ((size_t)1 << 20) : ((size_t)512 << 20);
  const int max_copies = tiny ? 2 : 64, min_calls = tiny ? 2 : 32;

  tpd_backend_opts bo;
  memset(&bo, 0, sizeof bo);
  bo.n_threads = 1;
  bo.device = -1;
  bo.activations = act;
  tpd_backend *be = NULL;
  TU_TRY(tpd_backend_create("cuda", &bo, &be));
  const tpd_dtype at = be->ops->act_dtype;
  const size_t as = tpd_dtype_size(at);
  const long max_m = tpd_param_int("GEMV_MAX_M", TPD_GEMV_MAX_M_DEFAULT);
  cudaStream_t st = (cudaStream_t)be->ops->stream(be);

  /* one host buffer of random bf16 weights, as large as the largest weight */
  size_t max_w = 0;
  int max_b = 1;
  for (int t = 0; t < n_tp; t++) {
    shape sh[8];
    const int ns = shapes_of(m, tps[t], sh);
    for (int s = 0; s < ns; s++)
      if ((size_t)sh[s].N * sh[s].K > max_w) max_w = (size_t)sh[s].N * sh[s].K;
  }
  for (int b = 0; b < n_b; b++)
    if (batches[b] > max_b) max_b = batches[b];
  uint16_t *hw = host_random_bf16(max_w, 0x5eed);
  /* X and Y: random, large enough for every shape */
  const size_t max_k = (size_t)(m->ffn > m->dim ? m->ffn : m->dim) + 64;
  size_t max_n = 0;
  for (int t = 0; t < n_tp; t++) {
    shape sh[8];
    const int ns = shapes_of(m, tps[t], sh);
    for (int s = 0; s < ns; s++)
      if ((size_t)sh[s].N > max_n) max_n = (size_t)sh[s].N;
  }
  void *dx = NULL, *dy = NULL;
  TU_TRY(be->ops->alloc(be, (size_t)max_b * max_k * as, &dx));
  TU_TRY(be->ops->alloc(be, (size_t)max_b * max_n * 4, &dy));
  if (at == TPD_F32) { /* random bits are not all finite floats: upload real values */
    float *hx = (float *)tu_malloc((size_t)max_b * max_k * 4);
    for (size_t i = 0; i < (size_t)max_b * max_k; i++) hx[i] = tpd_bf16_to_f32(hw[i % max_w]) * 20.0f;
    TU_TRY(be->ops->upload(be, dx, hx, (size_t)max_b * max_k * 4));
    free(hx);
  } else {
    TU_TRY(be->ops->upload(be, dx, hw, (size_t)max_b * max_k * 2)); /* bf16 values in [-0.05, 0.05) */
  }
  TU_CUDA(cudaDeviceSynchronize());
  cudaEvent_t e0, e1;
  TU_CUDA(cudaEventCreate(&e0));
  TU_CUDA(cudaEventCreate(&e1));

  printf("gemv,tp,op,M,N,K,path,us,gbs,frac_of_read\n");
  for (int t = 0; t < n_tp; t++) {
    shape sh[8];
    const int ns = shapes_of(m, tps[t], sh);
    for (int s = 0; s < ns; s++) {
      const shape *p = &sh[s];
      const size_t wbytes = (size_t)p->N * p->K * 2;
      int copies = (int)((pass_bytes + wbytes - 1) / wbytes);
      if (copies > max_copies) copies = max_copies;
      if (copies < 1) copies = 1;
      tpd_weight *w = (tpd_weight *)tu_malloc(sizeof(tpd_weight) * (size_t)copies);
      for (int c = 0; c < copies; c++) TU_TRY(be->ops->load_weight(be, hw, TPD_BF16, p->N, p->K, &w[c]));
      const int calls = copies > min_calls ? copies : min_calls;
      for (int b = 0; b < n_b; b++) {
        const int M = batches[b];
        void *graph = NULL;
        TU_TRY(be->ops->graph_begin(be));
        for (int c = 0; c < calls; c++) {
          tpd_matmul_args a;
          memset(&a, 0, sizeof a);
          a.M = M, a.x = dx, a.ldx = p->K, a.w = &w[c % copies], a.bias = NULL, a.y = dy;
          a.ldy = p->swiglu ? p->N / 2 : p->N;
          a.y_dtype = p->logits ? TPD_F32 : at;
          if (p->swiglu) TU_TRY(be->ops->matmul_swiglu(be, &a, dy, p->N / 2));
          else TU_TRY(be->ops->matmul(be, &a));
        }
        TU_TRY(be->ops->graph_end(be, &graph));
        const int WARM = tiny ? 1 : 2, REPS = tiny ? 3 : 9;
        double us[9];
        for (int r = 0; r < WARM + REPS; r++) {
          TU_CUDA(cudaEventRecord(e0, st));
          TU_TRY(be->ops->graph_launch(be, graph));
          TU_CUDA(cudaEventRecord(e1, st));
          TU_CUDA(cudaEventSynchronize(e1));
          float ms = 0;
          TU_CUDA(cudaEventElapsedTime(&ms, e0, e1));
          if (r >= WARM) us[r - WARM] = ms * 1e3 / calls;
        }
        be->ops->graph_destroy(be, graph);
        const double t_us = median(us, REPS);
        const size_t n_out = p->swiglu ? (size_t)p->N / 2 : (size_t)p->N;
        const double bytes = (double)wbytes + (double)M * p->K * (double)as +
                             (double)M * (double)n_out * (p->logits ? 4.0 : (double)as);
        const double gbs = bytes / (t_us * 1e-6) / 1e9;
        char frac[32] = "";
        if (read_gbs > 0) snprintf(frac, sizeof frac, "%.3f", gbs / read_gbs);
        printf("gemv,%d,%s,%d,%d,%d,%s,%.2f,%.1f,%s\n", tps[t], p->op, M, p->N, p->K, M <= max_m ? "gemv" : "cublaslt",
               t_us, gbs, frac);
        fflush(stdout);
      }
      TU_TRY(be->ops->synchronize(be));
      for (int c = 0; c < copies; c++) be->ops->free(be, (void *)w[c].data);
      free(w);
    }
  }
  be->ops->free(be, dx);
  be->ops->free(be, dy);
  tpd_backend_destroy(be);
  free(hw);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s read [MB] | copy [MB] | gemv [--tp LIST] [--batch LIST] [--read-gbs X] "
                    "[--activations f32|bf16] [--tiny]\n", PROG);
    return 1;
  }
  tu_require_gpu(PROG);
  const char *cmd = argv[1];
  const int tiny = argc > 2 && !strcmp(argv[2], "--tiny");
  if (!strcmp(cmd, "read")) return cmd_read(argc > 2 && !tiny ? (size_t)strtoul(argv[2], NULL, 10) : tiny ? 1 : 4096, tiny);
  if (!strcmp(cmd, "copy")) return cmd_copy(argc > 2 && !tiny ? (size_t)strtoul(argv[2], NULL, 10) : tiny ? 1 : 4096);
  if (!strcmp(cmd, "gemv")) return cmd_gemv(argc - 2, argv + 2);
  fprintf(stderr, "%s: unknown command '%s' (read, copy, gemv)\n", PROG, cmd);
  return 1;
}
