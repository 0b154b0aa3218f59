/* Bad input to the tokenizer: each malformed tokenizer.json or
 * tokenizer_config.json, unsupported type, bad id or bad text gives its
 * status and a one-line message naming the problem (never a crash, never a
 * silent fallback).  The files are variants of one small good tokenizer.json
 * written into DIR (argv[1]). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/base/fileio.h"
#include "runtime/model/tokenizer.h"
#include "tests/testutil.h"

static const char good[] =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
    "\"added_tokens\":[{\"id\":4,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true}],"
    "\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[4],"
    "\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
    "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,"
    "\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\xC4\xA0\":3,\"<s>\":4,\"\xC4\xA0" "ab\":5,\"\xC4\xA0" "a\":6},"
    "\"merges\":[\"\xC4\xA0 a\",[\"a\",\"b\"],[\"\xC4\xA0" "a\",\"b\"]]}}";

static const char *dir;
static char tok_path[4096], cfg_path[4096];

static void write_text(const char *path, const char *text) { TU_TRY(tpd_write_file(path, text, strlen(text))); }

/* the good file with one change: set obj.key (obj NULL: the top level) to the
 * JSON value `value`, or remove it when value is NULL */
static void write_variant(const char *obj, const char *key, const char *value) {
  cJSON *root = cJSON_Parse(good);
  cJSON *o = obj ? cJSON_GetObjectItem(root, obj) : root;
  cJSON_DeleteItemFromObject(o, key);
  if (value) cJSON_AddItemToObject(o, key, cJSON_Parse(value));
  char *s = cJSON_PrintUnformatted(root);
  write_text(tok_path, s);
  free(s);
  cJSON_Delete(root);
}

