/* Loading tokenizer.json and tokenizer_config.json; the accessors.  The
 * pipeline lives in tokenizer_{bpe,text,pretok,encode,decode}.c
 * (tokenizer_internal.h lists them). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/fileio.h"
#include "runtime/model/tokenizer_internal.h"

/* one allocation per loaded tokenizer holds every token's text */
typedef struct {
  char *buf;
  size_t len, cap;
} arena;

static const char *arena_put(arena *a, const char *s, size_t n) {
  if (a->len + n + 1 > a->cap) return NULL; /* sized in advance */
  char *p = a->buf + a->len;
  memcpy(p, s, n);
  p[n] = 0;
  a->len += n + 1;
  return p;
}

typedef struct {
  tpd_tokenizer *t;
  arena text;
  tk_map added_map;
  const char *path;
} loader;

/* The tables by id (text, length, special) run to the largest id, so a
 * small file naming a huge id would take gigabytes: ids past this are
 * refused (the largest vocabularies in use hold about 256 K tokens). */
enum { TOK_MAX_ID = (1 << 24) - 1 };

static tpd_status get_id(const cJSON *v, const char *path, const char *what, int32_t *out) {
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > INT32_MAX - 1 ||
      v->valuedouble != floor(v->valuedouble))
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: %s must be a token id (a non-negative integer)", path, what);
  if (v->valuedouble > TOK_MAX_ID)
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: %s %.0f is past %d, the largest token id tpdecode takes", path, what,
                    v->valuedouble, (int)TOK_MAX_ID);
  *out = (int32_t)v->valuedouble;
  return TPD_OK;
}

