/* Continuous-batching scheduler: requests in, tokens out, over one engine.
 *
 * A server submits requests (prompt token ids, sampling, limits) from any
 * thread and one driver thread calls tpd_sched_step in a loop.  Each step:
 *   1. cancelled requests leave (their slots and KV blocks are freed);
 *   2. the step is filled under the token budget (opts.max_step_tokens):
 *      one decode token per running sequence first (oldest first), then
 *      prefill chunks of admitted prompts in admission order (a long prompt
 *      is split across steps, so running streams keep their pace);
 *   3. when the pool cannot hold a running sequence's tokens, the youngest
 *      running sequences not yet in the step are preempted by recompute:
 *      their slots and blocks are freed and they go back to the front of
 *      the queue with their prompt plus the tokens they produced, to be
 *      prefilled again later (the output continues where it stopped, no
 *      token is reported twice, and since the random stream of a request is
 *      its id and the sampler's counter its position, the tokens are the
 *      same as without preemption, sampled ones included);
 *   4. with the budget left, queued requests are admitted first come, first
 *      served while a slot is free, fewer than max_step_tokens sequences
 *      run, and the KV blocks of the whole prompt are free (the head of the
 *      queue waits for them; nothing overtakes it);
 *   5. one engine step runs; every produced token is reported through the
 *      event callback, and a request finishes on EOS (the model's eos ids,
 *      unless ignore_eos), on one of its stop ids, on one of its stop
 *      strings, at max_tokens, or when cancelled: exactly one finishing
 *      event per request, whichever comes first.
 * Greedy outputs do not depend on what else is in the batch (the CPU
 * backend's kernels compute each row the same way at any batch size;
 * tests/unit/test_sched.c checks it at TP 1, 2 and 4).
 *
 * On more than one rank the engine must be in leader mode (TPD_MODE_LEADER):
 * the scheduler runs on the leader, followers sit in tpd_engine_follow.  The
 * scheduler owns the engine's slots: create it while none is open and do not
 * open or step sequences of that engine beside it.
 *
 * Threads: tpd_sched_submit, tpd_sched_cancel and tpd_sched_pending may be
 * called from any thread at any time; tpd_sched_step, create and destroy
 * from one driver thread (the one that uses the engine).  The callback runs
 * on the driver thread, inside tpd_sched_step; it must not call
 * tpd_sched_step (it may call submit and cancel).
 *
 * Text (with opts.tokenizer).  Each request decodes its tokens as they come
 * (a tpd_detok, skip_special as the request says) and every token event
 * carries the new text: whole UTF-8 characters only, so a character made of
 * several tokens comes with the token that completes it, and the pieces of
 * all events concatenate to what tpd_tokenizer_decode gives for the output
 * ids (less what a stop string cuts).  Stop strings are searched in that
 * text, across token boundaries: when one appears, the request finishes with
 * TPD_FINISH_STOP on the token that completed it, and the text reported
 * ends just before it (the stop string and anything after it are never
 * reported; the earliest match wins when several appear).  Text that could
 * be the beginning of a stop string (a suffix of the text that is a prefix
 * of one) is held back until the next tokens show it is not, so a client
 * never sees a partial stop string that later completes; what is held back
 * comes out with the finishing event when the request ends otherwise (EOS,
 * stop id, max_tokens, cancel, error).  A stop string found in the text of a
 * token that also ends the request otherwise (an EOS or stop id, the last
 * of max_tokens) makes the finish TPD_FINISH_STOP.  A produced id the
 * tokenizer does not have (a model's vocabulary padded beyond it) finishes
 * the request with TPD_FINISH_ERROR, TPD_ERR_TOKEN. */
#ifndef TPD_SCHED_H
#define TPD_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "tpdecode.h" /* same folder, in the tree and installed */
#include "runtime/model/tokenizer.h" /* installed under the same include folder */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tpd_sched tpd_sched;

typedef enum {
  TPD_FINISH_NONE = 0,  /* not finished: a token event */
  TPD_FINISH_EOS,       /* produced an end-of-sequence token (reported with it) */
  TPD_FINISH_STOP,      /* produced one of its stop ids (reported with it), or its text one of its stop strings */
  TPD_FINISH_LENGTH,    /* reached max_tokens */
  TPD_FINISH_CANCELLED, /* tpd_sched_cancel */
  TPD_FINISH_ERROR      /* a step failed for it (status in the event) */
} tpd_finish_reason;

/* Per-request counters, final in the finishing event. */
typedef struct {
  double queue_s;        /* submit to first admission (to finish when never admitted) */
  double ttft_s;         /* submit to first output token; 0 without one */
  double tpot_s;         /* mean time per output token after the first; 0 with fewer than 2 */
  double total_s;        /* submit to finish */
  int n_prompt;          /* tokens in */
  int n_output;          /* tokens out */
  int n_preempted;       /* times it was preempted (and recomputed) */
  int n_recomputed;      /* tokens prefilled again because of preemption */
} tpd_request_stats;

