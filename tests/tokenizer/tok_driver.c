/* The parity driver: encodes and decodes the strings of DIR/cases.json
 * (written by gen_reference.py with the Hugging Face `tokenizers` package)
 * with tpdecode's tokenizer loaded from DIR, and compares every id and
 * every decoded text with the reference's.
 *
 *   tok_driver DIR                    the verdict: 0 when everything matches
 *   tok_driver DIR --expect-mismatch  0 only when some ids differ (a broken
 *                                     tokenizer.json must be caught)
 *   tok_driver DIR --bench            encode speed on DIR/bench.txt beside the
 *                                     reference's (gen_reference.py --bench)
 *
 * Also, on every id sequence: incremental decoding (one id at a time) gives
 * pieces that are each valid UTF-8 and whose concatenation is the full
 * decode; invalid UTF-8 input is TPD_ERR_ARG naming the byte offset; an id
 * past the tokenizer is TPD_ERR_TOKEN. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/base/fileio.h"
#include "runtime/model/tokenizer.h"
#include "tests/testutil.h"

static int mismatches, shown;

static size_t unhex(const char *hex, char *out) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    out[i] = (char)v;
  }
  out[n] = 0;
  return n;
}

static int *json_ids(const cJSON *arr, int *n) {
  *n = cJSON_GetArraySize(arr);
  int *v = tu_malloc((size_t)(*n + 1) * sizeof *v);
  for (int i = 0; i < *n; i++) v[i] = cJSON_GetArrayItem(arr, i)->valueint;
  return v;
}

static void show_ids(const char *what, const int32_t *v, int n) {
  fprintf(stderr, "    %s [", what);
  for (int i = 0; i < n && i < 40; i++) fprintf(stderr, "%s%d", i ? "," : "", (int)v[i]);
  fprintf(stderr, "%s]\n", n > 40 ? ",..." : "");
}

static void mismatch(const char *what, const char *text) {
  mismatches++;
  if (shown++ < 8) fprintf(stderr, "MISMATCH %s on \"%.60s\"\n", what, text);
}

/* A validator of its own (not the library's): well-formed UTF-8 per RFC 3629. */
static int valid_utf8(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    size_t k;
    unsigned cp;
    if (c < 0x80) { i++; continue; }
    if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; }
    else return 0;
    for (size_t j = 1; j <= k; j++) {
      if (i + j >= n || (s[i + j] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (s[i + j] & 0x3F);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += k + 1;
  }
  return 1;
}

/* ids against the reference; returns 1 when equal */
static int same_ids(const int32_t *got, int n_got, const int *want, int n_want) {
  if (n_got != n_want) return 0;
  for (int i = 0; i < n_got; i++)
    if (got[i] != want[i]) return 0;
  return 1;
}

/* full decode against the reference text, then the incremental decode against both */
static void check_decode(const tpd_tokenizer *t, const int32_t *ids, int n, int skip, const char *want_hex,
                         const char *label) {
  char *text = NULL, *want = tu_malloc(strlen(want_hex) / 2 + 1);
  size_t len = 0, n_want = unhex(want_hex, want);
  CHECK_OK(tpd_tokenizer_decode(t, ids, n, skip, &text, &len));
  int ok = text && n_want == len && memcmp(text, want, len) == 0;
  CHECK(ok, "decode (skip_special %d) of %s: got \"%.80s\", want \"%.80s\"", skip, label, text, want);
  free(want);
  if (!ok) {
    mismatch("decode", label);
    show_ids("ids", ids, n);
  }
  if (!text) return;
  tpd_detok *d = NULL;
  CHECK_OK(tpd_detok_create(t, skip, &d));
  if (!d) {
    free(text);
    return;
  }
  char *acc = tu_malloc(len + 64 * (size_t)n + 16);
  size_t at = 0;
  int valid = 1;
  for (int i = 0; i <= n; i++) {
    const char *piece = NULL;
    size_t pl = 0;
    if (i < n) CHECK_OK(tpd_detok_push(d, ids[i], &piece, &pl));
    else CHECK_OK(tpd_detok_flush(d, &piece, &pl));
    if (!piece) continue;
    if (!valid_utf8((const unsigned char *)piece, pl)) valid = 0;
    if (at + pl <= len + 64 * (size_t)n) memcpy(acc + at, piece, pl);
    at += pl;
  }
  CHECK(valid, "incremental decode of %s: a piece is not valid UTF-8", label);
  CHECK(at == len && memcmp(acc, text, len) == 0, "incremental decode (skip_special %d) of %s: \"%.*s\" != \"%s\"",
        skip, label, (int)(at < 200 ? at : 200), acc, text);
  free(acc);
  free(text);
  tpd_detok_free(d);
}

static char *read_file_or_die(const char *path) {
  char *text = NULL;
  size_t n = 0;
  TU_TRY(tpd_read_text_file(path, &text, &n));
  return text;
}

/* encode MB/s on DIR/bench.txt (one thread, as the reference was timed) */
static int bench(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/bench.txt", dir);
  char *text = read_file_or_die(path);
  snprintf(path, sizeof path, "%s/bench_reference_mbs.txt", dir);
  char *ref = read_file_or_die(path);
  tpd_tokenizer *t = NULL;
  TU_TRY(tpd_tokenizer_load(dir, &t));
  size_t n = strlen(text);
  struct timespec t0, t1;
  double s = 0;
  int reps = 0, n_ids = 0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (reps < 3 || s < 0.5) {
    int32_t *ids = NULL;
    TU_TRY(tpd_tokenizer_encode(t, text, n, 0, &ids, &n_ids));
    free(ids);
    reps++;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  }
  printf("%s: encode %.2f MB/s (tpdecode) vs %.2f MB/s (tokenizers %s), %.2f MB, %d ids\n", dir,
         (double)n * reps / s / 1e6, atof(ref), "reference", (double)n / 1e6, n_ids);
  tpd_tokenizer_free(t);
  free(text);
  free(ref);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: tok_driver DIR [--expect-mismatch | --bench]\n");
    return 2;
  }
  const char *dir = argv[1];
  if (argc > 2 && !strcmp(argv[2], "--bench")) return bench(dir);
  int expect_mismatch = argc > 2 && !strcmp(argv[2], "--expect-mismatch");
  char path[4096];
  snprintf(path, sizeof path, "%s/cases.json", dir);
  char *json = read_file_or_die(path);
  cJSON *cases = cJSON_Parse(json);
  free(json);
  if (!cases) {
    fprintf(stderr, "FAIL: %s is not JSON\n", path);
    return 1;
  }
  tpd_tokenizer *t = NULL;
  TU_TRY(tpd_tokenizer_load(dir, &t));

  const cJSON *e;
  int n_str = 0, n_str_ok = 0, n_dec = 0, n_inv = 0;
  size_t bytes = 0;
  double enc_s = 0;
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(cases, "strings")) {
    const char *hex = cJSON_GetObjectItem(e, "hex")->valuestring;
    char *text = tu_malloc(strlen(hex) / 2 + 1);
    size_t n = unhex(hex, text);
    int n_want, n_plain;
    int *want = json_ids(cJSON_GetObjectItem(e, "ids"), &n_want);
    int *plain = json_ids(cJSON_GetObjectItem(e, "ids_plain"), &n_plain);
    int32_t *ids = NULL, *ids0 = NULL;
    int n_ids = 0, n_ids0 = 0, ok = 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(tpd_tokenizer_encode(t, text, n, 1, &ids, &n_ids));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    enc_s += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    bytes += n;
    CHECK_OK(tpd_tokenizer_encode(t, text, n, 0, &ids0, &n_ids0));
    if (!same_ids(ids, n_ids, want, n_want) || !same_ids(ids0, n_ids0, plain, n_plain)) {
      ok = 0;
      mismatch("ids", text);
      if (shown <= 8) {
        show_ids("tpdecode ", ids, n_ids);
        int32_t *w32 = tu_malloc((size_t)(n_want + 1) * sizeof *w32);
        for (int i = 0; i < n_want; i++) w32[i] = want[i];
        show_ids("reference", w32, n_want);
        free(w32);
      }
    }
    if (!expect_mismatch) CHECK(ok, "ids of \"%.60s\"", text);
    /* decode the reference's ids, so a wrong encode does not hide the decode */
    int32_t *w32 = tu_malloc((size_t)(n_want + 1) * sizeof *w32);
    for (int i = 0; i < n_want; i++) w32[i] = want[i];
    if (!expect_mismatch) {
      check_decode(t, w32, n_want, 0, cJSON_GetObjectItem(e, "text")->valuestring, text);
      check_decode(t, w32, n_want, 1, cJSON_GetObjectItem(e, "text_skip")->valuestring, text);
    }
    n_str++;
    n_str_ok += ok;
    free(w32);
    free(ids);
    free(ids0);
    free(want);
    free(plain);
    free(text);
  }
  if (!expect_mismatch) {
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(cases, "decode")) {
      int n;
      int *v = json_ids(cJSON_GetObjectItem(e, "ids"), &n);
      int32_t *ids = tu_malloc((size_t)(n + 1) * sizeof *ids);
      for (int i = 0; i < n; i++) ids[i] = v[i];
      check_decode(t, ids, n, 0, cJSON_GetObjectItem(e, "text")->valuestring, "a random id sequence");
      check_decode(t, ids, n, 1, cJSON_GetObjectItem(e, "text_skip")->valuestring, "a random id sequence");
      n_dec++;
      free(ids);
      free(v);
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(cases, "invalid")) {
      const char *hex = cJSON_GetObjectItem(e, "hex")->valuestring;
      char *text = tu_malloc(strlen(hex) / 2 + 1), needle[64];
      size_t n = unhex(hex, text);
      int32_t *ids = NULL;
      int n_ids = 0;
      snprintf(needle, sizeof needle, "offset %d", cJSON_GetObjectItem(e, "offset")->valueint);
      EXPECT_FAIL(tpd_tokenizer_encode(t, text, n, 1, &ids, &n_ids), TPD_ERR_ARG, needle);
      CHECK(ids == NULL, "no ids on invalid UTF-8");
      n_inv++;
      free(text);
    }
    /* ids past the tokenizer */
    int32_t bad[2] = {1, tpd_tokenizer_n_tokens(t)};
    char *out = NULL;
    size_t len = 0;
    EXPECT_FAIL(tpd_tokenizer_decode(t, bad, 2, 0, &out, &len), TPD_ERR_TOKEN, "token id");
    bad[1] = -1;
    EXPECT_FAIL(tpd_tokenizer_decode(t, bad, 2, 1, &out, &len), TPD_ERR_TOKEN, "-1");
    tpd_detok *d = NULL;
    const char *piece;
    CHECK_OK(tpd_detok_create(t, 0, &d));
    EXPECT_FAIL(tpd_detok_push(d, tpd_tokenizer_n_tokens(t) + 5, &piece, &len), TPD_ERR_TOKEN, "token id");
    tpd_detok_free(d);
  }
  printf("%s: %d strings, ids identical on %d (add_special on and off), decoded text and incremental decoding "
         "checked on them and on %d random id sequences; %d invalid UTF-8 inputs rejected; encode %.1f MB/s\n",
         dir, n_str, n_str_ok, n_dec, n_inv, enc_s > 0 ? (double)bytes / enc_s / 1e6 : 0.0);
  tpd_tokenizer_free(t);
  cJSON_Delete(cases);
  if (expect_mismatch) {
    printf("%s: %d of %d strings differ from the reference (expected: this tokenizer.json is broken)\n", dir,
           n_str - n_str_ok, n_str);
    return n_str > 0 && n_str_ok < n_str ? 0 : 1;
  }
  return tu_finish("tok_driver");
}
