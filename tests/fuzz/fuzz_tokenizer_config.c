/* Fuzz target: tokenizer_config.json and the chat-template selection
 * (runtime/model/tokenizer.c load_config, runtime/model/chat.c).  The
 * tokenizer.json is fixed (tests/fuzz/data/tokenizer.json, the byte-level BPE
 * of tpdecode-synth); the input is the tokenizer_config.json beside it.  A
 * tokenizer that loads is exercised (tok_check.c); its chat_template (or,
 * without one, each model_type) picks a chat format, which renders a fixed
 * conversation that then encodes. */
#include "runtime/model/chat.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/tok_check.h"

static void chat(const tpd_tokenizer *t, const char *model_type) {
  tpd_chat_kind kind;
  const int header = tpd_tokenizer_token_id(t, "<|start_header_id|>") >= 0;
  tpd_status s = tpd_chat_kind_for(tpd_tokenizer_chat_template(t), model_type, header, &kind);
  if (s != TPD_OK) {
    fz_check_error(s);
    return;
  }
  FZ_CHECK(strcmp(tpd_chat_kind_name(kind), "?") != 0, "kind %d has no name", (int)kind);
  static const tpd_chat_message conv[] = {
      {"system", "Be brief."}, {"user", "Hi there"}, {"assistant", "Hello! "}, {"user", "caf\xC3\xA9?"}};
  for (int first = 0; first < 2; first++) {
    char *text = NULL;
    s = tpd_chat_render(kind, tpd_tokenizer_bos_text(t), tpd_tokenizer_eos_text(t), conv + first, 4 - first, 1,
                        &text);
    if (s != TPD_OK) {
      fz_check_error(s);
      FZ_CHECK(text == NULL, "text on failure");
      continue;
    }
    FZ_CHECK(text != NULL, "no text");
    int32_t *ids = NULL;
    int n = 0;
    s = tpd_tokenizer_encode(t, text, strlen(text), 0, &ids, &n);
    if (s == TPD_OK)
      FZ_CHECK(n > 0, "a rendered chat encodes to no tokens");
    else
      fz_check_error(s);
    free(ids);
    free(text);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char tok_path[4200], cfg_path[4200];
  if (!tok_path[0]) {
    fz_quiet();
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", fz_scratch_dir());
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", fz_scratch_dir());
    size_t n = 0;
    char *tj = fz_data_file("tokenizer.json", &n);
    fz_write(tok_path, tj, n);
    free(tj);
  }
  fz_write(cfg_path, data, size);
  tpd_tokenizer *t = NULL;
  tpd_status s = tpd_tokenizer_load_files(tok_path, cfg_path, &t);
  if (s != TPD_OK) {
    FZ_CHECK(t == NULL, "a tokenizer on failure");
    fz_check_error(s);
    return 0;
  }
  fz_tok_exercise(t, 0);
  chat(t, "llama");
  if (!tpd_tokenizer_chat_template(t)) {
    chat(t, "mistral");
    chat(t, "qwen2");
  }
  tpd_tokenizer_free(t);
  return 0;
}
