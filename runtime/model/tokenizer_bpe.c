/* The BPE model: the vocabulary map, the merge map and the merge of one
 * word, lowest-ranked pair first (leftmost among equal ranks), over a
 * linked list of symbols with a binary heap of candidate pairs. */
#include <stdlib.h>
#include <string.h>

#include "runtime/model/tokenizer_internal.h"

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h ^ (h >> 29);
}

static size_t pow2_at_least(size_t n) {
  size_t c = 16;
  while (c < n) c *= 2;
  return c;
}

tpd_status tk_map_init(tk_map *m, size_t expect) {
  m->cap = pow2_at_least(expect * 2 + 1);
  m->n = 0;
  m->slots = calloc(m->cap, sizeof *m->slots);
  if (!m->slots) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory (map of %zu entries)", m->cap);
  return TPD_OK;
}

void tk_map_free(tk_map *m) {
  free(m->slots);
  memset(m, 0, sizeof *m);
}

static tpd_status map_grow(tk_map *m) {
  tk_map bigger;
  TPD_TRY(tk_map_init(&bigger, m->cap));
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].key) TPD_TRY(tk_map_put(&bigger, m->slots[i].key, m->slots[i].len, m->slots[i].id));
  free(m->slots);
  *m = bigger;
  return TPD_OK;
}

tpd_status tk_map_put(tk_map *m, const char *key, size_t len, int32_t id) {
  if ((m->n + 1) * 2 > m->cap) TPD_TRY(map_grow(m));
  size_t mask = m->cap - 1, i = hash_bytes(key, len) & mask;
  while (m->slots[i].key) {
    if (m->slots[i].len == len && memcmp(m->slots[i].key, key, len) == 0) {
      m->slots[i].id = id;
      return TPD_OK;
    }
    i = (i + 1) & mask;
  }
  m->slots[i] = (tk_slot){key, (uint32_t)len, id};
  m->n++;
  return TPD_OK;
}

int32_t tk_map_get(const tk_map *m, const char *key, size_t len) {
  if (!m->cap) return -1;
  size_t mask = m->cap - 1, i = hash_bytes(key, len) & mask;
  while (m->slots[i].key) {
    if (m->slots[i].len == len && memcmp(m->slots[i].key, key, len) == 0) return m->slots[i].id;
    i = (i + 1) & mask;
  }
  return -1;
}

/* ---- merges ---- */

static uint64_t pair_key(int32_t l, int32_t r) { return (uint64_t)(uint32_t)l << 32 | (uint32_t)r; }
static size_t pair_hash(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return (size_t)k;
}

tpd_status tk_merges_init(tk_merges *m, size_t expect) {
  m->cap = pow2_at_least(expect * 2 + 1);
  m->n = 0;
  m->slots = malloc(m->cap * sizeof *m->slots);
  if (!m->slots) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory (merge map of %zu entries)", m->cap);
  for (size_t i = 0; i < m->cap; i++) m->slots[i].key = UINT64_MAX;
  return TPD_OK;
}

void tk_merges_free(tk_merges *m) {
  free(m->slots);
  memset(m, 0, sizeof *m);
}

tpd_status tk_merges_put(tk_merges *m, int32_t left, int32_t right, int32_t rank, int32_t id) {
  if ((m->n + 1) * 2 > m->cap) {
    tk_merges bigger;
    TPD_TRY(tk_merges_init(&bigger, m->cap));
    for (size_t i = 0; i < m->cap; i++) {
      tk_merge *e = &m->slots[i];
      if (e->key != UINT64_MAX)
        TPD_TRY(tk_merges_put(&bigger, (int32_t)(e->key >> 32), (int32_t)(uint32_t)e->key, e->rank, e->id));
    }
    free(m->slots);
    *m = bigger;
  }
  uint64_t k = pair_key(left, right);
  size_t mask = m->cap - 1, i = pair_hash(k) & mask;
  while (m->slots[i].key != UINT64_MAX && m->slots[i].key != k) i = (i + 1) & mask;
  if (m->slots[i].key == UINT64_MAX) m->n++;
  m->slots[i] = (tk_merge){k, rank, id}; /* a repeated pair: the later line wins, as in tokenizers */
  return TPD_OK;
}

const tk_merge *tk_merges_get(const tk_merges *m, int32_t left, int32_t right) {
  if (!m->cap) return NULL;
  uint64_t k = pair_key(left, right);
  size_t mask = m->cap - 1, i = pair_hash(k) & mask;
  while (m->slots[i].key != UINT64_MAX) {
    if (m->slots[i].key == k) return &m->slots[i];
    i = (i + 1) & mask;
  }
  return NULL;
}

/* ---- one word ---- */

tpd_status tk_ids_push(tk_ids *ids, int32_t id) {
  if (ids->n == ids->cap) {
    int cap = ids->cap ? 2 * ids->cap : 64;
    int32_t *v = realloc(ids->v, (size_t)cap * sizeof *v);
    if (!v) return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory (%d ids)", cap);
    ids->v = v;
    ids->cap = cap;
  }
  ids->v[ids->n++] = id;
  return TPD_OK;
}

