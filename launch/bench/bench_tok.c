/* tpdecode-bench --tokenize DIR: the tokenizer's encode speed.
 *
 * The corpus (--text FILE, else --tok-mb MB of generated mixed text from
 * --seed) is cut into documents at each '\n' (kept at the end of its
 * document), as a server encodes one prompt at a time; every document is
 * encoded with tpd_tokenizer_encode, add_special off.  Timed: the whole
 * corpus, best of --tok-repeat passes, on 1 thread and on --threads threads
 * (default: the online CPUs), each thread a contiguous run of documents of
 * about equal bytes.  MB/s = corpus bytes / 1e6 / seconds.
 *
 * Printed with the speed: the documents, the tokens and a hash of every id
 * in order (h = h * 1000003 + id + 1 mod 2^64, over the documents in order),
 * so tests/bench/tok_ref_bench.py can check that the reference `tokenizers`
 * gives the same ids on the same text. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launch/bench/bench.h"
#include "runtime/base/fileio.h"
#include "runtime/base/timer.h"
#include "runtime/model/tokenizer.h"

enum { MAX_THREADS = 256 };

typedef struct {
  const tpd_tokenizer *t;
  const char *text;
  const size_t *doc; /* [n_docs + 1] document starts, then the end */
  int first, last;   /* documents [first, last) */
  long tokens;
  uint64_t hash;
  tpd_status st;
  char err[300];
} tok_job;

static void *encode_docs(void *arg) {
  tok_job *j = arg;
  j->tokens = 0;
  j->hash = 0;
  j->st = TPD_OK;
  for (int d = j->first; d < j->last; d++) {
    int32_t *ids = NULL;
    int n = 0;
    const tpd_status st = tpd_tokenizer_encode(j->t, j->text + j->doc[d], j->doc[d + 1] - j->doc[d], 0, &ids, &n);
    if (st != TPD_OK) {
      j->st = st;
      snprintf(j->err, sizeof j->err, "document %d (byte %zu): %s", d, j->doc[d], tpd_last_error());
      return NULL;
    }
    for (int i = 0; i < n; i++) j->hash = j->hash * 1000003u + (uint64_t)(uint32_t)ids[i] + 1u;
    j->tokens += n;
    free(ids);
  }
  return NULL;
}

/* h of documents [0, a) then [a, b): h_ab = h_a * 1000003^n_b + h_b (mod 2^64) */
static uint64_t hash_join(uint64_t ha, uint64_t hb, long n_b) {
  uint64_t p = 1;
  for (long i = 0; i < n_b; i++) p *= 1000003u;
  return ha * p + hb;
}

/* One timed pass over every document on n_threads threads. */
static tpd_status encode_pass(const tpd_tokenizer *t, const char *text, const size_t *doc, int n_docs, int n_threads,
                              double *s, long *tokens, uint64_t *hash) {
  tok_job jobs[MAX_THREADS];
  pthread_t th[MAX_THREADS];
  /* contiguous runs of about equal bytes */
  int d = 0;
  for (int k = 0; k < n_threads; k++) {
    const size_t until = doc[n_docs] / (size_t)n_threads * (size_t)(k + 1);
    jobs[k] = (tok_job){.t = t, .text = text, .doc = doc, .first = d};
    while (d < n_docs && (k == n_threads - 1 || doc[d + 1] <= until)) d++;
    jobs[k].last = d;
  }
  const double t0 = tpd_now_ms();
  int started = 0;
  for (int k = 1; k < n_threads; k++, started++)
    if (pthread_create(&th[k], NULL, encode_docs, &jobs[k]) != 0) break;
  encode_docs(&jobs[0]);
  for (int k = 1; k <= started; k++) pthread_join(th[k], NULL);
  *s = (tpd_now_ms() - t0) * 1e-3;
  if (started != n_threads - 1) return TPD_FAIL(TPD_ERR_OOM, "--tokenize: could not start %d threads", n_threads);
  *tokens = 0, *hash = 0;
  for (int k = 0; k < n_threads; k++) {
    if (jobs[k].st != TPD_OK) return TPD_FAIL(jobs[k].st, "--tokenize: %s", jobs[k].err);
    *hash = hash_join(*hash, jobs[k].hash, jobs[k].tokens);
    *tokens += jobs[k].tokens;
  }
  return TPD_OK;
}

