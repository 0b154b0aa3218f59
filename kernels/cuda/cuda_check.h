/* The one check-macro family of the CUDA backend: every CUDA runtime and
 * cuBLASLt return code goes through these.  A failure is recorded with
 * tpd_fail_at (the first one wins) naming the failing call, file:line, the
 * device and the rank, and the enclosing function returns TPD_ERR_DEVICE.
 *
 *   TPD_CUDA_CHECK(call)              return on failure
 *   TPD_CUDA_CHECK_GOTO(call, st, l)  set st and jump to cleanup label l
 *   TPD_CUDA_CHECK_LAUNCH(c, name)    after a kernel launch: cudaGetLastError(), and with
 *                                     TPD_CUDA_SYNC=1 a synchronisation naming the kernel
 *   TPD_CUDA_WARN(call)               for void paths (free, destroy): log only
 *   TPD_CUBLAS_CHECK(call)            cublasStatus_t, same message shape
 * NCCL has the same shape in comm/comm_nccl.c (TPD_NCCL_CHECK). */
#ifndef TPD_CUDA_CHECK_H
#define TPD_CUDA_CHECK_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "runtime/base/error.h"

/* The current device, or -1 when even that query fails. */
static inline int tpd_cuda_current_device(void) {
  int d = -1;
  if (cudaGetDevice(&d) != cudaSuccess) d = -1;
  return d;
}

#define TPD_CUDA_FAIL_(what, msg)                                                                       \
  tpd_fail_at(TPD_ERR_DEVICE, __FILE__, __LINE__, "%s failed: %s (device %d, rank %d)", (what), (msg), \
              tpd_cuda_current_device(), tpd_log_rank())

/* A failed call also leaves its error as the runtime's "last error"; it is
 * taken here (cudaGetLastError) so that the next launch check does not
 * report it again, blaming that kernel. */
#define TPD_CUDA_CHECK(call)                                                                        \
  do {                                                                                              \
    const cudaError_t tpd_ce_ = (call);                                                             \
    if (tpd_ce_ != cudaSuccess) {                                                                   \
      (void)cudaGetLastError();                                                                     \
      return TPD_CUDA_FAIL_(#call, cudaGetErrorString(tpd_ce_));                                    \
    }                                                                                               \
  } while (0)

#define TPD_CUDA_CHECK_GOTO(call, st, label)                     \
  do {                                                           \
    const cudaError_t tpd_ce_ = (call);                          \
    if (tpd_ce_ != cudaSuccess) {                                \
      (void)cudaGetLastError();                                  \
      (st) = TPD_CUDA_FAIL_(#call, cudaGetErrorString(tpd_ce_)); \
      goto label;                                                \
    }                                                            \
  } while (0)

/* After every kernel launch (and cublasLtMatmul): a bad configuration or a
 * sticky error from earlier work shows here, named after the kernel that was
 * being launched and the launcher's file:line.  With TPD_CUDA_SYNC=1 (read
 * once when the backend is created) the compute stream is also synchronised
 * and checked, so a fault inside the kernel (an illegal address, a trap) is
 * reported by this launch, not by whatever call happens to synchronise
 * next.  No synchronisation inside a graph capture (graph_launch checks the
 * replay instead).  `c` is the tpd_cuda * of the launch. */
#define TPD_CUDA_CHECK_LAUNCH(c, kernel_name) TPD_TRY(tpd_cuda_after_launch((c), (kernel_name), __FILE__, __LINE__))

struct tpd_cuda;
#ifdef __cplusplus
extern "C" {
#endif
tpd_status tpd_cuda_after_launch(struct tpd_cuda *c, const char *kernel_name, const char *file, int line);
#ifdef __cplusplus
}
#endif

#define TPD_CUDA_WARN(call)                                                                          \
  do {                                                                                               \
    const cudaError_t tpd_ce_ = (call);                                                              \
    if (tpd_ce_ != cudaSuccess)                                                                      \
      TPD_WARN("%s failed: %s (device %d, rank %d)", #call, cudaGetErrorString(tpd_ce_),             \
               tpd_cuda_current_device(), tpd_log_rank());                                           \
  } while (0)

#define TPD_CUBLAS_CHECK(call)                                                          \
  do {                                                                                  \
    const cublasStatus_t tpd_bs_ = (call);                                              \
    if (tpd_bs_ != CUBLAS_STATUS_SUCCESS) return TPD_CUDA_FAIL_(#call, cublasLtGetStatusString(tpd_bs_)); \
  } while (0)

#define TPD_CUBLAS_WARN(call)                                                                        \
  do {                                                                                               \
    const cublasStatus_t tpd_bs_ = (call);                                                           \
    if (tpd_bs_ != CUBLAS_STATUS_SUCCESS)                                                            \
      TPD_WARN("%s failed: %s (device %d, rank %d)", #call, cublasLtGetStatusString(tpd_bs_),        \
               tpd_cuda_current_device(), tpd_log_rank());                                           \
  } while (0)

#endif
