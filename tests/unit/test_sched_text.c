/* The scheduler's text (test_sched.c runs this on engine 0, at TP 1, 2 and
 * 4): a byte-level BPE tokenizer.json written here for the model's
 * vocabulary (256 byte tokens, merges into ASCII words and into multi-byte
 * characters, and ones that cut a character, special tokens), loaded with
 * tpd_tokenizer_load, and the one tpdecode-synth wrote beside the model
 * (the stop strings only); then
 *   - bad stop strings and options, each its status and a one-line message
 *     naming the field;
 *   - a greedy request alone gives text pieces that are whole UTF-8
 *     characters and concatenate to tpd_tokenizer_decode of its ids;
 *   - a stop string cut out of that text, beginning inside one token and
 *     ending with a later one, finishes the same request (in a batch)
 *     with TPD_FINISH_STOP on the token that completes it, and the text
 *     reported is exactly the text before it; also when that token is the
 *     last of max_tokens; beside a stop string never produced;
 *   - the stop string with one more character, never produced: the
 *     request runs to max_tokens and reports the whole text, but held back
 *     the stop string's beginning while it could still complete;
 *   - skip_special: the text is tpd_tokenizer_decode with skip_special;
 *   - a tokenizer smaller than the model's vocabulary: a produced id
 *     beyond it finishes the request with TPD_ERR_TOKEN. */
#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "runtime/model/tokenizer.h"
#include "test_sched.h"

enum { TEXT_CAP = 4096, N_TRIES = 60 };

/* ---- the tokenizer.json ---- */

/* GPT-2's byte-level alphabet: the character that stands for byte b. */
static unsigned byte_char(unsigned b) {
  if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
  unsigned n = 0;
  for (unsigned x = 0; x < b; x++)
    if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) n++;
  return 256 + n;
}

/* The token text of a byte string: each byte's character, UTF-8 encoded. */
static void token_of(const char *bytes, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    const unsigned c = byte_char((unsigned char)bytes[i]);
    if (c < 0x80) out[o++] = (char)c;
    else out[o++] = (char)(0xC0 | (c >> 6)), out[o++] = (char)(0x80 | (c & 0x3F));
  }
  out[o] = 0;
}

/* The merges, as byte strings: left + right = a vocabulary token each. */
static const char *const MERGES[][2] = {
    {"t", "h"},     {"h", "e"},        {"i", "n"},         {"e", "r"},         {"a", "n"},     {" ", "t"},
    {" ", "a"},     {"r", "e"},        {"o", "n"},         {"a", "t"},         {"e", "n"},     {"n", "d"},
    {"th", "e"},    {" t", "he"},      {"in", "g"},        {"\xC3", "\xA9"},   {"\xC3", "\xB1"},
    {"\xE4", "\xB8"}, {"\xE4\xB8", "\xAD"}, {"\xF0", "\x9F"}, {"\x98", "\x80"}, {"\xF0\x9F", "\x98\x80"},
    {"\xE2", "\x82"}, {"\xE2\x82", "\xAC"}, {"a", "\xC3"},  {"\xA9", "b"},      {" ", "\xC3\xA9"},
    {"o", "r"},     {"e", "s"},        {"s", "t"},         {" ", " "},         {"\n", "\n"},   {"e", "d"},
    {"t", "o"},     {"i", "t"},        {"o", "u"},         {"i", "s"},         {"a", "r"},     {"a", "l"},
    {"l", "e"},     {"n", "g"}};
enum { N_MERGES = sizeof MERGES / sizeof MERGES[0] };
static const char *const SPECIALS[] = {"<|bos|>", "<|eos|>", "<|pad|>", "<|extra|>"};

/* DIR/tokenizer.json with 256 byte tokens, the first n_merges merges and
 * n_special special tokens after them. */