/* Mixed text, deterministic from seed: words of a made-up lexicon with
 * capitals and punctuation, numbers, accented words, CJK, emoji, runs of
 * spaces and tabs, and lines of code. */
static char *generate(size_t n_bytes, long seed, size_t *len) {
  static const char *const SYL[] = {"ka", "ro", "the", "an", "mi", "str", "ing", "el", "on", "pa", "re", "ti", "ous",
                                    "com", "ver", "sa", "lu", "nd", "qu", "ex", "is", "or", "po", "de", "al", "ble"};
  static const char *const ACC[] = {"caf\xC3\xA9", "na\xC3\xAFve", "se\xC3\xB1or", "\xC3\xBC" "ber",
                                    "fa\xC3\xA7" "ade", "\xC3\xA5r"};
  static const char *const CJK[] = {"\xE4\xB8\xAD\xE6\x96\x87", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",
                                    "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4", "\xE6\xBC\xA2\xE5\xAD\x97"};
  static const char *const EMO[] = {"\xF0\x9F\x98\x80", "\xF0\x9F\x9A\x80", "\xE2\x9C\x93",
                                    "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD"};
  static const char *const CODE[] = {"for (int i = 0; i < n; i++) {", "  return x * 2;", "}", "def f(x):",
                                     "    print(x, end='')", "if (a != b && c) goto fail;"};
  char *buf = malloc(n_bytes + 512);
  if (!buf) return NULL;
  uint64_t r = (uint64_t)seed * 0x9E3779B97F4A7C15u + 1;
#define NEXT() (r ^= r << 13, r ^= r >> 7, r ^= r << 17, r)
  size_t o = 0;
  int line_words = 0;
  while (o < n_bytes) {
    const unsigned k = (unsigned)(NEXT() % 100);
    const char *w = NULL;
    char word[64];
    if (k < 70) { /* a made-up word, sometimes capitalised, sometimes with punctuation */
      size_t wl = 0;
      const int n_syl = 1 + (int)(NEXT() % 3);
      for (int s = 0; s < n_syl; s++) {
        const char *y = SYL[NEXT() % (sizeof SYL / sizeof SYL[0])];
        memcpy(word + wl, y, strlen(y));
        wl += strlen(y);
      }
      if (NEXT() % 8 == 0) word[0] = (char)(word[0] - 32);
      const unsigned p = (unsigned)(NEXT() % 12);
      if (p == 0) word[wl++] = ',';
      else if (p == 1) word[wl++] = '.';
      word[wl] = 0;
      w = word;
    } else if (k < 78) {
      snprintf(word, sizeof word, "%llu", (unsigned long long)(NEXT() % 1000000));
      w = word;
    } else if (k < 84) w = ACC[NEXT() % (sizeof ACC / sizeof ACC[0])];
    else if (k < 90) w = CJK[NEXT() % (sizeof CJK / sizeof CJK[0])];
    else if (k < 93) w = EMO[NEXT() % (sizeof EMO / sizeof EMO[0])];
    else if (k < 96) w = NEXT() % 2 ? "   " : "\t";
    else w = CODE[NEXT() % (sizeof CODE / sizeof CODE[0])];
    const size_t wl = strlen(w);
    memcpy(buf + o, w, wl);
    o += wl;
    if (++line_words >= 4 + (int)(NEXT() % 24)) buf[o++] = '\n', line_words = 0;
    else buf[o++] = ' ';
  }
#undef NEXT
  buf[o++] = '\n';
  buf[o] = 0;
  *len = o;
  return buf;
}

