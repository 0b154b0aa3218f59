/* tpd_comm_for_backend (comm/comm_select.c): the communicator an engine uses
 * for a backend, as the programs and an embedding server ask for it.
 *   - cpu, at any size: the program's communicator itself, nothing owned, no note;
 *   - cuda on one rank: the same (nothing to all-reduce across);
 *   - cuda on several ranks: NCCL on every rank or on none (the ranks agree);
 *     without it the program's communicator, with a note saying why
 *     ("no NCCL in this build" or "NCCL failed on rank R") and that the
 *     all-reduce stages through host memory;
 *   - a NULL argument: TPD_ERR_ARG naming it.
 * Run alone (single process) and under mpirun -np 2. */
#include <string.h>

#include "comm/comm.h"
#include "testutil.h"

#define STAGED "; all-reduce through MPI with host staging"

static void expect_same(tpd_comm *comm, const char *backend) {
  tpd_comm *use = NULL, *owned = (tpd_comm *)&use; /* not NULL: the call must clear it */
  char note[400];
  memset(note, 'x', sizeof note - 1);
  note[sizeof note - 1] = 0;
  CHECK_OK(tpd_comm_for_backend(comm, backend, &use, &owned, note, sizeof note));
  CHECK(use == comm, "%s, %d rank(s): another communicator than the program's", backend, comm->size);
  CHECK(owned == NULL, "%s, %d rank(s): a communicator to destroy", backend, comm->size);
  CHECK(note[0] == 0, "%s, %d rank(s): note '%.60s'", backend, comm->size, note);
}

static void expect_arg(tpd_status st, const char *name) {
  CHECK(st == TPD_ERR_ARG, "NULL %s -> %s", name, tpd_status_name(st));
  CHECK(strstr(tpd_last_error(), name) != NULL, "NULL %s: message '%s' does not name it", name, tpd_last_error());
  tpd_clear_error();
}

int main(int argc, char **argv) {
  tpd_comm *comm = NULL;
  if (tpd_comm_create_default(&argc, &argv, &comm) != TPD_OK) {
    fprintf(stderr, "test_comm_select: %s\n", tpd_last_error());
    return 1;
  }
  expect_same(comm, "cpu");
  if (comm->size == 1) expect_same(comm, "cuda");

  tpd_comm *use = NULL, *owned = NULL;
  char note[400] = "";
  expect_arg(tpd_comm_for_backend(NULL, "cuda", &use, &owned, note, sizeof note), "comm");
  expect_arg(tpd_comm_for_backend(comm, NULL, &use, &owned, note, sizeof note), "backend");
  expect_arg(tpd_comm_for_backend(comm, "cuda", NULL, &owned, note, sizeof note), "use");
  expect_arg(tpd_comm_for_backend(comm, "cuda", &use, NULL, note, sizeof note), "owned");

  if (comm->size > 1) {
    CHECK_OK(tpd_comm_for_backend(comm, "cuda", &use, &owned, note, sizeof note));
    /* every rank took the same decision */
    int mine = owned != NULL, all[64] = {0};
    CHECK(comm->size <= 64, "%d ranks", comm->size);
    if (comm->size <= 64) CHECK_OK(comm->ops->host_allgather(comm, &mine, all, sizeof mine));
    for (int r = 0; r < comm->size && r < 64; r++)
      CHECK(all[r] == mine, "rank %d chose %s, rank %d %s", r, all[r] ? "NCCL" : "host staging", comm->rank,
            mine ? "NCCL" : "host staging");
    if (owned) {
      CHECK(use == owned && !strcmp(use->ops->name, "nccl") && use->size == comm->size,
            "NCCL chosen: use %p owned %p (%s, %d ranks)", (void *)use, (void *)owned, use->ops->name, use->size);
      CHECK(note[0] == 0, "NCCL chosen, but note '%s'", note);
      tpd_comm_destroy(owned);
    } else {
      CHECK(use == comm, "no NCCL: another communicator than the program's");
      const size_t n = strlen(note), k = strlen(STAGED);
      CHECK(n > k && !strcmp(note + n - k, STAGED), "no NCCL: note '%s' does not say the all-reduce is staged", note);
#ifdef TPD_HAVE_NCCL
      CHECK(!strncmp(note, "NCCL failed on rank ", 20), "NCCL in the build, not used: note '%s'", note);
#else
      CHECK(!strcmp(note, "no NCCL in this build" STAGED), "no NCCL in the build: note '%s'", note);
#endif
    }
  }
  const int bad = tu_finish(comm->size > 1 ? "test_comm_select (np 2)" : "test_comm_select");
  tpd_comm_destroy(comm);
  return bad;
}
