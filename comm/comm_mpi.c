/* MPI communicator for host buffers: a duplicate of MPI_COMM_WORLD
 * (tpd_comm_mpi_create) or of a communicator the application gives
 * (tpd_comm_mpi_from, comm/tpdecode_mpi.h).  Its all-reduce sums in rank
 * order ("all-reduce in rank order" below); every collective runs under the
 * watchdog ("the collective watchdog" below). */
#include <errno.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
 * runtime/engine/engine.c).  The requests are a fixed pool; each has its own
 * gather scratch, which a start grows only when the message is larger than
 * any that request has carried.  A start with every
 * request in flight is an error. */
#define TPD_MPI_MAX_REQS 16

/* Host scratch for the ordered all-reduce: grown when a larger message
 * arrives, never shrunk, so once the largest step has run nothing more is
 * allocated. */
typedef struct {
  void *p;
  size_t cap; /* bytes */
} mpi_scratch;

/* A collective being waited for, as the watchdog names it. */
typedef struct {
  const char *what;       /* "allreduce", "allgather", "broadcast", "barrier", ... */
  size_t count;           /* in `unit`s */
  const char *unit;       /* "f32 elements", "bytes", ... */
  int root;               /* broadcast root, or -1 */
  unsigned long long seq; /* its number on the communicator: every rank counts alike */
  long step;              /* the caller's step when it started (tpd_comm.step) */
  int idle;               /* no time limit (tpd_comm.idle_next) */
  int between;            /* not a collective: tpd_comm_check_peers between two */
} wd_call;

/* What a rank tells the others on the watchdog's side channel when it
 * fires: how many collectives it has started, and which one it waits in. */
typedef struct {
  long long started, waiting, step;
} wd_note;

/* One all-reduce in flight: an exchange of `buf` with every peer into
 * `scratch`; wait sums the rows into `buf`. */
typedef struct {
  MPI_Request *reqs; /* [2 * (size - 1)] its exchange (post_exchange) */
  int n_reqs;
  wd_call call;
  int busy;
  void *buf; /* non-NULL: the ordered sum at wait goes here */
  size_t n;  /* elements */
  tpd_dtype dt;
  mpi_scratch scratch; /* [size, n] of this slot's own */
} mpi_slot;

