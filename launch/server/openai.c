/* tpdecode-server: OpenAI request parsing and validation, response JSON. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "launch/server/server.h"
#include "runtime/model/chat.h"

void srv_error_set(srv_error *e, int http, const char *param, const char *code, const char *fmt, ...) {
  e->http = http;
  e->type = http == 400 ? "invalid_request_error" : http == 429 ? "rate_limit_error" : "server_error";
  e->code = code;
  snprintf(e->param, sizeof e->param, "%s", param ? param : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
}

static cJSON *error_obj(const char *message, const char *type, const char *param, const char *code) {
  cJSON *root = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(root, "error");
  cJSON_AddStringToObject(o, "message", message);
  cJSON_AddStringToObject(o, "type", type);
  if (param && *param)
    cJSON_AddStringToObject(o, "param", param);
  else
    cJSON_AddNullToObject(o, "param");
  if (code)
    cJSON_AddStringToObject(o, "code", code);
  else
    cJSON_AddNullToObject(o, "code");
  return root;
}

char *srv_error_json(const srv_error *e) {
  cJSON *root = error_obj(e->message, e->type, e->param, e->code);
  char *s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return s;
}

char *srv_models_json(srv_state *s) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "object", "list");
  cJSON *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "id", s->served_name);
  cJSON_AddStringToObject(m, "object", "model");
  cJSON_AddNumberToObject(m, "created", 0);
  cJSON_AddStringToObject(m, "owned_by", "tpdecode");
  cJSON_AddNumberToObject(m, "max_model_len", s->ctx);
  cJSON *arr = cJSON_AddArrayToObject(root, "data");
  cJSON_AddItemToArray(arr, m);
  char *out = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return out;
}

srv_req *srv_req_new(void) {
  srv_req *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  pthread_cond_init(&r->cv, NULL);
  tpd_request_init(&r->rq);
  r->refs = 1;
  r->fd = -1;
  return r;
}

void srv_req_unref(srv_req *r) {
  if (--r->refs > 0)
    return;
  if (r->prev)
    r->prev->next = r->next;
  else if (g_srv.live == r)
    g_srv.live = r->next;
  if (r->next)
    r->next->prev = r->prev;
  for (int i = 0; i < r->n_stop; i++)
    free(r->stop[i]);
  free(r->stop);
  free(r->prompt);
  srv_buf_free(&r->out);
  srv_buf_free(&r->text);
  cJSON_Delete((cJSON *)r->lp);
  pthread_cond_destroy(&r->cv);
  free(r);
}

/* ---- request parsing ---- */

static int is_int(const cJSON *v) {
  return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
         fabs(v->valuedouble) < 9.0e15;
}

static int bad(srv_error *err, const char *param, const char *fmt, const char *what) {
  srv_error_set(err, 400, param, NULL, fmt, what);
  return -1;
}

static int parse_stop(const cJSON *v, srv_req *r, srv_error *err) {
  if (cJSON_IsNull(v))
    return 0;
  const int one = cJSON_IsString(v);
  if (!one && !cJSON_IsArray(v))
    return bad(err, "stop", "'%s' must be a string or an array of strings", "stop");
  const int n = one ? 1 : cJSON_GetArraySize(v);
  if (n > TPD_MAX_STOP_STRINGS) {
    srv_error_set(err, 400, "stop", NULL, "'stop' has %d strings; at most %d", n, TPD_MAX_STOP_STRINGS);
    return -1;
  }
  r->stop = calloc((size_t)n + 1, sizeof *r->stop);
  if (!r->stop)
    return bad(err, "stop", "%s: out of memory", "stop");
  for (int i = 0; i < n; i++) {
    const cJSON *x = one ? v : cJSON_GetArrayItem(v, i);
    if (!cJSON_IsString(x))
      return bad(err, "stop", "'%s' must be a string or an array of strings", "stop");
    const size_t len = strlen(x->valuestring);
    if (len == 0 || len > TPD_MAX_STOP_STRING_LEN) {
      srv_error_set(err, 400, "stop", NULL, "each stop string must have 1 to %d bytes", TPD_MAX_STOP_STRING_LEN);
      return -1;
    }
    if (!(r->stop[r->n_stop++] = strdup(x->valuestring)))
      return bad(err, "stop", "%s: out of memory", "stop");
  }
  return 0;
}

