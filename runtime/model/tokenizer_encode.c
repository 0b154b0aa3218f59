/* Encoding: added tokens found in the raw text (normalized false), then in
 * each normalized stretch between them (normalized true), pre-tokenizers,
 * the BPE model per piece, and the special tokens of add_special. */
#include <stdlib.h>
#include <string.h>

#include "runtime/model/tokenizer_internal.h"

typedef struct {
  size_t start, end;
  int32_t id; /* -1: text */
} seg;
typedef struct {
  seg *v;
  int n, cap;
} segs;

static tpd_status seg_add(segs *s, size_t a, size_t b, int32_t id) {
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 16;
    seg *v = realloc(s->v, (size_t)cap * sizeof *v);
    if (!v) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = (seg){a, b, id};
  return TPD_OK;
}

/* Is the character at s (len bytes) a word character (\w)? */
static int word_char(const tpd_tokenizer *t, pcre2_match_data *md, const char *s, size_t len) {
  uint32_t opts = PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED | (t->word_char.jit ? 0 : PCRE2_NO_JIT);
  return pcre2_match(t->word_char.re, (PCRE2_SPTR)s, len, 0, opts, md, NULL) >= 0;
}

static int last_char_len(const char *s, size_t n) {
  size_t i = n;
  while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
  return i > 0 ? (int)(n - i + 1) : 0;
}

/* The longest added token of set `set` at s[at..n), -1 when none. */
static int match_at(const tpd_tokenizer *t, int set, const char *s, size_t n, size_t at) {
  unsigned char b = (unsigned char)s[at];
  for (int k = t->first[set][b]; k < t->first[set][b + 1]; k++) {
    const tk_added *a = &t->added[t->order[set][k]];
    const char *text = set ? a->norm : a->content;
    size_t len = set ? a->norm_len : a->len;
    if (len <= n - at && memcmp(s + at, text, len) == 0) return t->order[set][k];
  }
  return -1;
}

/* Splits s[0..n) around the added tokens of `set` (leftmost-longest,
 * non-overlapping), applying lstrip / rstrip / single_word as tokenizers
 * does. */
static tpd_status find_added(const tpd_tokenizer *t, int set, pcre2_match_data *md, const char *s, size_t n,
                             segs *out) {
  out->n = 0;
  size_t done = 0, pos = 0;
  while (t->n_set[set] > 0 && pos < n) {
    int a = -1;
    size_t ms = pos;
    for (; ms < n; ms++)
      if (t->first[set][(unsigned char)s[ms]] < t->first[set][(unsigned char)s[ms] + 1] &&
          (a = match_at(t, set, s, n, ms)) >= 0)
        break;
    if (a < 0) break;
    const tk_added *tok = &t->added[a];
    size_t start = ms, stop = ms + (set ? tok->norm_len : tok->len);
    pos = stop;
    if (tok->single_word) {
      int lc = last_char_len(s, start);
      int before = start > 0 && word_char(t, md, s + start - lc, (size_t)lc);
      int after = stop < n && word_char(t, md, s + stop, (size_t)tk_utf8_len((const unsigned char *)s + stop, n - stop));
      if (before || after) continue;
    }
    if (tok->lstrip) {
      size_t ns = start;
      while (ns > 0) {
        int lc = last_char_len(s, ns);
        if (!tk_is_whitespace(tk_utf8_decode((const unsigned char *)s + ns - lc, lc))) break;
        ns -= (size_t)lc;
      }
      start = ns > done ? ns : done;
    }
    if (tok->rstrip) {
      while (stop < n) {
        int l = tk_utf8_len((const unsigned char *)s + stop, n - stop);
        if (!tk_is_whitespace(tk_utf8_decode((const unsigned char *)s + stop, l))) break;
        stop += (size_t)l;
      }
    }
    if (done < start) TPD_TRY(seg_add(out, done, start, -1));
    TPD_TRY(seg_add(out, start, stop, tok->id));
    done = stop;
  }
  if (done < n) TPD_TRY(seg_add(out, done, n, -1));
  return TPD_OK;
}

typedef struct {
  pcre2_match_data *md;
  segs raw, norm;
  tk_pieces text, words;
} enc_scratch;

/* One stretch of raw text between added tokens: normalize, find the
 * normalized added tokens, pre-tokenize, BPE. */
static tpd_status encode_text(const tpd_tokenizer *t, enc_scratch *w, const char *s, size_t n, int at_start,
                              tk_ids *ids) {
  TPD_TRY(tk_normalize(t, w->md, s, n, &w->text));
  TPD_TRY(find_added(t, 1, w->md, w->text.buf, w->text.len, &w->norm));
  for (int i = 0; i < w->norm.n; i++) {
    seg g = w->norm.v[i];
    if (g.end == g.start) continue;
    if (g.id >= 0) {
      TPD_TRY(tk_ids_push(ids, g.id));
      continue;
    }
    tk_pieces_clear(&w->words);
    TPD_TRY(tk_pre_tokenize(t, w->md, w->text.buf + g.start, g.end - g.start, at_start && g.start == 0, &w->words));
    for (int k = 0; k < w->words.n; k++)
      TPD_TRY(tk_bpe_word(t, w->words.buf + w->words.p[k].off, w->words.p[k].len, ids));
  }
  return TPD_OK;
}

tpd_status tpd_tokenizer_encode(const tpd_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                                int *n_ids) {
  if (!t || !ids || !n_ids || (!text && len)) return TPD_FAIL(TPD_ERR_ARG, "tpd_tokenizer_encode: NULL argument");
  *ids = NULL;
  *n_ids = 0;
  if (len > (size_t)1 << 30) return TPD_FAIL(TPD_ERR_ARG, "tpd_tokenizer_encode: text of %zu bytes is too long", len);
  size_t bad = tk_utf8_check(text, len);
  if (bad < len)
    return TPD_FAIL(TPD_ERR_ARG, "tpd_tokenizer_encode: text is not valid UTF-8 (byte 0x%02X at offset %zu)",
                    (unsigned char)text[bad], bad);
  enc_scratch w = {0};
  tk_ids out = {0};
  tpd_status st = TPD_OK;
  w.md = pcre2_match_data_create(1, NULL);
  if (!w.md) {
    st = TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
    goto done;
  }
  if (add_special)
    for (int i = 0; i < t->n_pre_ids; i++) TPD_TRY_GOTO(tk_ids_push(&out, t->pre_ids[i]), st, done);
  TPD_TRY_GOTO(find_added(t, 0, w.md, text, len, &w.raw), st, done);
  for (int i = 0; i < w.raw.n; i++) {
    seg g = w.raw.v[i];
    if (g.end == g.start) continue;
    if (g.id >= 0) TPD_TRY_GOTO(tk_ids_push(&out, g.id), st, done);
    else TPD_TRY_GOTO(encode_text(t, &w, text + g.start, g.end - g.start, g.start == 0, &out), st, done);
  }
  if (add_special)
    for (int i = 0; i < t->n_post_ids; i++) TPD_TRY_GOTO(tk_ids_push(&out, t->post_ids[i]), st, done);
  if (out.n == 0) { /* a valid empty result: still a malloc'd pointer */
    out.v = malloc(sizeof *out.v);
    if (!out.v) st = TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
  }
done:
  pcre2_match_data_free(w.md);
  free(w.raw.v);
  free(w.norm.v);
  tk_pieces_free(&w.text);
  tk_pieces_free(&w.words);
  if (st != TPD_OK) {
    free(out.v);
    return st;
  }
  *ids = out.v;
  *n_ids = out.n;
  return TPD_OK;
}
