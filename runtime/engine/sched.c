/* Continuous-batching scheduler (tpdecode_sched.h): a FCFS queue in front of
 * one engine, a per-step token budget shared by decode tokens and prefill
 * chunks, preemption by recompute.
 *
 * Ownership.  A request record (sreq) is allocated at submit and freed after
 * its finishing event.  While live it is in exactly one of two places: the
 * queue (a doubly linked list) or the running array (admission order, the
 * youngest last).  The mutex guards both containers, the counts and each
 * record's `cancel` flag; every other field of a record is read and written
 * by the driver thread only (tpd_sched_step), so events are built and the
 * callback runs without the lock.
 *
 * A record's tokens are its prompt followed by what it produced (n_known in
 * all); the engine holds the first n_cached of them.  While running, the
 * pending tokens n_known - n_cached are >= 1: exactly 1 is a decode step,
 * more is a prefill (the prompt, or prompt + output after a preemption).
 * The sampler's counter is the position of the token, and the random
 * stream is the request id, so a recomputed sequence draws the same tokens.
 *
 * Text (a tokenizer in the options).  A record's detok turns its output ids
 * into text in whole characters; `txt` holds what is decoded but not yet
 * reported: at most the longest suffix that is a proper prefix of a stop
 * string after each event (held back), plus the next token's piece.  A stop
 * string can therefore only appear inside `txt`: an occurrence starting in
 * reported text would have made that text a prefix of it, so held back. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/timer.h"
#include "runtime/engine/tpdecode_sched.h"

enum { Q_QUEUED = 1, Q_RUNNING, Q_DONE };

typedef struct sreq {
  struct sreq *prev, *next; /* queue links */
  uint64_t id;
  void *user;
  int state;
  int cancel; /* under the mutex */
  int32_t *tokens; /* [n_prompt + max_tokens]: prompt, then output */
  int n_prompt, max_tokens, n_known, n_cached, n_out;
  int32_t *stop_ids;
  int n_stop;
  tpd_sampling sampling;
  int seed_only;
  int logprobs, ignore_eos;
  int slot;
  int chunk;  /* tokens in this step's item, 0 when not in the step */
  double t_submit, t_admit, t_first, t_last; /* ms; t_admit, t_first < 0 until they happen */
  int n_preempted, n_recomputed;
  /* text (with a tokenizer; driver thread) */
  tpd_detok *detok;
  char **stops;     /* [n_stops] copied stop strings */
  size_t *stop_len; /* [n_stops] */
  int n_stops;
  char *txt;        /* [txt_cap] decoded, not yet reported; NUL-terminated */
  size_t txt_len, txt_cap;
} sreq;

struct tpd_sched {
  tpd_engine *e;
  tpd_sched_callback cb;
  void *cb_user;
  const tpd_tokenizer *tok; /* NULL: events carry no text */
  int n_tok;                /* its tokens */
  int budget, max_queue, max_slots, block_size;
  int eos[TPD_MAX_EOS], n_eos;
  int vocab, max_ctx, total_blocks;

  pthread_mutex_t mu;
  sreq *q_head, *q_tail; /* FCFS; preempted requests go to the head */
  int n_queued;
  sreq **run; /* [max_slots] admission order */
  int n_run;
  uint64_t next_id;

  /* one step, sized at create */
  tpd_step_item *items;  /* [max_slots] */
  tpd_step_output *outs; /* [max_slots] */
  sreq **in_step;        /* [max_slots] the request of each item */
  int dead;              /* the engine became unusable: every later step fails */
  double last_sched_s, last_engine_s;
};

void tpd_sched_opts_init(tpd_sched_opts *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
  o->version = TPD_SCHED_OPTS_VERSION;
}

void tpd_request_init(tpd_request *r) {
  if (!r) return;
  memset(r, 0, sizeof *r);
  r->struct_size = sizeof *r;
  r->version = TPD_REQUEST_VERSION;
}

static void req_free(sreq *r) {
  if (!r) return;
  free(r->tokens);
  free(r->stop_ids);
  for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
  free(r->stops);
  free(r->stop_len);
  free(r->txt);
  tpd_detok_free(r->detok);
  free(r);
}

/* ---- queue (callers hold the mutex) ---- */
static void q_push_back(tpd_sched *s, sreq *r) {
  r->prev = s->q_tail, r->next = NULL;
  if (s->q_tail) s->q_tail->next = r; else s->q_head = r;
  s->q_tail = r;
  s->n_queued++;
  r->state = Q_QUEUED;
}
static void q_push_front(tpd_sched *s, sreq *r) {
  r->prev = NULL, r->next = s->q_head;
  if (s->q_head) s->q_head->prev = r; else s->q_tail = r;
  s->q_head = r;
  s->n_queued++;
  r->state = Q_QUEUED;
}
static void q_remove(tpd_sched *s, sreq *r) {
  if (r->prev) r->prev->next = r->next; else s->q_head = r->next;
  if (r->next) r->next->prev = r->prev; else s->q_tail = r->prev;
  r->prev = r->next = NULL;
  s->n_queued--;
}
static void run_remove(tpd_sched *s, sreq *r) {
  for (int i = 0; i < s->n_run; i++)
    if (s->run[i] == r) {
      memmove(s->run + i, s->run + i + 1, sizeof(sreq *) * (size_t)(s->n_run - i - 1));
      s->n_run--;
      return;
    }
}

