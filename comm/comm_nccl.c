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
 * stays owned by the caller.  abort aborts NCCL, then the MPI job.
 *
 * The watchdog (comm/comm.h; docs/reliability.md, "Ranks that die or
 * stall").  NOT RUN ON A GPU YET: this part is compiled, never executed.
 * The NCCL communicator is created non-blocking (config.blocking = 0), and
 * every NCCL call is followed by a poll of ncclCommGetAsyncError until it
 * leaves ncclInProgress (nccl_settle), so that creation and enqueueing can
 * be bounded too.  Device collectives never block the host here: the host
 * blocks later, in the backend's synchronisation, where this code cannot
 * poll.  So a thread per communicator watches instead:
 *   - each collective enqueued outside graph capture records an event after
 *     itself (a ring of NCCL_MARKS); the thread polls the oldest one not yet
 *     complete, and fires when it has not completed for longer than the
 *     timeout, counted from when the collective before it completed (or
 *     from its enqueue): the span includes the device compute between two
 *     collectives (milliseconds), never the host's idle time;
 *   - it polls ncclCommGetAsyncError every 50 ms and fires on an error.
 * Firing records the one-line message (every later call on this
 * communicator fails with it), then calls ncclCommAbort, which ends the
 * NCCL kernels the host is blocked behind; the host's next call here
 * returns the message, and the launcher prints it and ends the job.  Should
 * the host still not have come back 10 s later, the thread prints the line
 * and aborts the process (SIGABRT), so that no rank stays behind holding its
 * device.  Collectives inside a captured CUDA graph are not marked (events
 * recorded during capture are not host-visible per launch): a stall inside
 * a graph is found only through NCCL's asynchronous error, or by the MPI
 * watchdog at the step's host collective on the other ranks.  NCCL cannot
 * tell which peer did not arrive: the line names the collective and step,
 * and each other rank's watchdog reports its own view. */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* A collective enqueued outside graph capture, with the event recorded after it. */
typedef struct {
  cudaEvent_t ev;
  const char *what;
  size_t count;
  const char *unit; /* of count */
  long step;
  unsigned long long seq;
  double t_enq;
} nccl_mark;

#define NCCL_MARKS 256

typedef struct {
  tpd_comm *mpi; /* not owned */
  ncclComm_t comm;
  int device;
  /* the watchdog (see the top of this file) */
  double timeout_s, load_s; /* tpd_comm_timeouts; 0 = off */
  pthread_mutex_t mu;       /* guards what follows */
  pthread_t thread;
  int thread_on, stop, aborted, reported;
  char *broken; /* the message, once it fired */
  nccl_mark marks[NCCL_MARKS];
  int n_events;             /* marks[0 .. n_events) have an event */
  unsigned long long head, tail, seq; /* marks in flight: [tail, head) mod NCCL_MARKS; collectives enqueued */
  double front_since;       /* when the oldest mark in flight became the oldest */
} nccl_impl;

static double nccl_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void nccl_nap(double s) {
  struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&t, NULL);
}

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

/* The failure every call returns once the watchdog fired (TPD_OK before). */
static tpd_status nccl_broken(tpd_comm *c, const char *call) {
  nccl_impl *n = c->impl;
  pthread_mutex_lock(&n->mu);
  tpd_status st = TPD_OK;
  if (n->broken) {
    n->reported = 1;
    st = TPD_FAIL(TPD_ERR_COMM, "%s", n->broken); /* the line again, whichever call (%s) fails last */
    (void)call;
  }
  pthread_mutex_unlock(&n->mu);
  return st;
}

/* Records the watchdog's message (the first one wins); mu held. */
static void nccl_set_broken(nccl_impl *n, const char *line) {
  if (!n->broken) n->broken = strdup(line);
}

/* After an NCCL call on a non-blocking communicator: polls its state until
 * it leaves ncclInProgress (at most `limit` seconds; 0 = no limit). */
static tpd_status nccl_settle(tpd_comm *c, ncclResult_t r, const char *call, double limit) {
  nccl_impl *n = c->impl;
  const double t0 = nccl_now();
  while (r == ncclInProgress) {
    if (ncclCommGetAsyncError(n->comm, &r) != ncclSuccess) break;
    if (r != ncclInProgress) break;
    if (limit > 0 && nccl_now() - t0 > limit) {
      char line[400];
      snprintf(line, sizeof line, "comm watchdog on rank %d: %s still in progress after %.1f s (device %d)", c->rank,
               call, nccl_now() - t0, n->device);
      pthread_mutex_lock(&n->mu);
      nccl_set_broken(n, line);
      pthread_mutex_unlock(&n->mu);
      return TPD_FAIL(TPD_ERR_COMM, "%s", line);
    }
    nccl_nap(0.0005);
  }
  if (r != ncclSuccess) return TPD_NCCL_FAIL_(call, nccl_message(n->comm, r));
  return TPD_OK;
}

