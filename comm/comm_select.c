/* Which communicator to use: the program's (single process or MPI, from the
 * launch) and the engine's (NCCL for a device backend when the build has it).
 * A server embedding libtpdecode calls these instead of repeating the policy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"

int tpd_comm_launched_by_mpi(void) {
  static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i])) return 1;
  const char *n = getenv("SLURM_NTASKS");
  return n && atoi(n) > 1 && getenv("SLURM_PROCID") != NULL;
}

tpd_status tpd_comm_create_default(int *argc, char ***argv, tpd_comm **out) {
  const char *want = tpd_param_str("COMM", NULL);
  int use_mpi = tpd_comm_launched_by_mpi();
  if (want) {
    if (!strcmp(want, "single")) use_mpi = 0;
    else if (!strcmp(want, "mpi")) use_mpi = 1;
    else return TPD_FAIL(TPD_ERR_ARG, "TPD_COMM=%s: expected single or mpi", want);
  }
  if (use_mpi) {
#ifdef TPD_HAVE_MPI
    return tpd_comm_mpi_create(argc, argv, out);
#else
    if (want) return TPD_FAIL(TPD_ERR_UNSUPPORTED, "TPD_COMM=mpi but this build has no MPI");
    /* started by a launcher but built without MPI: each process would run
     * alone and duplicate the work, so refuse rather than mislead */
    const char *sz = getenv("OMPI_COMM_WORLD_SIZE");
    if (!sz) sz = getenv("PMI_SIZE");
    if (sz && atoi(sz) > 1)
      return TPD_FAIL(TPD_ERR_UNSUPPORTED, "started as %s ranks but this build has no MPI (rebuild with MPI for TP > 1)", sz);
#endif
  }
  (void)argc, (void)argv;
  return tpd_comm_single_create(out);
}

tpd_status tpd_comm_for_backend(tpd_comm *comm, const char *backend, tpd_comm **use, tpd_comm **owned, char *note,
                                size_t note_cap) {
  if (!comm) return TPD_FAIL(TPD_ERR_ARG, "tpd_comm_for_backend: comm is NULL");
  if (!backend) return TPD_FAIL(TPD_ERR_ARG, "tpd_comm_for_backend: backend is NULL");
  if (!use || !owned) return TPD_FAIL(TPD_ERR_ARG, "tpd_comm_for_backend: %s is NULL", !use ? "use" : "owned");
  *use = comm;
  *owned = NULL;
  if (note && note_cap) note[0] = 0;
  if (strcmp(backend, "cuda") || comm->size == 1) return TPD_OK;
#ifdef TPD_HAVE_NCCL
  tpd_comm *nccl = NULL;
  const tpd_status s = tpd_comm_nccl_create(comm, -1, &nccl);
  int bad = -1;
  TPD_TRY(tpd_comm_agree(comm, s == TPD_OK, &bad));
  if (bad < 0) {
    *use = *owned = nccl;
    return TPD_OK;
  }
  if (note && note_cap)
    snprintf(note, note_cap, "NCCL failed on rank %d%s%s; all-reduce through MPI with host staging", bad,
             bad == comm->rank ? ": " : "", bad == comm->rank ? tpd_last_error() : "");
  tpd_comm_destroy(nccl);
  tpd_clear_error();
#else
  if (note && note_cap) snprintf(note, note_cap, "no NCCL in this build; all-reduce through MPI with host staging");
#endif
  return TPD_OK;
}