/* ---- create / destroy ---- */
tpd_status tpd_sched_create(tpd_engine *e, const tpd_sched_opts *opts, tpd_sched **out) {
  if (!out) return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_create: out is NULL");
  *out = NULL;
  if (!e) return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_create: engine is NULL");
  if (!opts) return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_create: opts is NULL (fill them with tpd_sched_opts_init)");
  if (opts->struct_size != sizeof(tpd_sched_opts) || opts->version != TPD_SCHED_OPTS_VERSION)
    return TPD_FAIL(TPD_ERR_VERSION, "tpd_sched_create: opts struct_size %u / version %u, this library has %zu / %d",
                    opts->struct_size, opts->version, sizeof(tpd_sched_opts), TPD_SCHED_OPTS_VERSION);
  if (!opts->callback) return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_create: opts.callback is NULL");
  if (opts->max_step_tokens < 0)
    return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_create: opts.max_step_tokens %d is negative", opts->max_step_tokens);
  if (opts->max_queue < 0) return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_create: opts.max_queue %d is negative", opts->max_queue);
  if (!tpd_engine_usable(e)) return TPD_FAIL(TPD_ERR_STATE, "tpd_sched_create: the engine is unusable after a failure");
  if (opts->tokenizer && tpd_tokenizer_n_tokens(opts->tokenizer) > tpd_engine_config(e)->vocab)
    return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_create: opts.tokenizer has %d tokens, more than the model's vocabulary "
                    "of %d (another model's tokenizer?)", tpd_tokenizer_n_tokens(opts->tokenizer),
                    tpd_engine_config(e)->vocab);
  if (tpd_engine_rank(e) != 0)
    return TPD_FAIL(TPD_ERR_STATE, "tpd_sched_create on rank %d: the scheduler runs on the leader (rank 0)",
                    tpd_engine_rank(e));
  tpd_engine_info info;
  tpd_engine_get_info(e, &info);
  if (info.tp > 1 && tpd_engine_mode_of(e) != TPD_MODE_LEADER)
    return TPD_FAIL(TPD_ERR_STATE, "tpd_sched_create: the engine runs on %d ranks in SPMD mode; the scheduler needs "
                    "opts.mode = TPD_MODE_LEADER (followers in tpd_engine_follow)", info.tp);
  tpd_engine_capacity cap;
  tpd_engine_get_capacity(e, &cap);
  if (cap.free_slots != cap.max_slots)
    return TPD_FAIL(TPD_ERR_STATE, "tpd_sched_create: %d of the engine's %d slots are open; the scheduler needs them all",
                    cap.max_slots - cap.free_slots, cap.max_slots);
  tpd_sched *s = calloc(1, sizeof *s);
  if (!s) return TPD_FAIL(TPD_ERR_OOM, "tpd_sched_create: out of host memory");
  s->e = e;
  s->cb = opts->callback, s->cb_user = opts->cb_user;
  s->tok = opts->tokenizer;
  s->n_tok = s->tok ? tpd_tokenizer_n_tokens(s->tok) : 0;
  s->budget = opts->max_step_tokens ? opts->max_step_tokens : cap.max_step_tokens;
  s->max_queue = opts->max_queue ? opts->max_queue : 4096;
  s->max_slots = cap.max_slots, s->block_size = cap.block_size, s->total_blocks = cap.total_blocks;
  s->max_ctx = cap.max_ctx;
  const tpd_model_config *c = tpd_engine_config(e);
  s->vocab = c->vocab;
  s->n_eos = c->n_eos < TPD_MAX_EOS ? c->n_eos : TPD_MAX_EOS;
  memcpy(s->eos, c->eos_ids, sizeof(int) * (size_t)s->n_eos);
  s->next_id = 1;
  const size_t n = (size_t)s->max_slots;
  s->run = calloc(n, sizeof *s->run);
  s->items = calloc(n, sizeof *s->items);
  s->outs = calloc(n, sizeof *s->outs);
  s->in_step = calloc(n, sizeof *s->in_step);
  if (!s->run || !s->items || !s->outs || !s->in_step || pthread_mutex_init(&s->mu, NULL) != 0) {
    free(s->run), free(s->items), free(s->outs), free(s->in_step), free(s);
    return TPD_FAIL(TPD_ERR_OOM, "tpd_sched_create: out of host memory");
  }
  *out = s;
  return TPD_OK;
}

