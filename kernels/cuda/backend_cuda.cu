/* The CUDA backend: device choice, streams, events, graphs, memory, and the
 * ops table.  Kernels live one op per file beside this one; their launchers
 * are declared in cuda_backend.h.
 *
 * Streams: every op runs on the compute stream (ops->stream); ops->comm_stream
 * is a second stream for collectives.  Both are non-blocking streams, so the
 * legacy default stream never orders them: only events do (event_record /
 * event_wait, 64 ids, created once with timing disabled).
 *
 * Graphs: graph_begin starts capturing the compute stream (relaxed mode by
 * default, so a workspace may still grow and NCCL may set itself up inside
 * the capture; TPD_CUDA_CAPTURE_MODE=global|thread_local to change).  Work on
 * the comm stream is captured too once the comm stream waits on an event
 * recorded on the compute stream inside the capture; graph_end joins it back
 * (if the caller did not) before ending the capture, then instantiates.  Any
 * failure inside the capture (an op that cannot be captured, a workspace that
 * would have to grow) makes graph_end return TPD_ERR_DEVICE with the reason,
 * leaving the backend usable for eager launches.
 *
 * Activations: bf16 by default, f32 when created with activations "f32"
 * (tpd_backend_opts; the KV cache follows).  See docs/cuda.md, "Numerics
 * policy".
 *
 * Errors inside kernels: TPD_CUDA_SYNC=1 (read once here, at creation) makes
 * every launch synchronise and check its stream (tpd_cuda_after_launch), so
 * a fault is reported naming the kernel and its launcher's file:line rather
 * than by the next copy; graph replays are checked the same way. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/attention_split.h"
#include "kernels/cuda/cuda_backend.h"

#define LT_WORKSPACE_BYTES ((size_t)32 << 20)
#define SPLITK_BYTES ((size_t)16 << 20)

/* Checks that this build holds machine code (or PTX) for the device. */
static __global__ void probe_kernel(int *p) {
  if (p) *p = 0;
}

/* Room for n more outgrown device buffers, kept until destroy (a graph may
 * still use them). */
static tpd_status retire_room(tpd_cuda *c, int n) {
  while (c->cap_retired - c->n_retired < n) {
    const int cap = c->cap_retired ? 2 * c->cap_retired : 8;
    void **grown = (void **)realloc(c->retired, sizeof(void *) * (size_t)cap);
    if (!grown) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
    c->retired = grown;
    c->cap_retired = cap;
  }
  return TPD_OK;
}

extern "C" tpd_status tpd_cuda_reserve(tpd_cuda *c, void **buf, size_t *cap, size_t need, const char *what) {
  if (need <= *cap) return TPD_OK;
  if (c->planned) {
    if (c->capturing) c->capture_broken = 1;
    return TPD_FAIL(TPD_ERR_INTERNAL,
                    "cuda: the %s workspace needs %zu bytes but the memory plan gave it %zu (a planning bug: the "
                    "step is larger than tpd_backend_plan said; device %d, rank %d)",
                    what, need, *cap, c->device, tpd_log_rank());
  }
  if (c->capturing && c->capture_mode == cudaStreamCaptureModeGlobal) {
    c->capture_broken = 1;
    return TPD_FAIL(TPD_ERR_DEVICE,
                    "cuda: the %s workspace would have to grow to %zu bytes inside a global-mode graph capture; run "
                    "the same step once without a graph first, or capture in relaxed mode (device %d, rank %d)",
                    what, need, c->device, tpd_log_rank());
  }
  size_t want = need > 2 * *cap ? need : 2 * *cap;
  want = (want + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
  if (*buf) TPD_TRY(retire_room(c, 1));
  void *nb = NULL;
  const cudaError_t e = cudaMalloc(&nb, want);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (c->capturing) c->capture_broken = 1;
    return TPD_FAIL(e == cudaErrorMemoryAllocation ? TPD_ERR_OOM : TPD_ERR_DEVICE,
                    "cuda: cannot allocate the %s workspace (%zu bytes): %s (device %d, rank %d)", what, want,
                    cudaGetErrorString(e), c->device, tpd_log_rank());
  }
  /* a graph captured earlier may still use the old buffer: keep it */
  if (*buf) c->retired[c->n_retired++] = *buf;
  *buf = nb;
  *cap = want;
  TPD_DEBUG("cuda: %s workspace grown to %zu bytes", what, want);
  return TPD_OK;
}

