/* Status codes, the one error-reporting path, logging and tunables.
 *
 * Library code never exits: it returns a tpd_status and records one message
 * (the first failure wins; callers up the stack may add context with
 * TPD_TRACE).  Only launch/ programs print and exit. */
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
  TPD_ERR_INTERNAL
} tpd_status;

const char *tpd_status_name(tpd_status s);

/* Records a failure (message formatted printf-style, location appended) and
 * returns `code`.  Only the first failure after tpd_clear_error() is kept. */
tpd_status tpd_fail_at(tpd_status code, const char *file, int line,
                       const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *tpd_last_error(void);      /* "" when none */
const char *tpd_last_error_loc(void);  /* "file:line" of the first failure */
void tpd_clear_error(void);

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

#ifdef __cplusplus
}
#endif
#endif
