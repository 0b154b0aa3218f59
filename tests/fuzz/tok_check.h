/* What the tokenizer targets check on a tokenizer that loaded: fixed texts
 * encode to ids inside the tokenizer, those ids decode, and the streaming
 * decoder gives the same text as tpd_tokenizer_decode (its header's promise). */
#ifndef TPD_FUZZ_TOK_CHECK_H
#define TPD_FUZZ_TOK_CHECK_H
#include "runtime/model/tokenizer.h"

/* full: every fixed text, streaming decode and a sweep of single ids (for a
 * fuzzed tokenizer.json); else one text, encode and decode only (for a
 * fuzzed tokenizer_config.json beside a fixed tokenizer.json). */
void fz_tok_exercise(const tpd_tokenizer *t, int full);
#endif
