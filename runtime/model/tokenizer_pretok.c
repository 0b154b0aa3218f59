/* Normalizers, pre-tokenizers and the loading of decoders: each stage as
 * tokenizers 0.2x runs it, loaded from tokenizer.json.  A type or option
 * not implemented here is TPD_ERR_UNSUPPORTED naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model/tokenizer_internal.h"

/* the GPT-2 pattern ByteLevel uses with use_regex */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- JSON helpers ---- */

const cJSON *tk_item(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return v && !cJSON_IsNull(v) ? v : NULL;
}

tpd_status tk_get_bool(const cJSON *obj, const char *path, const char *key, int dflt, int *out) {
  const cJSON *v = tk_item(obj, key);
  if (!v) {
    *out = dflt;
    return TPD_OK;
  }
  if (!cJSON_IsBool(v)) return TPD_FAIL(TPD_ERR_FORMAT, "%s.%s must be true or false", path, key);
  *out = cJSON_IsTrue(v);
  return TPD_OK;
}

tpd_status tk_get_str(const cJSON *obj, const char *path, const char *key, const char **out) {
  const cJSON *v = tk_item(obj, key);
  if (!v) return TPD_FAIL(TPD_ERR_FORMAT, "%s: missing field \"%s\"", path, key);
  if (!cJSON_IsString(v)) return TPD_FAIL(TPD_ERR_FORMAT, "%s.%s must be a string", path, key);
  /* these strings go into the text that the regexes then match without a UTF check */
  const size_t n = strlen(v->valuestring), bad = tk_utf8_check(v->valuestring, n);
  if (bad < n) return TPD_FAIL(TPD_ERR_FORMAT, "%s.%s is not valid UTF-8 (byte %zu)", path, key, bad);
  *out = v->valuestring;
  return TPD_OK;
}

static tpd_status get_type(const cJSON *j, const char *path, const char **type) {
  if (!cJSON_IsObject(j)) return TPD_FAIL(TPD_ERR_FORMAT, "%s must be an object", path);
  return tk_get_str(j, path, "type", type);
}

/* {"String": s} or {"Regex": r} */
static tpd_status load_pattern(const cJSON *j, const char *path, tk_pattern *p) {
  const cJSON *pat = tk_item(j, "pattern");
  if (!pat || !cJSON_IsObject(pat)) return TPD_FAIL(TPD_ERR_FORMAT, "%s.pattern: missing or not an object", path);
  const cJSON *s = tk_item(pat, "String"), *r = tk_item(pat, "Regex");
  if (s && cJSON_IsString(s)) return tk_pattern_compile(p, s->valuestring, 1, path);
  if (r && cJSON_IsString(r)) return tk_pattern_compile(p, r->valuestring, 0, path);
  return TPD_FAIL(TPD_ERR_FORMAT, "%s.pattern must hold a \"String\" or a \"Regex\"", path);
}

/* one character, e.g. Metaspace's replacement */
static tpd_status get_char(const cJSON *j, const char *path, const char *key, char *out, int *len) {
  const char *s = NULL;
  TPD_TRY(tk_get_str(j, path, key, &s));
  size_t n = strlen(s);
  int l = tk_utf8_len((const unsigned char *)s, n);
  if (n == 0 || (size_t)l != n) return TPD_FAIL(TPD_ERR_FORMAT, "%s.%s must be one character", path, key);
  memcpy(out, s, n);
  *len = l;
  return TPD_OK;
}

/* prepend_scheme, or the older add_prefix_space */
static tpd_status get_prepend(const cJSON *j, const char *path, int *out) {
  const cJSON *ps = tk_item(j, "prepend_scheme");
  if (ps) {
    if (!cJSON_IsString(ps)) return TPD_FAIL(TPD_ERR_FORMAT, "%s.prepend_scheme must be a string", path);
    if (!strcmp(ps->valuestring, "always")) *out = TK_PREPEND_ALWAYS;
    else if (!strcmp(ps->valuestring, "first")) *out = TK_PREPEND_FIRST;
    else if (!strcmp(ps->valuestring, "never")) *out = TK_PREPEND_NEVER;
    else return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s.prepend_scheme \"%s\" is not supported", path, ps->valuestring);
    return TPD_OK;
  }
  int aps = 1;
  TPD_TRY(tk_get_bool(j, path, "add_prefix_space", 1, &aps));
  *out = aps ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
  return TPD_OK;
}