static int parse_prompt(srv_state *s, const cJSON *v, srv_req *r, srv_error *err) {
  if (cJSON_IsString(v)) {
    if (tpd_tokenizer_encode(s->tok, v->valuestring, strlen(v->valuestring), 1, &r->prompt, &r->n_prompt) != TPD_OK) {
      srv_error_set(err, 400, "prompt", NULL, "'prompt': %s", tpd_last_error());
      return -1;
    }
    return 0;
  }
  if (!cJSON_IsArray(v))
    return bad(err, "prompt", "'%s' must be a string or an array of token ids", "prompt");
  const int n = cJSON_GetArraySize(v);
  r->prompt = malloc(sizeof *r->prompt * (size_t)(n + 1));
  if (!r->prompt)
    return bad(err, "prompt", "%s: out of memory", "prompt");
  for (int i = 0; i < n; i++) {
    const cJSON *x = cJSON_GetArrayItem(v, i);
    if (!is_int(x))
      return bad(err, "prompt", "'%s' must be a string or an array of token ids (integers)", "prompt");
    if (x->valuedouble < 0 || x->valuedouble >= s->vocab) {
      srv_error_set(err, 400, "prompt", NULL,
                    "'prompt' token id %.0f at index %d is outside the "
                    "vocabulary [0, %d)",
                    x->valuedouble, i, s->vocab);
      return -1;
    }
    r->prompt[i] = (int32_t)x->valuedouble;
  }
  r->n_prompt = n;
  return 0;
}

static int parse_messages(srv_state *s, const cJSON *v, srv_req *r, srv_error *err) {
  if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) < 1)
    return bad(err, "messages", "'%s' must be a non-empty array of {role, content} objects", "messages");
  const int n = cJSON_GetArraySize(v);
  tpd_chat_message *m = calloc((size_t)n, sizeof *m);
  if (!m)
    return bad(err, "messages", "%s: out of memory", "messages");
  for (int i = 0; i < n; i++) {
    const cJSON *x = cJSON_GetArrayItem(v, i), *f;
    const cJSON *role = NULL, *content = NULL, *obj = cJSON_IsObject(x) ? x : NULL;
    /* role and content once each; any other field (name, tool_calls, ...)
     * changes what the model should see, so it is an error unless null */
    cJSON_ArrayForEach(f, obj) {
      const int is_role = !strcmp(f->string, "role"), is_content = !strcmp(f->string, "content");
      if ((is_role && role) || (is_content && content)) {
        free(m);
        srv_error_set(err, 400, "messages", NULL, "messages[%d] has '%s' twice", i, f->string);
        return -1;
      }
      if (is_role)
        role = f;
      else if (is_content)
        content = f;
      else if (!cJSON_IsNull(f)) {
        free(m);
        srv_error_set(err, 400, "messages", NULL, "messages[%d].%.60s is not supported (only role and content)", i,
                      f->string);
        return -1;
      }
    }
    if (!cJSON_IsObject(x) || !cJSON_IsString(role) || !cJSON_IsString(content)) {
      free(m);
      srv_error_set(err, 400, "messages", NULL, "messages[%d] must be an object with string 'role' and 'content'", i);
      return -1;
    }
    if (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
        strcmp(role->valuestring, "assistant")) {
      free(m);
      srv_error_set(err, 400, "messages", NULL, "messages[%d].role '%.40s': expected system, user or assistant", i,
                    role->valuestring);
      return -1;
    }
    m[i].role = role->valuestring;
    m[i].content = content->valuestring;
  }
  tpd_chat_kind kind;
  char *text = NULL;
  tpd_status st = tpd_chat_kind_for(tpd_tokenizer_chat_template(s->tok), s->cfg->model_type,
                                    tpd_tokenizer_token_id(s->tok, "<|start_header_id|>") >= 0, &kind);
  if (st == TPD_OK)
    st = tpd_chat_render(kind, tpd_tokenizer_bos_text(s->tok), tpd_tokenizer_eos_text(s->tok), m, n, 1, &text);
  free(m);
  /* a rendered chat holds its special tokens as text: nothing more is added */
  if (st == TPD_OK)
    st = tpd_tokenizer_encode(s->tok, text, strlen(text), 0, &r->prompt, &r->n_prompt);
  free(text);
  if (st != TPD_OK) {
    srv_error_set(err, 400, "messages", NULL, "'messages': %s", tpd_last_error());
    return -1;
  }
  return 0;
}