static tpd_status load_model(loader *L, const cJSON *m) {
  tpd_tokenizer *t = L->t;
  const char *path = L->path;
  if (!cJSON_IsObject(m)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: missing field \"model\"", path);
  const cJSON *type = tk_item(m, "type");
  if (type && !cJSON_IsString(type)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: model.type must be a string", path);
  if (type && strcmp(type->valuestring, "BPE"))
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (BPE is)", path, type->valuestring);
  if (tk_item(m, "dropout"))
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: model.dropout is not supported (must be null)", path);
  static const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
  for (int i = 0; i < 2; i++) {
    const cJSON *v = tk_item(m, affixes[i]);
    if (v && !(cJSON_IsString(v) && v->valuestring[0] == 0))
      return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: model.%s is not supported (must be null)", path, affixes[i]);
  }
  char mp[600];
  snprintf(mp, sizeof mp, "%s: model", path);
  TPD_TRY(tk_get_bool(m, mp, "byte_fallback", 0, &t->byte_fallback));
  TPD_TRY(tk_get_bool(m, mp, "ignore_merges", 0, &t->ignore_merges));
  TPD_TRY(tk_get_bool(m, mp, "fuse_unk", 0, &t->fuse_unk));

  const cJSON *vocab = tk_item(m, "vocab"), *e;
  if (!vocab) return TPD_FAIL(TPD_ERR_FORMAT, "%s: missing field \"model.vocab\"", path);
  if (!cJSON_IsObject(vocab)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: model.vocab must be an object", path);
  int n = cJSON_GetArraySize(vocab);
  TPD_TRY(tk_map_init(&t->vocab, (size_t)n));
  cJSON_ArrayForEach(e, vocab) {
    int32_t id = 0;
    TPD_TRY(get_id(e, path, "a model.vocab value", &id));
    size_t len = strlen(e->string);
    const char *k = arena_put(&L->text, e->string, len);
    if (!k) return TPD_FAIL(TPD_ERR_INTERNAL, "tokenizer: text arena too small");
    TPD_TRY(tk_map_put(&t->vocab, k, len, id));
    if (id + 1 > t->n_tokens) t->n_tokens = id + 1;
  }

  const cJSON *merges = tk_item(m, "merges");
  if (!merges) return TPD_FAIL(TPD_ERR_FORMAT, "%s: missing field \"model.merges\"", path);
  if (!cJSON_IsArray(merges)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: model.merges must be an array", path);
  TPD_TRY(tk_merges_init(&t->merges, (size_t)cJSON_GetArraySize(merges)));
  int rank = 0;
  char *joined = NULL;
  size_t cap = 0;
  tpd_status st = TPD_OK;
  cJSON_ArrayForEach(e, merges) {
    const char *a, *b;
    size_t la, lb;
    if (cJSON_IsString(e)) { /* "a b" */
      const char *sp = strchr(e->valuestring, ' ');
      if (!sp || strchr(sp + 1, ' ')) {
        st = TPD_FAIL(TPD_ERR_FORMAT, "%s: model.merges[%d] \"%s\" is not two tokens separated by one space", path,
                      rank, e->valuestring);
        break;
      }
      a = e->valuestring;
      la = (size_t)(sp - a);
      b = sp + 1;
      lb = strlen(b);
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(e, 1))) { /* ["a", "b"] */
      a = cJSON_GetArrayItem(e, 0)->valuestring;
      b = cJSON_GetArrayItem(e, 1)->valuestring;
      la = strlen(a);
      lb = strlen(b);
    } else {
      st = TPD_FAIL(TPD_ERR_FORMAT, "%s: model.merges[%d] must be a string \"a b\" or a pair [\"a\", \"b\"]", path,
                    rank);
      break;
    }
    if (la + lb + 1 > cap) {
      cap = 2 * (la + lb + 1);
      char *j = realloc(joined, cap);
      if (!j) {
        st = TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
        break;
      }
      joined = j;
    }
    memcpy(joined, a, la);
    memcpy(joined + la, b, lb);
    int32_t ia = tk_map_get(&t->vocab, a, la), ib = tk_map_get(&t->vocab, b, lb);
    int32_t ij = tk_map_get(&t->vocab, joined, la + lb);
    if (ia < 0 || ib < 0 || ij < 0) {
      joined[la + lb] = 0;
      st = TPD_FAIL(TPD_ERR_FORMAT, "%s: model.merges[%d]: token \"%.*s\" is not in model.vocab", path, rank,
                    ia < 0 ? (int)la : ib < 0 ? (int)lb : (int)(la + lb), ia < 0 ? a : ib < 0 ? b : joined);
      break;
    }
    st = tk_merges_put(&t->merges, ia, ib, rank, ij);
    if (st != TPD_OK) break;
    rank++;
  }
  free(joined);
  TPD_TRY(st);

  t->unk_id = -1;
  const cJSON *unk = tk_item(m, "unk_token");
  if (unk) {
    if (!cJSON_IsString(unk)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: model.unk_token must be a string", path);
    t->unk_id = tk_map_get(&t->vocab, unk->valuestring, strlen(unk->valuestring));
    if (t->unk_id < 0) t->unk_id = -2; /* an error once a text needs it, as in tokenizers */
  }
  for (int b = 0; b < 256; b++) {
    char s[8];
    snprintf(s, sizeof s, "<0x%02X>", b);
    t->byte_id[b] = tk_map_get(&t->vocab, s, 6);
  }
  return TPD_OK;
}

static tpd_status load_added(loader *L, const cJSON *list) {
  tpd_tokenizer *t = L->t;
  if (!list) return TPD_OK;
  if (!cJSON_IsArray(list)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: added_tokens must be an array", L->path);
  int n = cJSON_GetArraySize(list), i = 0;
  int32_t max_added = -1;
  t->added = calloc((size_t)n + 1, sizeof *t->added);
  if (!t->added) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
  const cJSON *e;
  cJSON_ArrayForEach(e, list) {
    char p[600];
    snprintf(p, sizeof p, "%s: added_tokens[%d]", L->path, i++);
    if (!cJSON_IsObject(e)) return TPD_FAIL(TPD_ERR_FORMAT, "%s must be an object", p);
    tk_added a = {0};
    const char *content = NULL;
    int32_t json_id = 0;
    TPD_TRY(tk_get_str(e, p, "content", &content));
    TPD_TRY(get_id(tk_item(e, "id"), p, "id", &json_id));
    TPD_TRY(tk_get_bool(e, p, "special", 0, &a.special));
    TPD_TRY(tk_get_bool(e, p, "lstrip", 0, &a.lstrip));
    TPD_TRY(tk_get_bool(e, p, "rstrip", 0, &a.rstrip));
    TPD_TRY(tk_get_bool(e, p, "single_word", 0, &a.single_word));
    TPD_TRY(tk_get_bool(e, p, "normalized", !a.special, &a.normalized));
    if (!content[0]) continue; /* tokenizers ignores empty added tokens */
    a.len = strlen(content);
    /* the id tokenizers gives it: its own if the text is a token already,
     * else the next one after the vocabulary and the added tokens so far;
     * the file's id is only checked (tokenizers warns, and so do we) */
    int32_t id = tk_map_get(&L->added_map, content, a.len);
    if (id < 0) id = tk_map_get(&t->vocab, content, a.len);
    if (id < 0) {
      int32_t vs = (int32_t)t->vocab.n;
      id = max_added < 0 ? vs : (max_added >= vs || vs == 0) ? max_added + 1 : vs;
    }
    if (id != json_id)
      TPD_WARN("%s: added token \"%s\" has id %d in the file but %d as tokenizers reads it; using %d", p, content,
               (int)json_id, (int)id, (int)id);
    a.id = id;
    if (id > max_added) max_added = id;
    int k = 0;
    while (k < t->n_added && t->added[k].id != id) k++; /* a repeat replaces the earlier entry */
    if (k < t->n_added) {
      a.content = t->added[k].content;
    } else {
      a.content = (char *)arena_put(&L->text, content, a.len);
      if (!a.content) return TPD_FAIL(TPD_ERR_INTERNAL, "tokenizer: text arena too small");
      t->n_added++;
    }
    t->added[k] = a;
    TPD_TRY(tk_map_put(&L->added_map, a.content, a.len, id));
    if (id + 1 > t->n_tokens) t->n_tokens = id + 1;
  }
  return TPD_OK;
}

typedef struct {
  unsigned char first;
  size_t len;
  int idx;
} sort_key;
static int by_first_then_longest(const void *x, const void *y) {
  const sort_key *a = x, *b = y;
  if (a->first != b->first) return a->first < b->first ? -1 : 1;
  if (a->len != b->len) return a->len > b->len ? -1 : 1;
  return a->idx - b->idx;
}

/* the matching sets, the id -> text table, the special flags */
static tpd_status index_tokens(loader *L) {
  tpd_tokenizer *t = L->t;
  int need_word = 0;
  /* normalized tokens are matched in normalized text: normalize them too */
  if (t->n_added > 0) {
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    tk_pieces norm = {0};
    tpd_status st = md ? TPD_OK : TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
    for (int i = 0; i < t->n_added && st == TPD_OK; i++) {
      tk_added *a = &t->added[i];
      if (!a->normalized) continue;
      st = tk_normalize(t, md, a->content, a->len, &norm);
      if (st == TPD_OK && !(a->norm = malloc(norm.len + 1))) st = TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
      if (st == TPD_OK) {
        memcpy(a->norm, norm.buf, norm.len);
        a->norm[norm.len] = 0;
        a->norm_len = norm.len;
      }
    }
    pcre2_match_data_free(md);
    tk_pieces_free(&norm);
    TPD_TRY(st);
  }
  sort_key *keys = malloc(((size_t)t->n_added + 1) * sizeof *keys);
  if (!keys) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
  for (int s = 0; s < 2; s++) {
    t->order[s] = malloc(((size_t)t->n_added + 1) * sizeof(int));
    if (!t->order[s]) {
      free(keys);
      return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
    }
    int m = 0;
    for (int i = 0; i < t->n_added; i++) {
      const tk_added *a = &t->added[i];
      const char *text = s ? a->norm : a->content;
      size_t len = s ? a->norm_len : a->len;
      if (len > 0 && a->normalized == s) keys[m++] = (sort_key){(unsigned char)text[0], len, i};
    }
    qsort(keys, (size_t)m, sizeof *keys, by_first_then_longest);
    for (int i = 0; i < m; i++) t->order[s][i] = keys[i].idx;
    t->n_set[s] = m;
    int k = 0;
    for (int b = 0; b <= 256; b++) {
      while (k < m && keys[k].first < b) k++;
      t->first[s][b] = k;
    }
  }
  free(keys);
  t->id_text = calloc((size_t)t->n_tokens + 1, sizeof *t->id_text);
  t->id_len = calloc((size_t)t->n_tokens + 1, sizeof *t->id_len);
  t->is_special = calloc((size_t)t->n_tokens + 1, 1);
  if (!t->id_text || !t->id_len || !t->is_special) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
  for (size_t i = 0; i < t->vocab.cap; i++) {
    const tk_slot *s = &t->vocab.slots[i];
    if (s->key && !t->id_text[s->id]) {
      t->id_text[s->id] = (char *)s->key;
      t->id_len[s->id] = s->len;
    }
  }
  for (int i = 0; i < t->n_added; i++) { /* added tokens first, as tokenizers looks them up */
    /* a normalized token decodes as its normalized text (tokenizers 0.23's id_to_token) */
    const tk_added *a = &t->added[i];
    t->id_text[a->id] = a->norm ? a->norm : a->content;
    t->id_len[a->id] = (uint32_t)(a->norm ? a->norm_len : a->len);
    if (t->added[i].special) t->is_special[t->added[i].id] = 1;
    need_word |= t->added[i].single_word;
  }
  /* a word character as Rust's regex has \\w (tokenizers' single_word test) */
  if (need_word)
    TPD_TRY(tk_pattern_compile(&t->word_char, "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]", 0,
                               "single_word"));
  return TPD_OK;
}

/* ---- post-processor ---- */

static tpd_status push_id(int32_t **v, int *n, int32_t id) {
  int32_t *p = realloc(*v, (size_t)(*n + 1) * sizeof *p);
  if (!p) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
  p[(*n)++] = id;
  *v = p;
  return TPD_OK;
}

static tpd_status load_template(tpd_tokenizer *t, const cJSON *j, const char *path) {
  const cJSON *single = tk_item(j, "single"), *specials = tk_item(j, "special_tokens"), *e;
  if (!cJSON_IsArray(single)) return TPD_FAIL(TPD_ERR_FORMAT, "%s.single must be an array", path);
  int seen_a = 0;
  cJSON_ArrayForEach(e, single) {
    const cJSON *sp = tk_item(e, "SpecialToken"), *sq = tk_item(e, "Sequence");
    if (sq) {
      const cJSON *id = tk_item(sq, "id");
      if (seen_a || !cJSON_IsString(id) || strcmp(id->valuestring, "A"))
        return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s.single: only one Sequence \"A\" is supported", path);
      seen_a = 1;
      continue;
    }
    const cJSON *name = sp ? tk_item(sp, "id") : NULL;
    if (!name || !cJSON_IsString(name))
      return TPD_FAIL(TPD_ERR_FORMAT, "%s.single: items must be {\"SpecialToken\": {\"id\": ...}} or Sequence", path);
    const cJSON *def = specials ? tk_item(specials, name->valuestring) : NULL;
    const cJSON *ids = def ? tk_item(def, "ids") : NULL, *x;
    if (!cJSON_IsArray(ids))
      return TPD_FAIL(TPD_ERR_FORMAT, "%s.special_tokens: no ids for \"%s\"", path, name->valuestring);
    cJSON_ArrayForEach(x, ids) {
      int32_t id = 0;
      TPD_TRY(get_id(x, path, "special_tokens ids", &id));
      if (id >= tpd_tokenizer_n_tokens(t))
        return TPD_FAIL(TPD_ERR_FORMAT, "%s.special_tokens: \"%s\" has id %d, outside the vocabulary (%d tokens)", path,
                        name->valuestring, (int)id, tpd_tokenizer_n_tokens(t));
      if (seen_a) TPD_TRY(push_id(&t->post_ids, &t->n_post_ids, id));
      else TPD_TRY(push_id(&t->pre_ids, &t->n_pre_ids, id));
    }
  }
  if (!seen_a) return TPD_FAIL(TPD_ERR_FORMAT, "%s.single has no Sequence \"A\"", path);
  return TPD_OK;
}

static tpd_status load_post(tpd_tokenizer *t, const cJSON *j, const char *path, int *n_templates) {
  const char *type = NULL;
  if (!cJSON_IsObject(j)) return TPD_FAIL(TPD_ERR_FORMAT, "%s must be an object", path);
  TPD_TRY(tk_get_str(j, path, "type", &type));
  if (!strcmp(type, "ByteLevel")) return TPD_OK; /* offsets only: no effect on ids */
  if (!strcmp(type, "TemplateProcessing")) {
    if (++*n_templates > 1) return TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: a second TemplateProcessing", path);
    return load_template(t, j, path);
  }
  if (!strcmp(type, "Sequence")) {
    const cJSON *list = tk_item(j, "processors"), *e;
    if (!cJSON_IsArray(list)) return TPD_FAIL(TPD_ERR_FORMAT, "%s.processors must be an array", path);
    int i = 0;
    cJSON_ArrayForEach(e, list) {
      char p[600];
      snprintf(p, sizeof p, "%s.processors[%d]", path, i++);
      TPD_TRY(load_post(t, e, p, n_templates));
    }
    return TPD_OK;
  }
  return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                  "%s: post-processor type \"%s\" is not supported (TemplateProcessing, ByteLevel, Sequence are)", path,
                  type);
}

/* ---- tokenizer_config.json ---- */

/* "text" or {"content": "text"} or null */
static tpd_status config_token(const cJSON *cfg, const char *path, const char *key, char **out) {
  const cJSON *v = tk_item(cfg, key);
  if (!v) return TPD_OK;
  if (cJSON_IsObject(v)) v = tk_item(v, "content");
  if (!v || !cJSON_IsString(v))
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: %s must be a string or {\"content\": string}", path, key);
  *out = strdup(v->valuestring);
  return *out ? TPD_OK : TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
}

static tpd_status load_config(tpd_tokenizer *t, const cJSON *cfg, const char *path) {
  if (!cJSON_IsObject(cfg)) return TPD_FAIL(TPD_ERR_FORMAT, "%s: not a JSON object", path);
  TPD_TRY(config_token(cfg, path, "bos_token", &t->bos_text));
  TPD_TRY(config_token(cfg, path, "eos_token", &t->eos_text));
  const cJSON *ct = tk_item(cfg, "chat_template");
  if (ct && cJSON_IsString(ct)) {
    t->chat_template = strdup(ct->valuestring);
  } else if (ct && cJSON_IsArray(ct)) { /* [{"name": ..., "template": ...}]: the one named "default" */
    const cJSON *e;
    cJSON_ArrayForEach(e, ct) {
      const cJSON *name = tk_item(e, "name"), *tpl = tk_item(e, "template");
      if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(tpl))
        t->chat_template = strdup(tpl->valuestring);
    }
    if (!t->chat_template) return TPD_FAIL(TPD_ERR_FORMAT, "%s: chat_template list has no \"default\" entry", path);
  } else if (ct) {
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: chat_template must be a string or a list of {name, template}", path);
  }
  if (ct && !t->chat_template) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
  if (t->bos_text && (t->bos_id = tpd_tokenizer_token_id(t, t->bos_text)) < 0)
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: bos_token \"%s\" is not a token of the tokenizer", path, t->bos_text);
  if (t->eos_text && (t->eos_id = tpd_tokenizer_token_id(t, t->eos_text)) < 0)
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: eos_token \"%s\" is not a token of the tokenizer", path, t->eos_text);
  /* add_bos_token / add_eos_token, when present, decide the special tokens
   * of add_special in place of the post-processor (as transformers'
   * Llama tokenizers rebuild their post-processor from them) */
  const cJSON *ab = tk_item(cfg, "add_bos_token"), *ae = tk_item(cfg, "add_eos_token");
  if ((ab && !cJSON_IsBool(ab)) || (ae && !cJSON_IsBool(ae)))
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: add_bos_token / add_eos_token must be true or false", path);
  if (ab || ae) {
    t->n_pre_ids = t->n_post_ids = 0;
    if (ab && cJSON_IsTrue(ab)) {
      if (t->bos_id < 0)
        return TPD_FAIL(TPD_ERR_FORMAT, "%s: add_bos_token is true but bos_token %s%s%s is not a token", path,
                        t->bos_text ? "\"" : "", t->bos_text ? t->bos_text : "(absent)", t->bos_text ? "\"" : "");
      TPD_TRY(push_id(&t->pre_ids, &t->n_pre_ids, t->bos_id));
    }
    if (ae && cJSON_IsTrue(ae)) {
      if (t->eos_id < 0)
        return TPD_FAIL(TPD_ERR_FORMAT, "%s: add_eos_token is true but eos_token %s%s%s is not a token", path,
                        t->eos_text ? "\"" : "", t->eos_text ? t->eos_text : "(absent)", t->eos_text ? "\"" : "");
      TPD_TRY(push_id(&t->post_ids, &t->n_post_ids, t->eos_id));
    }
  }
  return TPD_OK;
}