/* ---- the memory plan: every workspace sized once ---- */

typedef struct {
  size_t lt, splitk, att, gu; /* bytes, each a multiple of 256 */
} ws_sizes;

static size_t round256(size_t n) { return (n + 255) / 256 * 256; }

/* What each workspace needs for the steps the plan allows.
 *   cuBLASLt: the fixed workspace, if any matmul has more rows than the
 *     GEMV kernels take;
 *   split-K: S <= 32 splits of M x N partials (GEMV rows: at most 16),
 *     capped at the fixed size tpd_cuda_gemv_split already respects, so the
 *     split choice is the one an uncapped workspace gives;
 *   attention: the partials of T tokens x Hq heads x slots x (Dh + 2), for
 *     every T up to max_rows, with the slots of one head block per KV head
 *     (more head blocks only mean fewer slots: an upper bound);
 *   gate/up scratch: M x 2F of act, for M above the GEMV rows. */
static void ws_plan(const tpd_cuda *c, const tpd_backend_plan *p, ws_sizes *w) {
  const int gemv_rows = p->max_rows < TPD_GEMV_HARD_MAX_M ? p->max_rows : TPD_GEMV_HARD_MAX_M;
  const size_t splitk = (size_t)32 * (size_t)gemv_rows * (size_t)p->max_n * sizeof(float);
  w->lt = p->max_rows > c->gemv_max_m ? LT_WORKSPACE_BYTES : 0;
  w->splitk = round256(splitk < SPLITK_BYTES ? splitk : SPLITK_BYTES);
  size_t att = 0;
  for (int T = 1; T <= p->max_rows; T++) {
    const int slots = tpd_att_slots(c->n_sm, (long)T * p->n_kv_heads, p->max_ctx);
    const size_t need = (size_t)T * p->n_q_heads * (size_t)slots * (size_t)(p->head_dim + 2) * sizeof(float);
    if (slots > 1 && need > att) att = need;
  }
  w->att = round256(att);
  w->gu = p->max_rows > c->gemv_max_m
              ? round256((size_t)p->max_rows * (size_t)p->gate_up_rows * tpd_dtype_size(c->act))
              : 0;
}

static tpd_status cuda_reserve(tpd_backend *be, const tpd_backend_plan *p, int commit, size_t *n_bytes) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!p || p->max_rows < 1 || p->max_ctx < 1 || p->n_q_heads < 1 || p->n_kv_heads < 1 || p->head_dim < 1 ||
      p->max_n < 1)
    return TPD_FAIL(TPD_ERR_ARG, "cuda reserve: incomplete plan (rows %d, ctx %d, heads %d/%d, head_dim %d, N %d)",
                    p ? p->max_rows : 0, p ? p->max_ctx : 0, p ? p->n_q_heads : 0, p ? p->n_kv_heads : 0,
                    p ? p->head_dim : 0, p ? p->max_n : 0);
  ws_sizes w;
  ws_plan(c, p, &w);
  *n_bytes = w.lt + w.splitk + w.att + w.gu;
  if (!commit) return TPD_OK;
  if (c->capturing) return TPD_FAIL(TPD_ERR_ARG, "cuda reserve inside a graph capture");
  TPD_TRY(retire_room(c, 5));
  void *block = NULL;
  const cudaError_t e = cudaMalloc(&block, *n_bytes ? *n_bytes : 256);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return TPD_FAIL(e == cudaErrorMemoryAllocation ? TPD_ERR_OOM : TPD_ERR_DEVICE,
                    "cuda: cannot allocate the workspaces of the memory plan (%zu bytes): %s (device %d, rank %d)",
                    *n_bytes, cudaGetErrorString(e), c->device, tpd_log_rank());
  }
  /* the buffers they replace: freed, or kept if a graph captured before may name them */
  void *old[5] = {c->ws_block, c->ws_block ? NULL : c->lt_ws, c->ws_block ? NULL : c->splitk,
                  c->ws_block ? NULL : c->att_ws, c->ws_block ? NULL : c->gu_scratch};
  for (int i = 0; i < 5; i++) {
    if (old[i] && c->captured_any) c->retired[c->n_retired++] = old[i];
    else if (old[i]) TPD_CUDA_WARN(cudaFree(old[i]));
  }
  uint8_t *b = (uint8_t *)block;
  c->ws_block = block;
  c->ws_block_bytes = *n_bytes;
  c->lt_ws = w.lt ? b : NULL;
  c->lt_ws_bytes = w.lt;
  c->splitk = w.splitk ? (float *)(b + w.lt) : NULL;
  c->splitk_bytes = w.splitk;
  c->att_ws = w.att ? b + w.lt + w.splitk : NULL;
  c->att_ws_bytes = w.att;
  c->gu_scratch = w.gu ? b + w.lt + w.splitk + w.att : NULL;
  c->gu_scratch_bytes = w.gu;
  c->planned = 1;
  TPD_DEBUG("cuda: workspaces of the memory plan: cuBLASLt %zu, split-K %zu, attention %zu, gate/up %zu bytes", w.lt,
            w.splitk, w.att, w.gu);
  return TPD_OK;
}