typedef struct {
  MPI_Comm dup; /* this communicator's own duplicate (of MPI_COMM_WORLD or the application's comm) */
  int counted; /* holds a reference on g_mpi_users */
  mpi_slot slots[TPD_MPI_MAX_REQS];
  mpi_scratch scratch; /* the blocking all-reduce's */
  MPI_Request *reqs;   /* [2 * size] the blocking collectives' requests; the slots' follow */
  /* [size] each, size > 2 only: the reduce-scatter's chunk of every rank in
   * the message (counts, displs) and in the receive scratch (rcounts, rdispls) */
  int *counts, *displs, *rcounts, *rdispls;
  /* the collective watchdog ("watchdog" below) */
  MPI_Comm side;                /* its side channel: a duplicate of dup, point-to-point only */
  double timeout_s, load_s;     /* tpd_comm_timeouts; 0 = off */
  unsigned long long started;   /* collectives started on dup */
  char *broken;                 /* its message, once it fired: every later call fails */
  wd_note note;                 /* what it sent (the sends are never waited for) */
  unsigned long long *host;     /* [size] each rank's host key (host_key) */
  int *pid;                     /* [size] each rank's process id */
  unsigned char *answered;      /* [size] once it fired: the peers whose note reached it (reachable ones) */
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

/* The MPI type that carries dt's elements (the sums are ours: ordered_sum). */
static tpd_status mpi_type(tpd_dtype dt, MPI_Datatype *type) {
  switch (dt) {
    case TPD_F32: *type = MPI_FLOAT; return TPD_OK;
    case TPD_BF16:
    case TPD_F16: *type = MPI_UINT16_T; return TPD_OK;
    default: return TPD_FAIL(TPD_ERR_ARG, "all-reduce of dtype %d", (int)dt);
  }
}

static int count_ok(size_t n) { return n <= (size_t)0x7fffffff; }

/* ---- the collective watchdog ----
 * Every collective is started non-blocking and waited for by wd_wait, which
 * polls MPI_Testall: it spins for the first 50 us, then yields the core
 * at each poll until 0.2 ms, then sleeps for
 * 1/16 of the time waited so far, at most 1 ms (10 ms in an idle wait), so
 * a rank that waits long costs almost no CPU and one that waits briefly
 * adds at most ~6% to its wait.  Only the wait is timed: the clock starts
 * when this rank reaches the collective, so a peer's long compute before it
 * counts only if this rank waits for it longer than the timeout.
 *
 * The wait ends in failure ("fires") when
 *   - it exceeds the timeout: TPD_COMM_TIMEOUT once the engine runs
 *     forwards, TPD_COMM_LOAD_TIMEOUT while loading (tpd_comm.step < 0);
 *     none in an idle wait (tpd_comm.idle_next: a follower waiting for the
 *     leader's next plan, which may take as long as the server is idle);
 *   - a peer's process is gone (checked every 0.5 s after the first 0.1 s,
 *     for peers on this host: /proc/PID/stat; on other hosts the launcher
 *     ends the job when a process dies, mpirun's default);
 *   - a peer's watchdog fired: its note arrived on the side channel
 *     (checked every 0.1 s after the first 0.1 s).
 * Firing sends this rank's note (collectives started, the one it waits in)
 * to every peer not known gone, then collects the others' notes for a grace
 * period (a quarter of the timeout, 0.25 to 2 s; it ends early once every
 * peer answered or is gone).  A peer that did not arrive is one that sent
 * no note, or whose note shows it has not started this collective; its
 * process state (gone, stopped) is added when it is on this host.  The
 * failure names the step, the collective and those ranks, in one line; the
 * communicator is unusable from then on (m->broken): every later call fails
 * at once with the same line, so whichever failure a caller reports last,
 * it is that line. */
#define WD_TAG 7
#define WD_DONE_TAG 8 /* "my line is out": a broken rank to rank 0 before the job ends (end_broken_job) */

static double wd_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void wd_sleep(double s) {
  if (s <= 0) {
    sched_yield();
    return;
  }
  struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&t, NULL);
}

/* Processes with equal keys see each other in /proc: the host name, the pid
 * namespace and the boot id, hashed (FNV-1a). */
static unsigned long long host_key(void) {
  char buf[600];
  size_t n = 0;
  if (gethostname(buf, 256) == 0) {
    buf[255] = 0;
    n = strlen(buf);
  }
  const ssize_t k = readlink("/proc/self/ns/pid", buf + n, 200);
  if (k > 0) n += (size_t)k;
  FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
  if (f) {
    n += fread(buf + n, 1, sizeof buf - n, f);
    fclose(f);
  }
  unsigned long long h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)buf[i]) * 1099511628211ULL;
  return h;
}

enum { PEER_ALIVE, PEER_UNKNOWN, PEER_GONE, PEER_STOPPED };

/* Rank r's process as this host sees it (PEER_UNKNOWN on another host). */
static int peer_state(const tpd_comm *c, const mpi_impl *m, int r) {
  if (!m->host || m->host[r] != m->host[c->rank]) return PEER_UNKNOWN;
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/stat", m->pid[r]);
  FILE *f = fopen(path, "r");
  if (!f) return errno == ENOENT ? PEER_GONE : PEER_UNKNOWN;
  const size_t n = fread(line, 1, sizeof line - 1, f);
  fclose(f);
  line[n] = 0;
  const char *p = strrchr(line, ')'); /* "pid (name) S ...": the name may hold anything */
  if (!p || p[1] != ' ') return PEER_UNKNOWN;
  switch (p[2]) {
    case 'Z': case 'X': case 'x': return PEER_GONE;
    case 'T': case 't': return PEER_STOPPED;
    default: return PEER_ALIVE;
  }
}

static int first_gone_peer(const tpd_comm *c, const mpi_impl *m) {
  for (int r = 0; r < c->size; r++)
    if (r != c->rank && peer_state(c, m, r) == PEER_GONE) return r;
  return -1;
}

/* Fails at once on a communicator whose watchdog fired; else numbers the
 * collective about to start and takes the caller's step and idle flag. */
