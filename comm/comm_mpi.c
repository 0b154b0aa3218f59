/* MPI communicator over MPI_COMM_WORLD, for host buffers. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"

/* Checks an MPI call: names the call, file:line, rank and MPI's message. */
#define TPD_MPI_CHECK(call)                                                                        \
  do {                                                                                             \
    int tpd_rc_ = (call);                                                                          \
    if (tpd_rc_ != MPI_SUCCESS) {                                                                  \
      char tpd_msg_[MPI_MAX_ERROR_STRING];                                                         \
      int tpd_len_ = 0;                                                                            \
      MPI_Error_string(tpd_rc_, tpd_msg_, &tpd_len_);                                              \
      return tpd_fail_at(TPD_ERR_COMM, __FILE__, __LINE__, "%s failed on rank %d: %s", #call,      \
                         tpd_log_rank(), tpd_msg_);                                                \
    }                                                                                              \
  } while (0)

/* All-reduces in flight at once per communicator (allreduce_start before
 * its wait): the engine has at most 2 micro-batches x 8 chunks (AR_MAX in
 * runtime/engine/engine.c).  The requests are a fixed pool, so starting one
 * never allocates; a start with every request in flight is an error. */
#define TPD_MPI_MAX_REQS 16

typedef struct {
  MPI_Comm world;
  MPI_Op op_bf16, op_f16;
  int counted; /* holds a reference on g_mpi_users */
  MPI_Request reqs[TPD_MPI_MAX_REQS];
  unsigned char req_busy[TPD_MPI_MAX_REQS];
} mpi_impl;

/* MPI's lifetime in this process.  Every communicator made by
 * tpd_comm_mpi_create holds one reference; MPI_Finalize runs when the last
 * is destroyed, and only if tpdecode itself called MPI_Init_thread: MPI that
 * the application initialised is the application's to finalise.  Create
 * and destroy run on MPI's main thread (MPI_THREAD_FUNNELED), so plain ints
 * suffice. */
static int g_mpi_users;
static int g_mpi_ours;

/* The thread level tpdecode needs: one thread (the main one) calls MPI while
 * the CPU kernels run on worker threads. */
#define TPD_MPI_THREAD_LEVEL MPI_THREAD_FUNNELED

static const char *thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
  }
  return "an unknown thread level";
}

/* `provided` against what tpdecode needs, and the calling thread against
 * MPI_THREAD_FUNNELED's rule that only the main thread calls MPI. */
static tpd_status check_thread_level(int provided, const char *who) {
  if (provided < TPD_MPI_THREAD_LEVEL)
    return TPD_FAIL(TPD_ERR_COMM,
                    "MPI (initialised by %s) provides %s but tpdecode needs %s; initialise MPI with "
                    "MPI_Init_thread(..., %s, ...)",
                    who, thread_level_name(provided), thread_level_name(TPD_MPI_THREAD_LEVEL),
                    thread_level_name(TPD_MPI_THREAD_LEVEL));
  int is_main = 0;
  TPD_MPI_CHECK(MPI_Is_thread_main(&is_main));
  if (!is_main && provided < MPI_THREAD_SERIALIZED)
    return TPD_FAIL(TPD_ERR_COMM, "MPI communicator created on a thread other than MPI's main thread, which %s forbids",
                    thread_level_name(provided));
  return TPD_OK;
}

static void sum_bf16(void *in, void *inout, int *len, MPI_Datatype *dt) {
  (void)dt;
  const uint16_t *a = in;
  uint16_t *b = inout;
  for (int i = 0; i < *len; i++) b[i] = tpd_f32_to_bf16(tpd_bf16_to_f32(a[i]) + tpd_bf16_to_f32(b[i]));
}

static void sum_f16(void *in, void *inout, int *len, MPI_Datatype *dt) {
  (void)dt;
  const uint16_t *a = in;
  uint16_t *b = inout;
  for (int i = 0; i < *len; i++) b[i] = tpd_f32_to_f16(tpd_f16_to_f32(a[i]) + tpd_f16_to_f32(b[i]));
}

static tpd_status mpi_type(const mpi_impl *m, tpd_dtype dt, MPI_Datatype *type, MPI_Op *op) {
  switch (dt) {
    case TPD_F32: *type = MPI_FLOAT; *op = MPI_SUM; return TPD_OK;
    case TPD_BF16: *type = MPI_UINT16_T; *op = m->op_bf16; return TPD_OK;
    case TPD_F16: *type = MPI_UINT16_T; *op = m->op_f16; return TPD_OK;
    default: return TPD_FAIL(TPD_ERR_ARG, "all-reduce of dtype %d", (int)dt);
  }
}

