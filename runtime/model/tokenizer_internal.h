/* Inside the tokenizer (runtime/model/tokenizer*.c); not installed.
 *
 * Files:
 *   tokenizer.c         loading tokenizer.json / tokenizer_config.json, accessors
 *   tokenizer_bpe.c     string->id map, merge map, the BPE merge of one word
 *   tokenizer_text.c    UTF-8 helpers, the byte-level alphabet, piece lists
 *   tokenizer_pretok.c  normalizers and pre-tokenizers (PCRE2 patterns)
 *   tokenizer_encode.c  added-token matching, the encode pipeline, post-processing
 *   tokenizer_decode.c  decoders, decode, incremental decoding
 *
 * Glossary: a "piece" is a run of text that later stages treat on its own
 * (an added token, or a word the pre-tokenizers cut out); the model turns
 * each non-added piece into ids independently. */
#ifndef TPD_TOKENIZER_INTERNAL_H
#define TPD_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/model/tokenizer.h"

/* ---- string -> id map (open addressing; keys point into the owner's storage) ---- */
typedef struct {
  const char *key;
  uint32_t len;
  int32_t id;
} tk_slot;
typedef struct {
  tk_slot *slots;
  size_t cap; /* power of two */
  size_t n;
} tk_map;
tpd_status tk_map_init(tk_map *m, size_t expect);
void tk_map_free(tk_map *m);
/* Inserts or overwrites. */
tpd_status tk_map_put(tk_map *m, const char *key, size_t len, int32_t id);
int32_t tk_map_get(const tk_map *m, const char *key, size_t len); /* -1 when absent */

/* ---- (left id, right id) -> (rank, merged id) ---- */
typedef struct {
  uint64_t key; /* left << 32 | right, UINT64_MAX empty */
  int32_t rank, id;
} tk_merge;
typedef struct {
  tk_merge *slots;
  size_t cap, n;
} tk_merges;

/* ---- growable text with a list of pieces in it ---- */
typedef struct {
  size_t off, len;
  int32_t id;    /* an added token's id, -1 for text the model still has to tokenize */
  int at_start;  /* the piece starts at offset 0 of the original text (Metaspace "first") */
} tk_piece;
typedef struct {
  char *buf;
  size_t len, cap;
  tk_piece *p;
  int n, cap_p;
} tk_pieces;
tpd_status tk_pieces_text(tk_pieces *ps, const char *s, size_t n); /* appends bytes */
tpd_status tk_pieces_add(tk_pieces *ps, size_t off, size_t len, int32_t id, int at_start);
/* Appends bytes and a piece holding them. */
tpd_status tk_pieces_push(tk_pieces *ps, const char *s, size_t n, int32_t id, int at_start);
void tk_pieces_clear(tk_pieces *ps);
void tk_pieces_free(tk_pieces *ps);

/* ---- UTF-8 ---- */
/* Length of the valid UTF-8 character at s[0..n), 0 when invalid or cut short. */
int tk_utf8_len(const unsigned char *s, size_t n);
/* Offset of the first invalid byte, or n when all of s is valid UTF-8. */
size_t tk_utf8_check(const char *s, size_t n);
uint32_t tk_utf8_decode(const unsigned char *s, int len);
int tk_utf8_encode(uint32_t cp, char *out);
int tk_is_whitespace(uint32_t cp); /* Unicode White_Space, as Rust's char::is_whitespace */
/* Appends s with invalid sequences replaced by U+FFFD, one per maximal
 * invalid subpart (as Rust's String::from_utf8_lossy does). */
tpd_status tk_pieces_lossy(tk_pieces *ps, const char *s, size_t n);

/* ---- byte-level alphabet (GPT-2): byte -> code point and back ---- */
uint32_t tk_byte_cp(unsigned char b);
int tk_cp_byte(uint32_t cp); /* -1 when cp is not in the alphabet */

/* ---- a compiled pattern (Split, Replace): PCRE2 regex or literal string ---- */
typedef struct {
  pcre2_code *re;   /* compiled with PCRE2_UTF | PCRE2_UCP (and PCRE2_LITERAL for strings) */
  int jit;          /* JIT compiled */
} tk_pattern;
tpd_status tk_pattern_compile(tk_pattern *p, const char *pattern, int literal, const char *what);
void tk_pattern_free(tk_pattern *p);
/* Calls fn for each non-overlapping match in s[0..n) (empty matches
 * advance one character); returns the first failure of fn or PCRE2. */
typedef tpd_status (*tk_match_fn)(void *user, size_t start, size_t end);
tpd_status tk_pattern_each(const tk_pattern *p, pcre2_match_data *md, const char *s, size_t n, tk_match_fn fn,
                           void *user);

/* ---- normalizers, pre-tokenizers, decoders ---- */
enum { TK_NORM_PREPEND = 1, TK_NORM_REPLACE };
typedef struct {
  int kind;
  char *str;         /* Prepend's text; Replace's content */
  tk_pattern pat;    /* Replace */
} tk_norm;