void tpd_sched_destroy(tpd_sched *s) {
  if (!s) return;
  for (int i = 0; i < s->n_run; i++) {
    if (tpd_engine_usable(s->e)) tpd_engine_seq_close(s->e, s->run[i]->slot);
    req_free(s->run[i]);
  }
  for (sreq *r = s->q_head, *nx; r; r = nx) nx = r->next, req_free(r);
  pthread_mutex_destroy(&s->mu);
  free(s->run), free(s->items), free(s->outs), free(s->in_step);
  free(s);
}

/* ---- submit / cancel / pending (any thread) ---- */

/* The offset of the first byte of s[0, n) that does not belong to a valid
 * UTF-8 character (no overlong forms, surrogates or code points past
 * U+10FFFF), or n when all do. */
static size_t utf8_invalid_at(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    const unsigned c = u[i];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (c < 0x80) len = 1;
    else if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return i;
    if (len > n - i) return i;
    for (size_t k = 1; k < len; k++)
      if (u[i + k] < (k == 1 ? lo : 0x80) || u[i + k] > (k == 1 ? hi : 0xBF)) return i;
    i += len;
  }
  return n;
}

static tpd_status check_stop_strings(const tpd_sched *s, const tpd_request *r) {
  if (r->skip_special != 0 && r->skip_special != 1)
    return TPD_FAIL(TPD_ERR_ARG, "request: skip_special is %d; it must be 0 or 1", r->skip_special);
  if (r->n_stop_strings < 0) return TPD_FAIL(TPD_ERR_ARG, "request: n_stop_strings is %d", r->n_stop_strings);
  if (!s->tok && r->n_stop_strings > 0)
    return TPD_FAIL(TPD_ERR_ARG, "request: %d stop_strings, but the scheduler has no opts.tokenizer to decode text",
                    r->n_stop_strings);
  if (!s->tok && r->skip_special)
    return TPD_FAIL(TPD_ERR_ARG, "request: skip_special is set, but the scheduler has no opts.tokenizer to decode "
                    "text");
  if (r->n_stop_strings > TPD_MAX_STOP_STRINGS)
    return TPD_FAIL(TPD_ERR_ARG, "request: n_stop_strings is %d; at most %d (TPD_MAX_STOP_STRINGS)", r->n_stop_strings,
                    TPD_MAX_STOP_STRINGS);
  if (r->n_stop_strings > 0 && !r->stop_strings)
    return TPD_FAIL(TPD_ERR_ARG, "request: stop_strings is NULL with n_stop_strings %d", r->n_stop_strings);
  for (int i = 0; i < r->n_stop_strings; i++) {
    const char *x = r->stop_strings[i];
    if (!x) return TPD_FAIL(TPD_ERR_ARG, "request: stop_strings[%d] is NULL", i);
    const size_t n = strnlen(x, TPD_MAX_STOP_STRING_LEN + 1);
    if (n == 0) return TPD_FAIL(TPD_ERR_ARG, "request: stop_strings[%d] is empty", i);
    if (n > TPD_MAX_STOP_STRING_LEN)
      return TPD_FAIL(TPD_ERR_ARG, "request: stop_strings[%d] is longer than %d bytes (TPD_MAX_STOP_STRING_LEN)", i,
                      TPD_MAX_STOP_STRING_LEN);
    const size_t bad = utf8_invalid_at(x, n);
    if (bad < n) return TPD_FAIL(TPD_ERR_ARG, "request: stop_strings[%d] is not valid UTF-8 (byte %zu)", i, bad);
  }
  return TPD_OK;
}

/* The request's text state: its detok and copied stop strings (on failure
 * the caller frees what was made). */