/* The top-level fields either endpoint knows (each may come once; a field
 * the endpoint does not take is still "unsupported" below). */
static const char *const FIELDS[] = {
    "model", "messages", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "logprobs",
    "top_logprobs", "n", "stream", "ignore_eos", "echo", "stream_options", "presence_penalty", "frequency_penalty",
    "user", "logit_bias", "best_of", "suffix", "tools", "tool_choice", "response_format"};
enum { N_FIELDS = sizeof FIELDS / sizeof FIELDS[0] };

static int field_index(const char *k) {
  if (!strcmp(k, "max_completion_tokens"))
    return 3; /* the same setting as max_tokens: one of them, once */
  for (int i = 0; i < N_FIELDS; i++)
    if (!strcmp(FIELDS[i], k))
      return i;
  return -1;
}

/* Whether v is the value of an unimplemented field that means "off" (then
 * it is accepted and ignored); k names the field. */
static int is_off(const char *k, const cJSON *v, int chat) {
  if (cJSON_IsNull(v))
    return !strcmp(k, "logit_bias") || (!chat && (!strcmp(k, "best_of") || !strcmp(k, "suffix"))) ||
           (chat && (!strcmp(k, "tools") || !strcmp(k, "tool_choice") || !strcmp(k, "response_format")));
  if (!strcmp(k, "logit_bias"))
    return cJSON_IsObject(v) && !v->child;
  if (!chat && !strcmp(k, "best_of"))
    return is_int(v) && v->valuedouble == 1;
  if (!chat && !strcmp(k, "suffix"))
    return cJSON_IsString(v) && !v->valuestring[0];
  if (chat && !strcmp(k, "tools"))
    return cJSON_IsArray(v) && !v->child;
  if (chat && !strcmp(k, "tool_choice"))
    return cJSON_IsString(v) && !strcmp(v->valuestring, "none");
  if (chat && !strcmp(k, "response_format")) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
    return cJSON_IsObject(v) && cJSON_GetArraySize(v) == 1 && cJSON_IsString(t) && !strcmp(t->valuestring, "text");
  }
  return 0;
}

/* Whether a JSON text holds the escape \u0000 (or a raw NUL byte): cJSON
 * would end the string there (C strings), silently cutting a prompt, message
 * or stop string. */
static int has_nul_escape(const char *p, size_t n) {
  if (memchr(p, 0, n))
    return 1; /* a raw NUL byte: not JSON, and it would cut the same way */
  for (size_t i = 0; i + 1 < n; i++)
    if (p[i] == '\\') {
      if (p[i + 1] == 'u' && i + 5 < n && !memcmp(p + i + 2, "0000", 4))
        return 1;
      i++; /* the escaped character: "\\u0000" is a backslash and text */
    }
  return 0;
}

