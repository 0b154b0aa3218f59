/* Decoding: ids -> token texts -> the decoder chain -> one string, and the
 * incremental decoder built on it. */
#include <stdlib.h>
#include <string.h>

#include "runtime/model/tokenizer_internal.h"

static const char fffd[] = "\xEF\xBF\xBD";

static tpd_status check_id(const tpd_tokenizer *t, int32_t id) {
  if (id < 0 || id >= t->n_tokens || !t->id_text[id])
    return TPD_FAIL(TPD_ERR_TOKEN, "tokenizer: token id %d is not in the tokenizer (%d tokens)", (int)id,
                    t->n_tokens);
  return TPD_OK;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* "<0xNN>" -> NN, else -1 */
static int byte_token(const char *s, size_t n) {
  if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
  int h = hexval(s[3]), l = hexval(s[4]);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

typedef struct {
  tk_pieces *out;
  const char *s;
  size_t done;
  const char *content;
} repl_ctx;

static tpd_status on_replace(void *user, size_t a, size_t b) {
  repl_ctx *c = user;
  TPD_TRY(tk_pieces_text(c->out, c->s + c->done, a - c->done));
  TPD_TRY(tk_pieces_text(c->out, c->content, strlen(c->content)));
  c->done = b;
  return TPD_OK;
}

/* One decoder: the tokens in `in` -> `out` (cleared first). */
static tpd_status decode_step(const tk_dec *d, pcre2_match_data *md, const tk_pieces *in, tk_pieces *out) {
  tk_pieces_clear(out);
  if (d->kind == TK_DEC_BYTELEVEL || d->kind == TK_DEC_FUSE) {
    tk_pieces raw = {0};
    tpd_status st = TPD_OK;
    for (int i = 0; i < in->n && st == TPD_OK; i++) {
      const unsigned char *s = (const unsigned char *)in->buf + in->p[i].off;
      size_t n = in->p[i].len, start = raw.len;
      if (d->kind == TK_DEC_FUSE) {
        st = tk_pieces_text(&raw, (const char *)s, n);
        continue;
      }
      /* every character in the alphabet: its bytes; otherwise the token as it is */
      for (size_t k = 0; k < n && st == TPD_OK;) {
        int l = tk_utf8_len(s + k, n - k);
        int b = l ? tk_cp_byte(tk_utf8_decode(s + k, l)) : -1;
        if (b < 0) {
          raw.len = start;
          st = tk_pieces_text(&raw, (const char *)s, n);
          break;
        }
        char c = (char)b;
        st = tk_pieces_text(&raw, &c, 1);
        k += (size_t)l;
      }
    }
    if (st == TPD_OK) {
      size_t off = out->len;
      if (d->kind == TK_DEC_FUSE) st = tk_pieces_text(out, raw.buf, raw.len);
      else st = tk_pieces_lossy(out, raw.buf, raw.len);
      if (st == TPD_OK) st = tk_pieces_add(out, off, out->len - off, -1, 0);
    }
    tk_pieces_free(&raw);
    return st;
  }
  if (d->kind == TK_DEC_BYTEFALLBACK) {
    tk_pieces bytes = {0};
    tpd_status st = TPD_OK;
    for (int i = 0; i <= in->n && st == TPD_OK; i++) {
      int b = i < in->n ? byte_token(in->buf + in->p[i].off, in->p[i].len) : -1;
      if (b >= 0) {
        char c = (char)b;
        st = tk_pieces_text(&bytes, &c, 1);
        continue;
      }
      if (bytes.len > 0) { /* valid UTF-8: one token; otherwise one U+FFFD per byte */
        if (tk_utf8_check(bytes.buf, bytes.len) == bytes.len) st = tk_pieces_push(out, bytes.buf, bytes.len, -1, 0);
        else
          for (size_t k = 0; k < bytes.len && st == TPD_OK; k++) st = tk_pieces_push(out, fffd, 3, -1, 0);
        tk_pieces_clear(&bytes);
      }
      if (i < in->n && st == TPD_OK) st = tk_pieces_push(out, in->buf + in->p[i].off, in->p[i].len, -1, 0);
    }
    tk_pieces_free(&bytes);
    return st;
  }
  for (int i = 0; i < in->n; i++) {
    const char *s = in->buf + in->p[i].off;
    size_t n = in->p[i].len, off = out->len, rl = (size_t)d->repl_len;
    if (d->kind == TK_DEC_METASPACE) {
      for (size_t k = 0; k < n;) {
        if (k + rl <= n && memcmp(s + k, d->repl, rl) == 0) {
          if (!(i == 0 && d->prepend != TK_PREPEND_NEVER)) TPD_TRY(tk_pieces_text(out, " ", 1));
          k += rl;
        } else {
          TPD_TRY(tk_pieces_text(out, s + k, 1));
          k++;
        }
      }
    } else if (d->kind == TK_DEC_REPLACE) {
      repl_ctx c = {out, s, 0, d->content};
      TPD_TRY(tk_pattern_each(&d->pat, md, s, n, on_replace, &c));
      TPD_TRY(tk_pieces_text(out, s + c.done, n - c.done));
    } else { /* Strip: up to start copies of the character in front, stop at the back */
      size_t a = 0, b = n;
      for (int k = 0; k < d->start && a + rl <= b && memcmp(s + a, d->repl, rl) == 0; k++) a += rl;
      for (int k = 0; k < d->stop && b >= a + rl && memcmp(s + b - rl, d->repl, rl) == 0; k++) b -= rl;
      TPD_TRY(tk_pieces_text(out, s + a, b - a));
    }
    TPD_TRY(tk_pieces_add(out, off, out->len - off, -1, 0));
  }
  return TPD_OK;
}

/* ids (checked) -> text in *text (malloc'd). a, b: scratch lists. */
tpd_status tk_decode_tokens(const tpd_tokenizer *t, const int32_t *ids, int n_ids, int skip_special, tk_pieces *a,
                            tk_pieces *b, char **text, size_t *len) {
  tk_pieces_clear(a);
  for (int i = 0; i < n_ids; i++) {
    TPD_TRY(check_id(t, ids[i]));
    if (skip_special && t->is_special[ids[i]]) continue;
    TPD_TRY(tk_pieces_push(a, t->id_text[ids[i]], t->id_len[ids[i]], -1, 0));
  }
  pcre2_match_data *md = NULL;
  tpd_status st = TPD_OK;
  for (int k = 0; k < t->n_dec && st == TPD_OK; k++) {
    if (t->dec[k].kind == TK_DEC_REPLACE && !md) {
      md = pcre2_match_data_create(1, NULL);
      if (!md) st = TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
    }
    if (st == TPD_OK) st = decode_step(&t->dec[k], md, a, b);
    tk_pieces x = *a;
    *a = *b;
    *b = x;
  }
  pcre2_match_data_free(md);
  if (st != TPD_OK) return st;
  /* join: with no decoder at all, tokenizers puts spaces between tokens */
  tk_pieces_clear(b);
  for (int i = 0; i < a->n; i++) {
    if (i > 0 && !t->has_decoder) TPD_TRY(tk_pieces_text(b, " ", 1));
    TPD_TRY(tk_pieces_text(b, a->buf + a->p[i].off, a->p[i].len));
  }
  char *s = malloc(b->len + 1);
  if (!s) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
  if (b->len) memcpy(s, b->buf, b->len);
  s[b->len] = 0;
  *text = s;
  *len = b->len;
  return TPD_OK;
}

tpd_status tpd_tokenizer_decode(const tpd_tokenizer *t, const int32_t *ids, int n_ids, int skip_special, char **text,
                                size_t *len) {
  if (!t || !text || (!ids && n_ids > 0) || n_ids < 0)
    return TPD_FAIL(TPD_ERR_ARG, "tpd_tokenizer_decode: NULL or negative argument");
  tk_pieces a = {0}, b = {0};
  size_t n;
  tpd_status st = tk_decode_tokens(t, ids, n_ids, skip_special, &a, &b, text, &n);
  if (st == TPD_OK && len) *len = n;
  tk_pieces_free(&a);
  tk_pieces_free(&b);
  return st;
}

/* ---- incremental ----
 * A window of ids from `prefix` decodes to text already given out up to
 * ids[read]; each push decodes the window again and gives out what follows
 * that text, unless it ends in U+FFFD (an incomplete character so far).
 * The window starts one emission back so that decoders that treat the
 * first token apart (Metaspace, Strip) see the new tokens in the middle. */
struct tpd_detok {
  const tpd_tokenizer *t;
  int skip_special;
  tk_ids ids;
  int prefix, read;
  char *piece;
  tk_pieces a, b;
};

tpd_status tpd_detok_create(const tpd_tokenizer *t, int skip_special, tpd_detok **out) {
  if (!t || !out) return TPD_FAIL(TPD_ERR_ARG, "tpd_detok_create: NULL argument");
  tpd_detok *d = calloc(1, sizeof *d);
  if (!d) return TPD_FAIL(TPD_ERR_OOM, "tpd_detok_create: out of memory");
  d->t = t;
  d->skip_special = skip_special;
  *out = d;
  return TPD_OK;
}

void tpd_detok_free(tpd_detok *d) {
  if (!d) return;
  free(d->ids.v);
  free(d->piece);
  tk_pieces_free(&d->a);
  tk_pieces_free(&d->b);
  free(d);
}

/* Gives out what the window adds after its first `read` ids; `final`: even
 * an incomplete character. */
static tpd_status detok_step(tpd_detok *d, int final, const char **piece, size_t *len) {
  char *old = NULL, *cur = NULL;
  size_t n_old, n_cur;
  *piece = "";
  *len = 0;
  free(d->piece);
  d->piece = NULL;
  /* a ByteFallback decoder reads a run of byte tokens as a whole (valid
   * UTF-8, or U+FFFD for every byte), so the next byte token may change
   * the text of the run so far: nothing comes out until the run ends */
  int32_t last = d->ids.v[d->ids.n - 1];
  if (!final && d->t->dec_byte_fallback && byte_token(d->t->id_text[last], d->t->id_len[last]) >= 0) return TPD_OK;
  TPD_TRY(tk_decode_tokens(d->t, d->ids.v + d->prefix, d->read - d->prefix, 0, &d->a, &d->b, &old, &n_old));
  tpd_status st = tk_decode_tokens(d->t, d->ids.v + d->prefix, d->ids.n - d->prefix, 0, &d->a, &d->b, &cur, &n_cur);
  if (st != TPD_OK) {
    free(old);
    return st;
  }
  int complete = n_cur > n_old && (final || n_cur < 3 || memcmp(cur + n_cur - 3, fffd, 3) != 0);
  if (complete && memcmp(cur, old, n_old) == 0) {
    memmove(cur, cur + n_old, n_cur - n_old);
    cur[n_cur - n_old] = 0;
    d->piece = cur;
    *piece = cur;
    *len = n_cur - n_old;
    cur = NULL;
    if (final) d->read = d->ids.n;
    else {
      d->prefix = d->read;
      d->read = d->ids.n;
    }
  } else if (final) {
    d->read = d->ids.n;
  }
  free(old);
  free(cur);
  return TPD_OK;
}

tpd_status tpd_detok_push(tpd_detok *d, int32_t id, const char **piece, size_t *len) {
  if (!d || !piece || !len) return TPD_FAIL(TPD_ERR_ARG, "tpd_detok_push: NULL argument");
  *piece = "";
  *len = 0;
  TPD_TRY(check_id(d->t, id));
  if (d->skip_special && d->t->is_special[id]) return TPD_OK; /* as decode: dropped before the decoders */
  TPD_TRY(tk_ids_push(&d->ids, id));
  return detok_step(d, 0, piece, len);
}

tpd_status tpd_detok_flush(tpd_detok *d, const char **piece, size_t *len) {
  if (!d || !piece || !len) return TPD_FAIL(TPD_ERR_ARG, "tpd_detok_flush: NULL argument");
  *piece = "";
  *len = 0;
  if (d->read == d->ids.n) return TPD_OK;
  return detok_step(d, 1, piece, len);
}
