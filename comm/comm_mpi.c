/* MPI communicator for host buffers: a duplicate of MPI_COMM_WORLD
 * (tpd_comm_mpi_create) or of a communicator the application gives
 * (tpd_comm_mpi_from, comm/tpdecode_mpi.h).  Its all-reduce sums in rank
 * order ("all-reduce in rank order" below). */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "comm/tpdecode_mpi.h"

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
 * runtime/engine/engine.c).  The requests are a fixed pool; with more than 2
 * ranks each has its own gather scratch, which a start grows only when the
 * message is larger than any that request has carried.  A start with every
 * request in flight is an error. */
#define TPD_MPI_MAX_REQS 16

/* Host scratch for the ordered all-reduce: grown when a larger message
 * arrives, never shrunk, so once the largest step has run nothing more is
 * allocated. */
typedef struct {
  void *p;
  size_t cap; /* bytes */
} mpi_scratch;

/* One all-reduce in flight.  With more than 2 ranks it is an all-gather of
 * `buf` into `scratch`, and wait sums the gathered rows into `buf`. */
typedef struct {
  MPI_Request req;
  int busy;
  void *buf; /* non-NULL: the ordered sum at wait goes here */
  size_t n;  /* elements */
  tpd_dtype dt;
  mpi_scratch scratch; /* [size, n] of this slot's own */
} mpi_slot;

typedef struct {
  MPI_Comm dup; /* this communicator's own duplicate (of MPI_COMM_WORLD or the application's comm) */
  MPI_Op op_bf16, op_f16;
  int counted; /* holds a reference on g_mpi_users */
  mpi_slot slots[TPD_MPI_MAX_REQS];
  mpi_scratch scratch; /* the blocking all-reduce's */
  /* [size] each, size > 2 only: the reduce-scatter's chunk of every rank in
   * the message (counts, displs) and in the receive scratch (rcounts, rdispls) */
  int *counts, *displs, *rcounts, *rdispls;
} mpi_impl;

/* MPI's lifetime in this process.  Every communicator made by
 * tpd_comm_mpi_create or tpd_comm_mpi_from holds one reference; MPI_Finalize
 * runs when the last is destroyed, and only if tpdecode itself called
 * MPI_Init_thread: MPI that the application initialised is the
 * application's to finalise.  Create and destroy run on MPI's main thread
 * (MPI_THREAD_FUNNELED), so plain ints suffice. */
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
 * MPI_THREAD_FUNNELED's rule that only the main thread calls MPI; `code` is
 * the status of a refusal. */