static tpd_status text_init(const tpd_sched *s, const tpd_request *r, sreq *q) {
  TPD_TRY(tpd_detok_create(s->tok, r->skip_special, &q->detok));
  q->txt_cap = 256;
  q->txt = malloc(q->txt_cap);
  if (!q->txt) return TPD_FAIL(TPD_ERR_OOM, "tpd_sched_submit: out of host memory");
  q->txt[0] = 0;
  if (r->n_stop_strings == 0) return TPD_OK;
  q->stops = calloc((size_t)r->n_stop_strings, sizeof *q->stops);
  q->stop_len = calloc((size_t)r->n_stop_strings, sizeof *q->stop_len);
  if (!q->stops || !q->stop_len) return TPD_FAIL(TPD_ERR_OOM, "tpd_sched_submit: out of host memory");
  for (int i = 0; i < r->n_stop_strings; i++) {
    q->stop_len[i] = strlen(r->stop_strings[i]);
    q->stops[i] = malloc(q->stop_len[i] + 1);
    if (!q->stops[i]) return TPD_FAIL(TPD_ERR_OOM, "tpd_sched_submit: out of host memory");
    memcpy(q->stops[i], r->stop_strings[i], q->stop_len[i] + 1);
    q->n_stops = i + 1;
  }
  return TPD_OK;
}
static tpd_status check_request(const tpd_sched *s, const tpd_request *r) {
  if (r->struct_size != sizeof(tpd_request) || r->version != TPD_REQUEST_VERSION)
    return TPD_FAIL(TPD_ERR_VERSION, "request: struct_size %u / version %u, this library has %zu / %d", r->struct_size,
                    r->version, sizeof(tpd_request), TPD_REQUEST_VERSION);
  if (r->n_prompt < 1) return TPD_FAIL(TPD_ERR_ARG, "request: n_prompt is %d; it must be >= 1", r->n_prompt);
  if (!r->prompt) return TPD_FAIL(TPD_ERR_ARG, "request: prompt is NULL with n_prompt %d", r->n_prompt);
  if (r->max_tokens < 1) return TPD_FAIL(TPD_ERR_ARG, "request: max_tokens is %d; it must be >= 1", r->max_tokens);
  if (r->logprobs < 0 || r->logprobs > 1 + TPD_MAX_TOP_LOGPROBS)
    return TPD_FAIL(TPD_ERR_ARG, "request: logprobs is %d; it must be in [0, %d]", r->logprobs, 1 + TPD_MAX_TOP_LOGPROBS);
  if (r->n_stop_ids < 0) return TPD_FAIL(TPD_ERR_ARG, "request: n_stop_ids is %d", r->n_stop_ids);
  if (r->n_stop_ids > 0 && !r->stop_ids)
    return TPD_FAIL(TPD_ERR_ARG, "request: stop_ids is NULL with n_stop_ids %d", r->n_stop_ids);
  TPD_TRY(check_stop_strings(s, r));
  const tpd_sampling *sp = &r->sampling;
  if (!(sp->temperature >= 0) || isinf(sp->temperature))
    return TPD_FAIL(TPD_ERR_ARG, "request: sampling.temperature %g must be finite and >= 0", (double)sp->temperature);
  if (sp->top_k < 0) return TPD_FAIL(TPD_ERR_ARG, "request: sampling.top_k %d is negative", sp->top_k);
  if (!(sp->top_p >= 0)) return TPD_FAIL(TPD_ERR_ARG, "request: sampling.top_p %g must be >= 0", (double)sp->top_p);
  for (int i = 0; i < r->n_prompt; i++)
    if (r->prompt[i] < 0 || r->prompt[i] >= s->vocab)
      return TPD_FAIL(TPD_ERR_TOKEN, "request: prompt[%d] = %d is outside the vocabulary [0, %d)", i, r->prompt[i],
                      s->vocab);
  for (int i = 0; i < r->n_stop_ids; i++)
    if (r->stop_ids[i] < 0 || r->stop_ids[i] >= s->vocab)
      return TPD_FAIL(TPD_ERR_TOKEN, "request: stop_ids[%d] = %d is outside the vocabulary [0, %d)", i, r->stop_ids[i],
                      s->vocab);
  /* compared by subtraction: the sum of two large ints must not wrap */
  if (r->max_tokens > s->max_ctx - r->n_prompt)
    return TPD_FAIL(TPD_ERR_TOO_LONG, "request: n_prompt %d + max_tokens %d exceed the engine's max_ctx %d", r->n_prompt,
                    r->max_tokens, s->max_ctx);
  const long long blocks = ((long long)r->n_prompt + r->max_tokens + s->block_size - 1) / s->block_size;
  if (blocks > s->total_blocks)
    return TPD_FAIL(TPD_ERR_TOO_LONG, "request: n_prompt %d + max_tokens %d need %lld KV blocks; the pool has %d",
                    r->n_prompt, r->max_tokens, blocks, s->total_blocks);
  return TPD_OK;
}

tpd_status tpd_sched_submit(tpd_sched *s, const tpd_request *r, uint64_t *id) {
  if (!s) return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_submit: scheduler is NULL");
  if (!r) return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_submit: request is NULL");
  if (!id) return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_submit: id is NULL");
  TPD_TRY(check_request(s, r));
  sreq *q = calloc(1, sizeof *q);
  if (q) q->tokens = malloc(sizeof(int32_t) * ((size_t)r->n_prompt + (size_t)r->max_tokens));
  if (q && r->n_stop_ids) q->stop_ids = malloc(sizeof(int32_t) * (size_t)r->n_stop_ids);
  if (!q || !q->tokens || (r->n_stop_ids && !q->stop_ids)) {
    req_free(q);
    return TPD_FAIL(TPD_ERR_OOM, "tpd_sched_submit: out of host memory");
  }
  if (s->tok) {
    const tpd_status st = text_init(s, r, q);
    if (st != TPD_OK) {
      req_free(q);
      return st;
    }
  }
  memcpy(q->tokens, r->prompt, sizeof(int32_t) * (size_t)r->n_prompt);
  if (r->n_stop_ids) memcpy(q->stop_ids, r->stop_ids, sizeof(int32_t) * (size_t)r->n_stop_ids);
  q->n_stop = r->n_stop_ids;
  q->user = r->user;
  q->n_prompt = q->n_known = r->n_prompt;
  q->max_tokens = r->max_tokens;
  q->sampling = r->sampling;
  q->seed_only = r->seed_only != 0;
  q->logprobs = r->logprobs;
  q->ignore_eos = r->ignore_eos;
  q->slot = -1;
  q->t_admit = q->t_first = -1;
  q->t_submit = tpd_now_ms();
  pthread_mutex_lock(&s->mu);
  if (s->dead) {
    pthread_mutex_unlock(&s->mu);
    req_free(q);
    return TPD_FAIL(TPD_ERR_STATE, "tpd_sched_submit: the engine became unusable; destroy the scheduler");
  }
  if (s->n_queued >= s->max_queue) {
    pthread_mutex_unlock(&s->mu);
    req_free(q);
    return TPD_FAIL(TPD_ERR_NO_SLOT, "tpd_sched_submit: the queue holds its maximum of %d requests", s->max_queue);
  }
  q->id = s->next_id++;
  q_push_back(s, q);
  *id = q->id;
  pthread_mutex_unlock(&s->mu);
  return TPD_OK;
}