static int count_ok(size_t n) { return n <= (size_t)0x7fffffff; }

static tpd_status mpi_allreduce(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream) {
  (void)stream;
  mpi_impl *m = c->impl;
  MPI_Datatype type = MPI_FLOAT;
  MPI_Op op = MPI_SUM;
  TPD_TRY(mpi_type(m, dt, &type, &op));
  if (!count_ok(n)) return TPD_FAIL(TPD_ERR_ARG, "all-reduce of %zu elements exceeds MPI's int count", n);
  TPD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, type, op, m->world));
  return TPD_OK;
}

static tpd_status mpi_allreduce_start(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream,
                                      tpd_comm_req *req) {
  (void)stream;
  mpi_impl *m = c->impl;
  MPI_Datatype type = MPI_FLOAT;
  MPI_Op op = MPI_SUM;
  TPD_TRY(mpi_type(m, dt, &type, &op));
  if (!count_ok(n)) return TPD_FAIL(TPD_ERR_ARG, "all-reduce of %zu elements exceeds MPI's int count", n);
  int k = 0;
  while (k < TPD_MPI_MAX_REQS && m->req_busy[k]) k++;
  if (k == TPD_MPI_MAX_REQS)
    return TPD_FAIL(TPD_ERR_INTERNAL,
                    "MPI all-reduce: all %d requests of the communicator are in flight; wait for one before starting "
                    "another (rank %d)",
                    TPD_MPI_MAX_REQS, tpd_log_rank());
  MPI_Request *r = &m->reqs[k];
  TPD_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, type, op, m->world, r));
  m->req_busy[k] = 1;
  req->impl = r;
  req->active = 1;
  return TPD_OK;
}

static tpd_status mpi_wait(tpd_comm *c, tpd_comm_req *req) {
  mpi_impl *m = c->impl;
  if (!req->active) return TPD_OK;
  MPI_Request *r = req->impl;
  req->active = 0;
  req->impl = NULL;
  int k = 0;
  while (k < TPD_MPI_MAX_REQS && &m->reqs[k] != r) k++;
  if (k == TPD_MPI_MAX_REQS || !m->req_busy[k])
    return TPD_FAIL(TPD_ERR_ARG, "MPI wait: the request is not one in flight on this communicator (rank %d)",
                    tpd_log_rank());
  int rc = MPI_Wait(r, MPI_STATUS_IGNORE);
  m->req_busy[k] = 0;
  TPD_MPI_CHECK(rc);
  return TPD_OK;
}

static tpd_status mpi_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes, void *stream) {
  (void)stream;
  mpi_impl *m = c->impl;
  if (!count_ok(n_bytes)) return TPD_FAIL(TPD_ERR_ARG, "all-gather of %zu bytes exceeds MPI's int count", n_bytes);
  if (send == (const char *)recv + (size_t)c->rank * n_bytes)
    TPD_MPI_CHECK(MPI_Allgather(MPI_IN_PLACE, 0, MPI_BYTE, recv, (int)n_bytes, MPI_BYTE, m->world));
  else
    TPD_MPI_CHECK(MPI_Allgather(send, (int)n_bytes, MPI_BYTE, recv, (int)n_bytes, MPI_BYTE, m->world));
  return TPD_OK;
}

static tpd_status mpi_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root, void *stream) {
  (void)stream;
  mpi_impl *m = c->impl;
  if (!count_ok(n_bytes)) return TPD_FAIL(TPD_ERR_ARG, "broadcast of %zu bytes exceeds MPI's int count", n_bytes);
  TPD_MPI_CHECK(MPI_Bcast(buf, (int)n_bytes, MPI_BYTE, root, m->world));
  return TPD_OK;
}

static tpd_status mpi_host_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes) {
  return mpi_allgather(c, send, recv, n_bytes, NULL);
}

static tpd_status mpi_host_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root) {
  return mpi_broadcast(c, buf, n_bytes, root, NULL);
}

static tpd_status mpi_barrier(tpd_comm *c) {
  mpi_impl *m = c->impl;
  TPD_MPI_CHECK(MPI_Barrier(m->world));
  return TPD_OK;
}

