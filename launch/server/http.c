/* tpdecode-server: HTTP with libmicrohttpd, one thread per connection.
 * A handler parses and submits a request; a non-streamed one waits for its
 * end on the request's condition variable, a streamed one is a response
 * whose reader blocks until the engine thread has appended SSE bytes.  Both
 * poll the client's socket while they wait: a client that closed its end
 * has its request cancelled (its KV blocks are free at the next step). */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "launch/server/server.h"

enum { MAX_BODY = 8 << 20 };

typedef struct {
  srv_buf body;
  int too_big;
  srv_req *req; /* the handler's reference */
} conn_ctx;

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, const char *type, char *body) {
  if (!body)
    return MHD_NO;
  struct MHD_Response *res = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
  if (!res) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  const enum MHD_Result ret = MHD_queue_response(c, status, res);
  MHD_destroy_response(res);
  return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, const srv_error *e) {
  return send_body(c, (unsigned)e->http, "application/json", srv_error_json(e));
}

/* 413 for a body over MAX_BODY: at the first call when Content-Length says
 * so (MHD then reads no more of it and closes the connection after the
 * answer), else once the body has come. */
static enum MHD_Result send_too_big(struct MHD_Connection *c) {
  srv_error err = {0};
  srv_metrics_rejected("invalid");
  srv_error_set(&err, 413, NULL, NULL, "the body is larger than %d bytes", MAX_BODY);
  err.type = "invalid_request_error";
  return send_error(c, &err);
}

static void wake_engine(void) {
  pthread_mutex_lock(&g_srv.mu);
  pthread_cond_signal(&g_srv.wake);
  pthread_mutex_unlock(&g_srv.mu);
}

/* Whether the client closed its end (checked between tokens, so a client
 * that goes away is noticed even before a write to it fails).  A client that
 * only shuts down its sending side (a half close) counts as gone: HTTP
 * clients do not do that while they wait for an answer. */