int srv_parse_request(srv_state *s, int chat, const char *body, size_t len, srv_req *r, srv_error *err) {
  if (has_nul_escape(body, len)) {
    srv_error_set(err, 400, NULL, NULL, "strings with a NUL character (\\u0000) are not supported");
    return -1;
  }
  cJSON *root = cJSON_ParseWithLength(body, len);
  int rc = -1;
  if (!root) {
    srv_error_set(err, 400, NULL, NULL, "the body is not valid JSON");
    return -1;
  }
  if (!cJSON_IsObject(root)) {
    srv_error_set(err, 400, NULL, NULL, "the body must be a JSON object");
    goto out;
  }
  r->chat = chat;
  const cJSON *model = NULL, *input = NULL, *v;
  long max_tokens = -1;
  double temperature = 1.0, top_p = 1.0;
  long top_k = 0, n = 1, lp = -1, top_lp = -1;
  int have_seed = 0, stream_options = 0;
  unsigned char seen[N_FIELDS] = {0};
  cJSON_ArrayForEach(v, root) {
    const char *k = v->string;
    const int fi = field_index(k);
    if (fi >= 0 && seen[fi]) {
      /* JSON parsers disagree on which copy wins: refuse to guess */
      srv_error_set(err, 400, k, NULL, "'%.60s' is given twice%s", k,
                    fi == 3 ? " (max_tokens and max_completion_tokens are one setting)" : "");
      goto out;
    }
    if (fi >= 0)
      seen[fi] = 1;
    if (!strcmp(k, "model")) {
      if (!cJSON_IsString(v)) {
        bad(err, k, "'%s' must be a string", k);
        goto out;
      }
      model = v;
    } else if (!strcmp(k, chat ? "messages" : "prompt")) {
      input = v;
    } else if (!strcmp(k, "max_tokens") || (chat && !strcmp(k, "max_completion_tokens"))) {
      if (cJSON_IsNull(v))
        continue;
      if (!is_int(v)) {
        bad(err, k, "'%s' must be an integer", k);
        goto out;
      }
      if (v->valuedouble < 1) {
        bad(err, k, "'%s' must be at least 1", k);
        goto out;
      }
      max_tokens = v->valuedouble > 1e9 ? 1000000000L : (long)v->valuedouble;
    } else if (!strcmp(k, "temperature") || !strcmp(k, "top_p")) {
      if (cJSON_IsNull(v))
        continue;
      if (!cJSON_IsNumber(v)) {
        bad(err, k, "'%s' must be a number", k);
        goto out;
      }
      const double x = v->valuedouble;
      if (!strcmp(k, "temperature")) {
        if (!(x >= 0 && x <= 2)) {
          bad(err, k, "'%s' must be in [0, 2]", k);
          goto out;
        }
        temperature = x;
      } else {
        if (!(x > 0 && x <= 1)) {
          bad(err, k, "'%s' must be in (0, 1]", k);
          goto out;
        }
        top_p = x;
      }
    } else if (!strcmp(k, "top_k")) {
      if (cJSON_IsNull(v))
        continue;
      if (!is_int(v) || v->valuedouble < -1) {
        bad(err, k, "'%s' must be an integer >= -1 (-1 or 0: off)", k);
        goto out;
      }
      top_k = v->valuedouble > 1e9 ? 0 : (long)v->valuedouble;
    } else if (!strcmp(k, "seed")) {
      if (cJSON_IsNull(v))
        continue;
      if (!is_int(v)) {
        bad(err, k, "'%s' must be an integer", k);
        goto out;
      }
      r->rq.sampling.seed = (uint64_t)(int64_t)v->valuedouble;
      have_seed = 1;
    } else if (!strcmp(k, "stop")) {
      if (parse_stop(v, r, err))
        goto out;
    } else if (!strcmp(k, "logprobs")) {
      if (cJSON_IsNull(v))
        continue;
      if (chat) {
        if (!cJSON_IsBool(v)) {
          bad(err, k, "'%s' must be a boolean", k);
          goto out;
        }
        lp = cJSON_IsTrue(v);
      } else {
        if (!is_int(v) || v->valuedouble < 0 || v->valuedouble > TPD_MAX_TOP_LOGPROBS) {
          srv_error_set(err, 400, k, NULL, "'logprobs' must be an integer in [0, %d]", TPD_MAX_TOP_LOGPROBS);
          goto out;
        }
        lp = (long)v->valuedouble;
      }
    } else if (chat && !strcmp(k, "top_logprobs")) {
      if (cJSON_IsNull(v))
        continue;
      if (!is_int(v) || v->valuedouble < 0 || v->valuedouble > TPD_MAX_TOP_LOGPROBS) {
        srv_error_set(err, 400, k, NULL, "'top_logprobs' must be an integer in [0, %d]", TPD_MAX_TOP_LOGPROBS);
        goto out;
      }
      top_lp = (long)v->valuedouble;
    } else if (!strcmp(k, "n")) {
      if (cJSON_IsNull(v))
        continue;
      if (!is_int(v)) {
        bad(err, k, "'%s' must be an integer", k);
        goto out;
      }
      n = (long)v->valuedouble;
    } else if (!strcmp(k, "stream") || !strcmp(k, "ignore_eos") || (!chat && !strcmp(k, "echo"))) {
      if (cJSON_IsNull(v))
        continue;
      if (!cJSON_IsBool(v)) {
        bad(err, k, "'%s' must be a boolean", k);
        goto out;
      }
      if (!strcmp(k, "stream"))
        r->stream = cJSON_IsTrue(v);
      else if (!strcmp(k, "ignore_eos"))
        r->rq.ignore_eos = cJSON_IsTrue(v);
      else if (cJSON_IsTrue(v)) {
        bad(err, k, "'%s': true is not supported", k);
        goto out;
      }
    } else if (!strcmp(k, "stream_options")) {
      if (cJSON_IsNull(v))
        continue;
      if (!cJSON_IsObject(v)) {
        bad(err, k, "'%s' must be an object with a boolean include_usage", k);
        goto out;
      }
      const cJSON *iu = NULL, *f;
      cJSON_ArrayForEach(f, v) {
        if (strcmp(f->string, "include_usage") || iu) {
          srv_error_set(err, 400, k, NULL, "'stream_options.%.60s' is %s", f->string,
                        iu ? "given twice" : "not supported (only include_usage)");
          goto out;
        }
        iu = f;
        if (!cJSON_IsBool(iu) && !cJSON_IsNull(iu)) {
          bad(err, k, "'%s' must be an object with a boolean include_usage", k);
          goto out;
        }
      }
      r->include_usage = cJSON_IsTrue(iu);
      stream_options = 1;
    } else if (!strcmp(k, "presence_penalty") || !strcmp(k, "frequency_penalty")) {
      if (cJSON_IsNull(v))
        continue;
      if (!cJSON_IsNumber(v)) {
        bad(err, k, "'%s' must be a number", k);
        goto out;
      }
      if (v->valuedouble != 0) {
        bad(err, k, "'%s' other than 0 is not supported", k);
        goto out;
      }
    } else if (!strcmp(k, "user")) {
      if (!cJSON_IsString(v) && !cJSON_IsNull(v)) {
        bad(err, k, "'%s' must be a string", k);
        goto out;
      }
    } else if (!is_off(k, v, chat)) {
      const cJSON nul = {.type = cJSON_NULL};
      srv_error_set(err, 400, k, NULL, "unsupported field '%.60s'%s", k,
                    is_off(k, &nul, chat) ? " (only its \"off\" value is accepted)" : "");
      goto out;
    }
  }
  if (!model) {
    bad(err, "model", "'%s' is required", "model");
    goto out;
  }
  if (strcmp(model->valuestring, s->served_name)) {
    srv_error_set(err, 400, "model", "model_not_found",
                  "the model '%.200s' does not exist (this server serves '%.200s')", model->valuestring,
                  s->served_name);
    goto out;
  }
  if (n != 1) {
    bad(err, "n", "'%s' must be 1", "n");
    goto out;
  }
  if (stream_options && !r->stream) {
    bad(err, "stream_options", "'%s' needs stream: true", "stream_options");
    goto out;
  }
  if (chat) {
    if (top_lp > 0 && lp != 1) {
      bad(err, "top_logprobs", "'%s' needs logprobs: true", "top_logprobs");
      goto out;
    }
    r->want_logprobs = lp == 1;
    r->top_logprobs = top_lp > 0 ? (int)top_lp : 0;
  } else {
    r->want_logprobs = lp >= 0;
    r->top_logprobs = lp > 0 ? (int)lp : 0;
  }
  const char *in_name = chat ? "messages" : "prompt";
  if (!input) {
    bad(err, in_name, "'%s' is required", in_name);
    goto out;
  }
  if (chat ? parse_messages(s, input, r, err) : parse_prompt(s, input, r, err))
    goto out;
  if (r->n_prompt < 1) {
    bad(err, in_name, "'%s' gives no tokens", in_name);
    goto out;
  }
  if (r->n_prompt >= s->ctx) {
    srv_error_set(err, 400, in_name, "context_length_exceeded",
                  "the prompt has %d tokens; the context is %d tokens, and at "
                  "least one must be left to generate",
                  r->n_prompt, s->ctx);
    goto out;
  }
  if (max_tokens < 0)
    max_tokens = chat ? s->ctx - r->n_prompt : (16 < s->ctx - r->n_prompt ? 16 : s->ctx - r->n_prompt);
  if (r->n_prompt + max_tokens > s->ctx) {
    srv_error_set(err, 400, "max_tokens", "context_length_exceeded",
                  "max_tokens %ld with a prompt of %d tokens passes the "
                  "context of %d tokens",
                  max_tokens, r->n_prompt, s->ctx);
    goto out;
  }
  r->rq.prompt = r->prompt;
  r->rq.n_prompt = r->n_prompt;
  r->rq.max_tokens = (int)max_tokens;
  r->rq.sampling.temperature = (float)temperature;
  r->rq.sampling.top_p = (float)top_p;
  r->rq.sampling.top_k = top_k > 0 ? (int)top_k : 0;
  r->rq.seed_only = have_seed; /* the same seed and prompt give the same tokens */
  r->rq.logprobs = r->want_logprobs ? 1 + r->top_logprobs : 0;
  r->rq.stop_strings = (const char *const *)r->stop;
  r->rq.n_stop_strings = r->n_stop;
  r->rq.skip_special = 1;
  r->created = (long)time(NULL);
  rc = 0;
out:
  cJSON_Delete(root);
  return rc;
}

