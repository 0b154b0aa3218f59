/* tpdecode-server: an OpenAI-compatible HTTP server over the leader/follower
 * engine and the scheduler.  One engine thread (rank 0's main thread) steps
 * the scheduler; libmicrohttpd's connection threads parse requests, submit
 * them (tpd_sched_submit is thread-safe) and wait on their request's state,
 * which the scheduler's callback (on the engine thread) fills. */
#ifndef TPD_SERVER_H
#define TPD_SERVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "runtime/engine/tpdecode.h"
#include "runtime/engine/tpdecode_sched.h"
#include "runtime/model/tokenizer.h"

/* The CLOCK_REALTIME time `ms` milliseconds from now (ms < 1000), for
 * pthread_cond_timedwait. */
static inline struct timespec srv_deadline_ms(long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += ms * 1000000L;
  if (ts.tv_nsec >= 1000000000L)
    ts.tv_sec++, ts.tv_nsec -= 1000000000L;
  return ts;
}

/* A growable byte buffer. */
typedef struct {
  char *p;
  size_t len, cap;
} srv_buf;
int srv_buf_add(srv_buf *b, const char *s, size_t n); /* 0, or -1 out of memory */
void srv_buf_free(srv_buf *b);

/* An error to send: HTTP status and an OpenAI-style error object. */
typedef struct {
  int http;
  char message[512];
  char param[64];
  const char *type; /* "invalid_request_error", "server_error", ... */
  const char *code; /* NULL: null */
} srv_error;

/* One request, shared by its HTTP thread and the engine thread (under the
 * server's mutex); freed when both have let go (refs). */
typedef struct srv_req {
  /* parsed */
  int chat; /* /v1/chat/completions */
  int stream, include_usage;
  int32_t *prompt;
  int n_prompt;
  tpd_request rq; /* max_tokens, sampling, logprobs, ignore_eos, stop strings */
  char **stop;    /* owned stop strings */
  int n_stop;
  int top_logprobs; /* alternatives wanted (completions: logprobs; chat:
                       top_logprobs) */
  int want_logprobs;
  char id[48];
  long created;
  /* state (server mutex) */
  uint64_t sched_id;
  int submitted, finished, http_gone, refs;
  int cancel_sent; /* tpd_sched_cancel was called for it (client gone, drain over) */
  int fd;          /* the client's socket, polled for a close while the request runs */
  pthread_cond_t cv;
  srv_buf out;  /* streaming: SSE bytes not yet sent; else unused */
  srv_buf text; /* non-streaming: the generated text */
  void *lp;     /* non-streaming with logprobs: a cJSON array being built */
  int n_out;
  tpd_finish_reason finish;
  tpd_status status;
  char errmsg[256];
  size_t text_offset;          /* completions logprobs: offset of the next token's text */
  struct srv_req *next, *prev; /* the server's list of live requests */
} srv_req;

typedef struct {
  /* options */
  const char *model_dir, *served_name, *host;
  int port, max_seqs, max_ctx, max_queue, threads, kv_blocks, backlog;
  const char *kv_cache; /* --kv-cache: NULL (auto), "f32", "bf16" */
  const char *activations; /* --activations: NULL (auto), "f32", "bf16" */
  double drain_s;
  /* loaded */
  tpd_engine *engine;
  tpd_sched *sched;
  tpd_tokenizer *tok;
  const tpd_model_config *cfg;
  int ctx; /* the engine's max_ctx */
  int vocab;
  /* state */
  pthread_mutex_t mu;
  pthread_cond_t wake; /* the engine thread sleeps on it when idle */
  int ready, draining, in_submit;
  srv_req *live;
  uint64_t next_id;
} srv_state;

extern srv_state g_srv;

/* openai.c */
srv_req *srv_req_new(void);
void srv_req_unref(srv_req *r); /* server mutex held */
/* Parses and validates a request body; 0, or -1 with *err filled. */
int srv_parse_request(srv_state *s, int chat, const char *body, size_t len, srv_req *r, srv_error *err);
/* The scheduler's callback (engine thread). */
void srv_on_event(void *cb_user, const tpd_sched_event *ev);
/* The non-streaming response body (malloc'd), once finished; NULL on OOM. */
char *srv_final_json(srv_state *s, srv_req *r);
/* An error object as JSON (malloc'd). */
char *srv_error_json(const srv_error *e);
char *srv_models_json(srv_state *s);
void srv_error_set(srv_error *e, int http, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* metrics.c */
void srv_metrics_init(void);
void srv_metrics_finished(const tpd_sched_event *ev); /* outcome + tokens + histograms */
void srv_metrics_rejected(const char *outcome);       /* "invalid", "queue_full", "draining" */
void srv_metrics_gauges(int queue, int running, int kv_used, int kv_free, int batch);
char *srv_metrics_text(void); /* malloc'd Prometheus text */

/* http.c */
void *srv_http_start(srv_state *s, char *err, size_t cap); /* the daemon, or NULL */
void srv_http_quiesce(void *daemon);
void srv_http_stop(void *daemon);

#endif