static int client_gone(int fd) {
  if (fd < 0)
    return 0;
  struct pollfd p = {.fd = fd, .events = POLLRDHUP};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  srv_req *r = cls;
  pthread_mutex_lock(&g_srv.mu);
  while (r->out.len == 0 && !r->finished) {
    pthread_mutex_unlock(&g_srv.mu);
    if (client_gone(r->fd))
      return MHD_CONTENT_READER_END_WITH_ERROR; /* the completed callback
                                                   cancels it */
    pthread_mutex_lock(&g_srv.mu);
    if (r->out.len || r->finished)
      break;
    struct timespec ts = srv_deadline_ms(20);
    pthread_cond_timedwait(&r->cv, &g_srv.mu, &ts);
  }
  if (!r->finished && client_gone(r->fd)) {
    pthread_mutex_unlock(&g_srv.mu);
    return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  if (r->out.len == 0) {
    pthread_mutex_unlock(&g_srv.mu);
    return MHD_CONTENT_READER_END_OF_STREAM;
  }
  const size_t n = r->out.len < max ? r->out.len : max;
  memcpy(buf, r->out.p, n);
  memmove(r->out.p, r->out.p + n, r->out.len - n);
  r->out.len -= n;
  pthread_mutex_unlock(&g_srv.mu);
  return (ssize_t)n;
}

static void stream_free(void *cls) {
  pthread_mutex_lock(&g_srv.mu);
  srv_req_unref((srv_req *)cls);
  pthread_mutex_unlock(&g_srv.mu);
}

static enum MHD_Result post_generate(struct MHD_Connection *c, conn_ctx *k, int chat) {
  srv_state *s = &g_srv;
  srv_error err = {0};
  pthread_mutex_lock(&s->mu);
  const int ready = s->ready, draining = s->draining;
  pthread_mutex_unlock(&s->mu);
  if (!ready || draining) {
    srv_metrics_rejected("draining");
    srv_error_set(&err, 503, NULL, NULL, "%s", draining ? "the server is shutting down" : "the model is still loading");
    return send_error(c, &err);
  }
  if (k->too_big)
    return send_too_big(c);
  srv_req *r = srv_req_new();
  if (!r)
    return MHD_NO;
  k->req = r;
  if (srv_parse_request(s, chat, k->body.p ? k->body.p : "", k->body.len, r, &err)) {
    srv_metrics_rejected("invalid");
    return send_error(c, &err);
  }
  r->rq.user = r;
  pthread_mutex_lock(&s->mu);
  if (s->draining) {
    pthread_mutex_unlock(&s->mu);
    srv_metrics_rejected("draining");
    srv_error_set(&err, 503, NULL, NULL, "the server is shutting down");
    return send_error(c, &err);
  }
  snprintf(r->id, sizeof r->id, "%s-%llu", chat ? "chatcmpl" : "cmpl", (unsigned long long)++s->next_id);
  r->refs++; /* the engine's, dropped on the finishing event */
  r->next = s->live;
  if (s->live)
    s->live->prev = r;
  s->live = r;
  s->in_submit++;
  pthread_mutex_unlock(&s->mu);
  uint64_t id = 0;
  const tpd_status st = tpd_sched_submit(s->sched, &r->rq, &id);
  pthread_mutex_lock(&s->mu);
  s->in_submit--;
  if (st != TPD_OK) {
    r->refs--; /* no event will come */
    if (st == TPD_ERR_NO_SLOT)
      srv_error_set(&err, 429, NULL, "queue_full", "the request queue is full (%d); retry later", s->max_queue);
    else
      srv_error_set(&err, 400, NULL, NULL, "%s", tpd_last_error());
    pthread_mutex_unlock(&s->mu);
    srv_metrics_rejected(st == TPD_ERR_NO_SLOT ? "queue_full" : "invalid");
    return send_error(c, &err);
  }
  r->sched_id = id;
  r->submitted = 1;
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  r->fd = ci ? (int)ci->connect_fd : -1;
  pthread_cond_signal(&s->wake);
  if (r->stream) {
    r->refs++; /* the response's */
    pthread_mutex_unlock(&s->mu);
    struct MHD_Response *res =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, r, stream_free);
    if (!res) {
      stream_free(r);
      return MHD_NO;
    }
    MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(res, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    const enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, res);
    MHD_destroy_response(res);
    return ret;
  }
  /* wait for the end, and poll the client's socket meanwhile: a client gone
   * cancels its request (the finishing event still comes; then nothing is
   * sent and the connection closes) */
  while (!r->finished) {
    struct timespec ts = srv_deadline_ms(20);
    pthread_cond_timedwait(&r->cv, &s->mu, &ts);
    if (!r->finished && !r->cancel_sent && client_gone(r->fd)) {
      r->cancel_sent = r->http_gone = 1;
      pthread_mutex_unlock(&s->mu);
      tpd_sched_cancel(s->sched, id);
      wake_engine();
      pthread_mutex_lock(&s->mu);
    }
  }
  const int gone = r->http_gone;
  pthread_mutex_unlock(&s->mu);
  if (gone)
    return MHD_NO; /* nobody to answer: close the connection */
  if (r->finish == TPD_FINISH_CANCELLED || r->finish == TPD_FINISH_ERROR) {
    srv_error_set(&err, 500, NULL, NULL, "%s", r->errmsg);
    return send_error(c, &err);
  }
  return send_body(c, MHD_HTTP_OK, "application/json", srv_final_json(s, r));
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)cls, (void)version;
  conn_ctx *k = *con_cls;
  if (!k) {
    if (!(k = calloc(1, sizeof *k)))
      return MHD_NO;
    *con_cls = k;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > (unsigned long long)MAX_BODY)
      return send_too_big(c);
    return MHD_YES;
  }
  if (*upload_size) {
    if (k->body.len + *upload_size > MAX_BODY || srv_buf_add(&k->body, upload, *upload_size))
      k->too_big = 1;
    *upload_size = 0;
    return MHD_YES;
  }
  srv_error err = {0};
  const int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
  if (!strcmp(url, "/health")) {
    if (!get)
      goto not_allowed;
    pthread_mutex_lock(&g_srv.mu);
    const int ready = g_srv.ready && !g_srv.draining;
    pthread_mutex_unlock(&g_srv.mu);
    return send_body(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
                     strdup(ready ? "{\"status\":\"ok\"}"
                            : g_srv.ready ? "{\"status\":\"shutting down\"}"
                                          : "{\"status\":\"loading\"}"));
  }
  if (!strcmp(url, "/metrics")) {
    if (!get)
      goto not_allowed;
    return send_body(c, MHD_HTTP_OK, "text/plain; version=0.0.4", srv_metrics_text());
  }
  if (!strcmp(url, "/v1/models")) {
    if (!get)
      goto not_allowed;
    return send_body(c, MHD_HTTP_OK, "application/json", srv_models_json(&g_srv));
  }
  if (!strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions")) {
    if (!post)
      goto not_allowed;
    return post_generate(c, k, !strcmp(url, "/v1/chat/completions"));
  }
  srv_error_set(&err, 404, NULL, NULL, "no such endpoint: %.200s", url);
  err.type = "invalid_request_error";
  return send_error(c, &err);