static tpd_status parse_file(const char *path, cJSON **out) {
  char *text = NULL;
  size_t n = 0;
  TPD_TRY(tpd_read_text_file(path, &text, &n));
  cJSON *j = cJSON_ParseWithLength(text, n);
  if (!j) {
    const char *at = cJSON_GetErrorPtr();
    size_t off = at && at >= text && at <= text + n ? (size_t)(at - text) : n;
    free(text);
    return TPD_FAIL(TPD_ERR_FORMAT, "%s: malformed or truncated JSON near byte %zu of %zu", path, off, n);
  }
  free(text);
  *out = j;
  return TPD_OK;
}

/* total bytes of every key of vocab and every added token's content */
static size_t text_bytes(const cJSON *root) {
  size_t n = 0;
  const cJSON *e, *m = tk_item(root, "model"), *v = m ? tk_item(m, "vocab") : NULL, *a = tk_item(root, "added_tokens");
  if (cJSON_IsObject(v)) cJSON_ArrayForEach(e, v) n += strlen(e->string) + 1;
  if (cJSON_IsArray(a))
    cJSON_ArrayForEach(e, a) {
      const cJSON *c = tk_item(e, "content");
      if (cJSON_IsString(c)) n += strlen(c->valuestring) + 1;
    }
  return n + 1;
}

