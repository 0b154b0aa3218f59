/* NCCL communicator over the ranks of a bootstrap communicator (MPI; or the
 * single-process one, which gives a one-rank NCCL communicator in a build
 * without MPI), for device buffers (data_on_device = 1).
 *
 * Bootstrap: rank 0 asks NCCL for a unique id and broadcasts it, with its
 * own status, over the bootstrap communicator's host_broadcast; every rank
 * agrees that its device is usable before ncclCommInitRank, and that every
 * init succeeded after it, so no rank is left waiting in a collective when
 * another one failed first.  Then one small all-reduce is run and waited
 * for (warm_up), so NCCL's lazy setup does not happen inside the first graph
 * capture that holds a collective.  The device is `device`, or node-local
 * rank % device count when device < 0.
 *
 * Collectives are enqueued on the caller's stream (a cudaStream_t) and are
 * ordered by it: allreduce_start enqueues and wait has nothing left to do.
 * host_* collectives and the barrier delegate to the MPI communicator, which
 * stays owned by the caller.  abort aborts NCCL, then the MPI job. */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"

#define TPD_NCCL_FAIL_(call, msg)                                                                         \
  tpd_fail_at(TPD_ERR_COMM, __FILE__, __LINE__, "%s failed: %s (device %d, rank %d)", (call), (msg),     \
              nccl_current_device(), tpd_log_rank())

/* Checks an NCCL call: names the call, file:line, device, rank and NCCL's
 * message (the detailed last error of the communicator when there is one). */
#define TPD_NCCL_CHECK(call)                                                           \
  do {                                                                                 \
    const ncclResult_t tpd_nr_ = (call);                                               \
    if (tpd_nr_ != ncclSuccess) return TPD_NCCL_FAIL_(#call, nccl_message(NULL, tpd_nr_)); \
  } while (0)

#define TPD_NCCL_CHECK_COMM(comm, call)                                                  \
  do {                                                                                   \
    const ncclResult_t tpd_nr_ = (call);                                                 \
    if (tpd_nr_ != ncclSuccess) return TPD_NCCL_FAIL_(#call, nccl_message((comm), tpd_nr_)); \
  } while (0)

#define TPD_NCCL_CUDA_CHECK(call)                                                                       \
  do {                                                                                                  \
    const cudaError_t tpd_ce_ = (call);                                                                 \
    if (tpd_ce_ != cudaSuccess)                                                                         \
      return tpd_fail_at(TPD_ERR_DEVICE, __FILE__, __LINE__, "%s failed: %s (device %d, rank %d)", #call, \
                         cudaGetErrorString(tpd_ce_), nccl_current_device(), tpd_log_rank());           \
  } while (0)

typedef struct {
  tpd_comm *mpi; /* not owned */
  ncclComm_t comm;
  int device;
} nccl_impl;

static int nccl_current_device(void) {
  int d = -1;
  if (cudaGetDevice(&d) != cudaSuccess) d = -1;
  return d;
}

static const char *nccl_message(ncclComm_t comm, ncclResult_t r) {
  const char *last = comm ? ncclGetLastError(comm) : NULL;
  return last && *last ? last : ncclGetErrorString(r);
}

static tpd_status nccl_type(tpd_dtype dt, ncclDataType_t *out) {
  switch (dt) {
    case TPD_F32: *out = ncclFloat32; return TPD_OK;
    case TPD_BF16: *out = ncclBfloat16; return TPD_OK;
    case TPD_F16: *out = ncclFloat16; return TPD_OK;
    default: return TPD_FAIL(TPD_ERR_ARG, "nccl all-reduce of dtype %d", (int)dt);
  }
}

static void nccl_destroy(tpd_comm *c) {
  if (!c) return;
  nccl_impl *n = c->impl;
  if (n && n->comm) {
    const ncclResult_t r = ncclCommDestroy(n->comm);
    if (r != ncclSuccess) TPD_WARN("ncclCommDestroy failed: %s (rank %d)", ncclGetErrorString(r), tpd_log_rank());
  }
  free(n);
  free(c);
}

static tpd_status nccl_allreduce(tpd_comm *c, void *buf, size_t n_elems, tpd_dtype dt, void *stream) {
  nccl_impl *n = c->impl;
  ncclDataType_t t = ncclFloat32;
  TPD_TRY(nccl_type(dt, &t));
  if (!n_elems) return TPD_OK;
  TPD_NCCL_CHECK_COMM(n->comm, ncclAllReduce(buf, buf, n_elems, t, ncclSum, n->comm, (cudaStream_t)stream));
  return TPD_OK;
}

static tpd_status nccl_allreduce_start(tpd_comm *c, void *buf, size_t n_elems, tpd_dtype dt, void *stream,
                                       tpd_comm_req *req) {
  req->impl = NULL;
  req->active = 0;
  return nccl_allreduce(c, buf, n_elems, dt, stream); /* ordered by the stream: nothing to wait for */
}

static tpd_status nccl_wait(tpd_comm *c, tpd_comm_req *req) {
  (void)c;
  req->impl = NULL;
  req->active = 0;
  return TPD_OK;
}

static tpd_status nccl_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes, void *stream) {
  nccl_impl *n = c->impl;
  if (!n_bytes) return TPD_OK;
  TPD_NCCL_CHECK_COMM(n->comm, ncclAllGather(send, recv, n_bytes, ncclInt8, n->comm, (cudaStream_t)stream));
  return TPD_OK;
}

static tpd_status nccl_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root, void *stream) {
  nccl_impl *n = c->impl;
  if (root < 0 || root >= c->size)
    return TPD_FAIL(TPD_ERR_ARG, "broadcast root %d out of range (%d ranks)", root, c->size);
  if (!n_bytes) return TPD_OK;
  TPD_NCCL_CHECK_COMM(n->comm, ncclBroadcast(buf, buf, n_bytes, ncclInt8, root, n->comm, (cudaStream_t)stream));
  return TPD_OK;
}