static void expect_load_fail(const char *cfg, tpd_status want, const char *needle) {
  tpd_tokenizer *t = NULL;
  if (cfg) write_text(cfg_path, cfg);
  EXPECT_FAIL(tpd_tokenizer_load_files(tok_path, cfg ? cfg_path : NULL, &t), want, needle);
  CHECK(t == NULL, "no tokenizer on failure (%s)", needle);
  CHECK(strchr(tpd_last_error(), '\n') == NULL, "one line: %s", tpd_last_error());
  tpd_tokenizer_free(t);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_tokenizer_bad DIR\n");
    return 2;
  }
  dir = argv[1];
  mkdir(dir, 0755);
  snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);
  snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);

  /* the good file works: "ab ab" -> <s> ab Ġab; decode round trip */
  write_text(tok_path, good);
  tpd_tokenizer *t = NULL;
  CHECK_OK(tpd_tokenizer_load_files(tok_path, NULL, &t));
  if (t) {
    int32_t *ids = NULL;
    int n = 0;
    CHECK_OK(tpd_tokenizer_encode(t, "ab ab", 5, 1, &ids, &n));
    CHECK(n == 3 && ids[0] == 4 && ids[1] == 2 && ids[2] == 5, "ids of \"ab ab\" (n %d)", n);
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(tpd_tokenizer_decode(t, ids, n, 1, &text, &len));
    CHECK(text && !strcmp(text, "ab ab"), "decode: %s", text ? text : "(null)");
    free(text);
    free(ids);
    CHECK(tpd_tokenizer_bos(t) == 4 && tpd_tokenizer_eos(t) == -1, "bos %d eos %d", tpd_tokenizer_bos(t),
          tpd_tokenizer_eos(t));
    EXPECT_FAIL(tpd_tokenizer_encode(t, "ab\xC3(", 4, 1, &ids, &n), TPD_ERR_ARG, "offset 2");
    int32_t bad[] = {0, 7};
    EXPECT_FAIL(tpd_tokenizer_decode(t, bad, 2, 0, &text, &len), TPD_ERR_TOKEN, "token id 7");
    tpd_tokenizer_free(t);
  }

  /* truncated, malformed, missing */
  char cut[sizeof good];
  memcpy(cut, good, sizeof good / 2);
  cut[sizeof good / 2] = 0;
  write_text(tok_path, cut);
  expect_load_fail(NULL, TPD_ERR_FORMAT, "truncated JSON");
  write_text(tok_path, "[1, 2]");
  expect_load_fail(NULL, TPD_ERR_FORMAT, "not a JSON object");
  {
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/no_such_dir", dir);
    EXPECT_FAIL(tpd_tokenizer_load(missing, &t), TPD_ERR_IO, "no_such_dir");
  }

  /* the model */
  write_variant("model", "type", "\"WordPiece\"");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "WordPiece");
  write_variant("model", "vocab", NULL);
  expect_load_fail(NULL, TPD_ERR_FORMAT, "model.vocab");
  write_variant(NULL, "model", NULL);
  expect_load_fail(NULL, TPD_ERR_FORMAT, "model");
  write_variant("model", "merges", "[[\"a\", \"q\"]]");
  expect_load_fail(NULL, TPD_ERR_FORMAT, "\"q\" is not in model.vocab");
  write_variant("model", "merges", "[\"ab\"]");
  expect_load_fail(NULL, TPD_ERR_FORMAT, "merges[0]");
  write_variant("model", "dropout", "0.1");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "dropout");
  write_variant("model", "continuing_subword_prefix", "\"##\"");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "continuing_subword_prefix");
  write_variant("model", "vocab", "{\"a\": -1}");
  expect_load_fail(NULL, TPD_ERR_FORMAT, "token id");
  /* a huge id in a small file (the id tables would run to it): refused, not gigabytes allocated */
  write_variant("model", "vocab", "{\"a\": 0, \"b\": 300000000}");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "300000000 is past 16777215");

  /* the pipeline */
  write_variant(NULL, "normalizer", "{\"type\": \"NFKC\"}");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "NFKC");
  write_variant(NULL, "normalizer", "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Lowercase\"}]}");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "Lowercase");
  /* a replacement that is not UTF-8 would put invalid UTF-8 into the text the regexes match unchecked
   * (the fuzzer's crash, tests/fuzz/regress/tokenizer/segv-invalid-utf8-in-replace-content) */
  write_variant(NULL, "normalizer", "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"x\xFFy\"}");
  expect_load_fail(NULL, TPD_ERR_FORMAT, "normalizer.content is not valid UTF-8 (byte 1)");
  write_variant(NULL, "pre_tokenizer", "{\"type\": \"Whitespace\"}");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "Whitespace");
  write_variant(NULL, "pre_tokenizer",
                "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"Sideways\"}");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "Sideways");
  write_variant(NULL, "pre_tokenizer",
                "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"}");
  expect_load_fail(NULL, TPD_ERR_FORMAT, "does not compile");
  write_variant(NULL, "pre_tokenizer", "{\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": \"odd\"}");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "prepend_scheme \"odd\"");
  write_variant(NULL, "decoder", "{\"type\": \"WordPiece\"}");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "decoder type \"WordPiece\"");
  write_variant(NULL, "post_processor", "{\"type\": \"RobertaProcessing\"}");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "RobertaProcessing");
  write_variant(NULL, "truncation", "{\"max_length\": 8}");
  expect_load_fail(NULL, TPD_ERR_UNSUPPORTED, "truncation");
  write_variant(NULL, "added_tokens", "[{\"id\": 9}]");
  expect_load_fail(NULL, TPD_ERR_FORMAT, "added_tokens[0]");

  /* tokenizer_config.json */
  write_text(tok_path, good);
  expect_load_fail("{\"add_bos_token\": true", TPD_ERR_FORMAT, "tokenizer_config.json");
  write_variant(NULL, "post_processor", NULL); /* no BOS from the template either */
  expect_load_fail("{\"add_bos_token\": true}", TPD_ERR_FORMAT, "add_bos_token is true but bos_token");
  write_text(tok_path, good);
  expect_load_fail("{\"bos_token\": \"<nope>\"}", TPD_ERR_FORMAT, "bos_token \"<nope>\"");
  expect_load_fail("{\"add_bos_token\": 1, \"bos_token\": \"<s>\"}", TPD_ERR_FORMAT, "add_bos_token");
  expect_load_fail("{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}]}", TPD_ERR_FORMAT, "default");

  /* add_bos_token false wins over the post-processor's <s>; true with eos */
  write_text(cfg_path, "{\"add_bos_token\": false, \"add_eos_token\": true, \"bos_token\": {\"content\": \"<s>\"},"
                       " \"eos_token\": \"ab\", \"chat_template\": \"T\"}");
  CHECK_OK(tpd_tokenizer_load_files(tok_path, cfg_path, &t));
  if (t) {
    int32_t *ids = NULL;
    int n = 0;
    CHECK_OK(tpd_tokenizer_encode(t, "b", 1, 1, &ids, &n));
    CHECK(n == 2 && ids[0] == 1 && ids[1] == 2, "add_bos_token false, add_eos_token true: n %d", n);
    free(ids);
    CHECK(tpd_tokenizer_bos(t) == 4 && tpd_tokenizer_eos(t) == 2, "bos %d eos %d", tpd_tokenizer_bos(t),
          tpd_tokenizer_eos(t));
    CHECK(tpd_tokenizer_chat_template(t) && !strcmp(tpd_tokenizer_chat_template(t), "T"), "chat_template");
    CHECK(tpd_tokenizer_bos_text(t) && !strcmp(tpd_tokenizer_bos_text(t), "<s>"), "bos_text");
    CHECK(tpd_tokenizer_token_id(t, "\xC4\xA0" "ab") == 5 && tpd_tokenizer_token_id(t, "zz") == -1, "token_id");
    tpd_tokenizer_free(t);
  }

  /* chat_template.jinja beside the files (transformers >= 4.43): taken when the config has none */
  char jinja[4096];
  snprintf(jinja, sizeof jinja, "%s/chat_template.jinja", dir);
  write_text(cfg_path, "{\"add_bos_token\": false}");
  write_text(jinja, "{{ messages }}J");
  t = NULL;
  CHECK_OK(tpd_tokenizer_load(dir, &t));
  CHECK(t && tpd_tokenizer_chat_template(t) && !strcmp(tpd_tokenizer_chat_template(t), "{{ messages }}J"),
        "chat_template.jinja not read");
  tpd_tokenizer_free(t);
  t = NULL;
  write_text(cfg_path, "{\"add_bos_token\": false, \"chat_template\": \"other\"}");
  EXPECT_FAIL(tpd_tokenizer_load(dir, &t), TPD_ERR_FORMAT, "differ");
  CHECK(t == NULL, "a tokenizer came back from a failed load");
  remove(jinja);
  return tu_finish("test_tokenizer_bad");
}