static void write_tokenizer(const char *dir, int n_merges, int n_special) {
  mkdir(dir, 0755);
  cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
  cJSON *merges = cJSON_CreateArray(), *added = cJSON_CreateArray();
  cJSON_AddStringToObject(root, "version", "1.0");
  cJSON_AddNullToObject(root, "truncation");
  cJSON_AddNullToObject(root, "padding");
  char a[64], b[64], ab[128];
  for (int i = 0; i < n_special; i++) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "id", 256 + n_merges + i);
    cJSON_AddStringToObject(t, "content", SPECIALS[i]);
    cJSON_AddBoolToObject(t, "single_word", 0);
    cJSON_AddBoolToObject(t, "lstrip", 0);
    cJSON_AddBoolToObject(t, "rstrip", 0);
    cJSON_AddBoolToObject(t, "normalized", 0);
    cJSON_AddBoolToObject(t, "special", 1);
    cJSON_AddItemToArray(added, t);
  }
  cJSON_AddItemToObject(root, "added_tokens", added);
  cJSON_AddNullToObject(root, "normalizer");
  cJSON *pre = cJSON_CreateObject(), *dec = cJSON_CreateObject();
  cJSON_AddStringToObject(pre, "type", "ByteLevel");
  cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
  cJSON_AddBoolToObject(pre, "trim_offsets", 1);
  cJSON_AddBoolToObject(pre, "use_regex", 1);
  cJSON_AddItemToObject(root, "pre_tokenizer", pre);
  cJSON_AddNullToObject(root, "post_processor");
  cJSON_AddStringToObject(dec, "type", "ByteLevel");
  cJSON_AddBoolToObject(dec, "add_prefix_space", 1);
  cJSON_AddBoolToObject(dec, "trim_offsets", 1);
  cJSON_AddBoolToObject(dec, "use_regex", 1);
  cJSON_AddItemToObject(root, "decoder", dec);
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddNullToObject(model, "dropout");
  cJSON_AddNullToObject(model, "unk_token");
  cJSON_AddNullToObject(model, "continuing_subword_prefix");
  cJSON_AddNullToObject(model, "end_of_word_suffix");
  cJSON_AddBoolToObject(model, "fuse_unk", 0);
  cJSON_AddBoolToObject(model, "byte_fallback", 0);
  cJSON_AddBoolToObject(model, "ignore_merges", 0);
  for (int i = 0; i < 256; i++) {
    const char c = (char)i;
    token_of(&c, 1, a);
    cJSON_AddNumberToObject(vocab, a, i);
  }
  for (int i = 0; i < n_merges; i++) {
    token_of(MERGES[i][0], strlen(MERGES[i][0]), a);
    token_of(MERGES[i][1], strlen(MERGES[i][1]), b);
    snprintf(ab, sizeof ab, "%s%s", a, b);
    CHECK(!cJSON_GetObjectItemCaseSensitive(vocab, ab), "merge %d repeats a token", i);
    cJSON_AddNumberToObject(vocab, ab, 256 + i);
    cJSON *m = cJSON_CreateArray();
    cJSON_AddItemToArray(m, cJSON_CreateString(a));
    cJSON_AddItemToArray(m, cJSON_CreateString(b));
    cJSON_AddItemToArray(merges, m);
  }
  cJSON_AddItemToObject(model, "vocab", vocab);
  cJSON_AddItemToObject(model, "merges", merges);
  cJSON_AddItemToObject(root, "model", model);
  char *text = cJSON_Print(root);
  char path[800];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  FILE *f = fopen(path, "wb");
  CHECK(f && text && fputs(text, f) >= 0, "cannot write %s", path);
  if (f) fclose(f);
  cJSON_free(text);
  cJSON_Delete(root);
}

static tpd_tokenizer *load_tokenizer(const char *dir, int want_tokens) {
  tpd_tokenizer *t = NULL;
  TU_TRY(tpd_tokenizer_load(dir, &t));
  CHECK(tpd_tokenizer_n_tokens(t) == want_tokens, "%s: %d tokens, want %d", dir, tpd_tokenizer_n_tokens(t),
        want_tokens);
  return t;
}

/* ---- a request with text, and what came back ---- */

/* 1 when s[0, n) is valid UTF-8 (written here, apart from the library's). */
static int valid_utf8(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    unsigned c = u[i], cp;
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || i + len > n) return 0;
    cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (size_t k = 1; k < len; k++) {
      if ((u[i + k] >> 6) != 2) return 0;
      cp = cp << 6 | (u[i + k] & 0x3F);
    }
    static const unsigned min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += len;
  }
  return 1;
}