static tpd_status check_thread_level(int provided, const char *who, tpd_status code) {
  if (provided < TPD_MPI_THREAD_LEVEL)
    return TPD_FAIL(code,
                    "MPI (initialised by %s) provides %s but tpdecode needs %s; initialise MPI with "
                    "MPI_Init_thread(..., %s, ...)",
                    who, thread_level_name(provided), thread_level_name(TPD_MPI_THREAD_LEVEL),
                    thread_level_name(TPD_MPI_THREAD_LEVEL));
  int is_main = 0;
  TPD_MPI_CHECK(MPI_Is_thread_main(&is_main));
  if (!is_main && provided < MPI_THREAD_SERIALIZED)
    return TPD_FAIL(code, "MPI communicator created on a thread other than MPI's main thread, which %s forbids",
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

/* ---- all-reduce in rank order ----
 * With more than 2 ranks, every element of an all-reduce is
 * ((x0 + x1) + x2) + ... + x_{p-1} over the ranks in order, added in f32 (16-bit
 * inputs widened first) and rounded once to the buffer's dtype, whatever the
 * message size and however the caller splits a message: a row's sum does not
 * depend on what else is in the step.  MPI_Allreduce gives no such promise
 * (Open MPI picks recursive doubling or a segmented ring by size, and the
 * ring's chunk boundaries move with the count).  With 1 or 2 ranks every
 * algorithm computes x0 + x1 (commutative, and the 16-bit ops round once), so
 * MPI_Allreduce is kept there. */

/* Gathering the whole message costs each rank `size` times its bytes and
 * one collective; above this many gathered bytes, a reduce-scatter
 * (all-to-all) and an all-gather of the summed chunks move less. */
#define TPD_MPI_GATHER_MAX_BYTES ((size_t)256 << 10)

/* Each request's scratch at creation (more than 2 ranks): a single row of
 * up to 16384 / size f32 elements, or the chunks of one, gathers without
 * allocating; 16 of them are 1 MiB.  The blocking scratch starts at
 * TPD_MPI_GATHER_MAX_BYTES, all the gather path needs. */
#define TPD_MPI_SLOT_SCRATCH_BYTES ((size_t)64 << 10)

/* Grows s to at least n_bytes: to the next power of two (at least 64 KiB),
 * so a batch that grows one row at a time reallocates a few times, not at
 * every new size. */
static tpd_status scratch_reserve(mpi_scratch *s, size_t n_bytes) {
  if (n_bytes <= s->cap) return TPD_OK;
  size_t cap = (size_t)64 << 10;
  while (cap < n_bytes) cap *= 2;
  free(s->p); /* contents need not survive: no copy */
  s->p = malloc(cap);
  s->cap = s->p ? cap : 0;
  if (!s->p)
    return TPD_FAIL(TPD_ERR_OOM, "MPI all-reduce: out of memory for %zu bytes of scratch (rank %d)", cap,
                    tpd_log_rank());
  return TPD_OK;
}

/* acc[j] = (add ? acc[j] : 0) + row[i0 + j] widened to f32, j < m */
static void widen_into(float *acc, const void *row, size_t i0, size_t m, tpd_dtype dt, int add) {
  if (dt == TPD_F32) {
    const float *x = (const float *)row + i0;
    if (add)
      for (size_t j = 0; j < m; j++) acc[j] += x[j];
    else
      memcpy(acc, x, m * sizeof *acc);
  } else if (dt == TPD_BF16) {
    const uint16_t *x = (const uint16_t *)row + i0;
    if (add)
      for (size_t j = 0; j < m; j++) acc[j] += tpd_bf16_to_f32(x[j]);
    else
      for (size_t j = 0; j < m; j++) acc[j] = tpd_bf16_to_f32(x[j]);
  } else {
    const uint16_t *x = (const uint16_t *)row + i0;
    if (add)
      for (size_t j = 0; j < m; j++) acc[j] += tpd_f16_to_f32(x[j]);
    else
      for (size_t j = 0; j < m; j++) acc[j] = tpd_f16_to_f32(x[j]);
  }
}

/* out[i] = ((rows[0][i] + rows[1][i]) + ...) + rows[p-1][i] in f32, rounded
 * once to dt; row r starts r * stride elements into `rows`, i < n.  `out`
 * does not overlap `rows`. */
static void ordered_sum(void *out, const void *rows, size_t stride, size_t n, int p, tpd_dtype dt) {
  enum { BLOCK = 512 };
  float acc[BLOCK];
  const size_t es = tpd_dtype_size(dt);
  for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
    const size_t m = n - i0 < BLOCK ? n - i0 : BLOCK;
    for (int r = 0; r < p; r++) widen_into(acc, (const char *)rows + (size_t)r * stride * es, i0, m, dt, r > 0);
    if (dt == TPD_F32) memcpy((float *)out + i0, acc, m * sizeof *acc);
    else
      for (size_t j = 0; j < m; j++) tpd_store_f32(out, dt, i0 + j, acc[j]);
  }
}

/* Large messages: rank r receives every rank's r-th chunk (all-to-all), sums
 * its chunk in rank order, and the chunks are gathered back into buf. */
static tpd_status allreduce_split(tpd_comm *c, mpi_impl *m, void *buf, size_t n, tpd_dtype dt, MPI_Datatype type) {
  const int p = c->size, me = c->rank;
  const size_t es = tpd_dtype_size(dt);
  for (int r = 0; r < p; r++) {
    m->displs[r] = (int)(n * (size_t)r / (size_t)p);
    m->counts[r] = (int)(n * (size_t)(r + 1) / (size_t)p) - m->displs[r];
  }
  const size_t mine = (size_t)m->counts[me];
  for (int r = 0; r < p; r++) {
    m->rcounts[r] = (int)mine;
    m->rdispls[r] = (int)((size_t)r * mine);
  }
  TPD_TRY(scratch_reserve(&m->scratch, (size_t)p * mine * es));
  TPD_MPI_CHECK(
      MPI_Alltoallv(buf, m->counts, m->displs, type, m->scratch.p, m->rcounts, m->rdispls, type, m->dup));
  ordered_sum((char *)buf + (size_t)m->displs[me] * es, m->scratch.p, mine, mine, p, dt);
  TPD_MPI_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, m->counts, m->displs, type, m->dup));
  return TPD_OK;
}

