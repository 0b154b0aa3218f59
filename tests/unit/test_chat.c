/* Chat templates (runtime/model/chat.c).
 *
 *   test_chat             checks that need no reference: the choice of format
 *                         (by template and by architecture), renders written
 *                         out by hand from the published formats, bad input
 *   test_chat REF.json    also: every conversation tests/unit/chat_ref.py
 *                         rendered with jinja2 and the published templates,
 *                         byte for byte (or the same refusal), and the
 *                         template rewrites it checked (recognised exactly
 *                         when Jinja renders them the same) */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/fileio.h"
#include "runtime/model/chat.h"
#include "tests/testutil.h"

static int one_line(const char *s) { return s[0] != '\0' && strchr(s, '\n') == NULL; }

/* Renders and compares with want (NULL: expects TPD_ERR_ARG naming needle). */
static void expect_render(tpd_chat_kind kind, const char *bos, const char *eos, const tpd_chat_message *m, int n,
                          int agp, const char *want, const char *needle, const char *what) {
  char *text = NULL;
  tpd_clear_error();
  const tpd_status st = tpd_chat_render(kind, bos, eos, m, n, agp, &text);
  if (want) {
    CHECK(st == TPD_OK, "%s: %s: %s", what, tpd_status_name(st), tpd_last_error());
    if (st == TPD_OK) CHECK(strcmp(text, want) == 0, "%s:\n  got  \"%s\"\n  want \"%s\"", what, text, want);
  } else {
    CHECK(st == TPD_ERR_ARG, "%s: %s, expected TPD_ERR_ARG", what, tpd_status_name(st));
    CHECK(text == NULL, "%s: text left set on failure", what);
    CHECK(one_line(tpd_last_error()), "%s: message not one line: '%s'", what, tpd_last_error());
    CHECK(strstr(tpd_last_error(), needle) != NULL, "%s: message '%s' does not name '%s'", what, tpd_last_error(),
          needle);
  }
  free(text);
}

