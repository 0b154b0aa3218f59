/* The communicator interface: one process per rank, collectives over the
 * tensor-parallel group.
 *
 * "Data" collectives (all-reduce, all-gather, broadcast) take buffers in the
 * communicator's memory space: host memory for the MPI and single-process
 * communicators, device memory for NCCL (data_on_device = 1).  The "host_"
 * collectives always take host memory; the engine uses them for control
 * (sampled token ids, argmax candidates, agreeing on errors).
 * `stream` is a cudaStream_t for device communicators and ignored otherwise.
 * Every call returns a tpd_status; a failure names the call, file:line and rank.
 *
 * Ownership: whoever creates a tpd_comm (tpd_comm_*_create, tpd_comm_mpi_from
 * in comm/tpdecode_mpi.h, or the `owned` of tpd_comm_for_backend) destroys it
 * with tpd_comm_destroy, once, after everything that uses it.  Engines and
 * the NCCL communicator only borrow the communicator they are given: they
 * never destroy it, so destroy the engine (and the NCCL communicator over
 * it) first.  The MPI communicators work on a duplicate (MPI_Comm_dup) of
 * MPI_COMM_WORLD or of the application's communicator; tpd_comm_destroy
 * frees that duplicate, never the application's communicator. */
#ifndef TPD_COMM_H
#define TPD_COMM_H

#include <stddef.h>

#include "runtime/base/dtype.h"
#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tpd_comm tpd_comm;

/* An all-reduce in flight (async where the communicator allows it). */
typedef struct {
  void *impl;  /* the communicator's request (MPI: a slot of its pool), or NULL when it completed at start */
  int active;
} tpd_comm_req;

typedef struct {
  const char *name;
  int data_on_device;
  void (*destroy)(tpd_comm *c);
  /* In-place sum over all ranks.  MPI (host buffers): every element is
   * ((x0 + x1) + x2) + ... + x_{p-1} in rank order, added in f32 (16-bit
   * inputs widened) and rounded once to dt, bit for bit the same whatever
   * n_elems and however a message is split, blocking or started -- so a
   * row's sum does not depend on the rest of the batch (comm/comm_mpi.c).
   * Single: a copy.  NCCL makes no such promise: its order may change with
   * the size and the algorithm it picks. */
  tpd_status (*allreduce)(tpd_comm *c, void *buf, size_t n_elems, tpd_dtype dt, void *stream);
  /* start an in-place sum (the same result as allreduce); finish it with
   * wait() before touching buf */
  tpd_status (*allreduce_start)(tpd_comm *c, void *buf, size_t n_elems, tpd_dtype dt, void *stream,
                                tpd_comm_req *req);
  tpd_status (*wait)(tpd_comm *c, tpd_comm_req *req);
  /* recv[r * n_bytes ...] = send of rank r */
  tpd_status (*allgather)(tpd_comm *c, const void *send, void *recv, size_t n_bytes, void *stream);
  tpd_status (*broadcast)(tpd_comm *c, void *buf, size_t n_bytes, int root, void *stream);
  tpd_status (*host_allgather)(tpd_comm *c, const void *send, void *recv, size_t n_bytes);
  tpd_status (*host_broadcast)(tpd_comm *c, void *buf, size_t n_bytes, int root);
  tpd_status (*barrier)(tpd_comm *c);
  /* ends every rank of the job now (used when a rank fails mid-collective) */
  void (*abort)(tpd_comm *c, int code);
  /* The collective watchdog (MPI and NCCL): a wait in any collective above
   * longer than the timeout (tpd_comm_timeouts), or a peer process found
   * gone, fails that call with TPD_ERR_COMM and one line naming the step,
   * the collective (with its size and sequence number) and the ranks that did
   * not arrive; every rank still waiting learns it over a side channel and
   * fails the same way.  The communicator is then unusable: every later call
   * fails at once, and destroying it ends the job (MPI_Abort), since MPI
   * cannot be finalised with a peer missing. */
  /* Optional (NULL: nothing to check): tpd_comm_check_peers. */
  tpd_status (*check_peers)(tpd_comm *c);
} tpd_comm_ops;

struct tpd_comm {
  const tpd_comm_ops *ops;
  int rank, size;             /* in the TP group */
  int local_rank, local_size; /* on this node */
  void *impl;
  /* What the caller is doing, for the collective watchdog (docs/reliability.md,
   * "Ranks that die or stall"); plain fields, written by the caller between
   * collectives (tpd_comm_set_step, tpd_comm_idle_next), read by the
   * communicator.  step: the engine's forward counter, named in the
   * watchdog's message; -1 (as created) means loading, when collectives wait
   * under TPD_COMM_LOAD_TIMEOUT instead of TPD_COMM_TIMEOUT.  idle_next: the
   * next collective may wait without bound (a follower waiting for the
   * leader's next plan while the server is idle): no timeout, only the peers'
   * liveness is watched; the communicator clears it when that collective
   * starts. */
  long step;
  int idle_next;
};

