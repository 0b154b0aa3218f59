/* Fuzz target: tokenizer.json (runtime/model/tokenizer*.c, via
 * tpd_tokenizer_load_files with no tokenizer_config.json).  The input is
 * written to a scratch file (tmpfs) and loaded; a tokenizer that loads is
 * exercised by tok_check.c (encode, decode, streaming decode). */
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/tok_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[4200];
  if (!path[0]) {
    fz_quiet();
    snprintf(path, sizeof path, "%s/tokenizer.json", fz_scratch_dir());
  }
  fz_write(path, data, size);
  tpd_tokenizer *t = NULL;
  tpd_status s = tpd_tokenizer_load_files(path, NULL, &t);
  if (s != TPD_OK) {
    FZ_CHECK(t == NULL, "a tokenizer on failure");
    fz_check_error(s);
    return 0;
  }
  fz_tok_exercise(t, 1);
  tpd_tokenizer_free(t);
  return 0;
}