static void check_choice(void) {
  tpd_chat_kind k = 0;
  CHECK_OK(tpd_chat_kind_for(NULL, "qwen2", 0, &k));
  CHECK(k == TPD_CHAT_CHATML, "qwen2 -> %s", tpd_chat_kind_name(k));
  CHECK_OK(tpd_chat_kind_for(NULL, "mistral", 0, &k));
  CHECK(k == TPD_CHAT_MISTRAL, "mistral -> %s", tpd_chat_kind_name(k));
  CHECK_OK(tpd_chat_kind_for(NULL, "llama", 1, &k));
  CHECK(k == TPD_CHAT_LLAMA3, "llama with header tokens -> %s", tpd_chat_kind_name(k));
  CHECK_OK(tpd_chat_kind_for(NULL, "llama", 0, &k));
  CHECK(k == TPD_CHAT_LLAMA2, "llama without header tokens -> %s", tpd_chat_kind_name(k));
  EXPECT_FAIL(tpd_chat_kind_for(NULL, "gpt2", 0, &k), TPD_ERR_UNSUPPORTED, "\"gpt2\"");
  EXPECT_FAIL(tpd_chat_kind_for(NULL, NULL, 0, &k), TPD_ERR_UNSUPPORTED, "no chat template");
  EXPECT_FAIL(tpd_chat_kind_for(NULL, "llama", 0, NULL), TPD_ERR_ARG, "out");

  /* a template is recognised only as a whole; markers name the family in the error */
  EXPECT_FAIL(tpd_chat_kind_for("{{ messages }}", "llama", 1, &k), TPD_ERR_UNSUPPORTED,
              "not recognised (\"{{ messages }}\")");
  const char *llama31 =
      "{{- bos_token }}\n{%- if messages[0]['role'] == 'system' %}\n"
      "    {%- set system_message = messages[0]['content'] %}\n{%- endif %}\n"
      "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}\n{{- 'Cutting Knowledge Date: December 2023\\n' }}"
      "{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
      " + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}";
  tpd_clear_error();
  CHECK(tpd_chat_kind_for(llama31, "llama", 1, &k) == TPD_ERR_UNSUPPORTED, "a Llama 3.1-like template was taken");
  CHECK(strstr(tpd_last_error(), "Llama 3's") && one_line(tpd_last_error()) && strlen(tpd_last_error()) < 400,
        "message: %s", tpd_last_error());
  CHECK(strstr(tpd_last_error(), "{{- bos_token }}\\n{%- if"), "the excerpt shows newlines as \\n: %s",
        tpd_last_error());
  EXPECT_FAIL(tpd_chat_kind_for("{% for m in messages %}<|im_start|>{{ m['content'] }}", NULL, 0, &k),
              TPD_ERR_UNSUPPORTED, "ChatML's");
  EXPECT_FAIL(tpd_chat_kind_for("[INST] {{ x }} <<SYS>>", NULL, 0, &k), TPD_ERR_UNSUPPORTED, "Llama 2's");
  EXPECT_FAIL(tpd_chat_kind_for("{{ bos_token }}[INST] {{ x", NULL, 0, &k), TPD_ERR_UNSUPPORTED, "Mistral's");
  EXPECT_FAIL(tpd_chat_kind_for("", "llama", 1, &k), TPD_ERR_UNSUPPORTED, "not recognised");
  /* a long excerpt stays whole characters */
  char longt[200];
  memset(longt, 0, sizeof longt);
  longt[0] = 'a';
  for (int i = 0; i < 40; i++) memcpy(longt + 1 + 3 * i, "\xe2\x82\xac", 3); /* 40 euro signs */
  tpd_clear_error();
  CHECK(tpd_chat_kind_for(longt, NULL, 0, &k) == TPD_ERR_UNSUPPORTED, "euros");
  const char *q = strchr(tpd_last_error(), '"'); /* 60 bytes end inside the 20th euro: it stays whole */
  CHECK(q && strncmp(q + 1, longt, 61) == 0 && strncmp(q + 62, "...\"", 4) == 0, "excerpt: %s", tpd_last_error());

  /* names */
  const tpd_chat_kind all[] = {TPD_CHAT_LLAMA2, TPD_CHAT_MISTRAL_V01, TPD_CHAT_MISTRAL_V02, TPD_CHAT_MISTRAL,
                               TPD_CHAT_LLAMA3, TPD_CHAT_CHATML,      TPD_CHAT_QWEN2};
  for (int i = 0; i < (int)(sizeof all / sizeof all[0]); i++) {
    tpd_chat_kind back = 0;
    CHECK_OK(tpd_chat_kind_from_name(tpd_chat_kind_name(all[i]), &back));
    CHECK(back == all[i], "%s round trip", tpd_chat_kind_name(all[i]));
  }
  CHECK(strcmp(tpd_chat_kind_name((tpd_chat_kind)0), "?") == 0, "kind 0 has a name");
  EXPECT_FAIL(tpd_chat_kind_from_name("vicuna", &k), TPD_ERR_ARG, "\"vicuna\"");
}

/* What the published formats give, written out by hand (independent of the
 * Python reference). */