typedef struct {
  int32_t prompt[MAX_PROMPT];
  int n_prompt, max_tokens, skip_special, n_stops;
  const char *stops[4];
  /* results */
  int32_t out[MAX_OUT];
  size_t text_at[MAX_OUT]; /* bytes of text reported up to and including token i's event */
  char text[TEXT_CAP];
  size_t text_len;
  int n_tokens, n_finish, n_bad;
  char bad[200]; /* the first bad event */
  tpd_finish_reason finish;
  tpd_status status;
  char message[300]; /* tpd_last_error() in a failed finishing event */
} xreq;

static void bad_event(xreq *t, const char *why) {
  if (!t->n_bad++) snprintf(t->bad, sizeof t->bad, "%s", why);
}

static void on_text_event(void *cb_user, const tpd_sched_event *ev) {
  (void)cb_user;
  xreq *t = ev->user;
  if (t->n_finish) bad_event(t, "an event after the finish");
  if (!ev->text || ev->text[ev->text_len] != 0) bad_event(t, "no text, or text not NUL-terminated");
  else if (!valid_utf8(ev->text, ev->text_len)) bad_event(t, "a piece that is not valid UTF-8");
  else if (t->text_len + ev->text_len >= TEXT_CAP) bad_event(t, "more text than the test holds");
  else memcpy(t->text + t->text_len, ev->text, ev->text_len), t->text_len += ev->text_len, t->text[t->text_len] = 0;
  if (ev->token >= 0) {
    if (t->n_tokens >= MAX_OUT || ev->index != t->n_tokens) bad_event(t, "a token out of order");
    else t->text_at[t->n_tokens] = t->text_len, t->out[t->n_tokens++] = ev->token;
  }
  if (ev->finish != TPD_FINISH_NONE) {
    t->n_finish++;
    t->finish = ev->finish;
    t->status = ev->status;
    if (ev->status != TPD_OK) snprintf(t->message, sizeof t->message, "%s", tpd_last_error());
  }
}

static tpd_sched *text_sched(tpd_engine *e, const tpd_tokenizer *tok) {
  tpd_sched_opts o;
  tpd_sched_opts_init(&o);
  o.max_step_tokens = BUDGET;
  o.callback = on_text_event;
  o.tokenizer = tok;
  tpd_sched *s = NULL;
  TU_TRY(tpd_sched_create(e, &o, &s));
  return s;
}

static tpd_status text_submit(tpd_sched *s, xreq *t) {
  tpd_request r;
  tpd_request_init(&r);
  r.prompt = t->prompt, r.n_prompt = t->n_prompt, r.max_tokens = t->max_tokens, r.ignore_eos = 1;
  r.stop_strings = t->stops, r.n_stop_strings = t->n_stops, r.skip_special = t->skip_special;
  r.user = t;
  t->text_len = 0, t->text[0] = 0;
  t->n_tokens = t->n_finish = t->n_bad = 0;
  t->finish = TPD_FINISH_NONE, t->status = TPD_OK, t->message[0] = 0;
  uint64_t id;
  return tpd_sched_submit(s, &r, &id);
}

/* Submits the n requests together and steps until all have finished. */
static void text_run(tpd_engine *e, const tpd_tokenizer *tok, xreq *t, int n) {
  tpd_sched *s = text_sched(e, tok);
  for (int k = 0; k < n; k++) CHECK_OK(text_submit(s, &t[k]));
  run_all(s);
  tpd_sched_destroy(s);
}

/* The text of ids[0, n): tpd_tokenizer_decode into buf. */
static size_t decode(const tpd_tokenizer *tok, const int32_t *ids, int n, int skip_special, char *buf) {
  char *text = NULL;
  size_t len = 0;
  TU_TRY(tpd_tokenizer_decode(tok, ids, n, skip_special, &text, &len));
  CHECK(len < TEXT_CAP, "decoded text of %zu bytes", len);
  if (len >= TEXT_CAP) len = TEXT_CAP - 1;
  memcpy(buf, text, len);
  buf[len] = 0;
  free(text);
  return len;
}

