/* The tokenizer tpdecode-synth writes beside its random models: a byte-level
 * BPE in Llama 3's layout.  See tpd_synth_tokenizer in synth.h.
 *
 * Vocabulary, in id order:
 *   0, 3..257      the 256 bytes (byte 0 at id 0, byte b > 0 at id b + 2)
 *   1, 2           <|begin_of_text|>, <|end_of_text|>: added special tokens
 *                  at config.json's bos_token_id / eos_token_id, in the
 *                  model's vocabulary too (tokenizers gives an added token
 *                  that the model lacks the next free id, whatever its "id"
 *                  says; Llama 2's tokenizer.json has <s> and </s> the same way)
 *   258 ...        merges, learnt by counting pairs on a built-in corpus
 *                  (a short English text, common words, and pseudo-words
 *                  made of English syllables), at most MAX_MERGES
 *   ... V - 1      whole pseudo-words with no merge that makes them: with
 *                  ignore_merges (as Llama 3 sets it) a pre-token equal to
 *                  one is that token, else they are never produced
 * Everything depends only on V, so two models of one vocabulary size share
 * their tokenizer. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/tools/synth.h"

enum { N_BYTES = 256, N_SPECIAL = 2, MAX_MERGES = 12000 };

/* ---- growable text ---- */
typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const void *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (b->n + n + 1 > cap) cap *= 2;
    char *g = realloc(b->p, cap);
    if (!g) {
      b->oom = 1;
      return;
    }
    b->p = g, b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp) {
    b->oom = 1; /* only short fixed texts come here */
    return;
  }
  sb_put(b, tmp, (size_t)n);
}

/* A JSON string of ASCII or UTF-8 text. */
static void sb_json(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (; *s; s++) {
    const unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      sb_put(b, e, 2);
    } else if (c < 0x20) {
      sb_printf(b, "\\u%04x", c);
    } else {
      sb_put(b, s, 1);
    }
  }
  sb_put(b, "\"", 1);
}

/* ---- byte-level alphabet: each byte is one printable code point (GPT-2's
 * table: printable Latin-1 bytes are themselves, the others 256, 257, ...
 * in byte order) ---- */
static void byte_level_table(int cp[N_BYTES]) {
  int n = 0;
  for (int b = 0; b < N_BYTES; b++) {
    const int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    cp[b] = printable ? b : N_BYTES + n++;
  }
}

/* A token's bytes as a JSON string in the byte-level alphabet (table: byte_level_table). */
static void sb_json_bytes(sbuf *b, const int *table, const unsigned char *s, int len) {
  sb_put(b, "\"", 1);
  for (int i = 0; i < len; i++) {
    const int cp = table[s[i]];
    if (cp == '"' || cp == '\\') {
      char e[2] = {'\\', (char)cp};
      sb_put(b, e, 2);
    } else if (cp < 0x80) {
      char c = (char)cp;
      sb_put(b, &c, 1);
    } else { /* all code points are below 0x800 */
      char u[2] = {(char)(0xc0 | (cp >> 6)), (char)(0x80 | (cp & 0x3f))};
      sb_put(b, u, 2);
    }
  }
  sb_put(b, "\"", 1);
}

/* ---- strings -> index (tokens and training words) ---- */
typedef struct {
  sbuf arena;      /* the strings, back to back */
  size_t *off;     /* [n] */
  int *len;        /* [n] */
  int64_t *count;  /* [n] (training words) */
  int n, cap;
  int *slot;       /* open addressing: index + 1, 0 empty */
  size_t n_slots;
  int oom;
} strtab;

static uint64_t hash_bytes(const unsigned char *s, int len) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < len; i++) h = (h ^ s[i]) * 1099511628211ull;
  return h;
}

static const unsigned char *st_str(const strtab *t, int i) { return (const unsigned char *)t->arena.p + t->off[i]; }