static void check_renders(void) {
  const tpd_chat_message sua[] = {{"system", "S"}, {"user", "U"}, {"assistant", "A"}, {"user", "U2"}};
  const tpd_chat_message ua[] = {{"user", " U \n"}, {"assistant", "A"}, {"user", "U2"}};
  expect_render(TPD_CHAT_LLAMA3, "<|begin_of_text|>", "<|eot_id|>", sua, 2, 1,
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user"
                "<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                NULL, "llama3 system+user");
  expect_render(TPD_CHAT_LLAMA3, "<|begin_of_text|>", NULL, ua, 1, 0,
                "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>", NULL, "llama3 trims");
  expect_render(TPD_CHAT_LLAMA2, "<s>", "</s>", sua, 4, 1,
                "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U2 [/INST]", NULL, "llama2");
  expect_render(TPD_CHAT_MISTRAL_V01, "<s>", "</s>", ua, 3, 1, "<s>[INST]  U \n [/INST]A</s> [INST] U2 [/INST]", NULL,
                "mistral-v0.1");
  expect_render(TPD_CHAT_MISTRAL_V02, "<s>", "</s>", ua, 3, 0, "<s>[INST]  U \n [/INST]A</s>[INST] U2 [/INST]", NULL,
                "mistral-v0.2");
  expect_render(TPD_CHAT_MISTRAL, "<s>", "</s>", sua, 4, 1, "<s> [INST] S\n\nU [/INST] A</s> [INST] U2 [/INST]", NULL,
                "mistral");
  expect_render(TPD_CHAT_CHATML, NULL, "<|im_end|>", sua, 3, 1,
                "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
                "<|im_start|>assistant\n",
                NULL, "chatml");
  expect_render(TPD_CHAT_QWEN2, NULL, "<|im_end|>", ua + 2, 1, 1,
                "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n"
                "<|im_start|>assistant\n",
                NULL, "qwen2 default system");
  expect_render(TPD_CHAT_QWEN2, NULL, NULL, sua, 2, 0,
                "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n", NULL, "qwen2 own system");
  expect_render(TPD_CHAT_LLAMA2, "<s>", "</s>", sua, 1, 1, "", NULL, "llama2 system alone renders nothing");
}

static void check_bad_input(void) {
  const tpd_chat_message ok[] = {{"user", "u"}, {"assistant", "a"}};
  char *text = (char *)"untouched";
  EXPECT_FAIL(tpd_chat_render(TPD_CHAT_LLAMA3, "<s>", "</s>", ok, 0, 0, &text), TPD_ERR_ARG, "no messages");
  CHECK(text == NULL, "text not cleared");
  EXPECT_FAIL(tpd_chat_render(TPD_CHAT_LLAMA3, "<s>", "</s>", NULL, 1, 0, &text), TPD_ERR_ARG, "no messages");
  EXPECT_FAIL(tpd_chat_render(TPD_CHAT_LLAMA3, "<s>", "</s>", ok, 1, 0, NULL), TPD_ERR_ARG, "text is NULL");
  EXPECT_FAIL(tpd_chat_render((tpd_chat_kind)99, "<s>", "</s>", ok, 1, 0, &text), TPD_ERR_ARG, "chat format 99");
  const tpd_chat_kind all[] = {TPD_CHAT_LLAMA2, TPD_CHAT_MISTRAL_V01, TPD_CHAT_MISTRAL_V02, TPD_CHAT_MISTRAL,
                               TPD_CHAT_LLAMA3, TPD_CHAT_CHATML,      TPD_CHAT_QWEN2};
  for (int i = 0; i < (int)(sizeof all / sizeof all[0]); i++) {
    const tpd_chat_kind k = all[i];
    char what[96];
    const tpd_chat_message tool[] = {{"user", "u"}, {"tool", "t"}};
    snprintf(what, sizeof what, "%s: role tool", tpd_chat_kind_name(k));
    expect_render(k, "<s>", "</s>", tool, 2, 0, NULL, "chat message 1: role \"tool\"", what);
    const tpd_chat_message norole[] = {{NULL, "u"}};
    snprintf(what, sizeof what, "%s: NULL role", tpd_chat_kind_name(k));
    expect_render(k, "<s>", "</s>", norole, 1, 0, NULL, "chat message 0: role is NULL", what);
    const tpd_chat_message nocontent[] = {{"user", "u"}, {"assistant", NULL}};
    snprintf(what, sizeof what, "%s: NULL content", tpd_chat_kind_name(k));
    expect_render(k, "<s>", "</s>", nocontent, 2, 0, NULL, "chat message 1 (assistant): content is NULL", what);
    const char *bad[] = {"ok \xff", "ok \xc0\x80", "ok \xed\xa0\x80", "ok \xe2\x82", "ok \xf4\x90\x80\x80"};
    for (int b = 0; b < 5; b++) {
      const tpd_chat_message m[] = {{"user", bad[b]}};
      snprintf(what, sizeof what, "%s: invalid UTF-8 #%d", tpd_chat_kind_name(k), b);
      expect_render(k, "<s>", "</s>", m, 1, 0, NULL, "not valid UTF-8 at byte 3", what);
    }
  }
  /* the special tokens' text, where a format writes it */
  expect_render(TPD_CHAT_LLAMA3, NULL, "</s>", ok, 1, 0, NULL, "bos_token", "llama3 without bos");
  expect_render(TPD_CHAT_LLAMA2, NULL, "</s>", ok, 1, 0, NULL, "bos_token", "llama2 without bos");
  expect_render(TPD_CHAT_LLAMA2, "<s>", NULL, ok, 2, 0, NULL, "eos_token", "llama2 without eos");
  expect_render(TPD_CHAT_LLAMA2, "<s>", NULL, ok, 1, 0, "<s>[INST] u [/INST]", NULL, "llama2 user only, no eos");
  expect_render(TPD_CHAT_MISTRAL_V02, NULL, "</s>", ok, 1, 0, NULL, "bos_token", "mistral without bos");
  expect_render(TPD_CHAT_MISTRAL, "<s>", NULL, ok, 2, 0, NULL, "eos_token", "mistral without eos");
  /* roles the [INST] templates reject */
  const tpd_chat_message uu[] = {{"user", "a"}, {"user", "b"}};
  const tpd_chat_message us[] = {{"user", "a"}, {"system", "b"}};
  const tpd_chat_message su[] = {{"system", "a"}, {"user", "b"}};
  expect_render(TPD_CHAT_LLAMA2, "<s>", "</s>", uu, 2, 0, NULL, "chat message 1 (user)", "llama2 user user");
  expect_render(TPD_CHAT_LLAMA2, "<s>", "</s>", us, 2, 0, NULL, "chat message 1 (system)", "llama2 late system");
  expect_render(TPD_CHAT_MISTRAL, "<s>", "</s>", us, 2, 0, NULL, "chat message 1 (system)", "mistral late system");
  expect_render(TPD_CHAT_MISTRAL_V01, "<s>", "</s>", su, 2, 0, NULL, "has no system message", "mistral-v0.1 system");
  expect_render(TPD_CHAT_MISTRAL_V02, "<s>", "</s>", uu, 2, 0, NULL, "alternate", "mistral-v0.2 user user");
  /* the formats that take any order still do */
  expect_render(TPD_CHAT_CHATML, NULL, NULL, uu, 2, 0, "<|im_start|>user\na<|im_end|>\n<|im_start|>user\nb<|im_end|>\n",
                NULL, "chatml user user");
}

/* ---- against the jinja2 reference ---- */

static const char *str_or_null(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int first_diff(const char *a, const char *b) {
  int i = 0;
  while (a[i] && a[i] == b[i]) i++;
  return i;
}

static void check_reference(const char *path) {
  char *json = NULL;
  size_t n_bytes = 0;
  TU_TRY(tpd_read_text_file(path, &json, &n_bytes));
  cJSON *doc = cJSON_Parse(json);
  free(json);
  if (!doc) {
    CHECK(0, "%s: not JSON", path);
    return;
  }
  const cJSON *templates = cJSON_GetObjectItemCaseSensitive(doc, "templates");
  const cJSON *cases = cJSON_GetObjectItemCaseSensitive(doc, "cases");
  const cJSON *variants = cJSON_GetObjectItemCaseSensitive(doc, "variants");
  CHECK(cJSON_IsArray(templates) && cJSON_IsArray(cases) && cJSON_IsArray(variants), "%s: missing arrays", path);
  const int n_templates = cJSON_GetArraySize(templates);
  /* every template this file renders: recognised, as the format it names */
  const cJSON *t;
  cJSON_ArrayForEach(t, templates) {
    tpd_chat_kind want = 0, got = 0;
    CHECK_OK(tpd_chat_kind_from_name(str_or_null(t, "kind"), &want));
    CHECK_OK(tpd_chat_kind_for(str_or_null(t, "template"), "some-other-model", 0, &got));
    CHECK(got == want, "%s: recognised as %s, not %s", str_or_null(t, "name"), tpd_chat_kind_name(got),
          tpd_chat_kind_name(want));
  }
  int n_same = 0, n_raised = 0, n_div = 0, n_variants = 0, shown = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, cases) {
    const char *tname = str_or_null(c, "template");
    const cJSON *tt = NULL, *x;
    cJSON_ArrayForEach(x, templates) if (tname && strcmp(str_or_null(x, "name"), tname) == 0) tt = x;
    if (!tt) {
      CHECK(0, "case names an unknown template");
      continue;
    }
    tpd_chat_kind kind = 0;
    CHECK_OK(tpd_chat_kind_from_name(str_or_null(tt, "kind"), &kind));
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(c, "messages");
    const int n = cJSON_GetArraySize(msgs);
    tpd_chat_message *m = tu_malloc((size_t)(n ? n : 1) * sizeof *m);
    for (int i = 0; i < n; i++) {
      const cJSON *pair = cJSON_GetArrayItem(msgs, i);
      m[i].role = cJSON_GetArrayItem(pair, 0)->valuestring;
      m[i].content = cJSON_GetArrayItem(pair, 1)->valuestring;
    }
    const int agp = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt"));
    const char *want = str_or_null(c, "text");
    const int diverge = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "diverge"));
    char *text = NULL;
    tpd_clear_error();
    const tpd_status st = tpd_chat_render(kind, str_or_null(tt, "bos"), str_or_null(tt, "eos"), m, n, agp, &text);
    if (want && !diverge) {
      const int ok = st == TPD_OK && strcmp(text, want) == 0;
      CHECK(ok, "%s, %d messages, add_generation_prompt %d: %s", tname, n, agp,
            st != TPD_OK ? tpd_last_error() : "text differs");
      if (!ok && st == TPD_OK && shown++ < 5) {
        const int d = first_diff(text, want);
        fprintf(stderr, "  first difference at byte %d:\n  got  \"%.80s\"\n  want \"%.80s\"\n", d, text + d, want + d);
      }
      n_same += ok;
    } else {
      const int ok = st == TPD_ERR_ARG && one_line(tpd_last_error()) && strstr(tpd_last_error(), "chat message");
      CHECK(ok, "%s, %d messages: %s, the template %s", tname, n, st == TPD_OK ? "rendered" : tpd_last_error(),
            diverge ? "drops a message (refused on purpose)" : str_or_null(c, "error"));
      n_raised += ok && !diverge;
      n_div += ok && diverge;
    }
    free(text);
    free(m);
  }
  /* rewrites: recognised exactly when Jinja renders them the same */
  cJSON_ArrayForEach(c, variants) {
    tpd_chat_kind want = 0, got = 0;
    CHECK_OK(tpd_chat_kind_from_name(str_or_null(c, "kind"), &want));
    const int same = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "same"));
    tpd_clear_error();
    const tpd_status st = tpd_chat_kind_for(str_or_null(c, "template"), NULL, 0, &got);
    if (same)
      CHECK(st == TPD_OK && got == want, "a %s rewrite that renders the same was not recognised: %s",
            tpd_chat_kind_name(want), st == TPD_OK ? tpd_chat_kind_name(got) : tpd_last_error());
    else
      CHECK(st == TPD_ERR_UNSUPPORTED, "a %s rewrite that renders differently was taken for %s",
            tpd_chat_kind_name(want), tpd_chat_kind_name(got));
    n_variants++;
  }
  /* a file this small proves little: chat_ref.py writes thousands of cases */
  const int n_cases = cJSON_GetArraySize(cases);
  CHECK(n_templates >= 7 && n_cases >= 7 * 40 && n_variants >= 30, "%s: only %d templates, %d cases, %d rewrites",
        path, n_templates, n_cases, n_variants);
  printf("test_chat: %d templates; %d of %d cases identical to jinja2 byte for byte, %d refused as the template "
         "does, %d refused where the template drops a message; %d template rewrites\n",
         n_templates, n_same, n_cases, n_raised, n_div, n_variants);
  cJSON_Delete(doc);
}

int main(int argc, char **argv) {
  check_choice();
  check_renders();
  check_bad_input();
  if (argc > 1) check_reference(argv[1]);
  return tu_finish("test_chat");
}