static tpd_status wd_begin(tpd_comm *c, mpi_impl *m, wd_call *call, const char *what, size_t count,
                           const char *unit, int root) {
  const int idle = c->idle_next;
  c->idle_next = 0;
  *call = (wd_call){.what = what, .count = count, .unit = unit, .root = root, .seq = m->started++,
                    .step = c->step, .idle = idle};
  if (m->broken) return TPD_FAIL(TPD_ERR_COMM, "%s", m->broken); /* the line again: whichever call fails last */
  return TPD_OK;
}

enum { WD_TIMEOUT, WD_GONE, WD_ALERTED, WD_MPI_ERROR };

static tpd_status wd_fire(tpd_comm *c, mpi_impl *m, const wd_call *call, double waited, int cause, int who) {
  const int p = c->size, me = c->rank;
  long long *seen = malloc(sizeof(long long) * 2 * (size_t)p);
  int *state = malloc(sizeof(int) * (size_t)p);
  if (!seen || !state) {
    free(seen);
    free(state);
    m->broken = strdup("out of memory");
    return TPD_FAIL(TPD_ERR_OOM, "comm watchdog on rank %d: out of memory", me);
  }
  long long *at = seen + p; /* the collective each peer waits in */
  m->note = (wd_note){(long long)m->started, (long long)call->seq, call->step};
  for (int r = 0; r < p; r++) {
    seen[r] = at[r] = -1;
    state[r] = r == me ? PEER_ALIVE : peer_state(c, m, r);
    if (r == me || state[r] == PEER_GONE) continue;
    MPI_Request rq;
    if (MPI_Isend(&m->note, (int)sizeof m->note, MPI_BYTE, r, WD_TAG, m->side, &rq) == MPI_SUCCESS)
      MPI_Request_free(&rq);
  }
  seen[me] = (long long)m->started;
  at[me] = (long long)call->seq;
  const double t = m->timeout_s / 4, grace = t < 0.25 ? 0.25 : t > 2 ? 2 : t;
  const double end = wd_now() + grace;
  for (;;) {
    int flag = 0;
    MPI_Status st;
    while (MPI_Iprobe(MPI_ANY_SOURCE, WD_TAG, m->side, &flag, &st) == MPI_SUCCESS && flag) {
      wd_note n;
      if (MPI_Recv(&n, (int)sizeof n, MPI_BYTE, st.MPI_SOURCE, WD_TAG, m->side, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        break;
      const int r = st.MPI_SOURCE;
      if (r >= 0 && r < p && n.started > seen[r]) seen[r] = n.started, at[r] = n.waiting;
    }
    int open = 0;
    for (int r = 0; r < p; r++) open += seen[r] < 0 && state[r] != PEER_GONE;
    if (!open || wd_now() >= end) break;
    wd_sleep(0.002);
  }
  free(m->answered);
  m->answered = calloc((size_t)p, 1);
  for (int r = 0; m->answered && r < p; r++) m->answered[r] = r != me && seen[r] >= 0;
  /* one line: where, what, why, who */
  char where[64], what[160], why[400], who_s[320];
  if (call->step < 0) snprintf(where, sizeof where, "while loading");
  else snprintf(where, sizeof where, "at step %ld", call->step);
  if (call->between)
    snprintf(what, sizeof what, "between collectives (#%llu next)", call->seq);
  else if (call->idle)
    snprintf(what, sizeof what,
             "waiting for the leader's next plan (broadcast of %zu bytes from rank %d, collective #%llu)", call->count,
             call->root, call->seq);
  else if (!call->unit)
    snprintf(what, sizeof what, "in %s (collective #%llu)", call->what, call->seq);
  else if (call->root >= 0)
    snprintf(what, sizeof what, "in %s of %zu %s from rank %d (collective #%llu)", call->what, call->count, call->unit,
             call->root, call->seq);
  else
    snprintf(what, sizeof what, "in %s of %zu %s (collective #%llu)", call->what, call->count, call->unit, call->seq);
  if (cause == WD_TIMEOUT)
    snprintf(why, sizeof why, "no progress for %.1f s (TPD_COMM_%sTIMEOUT=%g)", waited, call->step < 0 ? "LOAD_" : "",
             call->step < 0 ? m->load_s : m->timeout_s);
  else if (cause == WD_GONE && call->between)
    snprintf(why, sizeof why, "the process of rank %d is gone", who);
  else if (cause == WD_GONE)
    snprintf(why, sizeof why, "the process of rank %d is gone (after %.1f s of waiting)", who, waited);
  else if (cause == WD_MPI_ERROR) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(who, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", who);
    snprintf(why, sizeof why, "MPI reports an error (after %.1f s of waiting): %s", waited, msg);
  } else if (call->between)
    snprintf(why, sizeof why, "rank %d's watchdog fired", who);
  else
    snprintf(why, sizeof why, "rank %d's watchdog fired (after %.1f s of waiting)", who, waited);
  size_t k = 0;
  int missing = 0;
  who_s[0] = 0;
  for (int r = 0; r < p && k < sizeof who_s - 40; r++) {
    if (seen[r] > (long long)call->seq) continue; /* it has started this collective */
    /* gone only since the alarm began: most likely ended by a survivor's abort, not the cause */
    const int s = state[r] == PEER_ALIVE || state[r] == PEER_UNKNOWN ? peer_state(c, m, r) : state[r];
    const char *how = s == PEER_GONE && state[r] != PEER_GONE ? "ended during the alarm"
                      : s == PEER_GONE                        ? "exited"
                      : s == PEER_STOPPED                     ? "stopped"
                      : seen[r] < 0                           ? "no answer"
                                                              : NULL;
    int w;
    if (how) w = snprintf(who_s + k, sizeof who_s - k, "%s%d (%s)", missing ? ", " : "", r, how);
    else w = snprintf(who_s + k, sizeof who_s - k, "%s%d (in collective #%lld)", missing ? ", " : "", r, at[r]);
    if (w > 0) k += (size_t)w < sizeof who_s - k ? (size_t)w : sizeof who_s - k - 1;
    missing++;
  }
  free(seen);
  free(state);
  char line[TPD_ERROR_MSG_CAP];
  if (missing)
    snprintf(line, sizeof line, "comm watchdog on rank %d %s %s: %s; rank%s that did not arrive: %s", me, where, what,
             why, missing > 1 ? "s" : "", who_s);
  else /* the alarm came from a peer, and every rank had reached this collective: this rank may be the late one */
    snprintf(line, sizeof line,
             "comm watchdog on rank %d %s %s: %s; every rank had arrived here (this rank may be the one that was late)",
             me, where, what, why);
  m->broken = strdup(line);
  return TPD_FAIL(TPD_ERR_COMM, "%s", line);
}

/* Waits for reqs[0 .. n) under the watchdog (see above).  An error from MPI
 * while waiting (a peer's connection broken, say) fires it too, so that the
 * line names the collective and who is missing. */
static tpd_status wd_wait(tpd_comm *c, mpi_impl *m, int n, MPI_Request *reqs, const wd_call *call) {
  int done = 0, rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
  if (rc != MPI_SUCCESS) return wd_fire(c, m, call, 0, WD_MPI_ERROR, rc);
  if (done) return TPD_OK;
  const int on = m->timeout_s > 0;
  const double limit = !on || call->idle ? 0 : call->step < 0 ? m->load_s : m->timeout_s;
  const double t0 = wd_now(), cap = call->idle ? 0.01 : 0.001;
  double next_side = t0 + 0.1, next_live = t0 + 0.1;
  for (;;) {
    rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
    const double now = wd_now(), waited = now - t0;
    if (rc != MPI_SUCCESS) return wd_fire(c, m, call, waited, WD_MPI_ERROR, rc);
    if (done) return TPD_OK;
    if (on && now >= next_side) {
      next_side = now + 0.1;
      int flag = 0;
      MPI_Status st;
      TPD_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, WD_TAG, m->side, &flag, &st));
      if (flag) return wd_fire(c, m, call, waited, WD_ALERTED, st.MPI_SOURCE);
      if (now >= next_live) {
        next_live = now + 0.5;
        const int gone = first_gone_peer(c, m);
        if (gone >= 0) {
          rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE); /* what it sent before going may be here */
          if (rc == MPI_SUCCESS && done) return TPD_OK;
          return wd_fire(c, m, call, waited, WD_GONE, gone);
        }
      }
    }
    if (limit > 0 && waited >= limit) return wd_fire(c, m, call, waited, WD_TIMEOUT, -1);
    const double nap = waited / 16;
    if (waited >= 5e-5) wd_sleep(waited < 2e-4 ? 0 : nap < cap ? nap : cap);
  }
}