/* How load_weight stores a weight (load_weight.cu): bf16, except f32 and f16
 * ones in the f32 activation mode, which are stored as f32. */
static tpd_dtype cuda_weight_dtype(tpd_backend *be, tpd_dtype dtype) {
  const tpd_cuda *c = (const tpd_cuda *)be->impl;
  return c->act == TPD_F32 && dtype != TPD_BF16 ? TPD_F32 : TPD_BF16;
}

/* "kernels/cuda/x.cu" out of a full __FILE__ path. */
static const char *short_path(const char *file) {
  const char *k = strstr(file, "kernels/");
  return k ? k : file;
}

extern "C" tpd_status tpd_cuda_after_launch(struct tpd_cuda *c, const char *kernel_name, const char *file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return tpd_fail_at(TPD_ERR_DEVICE, file, line, "launch of %s (%s:%d) failed: %s (device %d, rank %d)", kernel_name,
                       short_path(file), line, cudaGetErrorString(e), c->device, tpd_log_rank());
  if (!c->sync_launches || c->capturing) return TPD_OK;
  e = cudaStreamSynchronize(c->stream);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return tpd_fail_at(TPD_ERR_DEVICE, file, line,
                       "%s (launched at %s:%d) failed while running: %s (TPD_CUDA_SYNC=1; device %d, rank %d)",
                       kernel_name, short_path(file), line, cudaGetErrorString(e), c->device, tpd_log_rank());
  }
  return TPD_OK;
}

/* ---- memory and streams ---- */

static void cuda_destroy(tpd_backend *be) {
  if (!be) return;
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (c) {
    if (c->capturing) {
      cudaGraph_t g = NULL;
      (void)cudaStreamEndCapture(c->stream, &g);
      if (g) (void)cudaGraphDestroy(g);
      (void)cudaGetLastError();
    }
    if (c->stream) TPD_CUDA_WARN(cudaStreamSynchronize(c->stream));
    if (c->comm_stream) TPD_CUDA_WARN(cudaStreamSynchronize(c->comm_stream));
    tpd_cuda_lt_destroy(c);
    if (c->lt) TPD_CUBLAS_WARN(cublasLtDestroy(c->lt));
    for (int i = 0; i < TPD_CUDA_N_EVENTS; i++)
      if (c->events[i]) TPD_CUDA_WARN(cudaEventDestroy(c->events[i]));
    if (c->join) TPD_CUDA_WARN(cudaEventDestroy(c->join));
    if (c->ws_block) { /* the four workspaces live in it */
      TPD_CUDA_WARN(cudaFree(c->ws_block));
    } else {
      if (c->lt_ws) TPD_CUDA_WARN(cudaFree(c->lt_ws));
      if (c->splitk) TPD_CUDA_WARN(cudaFree(c->splitk));
      if (c->att_ws) TPD_CUDA_WARN(cudaFree(c->att_ws));
      if (c->gu_scratch) TPD_CUDA_WARN(cudaFree(c->gu_scratch));
    }
    for (int i = 0; i < c->n_retired; i++) TPD_CUDA_WARN(cudaFree(c->retired[i]));
    free(c->retired);
    if (c->comm_stream) TPD_CUDA_WARN(cudaStreamDestroy(c->comm_stream));
    if (c->stream) TPD_CUDA_WARN(cudaStreamDestroy(c->stream));
    free(c);
  }
  free(be);
}