static tpd_status grow(void **arr, int n, size_t elem) {
  void *p = realloc(*arr, (size_t)(n + 1) * elem);
  if (!p) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
  *arr = p;
  memset((char *)p + (size_t)n * elem, 0, elem);
  return TPD_OK;
}

/* ---- loading ---- */

tpd_status tk_load_normalizer(tpd_tokenizer *t, const cJSON *j, const char *path) {
  const char *type = NULL;
  TPD_TRY(get_type(j, path, &type));
  if (!strcmp(type, "Sequence")) {
    const cJSON *list = tk_item(j, "normalizers"), *e;
    if (!cJSON_IsArray(list)) return TPD_FAIL(TPD_ERR_FORMAT, "%s.normalizers must be an array", path);
    int i = 0;
    cJSON_ArrayForEach(e, list) {
      char p[128];
      snprintf(p, sizeof p, "%s.normalizers[%d]", path, i++);
      TPD_TRY(tk_load_normalizer(t, e, p));
    }
    return TPD_OK;
  }
  if (strcmp(type, "Prepend") && strcmp(type, "Replace"))
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported (Prepend, Replace, Sequence are)",
                    path, type);
  TPD_TRY(grow((void **)&t->norm, t->n_norm, sizeof *t->norm));
  tk_norm *nm = &t->norm[t->n_norm++];
  const char *s = NULL;
  if (!strcmp(type, "Prepend")) {
    nm->kind = TK_NORM_PREPEND;
    TPD_TRY(tk_get_str(j, path, "prepend", &s));
  } else {
    nm->kind = TK_NORM_REPLACE;
    TPD_TRY(tk_get_str(j, path, "content", &s));
    TPD_TRY(load_pattern(j, path, &nm->pat));
  }
  nm->str = strdup(s);
  if (!nm->str) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
  return TPD_OK;
}

tpd_status tk_load_pre_tokenizer(tpd_tokenizer *t, const cJSON *j, const char *path) {
  const char *type = NULL;
  TPD_TRY(get_type(j, path, &type));
  if (!strcmp(type, "Sequence")) {
    const cJSON *list = tk_item(j, "pretokenizers"), *e;
    if (!cJSON_IsArray(list)) return TPD_FAIL(TPD_ERR_FORMAT, "%s.pretokenizers must be an array", path);
    int i = 0;
    cJSON_ArrayForEach(e, list) {
      char p[128];
      snprintf(p, sizeof p, "%s.pretokenizers[%d]", path, i++);
      TPD_TRY(tk_load_pre_tokenizer(t, e, p));
    }
    return TPD_OK;
  }
  if (strcmp(type, "ByteLevel") && strcmp(type, "Split") && strcmp(type, "Metaspace"))
    return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                    "%s: pre-tokenizer type \"%s\" is not supported (ByteLevel, Split, Metaspace, Sequence are)", path,
                    type);
  TPD_TRY(grow((void **)&t->pre, t->n_pre, sizeof *t->pre));
  tk_pre *p = &t->pre[t->n_pre++];
  if (!strcmp(type, "ByteLevel")) {
    p->kind = TK_PRE_BYTELEVEL;
    TPD_TRY(tk_get_bool(j, path, "add_prefix_space", 1, &p->add_prefix_space));
    TPD_TRY(tk_get_bool(j, path, "use_regex", 1, &p->use_regex));
    if (p->use_regex) TPD_TRY(tk_pattern_compile(&p->pat, gpt2_pattern, 0, path));
  } else if (!strcmp(type, "Split")) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *b = NULL;
    p->kind = TK_PRE_SPLIT;
    TPD_TRY(tk_get_str(j, path, "behavior", &b));
    p->behavior = -1;
    for (int i = 0; i < 5; i++)
      if (!strcmp(b, names[i])) p->behavior = i;
    if (p->behavior < 0) return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s.behavior \"%s\" is not supported", path, b);
    TPD_TRY(tk_get_bool(j, path, "invert", 0, &p->invert));
    TPD_TRY(load_pattern(j, path, &p->pat));
  } else {
    p->kind = TK_PRE_METASPACE;
    TPD_TRY(get_char(j, path, "replacement", p->repl, &p->repl_len));
    TPD_TRY(get_prepend(j, path, &p->prepend));
    TPD_TRY(tk_get_bool(j, path, "split", 1, &p->split));
  }
  return TPD_OK;
}