static tpd_status mpi_check_peers(tpd_comm *c) {
  mpi_impl *m = c->impl;
  if (m->broken) return TPD_FAIL(TPD_ERR_COMM, "%s", m->broken);
  if (m->timeout_s <= 0 || c->size == 1) return TPD_OK;
  const wd_call call = {.what = "check", .root = -1, .seq = m->started, .step = c->step, .between = 1};
  int flag = 0;
  MPI_Status st;
  TPD_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, WD_TAG, m->side, &flag, &st));
  if (flag) return wd_fire(c, m, &call, 0, WD_ALERTED, st.MPI_SOURCE);
  const int gone = first_gone_peer(c, m);
  return gone >= 0 ? wd_fire(c, m, &call, 0, WD_GONE, gone) : TPD_OK;
}

static const char *dtype_unit(tpd_dtype dt) {
  return dt == TPD_F32    ? "f32 elements"
         : dt == TPD_BF16 ? "bf16 elements"
         : dt == TPD_F16  ? "f16 elements"
                          : "elements";
}

/* ---- all-reduce in rank order ----
 * Every element of an all-reduce is
 * ((x0 + x1) + x2) + ... + x_{p-1} over the ranks in order, added in f32 (16-bit
 * inputs widened first) and rounded once to the buffer's dtype, whatever the
 * message size and however the caller splits a message: a row's sum does not
 * depend on what else is in the step.  MPI_Allreduce gives no such promise
 * (Open MPI picks recursive doubling or a segmented ring by size, and the
 * ring's chunk boundaries move with the count).  Every rank exchanges its
 * message with every peer (point-to-point, post_exchange) and sums the rows
 * in rank order; with more than 2 ranks, a message whose rows would exceed
 * TPD_MPI_GATHER_MAX_BYTES goes through a reduce-scatter and an all-gather
 * instead (allreduce_split).  Point-to-point rather than MPI_Iallgather or
 * MPI_Iallreduce: Open MPI's non-blocking collectives (libnbc) cost ~30 us
 * more per small message than the blocking ones, the exchange about the same
 * (0.9 us at 2 ranks, 256 bytes), and every wait must be non-blocking for the
 * watchdog. */