tpd_status tpd_sched_cancel(tpd_sched *s, uint64_t id) {
  if (!s) return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_cancel: scheduler is NULL");
  int found = 0;
  pthread_mutex_lock(&s->mu);
  for (int i = 0; i < s->n_run && !found; i++)
    if (s->run[i]->id == id) s->run[i]->cancel = found = 1;
  for (sreq *r = s->q_head; r && !found; r = r->next)
    if (r->id == id) r->cancel = found = 1;
  pthread_mutex_unlock(&s->mu);
  if (!found)
    return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_cancel: no queued or running request has id %llu", (unsigned long long)id);
  return TPD_OK;
}

int tpd_sched_pending(tpd_sched *s) {
  if (!s) return 0;
  pthread_mutex_lock(&s->mu);
  const int n = s->n_queued + s->n_run;
  pthread_mutex_unlock(&s->mu);
  return n;
}

void tpd_sched_last_step_times(const tpd_sched *s, double *sched_s, double *engine_s) {
  if (sched_s) *sched_s = s ? s->last_sched_s : 0;
  if (engine_s) *engine_s = s ? s->last_engine_s : 0;
}

/* ---- events (driver thread, without the lock) ---- */
static void fill_stats(const sreq *r, double now, tpd_request_stats *st) {
  memset(st, 0, sizeof *st);
  st->total_s = (now - r->t_submit) * 1e-3;
  st->queue_s = ((r->t_admit >= 0 ? r->t_admit : now) - r->t_submit) * 1e-3;
  st->ttft_s = r->t_first >= 0 ? (r->t_first - r->t_submit) * 1e-3 : 0;
  st->tpot_s = r->n_out >= 2 ? (r->t_last - r->t_first) * 1e-3 / (r->n_out - 1) : 0;
  st->n_prompt = r->n_prompt;
  st->n_output = r->n_out;
  st->n_preempted = r->n_preempted;
  st->n_recomputed = r->n_recomputed;
}

/* ---- text (driver thread) ---- */
static tpd_status txt_append(sreq *r, const char *p, size_t n) {
  if (r->txt_len + n + 1 > r->txt_cap) {
    size_t cap = r->txt_cap * 2;
    while (cap < r->txt_len + n + 1) cap *= 2;
    char *t = realloc(r->txt, cap);
    if (!t) return TPD_FAIL(TPD_ERR_OOM, "scheduler: out of host memory for the text of request %llu",
                            (unsigned long long)r->id);
    r->txt = t, r->txt_cap = cap;
  }
  memcpy(r->txt + r->txt_len, p, n);
  r->txt_len += n;
  r->txt[r->txt_len] = 0;
  return TPD_OK;
}

/* Bytes of txt that may be reported now: up to the earliest stop string
 * (*stopped = 1), else all of it when `final`, else all but the longest
 * suffix that is a proper prefix of a stop string. */
static size_t txt_releasable(const sreq *r, int final, int *stopped) {
  size_t first = r->txt_len;
  *stopped = 0;
  for (int i = 0; i < r->n_stops; i++) {
    const char *m = memmem(r->txt, r->txt_len, r->stops[i], r->stop_len[i]);
    if (m && (size_t)(m - r->txt) < first) first = (size_t)(m - r->txt), *stopped = 1;
  }
  if (*stopped || final) return first;
  size_t hold = 0;
  for (int i = 0; i < r->n_stops; i++) {
    const size_t L = r->stop_len[i];
    const size_t kmax = L - 1 < r->txt_len ? L - 1 : r->txt_len;
    for (size_t k = kmax; k > hold; k--) {
      const char *tail = r->txt + r->txt_len - k;
      if (tail[0] == r->stops[i][0] && !memcmp(tail, r->stops[i], k)) {
        hold = k;
        break;
      }
    }
  }
  return r->txt_len - hold;
}

/* Decodes tok (< 0: none) and, when `final`, what the detok holds back, into
 * txt; *n_emit: the bytes of txt to report with this event; *stopped: a stop
 * string ends the text there. */