/* The thread: see the top of this file. */
static void *nccl_watch(void *arg) {
  tpd_comm *c = arg;
  nccl_impl *n = c->impl;
  if (cudaSetDevice(n->device) != cudaSuccess) return NULL;
  char line[700];
  for (;;) {
    nccl_nap(0.05);
    line[0] = 0;
    pthread_mutex_lock(&n->mu);
    if (n->stop || n->broken) {
      pthread_mutex_unlock(&n->mu);
      break;
    }
    ncclResult_t ar = ncclSuccess;
    if (ncclCommGetAsyncError(n->comm, &ar) == ncclSuccess && ar != ncclSuccess && ar != ncclInProgress)
      snprintf(line, sizeof line, "comm watchdog on rank %d at step %ld: NCCL reports an error on device %d: %s",
               c->rank, c->step, n->device, nccl_message(n->comm, ar));
    const double now = nccl_now();
    while (!line[0] && n->tail != n->head) {
      const nccl_mark *k = &n->marks[n->tail % NCCL_MARKS];
      const cudaError_t q = cudaEventQuery(k->ev);
      if (q == cudaSuccess) {
        n->tail++;
        n->front_since = now;
        continue;
      }
      if (q != cudaErrorNotReady) {
        snprintf(line, sizeof line, "comm watchdog on rank %d at step %ld: NCCL %s of %zu (collective #%llu): %s",
                 c->rank, k->step, k->what, k->count, k->seq, cudaGetErrorString(q));
        break;
      }
      const double since = k->t_enq > n->front_since ? k->t_enq : n->front_since;
      const double limit = k->step < 0 ? n->load_s : n->timeout_s;
      if (limit > 0 && now - since > limit)
        snprintf(line, sizeof line,
                 "comm watchdog on rank %d at step %ld: NCCL %s of %zu %s (collective #%llu) on device %d: "
                 "no progress for %.1f s (TPD_COMM_%sTIMEOUT=%g); NCCL cannot tell which rank did not arrive",
                 c->rank, k->step, k->what, k->count, k->unit, k->seq, n->device, now - since,
                 k->step < 0 ? "LOAD_" : "", limit);
      break;
    }
    if (line[0]) nccl_set_broken(n, line);
    pthread_mutex_unlock(&n->mu);
    if (!line[0]) continue;
    /* end the stuck kernels, so that the host comes back and reports */
    const ncclResult_t r = ncclCommAbort(n->comm);
    pthread_mutex_lock(&n->mu);
    n->aborted = 1;
    pthread_mutex_unlock(&n->mu);
    if (r != ncclSuccess) TPD_WARN("ncclCommAbort failed: %s (rank %d)", ncclGetErrorString(r), c->rank);
    for (int i = 0; i < 200; i++) { /* 10 s for the host to take the message */
      pthread_mutex_lock(&n->mu);
      const int done = n->reported || n->stop;
      pthread_mutex_unlock(&n->mu);
      if (done) return NULL;
      nccl_nap(0.05);
    }
    fprintf(stderr, "%s; the host did not come back within 10 s of ncclCommAbort: aborting this process\n", line);
    fflush(stderr);
    abort();
  }
  return NULL;
}

/* Marks a collective just enqueued on `stream` (nothing during capture). */
static tpd_status nccl_mark_enqueued(tpd_comm *c, void *stream, const char *what, size_t count, const char *unit) {
  nccl_impl *n = c->impl;
  if (!n->thread_on) return TPD_OK;
  enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  TPD_NCCL_CUDA_CHECK(cudaStreamIsCapturing((cudaStream_t)stream, &cs));
  pthread_mutex_lock(&n->mu);
  const unsigned long long seq = n->seq++;
  if (cs != cudaStreamCaptureStatusNone || n->head - n->tail >= NCCL_MARKS) { /* captured, or too many in flight */
    pthread_mutex_unlock(&n->mu);
    return TPD_OK;
  }
  nccl_mark *k = &n->marks[n->head % NCCL_MARKS];
  cudaError_t e = cudaSuccess;
  if ((int)(n->head % NCCL_MARKS) >= n->n_events) {
    e = cudaEventCreateWithFlags(&k->ev, cudaEventDisableTiming);
    if (e == cudaSuccess) n->n_events++;
  }
  if (e == cudaSuccess) e = cudaEventRecord(k->ev, (cudaStream_t)stream);
  if (e == cudaSuccess) {
    k->what = what;
    k->count = count;
    k->unit = unit;
    k->step = c->step;
    k->seq = seq;
    k->t_enq = nccl_now();
    if (n->head == n->tail) n->front_since = k->t_enq;
    n->head++;
  }
  pthread_mutex_unlock(&n->mu);
  if (e != cudaSuccess)
    return tpd_fail_at(TPD_ERR_DEVICE, __FILE__, __LINE__, "nccl watchdog: recording an event failed: %s (rank %d)",
                       cudaGetErrorString(e), c->rank);
  return TPD_OK;
}