static tpd_status cuda_alloc(tpd_backend *be, size_t n_bytes, void **out) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  *out = NULL;
  const cudaError_t e = cudaMalloc(out, n_bytes ? n_bytes : 1);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    *out = NULL;
    return TPD_FAIL(e == cudaErrorMemoryAllocation ? TPD_ERR_OOM : TPD_ERR_DEVICE,
                    "cudaMalloc of %zu bytes failed: %s (device %d, rank %d)", n_bytes, cudaGetErrorString(e),
                    c->device, tpd_log_rank());
  }
  return TPD_OK;
}

static void cuda_free(tpd_backend *be, void *p) {
  (void)be;
  if (p) TPD_CUDA_WARN(cudaFree(p));
}

static tpd_status cuda_upload(tpd_backend *be, void *dst, const void *host_src, size_t n_bytes) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!n_bytes) return TPD_OK;
  TPD_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, n_bytes, cudaMemcpyHostToDevice, c->stream));
  /* From pageable memory the copy has consumed the source when the call
   * returns; from pinned memory it has not, so wait: the caller may reuse
   * its buffer at once. */
  cudaPointerAttributes attr;
  memset(&attr, 0, sizeof attr);
  TPD_CUDA_CHECK(cudaPointerGetAttributes(&attr, host_src));
  if (attr.type == cudaMemoryTypeHost) TPD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
  return TPD_OK;
}

static tpd_status cuda_download(tpd_backend *be, void *host_dst, const void *src, size_t n_bytes) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!n_bytes) return TPD_OK;
  TPD_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, n_bytes, cudaMemcpyDeviceToHost, c->stream));
  TPD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
  return TPD_OK;
}

static tpd_status cuda_zero(tpd_backend *be, void *dst, size_t n_bytes) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!n_bytes) return TPD_OK;
  TPD_CUDA_CHECK(cudaMemsetAsync(dst, 0, n_bytes, c->stream));
  return TPD_OK;
}

static tpd_status cuda_synchronize(tpd_backend *be) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  TPD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
  TPD_CUDA_CHECK(cudaStreamSynchronize(c->comm_stream));
  return TPD_OK;
}

static void *cuda_stream(tpd_backend *be) { return (void *)((tpd_cuda *)be->impl)->stream; }
static void *cuda_comm_stream(tpd_backend *be) { return (void *)((tpd_cuda *)be->impl)->comm_stream; }

/* ---- events ---- */

static tpd_status check_event(int event) {
  if (event < 0 || event >= TPD_CUDA_N_EVENTS)
    return TPD_FAIL(TPD_ERR_ARG, "cuda event id %d out of range [0, %d)", event, TPD_CUDA_N_EVENTS);
  return TPD_OK;
}

static tpd_status cuda_event_record(tpd_backend *be, int event, int on_comm_stream) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  TPD_TRY(check_event(event));
  TPD_CUDA_CHECK(cudaEventRecord(c->events[event], on_comm_stream ? c->comm_stream : c->stream));
  return TPD_OK;
}

static tpd_status cuda_event_wait(tpd_backend *be, int event, int on_comm_stream) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  TPD_TRY(check_event(event));
  TPD_CUDA_CHECK(cudaStreamWaitEvent(on_comm_stream ? c->comm_stream : c->stream, c->events[event], 0));
  return TPD_OK;
}

/* ---- graphs ---- */

static tpd_status cuda_graph_begin(tpd_backend *be) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (c->capturing) return TPD_FAIL(TPD_ERR_ARG, "cuda graph_begin: a capture is already in progress");
  const char *m = tpd_param_str("CUDA_CAPTURE_MODE", "relaxed");
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  if (!strcmp(m, "global")) mode = cudaStreamCaptureModeGlobal;
  else if (!strcmp(m, "thread_local")) mode = cudaStreamCaptureModeThreadLocal;
  else if (strcmp(m, "relaxed")) TPD_WARN("ignoring TPD_CUDA_CAPTURE_MODE=%s (relaxed, global or thread_local)", m);
  TPD_CUDA_CHECK(cudaStreamBeginCapture(c->stream, mode));
  c->capturing = 1;
  c->capture_mode = mode;
  c->capture_broken = 0;
  return TPD_OK;
}