static tpd_status text_push(const tpd_sched *s, sreq *r, int32_t tok, int final, size_t *n_emit, int *stopped) {
  *n_emit = 0, *stopped = 0;
  const char *p;
  size_t n;
  if (tok >= 0) {
    if (tok >= s->n_tok)
      return TPD_FAIL(TPD_ERR_TOKEN, "request %llu produced token %d; the tokenizer has %d tokens (the model's "
                      "vocabulary is padded beyond it): no text for it", (unsigned long long)r->id, tok, s->n_tok);
    TPD_TRY(tpd_detok_push(r->detok, tok, &p, &n));
    TPD_TRY(txt_append(r, p, n));
  }
  if (final) {
    TPD_TRY(tpd_detok_flush(r->detok, &p, &n));
    TPD_TRY(txt_append(r, p, n));
  }
  *n_emit = txt_releasable(r, final, stopped);
  return TPD_OK;
}

/* Drops the n reported bytes from the front of txt. */
static void txt_consume(sreq *r, size_t n) {
  memmove(r->txt, r->txt + n, r->txt_len - n);
  r->txt_len -= n;
  r->txt[r->txt_len] = 0;
}

/* Calls the callback with text[0, text_len) (NULL without a tokenizer);
 * returns the seconds it took (not the scheduler's). */
static double emit(tpd_sched *s, const sreq *r, const tpd_step_output *out, tpd_finish_reason fin, tpd_status status,
                   double now, size_t text_len) {
  tpd_sched_event ev;
  memset(&ev, 0, sizeof ev);
  ev.id = r->id;
  ev.user = r->user;
  char saved = 0;
  if (r->txt) { /* the text ends at text_len during the callback */
    saved = r->txt[text_len];
    r->txt[text_len] = 0;
    ev.text = r->txt, ev.text_len = text_len;
  }
  if (out) {
    ev.out = *out;
    ev.token = out->token;
    ev.index = r->n_out - 1;
  } else {
    ev.token = ev.out.token = -1;
    ev.out.logprob = NAN;
    ev.index = r->n_out;
  }
  ev.finish = fin;
  ev.status = status;
  if (fin != TPD_FINISH_NONE) fill_stats(r, now, &ev.stats);
  const double t0 = tpd_now_ms();
  s->cb(s->cb_user, &ev);
  const double t = (tpd_now_ms() - t0) * 1e-3;
  if (r->txt) r->txt[text_len] = saved;
  return t;
}

/* Finishes a request that is no longer in any container: event, then free. */
static double finish_detached(tpd_sched *s, sreq *r, tpd_finish_reason fin, tpd_status st) {
  r->state = Q_DONE;
  size_t n_emit = 0;
  int stopped = 0;
  if (r->detok) { /* what was held back, up to a stop string the flush completes */
    tpd_error_state err; /* the failure being reported keeps its message */
    tpd_error_save(&err);
    if (text_push(s, r, -1, 1, &n_emit, &stopped) != TPD_OK) n_emit = 0;
    tpd_error_restore(&err);
  }
  const double cb = emit(s, r, NULL, fin, st, tpd_now_ms(), n_emit);
  req_free(r);
  return cb;
}

/* ---- planning (driver thread, under the lock) ---- */
static int blocks_for(const tpd_sched *s, int n_tokens) { return (n_tokens + s->block_size - 1) / s->block_size; }

static void add_item(tpd_sched *s, int *n_items, sreq *r, int chunk, int *budget, int *free_blocks, int need) {
  const int pending = r->n_known - r->n_cached;
  tpd_step_item *it = &s->items[*n_items];
  memset(it, 0, sizeof *it);
  it->slot = r->slot;
  it->n_tokens = chunk;
  it->tokens = r->tokens + r->n_cached;
  it->sampling = r->sampling;
  it->stream = r->seed_only ? 0 : r->id;
  if (chunk < pending) it->flags = TPD_ITEM_NO_OUTPUT;
  else it->logprobs = r->logprobs;
  s->in_step[*n_items] = r;
  r->chunk = chunk;
  (*n_items)++;
  *budget -= chunk;
  *free_blocks -= need;
}

/* Preemption by recompute: frees r's slot and blocks (added to *free_blocks)
 * and puts it at the head of the queue with everything it knows (prompt and
 * output), to be prefilled again. */
static int preempt(tpd_sched *s, sreq *r, int *free_blocks) {
  tpd_engine_capacity before, after;
  tpd_engine_get_capacity(s->e, &before);
  if (tpd_engine_seq_close(s->e, r->slot) != TPD_OK) return 0;
  tpd_engine_get_capacity(s->e, &after);
  *free_blocks += after.free_blocks - before.free_blocks;
  run_remove(s, r);
  r->n_recomputed += r->n_cached;
  r->n_preempted++;
  r->n_cached = 0;
  r->slot = -1;
  r->chunk = 0;
  q_push_front(s, r);
  TPD_DEBUG("sched: preempted request %llu (%d tokens to recompute)", (unsigned long long)r->id, r->n_known);
  return 1;
}

/* KV blocks running request run[i] needs for `chunk` more tokens, after
 * preempting younger requests that are not in this step (youngest first)
 * until they fit; -1 when they still do not. */