/* ---- responses ---- */

/* A JSON string of n bytes of UTF-8 (which may hold NUL: cJSON strings
 * cannot), as a raw item printed as is. */
static cJSON *json_str(const char *p, size_t n) {
  srv_buf b = {0};
  srv_buf_add(&b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    const unsigned char ch = (unsigned char)p[i];
    char esc[8];
    if (ch == '"' || ch == '\\')
      esc[0] = '\\', esc[1] = (char)ch, esc[2] = 0;
    else if (ch == '\n')
      strcpy(esc, "\\n");
    else if (ch == '\t')
      strcpy(esc, "\\t");
    else if (ch == '\r')
      strcpy(esc, "\\r");
    else if (ch < 0x20 || ch == 0x7f)
      snprintf(esc, sizeof esc, "\\u%04x", ch);
    else
      esc[0] = (char)ch, esc[1] = 0;
    srv_buf_add(&b, esc, strlen(esc));
  }
  srv_buf_add(&b, "\"", 1);
  cJSON *item = cJSON_CreateRaw(b.p ? b.p : "\"\"");
  srv_buf_free(&b);
  return item;
}

/* The text of one token (for logprobs); "" when the tokenizer has none. */
static char *token_text_n(int32_t id, size_t *len) {
  char *t = NULL;
  size_t n = 0;
  *len = 0;
  tpd_error_state saved;
  tpd_error_save(&saved);
  if (id < 0 || tpd_tokenizer_decode(g_srv.tok, &id, 1, 0, &t, &n) != TPD_OK) {
    tpd_error_restore(&saved);
    free(t);
    return strdup("");
  }
  *len = n;
  return t;
}