static void check_done(const xreq *t, const char *what) {
  CHECK(t->n_finish == 1 && t->n_bad == 0, "%s: %d finishing events, %d bad events (%s)", what, t->n_finish, t->n_bad,
        t->n_bad ? t->bad : "");
}

/* ---- bad input ---- */
static void expect_text_bad(tpd_sched *s, xreq *t, const char *field) {
  tpd_clear_error();
  const tpd_status st = text_submit(s, t);
  const char *m = tpd_last_error();
  CHECK(st == TPD_ERR_ARG && strstr(m, field) && !strchr(m, '\n'), "bad %s: %s (want TPD_ERR_ARG): %s", field,
        tpd_status_name(st), m);
}

static void test_text_bad(tpd_engine *e, const tpd_tokenizer *tok, const tpd_tokenizer *too_big) {
  xreq t;
  memset(&t, 0, sizeof t);
  t.n_prompt = 3, t.max_tokens = 4;
  for (int i = 0; i < 3; i++) t.prompt[i] = (int32_t)tu_int(0, VOCAB - 1);
  /* no tokenizer: stop strings and skip_special have no text to work on */
  tpd_sched *s = text_sched(e, NULL);
  t.n_stops = 1, t.stops[0] = "x";
  expect_text_bad(s, &t, "tokenizer");
  t.n_stops = 0, t.skip_special = 1;
  expect_text_bad(s, &t, "tokenizer");
  t.skip_special = 0;
  CHECK(tpd_sched_pending(s) == 0, "a refused request is pending");
  tpd_sched_destroy(s);
  /* a tokenizer with more tokens than the model's vocabulary */
  tpd_sched_opts o;
  tpd_sched_opts_init(&o);
  o.callback = on_text_event, o.tokenizer = too_big;
  tpd_clear_error();
  CHECK(tpd_sched_create(e, &o, &s) == TPD_ERR_ARG && !s && strstr(tpd_last_error(), "tokenizer"),
        "a tokenizer of %d tokens for a vocabulary of %d: %s", tpd_tokenizer_n_tokens(too_big), VOCAB,
        tpd_last_error());
  /* bad stop strings */
  s = text_sched(e, tok);
  static char long_stop[TPD_MAX_STOP_STRING_LEN + 2];
  memset(long_stop, 'a', sizeof long_stop - 1);
  t.n_stops = 2, t.stops[0] = "ok", t.stops[1] = "";
  expect_text_bad(s, &t, "stop_strings[1]");
  t.stops[1] = NULL;
  expect_text_bad(s, &t, "stop_strings[1]");
  t.stops[1] = "ab\xC3(";
  expect_text_bad(s, &t, "stop_strings[1]");
  t.stops[1] = "\xED\xA0\x80"; /* a surrogate */
  expect_text_bad(s, &t, "stop_strings[1]");
  t.stops[1] = long_stop;
  expect_text_bad(s, &t, "stop_strings[1]");
  t.n_stops = -1;
  expect_text_bad(s, &t, "n_stop_strings");
  t.n_stops = 0, t.skip_special = 2;
  expect_text_bad(s, &t, "skip_special");
  t.skip_special = 0;
  {
    tpd_request r;
    tpd_request_init(&r);
    r.prompt = t.prompt, r.n_prompt = 3, r.max_tokens = 4, r.user = &t;
    uint64_t id;
    const char *many[TPD_MAX_STOP_STRINGS + 1];
    for (int i = 0; i <= TPD_MAX_STOP_STRINGS; i++) many[i] = "z";
    r.n_stop_strings = 1;
    tpd_clear_error();
    CHECK(tpd_sched_submit(s, &r, &id) == TPD_ERR_ARG && strstr(tpd_last_error(), "stop_strings"),
          "NULL stop_strings: %s", tpd_last_error());
    r.stop_strings = many, r.n_stop_strings = TPD_MAX_STOP_STRINGS + 1;
    tpd_clear_error();
    CHECK(tpd_sched_submit(s, &r, &id) == TPD_ERR_ARG && strstr(tpd_last_error(), "n_stop_strings"),
          "%d stop strings: %s", TPD_MAX_STOP_STRINGS + 1, tpd_last_error());
  }
  CHECK(tpd_sched_pending(s) == 0, "a refused request is pending");
  /* the longest stop string and the most of them are accepted */
  long_stop[TPD_MAX_STOP_STRING_LEN] = 0;
  t.n_stops = 2, t.stops[0] = "ok", t.stops[1] = long_stop;
  CHECK_OK(text_submit(s, &t));
  run_all(s);
  check_done(&t, "the longest stop string");
  CHECK(t.finish == TPD_FINISH_LENGTH, "the longest stop string: finish %d", t.finish);
  tpd_sched_destroy(s);
}

