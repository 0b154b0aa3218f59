/* Chat templates: a conversation (system, user and assistant messages) turned
 * into the prompt text a chat model was trained on, byte for byte what
 * transformers' apply_chat_template(..., tokenize=False) gives with the
 * template of the model's tokenizer_config.json.
 *
 * tpdecode does not run Jinja: it renders a fixed set of published templates
 * natively, and recognises a checkpoint's template as one of them.
 *
 * Which format (tpd_chat_kind_for):
 *   1. tokenizer_config.json has a chat_template: it must be one of the
 *      templates below, compared after canonicalising the inside of its
 *      {{ }} / {% %} tags (whitespace there outside string literals does not
 *      change what Jinja renders); text outside the tags and every string
 *      literal must match exactly.  Anything else is TPD_ERR_UNSUPPORTED
 *      naming the template's start (and the family its markers suggest:
 *      <|start_header_id|> Llama 3, <|im_start|> ChatML, [INST] with <<SYS>>
 *      Llama 2, [INST] without it Mistral).  Markers alone are not enough:
 *      Llama 3.1 (a dated system block), Qwen2.5 (another default system
 *      message) and Mistral v0.3 (no space before [/INST], the system message
 *      moved to the last user turn) carry the same markers and render
 *      differently, and a silently different prompt is the worst outcome.
 *      A caller can still choose a format by name (tpd_chat_kind_from_name).
 *   2. No chat_template: by config.json's model_type: qwen2 -> chatml;
 *      mistral -> mistral (the 2024 [INST] template with an optional system
 *      message); llama -> llama3 when the tokenizer has <|start_header_id|>
 *      as a token, else llama2.  Another model_type is TPD_ERR_UNSUPPORTED.
 *
 * The formats and the published templates they render:
 *   llama2        meta-llama/Llama-2-7b-chat-hf: <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n...
 *                 [/INST] answer </s>; system only first; user/assistant alternate
 *   mistral-v0.1  mistralai/Mistral-7B-Instruct-v0.1 (2023): <s>[INST] ... [/INST]answer</s> ;
 *                 no system message; user/assistant alternate
 *   mistral-v0.2  mistralai/Mistral-7B-Instruct-v0.2, Mixtral-8x7B-Instruct-v0.1 (2023):
 *                 as mistral-v0.1 without the space after </s>
 *   mistral       the 2024 template of those repositories: <s> [INST] system\n\nuser [/INST]
 *                 answer</s>; system only first; user/assistant alternate
 *   llama3        meta-llama/Meta-Llama-3-8B-Instruct: <|start_header_id|>role
 *                 <|end_header_id|>\n\ncontent (trimmed)<|eot_id|>, BOS first
 *   chatml        plain ChatML: <|im_start|>role\ncontent<|im_end|>\n
 *   qwen2         Qwen/Qwen2-7B-Instruct: ChatML, and "You are a helpful assistant."
 *                 as the system message when the first message is not one
 *
 * The rendered text holds BOS (and EOS) as text: encode it with
 * tpd_tokenizer_encode(..., add_special = 0), as apply_chat_template does. */
#ifndef TPD_CHAT_H
#define TPD_CHAT_H

#include "runtime/base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const char *role;    /* "system", "user" or "assistant" */
  const char *content; /* UTF-8 */
} tpd_chat_message;

typedef enum {
  TPD_CHAT_LLAMA2 = 1,  /* "llama2" */
  TPD_CHAT_MISTRAL_V01, /* "mistral-v0.1" */
  TPD_CHAT_MISTRAL_V02, /* "mistral-v0.2" */
  TPD_CHAT_MISTRAL,     /* "mistral" */
  TPD_CHAT_LLAMA3,      /* "llama3" */
  TPD_CHAT_CHATML,      /* "chatml" */
  TPD_CHAT_QWEN2        /* "qwen2" */
} tpd_chat_kind;

/* The format's name above; "?" for a value outside the enum. */
const char *tpd_chat_kind_name(tpd_chat_kind kind);
/* The format of a name above (e.g. a --chat-format option). */
tpd_status tpd_chat_kind_from_name(const char *name, tpd_chat_kind *out);

/* The rule above.  chat_template: tokenizer_config.json's (NULL when it has
 * none); model_type: config.json's (may be NULL when a template is given);
 * has_header_tokens: the tokenizer has <|start_header_id|> as a token. */
tpd_status tpd_chat_kind_for(const char *chat_template, const char *model_type, int has_header_tokens,
                             tpd_chat_kind *out);

/* Renders n messages (n >= 1) into malloc'd, NUL-terminated UTF-8 *text.
 * bos_text / eos_text: tokenizer_config.json's bos_token / eos_token text
 * (NULL is an error only for a format that writes it).  add_generation_prompt
 * appends the assistant's header where the format has one (llama3, chatml,
 * qwen2); the [INST] formats end every user turn with [/INST] and ignore it,
 * as their templates do.
 * TPD_ERR_ARG, naming the message: a role other than system/user/assistant,
 * NULL content, text that is not UTF-8, and what the template itself rejects
 * (roles that do not alternate user/assistant, a system message the format
 * has no place for).  One deliberate difference: Llama 2's template drops a
 * system message at an odd place after the first message without a word;
 * here it is an error too. */
tpd_status tpd_chat_render(tpd_chat_kind kind, const char *bos_text, const char *eos_text, const tpd_chat_message *m,
                           int n, int add_generation_prompt, char **text);

#ifdef __cplusplus
}
#endif
#endif