tpd_status tpd_tokenizer_load_files(const char *tokenizer_json, const char *config_json, tpd_tokenizer **out) {
  if (!tokenizer_json || !out) return TPD_FAIL(TPD_ERR_ARG, "tpd_tokenizer_load_files: NULL argument");
  *out = NULL;
  cJSON *root = NULL, *cfg = NULL;
  loader L = {0};
  L.path = tokenizer_json;
  tpd_status st = parse_file(tokenizer_json, &root);
  if (st != TPD_OK) return st;
  tpd_tokenizer *t = calloc(1, sizeof *t);
  if (!t) {
    cJSON_Delete(root);
    return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
  }
  t->bos_id = t->eos_id = -1;
  L.t = t;
  if (!cJSON_IsObject(root)) {
    st = TPD_FAIL(TPD_ERR_FORMAT, "%s: not a JSON object", tokenizer_json);
    goto done;
  }
  static const char *unsupported[] = {"truncation", "padding"};
  for (int i = 0; i < 2; i++)
    if (tk_item(root, unsupported[i])) {
      st = TPD_FAIL(TPD_ERR_UNSUPPORTED, "%s: \"%s\" is not supported (must be null)", tokenizer_json, unsupported[i]);
      goto done;
    }
  L.text.cap = text_bytes(root);
  L.text.buf = malloc(L.text.cap);
  t->text_arena = L.text.buf;
  if (!L.text.buf) {
    st = TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
    goto done;
  }
  char p[600];
  const cJSON *j;
  snprintf(p, sizeof p, "%s: normalizer", tokenizer_json);
  if ((j = tk_item(root, "normalizer"))) TPD_TRY_GOTO(tk_load_normalizer(t, j, p), st, done);
  snprintf(p, sizeof p, "%s: pre_tokenizer", tokenizer_json);
  if ((j = tk_item(root, "pre_tokenizer"))) TPD_TRY_GOTO(tk_load_pre_tokenizer(t, j, p), st, done);
  snprintf(p, sizeof p, "%s: decoder", tokenizer_json);
  if ((j = tk_item(root, "decoder"))) TPD_TRY_GOTO(tk_load_decoder(t, j, p), st, done);
  TPD_TRY_GOTO(tk_map_init(&L.added_map, 16), st, done);
  TPD_TRY_GOTO(load_model(&L, tk_item(root, "model")), st, done);
  TPD_TRY_GOTO(load_added(&L, tk_item(root, "added_tokens")), st, done);
  TPD_TRY_GOTO(index_tokens(&L), st, done);
  t->added_map = L.added_map;
  L.added_map = (tk_map){0};
  snprintf(p, sizeof p, "%s: post_processor", tokenizer_json);
  int n_templates = 0;
  if ((j = tk_item(root, "post_processor"))) TPD_TRY_GOTO(load_post(t, j, p, &n_templates), st, done);
  /* BOS / EOS from the post-processor's template unless the config names them */
  if (t->n_pre_ids > 0) t->bos_id = t->pre_ids[0];
  if (t->n_post_ids > 0) t->eos_id = t->post_ids[t->n_post_ids - 1];
  if (config_json) {
    TPD_TRY_GOTO(parse_file(config_json, &cfg), st, done);
    TPD_TRY_GOTO(load_config(t, cfg, config_json), st, done);
  }
done:
  cJSON_Delete(root);
  cJSON_Delete(cfg);
  tk_map_free(&L.added_map);
  if (st != TPD_OK) {
    tpd_tokenizer_free(t);
    return st;
  }
  *out = t;
  return TPD_OK;
}

