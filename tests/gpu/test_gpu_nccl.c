/* The NCCL communicator, bootstrapped over MPI when started by mpirun (one
 * rank per GPU, so a single GPU gives a one-rank test) and over the
 * single-process communicator otherwise (one rank; builds without MPI):
 *   - first, before any other collective (as the benchmark does, which
 *     skips the prefill): an all-reduce captured in a CUDA graph between two
 *     device copies, replayed 3 times on fresh inputs, f32 and bf16
 *   - in-place sum all-reduce of f32, bf16 and f16 device buffers (blocking
 *     and start/wait forms), all-gather and broadcast of device bytes, and
 *     the host collectives that delegate to the bootstrap communicator.
 * Inputs are small integers, exact in every dtype, so each check counts
 * wrong values exactly.  Every rank exits 77 when any rank has no CUDA
 * device. */
#include <stdint.h>

#include "comm/comm.h"
#define TU_WITH_CUDA /* the device helpers of tests/testutil.h */
#include "tests/testutil.h"

static const char *PROG = "test_gpu_nccl";

static int value(size_t i, int r) { return (int)((i * 7 + (size_t)r * 3) % 13) - 6; }

static void check_allreduce(tpd_comm *nc, cudaStream_t st, tpd_dtype dt, size_t n, int use_start) {
  float *h = tu_malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) h[i] = (float)value(i, nc->rank);
  const size_t esz = tpd_dtype_size(dt);
  void *hb = tu_malloc(n * esz), *d = NULL;
  tpd_convert(hb, dt, h, TPD_F32, n);
  TU_CUDA(cudaMalloc(&d, n * esz));
  TU_CUDA(cudaMemcpy(d, hb, n * esz, cudaMemcpyHostToDevice));
  if (use_start) {
    tpd_comm_req req;
    TU_TRY(nc->ops->allreduce_start(nc, d, n, dt, st, &req));
    TU_TRY(nc->ops->wait(nc, &req));
  } else {
    TU_TRY(nc->ops->allreduce(nc, d, n, dt, st));
  }
  TU_CUDA(cudaStreamSynchronize(st));
  TU_CUDA(cudaMemcpy(hb, d, n * esz, cudaMemcpyDeviceToHost));
  tpd_convert(h, TPD_F32, hb, dt, n);
  size_t wrong = 0;
  for (size_t i = 0; i < n; i++) {
    int want = 0;
    for (int r = 0; r < nc->size; r++) want += value(i, r);
    if (h[i] != (float)want) wrong++;
  }
  char what[160];
  snprintf(what, sizeof what, "nccl allreduce%s %s, %zu elements, %d rank(s): wrong values: %zu",
           use_start ? "_start/wait" : "", tpd_dtype_name(dt), n, nc->size, wrong);
  tu_expect(wrong == 0, what);
  TU_CUDA(cudaFree(d));
  free(h), free(hb);
}

static int value_rep(size_t i, int r, int rep) { return (int)((i * 7 + (size_t)r * 3 + (size_t)rep * 5) % 13) - 6; }

/* src -> buf (copy), all-reduce(buf), buf -> dst (copy), captured once in
 * relaxed mode (the engine's default) and replayed on fresh inputs. */