static inline void tpd_comm_set_step(tpd_comm *c, long step) { c->step = step; }
static inline void tpd_comm_idle_next(tpd_comm *c) { c->idle_next = 1; }

/* The watchdog's timeouts in seconds (0 = off), from the environment:
 * TPD_COMM_TIMEOUT (default 60) bounds each wait in a collective once the
 * engine runs forwards; TPD_COMM_LOAD_TIMEOUT (default 600, never below the
 * other) bounds each wait while loading (step < 0).  Fractions are allowed.
 * A value that is not a number >= 0 is an error naming the variable.  Read
 * by every communicator at creation. */
tpd_status tpd_comm_timeouts(double *wait_s, double *load_s);

/* Between collectives, without waiting: TPD_OK while every peer's process
 * is there (as far as this host can see; a peer on another host is left to
 * the launcher) and no peer's watchdog has fired; otherwise the watchdog's
 * TPD_ERR_COMM and one line, and the communicator is unusable.  Not
 * collective; costs a probe and a /proc read per peer.  A server's leader
 * calls it while idle: it is in no collective then, so nothing else would
 * notice a follower's death before the next request. */
tpd_status tpd_comm_check_peers(tpd_comm *c);

/* Single process, TP=1: every collective is a copy or a no-op. */
tpd_status tpd_comm_single_create(tpd_comm **out);
/* A duplicate of MPI_COMM_WORLD (a sub-communicator the application gives:
 * tpd_comm_mpi_from, comm/tpdecode_mpi.h).  Initialises MPI (MPI_Init_thread with
 * MPI_THREAD_FUNNELED) unless it is already initialised; either way a thread
 * level below FUNNELED, or a call from another thread than MPI's main one,
 * is an error.  Each communicator it returns holds a reference on MPI: when
 * tpdecode initialised MPI, MPI_Finalize runs as the last of them is
 * destroyed (so destroying one never ends MPI under another); MPI that the
 * application initialised is never finalised here.  Once finalised, MPI
 * cannot start again in this process, and this returns an error. */
tpd_status tpd_comm_mpi_create(int *argc, char ***argv, tpd_comm **out);
/* NCCL over the ranks of a bootstrap communicator (MPI, or the single one
 * for one rank); id broadcast over it, device chosen by node-local rank, one
 * warm-up all-reduce before it returns.  `mpi` stays owned by the caller. */
tpd_status tpd_comm_nccl_create(tpd_comm *mpi, int device, tpd_comm **out);

/* What a launched program should use: TPD_COMM=single|mpi forces a choice;
 * otherwise MPI when started by mpirun/srun (and built with MPI), else single. */
tpd_status tpd_comm_create_default(int *argc, char ***argv, tpd_comm **out);
/* The communicator an engine on `backend` should use, given the program's
 * communicator `comm`: for "cuda" with more than one rank, NCCL over `comm`
 * when the build has it, on every rank or on none (agreed collectively: call
 * it on every rank); otherwise `comm` itself (a device backend then stages
 * all-reduces through host memory).  *owned is the NCCL communicator to
 * destroy after the engine, or NULL; note (may be NULL) says why NCCL was not
 * used.  Fails only on a NULL argument or when the agreement fails.
 * (comm/comm_select.c, with tpd_comm_create_default.) */
tpd_status tpd_comm_for_backend(tpd_comm *comm, const char *backend, tpd_comm **use, tpd_comm **owned, char *note,
                                size_t note_cap);
int tpd_comm_launched_by_mpi(void);

/* Frees c and what it owns (for MPI: its duplicate communicator, and MPI
 * itself when tpdecode initialised it and c held the last reference; for
 * NCCL: its NCCL communicator, not the bootstrap one).  NULL is a no-op. */
void tpd_comm_destroy(tpd_comm *c);

/* Collective agreement on a local status: every rank learns the lowest rank
 * that failed (or -1).  Call where all ranks arrive.  When the agreement
 * itself fails on a rank that had failed (ok == 0), that rank's own message
 * is kept (the communication failure is logged), since it names the cause. */
tpd_status tpd_comm_agree(tpd_comm *c, int ok, int *first_failed);

#ifdef __cplusplus
}
#endif
#endif