tpd_status tpd_tokenizer_load(const char *dir, tpd_tokenizer **out) {
  if (!dir || !out) return TPD_FAIL(TPD_ERR_ARG, "tpd_tokenizer_load: NULL argument");
  size_t n = strlen(dir) + 32;
  char *tj = malloc(n), *cj = malloc(n);
  if (!tj || !cj) {
    free(tj);
    free(cj);
    return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory");
  }
  snprintf(tj, n, "%s/tokenizer.json", dir);
  snprintf(cj, n, "%s/tokenizer_config.json", dir);
  tpd_status st = tpd_tokenizer_load_files(tj, tpd_path_exists(cj) ? cj : NULL, out);
  /* transformers >= 4.43 may save the template on its own, as chat_template.jinja */
  snprintf(tj, n, "%s/chat_template.jinja", dir);
  if (st == TPD_OK && tpd_path_exists(tj)) {
    char *tpl = NULL;
    size_t len = 0;
    st = tpd_read_text_file(tj, &tpl, &len);
    if (st == TPD_OK && (*out)->chat_template && strcmp((*out)->chat_template, tpl))
      st = TPD_FAIL(TPD_ERR_FORMAT, "%s and tokenizer_config.json's chat_template differ; remove one", tj);
    if (st == TPD_OK && !(*out)->chat_template) {
      (*out)->chat_template = tpl;
      tpl = NULL;
    }
    free(tpl);
    if (st != TPD_OK) {
      tpd_tokenizer_free(*out);
      *out = NULL;
    }
  }
  free(tj);
  free(cj);
  return st;
}