static int st_find(const strtab *t, const unsigned char *s, int len) {
  if (!t->n_slots) return -1;
  for (size_t h = hash_bytes(s, len) & (t->n_slots - 1);; h = (h + 1) & (t->n_slots - 1)) {
    const int k = t->slot[h];
    if (!k) return -1;
    if (t->len[k - 1] == len && !memcmp(st_str(t, k - 1), s, (size_t)len)) return k - 1;
  }
}

static void st_place(strtab *t, int i) {
  size_t h = hash_bytes(st_str(t, i), t->len[i]) & (t->n_slots - 1);
  while (t->slot[h]) h = (h + 1) & (t->n_slots - 1);
  t->slot[h] = i + 1;
}

/* Adds s (not present: the caller checked) and returns its index, or -1 out of memory. */
static int st_add(strtab *t, const unsigned char *s, int len, int64_t count) {
  if (t->oom) return -1;
  if (t->n == t->cap) {
    const int cap = t->cap ? 2 * t->cap : 1024;
    size_t *o = realloc(t->off, sizeof *o * (size_t)cap);
    if (o) t->off = o;
    int *l = realloc(t->len, sizeof *l * (size_t)cap);
    if (l) t->len = l;
    int64_t *c = realloc(t->count, sizeof *c * (size_t)cap);
    if (c) t->count = c;
    if (!o || !l || !c) {
      t->oom = 1;
      return -1;
    }
    t->cap = cap;
  }
  if (2 * (size_t)(t->n + 1) > t->n_slots) {
    const size_t n_slots = t->n_slots ? 2 * t->n_slots : 2048;
    int *sl = calloc(n_slots, sizeof *sl);
    if (!sl) {
      t->oom = 1;
      return -1;
    }
    free(t->slot);
    t->slot = sl, t->n_slots = n_slots;
    for (int i = 0; i < t->n; i++) st_place(t, i);
  }
  const int i = t->n;
  t->off[i] = t->arena.n;
  t->len[i] = len;
  t->count[i] = count;
  sb_put(&t->arena, s, (size_t)len);
  if (t->arena.oom) {
    t->oom = 1;
    return -1;
  }
  t->n++;
  st_place(t, i);
  return i;
}

static void st_free(strtab *t) {
  free(t->arena.p);
  free(t->off);
  free(t->len);
  free(t->count);
  free(t->slot);
  memset(t, 0, sizeof *t);
}

/* ---- the corpus ---- */
static const char PROSE[] =
    "The river runs past the old mill and under the stone bridge, where the children wait for the boats to come "
    "home in the evening. In the spring of 1987 the town built a new school near the market; it has 12 rooms, a "
    "small library and a garden that the students look after themselves. Most people here work on the farms or "
    "in the shops along the main street. When the weather is good they walk up to the hills after dinner, and when "
    "it rains they stay inside, read, cook and talk about the news of the day.\n"
    "Nobody knows who planted the first apple trees, but every family has a story about them. \"My grandmother "
    "said it was a sailor,\" one of the teachers told us, \"and he never came back for the fruit.\" Whatever the "
    "truth is, the trees are still there, and in September the whole valley smells of apples.\n"
    "A letter takes three days to reach the city; a phone call takes a moment. Still, many of the older people "
    "prefer to write. They say that a letter can be read again, kept in a drawer, and found years later by "
    "someone who wasn't even born when it was written. I'll admit they're right about that.\n"
    "Questions for the reader: What would you keep? What would you give away? How many of your own stories "
    "have you written down, and how many have you only told?\n";