static int make_room(tpd_sched *s, int i, int chunk, int *free_blocks) {
  const sreq *r = s->run[i];
  int need = tpd_engine_blocks_needed(s->e, r->slot, chunk);
  for (int j = s->n_run - 1; j > i && need > *free_blocks; j--)
    if (!s->run[j]->chunk) preempt(s, s->run[j], free_blocks);
  return need >= 0 && need <= *free_blocks ? need : -1;
}

/* Fills the step under the budget: one decode token per running request,
 * then prefill chunks of running requests, then admissions.  Returns the
 * number of items. */
static int plan_step(tpd_sched *s) {
  tpd_engine_capacity cap;
  tpd_engine_get_capacity(s->e, &cap);
  int budget = s->budget, free_blocks = cap.free_blocks, n_items = 0;
  for (int i = 0; i < s->n_run; i++) s->run[i]->chunk = 0;
  /* 1: decode, oldest first.  When the pool cannot take the token even after
   * every younger request is preempted, the older ones hold it: this one
   * waits in the queue (the oldest always fits, a request that cannot hold
   * the pool alone being refused at submit). */
  for (int i = 0; i < s->n_run && budget > 0; i++) {
    sreq *r = s->run[i];
    if (r->n_known - r->n_cached != 1) continue;
    const int need = make_room(s, i, 1, &free_blocks);
    if (need >= 0) {
      add_item(s, &n_items, r, 1, &budget, &free_blocks, need);
    } else if (preempt(s, r, &free_blocks)) {
      i--;
    }
  }
  /* 2: prefill chunks, in admission order; a chunk the pool cannot hold
   * after preempting the younger requests is cut to what fits, or waits */
  for (int i = 0; i < s->n_run && budget > 0; i++) {
    sreq *r = s->run[i];
    const int pending = r->n_known - r->n_cached;
    if (pending == 1 || r->chunk) continue;
    int chunk = pending < budget ? pending : budget;
    int need = make_room(s, i, chunk, &free_blocks);
    if (need < 0) {
      const int room = (s->block_size - r->n_cached % s->block_size) % s->block_size;
      const long long fit = (long long)free_blocks * s->block_size + room;
      if (fit < chunk) chunk = (int)fit;
      while (chunk > 0 && (need = tpd_engine_blocks_needed(s->e, r->slot, chunk)) > free_blocks) chunk--;
    }
    if (chunk > 0 && need >= 0) add_item(s, &n_items, r, chunk, &budget, &free_blocks, need);
  }
  /* 3: admission, first come first served, while a slot, the budget and the
   * blocks of the whole pending prefill allow (admitted with only its first
   * chunk's blocks, a long prompt would be preempted at its next chunk); at
   * most `budget` requests run, so each can decode in every step */
  while (s->q_head && budget > 0 && s->n_run < s->max_slots && s->n_run < s->budget) {
    sreq *r = s->q_head;
    const int pending = r->n_known - r->n_cached;
    if (blocks_for(s, pending) > free_blocks) break;
    const int chunk = pending < budget ? pending : budget;
    int slot;
    tpd_error_state err; /* a refused open is not a failure of the step: the caller's message stays */
    tpd_error_save(&err);
    if (tpd_engine_seq_open(s->e, &slot) != TPD_OK) {
      tpd_error_restore(&err);
      break;
    }
    const int need = tpd_engine_blocks_needed(s->e, slot, chunk);
    if (need < 0 || need > free_blocks) { /* the engine counts blocks otherwise than blocks_for: wait */
      tpd_engine_seq_close(s->e, slot);
      break;
    }
    q_remove(s, r);
    r->slot = slot;
    r->state = Q_RUNNING;
    s->run[s->n_run++] = r;
    if (r->t_admit < 0) r->t_admit = tpd_now_ms();
    add_item(s, &n_items, r, chunk, &budget, &free_blocks, need);
  }
  return n_items;
}

/* ---- the step (driver thread) ---- */

/* Takes every request out of the queue and the running array (closing their
 * slots while the engine can) into a list linked through `next`. */
static sreq *drain_all(tpd_sched *s) {
  sreq *list = NULL;
  const int usable = tpd_engine_usable(s->e);
  pthread_mutex_lock(&s->mu);
  while (s->n_run > 0) {
    sreq *r = s->run[--s->n_run];
    if (usable) tpd_engine_seq_close(s->e, r->slot);
    r->next = list, list = r;
  }
  while (s->q_head) {
    sreq *r = s->q_head;
    q_remove(s, r);
    r->next = list, list = r;
  }
  pthread_mutex_unlock(&s->mu);
  return list;
}

/* Finishes every request in the list with an error event; returns the
 * seconds spent in the callback. */
static double fail_list(tpd_sched *s, sreq *list, tpd_status st) {
  double cb = 0;
  for (sreq *r = list, *nx; r; r = nx) nx = r->next, cb += finish_detached(s, r, TPD_FINISH_ERROR, st);
  return cb;
}