/* Gathering the whole message costs each rank `size` times its bytes and
 * one collective; above this many gathered bytes, a reduce-scatter
 * (all-to-all) and an all-gather of the summed chunks move less. */
#define TPD_MPI_GATHER_MAX_BYTES ((size_t)256 << 10)

/* Each request's scratch at creation (2 ranks or more): a single row of
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
  wd_call call;
  MPI_Request rq;
  TPD_TRY(wd_begin(c, m, &call, "allreduce (all-to-all part)", n, dtype_unit(dt), -1));
  TPD_MPI_CHECK(
      MPI_Ialltoallv(buf, m->counts, m->displs, type, m->scratch.p, m->rcounts, m->rdispls, type, m->dup, &rq));
  TPD_TRY(wd_wait(c, m, 1, &rq, &call));
  ordered_sum((char *)buf + (size_t)m->displs[me] * es, m->scratch.p, mine, mine, p, dt);
  TPD_TRY(wd_begin(c, m, &call, "allreduce (all-gather part)", n, dtype_unit(dt), -1));
  TPD_MPI_CHECK(
      MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, m->counts, m->displs, type, m->dup, &rq));
  return wd_wait(c, m, 1, &rq, &call);
}

/* Posts this rank's side of an exchange with every peer on dup: row r of
 * `rows` (row_bytes each) is received from rank r, and `mine` is sent to
 * every peer.  Returns the number of requests in reqs (2 * (size - 1)).
 * Every rank posts its exchanges in the same order (collectives are called
 * in the same order), and messages between two ranks with one tag do not
 * overtake each other, so the k-th exchange of a rank matches the k-th of
 * its peers, even with several in flight. */
#define TPD_P2P_TAG 11