enum { TK_PRE_BYTELEVEL = 1, TK_PRE_SPLIT, TK_PRE_METASPACE };
enum { TK_SPLIT_REMOVED = 0, TK_SPLIT_ISOLATED, TK_SPLIT_MERGED_PREV, TK_SPLIT_MERGED_NEXT, TK_SPLIT_CONTIGUOUS };
enum { TK_PREPEND_ALWAYS = 0, TK_PREPEND_FIRST, TK_PREPEND_NEVER };
typedef struct {
  int kind;
  int add_prefix_space, use_regex; /* ByteLevel */
  tk_pattern pat;                  /* Split, and ByteLevel's GPT-2 pattern */
  int behavior, invert;            /* Split */
  char repl[8];                    /* Metaspace replacement (one character) */
  int repl_len;
  int prepend, split;              /* Metaspace */
} tk_pre;

enum { TK_DEC_BYTELEVEL = 1, TK_DEC_METASPACE, TK_DEC_REPLACE, TK_DEC_BYTEFALLBACK, TK_DEC_FUSE, TK_DEC_STRIP };
typedef struct {
  int kind;
  char repl[8];  /* Metaspace replacement; Strip content */
  int repl_len;
  int prepend;   /* Metaspace */
  char *content; /* Replace */
  tk_pattern pat;
  int start, stop; /* Strip */
} tk_dec;

typedef struct {
  char *content;
  size_t len;
  char *norm;      /* normalized tokens: the content through the normalizers (what the text is matched
                    * against after normalizing), malloc'd; NULL for the others */
  size_t norm_len;
  int32_t id;
  int special, lstrip, rstrip, single_word, normalized;
} tk_added;

struct tpd_tokenizer {
  /* model (BPE) */
  tk_map vocab;
  tk_map added_map;  /* added tokens' text -> id, looked up before vocab */
  char *text_arena;  /* every key of vocab and added_map */
  tk_merges merges;
  char **id_text;    /* [n_tokens] a token's text (added tokens first), NULL for a gap */
  uint32_t *id_len;  /* [n_tokens] */
  int n_tokens;
  int ignore_merges, byte_fallback, fuse_unk;
  int32_t unk_id;          /* -1 when none */
  int32_t byte_id[256];    /* "<0xNN>" ids for byte_fallback, -1 absent */
  /* added tokens */
  tk_added *added;
  int n_added;
  uint8_t *is_special;     /* [n_tokens] */
  /* added-token matching, per set (0: matched in the raw text, normalized
   * false; 1: in the normalized text): indices into added[] sorted by first
   * byte, longest first; first[s][b]..first[s][b+1] are those starting with b */
  int *order[2];
  int first[2][257];
  int n_set[2];
  tk_pattern word_char;    /* Rust regex's \w, for single_word */
  /* pipeline */
  tk_norm *norm;
  int n_norm;
  tk_pre *pre;
  int n_pre;
  tk_dec *dec;
  int n_dec;
  int has_decoder;
  int dec_byte_fallback; /* a ByteFallback decoder is in the chain */
  /* special tokens added by add_special: ids before and after the text */
  int32_t *pre_ids, *post_ids;
  int n_pre_ids, n_post_ids;
  /* tokenizer_config.json */
  char *chat_template, *bos_text, *eos_text;
  int32_t bos_id, eos_id;
};

/* tokenizer_bpe.c */
tpd_status tk_merges_init(tk_merges *m, size_t expect);
void tk_merges_free(tk_merges *m);
tpd_status tk_merges_put(tk_merges *m, int32_t left, int32_t right, int32_t rank, int32_t id);
const tk_merge *tk_merges_get(const tk_merges *m, int32_t left, int32_t right);
/* Appends the ids of one word (a piece's text) to *ids. */
typedef struct {
  int32_t *v;
  int n, cap;
} tk_ids;
tpd_status tk_ids_push(tk_ids *ids, int32_t id);
tpd_status tk_bpe_word(const tpd_tokenizer *t, const char *w, size_t n, tk_ids *ids);

/* tokenizer_pretok.c: loading and running the pipeline stages */
tpd_status tk_load_normalizer(tpd_tokenizer *t, const cJSON *j, const char *path);
tpd_status tk_load_pre_tokenizer(tpd_tokenizer *t, const cJSON *j, const char *path);
tpd_status tk_load_decoder(tpd_tokenizer *t, const cJSON *j, const char *path);
void tk_free_stages(tpd_tokenizer *t);
/* Normalizes s into out (cleared first). */
tpd_status tk_normalize(const tpd_tokenizer *t, pcre2_match_data *md, const char *s, size_t n, tk_pieces *out);
/* Pre-tokenizes one piece of text into out (appended). */
tpd_status tk_pre_tokenize(const tpd_tokenizer *t, pcre2_match_data *md, const char *s, size_t n, int at_start,
                           tk_pieces *out);

/* tokenizer_pretok.c: JSON helpers shared by the loaders */
const cJSON *tk_item(const cJSON *obj, const char *key); /* NULL for absent or null */
tpd_status tk_get_bool(const cJSON *obj, const char *path, const char *key, int dflt, int *out);
tpd_status tk_get_str(const cJSON *obj, const char *path, const char *key, const char **out); /* required */

/* tokenizer_decode.c */
tpd_status tk_decode_tokens(const tpd_tokenizer *t, const int32_t *ids, int n_ids, int skip_special, tk_pieces *a,
                            tk_pieces *b, char **text, size_t *len);

#endif