static void nccl_destroy(tpd_comm *c) {
  if (!c) return;
  nccl_impl *n = c->impl;
  if (n) {
    if (n->thread_on) {
      pthread_mutex_lock(&n->mu);
      n->stop = 1;
      pthread_mutex_unlock(&n->mu);
      pthread_join(n->thread, NULL);
    }
    if (n->comm && !n->aborted && !n->broken) {
      /* a non-blocking communicator is finalised, and that polled, before it is destroyed */
      ncclResult_t r = ncclCommFinalize(n->comm);
      if (r == ncclInProgress) {
        if (nccl_settle(c, r, "ncclCommFinalize(n->comm)", n->timeout_s) != TPD_OK) TPD_WARN("%s", tpd_last_error());
      } else if (r != ncclSuccess) {
        TPD_WARN("ncclCommFinalize failed: %s (rank %d)", ncclGetErrorString(r), tpd_log_rank());
      }
      r = ncclCommDestroy(n->comm);
      if (r != ncclSuccess) TPD_WARN("ncclCommDestroy failed: %s (rank %d)", ncclGetErrorString(r), tpd_log_rank());
    } else if (n->comm && !n->aborted) {
      const ncclResult_t r = ncclCommAbort(n->comm); /* a broken communicator cannot be destroyed in order */
      if (r != ncclSuccess) TPD_WARN("ncclCommAbort failed: %s (rank %d)", ncclGetErrorString(r), tpd_log_rank());
    }
    for (int i = 0; i < n->n_events; i++) (void)cudaEventDestroy(n->marks[i].ev);
    pthread_mutex_destroy(&n->mu);
    free(n->broken);
  }
  free(n);
  free(c);
}

static tpd_status nccl_allreduce(tpd_comm *c, void *buf, size_t n_elems, tpd_dtype dt, void *stream) {
  nccl_impl *n = c->impl;
  ncclDataType_t t = ncclFloat32;
  TPD_TRY(nccl_type(dt, &t));
  TPD_TRY(nccl_broken(c, "nccl allreduce"));
  if (!n_elems) return TPD_OK;
  TPD_TRY(nccl_settle(c, ncclAllReduce(buf, buf, n_elems, t, ncclSum, n->comm, (cudaStream_t)stream),
                      "ncclAllReduce(buf, buf, n_elems, t, ncclSum, n->comm, stream)", n->timeout_s));
  return nccl_mark_enqueued(c, stream, "allreduce", n_elems, "elements");
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
  TPD_TRY(nccl_broken(c, "nccl allgather"));
  if (!n_bytes) return TPD_OK;
  TPD_TRY(nccl_settle(c, ncclAllGather(send, recv, n_bytes, ncclInt8, n->comm, (cudaStream_t)stream),
                      "ncclAllGather(send, recv, n_bytes, ncclInt8, n->comm, stream)", n->timeout_s));
  return nccl_mark_enqueued(c, stream, "allgather", n_bytes, "bytes per rank");
}

static tpd_status nccl_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root, void *stream) {
  nccl_impl *n = c->impl;
  if (root < 0 || root >= c->size)
    return TPD_FAIL(TPD_ERR_ARG, "broadcast root %d out of range (%d ranks)", root, c->size);
  TPD_TRY(nccl_broken(c, "nccl broadcast"));
  if (!n_bytes) return TPD_OK;
  TPD_TRY(nccl_settle(c, ncclBroadcast(buf, buf, n_bytes, ncclInt8, root, n->comm, (cudaStream_t)stream),
                      "ncclBroadcast(buf, buf, n_bytes, ncclInt8, root, n->comm, stream)", n->timeout_s));
  return nccl_mark_enqueued(c, stream, "broadcast", n_bytes, "bytes");
}

/* The host collectives run on the bootstrap communicator, under its own
 * watchdog, told this one's step and idle flag. */
static tpd_comm *nccl_host(tpd_comm *c) {
  nccl_impl *n = c->impl;
  n->mpi->step = c->step;
  n->mpi->idle_next = c->idle_next;
  c->idle_next = 0;
  return n->mpi;
}

static tpd_status nccl_host_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes) {
  TPD_TRY(nccl_broken(c, "host allgather"));
  tpd_comm *h = nccl_host(c);
  return h->ops->host_allgather(h, send, recv, n_bytes);
}

static tpd_status nccl_host_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root) {
  TPD_TRY(nccl_broken(c, "host broadcast"));
  tpd_comm *h = nccl_host(c);
  return h->ops->host_broadcast(h, buf, n_bytes, root);
}