tpd_status tk_load_decoder(tpd_tokenizer *t, const cJSON *j, const char *path) {
  const char *type = NULL;
  TPD_TRY(get_type(j, path, &type));
  t->has_decoder = 1;
  if (!strcmp(type, "Sequence")) {
    const cJSON *list = tk_item(j, "decoders"), *e;
    if (!cJSON_IsArray(list)) return TPD_FAIL(TPD_ERR_FORMAT, "%s.decoders must be an array", path);
    int i = 0;
    cJSON_ArrayForEach(e, list) {
      char p[128];
      snprintf(p, sizeof p, "%s.decoders[%d]", path, i++);
      TPD_TRY(tk_load_decoder(t, e, p));
    }
    return TPD_OK;
  }
  static const char *names[] = {"ByteLevel", "Metaspace", "Replace", "ByteFallback", "Fuse", "Strip"};
  int kind = 0;
  for (int i = 0; i < 6; i++)
    if (!strcmp(type, names[i])) kind = i + 1;
  if (!kind)
    return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                    "%s: decoder type \"%s\" is not supported (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, "
                    "Strip, Sequence are)",
                    path, type);
  TPD_TRY(grow((void **)&t->dec, t->n_dec, sizeof *t->dec));
  tk_dec *d = &t->dec[t->n_dec++];
  d->kind = kind;
  if (kind == TK_DEC_BYTEFALLBACK) t->dec_byte_fallback = 1;
  if (kind == TK_DEC_METASPACE) {
    TPD_TRY(get_char(j, path, "replacement", d->repl, &d->repl_len));
    TPD_TRY(get_prepend(j, path, &d->prepend));
  } else if (kind == TK_DEC_REPLACE) {
    const char *s = NULL;
    TPD_TRY(tk_get_str(j, path, "content", &s));
    d->content = strdup(s);
    if (!d->content) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
    TPD_TRY(load_pattern(j, path, &d->pat));
  } else if (kind == TK_DEC_STRIP) {
    const cJSON *st = tk_item(j, "start"), *sp = tk_item(j, "stop");
    TPD_TRY(get_char(j, path, "content", d->repl, &d->repl_len));
    if (!cJSON_IsNumber(st) || !cJSON_IsNumber(sp) || st->valuedouble < 0 || sp->valuedouble < 0 ||
        st->valuedouble > 1e6 || sp->valuedouble > 1e6)
      return TPD_FAIL(TPD_ERR_FORMAT, "%s: start and stop must be counts", path);
    d->start = (int)st->valuedouble;
    d->stop = (int)sp->valuedouble;
  }
  return TPD_OK;
}

void tk_free_stages(tpd_tokenizer *t) {
  for (int i = 0; i < t->n_norm; i++) {
    free(t->norm[i].str);
    tk_pattern_free(&t->norm[i].pat);
  }
  for (int i = 0; i < t->n_pre; i++) tk_pattern_free(&t->pre[i].pat);
  for (int i = 0; i < t->n_dec; i++) {
    free(t->dec[i].content);
    tk_pattern_free(&t->dec[i].pat);
  }
  free(t->norm);
  free(t->pre);
  free(t->dec);
}

/* ---- running: pattern matches as a list of (start, end, is_match) covering the text ---- */

typedef struct {
  size_t start, end;
  int match;
} span;
typedef struct {
  span *v;
  int n, cap;
  size_t prev;
} spans;

static tpd_status span_add(spans *s, size_t a, size_t b, int match) {
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 32;
    span *v = realloc(s->v, (size_t)cap * sizeof *v);
    if (!v) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = (span){a, b, match};
  return TPD_OK;
}