/* ---- a stop string across tokens ---- */

/* Where the text of ids[0, k) ends in the whole text T when it is a prefix
 * of it (-1 otherwise): the boundary before token k. */
static long boundary(const tpd_tokenizer *tok, const int32_t *ids, int k, const char *T, size_t n_T) {
  char buf[TEXT_CAP];
  const size_t n = decode(tok, ids, k, 0, buf);
  return n <= n_T && !memcmp(buf, T, n) ? (long)n : -1;
}

typedef struct {
  int j;     /* the token that completes the stop string */
  size_t a, b; /* the stop string is T[a, b) */
} stop_pick;

/* A stop string in the solo text T of t's tokens: it begins inside the text
 * of token i (after its first character) and ends with the text of a later
 * token j, which ends in an ASCII character (so nothing of it is held back
 * as an incomplete character), and T has no earlier occurrence of it. */
static int pick_stop(const tpd_tokenizer *tok, const xreq *t, const char *T, size_t n_T, stop_pick *p) {
  long c[MAX_OUT + 1];
  for (int k = 0; k <= t->n_tokens; k++) c[k] = boundary(tok, t->out, k, T, n_T);
  for (int i = 0; i + 1 < t->n_tokens; i++) {
    if (c[i] < 0 || c[i + 1] < 0) continue;
    for (long a = c[i] + 1; a < c[i + 1]; a++) {
      if (((unsigned char)T[a] & 0xC0) == 0x80) continue; /* inside a character */
      for (int j = i + 1; j < t->n_tokens; j++) {
        const long b = c[j + 1];
        if (b < 0 || b <= c[j] || (unsigned char)T[b - 1] >= 0x80 || b - a > 64) continue;
        if (memchr(T + a, 0, (size_t)(b - a))) continue; /* a C string cannot hold it */
        if (memmem(T, n_T, T + a, (size_t)(b - a)) != T + a) continue;
        p->j = j, p->a = (size_t)a, p->b = (size_t)b;
        return 1;
      }
    }
  }
  return 0;
}

/* With small (the test's own tokenizer, which has special tokens at the top
 * of the vocabulary): skip_special on an output with one, and the padded
 * vocabulary with small; without (tpdecode-synth's): the stop strings. */