static tpd_finish_reason finish_of(const tpd_sched *s, const sreq *r, int32_t tok) {
  if (!r->ignore_eos)
    for (int i = 0; i < s->n_eos; i++)
      if (s->eos[i] == tok) return TPD_FINISH_EOS;
  for (int i = 0; i < r->n_stop; i++)
    if (r->stop_ids[i] == tok) return TPD_FINISH_STOP;
  return r->n_out >= r->max_tokens ? TPD_FINISH_LENGTH : TPD_FINISH_NONE;
}

/* The engine step failed: its requests finish with the status; when the
 * engine is no longer usable, so does every other request, and the
 * scheduler is dead.  Returns the seconds spent in the callback. */
static double step_failed(tpd_sched *s, int n_items, tpd_status st) {
  tpd_error_state err; /* the engine's message outlives the callbacks */
  tpd_error_save(&err);
  const int usable = tpd_engine_usable(s->e);
  double cb = 0;
  sreq *list = NULL;
  pthread_mutex_lock(&s->mu);
  for (int k = 0; k < n_items; k++) {
    sreq *r = s->in_step[k];
    run_remove(s, r);
    if (usable) tpd_engine_seq_close(s->e, r->slot);
    r->next = list, list = r;
  }
  if (!usable) s->dead = 1;
  pthread_mutex_unlock(&s->mu);
  cb += fail_list(s, list, st);
  if (!usable) cb += fail_list(s, drain_all(s), st);
  tpd_error_restore(&err);
  return cb;
}

tpd_status tpd_sched_step(tpd_sched *s) {
  if (!s) return TPD_FAIL(TPD_ERR_ARG, "tpd_sched_step: scheduler is NULL");
  const double t0 = tpd_now_ms();
  double cb_s = 0, eng_s = 0;
  s->last_sched_s = s->last_engine_s = 0;
  if (s->dead) { /* requests submitted since fail at once */
    fail_list(s, drain_all(s), TPD_ERR_STATE);
    return TPD_FAIL(TPD_ERR_STATE, "tpd_sched_step: the engine became unusable in an earlier step");
  }
  /* cancellations, then the plan, under the lock */
  sreq *cancelled = NULL;
  pthread_mutex_lock(&s->mu);
  for (sreq *r = s->q_head, *nx; r; r = nx) {
    nx = r->next;
    if (r->cancel) q_remove(s, r), r->next = cancelled, cancelled = r;
  }
  for (int i = 0; i < s->n_run; i++) {
    sreq *r = s->run[i];
    if (!r->cancel) continue;
    tpd_engine_seq_close(s->e, r->slot);
    run_remove(s, r);
    i--;
    r->next = cancelled, cancelled = r;
  }
  const int n_items = plan_step(s);
  pthread_mutex_unlock(&s->mu);
  for (sreq *r = cancelled, *nx; r; r = nx) nx = r->next, cb_s += finish_detached(s, r, TPD_FINISH_CANCELLED, TPD_ERR_CANCELLED);
  tpd_status st = TPD_OK;
  if (n_items > 0) {
    const double te = tpd_now_ms();
    st = tpd_engine_step_out(s->e, s->items, n_items, s->outs);
    eng_s = (tpd_now_ms() - te) * 1e-3;
    if (st != TPD_OK) {
      cb_s += step_failed(s, n_items, st);
    } else {
      const double now = tpd_now_ms();
      for (int k = 0; k < n_items; k++) {
        sreq *r = s->in_step[k];
        r->n_cached += r->chunk;
        r->chunk = 0;
        if (s->items[k].flags & TPD_ITEM_NO_OUTPUT) continue;
        const int32_t tok = s->outs[k].token;
        r->tokens[r->n_known++] = tok;
        r->n_out++;
        if (r->t_first < 0) r->t_first = now;
        r->t_last = now;
        tpd_finish_reason fin = finish_of(s, r, tok);
        tpd_status tst = TPD_OK;
        size_t n_emit = 0;
        if (r->detok) {
          int stopped;
          tst = text_push(s, r, tok, fin != TPD_FINISH_NONE, &n_emit, &stopped);
          if (tst != TPD_OK) fin = TPD_FINISH_ERROR, n_emit = 0;
          else if (stopped) fin = TPD_FINISH_STOP;
        }
        if (fin != TPD_FINISH_NONE) {
          pthread_mutex_lock(&s->mu);
          run_remove(s, r);
          pthread_mutex_unlock(&s->mu);
          tpd_engine_seq_close(s->e, r->slot);
          r->state = Q_DONE;
        }
        cb_s += emit(s, r, &s->outs[k], fin, tst, now, n_emit);
        if (fin != TPD_FINISH_NONE) req_free(r);
        else if (n_emit) txt_consume(r, n_emit);
      }
    }
  }
  const double total = (tpd_now_ms() - t0) * 1e-3;
  s->last_engine_s = eng_s;
  s->last_sched_s = total - eng_s - cb_s > 0 ? total - eng_s - cb_s : 0;
  return st;
}