static tpd_status on_match(void *user, size_t a, size_t b) {
  spans *s = user;
  if (a > s->prev) TPD_TRY(span_add(s, s->prev, a, 0));
  TPD_TRY(span_add(s, a, b, 1));
  s->prev = b;
  return TPD_OK;
}

static tpd_status find_spans(const tk_pattern *p, pcre2_match_data *md, const char *s, size_t n, spans *out) {
  out->n = 0;
  out->prev = 0;
  if (n == 0) return span_add(out, 0, 0, 0);
  TPD_TRY(tk_pattern_each(p, md, s, n, on_match, out));
  if (out->prev < n) TPD_TRY(span_add(out, out->prev, n, 0));
  return TPD_OK;
}

tpd_status tk_normalize(const tpd_tokenizer *t, pcre2_match_data *md, const char *s, size_t n, tk_pieces *out) {
  tk_pieces_clear(out);
  TPD_TRY(tk_pieces_text(out, s, n));
  tk_pieces tmp = {0};
  spans sp = {0};
  tpd_status st = TPD_OK;
  for (int i = 0; i < t->n_norm && st == TPD_OK; i++) {
    const tk_norm *nm = &t->norm[i];
    if (nm->kind == TK_NORM_PREPEND) {
      if (out->len == 0) continue;
      tk_pieces_clear(&tmp);
      st = tk_pieces_text(&tmp, nm->str, strlen(nm->str));
      if (st == TPD_OK) st = tk_pieces_text(&tmp, out->buf, out->len);
    } else {
      st = find_spans(&nm->pat, md, out->buf, out->len, &sp);
      tk_pieces_clear(&tmp);
      for (int k = 0; k < sp.n && st == TPD_OK; k++) {
        if (sp.v[k].match) st = tk_pieces_text(&tmp, nm->str, strlen(nm->str));
        else st = tk_pieces_text(&tmp, out->buf + sp.v[k].start, sp.v[k].end - sp.v[k].start);
      }
    }
    if (st == TPD_OK) {
      tk_pieces_clear(out);
      st = tk_pieces_text(out, tmp.buf, tmp.len);
    }
  }
  tk_pieces_free(&tmp);
  free(sp.v);
  return st;
}

/* Applies a split behavior to the spans (in place) and appends the
 * non-empty pieces. */
static tpd_status emit_split(spans *sp, int behavior, const char *s, int at_start, tk_pieces *out) {
  int m = 0;
  if (behavior == TK_SPLIT_MERGED_NEXT) {
    /* right to left: a match joins the piece after it */
    int prev_match = 0;
    for (int k = sp->n - 1; k >= 0; k--) {
      span c = sp->v[k];
      if (c.match && !prev_match && m > 0) sp->v[sp->n - m].start = c.start;
      else sp->v[sp->n - 1 - m++] = (span){c.start, c.end, 0};
      prev_match = c.match;
    }
    memmove(sp->v, sp->v + sp->n - m, (size_t)m * sizeof *sp->v);
  } else {
    int prev_match = 0;
    for (int k = 0; k < sp->n; k++) {
      span c = sp->v[k];
      int join = 0;
      if (behavior == TK_SPLIT_CONTIGUOUS) join = c.match == prev_match;
      else if (behavior == TK_SPLIT_MERGED_PREV) join = c.match && !prev_match;
      if (join && m > 0) sp->v[m - 1].end = c.end;
      else sp->v[m++] = (span){c.start, c.end, behavior == TK_SPLIT_REMOVED ? c.match : 0};
      prev_match = c.match;
    }
  }
  for (int k = 0; k < m; k++) {
    span c = sp->v[k];
    if (c.match || c.end == c.start) continue; /* removed, or empty */
    TPD_TRY(tk_pieces_push(out, s + c.start, c.end - c.start, -1, at_start && c.start == 0));
  }
  return TPD_OK;
}