static tpd_status nccl_host_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes) {
  nccl_impl *n = c->impl;
  return n->mpi->ops->host_allgather(n->mpi, send, recv, n_bytes);
}

static tpd_status nccl_host_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root) {
  nccl_impl *n = c->impl;
  return n->mpi->ops->host_broadcast(n->mpi, buf, n_bytes, root);
}

static tpd_status nccl_barrier(tpd_comm *c) {
  nccl_impl *n = c->impl;
  return n->mpi->ops->barrier(n->mpi);
}

static void nccl_abort(tpd_comm *c, int code) {
  nccl_impl *n = c->impl;
  if (n->comm) {
    const ncclResult_t r = ncclCommAbort(n->comm);
    if (r != ncclSuccess) TPD_WARN("ncclCommAbort failed: %s (rank %d)", ncclGetErrorString(r), tpd_log_rank());
    n->comm = NULL;
  }
  n->mpi->ops->abort(n->mpi, code);
  exit(code); /* not reached: the MPI abort ends the job */
}

static const tpd_comm_ops nccl_ops = {
    .name = "nccl",
    .data_on_device = 1,
    .destroy = nccl_destroy,
    .allreduce = nccl_allreduce,
    .allreduce_start = nccl_allreduce_start,
    .wait = nccl_wait,
    .allgather = nccl_allgather,
    .broadcast = nccl_broadcast,
    .host_allgather = nccl_host_allgather,
    .host_broadcast = nccl_host_broadcast,
    .barrier = nccl_barrier,
    .abort = nccl_abort,
};

/* This rank's device: chosen, counted and made current. */
static tpd_status pick_device(const tpd_comm *mpi, int device, int *out) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count <= 0) {
    (void)cudaGetLastError();
    return TPD_FAIL(TPD_ERR_DEVICE, "the NCCL communicator needs a CUDA GPU; none was found on rank %d (%s)",
                    mpi->rank, e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device is visible");
  }
  const int d = device >= 0 ? device : (mpi->local_rank > 0 ? mpi->local_rank : 0) % count;
  if (d >= count) return TPD_FAIL(TPD_ERR_ARG, "nccl: device %d requested on rank %d, %d visible", d, mpi->rank, count);
  TPD_NCCL_CUDA_CHECK(cudaSetDevice(d));
  *out = d;
  return TPD_OK;
}

typedef struct {
  int ok;
  ncclUniqueId id;
} nccl_boot;

/* A small f32 all-reduce of ones on a stream of its own, waited for and
 * checked (every element must be the number of ranks). */
static tpd_status warm_up(tpd_comm *c) {
  enum { N = 256 };
  nccl_impl *n = c->impl;
  float host[N];
  for (int i = 0; i < N; i++) host[i] = 1.0f;
  cudaStream_t s = NULL;
  void *buf = NULL;
  tpd_status st = TPD_OK;
  cudaError_t ce = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  const char *call = "cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)";
  if (ce == cudaSuccess) ce = cudaMalloc(&buf, sizeof host), call = "cudaMalloc(&buf, sizeof host)";
  if (ce == cudaSuccess)
    ce = cudaMemcpyAsync(buf, host, sizeof host, cudaMemcpyHostToDevice, s), call = "cudaMemcpyAsync(buf, host, ...)";
  if (ce != cudaSuccess) {
    st = tpd_fail_at(TPD_ERR_DEVICE, __FILE__, __LINE__, "nccl warm-up: %s failed: %s (device %d, rank %d)", call,
                     cudaGetErrorString(ce), nccl_current_device(), tpd_log_rank());
    goto done;
  }
  const ncclResult_t r = ncclAllReduce(buf, buf, N, ncclFloat32, ncclSum, n->comm, s);
  if (r != ncclSuccess) {
    st = TPD_NCCL_FAIL_("ncclAllReduce(buf, buf, N, ncclFloat32, ncclSum, n->comm, s) (warm-up)",
                        nccl_message(n->comm, r));
    goto done;
  }
  ce = cudaMemcpyAsync(host, buf, sizeof host, cudaMemcpyDeviceToHost, s);
  call = "cudaMemcpyAsync(host, buf, ...)";
  if (ce == cudaSuccess) ce = cudaStreamSynchronize(s), call = "cudaStreamSynchronize(s)";
  if (ce != cudaSuccess) {
    st = tpd_fail_at(TPD_ERR_DEVICE, __FILE__, __LINE__, "nccl warm-up: %s failed: %s (device %d, rank %d)", call,
                     cudaGetErrorString(ce), nccl_current_device(), tpd_log_rank());
    goto done;
  }
  for (int i = 0; i < N; i++)
    if (host[i] != (float)c->size) {
      st = TPD_FAIL(TPD_ERR_COMM, "nccl warm-up all-reduce: element %d is %g, expected %d (the number of ranks)", i,
                    (double)host[i], c->size);
      break;
    }
done:
  if (buf && cudaFree(buf) != cudaSuccess && st == TPD_OK) TPD_WARN("nccl warm-up: cudaFree failed");
  if (s && cudaStreamDestroy(s) != cudaSuccess && st == TPD_OK) TPD_WARN("nccl warm-up: cudaStreamDestroy failed");
  return st;
}