static void mpi_abort(tpd_comm *c, int code) {
  mpi_impl *m = c->impl;
  MPI_Abort(m->world, code);
  exit(code); /* not reached */
}

static void mpi_destroy(tpd_comm *c) {
  mpi_impl *m = c->impl;
  if (m) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
      if (m->op_bf16 != MPI_OP_NULL) MPI_Op_free(&m->op_bf16);
      if (m->op_f16 != MPI_OP_NULL) MPI_Op_free(&m->op_f16);
      if (m->world != MPI_COMM_NULL) MPI_Comm_free(&m->world);
    }
    if (m->counted && --g_mpi_users == 0 && g_mpi_ours && !finalized) {
      const int rc = MPI_Finalize();
      if (rc != MPI_SUCCESS) TPD_WARN("MPI_Finalize failed (code %d) on rank %d", rc, tpd_log_rank());
    }
    free(m);
  }
  free(c);
}

static const tpd_comm_ops mpi_ops = {
    .name = "mpi",
    .data_on_device = 0,
    .destroy = mpi_destroy,
    .allreduce = mpi_allreduce,
    .allreduce_start = mpi_allreduce_start,
    .wait = mpi_wait,
    .allgather = mpi_allgather,
    .broadcast = mpi_broadcast,
    .host_allgather = mpi_host_allgather,
    .host_broadcast = mpi_host_broadcast,
    .barrier = mpi_barrier,
    .abort = mpi_abort,
};

static tpd_status mpi_setup(tpd_comm *c, mpi_impl *m) {
  TPD_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &m->world));
  TPD_MPI_CHECK(MPI_Comm_set_errhandler(m->world, MPI_ERRORS_RETURN));
  TPD_MPI_CHECK(MPI_Comm_rank(m->world, &c->rank));
  TPD_MPI_CHECK(MPI_Comm_size(m->world, &c->size));
  MPI_Comm local;
  TPD_MPI_CHECK(MPI_Comm_split_type(m->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local));
  int rc1 = MPI_Comm_rank(local, &c->local_rank), rc2 = MPI_Comm_size(local, &c->local_size);
  MPI_Comm_free(&local);
  TPD_MPI_CHECK(rc1);
  TPD_MPI_CHECK(rc2);
  TPD_MPI_CHECK(MPI_Op_create(sum_bf16, 1, &m->op_bf16));
  TPD_MPI_CHECK(MPI_Op_create(sum_f16, 1, &m->op_f16));
  return TPD_OK;
}

tpd_status tpd_comm_mpi_create(int *argc, char ***argv, tpd_comm **out) {
  *out = NULL;
  tpd_comm *c = calloc(1, sizeof *c);
  mpi_impl *m = calloc(1, sizeof *m);
  if (!c || !m) {
    free(c);
    free(m);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  }
  m->world = MPI_COMM_NULL;
  m->op_bf16 = m->op_f16 = MPI_OP_NULL;
  c->ops = &mpi_ops;
  c->impl = m;
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (finalized) {
    free(c);
    free(m);
    return TPD_FAIL(TPD_ERR_COMM, "MPI has already been finalized in this process (it cannot be initialised twice)");
  }
  int provided = MPI_THREAD_SINGLE;
  tpd_status st = TPD_OK;
  if (!inited) {
    const int rc = MPI_Init_thread(argc, argv, TPD_MPI_THREAD_LEVEL, &provided);
    if (rc != MPI_SUCCESS) {
      free(c);
      free(m);
      return TPD_FAIL(TPD_ERR_COMM, "MPI_Init_thread failed (code %d)", rc);
    }
    g_mpi_ours = 1;
    st = check_thread_level(provided, "tpdecode");
  } else {
    const int rc = MPI_Query_thread(&provided);
    st = rc == MPI_SUCCESS ? check_thread_level(provided, g_mpi_ours ? "tpdecode" : "the application")
                           : TPD_FAIL(TPD_ERR_COMM, "MPI_Query_thread failed (code %d)", rc);
  }
  /* from here on this communicator holds a reference: destroying it on a
   * failure below finalises MPI if no other holds one and tpdecode began it */
  m->counted = 1;
  g_mpi_users++;
  if (st != TPD_OK) {
    mpi_destroy(c);
    return st;
  }
  st = mpi_setup(c, m);
  if (st != TPD_OK) {
    mpi_destroy(c);
    return st;
  }
  tpd_log_set_rank(c->rank);
  *out = c;
  return TPD_OK;
}