/* One pre-tokenizer on one piece. */
static tpd_status pre_one(const tk_pre *p, pcre2_match_data *md, const char *s, size_t n, int at_start, tk_pieces *out,
                          tk_pieces *work, spans *sp) {
  if (p->kind == TK_PRE_SPLIT) {
    TPD_TRY(find_spans(&p->pat, md, s, n, sp));
    if (p->invert)
      for (int k = 0; k < sp->n; k++) sp->v[k].match = !sp->v[k].match;
    return emit_split(sp, p->behavior, s, at_start, out);
  }
  tk_pieces_clear(work);
  if (p->kind == TK_PRE_METASPACE) {
    /* tokenizers checks for the replacement after replacing spaces */
    int has = (n >= (size_t)p->repl_len && memcmp(s, p->repl, (size_t)p->repl_len) == 0) || s[0] == ' ';
    if (!has && (p->prepend == TK_PREPEND_ALWAYS || (p->prepend == TK_PREPEND_FIRST && at_start)))
      TPD_TRY(tk_pieces_text(work, p->repl, (size_t)p->repl_len));
    for (size_t i = 0; i < n; i++) {
      if (s[i] == ' ') TPD_TRY(tk_pieces_text(work, p->repl, (size_t)p->repl_len));
      else TPD_TRY(tk_pieces_text(work, s + i, 1));
    }
    if (!p->split) return tk_pieces_push(out, work->buf, work->len, -1, at_start);
    /* split before each replacement character (MergedWithNext) */
    size_t a = 0;
    for (size_t i = 0; i + (size_t)p->repl_len <= work->len; i++) {
      if (i > a && memcmp(work->buf + i, p->repl, (size_t)p->repl_len) == 0) {
        TPD_TRY(tk_pieces_push(out, work->buf + a, i - a, -1, at_start && a == 0));
        a = i;
      }
    }
    if (work->len > a) TPD_TRY(tk_pieces_push(out, work->buf + a, work->len - a, -1, at_start && a == 0));
    return TPD_OK;
  }
  /* ByteLevel: optional prefix space, the GPT-2 split, then bytes -> alphabet */
  if (p->add_prefix_space && (n == 0 || s[0] != ' ')) TPD_TRY(tk_pieces_text(work, " ", 1));
  TPD_TRY(tk_pieces_text(work, s, n));
  if (p->use_regex) {
    TPD_TRY(find_spans(&p->pat, md, work->buf, work->len, sp));
  } else {
    sp->n = 0;
    TPD_TRY(span_add(sp, 0, work->len, 0));
  }
  for (int k = 0; k < sp->n; k++) {
    span c = sp->v[k];
    if (c.end == c.start) continue;
    size_t off = out->len;
    for (size_t i = c.start; i < c.end; i++) {
      char u[4];
      int l = tk_utf8_encode(tk_byte_cp((unsigned char)work->buf[i]), u);
      TPD_TRY(tk_pieces_text(out, u, (size_t)l));
    }
    TPD_TRY(tk_pieces_add(out, off, out->len - off, -1, at_start && c.start == 0));
  }
  return TPD_OK;
}

tpd_status tk_pre_tokenize(const tpd_tokenizer *t, pcre2_match_data *md, const char *s, size_t n, int at_start,
                           tk_pieces *out) {
  if (n == 0) return TPD_OK;
  if (t->n_pre == 0) return tk_pieces_push(out, s, n, -1, at_start);
  tk_pieces a = {0}, b = {0}, work = {0};
  spans sp = {0};
  tpd_status st = tk_pieces_push(&a, s, n, -1, at_start);
  for (int i = 0; i < t->n_pre && st == TPD_OK; i++) {
    tk_pieces *dst = i == t->n_pre - 1 ? out : &b;
    if (dst == &b) tk_pieces_clear(&b);
    for (int k = 0; k < a.n && st == TPD_OK; k++)
      st = pre_one(&t->pre[i], md, a.buf + a.p[k].off, a.p[k].len, a.p[k].at_start, dst, &work, &sp);
    if (dst == &b) {
      tk_pieces x = a;
      a = b;
      b = x;
    }
  }
  tk_pieces_free(&a);
  tk_pieces_free(&b);
  tk_pieces_free(&work);
  free(sp.v);
  return st;
}