static tpd_status cuda_graph_end(tpd_backend *be, void **graph) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!graph) return TPD_FAIL(TPD_ERR_ARG, "cuda graph_end: graph is required");
  *graph = NULL;
  if (!c->capturing) return TPD_FAIL(TPD_ERR_ARG, "cuda graph_end: no capture in progress (call graph_begin)");
  /* join the comm stream if work on it became part of the capture */
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  cudaError_t join_err = cudaStreamIsCapturing(c->comm_stream, &cs);
  if (join_err == cudaSuccess && cs == cudaStreamCaptureStatusActive) {
    join_err = cudaEventRecord(c->join, c->comm_stream);
    if (join_err == cudaSuccess) join_err = cudaStreamWaitEvent(c->stream, c->join, 0);
  }
  cudaGraph_t g = NULL;
  const cudaError_t end_err = cudaStreamEndCapture(c->stream, &g);
  c->capturing = 0;
  if (end_err != cudaSuccess || join_err != cudaSuccess || !g || c->capture_broken) {
    if (g) TPD_CUDA_WARN(cudaGraphDestroy(g));
    (void)cudaGetLastError(); /* capture errors are not sticky: clear them */
    const char *why = end_err != cudaSuccess    ? cudaGetErrorString(end_err)
                      : join_err != cudaSuccess ? cudaGetErrorString(join_err)
                      : !g                      ? "no graph was produced"
                                                : "an op refused to run inside the capture";
    return TPD_FAIL(TPD_ERR_DEVICE, "cuda graph capture failed: %s; launch the step eagerly instead (device %d, rank %d)",
                    why, c->device, tpd_log_rank());
  }
  cudaGraphExec_t exec = NULL;
  const cudaError_t inst_err = cudaGraphInstantiate(&exec, g, 0);
  TPD_CUDA_WARN(cudaGraphDestroy(g));
  if (inst_err != cudaSuccess) {
    (void)cudaGetLastError();
    return TPD_FAIL(TPD_ERR_DEVICE, "cudaGraphInstantiate failed: %s; launch the step eagerly instead (device %d, rank %d)",
                    cudaGetErrorString(inst_err), c->device, tpd_log_rank());
  }
  *graph = (void *)exec;
  c->captured_any = 1;
  return TPD_OK;
}

static tpd_status cuda_graph_launch(tpd_backend *be, void *graph) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (!graph) return TPD_FAIL(TPD_ERR_ARG, "cuda graph_launch: graph is required");
  if (c->capturing) return TPD_FAIL(TPD_ERR_ARG, "cuda graph_launch inside a capture");
  TPD_CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, c->stream));
  if (c->sync_launches) {
    const cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return TPD_FAIL(TPD_ERR_DEVICE,
                      "a kernel of a graph replay failed: %s (TPD_CUDA_SYNC=1; run with TPD_GRAPHS=0 as well to name "
                      "the kernel; device %d, rank %d)",
                      cudaGetErrorString(e), c->device, tpd_log_rank());
    }
  }
  return TPD_OK;
}

static void cuda_graph_destroy(tpd_backend *be, void *graph) {
  (void)be;
  if (graph) TPD_CUDA_WARN(cudaGraphExecDestroy((cudaGraphExec_t)graph));
}

/* ---- the op entry points: a failure inside a capture also fails the capture ---- */

static tpd_status mark(tpd_backend *be, tpd_status s) {
  tpd_cuda *c = (tpd_cuda *)be->impl;
  if (s != TPD_OK && c->capturing) c->capture_broken = 1;
  return s;
}