static tpd_status post_exchange(tpd_comm *c, mpi_impl *m, const void *mine, void *rows, size_t row_bytes,
                                MPI_Request *reqs, int *n_reqs) {
  int k = 0;
  *n_reqs = 0;
  for (int r = 0; r < c->size; r++) {
    if (r == c->rank) continue;
    void *row = rows ? (char *)rows + (size_t)r * row_bytes : NULL;
    TPD_MPI_CHECK(MPI_Irecv(row, (int)row_bytes, MPI_BYTE, r, TPD_P2P_TAG, m->dup, &reqs[k]));
    *n_reqs = ++k;
    TPD_MPI_CHECK(MPI_Isend(mine, (int)row_bytes, MPI_BYTE, r, TPD_P2P_TAG, m->dup, &reqs[k]));
    *n_reqs = ++k;
  }
  return TPD_OK;
}

static tpd_status mpi_allreduce(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream) {
  (void)stream;
  mpi_impl *m = c->impl;
  MPI_Datatype type = MPI_FLOAT;
  TPD_TRY(mpi_type(dt, &type));
  if (!count_ok(n)) return TPD_FAIL(TPD_ERR_ARG, "all-reduce of %zu elements exceeds MPI's int count", n);
  const size_t es = tpd_dtype_size(dt), gathered = (size_t)c->size * n * es;
  if (c->size > 2 && gathered > TPD_MPI_GATHER_MAX_BYTES) return allreduce_split(c, m, buf, n, dt, type);
  if (!count_ok(n * es)) return TPD_FAIL(TPD_ERR_ARG, "all-reduce of %zu bytes exceeds MPI's int count", n * es);
  TPD_TRY(scratch_reserve(&m->scratch, gathered));
  wd_call call;
  int k = 0;
  TPD_TRY(wd_begin(c, m, &call, "allreduce", n, dtype_unit(dt), -1));
  TPD_TRY(post_exchange(c, m, buf, m->scratch.p, n * es, m->reqs, &k));
  memcpy((char *)m->scratch.p + (size_t)c->rank * n * es, buf, n * es);
  TPD_TRY(wd_wait(c, m, k, m->reqs, &call));
  ordered_sum(buf, m->scratch.p, n, n, c->size, dt);
  return TPD_OK;
}

/* A started all-reduce is an exchange of the whole message with every peer
 * into the request's own scratch, summed in rank order at wait, at every
 * size: waits may come in any order on any rank (a reduce-scatter at start
 * and an all-gather at wait would move less for large messages with more
 * than 2 ranks, but would make the order of waits a collective order every
 * rank must keep). */
static tpd_status mpi_allreduce_start(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream,
                                      tpd_comm_req *req) {
  (void)stream;
  mpi_impl *m = c->impl;
  MPI_Datatype type = MPI_FLOAT;
  TPD_TRY(mpi_type(dt, &type));
  const size_t es = tpd_dtype_size(dt);
  if (!count_ok(n * es)) return TPD_FAIL(TPD_ERR_ARG, "all-reduce of %zu bytes exceeds MPI's int count", n * es);
  /* the free request whose scratch fits most tightly; if none fits, the
   * largest free one grows */
  const size_t need = (size_t)c->size * n * es;
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
  TPD_TRY(scratch_reserve(&s->scratch, need));
  TPD_TRY(wd_begin(c, m, &s->call, "allreduce (started)", n, dtype_unit(dt), -1));
  TPD_TRY(post_exchange(c, m, buf, s->scratch.p, n * es, s->reqs, &s->n_reqs));
  memcpy((char *)s->scratch.p + (size_t)c->rank * n * es, buf, n * es);
  s->buf = buf;
  s->n = n;
  s->dt = dt;
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
  if (m->broken) return TPD_FAIL(TPD_ERR_COMM, "%s", m->broken);
  TPD_TRY(wd_wait(c, m, s->n_reqs, s->reqs, &s->call));
  s->busy = 0;
  ordered_sum(s->buf, s->scratch.p, s->n, s->n, c->size, s->dt);
  s->buf = NULL;
  return TPD_OK;
}

static tpd_status mpi_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes, void *stream) {
  (void)stream;
  mpi_impl *m = c->impl;
  if (!count_ok(n_bytes)) return TPD_FAIL(TPD_ERR_ARG, "all-gather of %zu bytes exceeds MPI's int count", n_bytes);
  wd_call call;
  int k = 0;
  TPD_TRY(wd_begin(c, m, &call, "allgather", n_bytes, "bytes per rank", -1));
  char *own = (char *)recv + (size_t)c->rank * n_bytes;
  if (send != own) memmove(own, send, n_bytes);
  TPD_TRY(post_exchange(c, m, own, recv, n_bytes, m->reqs, &k));
  return wd_wait(c, m, k, m->reqs, &call);
}