/* common words, most common first */
static const char *const COMMON[] = {
    "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "with", "as",
    "I", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "not", "word", "but", "what",
    "some", "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your", "how", "said", "an",
    "each", "she", "which", "do", "their", "time", "if", "will", "way", "about", "many", "then", "them", "write",
    "would", "like", "so", "these", "her", "long", "make", "thing", "see", "him", "two", "has", "look", "more",
    "day", "could", "go", "come", "did", "number", "sound", "no", "most", "people", "my", "over", "know", "water",
    "than", "call", "first", "who", "may", "down", "side", "been", "now", "find", "any", "new", "work", "part",
    "take", "get", "place", "made", "live", "where", "after", "back", "little", "only", "round", "man", "year",
    "came", "show", "every", "good", "me", "give", "our", "under", "name", "very", "through", "just", "form",
    "sentence", "great", "think", "say", "help", "low", "line", "differ", "turn", "cause", "much", "mean",
    "before", "move", "right", "boy", "old", "too", "same", "tell", "does", "set", "three", "want", "air", "well",
    "also", "play", "small", "end", "put", "home", "read", "hand", "port", "large", "spell", "add", "even",
    "land", "here", "must", "big", "high", "such", "follow", "act", "why", "ask", "men", "change", "went",
    "light", "kind", "off", "need", "house", "picture", "try", "us", "again", "animal", "point", "mother",
    "world", "near", "build", "self", "earth", "father", "head", "stand", "own", "page", "should", "country",
    "found", "answer", "school", "grow", "study", "still", "learn", "plant", "cover", "food", "sun", "four",
    "between", "state", "keep", "eye", "never", "last", "let", "thought", "city", "tree", "cross", "farm",
    "hard", "start", "might", "story", "saw", "far", "sea", "draw", "left", "late", "run", "while", "press",
    "close", "night", "real", "life", "few", "north"};

/* English-like syllables, most common first */
static const char *const SYL[] = {
    "er", "in", "re", "an", "on", "en", "at", "or", "es", "ti", "ing", "ed", "al", "ar", "le", "is", "ter", "con",
    "de", "ly", "ion", "ent", "com", "pro", "ver", "per", "ment", "un", "ex", "ble", "tion", "ous", "ful", "ness",
    "be", "ca", "co", "di", "fa", "ga", "ha", "la", "li", "lo", "ma", "me", "mi", "mo", "na", "ne", "no", "pa",
    "pe", "pi", "po", "ra", "ri", "ro", "sa", "se", "si", "so", "ta", "te", "to", "tu", "va", "vi", "wa", "wi",
    "bor", "car", "cen", "dan", "der", "fer", "gen", "hap", "ist", "ive", "land", "less", "man", "mar", "mon",
    "nor", "par", "por", "ran", "sen", "ser", "sta", "ste", "sto", "tra", "ton", "ward", "win", "ya", "zo", "cal",
    "cor", "den", "dis", "est", "for", "ic", "il", "im", "ish", "ki", "lan", "men", "min", "mis", "nal", "nes",
    "ple", "pre", "ral", "ric", "sion", "sub", "ture", "vel", "ven", "bra", "cra", "dre", "fla", "gro", "pla",
    "qua", "scri", "shi", "spo", "thra", "whe"};
enum { N_COMMON = sizeof COMMON / sizeof *COMMON, N_SYL = sizeof SYL / sizeof *SYL };

