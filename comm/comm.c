/* Communicator selection and helpers shared by every implementation. */
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"

int tpd_comm_have_mpi(void) {
#ifdef TPD_HAVE_MPI
  return 1;
#else
  return 0;
#endif
}

int tpd_comm_have_nccl(void) {
#ifdef TPD_HAVE_NCCL
  return 1;
#else
  return 0;
#endif
}

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

void tpd_comm_destroy(tpd_comm *c) {
  if (c) c->ops->destroy(c);
}

tpd_status tpd_comm_agree(tpd_comm *c, int ok, int *first_failed) {
  *first_failed = -1;
  if (c->size == 1) {
    if (!ok) *first_failed = 0;
    return TPD_OK;
  }
  int *all = malloc(sizeof(int) * (size_t)c->size);
  if (!all) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  int mine = ok ? 1 : 0;
  /* a rank that failed holds the message of its failure: should the
   * agreement fail too (a peer died), that message is still the one to
   * report, so it is kept and the communication failure only logged */
  tpd_error_state own;
  if (!ok) tpd_error_save(&own);
  tpd_status st = c->ops->host_allgather(c, &mine, all, sizeof(int));
  if (st != TPD_OK && !ok && own.has_error) {
    TPD_WARN("could not agree on this rank's failure with the other ranks: %s", tpd_last_error());
    tpd_error_restore(&own);
  }
  if (st == TPD_OK)
    for (int r = 0; r < c->size; r++)
      if (!all[r]) {
        *first_failed = r;
        break;
      }
  free(all);
  return st;
}
