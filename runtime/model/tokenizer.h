/* Text <-> token ids: Hugging Face tokenizer.json (as `tokenizers` 0.2x
 * writes it) and tokenizer_config.json.
 *
 * Implemented (anything else is an error naming it, never a fallback):
 *   model          BPE (merges as ["a", "b"] pairs or "a b" strings,
 *                  ignore_merges, byte_fallback, unk_token, fuse_unk);
 *                  dropout, continuing_subword_prefix and
 *                  end_of_word_suffix must be null
 *   normalizer     null; Prepend; Replace (String or Regex pattern);
 *                  Sequence of those (SentencePiece's older form is
 *                  Sequence[Prepend("▁"), Replace(" ", "▁")])
 *   pre_tokenizer  ByteLevel (add_prefix_space, use_regex with the GPT-2
 *                  pattern); Split (Regex or String pattern, PCRE2 with
 *                  Unicode properties; behavior Isolated, Removed,
 *                  MergedWithPrevious, MergedWithNext, Contiguous; invert);
 *                  Metaspace (prepend_scheme first, always, never; split);
 *                  Sequence of those
 *   post_processor TemplateProcessing (its "single" template); ByteLevel
 *                  (offsets only); Sequence; null
 *   decoder        ByteLevel; Metaspace; Replace; ByteFallback; Fuse; Strip;
 *                  Sequence of those; null (tokens joined by spaces)
 *   added tokens   special or not, matched before the model (lstrip,
 *                  rstrip, single_word, normalized as tokenizers does; a
 *                  normalized token is matched, and decodes, in its
 *                  normalized form, as tokenizers 0.23 does); ids as
 *                  tokenizers assigns them on loading (a file whose ids
 *                  differ gets a warning, as there)
 *   truncation, padding  must be null
 *
 * BOS/EOS (add_special): when tokenizer_config.json has add_bos_token or
 * add_eos_token, those two decide alone: [bos_token if add_bos_token] text
 * [eos_token if add_eos_token], a missing key counting as false, and the
 * post-processor's template adds nothing (this is what transformers' Llama
 * tokenizers do: they rebuild the template from these flags).  Otherwise
 * the post-processor's TemplateProcessing decides.  tpd_tokenizer_bos/eos
 * are the config's bos_token/eos_token when it names them (an error if
 * they are not tokens), else the template's first / last special token.
 *
 * A tokenizer is immutable after loading and may be used from any number of
 * threads at once; a tpd_detok belongs to one stream (one thread at a time).
 * Tunable: TPD_TOKENIZER_JIT=0 runs PCRE2's interpreter instead of its JIT
 * (same matches; the parity test runs both). */
#ifndef TPD_TOKENIZER_H
#define TPD_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tpd_tokenizer tpd_tokenizer;

/* DIR/tokenizer.json and, when present, DIR/tokenizer_config.json. */
tpd_status tpd_tokenizer_load(const char *dir, tpd_tokenizer **out);
/* The same from two paths; config_json may be NULL. */
tpd_status tpd_tokenizer_load_files(const char *tokenizer_json, const char *config_json, tpd_tokenizer **out);
void tpd_tokenizer_free(tpd_tokenizer *t);

/* Highest token id + 1 (vocabulary and added tokens).  An id below it that
 * has no token (a hole) is still TPD_ERR_TOKEN on decoding. */
int tpd_tokenizer_n_tokens(const tpd_tokenizer *t);
/* Special ids, -1 when the tokenizer has none. */
int32_t tpd_tokenizer_bos(const tpd_tokenizer *t);
int32_t tpd_tokenizer_eos(const tpd_tokenizer *t);
/* The id of a token's text (vocabulary or added), -1 when absent. */
int32_t tpd_tokenizer_token_id(const tpd_tokenizer *t, const char *token);
/* The chat template: tokenizer_config.json's chat_template, or the file
 * chat_template.jinja beside it (transformers >= 4.43; both present and
 * different is an error at load), or NULL. */
const char *tpd_tokenizer_chat_template(const tpd_tokenizer *t);
/* tokenizer_config.json's bos_token / eos_token text, or NULL. */
const char *tpd_tokenizer_bos_text(const tpd_tokenizer *t);
const char *tpd_tokenizer_eos_text(const tpd_tokenizer *t);

/* Encodes len bytes of UTF-8 text (invalid UTF-8 is TPD_ERR_ARG naming the
 * byte offset).  add_special: the special tokens the tokenizer adds (BOS
 * as tokenizer_config.json / the post-processor say), like tokenizers'
 * add_special_tokens=True.  *ids is malloc'd (free it); *n_ids its length. */
tpd_status tpd_tokenizer_encode(const tpd_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                                int *n_ids);
/* Decodes ids into malloc'd UTF-8 text (*text NUL-terminated, *len without
 * the NUL); skip_special drops special added tokens, like tokenizers'
 * skip_special_tokens.  Ids outside the tokenizer are TPD_ERR_TOKEN. */
tpd_status tpd_tokenizer_decode(const tpd_tokenizer *t, const int32_t *ids, int n_ids, int skip_special, char **text,
                                size_t *len);

/* Incremental decoding for streaming: text comes out only in whole UTF-8
 * characters, and the concatenation of every piece (flush included) equals
 * tpd_tokenizer_decode of all the ids pushed, with the same skip_special.
 * Each push decodes a short window of ids again (from one emission back,
 * so that decoders that treat the first token apart, Metaspace and Strip,
 * see the new ids in the middle) and gives out what the window adds; it
 * holds back while the text ends in U+FFFD (an incomplete character so far)
 * and, with a ByteFallback decoder, while the last id is a byte token
 * ("<0xNN>": a later byte may turn the whole run into U+FFFDs). */
typedef struct tpd_detok tpd_detok;
tpd_status tpd_detok_create(const tpd_tokenizer *t, int skip_special, tpd_detok **out);
/* Pushes one id; *piece (valid until the next call on d) receives the new
 * text, possibly empty. */
tpd_status tpd_detok_push(tpd_detok *d, int32_t id, const char **piece, size_t *len);
/* The text still held back (an incomplete character at the end of the
 * stream becomes what tpd_tokenizer_decode would give for it). */
tpd_status tpd_detok_flush(tpd_detok *d, const char **piece, size_t *len);
void tpd_detok_free(tpd_detok *d);

#ifdef __cplusplus
}
#endif
#endif