static double finite_or(double x, double alt) { return isfinite(x) ? x : alt; }

/* A token's UTF-8 bytes (chat logprobs' "bytes"), or null when its text has
 * U+FFFD: a token that holds part of a character decodes alone to U+FFFD,
 * and its own bytes are not known here, so none are claimed. */
static cJSON *bytes_of(const char *s, size_t n) {
  for (size_t i = 0; i + 2 < n; i++)
    if ((unsigned char)s[i] == 0xEF && (unsigned char)s[i + 1] == 0xBF && (unsigned char)s[i + 2] == 0xBD)
      return cJSON_CreateNull();
  cJSON *a = cJSON_CreateArray();
  for (size_t i = 0; i < n; i++)
    cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)s[i]));
  return a;
}

/* Adds one token's log-probabilities to lp: completions {tokens,
 * token_logprobs, top_logprobs, text_offset}; chat {content: [...]}. */
static void add_logprob(srv_req *r, cJSON *lp, const tpd_sched_event *ev) {
  size_t tn = 0, an = 0;
  char *t = token_text_n(ev->token, &tn);
  const double l = finite_or(ev->out.logprob, -9999.0);
  if (r->chat) {
    cJSON *content = cJSON_GetObjectItemCaseSensitive(lp, "content");
    if (!content)
      content = cJSON_AddArrayToObject(lp, "content");
    cJSON *e = cJSON_CreateObject();
    cJSON_AddItemToObject(e, "token", json_str(t, tn));
    cJSON_AddNumberToObject(e, "logprob", l);
    cJSON_AddItemToObject(e, "bytes", bytes_of(t, tn));
    cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
    for (int i = 0; i < ev->out.n_top && i < r->top_logprobs; i++) {
      char *a = token_text_n(ev->out.top_ids[i], &an);
      cJSON *x = cJSON_CreateObject();
      cJSON_AddItemToObject(x, "token", json_str(a, an));
      cJSON_AddNumberToObject(x, "logprob", finite_or(ev->out.top_logprobs[i], -9999.0));
      cJSON_AddItemToObject(x, "bytes", bytes_of(a, an));
      cJSON_AddItemToArray(top, x);
      free(a);
    }
    cJSON_AddItemToArray(content, e);
  } else {
    const char *names[4] = {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
    cJSON *arr[4];
    for (int i = 0; i < 4; i++) {
      arr[i] = cJSON_GetObjectItemCaseSensitive(lp, names[i]);
      if (!arr[i])
        arr[i] = cJSON_AddArrayToObject(lp, names[i]);
    }
    cJSON_AddItemToArray(arr[0], json_str(t, tn));
    cJSON_AddItemToArray(arr[1], cJSON_CreateNumber(l));
    cJSON *top = cJSON_CreateObject();
    for (int i = 0; i < ev->out.n_top && i < r->top_logprobs; i++) {
      char *a = token_text_n(ev->out.top_ids[i], &an);
      if (!cJSON_GetObjectItemCaseSensitive(top, a))
        cJSON_AddNumberToObject(top, a, finite_or(ev->out.top_logprobs[i], -9999.0));
      free(a);
    }
    cJSON_AddItemToArray(arr[2], top);
    cJSON_AddItemToArray(arr[3], cJSON_CreateNumber((double)r->text_offset));
  }
  free(t);
}

static cJSON *response_head(srv_req *r, const char *object) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "id", r->id);
  cJSON_AddStringToObject(root, "object", object);
  cJSON_AddNumberToObject(root, "created", (double)r->created);
  cJSON_AddStringToObject(root, "model", g_srv.served_name);
  return root;
}