tpd_status bench_run_tokenize(const bopts *o) {
  tpd_tokenizer *t = NULL;
  char *text = NULL;
  size_t *doc = NULL, len = 0;
  tpd_status st = tpd_tokenizer_load(o->tokenize, &t);
  if (st != TPD_OK) return st;
  if (o->text) {
    st = tpd_read_text_file(o->text, &text, &len);
  } else {
    text = generate((size_t)o->tok_mb * 1000000u, o->seed, &len);
    if (!text) st = TPD_FAIL(TPD_ERR_OOM, "--tokenize: out of memory for %ld MB of text", o->tok_mb);
  }
  int n_docs = 0;
  if (st == TPD_OK && len == 0) st = TPD_FAIL(TPD_ERR_ARG, "--text %s is empty", o->text);
  if (st == TPD_OK) {
    long n = 1;
    for (size_t i = 0; i + 1 < len; i++) n += text[i] == '\n';
    if (n > 0x7fffffff) st = TPD_FAIL(TPD_ERR_ARG, "--tokenize: %ld documents, at most %d", n, 0x7fffffff);
    else if (!(doc = malloc(sizeof *doc * (size_t)(n + 1)))) st = TPD_FAIL(TPD_ERR_OOM, "--tokenize: out of memory");
  }
  if (st == TPD_OK) {
    doc[n_docs++] = 0;
    for (size_t i = 0; i + 1 < len; i++)
      if (text[i] == '\n') doc[n_docs++] = i + 1;
    doc[n_docs] = len;
  }
  int threads[2] = {1, (int)o->threads};
  if (threads[1] <= 0) threads[1] = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (st == TPD_OK && threads[1] > MAX_THREADS)
    st = TPD_FAIL(TPD_ERR_ARG, "--threads %d: --tokenize runs at most %d", threads[1], MAX_THREADS);
  if (threads[1] > n_docs) threads[1] = n_docs; /* a thread per document at most */
  const int n_runs = threads[1] > 1 ? 2 : 1;
  long tokens[2] = {0, 0};
  uint64_t hash[2] = {0, 0};
  double best[2] = {0, 0};
  for (int r = 0; r < n_runs && st == TPD_OK; r++) {
    for (long rep = 0; rep < o->tok_repeat && st == TPD_OK; rep++) {
      double s;
      st = encode_pass(t, text, doc, n_docs, threads[r], &s, &tokens[r], &hash[r]);
      if (st == TPD_OK && (rep == 0 || s < best[r])) best[r] = s;
    }
  }
  if (st == TPD_OK && n_runs == 2 && (tokens[0] != tokens[1] || hash[0] != hash[1]))
    st = TPD_FAIL(TPD_ERR_STATE, "--tokenize: %d threads gave other ids than 1 (%ld and %ld tokens)", threads[1],
                  tokens[1], tokens[0]);
  if (st == TPD_OK) {
    if (!o->json)
      printf("tokenizer %s, text %s: %zu bytes, %d documents, %ld tokens (ids hash %016llx), best of %ld\n",
             o->tokenize, o->text ? o->text : "generated", len, n_docs, tokens[0], (unsigned long long)hash[0],
             o->tok_repeat);
    for (int r = 0; r < n_runs; r++) {
      const double mbs = (double)len / 1e6 / best[r];
      if (o->json)
        printf("{\"kind\":\"tokenize\",\"bytes\":%zu,\"docs\":%d,\"tokens\":%ld,\"hash\":\"%016llx\",\"threads\":%d,"
               "\"seconds\":%.6f,\"mb_s\":%.3f,\"repeat\":%ld}\n",
               len, n_docs, tokens[r], (unsigned long long)hash[r], threads[r], best[r], mbs, o->tok_repeat);
      else
        printf("  %2d thread%s  %9.4f s  %8.2f MB/s  %10.0f tokens/s\n", threads[r], threads[r] > 1 ? "s" : " ",
               best[r], mbs, (double)tokens[r] / best[r]);
    }
    fflush(stdout);
  }
  free(doc);
  free(text);
  tpd_tokenizer_free(t);
  return st;
}