static tpd_status op_matmul(tpd_backend *be, const tpd_matmul_args *a) { return mark(be, tpd_cuda_matmul(be, a)); }
static tpd_status op_rmsnorm(tpd_backend *be, const tpd_rmsnorm_args *a) { return mark(be, tpd_cuda_rmsnorm(be, a)); }
static tpd_status op_rope_kv(tpd_backend *be, const tpd_rope_kv_args *a) { return mark(be, tpd_cuda_rope_kv(be, a)); }
static tpd_status op_attention(tpd_backend *be, const tpd_attention_args *a) {
  return mark(be, tpd_cuda_attention(be, a));
}
static tpd_status op_swiglu(tpd_backend *be, const tpd_swiglu_args *a) { return mark(be, tpd_cuda_swiglu(be, a)); }
static tpd_status op_gather_rows(tpd_backend *be, void *dst, const void *src, const int32_t *rows, int n, int D) {
  return mark(be, tpd_cuda_gather_rows(be, dst, src, rows, n, D));
}
static tpd_status op_argmax(tpd_backend *be, const tpd_argmax_args *a) { return mark(be, tpd_cuda_argmax(be, a)); }
static tpd_status op_logit_stats(tpd_backend *be, const tpd_logit_stats_args *a) {
  return mark(be, tpd_cuda_logit_stats(be, a));
}
static tpd_status op_matmul_swiglu(tpd_backend *be, const tpd_matmul_args *a, void *out, int ld_out) {
  return mark(be, tpd_cuda_matmul_swiglu(be, a, out, ld_out));
}
static tpd_status op_upload(tpd_backend *be, void *dst, const void *host_src, size_t n_bytes) {
  return mark(be, cuda_upload(be, dst, host_src, n_bytes));
}
static tpd_status op_download(tpd_backend *be, void *host_dst, const void *src, size_t n_bytes) {
  return mark(be, cuda_download(be, host_dst, src, n_bytes));
}
static tpd_status op_zero(tpd_backend *be, void *dst, size_t n_bytes) { return mark(be, cuda_zero(be, dst, n_bytes)); }
static tpd_status op_synchronize(tpd_backend *be) { return mark(be, cuda_synchronize(be)); }
static tpd_status op_event_record(tpd_backend *be, int event, int on_comm_stream) {
  return mark(be, cuda_event_record(be, event, on_comm_stream));
}
static tpd_status op_event_wait(tpd_backend *be, int event, int on_comm_stream) {
  return mark(be, cuda_event_wait(be, event, on_comm_stream));
}

/* ---- creation ---- */

static void fill_ops(tpd_backend_ops *o, tpd_dtype act) {
  memset(o, 0, sizeof *o);
  o->name = "cuda";
  o->act_dtype = act;
  o->host_memory = 0;
  o->destroy = cuda_destroy;
  o->alloc = cuda_alloc;
  o->free = cuda_free;
  o->upload = op_upload;
  o->download = op_download;
  o->zero = op_zero;
  o->synchronize = op_synchronize;
  o->stream = cuda_stream;
  o->load_weight = tpd_cuda_load_weight;
  o->matmul = op_matmul;
  o->rmsnorm = op_rmsnorm;
  o->rope_kv = op_rope_kv;
  o->attention = op_attention;
  o->swiglu = op_swiglu;
  o->gather_rows = op_gather_rows;
  o->argmax = op_argmax;
  o->logit_stats = op_logit_stats;
  o->weight_view = tpd_cuda_weight_view;
  o->matmul_swiglu = op_matmul_swiglu;
  o->comm_stream = cuda_comm_stream;
  o->event_record = op_event_record;
  o->event_wait = op_event_wait;
  o->graph_begin = cuda_graph_begin;
  o->graph_end = cuda_graph_end;
  o->graph_launch = cuda_graph_launch;
  o->graph_destroy = cuda_graph_destroy;
  o->reserve = cuda_reserve;
  o->weight_dtype = cuda_weight_dtype;
}

