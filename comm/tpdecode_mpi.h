/* tpdecode over a communicator the application gives (MPI builds only).
 *
 * A server that runs other MPI work next to tpdecode hands it a
 * sub-communicator (from MPI_Comm_split, say) instead of letting tpdecode
 * take MPI_COMM_WORLD (tpd_comm_mpi_create, comm/comm.h).  Include this
 * header after building with MPI; it needs <mpi.h> on the include path
 * (mpicc, or the flags of the MPI that libtpdecode was built with).
 *
 *   MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
 *   MPI_Comm half;  MPI_Comm_split(MPI_COMM_WORLD, color, key, &half);
 *   tpd_comm *comm; tpd_comm_mpi_from(half, &comm);
 *   MPI_Comm_free(&half);             // allowed: tpdecode holds its own duplicate
 *   ... tpd_engine_create(&opts, comm, &e); ... tpd_engine_destroy(e);
 *   tpd_comm_destroy(comm);           // before MPI_Finalize
 *   MPI_Finalize();                   // the application's, as always
 */
#ifndef TPDECODE_MPI_H
#define TPDECODE_MPI_H

#include <mpi.h>

#include "comm/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A tpdecode communicator over the ranks of `comm`.
 *
 * Collective: every rank of `comm` calls it (it duplicates `comm`).
 * MPI must already be initialised, by the application, with at least
 * MPI_THREAD_FUNNELED, and this is called from MPI's main thread; otherwise
 * it fails with TPD_ERR_STATE and a message naming the missing condition
 * (MPI not initialised, already finalised, the thread level provided, or the
 * calling thread).  MPI_COMM_NULL, or an inter-communicator, is TPD_ERR_ARG.
 *
 * Ownership: tpdecode calls MPI_Comm_dup(comm) and works on that duplicate
 * only, so its messages never match the application's on `comm`.  The
 * caller keeps `comm` and frees it when it likes (even right after this
 * returns); tpd_comm_destroy frees the duplicate.  tpdecode never calls
 * MPI_Finalize on MPI the application initialised: destroy every tpdecode
 * communicator, then finalise MPI yourself.  (Should MPI have been
 * initialised by tpdecode, through tpd_comm_mpi_create, this communicator
 * holds a reference like those do, and MPI ends when the last of them is
 * destroyed; comm/comm.h.)
 *
 * rank and size are the rank and size in `comm`; local_rank and local_size
 * count the ranks of `comm` on this node (MPI_Comm_split_type with
 * MPI_COMM_TYPE_SHARED on the duplicate), which is what picks a device.
 * Log lines (runtime/base/error.h) then name the process by its rank in
 * MPI_COMM_WORLD, which stays unique where ranks in `comm` do not.
 * On failure *out is NULL and nothing is left allocated. */
tpd_status tpd_comm_mpi_from(MPI_Comm comm, tpd_comm **out);

#ifdef __cplusplus
}
#endif
#endif