static uint64_t rng_next(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* An index in [0, n), the first ones more likely. */
static int rng_skewed(uint64_t *state, int n) {
  const double u = (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
  const int i = (int)(n * u * u);
  return i < n ? i : n - 1;
}

/* " " + n_syl syllables (capitalised when cap) into out (at least 64 bytes); returns the length. */
static int pseudo_word(uint64_t *state, int n_syl, int cap, char *out) {
  int n = 0;
  out[n++] = ' ';
  for (int i = 0; i < n_syl; i++) {
    const char *s = SYL[rng_skewed(state, N_SYL)];
    const size_t l = strlen(s);
    memcpy(out + n, s, l);
    n += (int)l;
  }
  if (cap) out[1] = (char)toupper((unsigned char)out[1]);
  out[n] = 0;
  return n;
}

static int add_word(strtab *w, const char *s, int len, int64_t count) {
  const int i = st_find(w, (const unsigned char *)s, len);
  if (i >= 0) {
    w->count[i] += count;
    return 0;
  }
  return st_add(w, (const unsigned char *)s, len, count) < 0 ? -1 : 0;
}

/* The end of the pre-token starting at s[i], roughly as Llama 3's pattern
 * splits ASCII text: contractions, an optional non-letter then letters,
 * up to 3 digits, an optional space then punctuation, whitespace. */
static size_t piece_end(const char *s, size_t i) {
  const unsigned char c = (unsigned char)s[i], d = (unsigned char)s[i + 1];
  if (c == '\'') {
    static const char *const CONTR[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    for (size_t k = 0; k < sizeof CONTR / sizeof *CONTR; k++) {
      const size_t l = strlen(CONTR[k]);
      if (!strncmp(s + i + 1, CONTR[k], l) && !isalpha((unsigned char)s[i + 1 + l])) return i + 1 + l;
    }
  }
  size_t j = i;
  if (isalpha(c) || (c != '\n' && c != '\r' && !isdigit(c) && isalpha(d))) {
    j = isalpha(c) ? i : i + 1;
    while (isalpha((unsigned char)s[j])) j++;
    return j;
  }
  if (isdigit(c)) {
    while (isdigit((unsigned char)s[j]) && j < i + 3) j++;
    return j;
  }
  if (c == ' ' && d && !isspace(d) && !isalnum(d)) j = i + 1;
  if (!isspace((unsigned char)s[j])) {
    while (s[j] && !isspace((unsigned char)s[j]) && !isalnum((unsigned char)s[j])) j++;
    while (s[j] == '\n' || s[j] == '\r') j++;
    return j;
  }
  while (isspace((unsigned char)s[j])) j++;
  if (s[j] && j - i > 1 && s[j - 1] == ' ') j--; /* the last space goes with the next word */
  return j;
}

static int build_corpus(strtab *w) {
  enum { PROSE_WEIGHT = 40, N_PSEUDO = 7000 };
  for (size_t i = 0; PROSE[i];) {
    const size_t e = piece_end(PROSE, i);
    if (add_word(w, PROSE + i, (int)(e - i), PROSE_WEIGHT) < 0) return -1;
    i = e;
  }
  char buf[80];
  for (int k = 0; k < N_COMMON; k++) {
    const int n = snprintf(buf, sizeof buf, " %s", COMMON[k]);
    if (add_word(w, buf, n, 1 + 4000 / (k + 4)) < 0) return -1;
    buf[1] = (char)toupper((unsigned char)buf[1]);
    if (add_word(w, buf + 1, n - 1, 1 + 400 / (k + 4)) < 0) return -1;
  }
  uint64_t state = 0x5eed7ab1e5ull;
  for (int k = 0; k < N_PSEUDO; k++) {
    const int n_syl = 2 + (int)(rng_next(&state) % 3);
    const int n = pseudo_word(&state, n_syl, rng_next(&state) % 8 == 0, buf);
    if (add_word(w, buf, n, 1 + 600 / (k + 6)) < 0) return -1;
  }
  return 0;
}

/* ---- pair counts with a lazy max-heap ---- */
typedef struct {
  uint64_t *key; /* (a << 32) | b */
  int64_t *count;
  unsigned char *used, *banned;
  size_t n, n_slots;
} pairmap;

typedef struct {
  int64_t count;
  uint64_t key;
} heap_item;

typedef struct {
  heap_item *v;
  size_t n, cap;
} heap;

static uint64_t mix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return k;
}

static int pm_grow(pairmap *m) {
  const size_t n_slots = m->n_slots ? 2 * m->n_slots : 1 << 16;
  pairmap g = {calloc(n_slots, sizeof(uint64_t)), calloc(n_slots, sizeof(int64_t)), calloc(n_slots, 1),
               calloc(n_slots, 1), m->n, n_slots};
  if (!g.key || !g.count || !g.used || !g.banned) {
    free(g.key), free(g.count), free(g.used), free(g.banned);
    return -1;
  }
  for (size_t i = 0; i < m->n_slots; i++) {
    if (!m->used[i]) continue;
    size_t h = mix64(m->key[i]) & (n_slots - 1);
    while (g.used[h]) h = (h + 1) & (n_slots - 1);
    g.used[h] = 1, g.key[h] = m->key[i], g.count[h] = m->count[i], g.banned[h] = m->banned[i];
  }
  free(m->key), free(m->count), free(m->used), free(m->banned);
  *m = g;
  return 0;
}

/* The slot of key, added (count 0) when missing; -1 out of memory. */
static long pm_slot(pairmap *m, uint64_t key) {
  if (2 * (m->n + 1) > m->n_slots && pm_grow(m) < 0) return -1;
  size_t h = mix64(key) & (m->n_slots - 1);
  while (m->used[h] && m->key[h] != key) h = (h + 1) & (m->n_slots - 1);
  if (!m->used[h]) m->used[h] = 1, m->key[h] = key, m->count[h] = 0, m->n++;
  return (long)h;
}

static int heap_before(const heap_item *a, const heap_item *b) {
  return a->count > b->count || (a->count == b->count && a->key < b->key);
}

static int heap_push(heap *h, int64_t count, uint64_t key) {
  if (h->n == h->cap) {
    const size_t cap = h->cap ? 2 * h->cap : 1 << 16;
    heap_item *g = realloc(h->v, sizeof *g * cap);
    if (!g) return -1;
    h->v = g, h->cap = cap;
  }
  size_t i = h->n++;
  h->v[i] = (heap_item){count, key};
  while (i > 0 && heap_before(&h->v[i], &h->v[(i - 1) / 2])) {
    const heap_item t = h->v[i];
    h->v[i] = h->v[(i - 1) / 2];
    h->v[(i - 1) / 2] = t;
    i = (i - 1) / 2;
  }
  return 0;
}

static heap_item heap_pop(heap *h) {
  const heap_item top = h->v[0];
  h->v[0] = h->v[--h->n];
  for (size_t i = 0;;) {
    size_t m = i;
    const size_t l = 2 * i + 1, r = l + 1;
    if (l < h->n && heap_before(&h->v[l], &h->v[m])) m = l;
    if (r < h->n && heap_before(&h->v[r], &h->v[m])) m = r;
    if (m == i) break;
    const heap_item t = h->v[i];
    h->v[i] = h->v[m];
    h->v[m] = t;
    i = m;
  }
  return top;
}

/* count(a, b) += delta, and the heap learns the new count. */
static int pair_add(pairmap *m, heap *h, int32_t a, int32_t b, int64_t delta) {
  const uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  const long s = pm_slot(m, key);
  if (s < 0) return -1;
  m->count[s] += delta;
  return m->count[s] > 0 && !m->banned[s] ? heap_push(h, m->count[s], key) : 0;
}

/* ---- training ---- */
typedef struct {
  int32_t **sym; /* [n_words][len] current symbols of each word */
  int *len;
  int n_words;
  int **words_of; /* [n_tokens] words a token has appeared in (may be stale) */
  int *n_of, *cap_of;
} corpus_syms;

static int note_word(corpus_syms *c, int32_t tok, int w) {
  if (c->n_of[tok] && c->words_of[tok][c->n_of[tok] - 1] == w) return 0;
  if (c->n_of[tok] == c->cap_of[tok]) {
    const int cap = c->cap_of[tok] ? 2 * c->cap_of[tok] : 8;
    int *g = realloc(c->words_of[tok], sizeof *g * (size_t)cap);
    if (!g) return -1;
    c->words_of[tok] = g, c->cap_of[tok] = cap;
  }
  c->words_of[tok][c->n_of[tok]++] = w;
  return 0;
}

/* Learns up to n_want merges into tok (which holds the 256 bytes); the
 * merges' parts go to left/right.  Returns the number learnt, -1 out of memory. */
static int learn_merges(const strtab *words, strtab *tok, int n_want, int32_t *left, int32_t *right) {
  const int max_tokens = N_BYTES + n_want;
  corpus_syms c = {0};
  pairmap pm = {0};
  heap hp = {0};
  int n_merges = -1;
  c.n_words = words->n;
  c.sym = calloc((size_t)words->n, sizeof *c.sym);
  c.len = calloc((size_t)words->n, sizeof *c.len);
  c.words_of = calloc((size_t)max_tokens, sizeof *c.words_of);
  c.n_of = calloc((size_t)max_tokens, sizeof *c.n_of);
  c.cap_of = calloc((size_t)max_tokens, sizeof *c.cap_of);
  unsigned char *cat = malloc(4096);
  if (!c.sym || !c.len || !c.words_of || !c.n_of || !c.cap_of || !cat) goto done;
  for (int w = 0; w < words->n; w++) {
    const unsigned char *s = st_str(words, w);
    c.len[w] = words->len[w];
    c.sym[w] = malloc(sizeof(int32_t) * (size_t)c.len[w]);
    if (!c.sym[w]) goto done;
    for (int i = 0; i < c.len[w]; i++) {
      c.sym[w][i] = s[i];
      if (note_word(&c, s[i], w) < 0) goto done;
      if (i > 0 && pair_add(&pm, &hp, s[i - 1], s[i], words->count[w]) < 0) goto done;
    }
  }
  int n = 0;
  while (n < n_want && hp.n > 0) {
    const heap_item it = heap_pop(&hp);
    const long s = pm_slot(&pm, it.key);
    if (s < 0) goto done;
    if (pm.banned[s] || pm.count[s] != it.count) continue; /* stale */
    const int32_t a = (int32_t)(it.key >> 32), b = (int32_t)(it.key & 0xffffffffu);
    const int la = tok->len[a], lb = tok->len[b];
    if (la + lb > 4096) {
      pm.banned[s] = 1;
      continue;
    }
    memcpy(cat, st_str(tok, a), (size_t)la);
    memcpy(cat + la, st_str(tok, b), (size_t)lb);
    if (st_find(tok, cat, la + lb) >= 0) { /* another pair makes that string already: keep one merge per token */
      pm.banned[s] = 1;
      continue;
    }
    const int32_t t = (int32_t)st_add(tok, cat, la + lb, 0);
    if (t < 0) goto done;
    left[n] = a, right[n] = b;
    n++;
    /* replace a b by t in the words that hold a (t's words are noted as they come) */
    const int n_scan = c.n_of[a];
    for (int k = 0; k < n_scan; k++) {
      const int w = c.words_of[a][k];
      int32_t *y = c.sym[w];
      const int64_t cnt = words->count[w];
      int len = c.len[w], o = 0;
      for (int i = 0; i < len;) {
        if (i + 1 < len && y[i] == a && y[i + 1] == b) {
          if (o > 0 && (pair_add(&pm, &hp, y[o - 1], a, -cnt) < 0 || pair_add(&pm, &hp, y[o - 1], t, cnt) < 0)) goto done;
          if (i + 2 < len && (pair_add(&pm, &hp, b, y[i + 2], -cnt) < 0 || pair_add(&pm, &hp, t, y[i + 2], cnt) < 0))
            goto done;
          if (pair_add(&pm, &hp, a, b, -cnt) < 0 || note_word(&c, t, w) < 0) goto done;
          y[o++] = t;
          i += 2;
        } else {
          y[o++] = y[i++];
        }
      }
      c.len[w] = o;
    }
  }
  n_merges = n;
done:
  if (c.sym)
    for (int w = 0; w < c.n_words; w++) free(c.sym[w]);
  if (c.words_of)
    for (int t = 0; t < max_tokens; t++) free(c.words_of[t]);
  free(c.sym), free(c.len), free(c.words_of), free(c.n_of), free(c.cap_of), free(cat);
  free(pm.key), free(pm.count), free(pm.used), free(pm.banned);
  free(hp.v);
  return n_merges;
}

/* Whole pseudo-words after the merges until tok holds n_total tokens. */
static int pad_words(strtab *tok, int n_total) {
  uint64_t state = 0x9added0c0ffeeull;
  char buf[80];
  long misses = 0;
  int k = 0;
  while (tok->n < n_total) {
    int n;
    if (misses < 1000000) {
      n = pseudo_word(&state, 3 + (int)(rng_next(&state) % 3), rng_next(&state) % 4 == 0, buf);
    } else { /* not expected: the syllables give millions of words */
      n = snprintf(buf, sizeof buf, "<unused_%d>", k++);
    }
    if (st_find(tok, (const unsigned char *)buf, n) >= 0) {
      misses++;
      continue;
    }
    if (st_add(tok, (const unsigned char *)buf, n, 0) < 0) return -1;
  }
  return 0;
}

/* Internal token index -> id: the specials take ids 1 and 2. */
static int out_id(int t) { return t < TPD_SYNTH_BOS_ID ? t : t + N_SPECIAL; }

static const char LLAMA3_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static void write_added(sbuf *b, int id, const char *content) {
  sb_printf(b, "    {\"id\": %d, \"content\": ", id);
  sb_json(b, content);
  sb_str(b, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}");
}

static void write_tokenizer_json(sbuf *b, const strtab *tok, int n_merges, const int32_t *left, const int32_t *right) {
  int cp[N_BYTES];
  byte_level_table(cp);
  sb_str(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [\n");
  write_added(b, TPD_SYNTH_BOS_ID, TPD_SYNTH_BOS_TEXT);
  sb_str(b, ",\n");
  write_added(b, TPD_SYNTH_EOS_ID, TPD_SYNTH_EOS_TEXT);
  sb_str(b, "\n  ],\n  \"normalizer\": null,\n");
  sb_str(b, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n"
            "    {\"type\": \"Split\", \"pattern\": {\"Regex\": ");
  sb_json(b, LLAMA3_PATTERN);
  sb_str(b, "}, \"behavior\": \"Isolated\", \"invert\": false},\n"
            "    {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},\n");
  sb_str(b, "  \"post_processor\": {\"type\": \"TemplateProcessing\",\n    \"single\": [{\"SpecialToken\": {\"id\": ");
  sb_json(b, TPD_SYNTH_BOS_TEXT);
  sb_str(b, ", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],\n    \"pair\": [{\"SpecialToken\": {\"id\": ");
  sb_json(b, TPD_SYNTH_BOS_TEXT);
  sb_str(b, ", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": ");
  sb_json(b, TPD_SYNTH_BOS_TEXT);
  sb_str(b, ", \"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}],\n    \"special_tokens\": {");
  sb_json(b, TPD_SYNTH_BOS_TEXT);
  sb_str(b, ": {\"id\": ");
  sb_json(b, TPD_SYNTH_BOS_TEXT);
  sb_printf(b, ", \"ids\": [%d], \"tokens\": [", TPD_SYNTH_BOS_ID);
  sb_json(b, TPD_SYNTH_BOS_TEXT);
  sb_str(b, "]}}},\n");
  sb_str(b, "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n");
  sb_str(b, "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null,\n"
            "    \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": true,\n"
            "    \"vocab\": {");
  for (int t = 0; t < tok->n; t++) {
    sb_str(b, t ? ",\n      " : "\n      ");
    sb_json_bytes(b, cp, st_str(tok, t), tok->len[t]);
    sb_printf(b, ": %d", out_id(t));
    if (t + 1 == TPD_SYNTH_BOS_ID) { /* the specials are in the model's vocabulary too, at their ids */
      sb_str(b, ",\n      ");
      sb_json(b, TPD_SYNTH_BOS_TEXT);
      sb_printf(b, ": %d,\n      ", TPD_SYNTH_BOS_ID);
      sb_json(b, TPD_SYNTH_EOS_TEXT);
      sb_printf(b, ": %d", TPD_SYNTH_EOS_ID);
    }
  }
  sb_str(b, "\n    },\n    \"merges\": [");
  for (int k = 0; k < n_merges; k++) {
    sb_str(b, k ? ",\n      [" : "\n      [");
    sb_json_bytes(b, cp, st_str(tok, left[k]), tok->len[left[k]]);
    sb_str(b, ", ");
    sb_json_bytes(b, cp, st_str(tok, right[k]), tok->len[right[k]]);
    sb_str(b, "]");
  }
  sb_str(b, "\n    ]\n  }\n}\n");
}

static char *config_text(int max_pos) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddBoolToObject(c, "add_bos_token", 1);
  cJSON_AddBoolToObject(c, "add_eos_token", 0);
  cJSON_AddStringToObject(c, "bos_token", TPD_SYNTH_BOS_TEXT);
  cJSON_AddStringToObject(c, "eos_token", TPD_SYNTH_EOS_TEXT);
  cJSON_AddBoolToObject(c, "clean_up_tokenization_spaces", 0);
  cJSON_AddNumberToObject(c, "model_max_length", max_pos);
  cJSON_AddStringToObject(c, "tokenizer_class", "PreTrainedTokenizerFast");
  char *text = cJSON_Print(c);
  cJSON_Delete(c);
  return text;
}

tpd_status tpd_synth_tokenizer(int vocab, int max_pos, tpd_synth_tokenizer_files *out) {
  memset(out, 0, sizeof *out);
  if (vocab < TPD_SYNTH_TOKENIZER_MIN_VOCAB)
    return TPD_FAIL(TPD_ERR_ARG, "synthetic tokenizer: vocab_size %d is below the %d ids of its bytes and special tokens",
                    vocab, TPD_SYNTH_TOKENIZER_MIN_VOCAB);
  strtab words = {0}, tok = {0};
  sbuf b = {0};
  const int n_model = vocab - N_SPECIAL; /* the tokens learnt or padded (all but the specials) */
  const int n_want = n_model - N_BYTES < MAX_MERGES ? n_model - N_BYTES : MAX_MERGES;
  int32_t *left = malloc(sizeof *left * (size_t)(n_want + 1)), *right = malloc(sizeof *right * (size_t)(n_want + 1));
  tpd_status st = TPD_OK;
  int ok = left && right && build_corpus(&words) == 0;
  for (int i = 0; ok && i < N_BYTES; i++) {
    const unsigned char c = (unsigned char)i;
    ok = st_add(&tok, &c, 1, 0) == i;
  }
  const int n_merges = ok ? learn_merges(&words, &tok, n_want, left, right) : -1;
  ok = n_merges >= 0 && pad_words(&tok, n_model) == 0;
  if (ok) write_tokenizer_json(&b, &tok, n_merges, left, right);
  if (ok && !b.oom) {
    out->tokenizer_json = b.p;
    out->tokenizer_len = b.n;
    out->config_json = config_text(max_pos);
    out->n_merges = n_merges;
    out->n_words = n_model - N_BYTES - n_merges;
    b.p = NULL;
  }
  if (!out->config_json) {
    free(out->tokenizer_json);
    memset(out, 0, sizeof *out);
    st = TPD_FAIL(TPD_ERR_OOM, "synthetic tokenizer: out of memory");
  }
  free(b.p);
  free(left);
  free(right);
  st_free(&words);
  st_free(&tok);
  return st;
}

void tpd_synth_tokenizer_free(tpd_synth_tokenizer_files *f) {
  free(f->tokenizer_json);
  free(f->config_json);
  memset(f, 0, sizeof *f);
}