/* The root sends to every peer; its wait ends when every send completed,
 * which for a large message means every peer has received it. */
static tpd_status mpi_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root, void *stream) {
  (void)stream;
  mpi_impl *m = c->impl;
  if (!count_ok(n_bytes)) return TPD_FAIL(TPD_ERR_ARG, "broadcast of %zu bytes exceeds MPI's int count", n_bytes);
  if (root < 0 || root >= c->size)
    return TPD_FAIL(TPD_ERR_ARG, "broadcast root %d out of range (%d ranks)", root, c->size);
  wd_call call;
  int k = 0;
  TPD_TRY(wd_begin(c, m, &call, "broadcast", n_bytes, "bytes", root));
  if (c->rank == root) {
    for (int r = 0; r < c->size; r++)
      if (r != root) TPD_MPI_CHECK(MPI_Isend(buf, (int)n_bytes, MPI_BYTE, r, TPD_P2P_TAG, m->dup, &m->reqs[k++]));
  } else {
    TPD_MPI_CHECK(MPI_Irecv(buf, (int)n_bytes, MPI_BYTE, root, TPD_P2P_TAG, m->dup, &m->reqs[k++]));
  }
  return wd_wait(c, m, k, m->reqs, &call);
}

static tpd_status mpi_host_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes) {
  return mpi_allgather(c, send, recv, n_bytes, NULL);
}

static tpd_status mpi_host_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root) {
  return mpi_broadcast(c, buf, n_bytes, root, NULL);
}

/* An empty message to and from every peer. */
static tpd_status mpi_barrier(tpd_comm *c) {
  mpi_impl *m = c->impl;
  wd_call call;
  int k = 0;
  static const char none[1];
  TPD_TRY(wd_begin(c, m, &call, "barrier", 0, NULL, -1));
  TPD_TRY(post_exchange(c, m, none, NULL, 0, m->reqs, &k));
  return wd_wait(c, m, k, m->reqs, &call);
}


/* Ends the job from a communicator whose watchdog fired: MPI cannot be
 * finalised with a peer missing (its closing barrier would wait for ever).
 * Rank 0 speaks for the job (a server's leader may still be telling its
 * clients that their requests failed), so another rank first tells rank 0
 * that its own line is out, then gives rank 0 up to 5 s to end the job
 * itself, unless rank 0 is gone or stopped.  Rank 0 ends it once every peer
 * that answered its watchdog (so can still reach it) has said so, or after
 * the watchdog's grace plus half a second: a peer alerted at the same time
 * is still collecting its own answers, and MPI_Abort would end it before
 * its line is printed. */
static void end_broken_job(tpd_comm *c, mpi_impl *m) {
  if (c->rank != 0) {
    static const char done = 1;
    MPI_Request rq = MPI_REQUEST_NULL;
    if (MPI_Isend(&done, 1, MPI_BYTE, 0, WD_DONE_TAG, m->side, &rq) != MPI_SUCCESS) rq = MPI_REQUEST_NULL;
    for (int i = 0; i < 50; i++) {
      int sent = 0;
      if (rq != MPI_REQUEST_NULL) MPI_Test(&rq, &sent, MPI_STATUS_IGNORE); /* progress for the note */
      const int s0 = peer_state(c, m, 0);
      if (s0 == PEER_GONE || s0 == PEER_STOPPED) break;
      wd_sleep(0.1);
    }
  } else if (m->answered) {
    const double t = m->timeout_s / 4, grace = t < 0.25 ? 0.25 : t > 2 ? 2 : t, end = wd_now() + grace + 0.5;
    for (;;) {
      int flag = 0;
      MPI_Status st;
      while (MPI_Iprobe(MPI_ANY_SOURCE, WD_DONE_TAG, m->side, &flag, &st) == MPI_SUCCESS && flag) {
        char b;
        if (MPI_Recv(&b, 1, MPI_BYTE, st.MPI_SOURCE, WD_DONE_TAG, m->side, MPI_STATUS_IGNORE) != MPI_SUCCESS) break;
        if (st.MPI_SOURCE > 0 && st.MPI_SOURCE < c->size) m->answered[st.MPI_SOURCE] = 0;
      }
      int waiting = 0;
      for (int r = 1; r < c->size; r++) waiting += m->answered[r] && peer_state(c, m, r) != PEER_GONE;
      if (!waiting || wd_now() >= end) break;
      wd_sleep(0.01);
    }
  }
  MPI_Abort(m->dup, 1);
}