typedef struct {
  int32_t id;
  int prev, next; /* -1 at the ends */
  int alive;
} sym;
typedef struct {
  int32_t rank, id;
  int pos;
} cand;

static int cand_before(const cand *a, const cand *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }

static void heap_push(cand *h, int *n, cand c) {
  int i = (*n)++;
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!cand_before(&c, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = c;
}

static cand heap_pop(cand *h, int *n) {
  cand top = h[0], last = h[--(*n)];
  int i = 0;
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    const cand *best = &last;
    if (l < *n && cand_before(&h[l], best)) {
      m = l;
      best = &h[l];
    }
    if (r < *n && cand_before(&h[r], best)) m = r;
    if (m == i) break;
    h[i] = h[m];
    i = m;
  }
  if (*n > 0) h[i] = last;
  return top;
}

static void add_sym(sym *s, int *n, int32_t id) {
  s[*n] = (sym){id, *n - 1, -1, 1};
  if (*n > 0) s[*n - 1].next = *n;
  (*n)++;
}

static void push_pair(const tpd_tokenizer *t, const sym *s, int pos, cand *h, int *nh) {
  int nx = s[pos].next;
  if (nx < 0) return;
  const tk_merge *m = tk_merges_get(&t->merges, s[pos].id, s[nx].id);
  if (m) heap_push(h, nh, (cand){m->rank, m->id, pos});
}

tpd_status tk_bpe_word(const tpd_tokenizer *t, const char *w, size_t n, tk_ids *ids) {
  if (n == 0) return TPD_OK;
  if (t->ignore_merges) {
    int32_t id = tk_map_get(&t->vocab, w, n);
    if (id >= 0) return tk_ids_push(ids, id);
  }
  /* at most n symbols (bytes, with byte fallback); each merge adds at most two candidates */
  sym small_s[64];
  cand small_h[192];
  sym *s = small_s;
  cand *h = small_h;
  if (n > 64) {
    s = malloc(n * sizeof *s);
    h = malloc(3 * n * sizeof *h);
    if (!s || !h) {
      free(s);
      free(h);
      return TPD_FAIL(TPD_ERR_OOM, "tokenizer: out of memory (a word of %zu bytes)", n);
    }
  }
  tpd_status st = TPD_OK;
  int ns = 0, nh = 0;
  int32_t unk = -1; /* a pending unknown (fuse_unk joins consecutive ones) */
  const unsigned char *u = (const unsigned char *)w;
  for (size_t i = 0; i < n;) {
    int l = tk_utf8_len(u + i, n - i);
    if (!l) l = 1; /* cannot happen: the text was checked */
    int32_t id = tk_map_get(&t->vocab, w + i, (size_t)l);
    if (id >= 0) {
      if (unk >= 0) add_sym(s, &ns, unk);
      unk = -1;
      add_sym(s, &ns, id);
    } else {
      int all = t->byte_fallback;
      for (int k = 0; all && k < l; k++) all = t->byte_id[u[i + k]] >= 0;
      if (all) {
        /* as tokenizers does: a pending unknown stays pending */
        for (int k = 0; k < l; k++) add_sym(s, &ns, t->byte_id[u[i + k]]);
      } else if (t->unk_id >= 0) {
        if (unk >= 0 && !t->fuse_unk) add_sym(s, &ns, unk);
        unk = t->unk_id;
      } else if (t->unk_id == -2) {
        st = TPD_FAIL(TPD_ERR_FORMAT, "tokenizer.json: model.unk_token is not in the vocabulary");
        goto done;
      }
      /* no unk_token: the character is dropped, as in tokenizers */
    }
    i += (size_t)l;
  }
  if (unk >= 0) add_sym(s, &ns, unk);

  for (int i = 0; i + 1 < ns; i++) push_pair(t, s, i, h, &nh);
  while (nh > 0) {
    cand c = heap_pop(h, &nh);
    sym *a = &s[c.pos];
    if (!a->alive || a->next < 0) continue;
    sym *b = &s[a->next];
    const tk_merge *m = tk_merges_get(&t->merges, a->id, b->id);
    if (!m || m->id != c.id) continue; /* stale: one side merged since */
    a->id = c.id;
    b->alive = 0;
    a->next = b->next;
    if (b->next >= 0) s[b->next].prev = c.pos;
    if (a->prev >= 0) push_pair(t, s, a->prev, h, &nh);
    push_pair(t, s, c.pos, h, &nh);
  }
  for (int i = ns > 0 ? 0 : -1; i >= 0; i = s[i].next) {
    st = tk_ids_push(ids, s[i].id);
    if (st != TPD_OK) break;
  }
done:
  if (s != small_s) {
    free(s);
    free(h);
  }
  return st;
}