static void check_graph(tpd_comm *nc, tpd_dtype dt) {
  const size_t n = 4096 + 7, esz = tpd_dtype_size(dt), nb = n * esz;
  cudaStream_t cs;
  TU_CUDA(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
  void *src = NULL, *buf = NULL, *dst = NULL;
  TU_CUDA(cudaMalloc(&src, nb));
  TU_CUDA(cudaMalloc(&buf, nb));
  TU_CUDA(cudaMalloc(&dst, nb));
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  TU_CUDA(cudaStreamBeginCapture(cs, cudaStreamCaptureModeRelaxed));
  TU_CUDA(cudaMemcpyAsync(buf, src, nb, cudaMemcpyDeviceToDevice, cs));
  const tpd_status s_ar = nc->ops->allreduce(nc, buf, n, dt, cs);
  TU_CUDA(cudaMemcpyAsync(dst, buf, nb, cudaMemcpyDeviceToDevice, cs));
  const cudaError_t e_end = cudaStreamEndCapture(cs, &graph);
  char what[200];
  snprintf(what, sizeof what, "nccl all-reduce %s captured in a graph: the collective and the capture succeed (%s)",
           tpd_dtype_name(dt), s_ar != TPD_OK ? tpd_last_error() : cudaGetErrorString(e_end));
  tu_expect(s_ar == TPD_OK && e_end == cudaSuccess && graph != NULL, what);
  if (s_ar != TPD_OK || e_end != cudaSuccess || !graph) {
    tpd_clear_error();
    (void)cudaGetLastError();
  } else {
    TU_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    float *h = tu_malloc(n * sizeof(float));
    void *hb = tu_malloc(nb);
    size_t wrong = 0;
    for (int rep = 0; rep < 3; rep++) {
      for (size_t i = 0; i < n; i++) h[i] = (float)value_rep(i, nc->rank, rep);
      tpd_convert(hb, dt, h, TPD_F32, n);
      TU_CUDA(cudaMemcpy(src, hb, nb, cudaMemcpyHostToDevice));
      TU_CUDA(cudaMemset(dst, 0xFF, nb)); /* NaN until the replay writes it */
      TU_CUDA(cudaDeviceSynchronize());
      TU_CUDA(cudaGraphLaunch(exec, cs));
      TU_CUDA(cudaStreamSynchronize(cs));
      TU_CUDA(cudaMemcpy(hb, dst, nb, cudaMemcpyDeviceToHost));
      tpd_convert(h, TPD_F32, hb, dt, n);
      for (size_t i = 0; i < n; i++) {
        int want = 0;
        for (int r = 0; r < nc->size; r++) want += value_rep(i, r, rep);
        if (!(h[i] == (float)want)) wrong++;
      }
    }
    snprintf(what, sizeof what, "nccl all-reduce %s in a graph, replayed 3 times on fresh inputs, %d rank(s): wrong values: %zu",
             tpd_dtype_name(dt), nc->size, wrong);
    tu_expect(wrong == 0, what);
    TU_CUDA(cudaGraphExecDestroy(exec));
    free(h), free(hb);
  }
  if (graph) TU_CUDA(cudaGraphDestroy(graph));
  TU_CUDA(cudaFree(src));
  TU_CUDA(cudaFree(buf));
  TU_CUDA(cudaFree(dst));
  TU_CUDA(cudaStreamDestroy(cs));
}

static void check_allgather_broadcast(tpd_comm *nc, cudaStream_t st) {
  const size_t nb = 4096 + 5, total = nb * (size_t)nc->size;
  unsigned char *h = tu_malloc(total);
  for (size_t i = 0; i < nb; i++) h[i] = (unsigned char)(nc->rank * 31 + i);
  void *dsend = NULL, *drecv = NULL;
  TU_CUDA(cudaMalloc(&dsend, nb));
  TU_CUDA(cudaMalloc(&drecv, total));
  TU_CUDA(cudaMemset(drecv, 0xFF, total));
  TU_CUDA(cudaMemcpy(dsend, h, nb, cudaMemcpyHostToDevice));
  TU_TRY(nc->ops->allgather(nc, dsend, drecv, nb, st));
  TU_CUDA(cudaStreamSynchronize(st));
  TU_CUDA(cudaMemcpy(h, drecv, total, cudaMemcpyDeviceToHost));
  size_t wrong = 0;
  for (int r = 0; r < nc->size; r++)
    for (size_t i = 0; i < nb; i++)
      if (h[(size_t)r * nb + i] != (unsigned char)(r * 31 + i)) wrong++;
  char what[160];
  snprintf(what, sizeof what, "nccl allgather %zu bytes per rank: wrong values: %zu", nb, wrong);
  tu_expect(wrong == 0, what);
  const int root = nc->size - 1;
  for (size_t i = 0; i < nb; i++) h[i] = (unsigned char)(nc->rank == root ? 255 - (i % 251) : 0);
  TU_CUDA(cudaMemcpy(dsend, h, nb, cudaMemcpyHostToDevice));
  TU_TRY(nc->ops->broadcast(nc, dsend, nb, root, st));
  TU_CUDA(cudaStreamSynchronize(st));
  TU_CUDA(cudaMemcpy(h, dsend, nb, cudaMemcpyDeviceToHost));
  wrong = 0;
  for (size_t i = 0; i < nb; i++)
    if (h[i] != (unsigned char)(255 - (i % 251))) wrong++;
  snprintf(what, sizeof what, "nccl broadcast from rank %d: wrong values: %zu", root, wrong);
  tu_expect(wrong == 0, what);
  int mine = nc->rank + 100, *all = tu_malloc(sizeof(int) * (size_t)nc->size);
  TU_TRY(nc->ops->host_allgather(nc, &mine, all, sizeof(int)));
  wrong = 0;
  for (int r = 0; r < nc->size; r++) wrong += all[r] != r + 100;
  TU_TRY(nc->ops->barrier(nc));
  snprintf(what, sizeof what, "nccl host_allgather (through MPI) + barrier: wrong values: %zu", wrong);
  tu_expect(wrong == 0, what);
  TU_CUDA(cudaFree(dsend));
  TU_CUDA(cudaFree(drecv));
  free(h), free(all);
}

int main(int argc, char **argv) {
  tpd_comm *mpi = NULL; /* the bootstrap: MPI under mpirun, else the single-process communicator */
#ifdef TPD_HAVE_MPI
  if (tpd_comm_launched_by_mpi()) {
    mpi = tu_mpi_gpu_or_skip(&argc, &argv, PROG);
    if (!mpi) return TU_SKIP;
  }
#endif
  if (!mpi) {
    (void)argc, (void)argv;
    tu_require_gpu(PROG);
    TU_TRY(tpd_comm_single_create(&mpi));
  }
  printf("bootstrap over the %s communicator, %d rank(s)\n", mpi->ops->name, mpi->size);
  tpd_comm *nc = NULL;
  TU_TRY(tpd_comm_nccl_create(mpi, -1, &nc));
  tu_expect(!strcmp(nc->ops->name, "nccl") && nc->ops->data_on_device == 1 && nc->size == mpi->size &&
                nc->rank == mpi->rank,
            "nccl communicator: device data, same ranks as the bootstrap communicator");
  /* the first collectives after create: inside a capture */
  check_graph(nc, TPD_F32);
  check_graph(nc, TPD_BF16);
  cudaStream_t st;
  TU_CUDA(cudaStreamCreate(&st)); /* blocking: ordered after the legacy-stream copies that set up inputs */
  const tpd_dtype dts[3] = {TPD_F32, TPD_BF16, TPD_F16};
  for (int i = 0; i < 3; i++) {
    check_allreduce(nc, st, dts[i], ((size_t)1 << 20) + 3, 0);
    check_allreduce(nc, st, dts[i], 4099, 1);
  }
  check_allgather_broadcast(nc, st);
  TU_CUDA(cudaStreamDestroy(st));
  tpd_comm_destroy(nc);
  int verdict = tu_finish(PROG), worst = -1;
  TU_TRY(tpd_comm_agree(mpi, verdict == 0, &worst));
  tpd_comm_destroy(mpi);
  return worst >= 0 ? 1 : 0;
}