static tpd_status mpi_allreduce(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream) {
  (void)stream;
  mpi_impl *m = c->impl;
  MPI_Datatype type = MPI_FLOAT;
  MPI_Op op = MPI_SUM;
  TPD_TRY(mpi_type(m, dt, &type, &op));
  if (!count_ok(n)) return TPD_FAIL(TPD_ERR_ARG, "all-reduce of %zu elements exceeds MPI's int count", n);
  if (c->size <= 2) {
    TPD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, type, op, m->dup));
    return TPD_OK;
  }
  const size_t gathered = (size_t)c->size * n * tpd_dtype_size(dt);
  if (gathered > TPD_MPI_GATHER_MAX_BYTES) return allreduce_split(c, m, buf, n, dt, type);
  TPD_TRY(scratch_reserve(&m->scratch, gathered));
  TPD_MPI_CHECK(MPI_Allgather(buf, (int)n, type, m->scratch.p, (int)n, type, m->dup));
  ordered_sum(buf, m->scratch.p, n, n, c->size, dt);
  return TPD_OK;
}

/* Started all-reduces with more than 2 ranks are one MPI_Iallgather of the
 * whole message into the request's own scratch, summed in rank order at
 * wait, at every size: a single collective per request, so waits may come
 * in any order on any rank, as with MPI_Iallreduce (a reduce-scatter at
 * start and an all-gather at wait would move less for large messages, but
 * would make the order of waits a collective order every rank must keep). */
static tpd_status mpi_allreduce_start(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream,
                                      tpd_comm_req *req) {
  (void)stream;
  mpi_impl *m = c->impl;
  MPI_Datatype type = MPI_FLOAT;
  MPI_Op op = MPI_SUM;
  TPD_TRY(mpi_type(m, dt, &type, &op));
  if (!count_ok(n)) return TPD_FAIL(TPD_ERR_ARG, "all-reduce of %zu elements exceeds MPI's int count", n);
  /* the free request whose scratch fits most tightly; if none fits, the
   * largest free one grows */
  const size_t need = c->size > 2 ? (size_t)c->size * n * tpd_dtype_size(dt) : 0;
  int k = -1;
  for (int j = 0; j < TPD_MPI_MAX_REQS; j++) {
    const mpi_slot *t = &m->slots[j];
    if (t->busy) continue;
    if (k < 0) {
      k = j;
      continue;
    }
    const size_t ck = m->slots[k].scratch.cap, cj = t->scratch.cap;
    if (ck >= need ? (cj >= need && cj < ck) : cj > ck) k = j;
  }
  if (k < 0)
    return TPD_FAIL(TPD_ERR_INTERNAL,
                    "MPI all-reduce: all %d requests of the communicator are in flight; wait for one before starting "
                    "another (rank %d)",
                    TPD_MPI_MAX_REQS, tpd_log_rank());
  mpi_slot *s = &m->slots[k];
  s->buf = NULL;
  if (c->size <= 2) {
    TPD_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, type, op, m->dup, &s->req));
  } else {
    TPD_TRY(scratch_reserve(&s->scratch, need));
    TPD_MPI_CHECK(MPI_Iallgather(buf, (int)n, type, s->scratch.p, (int)n, type, m->dup, &s->req));
    s->buf = buf;
    s->n = n;
    s->dt = dt;
  }
  s->busy = 1;
  req->impl = s;
  req->active = 1;
  return TPD_OK;
}

