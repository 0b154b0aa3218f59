/* CPU emulation of NCCL over MPI (tests/gpu/emu; see nccl.h).  Device
 * memory is host memory here, so a collective is the MPI collective on the
 * same buffer, run when the emulated stream reaches it (or when a captured
 * graph replays it).  bf16 and f16 sums go through f32. */
#define OMPI_SKIP_MPICXX 1 /* the C API only */
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "emu_device.h"
#include "nccl.h"
#include "runtime/base/dtype.h"

struct emu_nccl {
  MPI_Comm comm;
  int rank, size;
};

static void emu_nccl_die(const char *what) {
  fprintf(stderr, "emu nccl: %s\n", what);
  abort();
}

static size_t dt_size(ncclDataType_t dt) {
  return dt == ncclInt8 ? 1 : dt == ncclFloat32 ? 4 : 2;
}

extern "C" {

const char *ncclGetErrorString(ncclResult_t r) { return r == ncclSuccess ? "no error" : "emulated NCCL error"; }
const char *ncclGetLastError(ncclComm_t comm) {
  (void)comm;
  return "";
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
  memset(id, 0, sizeof *id);
  strcpy(id->internal, "emulated nccl id");
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
  if (strcmp(id.internal, "emulated nccl id")) return ncclInvalidArgument;
  emu_nccl *c = new emu_nccl;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &c->comm) != MPI_SUCCESS) return ncclSystemError;
  MPI_Comm_rank(c->comm, &c->rank);
  MPI_Comm_size(c->comm, &c->size);
  if (c->rank != rank || c->size != nranks) return ncclInvalidUsage;
  *comm = c;
  return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t *config) {
  (void)config;
  return ncclCommInitRank(comm, nranks, id, rank);
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *err) {
  (void)comm;
  *err = ncclSuccess;
  return ncclSuccess;
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  (void)comm;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  MPI_Comm_free(&comm->comm);
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t dt, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  if (op != ncclSum || dt == ncclInt8) return ncclInvalidArgument;
  emu_submit(stream, [=]() {
    if (dt == ncclFloat32) {
      if (MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, MPI_FLOAT, MPI_SUM, comm->comm) !=
          MPI_SUCCESS)
        emu_nccl_die("MPI_Allreduce failed");
      return;
    }
    const tpd_dtype t = dt == ncclBfloat16 ? TPD_BF16 : TPD_F16;
    std::vector<float> f(count);
    tpd_convert(f.data(), TPD_F32, send, t, count);
    if (MPI_Allreduce(MPI_IN_PLACE, f.data(), (int)count, MPI_FLOAT, MPI_SUM, comm->comm) != MPI_SUCCESS)
      emu_nccl_die("MPI_Allreduce failed");
    tpd_convert(recv, t, f.data(), TPD_F32, count);
  });
  return ncclSuccess;
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t count, ncclDataType_t dt, ncclComm_t comm,
                           cudaStream_t stream) {
  const int n = (int)(count * dt_size(dt));
  emu_submit(stream, [=]() {
    if (MPI_Allgather(send, n, MPI_BYTE, recv, n, MPI_BYTE, comm->comm) != MPI_SUCCESS)
      emu_nccl_die("MPI_Allgather failed");
  });
  return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t dt, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  const int n = (int)(count * dt_size(dt));
  emu_submit(stream, [=]() {
    if (comm->rank == root && send != recv) memmove(recv, send, (size_t)n);
    if (MPI_Bcast(recv, n, MPI_BYTE, root, comm->comm) != MPI_SUCCESS) emu_nccl_die("MPI_Bcast failed");
  });
  return ncclSuccess;
}

}  // extern "C"