static tpd_status nccl_check_peers(tpd_comm *c) {
  TPD_TRY(nccl_broken(c, "check"));
  nccl_impl *n = c->impl;
  return tpd_comm_check_peers(n->mpi);
}

static tpd_status nccl_barrier(tpd_comm *c) {
  TPD_TRY(nccl_broken(c, "barrier"));
  tpd_comm *h = nccl_host(c);
  return h->ops->barrier(h);
}

static void nccl_abort(tpd_comm *c, int code) {
  nccl_impl *n = c->impl;
  pthread_mutex_lock(&n->mu);
  const int aborted = n->aborted;
  n->aborted = n->reported = n->stop = 1;
  pthread_mutex_unlock(&n->mu);
  if (n->comm && !aborted) {
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
    .check_peers = nccl_check_peers,
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
  st = nccl_settle(c, ncclAllReduce(buf, buf, N, ncclFloat32, ncclSum, n->comm, s),
                   "ncclAllReduce(buf, buf, N, ncclFloat32, ncclSum, n->comm, s) (warm-up)", n->load_s);
  if (st != TPD_OK) goto done;
  ce = cudaMemcpyAsync(host, buf, sizeof host, cudaMemcpyDeviceToHost, s);
  call = "cudaMemcpyAsync(host, buf, ...)";
  if (ce == cudaSuccess) {
    /* the stream polled, with NCCL's state, under the load timeout */
    const double t0 = nccl_now();
    call = "cudaStreamQuery(s)";
    while ((ce = cudaStreamQuery(s)) == cudaErrorNotReady) {
      ncclResult_t ar = ncclSuccess;
      if (ncclCommGetAsyncError(n->comm, &ar) == ncclSuccess && ar != ncclSuccess && ar != ncclInProgress) {
        st = TPD_NCCL_FAIL_("the warm-up all-reduce", nccl_message(n->comm, ar));
        break;
      }
      if (n->load_s > 0 && nccl_now() - t0 > n->load_s) {
        st = TPD_FAIL(TPD_ERR_COMM,
                      "comm watchdog on rank %d while loading: the NCCL warm-up all-reduce made no progress for %.1f s "
                      "(TPD_COMM_LOAD_TIMEOUT=%g)",
                      c->rank, nccl_now() - t0, n->load_s);
        break;
      }
      nccl_nap(0.001);
    }
    if (st != TPD_OK) {
      pthread_mutex_lock(&n->mu);
      nccl_set_broken(n, tpd_last_error());
      pthread_mutex_unlock(&n->mu);
      goto done;
    }
  }
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
  c->step = -1;
  n->mpi = mpi;
  n->device = -1;
  pthread_mutex_init(&n->mu, NULL);
  tpd_status st = tpd_comm_timeouts(&n->timeout_s, &n->load_s);
  if (st != TPD_OK) {
    nccl_destroy(c);
    return st;
  }

  /* 1. every rank has a usable device, or nobody goes on */
  st = pick_device(mpi, device, &n->device);
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
  /* 3. the communicator, on every rank or on none; non-blocking, so that
   * its creation is polled under the load timeout */
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t r = ncclCommInitRankConfig(&n->comm, mpi->size, boot.id, mpi->rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    n->comm = NULL;
    st = TPD_NCCL_FAIL_("ncclCommInitRankConfig(&n->comm, mpi->size, boot.id, mpi->rank, &config)",
                        ncclGetErrorString(r));
  } else {
    st = nccl_settle(c, r, "ncclCommInitRankConfig(&n->comm, mpi->size, boot.id, mpi->rank, &config)", n->load_s);
  }
  agree = tpd_comm_agree(mpi, st == TPD_OK, &bad);
  if (st == TPD_OK && (agree != TPD_OK || bad >= 0))
    st = agree != TPD_OK ? agree : TPD_FAIL(TPD_ERR_COMM, "nccl: ncclCommInitRank failed on rank %d", bad);
  if (st != TPD_OK) goto fail;
  /* 4. one small all-reduce now, so that NCCL's lazy setup (connections,
   * buffers, its own streams) happens here and not inside the first graph
   * capture that contains a collective */
#ifdef TPD_CUDA_EMU
  const int want_thread = 0; /* the CPU emulation of CUDA (tests/gpu/emu) is not thread-safe */
#else
  const int want_thread = n->timeout_s > 0;
#endif
  if (want_thread) { /* the watchdog thread; its failure is agreed with the warm-up's */
    if (pthread_create(&n->thread, NULL, nccl_watch, c) == 0) n->thread_on = 1;
    else st = TPD_FAIL(TPD_ERR_INTERNAL, "nccl: could not start the watchdog thread (rank %d)", c->rank);
  }
  if (st == TPD_OK) st = warm_up(c);
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