static tpd_status mpi_wait(tpd_comm *c, tpd_comm_req *req) {
  mpi_impl *m = c->impl;
  if (!req->active) return TPD_OK;
  mpi_slot *s = req->impl;
  req->active = 0;
  req->impl = NULL;
  int k = 0;
  while (k < TPD_MPI_MAX_REQS && &m->slots[k] != s) k++;
  if (k == TPD_MPI_MAX_REQS || !s->busy)
    return TPD_FAIL(TPD_ERR_ARG, "MPI wait: the request is not one in flight on this communicator (rank %d)",
                    tpd_log_rank());
  const int rc = MPI_Wait(&s->req, MPI_STATUS_IGNORE);
  s->busy = 0;
  TPD_MPI_CHECK(rc);
  if (s->buf) ordered_sum(s->buf, s->scratch.p, s->n, s->n, c->size, s->dt);
  s->buf = NULL;
  return TPD_OK;
}

static tpd_status mpi_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes, void *stream) {
  (void)stream;
  mpi_impl *m = c->impl;
  if (!count_ok(n_bytes)) return TPD_FAIL(TPD_ERR_ARG, "all-gather of %zu bytes exceeds MPI's int count", n_bytes);
  if (send == (const char *)recv + (size_t)c->rank * n_bytes)
    TPD_MPI_CHECK(MPI_Allgather(MPI_IN_PLACE, 0, MPI_BYTE, recv, (int)n_bytes, MPI_BYTE, m->dup));
  else
    TPD_MPI_CHECK(MPI_Allgather(send, (int)n_bytes, MPI_BYTE, recv, (int)n_bytes, MPI_BYTE, m->dup));
  return TPD_OK;
}

static tpd_status mpi_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root, void *stream) {
  (void)stream;
  mpi_impl *m = c->impl;
  if (!count_ok(n_bytes)) return TPD_FAIL(TPD_ERR_ARG, "broadcast of %zu bytes exceeds MPI's int count", n_bytes);
  TPD_MPI_CHECK(MPI_Bcast(buf, (int)n_bytes, MPI_BYTE, root, m->dup));
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
  TPD_MPI_CHECK(MPI_Barrier(m->dup));
  return TPD_OK;
}

static void mpi_abort(tpd_comm *c, int code) {
  mpi_impl *m = c->impl;
  MPI_Abort(m->dup, code);
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
      if (m->dup != MPI_COMM_NULL) MPI_Comm_free(&m->dup);
    }
    for (int k = 0; k < TPD_MPI_MAX_REQS; k++) free(m->slots[k].scratch.p);
    free(m->scratch.p);
    free(m->counts); /* the four share one allocation */
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

/* Duplicates `parent` into m->dup (errors returned, not fatal), takes rank
 * and size in it, the node-local rank and size among its ranks that share
 * memory, the reduce-scatter layout arrays (more than 2 ranks), and creates
 * the 16-bit sum ops.  Collective over `parent`. */
static tpd_status mpi_setup(tpd_comm *c, mpi_impl *m, MPI_Comm parent) {
  TPD_MPI_CHECK(MPI_Comm_dup(parent, &m->dup));
  TPD_MPI_CHECK(MPI_Comm_set_errhandler(m->dup, MPI_ERRORS_RETURN));
  TPD_MPI_CHECK(MPI_Comm_rank(m->dup, &c->rank));
  TPD_MPI_CHECK(MPI_Comm_size(m->dup, &c->size));
  MPI_Comm local;
  TPD_MPI_CHECK(MPI_Comm_split_type(m->dup, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local));
  const int rc1 = MPI_Comm_rank(local, &c->local_rank), rc2 = MPI_Comm_size(local, &c->local_size);
  MPI_Comm_free(&local);
  TPD_MPI_CHECK(rc1);
  TPD_MPI_CHECK(rc2);
  if (c->size > 2) { /* the ordered all-reduce's reduce-scatter layout */
    m->counts = calloc((size_t)4 * (size_t)c->size, sizeof *m->counts);
    if (!m->counts) return TPD_FAIL(TPD_ERR_OOM, "out of memory for %d ranks' all-reduce layout", c->size);
    m->displs = m->counts + c->size;
    m->rcounts = m->displs + c->size;
    m->rdispls = m->rcounts + c->size;
    TPD_TRY(scratch_reserve(&m->scratch, TPD_MPI_GATHER_MAX_BYTES));
    for (int k = 0; k < TPD_MPI_MAX_REQS; k++)
      TPD_TRY(scratch_reserve(&m->slots[k].scratch, TPD_MPI_SLOT_SCRATCH_BYTES));
  }
  TPD_MPI_CHECK(MPI_Op_create(sum_bf16, 1, &m->op_bf16));
  TPD_MPI_CHECK(MPI_Op_create(sum_f16, 1, &m->op_f16));
  /* log lines name the process by its MPI_COMM_WORLD rank: unique in the
   * job, where a rank in a sub-communicator is not */
  int world_rank = -1;
  TPD_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  tpd_log_set_rank(world_rank);
  return TPD_OK;
}