static void add_usage(cJSON *root, int n_prompt, int n_out) {
  cJSON *u = cJSON_AddObjectToObject(root, "usage");
  cJSON_AddNumberToObject(u, "prompt_tokens", n_prompt);
  cJSON_AddNumberToObject(u, "completion_tokens", n_out);
  cJSON_AddNumberToObject(u, "total_tokens", n_prompt + n_out);
}

static const char *finish_name(tpd_finish_reason f) {
  return f == TPD_FINISH_LENGTH ? "length" : (f == TPD_FINISH_EOS || f == TPD_FINISH_STOP) ? "stop" : NULL;
}

static void sse_add(srv_req *r, cJSON *root) {
  char *s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!s)
    return;
  srv_buf_add(&r->out, "data: ", 6);
  srv_buf_add(&r->out, s, strlen(s));
  srv_buf_add(&r->out, "\n\n", 2);
  free(s);
}

/* One streamed chunk: text (may be empty), this token's logprobs, finish. */
static void stream_chunk(srv_req *r, const tpd_sched_event *ev, const char *text, size_t len, int with_token,
                         const char *finish) {
  cJSON *root = response_head(r, r->chat ? "chat.completion.chunk" : "text_completion");
  cJSON *choices = cJSON_AddArrayToObject(root, "choices"), *c = cJSON_CreateObject();
  cJSON_AddNumberToObject(c, "index", 0);
  if (!text)
    text = "", len = 0;
  if (r->chat) {
    cJSON *d = cJSON_AddObjectToObject(c, "delta");
    if (with_token && r->n_out == 1)
      cJSON_AddStringToObject(d, "role", "assistant");
    if (with_token || len)
      cJSON_AddItemToObject(d, "content", json_str(text, len));
  } else {
    cJSON_AddItemToObject(c, "text", json_str(text, len));
  }
  if (with_token && r->want_logprobs) {
    cJSON *lp = cJSON_CreateObject();
    add_logprob(r, lp, ev);
    cJSON_AddItemToObject(c, "logprobs", lp);
  } else {
    cJSON_AddNullToObject(c, "logprobs");
  }
  if (finish)
    cJSON_AddStringToObject(c, "finish_reason", finish);
  else
    cJSON_AddNullToObject(c, "finish_reason");
  cJSON_AddItemToArray(choices, c);
  sse_add(r, root);
}