static void test_stop_strings(tpd_engine *e, const char *name, const tpd_tokenizer *tok, const tpd_tokenizer *small) {
  static xreq cur, solo, r[5]; /* cur: each try; solo: the one the stop string comes from */
  static char T[TEXT_CAP];
  size_t n_T = 0;
  stop_pick p = {0};
  int found = 0, tries = 0;
  static xreq pad, spec; /* outputs with an id beyond the small tokenizer, with a special token */
  int pad_at = -1, have_spec = 0;
  for (; tries < N_TRIES && (!found || (small && (pad_at < 0 || !have_spec))); tries++) {
    memset(&cur, 0, sizeof cur);
    cur.n_prompt = tu_int(3, 10), cur.max_tokens = 24;
    for (int i = 0; i < cur.n_prompt; i++) cur.prompt[i] = (int32_t)tu_int(0, VOCAB - 1);
    text_run(e, tok, &cur, 1);
    check_done(&cur, "alone");
    CHECK(cur.finish == TPD_FINISH_LENGTH && cur.n_tokens == 24, "alone: finish %d after %d tokens", cur.finish,
          cur.n_tokens);
    n_T = decode(tok, cur.out, cur.n_tokens, 0, T);
    CHECK(cur.text_len == n_T && !memcmp(cur.text, T, n_T), "alone (try %d): the pieces (%zu bytes) differ from "
          "tpd_tokenizer_decode of the ids (%zu bytes)", tries, cur.text_len, n_T);
    if (tu_failures) return;
    for (int k = 0; k < cur.n_tokens && small && pad_at < 0; k++)
      if (cur.out[k] >= tpd_tokenizer_n_tokens(small)) pad = cur, pad_at = k;
    for (int k = 0; k < cur.n_tokens && small && !have_spec; k++)
      if (cur.out[k] >= VOCAB - 3) spec = cur, have_spec = 1;
    if (!found && (found = pick_stop(tok, &cur, T, n_T, &p))) solo = cur;
  }
  if (!small) pad_at = 0, have_spec = 1;
  CHECK(found && pad_at >= 0 && have_spec, "%s: after %d greedy requests: a stop string across tokens %d, an id "
        "beyond the small tokenizer %d, a special token %d", name, tries, found, pad_at >= 0, have_spec);
  if (!found || pad_at < 0 || !have_spec) return;
  n_T = decode(tok, solo.out, solo.n_tokens, 0, T);
  char stop[80], longer[88];
  snprintf(stop, sizeof stop, "%.*s", (int)(p.b - p.a), T + p.a);
  /* a character T does not have after the stop string: the longer one never completes */
  const char *extra[] = {"\xE2\x9C\x93", "#", "\xC3\xA9", "Q"};
  for (int k = 0; k < 4; k++) {
    snprintf(longer, sizeof longer, "%s%s", stop, extra[k]);
    if (!memmem(T, n_T, longer, strlen(longer))) break;
  }
  const char *never = "\xE2\x9C\x93 never \xF0\x9F\x98\x80";
  CHECK(!memmem(T, n_T, longer, strlen(longer)) && !memmem(T, n_T, never, strlen(never)),
        "the stop strings that must not match do");
  for (int k = 0; k < 5; k++) r[k] = k == 3 && small ? spec : solo;
  r[0].n_stops = 2, r[0].stops[0] = never, r[0].stops[1] = stop;   /* STOP at token j */
  r[1].n_stops = 1, r[1].stops[0] = longer;                        /* never completes: LENGTH, all the text */
  r[2].n_stops = 1, r[2].stops[0] = stop, r[2].max_tokens = p.j + 1; /* STOP on the last token of max_tokens */
  r[3].skip_special = 1;                                           /* the text without special tokens */
  r[4].n_stops = 1, r[4].stops[0] = never;
  text_run(e, tok, r, 5);
  for (int k = 0; k < 5; k++) check_done(&r[k], "stop strings");
  const int j = p.j;
  for (int k = 0; k < 3; k += 2)
    CHECK(r[k].finish == TPD_FINISH_STOP && r[k].status == TPD_OK && r[k].n_tokens == j + 1 &&
              !memcmp(r[k].out, solo.out, sizeof(int32_t) * (size_t)(j + 1)),
          "stop string (request %d, '%s' at bytes %zu..%zu, completed by token %d): finish %d after %d tokens", k, stop,
          p.a, p.b, j, r[k].finish, r[k].n_tokens);
  for (int k = 0; k < 3; k += 2)
    CHECK(r[k].text_len == p.a && !memcmp(r[k].text, T, p.a), "stop string (request %d): %zu bytes of text, want the "
          "%zu before the stop string", k, r[k].text_len, p.a);
  /* the longer stop string: all the text, but its beginning held back while it could complete */
  CHECK(r[1].finish == TPD_FINISH_LENGTH && r[1].n_tokens == 24 && r[1].text_len == n_T && !memcmp(r[1].text, T, n_T),
        "a stop string never completed: finish %d after %d tokens, %zu of %zu bytes of text", r[1].finish,
        r[1].n_tokens, r[1].text_len, n_T);
  /* (when token j is the last of max_tokens, the request ends there and all its text goes out) */
  CHECK(r[1].n_tokens == 24 && (j == r[1].n_tokens - 1 ? r[1].text_at[j] == n_T : r[1].text_at[j] <= p.a),
        "the beginning of a stop string was not held back: %zu bytes out after token %d (the stop string's beginning "
        "at %zu)", r[1].text_at[j], j, p.a);
  /* skip_special (an output with a special token), and a stop string never produced */
  char skip[TEXT_CAP], all[TEXT_CAP];
  const size_t n_skip = decode(tok, r[3].out, r[3].n_tokens, 1, skip);
  const size_t n_all = decode(tok, r[3].out, r[3].n_tokens, 0, all);
  CHECK(r[3].finish == TPD_FINISH_LENGTH && r[3].text_len == n_skip && !memcmp(r[3].text, skip, n_skip) &&
            (n_skip < n_all || !small),
        "skip_special: %zu bytes of text, tpd_tokenizer_decode gives %zu (%zu with the special tokens)", r[3].text_len,
        n_skip, n_all);
  CHECK(r[4].finish == TPD_FINISH_LENGTH && r[4].text_len == n_T && !memcmp(r[4].text, T, n_T),
        "a stop string never produced: finish %d, %zu of %zu bytes", r[4].finish, r[4].text_len, n_T);
  char shown[400]; /* the stop string, bytes outside printable ASCII as \xHH */
  size_t o = 0;
  for (const unsigned char *c = (const unsigned char *)stop; *c && o + 5 < sizeof shown; c++)
    o += (size_t)snprintf(shown + o, sizeof shown - o, *c >= 0x20 && *c < 0x7F ? "%c" : "\\x%02X", *c);
  printf("  text (%s): stop string '%s' (bytes %zu..%zu of %zu, completed by token %d of %d; %d greedy runs): STOP "
         "there, the text before it; one character longer: held back, then all the text; skip_special\n",
         name, shown, p.a, p.b, n_T, j, solo.n_tokens, tries);
  if (!small) return;
  /* a tokenizer smaller than the model's vocabulary */
  xreq q = pad;
  text_run(e, small, &q, 1);
  check_done(&q, "padded vocabulary");
  CHECK(q.finish == TPD_FINISH_ERROR && q.status == TPD_ERR_TOKEN && q.n_tokens == pad_at + 1 &&
            strstr(q.message, "tokenizer"),
        "id %d beyond a tokenizer of %d (token %d): finish %d (%s) after %d tokens: %s", pad.out[pad_at],
        tpd_tokenizer_n_tokens(small), pad_at, q.finish, tpd_status_name(q.status), q.n_tokens, q.message);
}

