/* The tokenizer's text helpers: UTF-8, the byte-level alphabet, piece
 * lists and compiled patterns. */
#include <stdlib.h>
#include <string.h>

#include "runtime/model/tokenizer_internal.h"

/* ---- piece lists ---- */

tpd_status tk_pieces_text(tk_pieces *ps, const char *s, size_t n) {
  if (ps->len + n + 1 > ps->cap) {
    size_t cap = ps->cap ? ps->cap : 256;
    while (cap < ps->len + n + 1) cap *= 2;
    char *b = realloc(ps->buf, cap);
    if (!b) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory (%zu bytes of text)", cap);
    ps->buf = b;
    ps->cap = cap;
  }
  if (n) memcpy(ps->buf + ps->len, s, n);
  ps->len += n;
  ps->buf[ps->len] = 0;
  return TPD_OK;
}

tpd_status tk_pieces_add(tk_pieces *ps, size_t off, size_t len, int32_t id, int at_start) {
  /* a list with pieces always has a buffer, so buf + off is valid for empty pieces too */
  if (!ps->buf) TPD_TRY(tk_pieces_text(ps, "", 0));
  if (ps->n == ps->cap_p) {
    int cap = ps->cap_p ? 2 * ps->cap_p : 16;
    tk_piece *p = realloc(ps->p, (size_t)cap * sizeof *p);
    if (!p) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory (%d pieces)", cap);
    ps->p = p;
    ps->cap_p = cap;
  }
  ps->p[ps->n++] = (tk_piece){off, len, id, at_start};
  return TPD_OK;
}

tpd_status tk_pieces_push(tk_pieces *ps, const char *s, size_t n, int32_t id, int at_start) {
  size_t off = ps->len;
  TPD_TRY(tk_pieces_text(ps, s, n));
  return tk_pieces_add(ps, off, n, id, at_start);
}

void tk_pieces_clear(tk_pieces *ps) {
  ps->len = 0;
  ps->n = 0;
  if (ps->buf) ps->buf[0] = 0;
}

void tk_pieces_free(tk_pieces *ps) {
  free(ps->buf);
  free(ps->p);
  memset(ps, 0, sizeof *ps);
}

/* ---- UTF-8 ---- */

/* How many bytes at s[0..n) form a valid start of one character (the
 * "maximal subpart"), and how many the whole character needs (*need; 0 for
 * a byte that cannot start one). */
static int utf8_prefix(const unsigned char *s, size_t n, int *need) {
  unsigned char b = s[0];
  unsigned char lo = 0x80, hi = 0xBF;
  if (b < 0x80) {
    *need = 1;
    return 1;
  }
  if (b >= 0xC2 && b <= 0xDF) *need = 2;
  else if (b >= 0xE0 && b <= 0xEF) {
    *need = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    *need = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    *need = 0;
    return 1;
  }
  int k = 1;
  while (k < *need && (size_t)k < n) {
    unsigned char c = s[k];
    if (c < lo || c > hi) break;
    lo = 0x80;
    hi = 0xBF;
    k++;
  }
  return k;
}

int tk_utf8_len(const unsigned char *s, size_t n) {
  if (n == 0) return 0;
  int need, k = utf8_prefix(s, n, &need);
  return need && k == need ? need : 0;
}

size_t tk_utf8_check(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    if (u[i] < 0x80) {
      i++;
      continue;
    }
    int l = tk_utf8_len(u + i, n - i);
    if (!l) return i;
    i += (size_t)l;
  }
  return n;
}

uint32_t tk_utf8_decode(const unsigned char *s, int len) {
  switch (len) {
  case 1: return s[0];
  case 2: return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
  case 3: return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
  default:
    return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
           (s[3] & 0x3F);
  }
}

int tk_utf8_encode(uint32_t cp, char *out) {
  unsigned char *o = (unsigned char *)out;
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xC0 | cp >> 6);
    o[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xE0 | cp >> 12);
    o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (unsigned char)(0xF0 | cp >> 18);
  o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

int tk_is_whitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

tpd_status tk_pieces_lossy(tk_pieces *ps, const char *s, size_t n) {
  static const char fffd[] = "\xEF\xBF\xBD";
  if (n == 0) return tk_pieces_text(ps, "", 0); /* s may be NULL (an empty buffer): no arithmetic on it */
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, run = 0; /* valid bytes not yet appended start at run */
  while (i < n) {
    if (u[i] < 0x80) {
      i++;
      continue;
    }
    int need, k = utf8_prefix(u + i, n - i, &need);
    if (need && k == need) {
      i += (size_t)k;
      continue;
    }
    TPD_TRY(tk_pieces_text(ps, s + run, i - run));
    TPD_TRY(tk_pieces_text(ps, fffd, 3));
    i += (size_t)k;
    run = i;
  }
  return tk_pieces_text(ps, s + run, n - run);
}

/* ---- the byte-level alphabet: printable Latin-1 bytes stand for
 * themselves, the other 68 take the code points 256.. in byte order ---- */

static int printable_byte(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

uint32_t tk_byte_cp(unsigned char b) {
  if (printable_byte(b)) return b;
  if (b <= 32) return 256u + b;
  if (b <= 160) return 256u + 33u + (b - 127u);
  return 256u + 33u + 34u; /* 173 */
}

int tk_cp_byte(uint32_t cp) {
  if (cp < 256) return printable_byte(cp) ? (int)cp : -1;
  if (cp < 256 + 33) return (int)(cp - 256);
  if (cp < 256 + 33 + 34) return (int)(cp - 256 - 33 + 127);
  if (cp == 256 + 33 + 34) return 173;
  return -1;
}

/* ---- patterns ---- */

tpd_status tk_pattern_compile(tk_pattern *p, const char *pattern, int literal, const char *what) {
  int err;
  PCRE2_SIZE at;
  uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* LITERAL takes no UCP */
  p->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &err, &at, NULL);
  if (!p->re) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(err, msg, sizeof msg);
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: pattern does not compile at offset %zu: %s", what, (size_t)at,
                    (const char *)msg);
  }
  /* the JIT where this PCRE2 has it; the interpreter gives the same matches */
  p->jit = tpd_param_int("TOKENIZER_JIT", 1) != 0 && pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE) == 0;
  return TPD_OK;
}

void tk_pattern_free(tk_pattern *p) {
  if (p->re) pcre2_code_free(p->re);
  p->re = NULL;
}

tpd_status tk_pattern_each(const tk_pattern *p, pcre2_match_data *md, const char *s, size_t n, tk_match_fn fn,
                           void *user) {
  size_t at = 0;
  uint32_t opts = PCRE2_NO_UTF_CHECK | (p->jit ? 0 : PCRE2_NO_JIT);
  while (at <= n) {
    int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, at, opts, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[160];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return TPD_FAIL(TPD_ERR_INTERNAL, "tokenizer: pattern match failed: %s", (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t ms = ov[0], me = ov[1];
    if (me < ms) return TPD_FAIL(TPD_ERR_UNSUPPORTED, "tokenizer: patterns with \\K are not supported");
    TPD_TRY(fn(user, ms, me));
    if (me > ms) {
      at = me;
    } else { /* empty match: step over one character */
      if (me >= n) break;
      int l = tk_utf8_len((const unsigned char *)s + me, n - me);
      at = me + (size_t)(l ? l : 1);
    }
  }
  return TPD_OK;
}