typedef struct {
  uint64_t id;            /* from tpd_sched_submit */
  void *user;             /* the request's user pointer */
  int32_t token;          /* the new token, or -1 in an event that only finishes (cancel, error) */
  int index;              /* position of the token in the output (0 = first); n_output without a token */
  tpd_step_output out;    /* token, log-probabilities (when the request asked) */
  tpd_finish_reason finish;
  tpd_status status;      /* TPD_FINISH_ERROR: why; TPD_FINISH_CANCELLED: TPD_ERR_CANCELLED; else TPD_OK */
  tpd_request_stats stats; /* valid when finish != TPD_FINISH_NONE */
  /* With opts.tokenizer: the new text (NUL-terminated, text_len bytes, whole
   * UTF-8 characters, possibly empty), valid during the callback; in a
   * finishing event it includes what was held back.  Without: NULL, 0. */
  const char *text;
  size_t text_len;
} tpd_sched_event;

typedef void (*tpd_sched_callback)(void *cb_user, const tpd_sched_event *ev);

#define TPD_SCHED_OPTS_VERSION 2
typedef struct {
  uint32_t struct_size;    /* sizeof(tpd_sched_opts) */
  uint32_t version;        /* TPD_SCHED_OPTS_VERSION */
  int max_step_tokens;     /* token budget per step (and most sequences running); 0: the engine's max_step_tokens */
  int max_queue;           /* queued requests before submit returns TPD_ERR_NO_SLOT; 0: 4096 */
  tpd_sched_callback callback; /* required */
  void *cb_user;
  const tpd_tokenizer *tokenizer; /* optional, borrowed (free it after the scheduler): text in the events and
                                   * stop strings; it may not have more tokens than the model's vocabulary */
} tpd_sched_opts;
#define TPD_SCHED_OPTS_INIT .struct_size = sizeof(tpd_sched_opts), .version = TPD_SCHED_OPTS_VERSION
void tpd_sched_opts_init(tpd_sched_opts *o);

#define TPD_REQUEST_VERSION 3
#define TPD_MAX_STOP_STRINGS 32     /* stop strings in one request */
#define TPD_MAX_STOP_STRING_LEN 512 /* bytes in one stop string */
typedef struct {
  uint32_t struct_size;    /* sizeof(tpd_request) */
  uint32_t version;        /* TPD_REQUEST_VERSION */
  const int32_t *prompt;   /* copied at submit */
  int n_prompt;            /* >= 1 */
  int max_tokens;          /* >= 1; n_prompt + max_tokens <= the engine's max_ctx */
  tpd_sampling sampling;   /* zero: greedy; the random stream is the request's id, so sampled
                            * tokens depend on (seed, id, position), not on the batch */
  int seed_only;           /* 1: the random stream is sampling.seed's alone, so the same seed and
                            * prompt give the same tokens in any request (OpenAI's `seed`) */
  int logprobs;            /* as tpd_step_item.logprobs: 0, or 1 + k top alternatives (k <= 20) */
  const int32_t *stop_ids; /* copied at submit */
  int n_stop_ids;
  int ignore_eos;          /* 1: the model's eos ids do not stop it */
  void *user;              /* returned in every event */
  /* Needs opts.tokenizer.  Each string non-empty valid UTF-8 of at most
   * TPD_MAX_STOP_STRING_LEN bytes, at most TPD_MAX_STOP_STRINGS of them;
   * copied at submit. */
  const char *const *stop_strings;
  int n_stop_strings;
  int skip_special;        /* 1: special added tokens give no text (needs opts.tokenizer) */
} tpd_request;
#define TPD_REQUEST_INIT .struct_size = sizeof(tpd_request), .version = TPD_REQUEST_VERSION
void tpd_request_init(tpd_request *r);

/* The engine (and opts.tokenizer) is borrowed (destroy the scheduler first). */
tpd_status tpd_sched_create(tpd_engine *e, const tpd_sched_opts *opts, tpd_sched **out);
/* Cancels what is left (no events) and frees the scheduler; the engine's
 * slots it held are closed. */
void tpd_sched_destroy(tpd_sched *s);

/* Queues a request (prompt, stop ids and stop strings copied); *id names it in events and
 * tpd_sched_cancel, ids increase from 1.  Bad requests fail here with their
 * status and a message naming the field: TPD_ERR_VERSION (struct_size,
 * version), _ARG (counts, logprobs, sampling, stop strings), _TOKEN (an id outside the
 * vocabulary), _TOO_LONG (n_prompt + max_tokens past max_ctx, or more KV
 * blocks than the whole pool, which it could never hold alone); a full queue
 * is TPD_ERR_NO_SLOT. */
tpd_status tpd_sched_submit(tpd_sched *s, const tpd_request *r, uint64_t *id);
/* Marks a request cancelled; it finishes (TPD_FINISH_CANCELLED event, slot
 * and blocks freed) in the next tpd_sched_step, unless a token of the step
 * running now finishes it first.  TPD_ERR_ARG for an id that is unknown or
 * already finished; cancelling twice is one cancel. */
tpd_status tpd_sched_cancel(tpd_sched *s, uint64_t id);
/* Requests queued or running. */
int tpd_sched_pending(tpd_sched *s);

/* One scheduling step and at most one engine step (none when idle).  Returns
 * the engine's status when the step failed: the requests in it finish with
 * TPD_FINISH_ERROR, and when the engine is no longer usable every request
 * does, later submits fail and later steps return TPD_ERR_STATE. */
tpd_status tpd_sched_step(tpd_sched *s);

/* Host time the scheduler spent in its last step outside the engine and the
 * callback, and inside the engine (tpd_engine_step_out), in seconds: the
 * overhead a benchmark reports. */
void tpd_sched_last_step_times(const tpd_sched *s, double *sched_s, double *engine_s);

#ifdef __cplusplus
}
#endif
#endif