not_allowed:
  srv_error_set(&err, 405, NULL, NULL, "%.20s is not allowed on %.200s", method, url);
  err.type = "invalid_request_error";
  return send_error(c, &err);
}

/* The connection's request is over: a request still running has lost its
 * client (a failed write or a closed socket), so it is cancelled. */
static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)c, (void)toe;
  conn_ctx *k = *con_cls;
  if (!k)
    return;
  if (k->req) {
    srv_req *r = k->req;
    pthread_mutex_lock(&g_srv.mu);
    r->http_gone = 1;
    const int cancel = r->submitted && !r->finished && !r->cancel_sent;
    r->cancel_sent |= cancel;
    const uint64_t id = r->sched_id;
    srv_req_unref(r);
    pthread_mutex_unlock(&g_srv.mu);
    if (cancel) {
      tpd_sched_cancel(g_srv.sched, id);
      wake_engine();
    }
  }
  srv_buf_free(&k->body);
  free(k);
  *con_cls = NULL;
}

/* Binds --host: an IPv4 or IPv6 address, or a host name (its first IPv4
 * address that binds, else its first IPv6 one).  An IPv6 socket takes IPv6
 * only (MHD sets IPV6_V6ONLY without MHD_USE_DUAL_STACK). */
void *srv_http_start(srv_state *s, char *err, size_t cap) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  char port[16];
  snprintf(port, sizeof port, "%d", s->port);
  const int gai = getaddrinfo(s->host, port, &hints, &res);
  if (gai != 0) {
    snprintf(err, cap, "--host '%s': not an IPv4/IPv6 address or a host name that resolves (%s)", s->host,
             gai_strerror(gai));
    return NULL;
  }
  struct MHD_Daemon *d = NULL;
  int saved = 0;
  for (int pass = 0; pass < 2 && !d; pass++) /* IPv4 first, then IPv6 */
    for (const struct addrinfo *a = res; a && !d; a = a->ai_next) {
      if (a->ai_family != (pass == 0 ? AF_INET : AF_INET6))
        continue;
      unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC;
      if (a->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
      d = MHD_start_daemon(flags, (uint16_t)s->port, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, a->ai_addr,
                           MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)s->backlog, MHD_OPTION_CONNECTION_LIMIT,
                           (unsigned)4096, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
      if (!d && !saved)
        saved = errno ? errno : EADDRNOTAVAIL;
    }
  freeaddrinfo(res);
  if (d && s->port == 0) { /* --port 0: the kernel chose one; the serving line names it */
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (di && di->port)
      s->port = di->port;
  }
  if (!d)
    snprintf(err, cap, "cannot listen on %s port %d (%s)", s->host, s->port,
             saved ? strerror(saved) : "no IPv4 or IPv6 address");
  return d;
}

void srv_http_quiesce(void *daemon) {
  const MHD_socket fd = MHD_quiesce_daemon((struct MHD_Daemon *)daemon);
  if (fd != MHD_INVALID_SOCKET)
    close(fd);
}

void srv_http_stop(void *daemon) { MHD_stop_daemon((struct MHD_Daemon *)daemon); }