static tpd_status setup(tpd_cuda *c) {
  tpd_status st = TPD_OK;
  TPD_CUDA_CHECK(cudaSetDevice(c->device));
  cudaDeviceProp prop;
  memset(&prop, 0, sizeof prop);
  TPD_CUDA_CHECK(cudaGetDeviceProperties(&prop, c->device));
  c->n_sm = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
  cudaFuncAttributes fa;
  const cudaError_t pe = cudaFuncGetAttributes(&fa, (const void *)probe_kernel);
  if (pe != cudaSuccess) {
    (void)cudaGetLastError();
    return TPD_FAIL(TPD_ERR_DEVICE,
                    "this build has no kernels for device %d (%s, compute capability %d.%d): %s; rebuild with "
                    "TPD_CUDA_ARCHS including %d%d (rank %d)",
                    c->device, prop.name, prop.major, prop.minor, cudaGetErrorString(pe), prop.major, prop.minor,
                    tpd_log_rank());
  }
  /* the tunables first: a bad value allocates nothing */
  long gm = 0, pp = 0;
  TPD_TRY(tpd_param_range("GEMV_MAX_M", TPD_GEMV_MAX_M_DEFAULT, 0, TPD_GEMV_HARD_MAX_M,
                          "rows of X on the GEMV kernels; 0: every matmul on cuBLASLt", &gm));
  TPD_TRY(tpd_param_range("ATT_PP", TPD_ATT_PP_DEFAULT, 2, 4, "attention positions per warp and round: 2 or 4", &pp));
  if (pp == 3) return TPD_FAIL(TPD_ERR_ARG, "TPD_ATT_PP=3: the attention loads 2 or 4 positions per warp and round");
  c->gemv_max_m = (int)gm;
  c->att_pp = (int)pp;
  TPD_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  TPD_CUDA_CHECK(cudaStreamCreateWithFlags(&c->comm_stream, cudaStreamNonBlocking));
  for (int i = 0; i < TPD_CUDA_N_EVENTS; i++)
    TPD_CUDA_CHECK(cudaEventCreateWithFlags(&c->events[i], cudaEventDisableTiming));
  TPD_CUDA_CHECK(cudaEventCreateWithFlags(&c->join, cudaEventDisableTiming));
  TPD_CUBLAS_CHECK(cublasLtCreate(&c->lt));
  c->lt_ws_bytes = LT_WORKSPACE_BYTES;
  TPD_CUDA_CHECK(cudaMalloc(&c->lt_ws, c->lt_ws_bytes));
  c->splitk_bytes = SPLITK_BYTES;
  TPD_CUDA_CHECK(cudaMalloc((void **)&c->splitk, c->splitk_bytes));
  c->sync_launches = tpd_param_int("CUDA_SYNC", 0) != 0;
  TPD_INFO("cuda backend: device %d (%s, cc %d.%d, %d SMs, %.1f GB), %s activations, GEMV for M <= %d, cuBLASLt "
           "above, attention %d positions per warp and round%s",
           c->device, prop.name, prop.major, prop.minor, c->n_sm, (double)prop.totalGlobalMem / 1e9,
           c->act == TPD_F32 ? "f32" : "bf16", c->gemv_max_m, c->att_pp,
           c->sync_launches ? "; TPD_CUDA_SYNC=1: every launch synchronises" : "");
  return st;
}

extern "C" tpd_status tpd_backend_cuda_create(const tpd_backend_opts *opts, tpd_backend **out) {
  if (!out) return TPD_FAIL(TPD_ERR_ARG, "cuda backend: out is required");
  *out = NULL;
  tpd_dtype act = TPD_BF16;
  TPD_TRY(tpd_backend_activations("cuda", opts, &act));
  tpd_dtype kv = act;
  TPD_TRY(tpd_backend_kv_cache("cuda", opts, act, &kv));
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n <= 0) {
    (void)cudaGetLastError();
    return TPD_FAIL(TPD_ERR_DEVICE, "--backend cuda needs a CUDA GPU; none was found (%s)",
                    e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device is visible");
  }
  int dev;
  if (opts && opts->device >= 0) {
    if (opts->device >= n)
      return TPD_FAIL(TPD_ERR_ARG, "cuda device %d requested but %d visible (rank %d)", opts->device, n,
                      tpd_log_rank());
    dev = opts->device;
  } else {
    const int lr = opts && opts->local_rank > 0 ? opts->local_rank : 0;
    dev = lr % n;
  }
  tpd_backend *be = (tpd_backend *)calloc(1, sizeof *be);
  tpd_cuda *c = (tpd_cuda *)calloc(1, sizeof *c);
  if (!be || !c) {
    free(be);
    free(c);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  }
  c->device = dev;
  c->act = act;
  fill_ops(&c->ops, act);
  be->ops = &c->ops;
  be->impl = c;
  be->kv_dtype = kv;
  be->matmul_act_dtype = act;
  const tpd_status st = setup(c);
  if (st != TPD_OK) {
    cuda_destroy(be);
    return st;
  }
  *out = be;
  return TPD_OK;
}
