/* Status codes, the one error-reporting path, logging and tunables.
 *
 * Library code never exits: it returns a tpd_status and records a one-line
 * message.  Only launch/ programs print and exit.
 *
 * The message, per thread:
 *   - tpd_last_error() is the message of the most recent failure recorded on
 *     this thread, i.e. of the most recent call that returned a status other
 *     than TPD_OK.  Read it right after such a status; it is "" before the
 *     thread's first failure and after tpd_clear_error().
 *   - A new failure replaces it.  A successful call leaves it alone: after
 *     TPD_OK the message is an old one and says nothing about that call.
 *   - The library never clears it.  Where the library recovers from a
 *     failure of its own (a fallback), it restores the message the caller
 *     had (tpd_error_save / tpd_error_restore), so a call that succeeds
 *     neither loses the caller's message nor leaves one of its own behind.
 *   - tpd_clear_error() belongs to the caller (programs, tests): it empties
 *     the message, e.g. to check that a call records one.
 * Library code that goes on after a failure (cleanup, telling the other
 * ranks) must not record a second failure over the first on the same path:
 * test the status it holds (`if (st == TPD_OK) st = TPD_FAIL(...)`). */
#ifndef TPD_ERROR_H
#define TPD_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  TPD_OK = 0,
  TPD_ERR_ARG,         /* a caller passed something invalid */
  TPD_ERR_IO,          /* file missing, unreadable, truncated */
  TPD_ERR_FORMAT,      /* file readable but malformed */
  TPD_ERR_UNSUPPORTED, /* valid input this build does not handle */
  TPD_ERR_OOM,         /* host or device allocation failed */
  TPD_ERR_DEVICE,      /* CUDA / cuBLASLt failure, or no device */
  TPD_ERR_COMM,        /* MPI / NCCL failure, or a peer failed */
  TPD_ERR_INTERNAL,
  /* ---- a request the engine cannot take now or at all; the engine stays
   * usable (a server answers these per request, not as an engine fault) ---- */
  TPD_ERR_NO_SLOT,     /* every sequence slot is open: retry after a close */
  TPD_ERR_KV_FULL,     /* the KV pool has too few free blocks for the step: retry or preempt */
  TPD_ERR_SLOT,        /* a slot that is not open (never opened, closed, out of range) */
  TPD_ERR_TOKEN,       /* a token id outside the vocabulary */
  TPD_ERR_TOO_LONG,    /* a sequence would pass its context (max_ctx) */
  TPD_ERR_VERSION,     /* an option struct of another size or version than this library's */
  TPD_ERR_STATE,       /* a call this engine cannot take in its role or state (a follower's
                        * step, a step after shutdown, any call on an unusable engine) */
  TPD_ERR_CANCELLED    /* a request cancelled by its caller (scheduler) */
} tpd_status;

const char *tpd_status_name(tpd_status s);

/* Records a failure (message formatted printf-style; the location is kept
 * apart, see tpd_last_error_loc), replacing the previous one, and returns
 * `code`.  An argument may be tpd_last_error() itself. */
tpd_status tpd_fail_at(tpd_status code, const char *file, int line,
                       const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *tpd_last_error(void);      /* "" when there is none */
const char *tpd_last_error_loc(void);  /* "file:line" where it was recorded */
void tpd_clear_error(void);            /* callers only; see above */

/* A copy of this thread's message, for a fallback inside the library:
 *   tpd_error_state saved;  tpd_error_save(&saved);
 *   if (try_fast() != TPD_OK) { TPD_WARN(..., tpd_last_error()); tpd_error_restore(&saved); slow(); } */
#define TPD_ERROR_MSG_CAP 1024
#define TPD_ERROR_LOC_CAP 256
typedef struct {
  int has_error;
  char msg[TPD_ERROR_MSG_CAP];
  char loc[TPD_ERROR_LOC_CAP];
} tpd_error_state;
void tpd_error_save(tpd_error_state *st);
void tpd_error_restore(const tpd_error_state *st);

#define TPD_FAIL(code, ...) tpd_fail_at((code), __FILE__, __LINE__, __VA_ARGS__)

/* Propagate a failing status. */
#define TPD_TRY(expr)                   \
  do {                                  \
    tpd_status tpd_s_ = (expr);         \
    if (tpd_s_ != TPD_OK) return tpd_s_; \
  } while (0)

/* Propagate through a cleanup label: `st` must be a tpd_status lvalue. */
#define TPD_TRY_GOTO(expr, st, label) \
  do {                                \
    (st) = (expr);                    \
    if ((st) != TPD_OK) goto label;   \
  } while (0)

/* ---- logging: TPD_LOG=error|warn|info|debug (default warn) ---- */
typedef enum { TPD_LOG_ERROR = 0, TPD_LOG_WARN, TPD_LOG_INFO, TPD_LOG_DEBUG } tpd_log_level;
int tpd_log_enabled(tpd_log_level lvl);
void tpd_log_at(tpd_log_level lvl, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Where log lines go: one call per line, already formatted ("tpdecode[rank]
 * level: message (file:line)", no newline).  NULL restores the default,
 * stderr.  Set it before other threads use the library (it is a plain
 * global); the sink may be called from any thread that logs, so it must be
 * thread-safe itself. */
typedef void (*tpd_log_sink)(void *user, tpd_log_level lvl, const char *line);
void tpd_log_set_sink(tpd_log_sink sink, void *user);
/* The rank shown in log lines and device/comm error messages. */
void tpd_log_set_rank(int rank);
int tpd_log_rank(void);

#define TPD_WARN(...) tpd_log_at(TPD_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define TPD_INFO(...) \
  do { if (tpd_log_enabled(TPD_LOG_INFO)) tpd_log_at(TPD_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__); } while (0)
#define TPD_DEBUG(...) \
  do { if (tpd_log_enabled(TPD_LOG_DEBUG)) tpd_log_at(TPD_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__); } while (0)

/* ---- tunables: every one is read through this helper, named TPD_<name> ---- */
long tpd_param_int(const char *name, long dflt);
const char *tpd_param_str(const char *name, const char *dflt);
/* The checked reader: TPD_<name> must be a whole decimal integer in
 * [lo, hi]; *out = it, or dflt when the variable is unset or empty.
 * Anything else is TPD_ERR_ARG with one line naming the variable, its value
 * and the range, e.g. "TPD_CPU_PREFETCH=70000: need an integer in
 * [0, 65536] (bytes)"; `unit` (NULL: none) is the parenthesis.  *out is
 * left alone on a failure. */
tpd_status tpd_param_range(const char *name, long dflt, long lo, long hi, const char *unit, long *out);
/* Where a tunable is read by code that cannot return a status (a kernel's
 * knob, read on first use by a program that ran no create to check it):
 * call after its checked reader failed, with the message saved before the
 * read.  The failure becomes a warning, "<message>; using <instead>", and
 * the saved message is put back. */
void tpd_param_fallback_at(const tpd_error_state *saved, const char *instead, const char *file, int line);
#define tpd_param_fallback(saved, instead) tpd_param_fallback_at((saved), (instead), __FILE__, __LINE__)

#ifdef __cplusplus
}
#endif
#endif
