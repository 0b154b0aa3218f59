/* Fuzz target: the server's request bodies (launch/server/openai.c,
 * srv_parse_request) for /v1/completions and /v1/chat/completions.
 *
 * The first byte chooses the endpoint (odd: chat); the rest is the body.
 * The server state is a stub with only what parsing reads: a served name,
 * the context, the vocabulary, config.json's model_type and the tokenizer of
 * tests/fuzz/data (tpdecode-synth's, with tokenizer_config.json beside it).
 * On success the prompt has 1 to ctx-1 ids inside the vocabulary and
 * max_tokens fits the context; on failure the error is a 4xx with a message
 * and its JSON body builds and parses. */
#include <cjson/cJSON.h>

#include "launch/server/server.h"
#include "runtime/model/config.h"
#include "tests/fuzz/fuzz_util.h"

srv_state g_srv; /* openai.c's srv_req_unref reads the live list (empty here) */

static tpd_model_config g_cfg;

static void setup(void) {
  if (g_srv.tok) return;
  fz_quiet();
  /* fz_data_path returns one static buffer: copy the first path */
  char tj[4200];
  snprintf(tj, sizeof tj, "%s", fz_data_path("tokenizer.json"));
  tpd_status s = tpd_tokenizer_load_files(tj, fz_data_path("tokenizer_config.json"), &g_srv.tok);
  FZ_CHECK(s == TPD_OK, "the fixed tokenizer: %s", tpd_last_error());
  size_t n = 0;
  char *cfg = fz_data_file("config.json", &n);
  FZ_CHECK(tpd_config_parse(cfg, "config.json", &g_cfg) == TPD_OK, "the fixed config: %s", tpd_last_error());
  free(cfg);
  g_srv.served_name = "tiny";
  g_srv.cfg = &g_cfg;
  g_srv.ctx = 128;
  g_srv.vocab = g_cfg.vocab;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  setup();
  const int chat = data[0] & 1;
  srv_req *r = srv_req_new();
  FZ_CHECK(r != NULL, "out of memory");
  srv_error err;
  memset(&err, 0, sizeof err);
  /* the body as http.c passes it: bytes and a length (not NUL-terminated) */
  char *body = malloc(size - 1 ? size - 1 : 1);
  FZ_CHECK(body != NULL, "out of memory");
  memcpy(body, data + 1, size - 1);
  const int rc = srv_parse_request(&g_srv, chat, body, size - 1, r, &err);
  free(body);
  if (rc == 0) {
    FZ_CHECK(r->chat == chat, "chat %d", r->chat);
    FZ_CHECK(r->n_prompt >= 1 && r->n_prompt < g_srv.ctx, "n_prompt %d (ctx %d)", r->n_prompt, g_srv.ctx);
    for (int i = 0; i < r->n_prompt; i++)
      FZ_CHECK(r->prompt[i] >= 0 && r->prompt[i] < g_srv.vocab, "prompt[%d] = %d", i, r->prompt[i]);
    FZ_CHECK(r->rq.max_tokens >= 1 && r->n_prompt + r->rq.max_tokens <= g_srv.ctx, "max_tokens %d, prompt %d",
             r->rq.max_tokens, r->n_prompt);
    FZ_CHECK(r->n_stop >= 0 && r->n_stop <= TPD_MAX_STOP_STRINGS, "n_stop %d", r->n_stop);
    FZ_CHECK(r->top_logprobs >= 0 && r->top_logprobs <= TPD_MAX_TOP_LOGPROBS, "top_logprobs %d", r->top_logprobs);
  } else {
    FZ_CHECK(rc == -1, "rc %d", rc);
    FZ_CHECK(err.http >= 400 && err.http < 600, "http %d", err.http);
    /* the message goes out JSON-escaped, so a newline quoted from the body is harmless here */
    FZ_CHECK(err.message[0], "an error without a message");
    char *js = srv_error_json(&err);
    FZ_CHECK(js != NULL, "no error JSON");
    cJSON *back = cJSON_Parse(js);
    FZ_CHECK(back != NULL, "the error JSON does not parse: %s", js);
    cJSON_Delete(back);
    free(js);
  }
  srv_req_unref(r);
  return 0;
}