tpd_status tpd_comm_nccl_create(tpd_comm *mpi, int device, tpd_comm **out) {
  if (!out) return TPD_FAIL(TPD_ERR_ARG, "nccl: out is required");
  *out = NULL;
  if (!mpi) return TPD_FAIL(TPD_ERR_ARG, "nccl: a bootstrap communicator (MPI, or single for one rank) is required");
  tpd_comm *c = calloc(1, sizeof *c);
  nccl_impl *n = calloc(1, sizeof *n);
  if (!c || !n) {
    free(c);
    free(n);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  }
  c->ops = &nccl_ops;
  c->impl = n;
  c->rank = mpi->rank;
  c->size = mpi->size;
  c->local_rank = mpi->local_rank;
  c->local_size = mpi->local_size;
  n->mpi = mpi;
  n->device = -1;

  /* 1. every rank has a usable device, or nobody goes on */
  tpd_status st = pick_device(mpi, device, &n->device);
  int bad = -1;
  tpd_status agree = tpd_comm_agree(mpi, st == TPD_OK, &bad);
  if (agree != TPD_OK || bad >= 0) {
    if (st == TPD_OK)
      st = agree != TPD_OK ? agree : TPD_FAIL(TPD_ERR_COMM, "nccl: rank %d has no usable CUDA device", bad);
    goto fail;
  }
  /* 2. rank 0's id (and whether it got one) to everybody */
  nccl_boot boot;
  memset(&boot, 0, sizeof boot);
  if (mpi->rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&boot.id);
    boot.ok = r == ncclSuccess;
    if (!boot.ok) st = TPD_NCCL_FAIL_("ncclGetUniqueId(&boot.id)", ncclGetErrorString(r));
  }
  agree = mpi->ops->host_broadcast(mpi, &boot, sizeof boot, 0);
  if (agree != TPD_OK) {
    st = agree;
    goto fail;
  }
  if (!boot.ok) {
    if (st == TPD_OK) st = TPD_FAIL(TPD_ERR_COMM, "nccl: rank 0 could not create the NCCL unique id");
    goto fail;
  }
  /* 3. the communicator, on every rank or on none */
  const ncclResult_t r = ncclCommInitRank(&n->comm, mpi->size, boot.id, mpi->rank);
  if (r != ncclSuccess) {
    n->comm = NULL;
    st = TPD_NCCL_FAIL_("ncclCommInitRank(&n->comm, mpi->size, boot.id, mpi->rank)", ncclGetErrorString(r));
  }
  agree = tpd_comm_agree(mpi, st == TPD_OK, &bad);
  if (st == TPD_OK && (agree != TPD_OK || bad >= 0))
    st = agree != TPD_OK ? agree : TPD_FAIL(TPD_ERR_COMM, "nccl: ncclCommInitRank failed on rank %d", bad);
  if (st != TPD_OK) goto fail;
  /* 4. one small all-reduce now, so that NCCL's lazy setup (connections,
   * buffers, its own streams) happens here and not inside the first graph
   * capture that contains a collective */
  st = warm_up(c);
  agree = tpd_comm_agree(mpi, st == TPD_OK, &bad);
  if (st == TPD_OK && (agree != TPD_OK || bad >= 0))
    st = agree != TPD_OK ? agree : TPD_FAIL(TPD_ERR_COMM, "nccl: the warm-up all-reduce failed on rank %d", bad);
  if (st != TPD_OK) goto fail;
  TPD_INFO("nccl communicator: rank %d/%d on device %d", c->rank, c->size, n->device);
  *out = c;
  return TPD_OK;
fail:
  nccl_destroy(c);
  return st;
}
