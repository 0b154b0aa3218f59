/* See tok_check.h. */
#include "tests/fuzz/tok_check.h"

#include "tests/fuzz/fuzz_util.h"

static void check_ids(const tpd_tokenizer *t, const int32_t *ids, int n) {
  const int nt = tpd_tokenizer_n_tokens(t);
  FZ_CHECK(n >= 0, "n_ids %d", n);
  for (int i = 0; i < n; i++) FZ_CHECK(ids[i] >= 0 && ids[i] < nt, "id %d at %d outside [0, %d)", ids[i], i, nt);
}

/* decode, then the same ids through a tpd_detok: the pieces joined must equal it */
static void check_decode(const tpd_tokenizer *t, const int32_t *ids, int n, int skip_special, int stream) {
  char *text = NULL;
  size_t len = 0;
  tpd_status s = tpd_tokenizer_decode(t, ids, n, skip_special, &text, &len);
  if (s != TPD_OK) {
    fz_check_error(s);
    FZ_CHECK(s == TPD_ERR_TOKEN, "decode of encoded ids failed: %s", tpd_last_error());
    return;
  }
  /* a token's text may hold U+0000, so the length is len, not strlen */
  FZ_CHECK(text && text[len] == 0, "decode: %s", text ? "text not NUL-terminated at len" : "no text");
  if (!stream) {
    free(text);
    return;
  }
  tpd_detok *d = NULL;
  s = tpd_detok_create(t, skip_special, &d);
  FZ_CHECK(s == TPD_OK, "detok_create: %s", tpd_last_error());
  char *joined = malloc(len + 1);
  size_t at = 0;
  FZ_CHECK(joined != NULL, "out of memory");
  for (int i = 0; i <= n; i++) {
    const char *piece = NULL;
    size_t pl = 0;
    s = i < n ? tpd_detok_push(d, ids[i], &piece, &pl) : tpd_detok_flush(d, &piece, &pl);
    FZ_CHECK(s == TPD_OK, "detok %s at %d: %s", i < n ? "push" : "flush", i, tpd_last_error());
    FZ_CHECK(at + pl <= len, "streamed text longer than decode (%zu > %zu)", at + pl, len);
    if (pl) memcpy(joined + at, piece, pl);
    at += pl;
  }
  FZ_CHECK(at == len && memcmp(joined, text, len) == 0, "streamed text differs from decode (%zu vs %zu bytes)", at,
           len);
  tpd_detok_free(d);
  free(joined);
  free(text);
}

static void one(const tpd_tokenizer *t, const char *s, size_t n, int full) {
  for (int add = 0; add < 2; add++) {
    int32_t *ids = NULL;
    int n_ids = 0;
    tpd_status st = tpd_tokenizer_encode(t, s, n, add, &ids, &n_ids);
    if (st != TPD_OK) {
      fz_check_error(st);
      free(ids);
      continue;
    }
    check_ids(t, ids, n_ids);
    check_decode(t, ids, n_ids, 0, full);
    check_decode(t, ids, n_ids, 1, full);
    free(ids);
  }
}

void fz_tok_exercise(const tpd_tokenizer *t, int full) {
  static const char *texts[] = {
      "Hello, world! It's 2024: the cat's 3 hats.",
      "  leading spaces\n\nand\ttabs  ",
      "caf\xC3\xA9 \xE2\x96\x81 \xF0\x9F\x98\x80 \xE4\xB8\xAD\xE6\x96\x87",
      "<s>ab</s> <|begin_of_text|>x<|end_of_text|>",
      "",
  };
  for (size_t i = 0; i < (full ? sizeof texts / sizeof texts[0] : 1); i++) one(t, texts[i], strlen(texts[i]), full);
  const char *bt = tpd_tokenizer_bos_text(t), *et = tpd_tokenizer_eos_text(t);
  if (bt) FZ_CHECK(tpd_tokenizer_token_id(t, bt) >= 0 || tpd_tokenizer_bos(t) < 0, "bos_token '%s' is no token", bt);
  if (et) FZ_CHECK(tpd_tokenizer_token_id(t, et) >= 0 || tpd_tokenizer_eos(t) < 0, "eos_token '%s' is no token", et);
  const int nt = tpd_tokenizer_n_tokens(t);
  FZ_CHECK(tpd_tokenizer_bos(t) >= -1 && tpd_tokenizer_bos(t) < nt, "bos %d", tpd_tokenizer_bos(t));
  FZ_CHECK(tpd_tokenizer_eos(t) >= -1 && tpd_tokenizer_eos(t) < nt, "eos %d", tpd_tokenizer_eos(t));
  /* every id decodes alone, or is a hole (TPD_ERR_TOKEN); a bounded sweep */
  for (int32_t id = -1; full && id <= nt && id < 4096; id++) {
    char *text = NULL;
    size_t len = 0;
    tpd_status s = tpd_tokenizer_decode(t, &id, 1, 0, &text, &len);
    if (s != TPD_OK) {
      fz_check_error(s);
      FZ_CHECK(s == TPD_ERR_TOKEN, "decode of id %d: %s", id, tpd_last_error());
    } else {
      FZ_CHECK(id >= 0 && id < nt, "id %d outside [0, %d) decoded", id, nt);
    }
    free(text);
  }
}
