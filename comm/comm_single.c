/* Single-process communicator (TP=1): collectives are copies or no-ops. */
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"

static void single_destroy(tpd_comm *c) { free(c); }

static tpd_status single_allreduce(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream) {
  (void)c, (void)buf, (void)n, (void)dt, (void)stream;
  return TPD_OK;
}

static tpd_status single_allreduce_start(tpd_comm *c, void *buf, size_t n, tpd_dtype dt, void *stream,
                                         tpd_comm_req *req) {
  (void)c, (void)buf, (void)n, (void)dt, (void)stream;
  req->impl = NULL;
  req->active = 0;
  return TPD_OK;
}

static tpd_status single_wait(tpd_comm *c, tpd_comm_req *req) {
  (void)c;
  req->active = 0;
  return TPD_OK;
}

static tpd_status single_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes, void *stream) {
  (void)c, (void)stream;
  if (send != recv) memmove(recv, send, n_bytes);
  return TPD_OK;
}

static tpd_status single_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root, void *stream) {
  (void)c, (void)buf, (void)n_bytes, (void)stream;
  if (root != 0) return TPD_FAIL(TPD_ERR_ARG, "broadcast root %d out of range (1 rank)", root);
  return TPD_OK;
}

static tpd_status single_host_allgather(tpd_comm *c, const void *send, void *recv, size_t n_bytes) {
  return single_allgather(c, send, recv, n_bytes, NULL);
}

static tpd_status single_host_broadcast(tpd_comm *c, void *buf, size_t n_bytes, int root) {
  return single_broadcast(c, buf, n_bytes, root, NULL);
}

static tpd_status single_barrier(tpd_comm *c) {
  (void)c;
  return TPD_OK;
}

static void single_abort(tpd_comm *c, int code) {
  (void)c;
  exit(code);
}

static const tpd_comm_ops single_ops = {
    .name = "single",
    .data_on_device = 0,
    .destroy = single_destroy,
    .allreduce = single_allreduce,
    .allreduce_start = single_allreduce_start,
    .wait = single_wait,
    .allgather = single_allgather,
    .broadcast = single_broadcast,
    .host_allgather = single_host_allgather,
    .host_broadcast = single_host_broadcast,
    .barrier = single_barrier,
    .abort = single_abort,
};

tpd_status tpd_comm_single_create(tpd_comm **out) {
  double wait_s = 0, load_s = 0; /* nothing to watch with one rank, but a bad setting is still an error */
  TPD_TRY(tpd_comm_timeouts(&wait_s, &load_s));
  tpd_comm *c = calloc(1, sizeof *c);
  if (!c) return TPD_FAIL(TPD_ERR_OOM, "out of memory");
  c->ops = &single_ops;
  c->rank = 0;
  c->size = 1;
  c->local_rank = 0;
  c->local_size = 1;
  c->step = -1;
  *out = c;
  return TPD_OK;
}