/* A program that stops on an error (launch/cli.c) ends the job here: after a
 * watchdog fired, through end_broken_job, so that a rank whose line is out
 * does not end the others before theirs is (multihost.link_down_tp4 once
 * lost rank 0's line to rank 1's abort this way). */
static void mpi_abort(tpd_comm *c, int code) {
  mpi_impl *m = c->impl;
  if (m->broken) end_broken_job(c, m);
  MPI_Abort(m->dup, code);
  exit(code); /* not reached */
}

static void mpi_destroy(tpd_comm *c) {
  mpi_impl *m = c->impl;
  if (m && m->broken) end_broken_job(c, m);
  if (m) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
      if (m->side != MPI_COMM_NULL) MPI_Comm_free(&m->side);
      if (m->dup != MPI_COMM_NULL) MPI_Comm_free(&m->dup);
    }
    free(m->host); /* pid shares its allocation */
    free(m->broken);
    free(m->answered);
    for (int k = 0; k < TPD_MPI_MAX_REQS; k++) free(m->slots[k].scratch.p);
    free(m->reqs); /* the slots' requests share its allocation */
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
    .check_peers = mpi_check_peers,
};

/* Duplicates `parent` into m->dup (errors returned, not fatal), takes rank
 * and size in it, the node-local rank and size among its ranks that share
 * memory, the reduce-scatter layout arrays (more than 2 ranks), the
 * exchanges' scratch and requests, and the watchdog's side channel and
 * table of processes.  Collective over `parent`. */
static tpd_status mpi_setup(tpd_comm *c, mpi_impl *m, MPI_Comm parent) {
  TPD_TRY(tpd_comm_timeouts(&m->timeout_s, &m->load_s));
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
  }
  if (c->size > 1) { /* the exchanges' scratch */
    TPD_TRY(scratch_reserve(&m->scratch, TPD_MPI_GATHER_MAX_BYTES));
    for (int k = 0; k < TPD_MPI_MAX_REQS; k++)
      TPD_TRY(scratch_reserve(&m->slots[k].scratch, TPD_MPI_SLOT_SCRATCH_BYTES));
  }
  /* the requests of the exchanges: the blocking calls', then each slot's */
  m->reqs = calloc((size_t)2 * (size_t)c->size * (1 + TPD_MPI_MAX_REQS), sizeof *m->reqs);
  if (!m->reqs) return TPD_FAIL(TPD_ERR_OOM, "out of memory for %d ranks' MPI requests", c->size);
  for (int k = 0; k < TPD_MPI_MAX_REQS; k++) m->slots[k].reqs = m->reqs + (size_t)2 * (size_t)c->size * (size_t)(k + 1);
  /* the watchdog: its side channel, and every rank's process id and host */
  TPD_MPI_CHECK(MPI_Comm_dup(m->dup, &m->side));
  TPD_MPI_CHECK(MPI_Comm_set_errhandler(m->side, MPI_ERRORS_RETURN));
  struct {
    unsigned long long host;
    long long pid;
  } mine = {host_key(), (long long)getpid()}, *all = calloc((size_t)c->size, sizeof mine);
  m->host = calloc((size_t)c->size, sizeof *m->pid + sizeof *m->host);
  if (!all || !m->host) {
    free(all);
    return TPD_FAIL(TPD_ERR_OOM, "out of memory for %d ranks' watchdog table", c->size);
  }
  m->pid = (int *)(void *)(m->host + c->size);
  const int rc = MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, m->dup);
  for (int r = 0; r < c->size && rc == MPI_SUCCESS; r++) m->host[r] = all[r].host, m->pid[r] = (int)all[r].pid;
  free(all);
  TPD_MPI_CHECK(rc);
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
  m->dup = m->side = MPI_COMM_NULL;
  c->step = -1;
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