/* A communicator with nothing MPI in it yet (destroy frees it as is). */
static tpd_status mpi_alloc(tpd_comm **out, mpi_impl **impl) {
  tpd_comm *c = calloc(1, sizeof *c);
  mpi_impl *m = calloc(1, sizeof *m);
  if (!c || !m) {
    free(c);
    free(m);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  }
  m->dup = MPI_COMM_NULL;
  m->op_bf16 = m->op_f16 = MPI_OP_NULL;
  c->ops = &mpi_ops;
  c->impl = m;
  *out = c;
  *impl = m;
  return TPD_OK;
}

tpd_status tpd_comm_mpi_create(int *argc, char ***argv, tpd_comm **out) {
  *out = NULL;
  tpd_comm *c = NULL;
  mpi_impl *m = NULL;
  TPD_TRY(mpi_alloc(&c, &m));
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
    st = check_thread_level(provided, "tpdecode", TPD_ERR_COMM);
  } else {
    const int rc = MPI_Query_thread(&provided);
    st = rc == MPI_SUCCESS ? check_thread_level(provided, g_mpi_ours ? "tpdecode" : "the application", TPD_ERR_COMM)
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
  st = mpi_setup(c, m, MPI_COMM_WORLD);
  if (st != TPD_OK) {
    mpi_destroy(c);
    return st;
  }
  *out = c;
  return TPD_OK;
}

/* MPI's state before tpd_comm_mpi_from takes a reference: initialised, not
 * finalised, at MPI_THREAD_FUNNELED or above, on MPI's main thread. */
static tpd_status check_mpi_usable(void) {
  int inited = 0, finalized = 0;
  TPD_MPI_CHECK(MPI_Finalized(&finalized));
  if (finalized)
    return TPD_FAIL(TPD_ERR_STATE, "tpd_comm_mpi_from: MPI has already been finalized in this process");
  TPD_MPI_CHECK(MPI_Initialized(&inited));
  if (!inited)
    return TPD_FAIL(TPD_ERR_STATE,
                    "tpd_comm_mpi_from: MPI is not initialised; call MPI_Init_thread(..., %s, ...) first",
                    thread_level_name(TPD_MPI_THREAD_LEVEL));
  int provided = MPI_THREAD_SINGLE;
  TPD_MPI_CHECK(MPI_Query_thread(&provided));
  return check_thread_level(provided, g_mpi_ours ? "tpdecode" : "the application", TPD_ERR_STATE);
}

tpd_status tpd_comm_mpi_from(MPI_Comm comm, tpd_comm **out) {
  if (!out) return TPD_FAIL(TPD_ERR_ARG, "tpd_comm_mpi_from: out is NULL");
  *out = NULL;
  if (comm == MPI_COMM_NULL) return TPD_FAIL(TPD_ERR_ARG, "tpd_comm_mpi_from: comm is MPI_COMM_NULL");
  TPD_TRY(check_mpi_usable());
  int inter = 0;
  TPD_MPI_CHECK(MPI_Comm_test_inter(comm, &inter));
  if (inter)
    return TPD_FAIL(TPD_ERR_ARG,
                    "tpd_comm_mpi_from: comm is an inter-communicator; give an intra-communicator (e.g. from "
                    "MPI_Comm_split or MPI_Intercomm_merge)");
  tpd_comm *c = NULL;
  mpi_impl *m = NULL;
  TPD_TRY(mpi_alloc(&c, &m));
  /* a reference like tpd_comm_mpi_create's: MPI that tpdecode initialised
   * stays up while this communicator lives; the application's is never
   * finalised here */
  m->counted = 1;
  g_mpi_users++;
  const tpd_status st = mpi_setup(c, m, comm);
  if (st != TPD_OK) {
    mpi_destroy(c);
    return st;
  }
  *out = c;
  return TPD_OK;
}
