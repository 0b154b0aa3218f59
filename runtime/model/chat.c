#include "runtime/model/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the published templates, as tokenizer_config.json holds them (after
 * JSON decoding: "\\n" in the file is the two characters \ n here, which the
 * Jinja string literal turns into a newline) ---- */

static const char k_llama2[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

static const char k_mistral_v01[] =
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

static const char k_mistral_v02[] =
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

static const char k_mistral_sys[] =
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content'] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{- raise_exception('After the optional system message, conversation roles must alternate "
    "user/assistant/user/assistant/...') }}\n"
    "    {%- endif %}\n"
    "    {%- if message['role'] == 'user' %}\n"
    "        {%- if loop.first and system_message is defined %}\n"
    "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
    "        {%- else %}\n"
    "            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n"
    "        {%- endif %}\n"
    "    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- ' ' + message['content'] + eos_token}}\n"
    "    {%- else %}\n"
    "        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial "
    "optional system message!') }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";

static const char k_llama3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

static const char k_chatml[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

static const char k_qwen2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

static const struct {
  tpd_chat_kind kind;
  const char *name;
  const char *tmpl;
} k_formats[] = {
    {TPD_CHAT_LLAMA2, "llama2", k_llama2},
    {TPD_CHAT_MISTRAL_V01, "mistral-v0.1", k_mistral_v01},
    {TPD_CHAT_MISTRAL_V02, "mistral-v0.2", k_mistral_v02},
    {TPD_CHAT_MISTRAL, "mistral", k_mistral_sys},
    {TPD_CHAT_LLAMA3, "llama3", k_llama3},
    {TPD_CHAT_CHATML, "chatml", k_chatml},
    {TPD_CHAT_QWEN2, "qwen2", k_qwen2},
};
#define N_FORMATS ((int)(sizeof k_formats / sizeof k_formats[0]))

const char *tpd_chat_kind_name(tpd_chat_kind kind) {
  for (int i = 0; i < N_FORMATS; i++)
    if (k_formats[i].kind == kind) return k_formats[i].name;
  return "?";
}

tpd_status tpd_chat_kind_from_name(const char *name, tpd_chat_kind *out) {
  if (!name || !out) return TPD_FAIL(TPD_ERR_ARG, "tpd_chat_kind_from_name: %s is NULL", name ? "out" : "name");
  for (int i = 0; i < N_FORMATS; i++)
    if (strcmp(name, k_formats[i].name) == 0) {
      *out = k_formats[i].kind;
      return TPD_OK;
    }
  return TPD_FAIL(TPD_ERR_ARG,
                  "unknown chat format \"%.40s\" (known: llama2, mistral-v0.1, mistral-v0.2, mistral, llama3, "
                  "chatml, qwen2)",
                  name);
}

/* ---- a growing string ---- */
typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}
static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_putc(sbuf *b, char c) { sb_put(b, &c, 1); }

/* ---- recognising a template: canonical form ----
 * The template is cut into text and tags.  What Jinja (with transformers'
 * trim_blocks and lstrip_blocks) does to the whitespace around tags is
 * applied to the text; in a tag, string literals are decoded (so '\n' and a
 * newline inside quotes are the same) and whitespace outside them is dropped
 * except one space between two name characters; comments vanish.  Two
 * templates with the same canonical form render the same.  Anything this does
 * not model (raw blocks, unusual escapes) only makes the forms differ: a
 * template is then not recognised, never taken for another. */

static int is_space_ascii(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         (unsigned char)c >= 0x80;
}

typedef struct {
  const char *s; /* segment start (text) or tag body start */
  size_t n;      /* length */
  char type;     /* 't' text, '%' block, '{' expression, '#' comment */
  char lctrl;    /* '-', '+' or 0 after the opening delimiter */
  char rctrl;    /* '-', '+' or 0 before the closing delimiter */
} seg;

/* Splits src[0..len) into segments; returns the count, -1 on an unterminated
 * tag, -2 when more than cap segments. */
static int split_segments(const char *src, size_t len, seg *out, int cap) {
  int ns = 0;
  size_t i = 0, text_start = 0;
  while (i < len) {
    if (src[i] == '{' && i + 1 < len && (src[i + 1] == '{' || src[i + 1] == '%' || src[i + 1] == '#')) {
      const char type = src[i + 1];
      const char close = type == '{' ? '}' : type;
      if (ns + 2 > cap) return -2;
      out[ns++] = (seg){src + text_start, i - text_start, 't', 0, 0};
      size_t j = i + 2;
      char lctrl = 0;
      if (j < len && (src[j] == '-' || src[j] == '+')) lctrl = src[j++];
      const size_t body = j;
      char quote = 0;
      for (;; j++) {
        if (j + 1 >= len) return -1;
        const char c = src[j];
        if (type != '#' && quote) {
          if (c == '\\') j++;
          else if (c == quote) quote = 0;
        } else if (type != '#' && (c == '\'' || c == '"')) {
          quote = c;
        } else if (c == close && src[j + 1] == '}') {
          break;
        }
      }
      size_t body_end = j;
      char rctrl = 0;
      if (body_end > body && (src[body_end - 1] == '-' || (type != '{' && src[body_end - 1] == '+')))
        rctrl = src[--body_end];
      out[ns++] = (seg){src + body, body_end - body, type, lctrl, rctrl};
      i = j + 2;
      text_start = i;
    } else {
      i++;
    }
  }
  if (ns + 1 > cap) return -2;
  out[ns++] = (seg){src + text_start, len - text_start, 't', 0, 0};
  return ns;
}

/* A tag's body: literals decoded and re-quoted, spaces dropped but between names. */
static void canon_body(sbuf *b, const char *s, size_t n) {
  char prev = 0; /* last character written */
  for (size_t i = 0; i < n;) {
    const char c = s[i];
    if (is_space_ascii(c)) {
      size_t j = i;
      while (j < n && is_space_ascii(s[j])) j++;
      if (j < n && is_name_char(prev) && is_name_char(s[j])) sb_putc(b, prev = ' ');
      i = j;
    } else if (c == '\'' || c == '"') {
      sb_putc(b, '\'');
      size_t j = i + 1;
      for (; j < n && s[j] != c; j++) {
        char d = s[j];
        if (d == '\\' && j + 1 < n) {
          const char e = s[++j];
          switch (e) {
            case 'n': d = '\n'; break;
            case 't': d = '\t'; break;
            case 'r': d = '\r'; break;
            case '\\': case '\'': case '"': d = e; break;
            default: /* kept as written, as Python's unicode-escape keeps an unknown one */
              sb_put(b, "\\\\", 2);
              d = e;
          }
        }
        if (d == '\\' || d == '\'') sb_putc(b, '\\');
        sb_putc(b, d);
      }
      sb_putc(b, prev = '\'');
      i = j + 1;
    } else {
      sb_putc(b, prev = c);
      i++;
    }
  }
}

/* The canonical form of a template (malloc'd), or NULL (out of memory, or
 * a template too odd to cut into tags). */
static char *canonical(const char *src) {
  size_t len = strlen(src);
  if (len && src[len - 1] == '\n') len--; /* Jinja drops one trailing newline */
  int cap = 16;
  for (size_t i = 0; i + 1 < len; i++)
    if (src[i] == '{') cap += 2;
  seg *sg = malloc((size_t)cap * sizeof *sg);
  if (!sg) return NULL;
  const int ns = split_segments(src, len, sg, cap);
  if (ns < 0) {
    free(sg);
    return NULL;
  }
  sbuf b = {0};
  for (int k = 0; k < ns; k++) {
    const seg *g = &sg[k];
    if (g->type != 't') {
      if (g->type == '#') continue;
      sb_puts(&b, g->type == '%' ? "{%" : "{{");
      canon_body(&b, g->s, g->n);
      sb_puts(&b, g->type == '%' ? "%}" : "}}");
      continue;
    }
    const char *s = g->s;
    size_t n = g->n;
    const seg *prev = k > 0 ? &sg[k - 1] : NULL, *next = k + 1 < ns ? &sg[k + 1] : NULL;
    /* after a tag: '-' strips every space; trim_blocks one newline after a block or comment */
    if (prev && prev->rctrl == '-') {
      while (n && is_space_ascii(*s)) s++, n--;
    } else if (prev && prev->type != '{' && prev->rctrl != '+' && n && *s == '\n') {
      s++, n--;
    }
    /* before a tag: '-' strips every space; lstrip_blocks spaces and tabs back
     * to the line's start before a block or comment */
    if (next && next->lctrl == '-') {
      while (n && is_space_ascii(s[n - 1])) n--;
    } else if (next && next->type != '{' && next->lctrl != '+') {
      size_t j = n;
      while (j && (s[j - 1] == ' ' || s[j - 1] == '\t')) j--;
      const int line_start = j ? s[j - 1] == '\n' : (s == g->s && k == 0);
      /* (text that started the line but lost its newline to trim_blocks above
       * also counts: the newline was the previous line's end) */
      const int after_trim = j == 0 && s != g->s && g->s[0] == '\n';
      if (line_start || after_trim) n = j;
    }
    sb_put(&b, s, n);
  }
  free(sg);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  if (!b.p) {
    b.p = malloc(1);
    if (b.p) b.p[0] = '\0';
  }
  return b.p;
}

/* One line naming a template: its first characters, newlines shown as \n. */
static void template_excerpt(const char *t, char *out, size_t cap) {
  size_t o = 0;
  size_t i = 0;
  for (; t[i] && o + 4 < cap && (i < 60 || ((unsigned char)t[i] & 0xc0) == 0x80); i++) {
    const unsigned char c = (unsigned char)t[i];
    if (c == '\n') {
      out[o++] = '\\';
      out[o++] = 'n';
    } else {
      out[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
  }
  if (t[i] && o + 4 < cap) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}

tpd_status tpd_chat_kind_for(const char *chat_template, const char *model_type, int has_header_tokens,
                             tpd_chat_kind *out) {
  if (!out) return TPD_FAIL(TPD_ERR_ARG, "tpd_chat_kind_for: out is NULL");
  if (chat_template) {
    char *c = canonical(chat_template);
    if (c) {
      for (int i = 0; i < N_FORMATS; i++) {
        char *k = canonical(k_formats[i].tmpl);
        if (!k) {
          free(c);
          return TPD_FAIL(TPD_ERR_OOM, "tpd_chat_kind_for: out of host memory");
        }
        const int same = strcmp(c, k) == 0;
        free(k);
        if (same) {
          free(c);
          *out = k_formats[i].kind;
          return TPD_OK;
        }
      }
      free(c);
    }
    const char *family = strstr(chat_template, "<|start_header_id|>") ? "Llama 3's"
                         : strstr(chat_template, "<|im_start|>")      ? "ChatML's"
                         : strstr(chat_template, "[INST]") && strstr(chat_template, "<<SYS>>") ? "Llama 2's"
                         : strstr(chat_template, "[INST]")                                     ? "Mistral's"
                                                                                               : NULL;
    char ex[160];
    template_excerpt(chat_template, ex, sizeof ex);
    if (family)
      return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                      "chat template not supported: it has %s markers but is not a template tpdecode renders "
                      "exactly (\"%s\"); choose a chat format by name",
                      family, ex);
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "chat template not recognised (\"%s\"); choose a chat format by name", ex);
  }
  if (!model_type)
    return TPD_FAIL(TPD_ERR_UNSUPPORTED, "no chat template (tokenizer_config.json has none) and no model type");
  if (strcmp(model_type, "qwen2") == 0) *out = TPD_CHAT_CHATML;
  else if (strcmp(model_type, "mistral") == 0) *out = TPD_CHAT_MISTRAL;
  else if (strcmp(model_type, "llama") == 0) *out = has_header_tokens ? TPD_CHAT_LLAMA3 : TPD_CHAT_LLAMA2;
  else
    return TPD_FAIL(TPD_ERR_UNSUPPORTED,
                    "no chat template (tokenizer_config.json has none) and no default one for model_type \"%.40s\"",
                    model_type);
  return TPD_OK;
}

/* ---- rendering ---- */

/* Length of the valid UTF-8 character at s (n bytes left) and its code
 * point, or 0 when the bytes there are not one. */
static int utf8_char(const unsigned char *s, size_t n, uint32_t *cp) {
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  }
  int len;
  uint32_t v, min;
  if ((s[0] & 0xe0) == 0xc0) len = 2, v = s[0] & 0x1f, min = 0x80;
  else if ((s[0] & 0xf0) == 0xe0) len = 3, v = s[0] & 0x0f, min = 0x800;
  else if ((s[0] & 0xf8) == 0xf0) len = 4, v = s[0] & 0x07, min = 0x10000;
  else return 0;
  if ((size_t)len > n) return 0;
  for (int i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    v = v << 6 | (s[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *cp = v;
  return len;
}

/* Byte offset of the first invalid UTF-8 sequence, or -1. */
static long utf8_invalid_at(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  const size_t n = strlen(s);
  uint32_t cp;
  for (size_t i = 0; i < n;) {
    const int l = utf8_char(p + i, n - i, &cp);
    if (!l) return (long)i;
    i += (size_t)l;
  }
  return -1;
}

/* Python's str.isspace(), which str.strip() and Jinja's trim use */
static int py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Appends s[0..n) without leading and trailing whitespace, as str.strip()
 * (s is valid UTF-8). */
static void put_stripped(sbuf *b, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  uint32_t cp;
  size_t a = 0, e = n;
  while (a < e) {
    const int l = utf8_char(p + a, e - a, &cp);
    if (!l || !py_space(cp)) break;
    a += (size_t)l;
  }
  while (e > a) {
    size_t st = e - 1;
    while (st > a && (p[st] & 0xc0) == 0x80) st--;
    const int l = utf8_char(p + st, e - st, &cp);
    if (!l || !py_space(cp)) break;
    e = st;
  }
  sb_put(b, s + a, e - a);
}

enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

static tpd_status need_token(const char *text, const char *which, tpd_chat_kind kind) {
  if (text) return TPD_OK;
  return TPD_FAIL(TPD_ERR_ARG, "chat format %s writes %s, and the tokenizer has no %s text", tpd_chat_kind_name(kind),
                  which, which);
}

static tpd_status alternation_error(tpd_chat_kind kind, int i, const char *role) {
  return TPD_FAIL(TPD_ERR_ARG,
                  "chat message %d (%s): chat format %s needs user and assistant messages to alternate, user "
                  "first%s",
                  i, role, tpd_chat_kind_name(kind),
                  kind == TPD_CHAT_MISTRAL_V01 || kind == TPD_CHAT_MISTRAL_V02 ? ", and has no system message"
                                                                              : ", after one optional system message");
}

/* Llama 2, and the three Mistral [INST] formats */
static tpd_status render_inst(sbuf *b, tpd_chat_kind kind, const char *bos, const char *eos,
                              const tpd_chat_message *m, const int *role, int n) {
  const int sys_first = (kind == TPD_CHAT_LLAMA2 || kind == TPD_CHAT_MISTRAL) && role[0] == ROLE_SYSTEM;
  const char *sys = sys_first ? m[0].content : NULL;
  const int first = sys_first ? 1 : 0;
  for (int i = first; i < n; i++) /* the templates check roles as they go; nothing is kept on a failure */
    if ((role[i] == ROLE_USER) != ((i - first) % 2 == 0) || role[i] == ROLE_SYSTEM)
      return alternation_error(kind, i, m[i].role);
  if (kind != TPD_CHAT_LLAMA2) {
    TPD_TRY(need_token(bos, "bos_token", kind));
    sb_puts(b, bos);
  }
  for (int i = first; i < n; i++) {
    const char *c = m[i].content;
    const int user = role[i] == ROLE_USER;
    if (!user) TPD_TRY(need_token(eos, "eos_token", kind));
    switch (kind) {
      case TPD_CHAT_LLAMA2: {
        sbuf t = {0};
        if (i == first && sys) {
          sb_puts(&t, "<<SYS>>\n");
          sb_puts(&t, sys);
          sb_puts(&t, "\n<</SYS>>\n\n");
        }
        sb_puts(&t, c);
        if (user) {
          if (!bos) {
            free(t.p);
            return need_token(bos, "bos_token", kind);
          }
          sb_puts(b, bos);
          sb_puts(b, "[INST] ");
        } else {
          sb_puts(b, " ");
        }
        if (t.oom) b->oom = 1;
        put_stripped(b, t.p ? t.p : "", t.n);
        free(t.p);
        if (user) {
          sb_puts(b, " [/INST]");
        } else {
          sb_puts(b, " ");
          sb_puts(b, eos);
        }
        break;
      }
      case TPD_CHAT_MISTRAL_V01:
      case TPD_CHAT_MISTRAL_V02:
        if (user) {
          sb_puts(b, "[INST] ");
          sb_puts(b, c);
          sb_puts(b, " [/INST]");
        } else {
          sb_puts(b, c);
          sb_puts(b, eos);
          if (kind == TPD_CHAT_MISTRAL_V01) sb_puts(b, " ");
        }
        break;
      default: /* TPD_CHAT_MISTRAL */
        if (user) {
          sb_puts(b, " [INST] ");
          if (i == first && sys) {
            sb_puts(b, sys);
            sb_puts(b, "\n\n");
          }
          sb_puts(b, c);
          sb_puts(b, " [/INST]");
        } else {
          sb_puts(b, " ");
          sb_puts(b, c);
          sb_puts(b, eos);
        }
    }
  }
  return TPD_OK;
}

static void put_chatml(sbuf *b, const char *role, const char *content) {
  sb_puts(b, "<|im_start|>");
  sb_puts(b, role);
  sb_puts(b, "\n");
  sb_puts(b, content);
  sb_puts(b, "<|im_end|>\n");
}

tpd_status tpd_chat_render(tpd_chat_kind kind, const char *bos_text, const char *eos_text, const tpd_chat_message *m,
                           int n, int add_generation_prompt, char **text) {
  if (!text) return TPD_FAIL(TPD_ERR_ARG, "tpd_chat_render: text is NULL");
  *text = NULL;
  if (!strcmp(tpd_chat_kind_name(kind), "?"))
    return TPD_FAIL(TPD_ERR_ARG, "tpd_chat_render: chat format %d is not one of tpd_chat_kind", (int)kind);
  if (n < 1 || !m) return TPD_FAIL(TPD_ERR_ARG, "tpd_chat_render: no messages (n = %d)", n);
  int *role = malloc((size_t)n * sizeof *role);
  if (!role) return TPD_FAIL(TPD_ERR_OOM, "tpd_chat_render: out of host memory");
  tpd_status st = TPD_OK;
  for (int i = 0; i < n && st == TPD_OK; i++) {
    const char *r = m[i].role;
    if (!r) st = TPD_FAIL(TPD_ERR_ARG, "chat message %d: role is NULL", i);
    else if (!strcmp(r, "system")) role[i] = ROLE_SYSTEM;
    else if (!strcmp(r, "user")) role[i] = ROLE_USER;
    else if (!strcmp(r, "assistant")) role[i] = ROLE_ASSISTANT;
    else {
      char ex[160];
      template_excerpt(r, ex, sizeof ex);
      st = TPD_FAIL(TPD_ERR_ARG, "chat message %d: role \"%s\" is not system, user or assistant", i, ex);
    }
    if (st != TPD_OK) break;
    if (!m[i].content) {
      st = TPD_FAIL(TPD_ERR_ARG, "chat message %d (%s): content is NULL", i, r);
      break;
    }
    const long bad = utf8_invalid_at(m[i].content);
    if (bad >= 0) st = TPD_FAIL(TPD_ERR_ARG, "chat message %d (%s): content is not valid UTF-8 at byte %ld", i, r, bad);
  }
  sbuf b = {0};
  if (st == TPD_OK) {
    switch (kind) {
      case TPD_CHAT_LLAMA3:
        st = need_token(bos_text, "bos_token", kind);
        for (int i = 0; i < n && st == TPD_OK; i++) {
          if (i == 0) sb_puts(&b, bos_text);
          sb_puts(&b, "<|start_header_id|>");
          sb_puts(&b, m[i].role);
          sb_puts(&b, "<|end_header_id|>\n\n");
          put_stripped(&b, m[i].content, strlen(m[i].content));
          sb_puts(&b, "<|eot_id|>");
        }
        if (add_generation_prompt) sb_puts(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
      case TPD_CHAT_CHATML:
      case TPD_CHAT_QWEN2:
        if (kind == TPD_CHAT_QWEN2 && role[0] != ROLE_SYSTEM) put_chatml(&b, "system", "You are a helpful assistant.");
        for (int i = 0; i < n; i++) put_chatml(&b, m[i].role, m[i].content);
        if (add_generation_prompt) sb_puts(&b, "<|im_start|>assistant\n");
        break;
      default:
        st = render_inst(&b, kind, bos_text, eos_text, m, role, n);
    }
  }
  free(role);
  if (st == TPD_OK && b.oom) st = TPD_FAIL(TPD_ERR_OOM, "tpd_chat_render: out of host memory");
  if (st == TPD_OK && !b.p) { /* a conversation that renders to nothing (llama2, a system message alone) */
    b.p = malloc(1);
    if (!b.p) st = TPD_FAIL(TPD_ERR_OOM, "tpd_chat_render: out of host memory");
    else b.p[0] = '\0';
  }
  if (st != TPD_OK) {
    free(b.p);
    return st;
  }
  *text = b.p;
  return TPD_OK;
}