void tpd_tokenizer_free(tpd_tokenizer *t) {
  if (!t) return;
  tk_map_free(&t->vocab);
  tk_map_free(&t->added_map);
  tk_merges_free(&t->merges);
  free(t->id_text);
  free(t->id_len);
  for (int i = 0; i < t->n_added; i++) free(t->added[i].norm);
  free(t->added);
  free(t->is_special);
  free(t->order[0]);
  free(t->order[1]);
  tk_pattern_free(&t->word_char);
  tk_free_stages(t);
  free(t->pre_ids);
  free(t->post_ids);
  free(t->chat_template);
  free(t->bos_text);
  free(t->eos_text);
  free(t->text_arena);
  free(t);
}

int tpd_tokenizer_n_tokens(const tpd_tokenizer *t) { return t ? t->n_tokens : 0; }
int32_t tpd_tokenizer_bos(const tpd_tokenizer *t) { return t ? t->bos_id : -1; }
int32_t tpd_tokenizer_eos(const tpd_tokenizer *t) { return t ? t->eos_id : -1; }
const char *tpd_tokenizer_chat_template(const tpd_tokenizer *t) { return t ? t->chat_template : NULL; }
const char *tpd_tokenizer_bos_text(const tpd_tokenizer *t) { return t ? t->bos_text : NULL; }
const char *tpd_tokenizer_eos_text(const tpd_tokenizer *t) { return t ? t->eos_text : NULL; }

int32_t tpd_tokenizer_token_id(const tpd_tokenizer *t, const char *token) {
  if (!t || !token) return -1;
  size_t n = strlen(token);
  int32_t id = tk_map_get(&t->added_map, token, n);
  return id >= 0 ? id : tk_map_get(&t->vocab, token, n);
}