void test_text(tpd_engine *e, const char *dir, const char *model_dir) {
  char d_full[700], d_small[700], d_big[700];
  snprintf(d_full, sizeof d_full, "%s/tok-full", dir);
  snprintf(d_small, sizeof d_small, "%s/tok-small", dir);
  snprintf(d_big, sizeof d_big, "%s/tok-big", dir);
  CHECK(256 + N_MERGES + 3 == VOCAB, "the test's tokenizer has %d tokens for a vocabulary of %d", 256 + N_MERGES + 3,
        VOCAB);
  write_tokenizer(d_full, N_MERGES, 3);  /* exactly the vocabulary */
  write_tokenizer(d_small, 2, 2);        /* 260: the model's vocabulary padded beyond it */
  write_tokenizer(d_big, N_MERGES, 4);   /* one more than the vocabulary */
  tpd_tokenizer *tok = load_tokenizer(d_full, VOCAB), *small = load_tokenizer(d_small, 260),
                *big = load_tokenizer(d_big, VOCAB + 1);
  if (tok && small && big) {
    test_text_bad(e, tok, big);
    test_stop_strings(e, "the test's tokenizer", tok, small);
  }
  /* the tokenizer tpdecode-synth wrote beside the model */
  tpd_tokenizer *synth = NULL;
  TU_TRY(tpd_tokenizer_load(model_dir, &synth));
  if (synth) test_stop_strings(e, "tpdecode-synth's", synth, NULL);
  tpd_tokenizer_free(synth);
  tpd_tokenizer_free(tok);
  tpd_tokenizer_free(small);
  tpd_tokenizer_free(big);
}
