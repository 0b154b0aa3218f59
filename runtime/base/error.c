#include "runtime/base/error.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_msg[TPD_ERROR_MSG_CAP];
static _Thread_local char g_loc[TPD_ERROR_LOC_CAP];
static _Thread_local int g_has_error;
static int g_rank = -1;

const char *tpd_status_name(tpd_status s) {
  switch (s) {
    case TPD_OK: return "ok";
    case TPD_ERR_ARG: return "invalid argument";
    case TPD_ERR_IO: return "I/O error";
    case TPD_ERR_FORMAT: return "malformed input";
    case TPD_ERR_UNSUPPORTED: return "unsupported";
    case TPD_ERR_OOM: return "out of memory";
    case TPD_ERR_DEVICE: return "device error";
    case TPD_ERR_COMM: return "communication error";
    case TPD_ERR_INTERNAL: return "internal error";
    case TPD_ERR_NO_SLOT: return "no free sequence slot";
    case TPD_ERR_KV_FULL: return "KV pool exhausted";
    case TPD_ERR_SLOT: return "slot not open";
    case TPD_ERR_TOKEN: return "token id out of range";
    case TPD_ERR_TOO_LONG: return "context exceeded";
    case TPD_ERR_VERSION: return "option struct size or version mismatch";
    case TPD_ERR_STATE: return "call not allowed in this state";
    case TPD_ERR_CANCELLED: return "cancelled";
  }
  return "unknown status";
}

static const char *base_name(const char *file) {
  /* keep "dir/file.c": enough to find it, short enough for one line */
  const char *last = strrchr(file, '/');
  if (!last) return file;
  const char *p = last;
  while (p > file && p[-1] != '/') p--;
  return p > file ? p : file;
}

tpd_status tpd_fail_at(tpd_status code, const char *file, int line, const char *fmt, ...) {
  /* format into a local buffer first: an argument may be tpd_last_error() */
  char msg[sizeof g_msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* one line whatever the input quoted in it holds: a newline or carriage
   * return becomes \n / \r, any other control character '?' */
  size_t o = 0;
  for (const char *p = msg; *p && o + 3 < sizeof g_msg; p++) {
    const unsigned char c = (unsigned char)*p;
    if (c == '\n' || c == '\r') {
      g_msg[o++] = '\\';
      g_msg[o++] = c == '\n' ? 'n' : 'r';
    } else {
      g_msg[o++] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
    }
  }
  g_msg[o] = 0;
  snprintf(g_loc, sizeof g_loc, "%s:%d", base_name(file), line);
  g_has_error = 1;
  TPD_DEBUG("failure recorded at %s:%d (%s): %s", base_name(file), line, tpd_status_name(code), g_msg);
  return code;
}

const char *tpd_last_error(void) { return g_has_error ? g_msg : ""; }
const char *tpd_last_error_loc(void) { return g_has_error ? g_loc : ""; }
void tpd_clear_error(void) {
  g_has_error = 0;
  g_msg[0] = 0;
  g_loc[0] = 0;
}

void tpd_error_save(tpd_error_state *st) {
  st->has_error = g_has_error;
  memcpy(st->msg, g_msg, sizeof st->msg);
  memcpy(st->loc, g_loc, sizeof st->loc);
}

void tpd_error_restore(const tpd_error_state *st) {
  g_has_error = st->has_error;
  memcpy(g_msg, st->msg, sizeof g_msg);
  memcpy(g_loc, st->loc, sizeof g_loc);
}

static int log_level(void) {
  static int level = -1;
  if (level < 0) {
    const char *s = getenv("TPD_LOG");
    level = TPD_LOG_WARN;
    if (s) {
      if (!strcmp(s, "error")) level = TPD_LOG_ERROR;
      else if (!strcmp(s, "warn")) level = TPD_LOG_WARN;
      else if (!strcmp(s, "info")) level = TPD_LOG_INFO;
      else if (!strcmp(s, "debug")) level = TPD_LOG_DEBUG;
    }
  }
  return level;
}

int tpd_log_enabled(tpd_log_level lvl) { return (int)lvl <= log_level(); }
void tpd_log_set_rank(int rank) { g_rank = rank; }
int tpd_log_rank(void) { return g_rank; }

static tpd_log_sink g_sink;
static void *g_sink_user;
void tpd_log_set_sink(tpd_log_sink sink, void *user) {
  g_sink = sink;
  g_sink_user = user;
}

void tpd_log_at(tpd_log_level lvl, const char *file, int line, const char *fmt, ...) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  if (!tpd_log_enabled(lvl)) return;
  char msg[1024], out[1400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (g_rank >= 0)
    snprintf(out, sizeof out, "tpdecode[%d] %s: %s (%s:%d)", g_rank, names[lvl], msg, base_name(file), line);
  else
    snprintf(out, sizeof out, "tpdecode %s: %s (%s:%d)", names[lvl], msg, base_name(file), line);
  if (g_sink)
    g_sink(g_sink_user, lvl, out);
  else
    fprintf(stderr, "%s\n", out);
}

long tpd_param_int(const char *name, long dflt) {
  char key[128];
  snprintf(key, sizeof key, "TPD_%s", name);
  const char *s = getenv(key);
  if (!s || !*s) return dflt;
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (*end) {
    TPD_WARN("ignoring %s=%s: not an integer", key, s);
    return dflt;
  }
  return v;
}

tpd_status tpd_param_range(const char *name, long dflt, long lo, long hi, const char *unit, long *out) {
  char key[128];
  snprintf(key, sizeof key, "TPD_%s", name);
  const char *s = getenv(key);
  if (!s || !*s) {
    *out = dflt;
    return TPD_OK;
  }
  /* strtol alone would take leading blanks, and a value past LONG_MAX as LONG_MAX */
  const char *digits = (s[0] == '-' || s[0] == '+') ? s + 1 : s;
  char *end = NULL;
  errno = 0;
  const long v = strtol(s, &end, 10);
  if (!isdigit((unsigned char)digits[0]) || *end || errno == ERANGE || v < lo || v > hi)
    return TPD_FAIL(TPD_ERR_ARG, "%s=%.64s: need an integer in [%ld, %ld]%s%s%s", key, s, lo, hi, unit ? " (" : "",
                    unit ? unit : "", unit ? ")" : "");
  *out = v;
  return TPD_OK;
}

void tpd_param_fallback_at(const tpd_error_state *saved, const char *instead, const char *file, int line) {
  tpd_log_at(TPD_LOG_WARN, file, line, "%s; using %s", tpd_last_error(), instead);
  tpd_error_restore(saved);
}

const char *tpd_param_str(const char *name, const char *dflt) {
  char key[128];
  snprintf(key, sizeof key, "TPD_%s", name);
  const char *s = getenv(key);
  return (s && *s) ? s : dflt;
}