void srv_on_event(void *cb_user, const tpd_sched_event *ev) {
  (void)cb_user;
  srv_req *r = (srv_req *)ev->user;
  pthread_mutex_lock(&g_srv.mu);
  const int done = ev->finish != TPD_FINISH_NONE;
  const char *fin = done ? finish_name(ev->finish) : NULL;
  if (ev->token >= 0)
    r->n_out++;
  if (r->stream && !r->http_gone) {
    if (ev->token >= 0)
      stream_chunk(r, ev, ev->text, ev->text_len, 1, NULL);
    else if (ev->text_len)
      stream_chunk(r, ev, ev->text, ev->text_len, 0, NULL);
    if (done && fin) {
      stream_chunk(r, ev, "", 0, 0, fin);
      if (r->include_usage) {
        cJSON *root = response_head(r, r->chat ? "chat.completion.chunk" : "text_completion");
        cJSON_AddArrayToObject(root, "choices");
        add_usage(root, ev->stats.n_prompt, ev->stats.n_output);
        sse_add(r, root);
      }
    } else if (done) {
      char msg[300];
      snprintf(msg, sizeof msg, "%s",
               ev->finish == TPD_FINISH_CANCELLED ? "the request was cancelled (server shutting down)"
                                                  : tpd_status_name(ev->status));
      cJSON *e = error_obj(msg, "server_error", NULL, NULL);
      sse_add(r, e);
    }
    if (done)
      srv_buf_add(&r->out, "data: [DONE]\n\n", 14);
  } else if (!r->stream) {
    if (ev->text_len)
      srv_buf_add(&r->text, ev->text, ev->text_len);
    if (ev->token >= 0 && r->want_logprobs) {
      if (!r->lp)
        r->lp = cJSON_CreateObject();
      add_logprob(r, (cJSON *)r->lp, ev);
    }
  }
  r->text_offset += ev->text_len;
  if (done) {
    r->finished = 1;
    r->finish = ev->finish;
    r->status = ev->status;
    r->n_out = ev->stats.n_output;
    r->n_prompt = ev->stats.n_prompt;
    if (!fin)
      snprintf(r->errmsg, sizeof r->errmsg, "%s",
               ev->finish == TPD_FINISH_CANCELLED ? "the request was cancelled (server shutting down)"
                                                  : tpd_status_name(ev->status));
    srv_metrics_finished(ev);
  }
  pthread_cond_broadcast(&r->cv);
  if (done)
    srv_req_unref(r); /* the engine's reference */
  pthread_mutex_unlock(&g_srv.mu);
}

char *srv_final_json(srv_state *s, srv_req *r) {
  (void)s;
  cJSON *root = response_head(r, r->chat ? "chat.completion" : "text_completion");
  cJSON *choices = cJSON_AddArrayToObject(root, "choices"), *c = cJSON_CreateObject();
  cJSON_AddNumberToObject(c, "index", 0);
  if (r->chat) {
    cJSON *m = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddItemToObject(m, "content", json_str(r->text.p ? r->text.p : "", r->text.len));
  } else {
    cJSON_AddItemToObject(c, "text", json_str(r->text.p ? r->text.p : "", r->text.len));
  }
  if (r->want_logprobs) {
    cJSON *lp = r->lp ? (cJSON *)r->lp : cJSON_CreateObject();
    r->lp = NULL;
    cJSON_AddItemToObject(c, "logprobs", lp);
  } else {
    cJSON_AddNullToObject(c, "logprobs");
  }
  cJSON_AddStringToObject(c, "finish_reason", finish_name(r->finish));
  cJSON_AddItemToArray(choices, c);
  add_usage(root, r->n_prompt, r->n_out);
  char *out = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return out;
}
