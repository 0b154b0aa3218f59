#!/usr/bin/env python3
"""Reference renders of the chat templates tpdecode implements natively
(runtime/model/chat.c), made with jinja2 the way transformers'
apply_chat_template makes them: a sandboxed environment with trim_blocks and
lstrip_blocks, raise_exception as a global, the special tokens' text as
bos_token / eos_token (left undefined when the tokenizer has none).

Writes OUT (JSON) for tests/unit/test_chat.c, which renders every case itself
and compares byte for byte:
  templates: name, kind (tpdecode's format name), template, bos, eos
  cases:     template name, messages, add_generation_prompt, and either the
             text or the error the template raised; "diverge" marks a case the
             template renders but tpdecode refuses on purpose
  variants:  templates rewritten in ways that render the same (tpdecode must
             still recognise them) or differently (it must not)

Usage: chat_ref.py OUT   (TPD_TEST_SEED=N replays the random conversations)
"""
import json
import os
import random
import sys
import time

import jinja2
import jinja2.ext
import jinja2.sandbox

# ---- the templates, as the model repositories publish them in
# tokenizer_config.json (the JSON string's value: "\\n" in the file is the
# two characters backslash and n here) ----

LLAMA2 = (  # meta-llama/Llama-2-7b-chat-hf
    r"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    r"{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    r"{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    r"{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    r"{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    r"{% if loop.index0 == 0 and system_message != false %}"
    r"{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}"
    r"{% else %}{% set content = message['content'] %}{% endif %}"
    r"{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    r"{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

MISTRAL_V01 = (  # mistralai/Mistral-7B-Instruct-v0.1, as released (2023)
    r"{{ bos_token }}{% for message in messages %}"
    r"{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    r"{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    r"{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    r"{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    r"{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

MISTRAL_V02 = (  # mistralai/Mistral-7B-Instruct-v0.2 and Mixtral-8x7B-Instruct-v0.1 (2023)
    r"{{ bos_token }}{% for message in messages %}"
    r"{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    r"{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    r"{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    r"{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    r"{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

MISTRAL_SYS = (  # the 2024 template of those repositories: an optional system message
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
    "{%- endfor %}\n"
)

LLAMA3 = (  # meta-llama/Meta-Llama-3-8B-Instruct
    r"{% set loop_messages = messages %}{% for message in loop_messages %}"
    r"{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    r" + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    r"{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

CHATML = (  # plain ChatML (e.g. teknium/OpenHermes-2.5-Mistral-7B)
    r"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
    r" + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

QWEN2 = (  # Qwen/Qwen2-7B-Instruct
    r"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    r"{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    r"{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    r"{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TEMPLATES = [
    # name, tpdecode's format, template, bos_token, eos_token (None: the tokenizer has none)
    ("Llama-2-7b-chat-hf", "llama2", LLAMA2, "<s>", "</s>"),
    ("Mistral-7B-Instruct-v0.1 (2023)", "mistral-v0.1", MISTRAL_V01, "<s>", "</s>"),
    ("Mistral-7B-Instruct-v0.2 (2023)", "mistral-v0.2", MISTRAL_V02, "<s>", "</s>"),
    ("Mistral-7B-Instruct (2024, system message)", "mistral", MISTRAL_SYS, "<s>", "</s>"),
    ("Meta-Llama-3-8B-Instruct", "llama3", LLAMA3, "<|begin_of_text|>", "<|eot_id|>"),
    ("ChatML", "chatml", CHATML, "<s>", "<|im_end|>"),
    ("Qwen2-7B-Instruct", "qwen2", QWEN2, None, "<|im_end|>"),
]


class TemplateRaised(Exception):
    pass


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


ENV = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                   extensions=[jinja2.ext.loopcontrols])
ENV.globals["raise_exception"] = raise_exception


_COMPILED = {}


def compiled(template):
    if template not in _COMPILED:
        _COMPILED[template] = ENV.from_string(template)
    return _COMPILED[template]


def render(template, bos, eos, messages, add_generation_prompt):
    """The text, or TemplateRaised with the template's message."""
    kw = {"messages": [{"role": r, "content": c} for r, c in messages],
          "add_generation_prompt": add_generation_prompt}
    if bos is not None:
        kw["bos_token"] = bos
    if eos is not None:
        kw["eos_token"] = eos
    try:
        return compiled(template).render(**kw)
    except jinja2.exceptions.TemplateError as e:  # raise_exception, and undefined tokens
        raise TemplateRaised(str(e)) from None


# ---- conversations ----
S, U, A = "system", "user", "assistant"
FIXED = [
    [(S, "You are a terse assistant."), (U, "What is 2+2?")],
    [(U, "Hello!")],
    [(U, "Hi"), (A, "Hello, how can I help?"), (U, "Tell me a joke.")],
    [(S, "Be kind."), (U, "Hi"), (A, "Hello."), (U, "Bye"), (A, "Goodbye!")],
    [(U, "Çà et là, naïve café — 漢字かな交じり文 🦙🚀 Ελληνικά Привет")],
    [(S, "{{ bos_token }} {% if x %}{# c #}"), (U, "[INST] <<SYS>> [/INST] </s> <s> {{ eos_token }}"),
     (A, "<|im_start|>user\n<|im_end|> <|start_header_id|>x<|end_header_id|> <|eot_id|>"),
     (U, "quotes ' \" and backslashes \\n \\ end")],
    [(S, "\t  sys with spaces \n\n"), (U, "  \n hello \u3000"), (A, "\u00a0\x1c answer \u2028\x85"), (U, " \u200b ")],
    [(U, "")],
    [(S, ""), (U, "")],
    [(S, "only a system message")],
    [(U, "question"), (A, "answer ending the conversation")],
    [(U, "   "), (A, "\n"), (U, "x")],
    [(U, "line one\nline two\n\nline four"), (A, "multi\nline\nanswer\n")],
    # what the templates reject (or, for one, drop)
    [(U, "a"), (U, "b")],
    [(A, "assistant first")],
    [(S, "s"), (A, "assistant after system")],
    [(U, "a"), (A, "b"), (S, "system late, even place")],
    [(U, "a"), (S, "system late, odd place")],
    [(S, "s1"), (S, "s2"), (U, "u")],
    [(S, "s"), (U, "u"), (A, "a"), (A, "a2")],
]

PIECES = ["hello", "world", " ", "  ", "\n", "\n\n", "\t", "\r\n", "é", "ñandú", "漢字", "🦙", "🚀", "Ω",
          "ß",
          "{{ x }}", "{%", "%}", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "</s>", "<s>", "<|im_start|>",
          "<|im_end|>", "<|eot_id|>", "<|start_header_id|>", "'", "\"", "\\", "\\n", "0123", "  3.14",
          "\u3000", "\u00a0", "\u2009", "\x0b", "\x0c", "\x1f", "\x85", "\u200b", "\ufeff", "\u2028", ""]


def random_content(rng):
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8)))


def random_conversation(rng):
    msgs = []
    if rng.random() < 0.5:
        msgs.append((S, random_content(rng)))
    for i in range(rng.randint(1, 6)):
        role = U if i % 2 == 0 else A
        if rng.random() < 0.1:  # now and then something a template rejects
            role = rng.choice([S, U, A])
        msgs.append((role, random_content(rng)))
    return msgs


def variants(name, template, kind):
    """(template, renders the same) pairs: rewrites Jinja reads the same way,
    and rewrites that change the output."""
    out = []
    same = [template.replace("\\n", "\n"),  # '\n' in a literal, or a newline
            template.replace("' + ", "'+"),  # spaces inside tags
            template + "\n"]  # one trailing newline is dropped
    if "{% endif %}" in template:
        same.append(template.replace("{% endif %}", "{% endif %}\n"))  # trim_blocks
    if "%}{% endif %}" in template:  # trim_blocks takes the newline, lstrip_blocks the spaces
        same.append(template.replace("%}{% endif %}", "%}\n  {% endif %}"))
    if "\n    {%-" in template:
        same.append(template.replace("\n    ", "\n\t"))  # indentation before {%-
    out += [(t, True) for t in same]
    for marker in ["[INST]", "<|im_start|>", "<|start_header_id|>"]:
        if marker in template:
            out.append((template.replace(marker, marker + "x", 1), False))
    if "{{ content }}" in template:
        out.append((template.replace("{{ content }}", "{{ content }}\n"), False))  # no trim after {{ }}
    if "{% endif %}" in template.rstrip()[:-len("{% endif %}")]:  # only one newline goes (not at the end,
        out.append((template.replace("{% endif %}", "{% endif %}\n\n"), False))  # where the last one goes too)
    if "}}{% endfor %}" in template:  # no trim_blocks after {{ }}: the newline stays
        out.append((template.replace("}}{% endfor %}", "}}\n  {% endfor %}"), False))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: chat_ref.py OUT.json")
    seed = int(os.environ.get("TPD_TEST_SEED") or (time.time_ns() & 0xFFFFFFFF))
    print(f"chat_ref.py: TPD_TEST_SEED={seed}")
    rng = random.Random(seed)
    convs = FIXED + [random_conversation(rng) for _ in range(150)]

    cases, n_text, n_err, n_div = [], 0, 0, 0
    for name, kind, template, bos, eos in TEMPLATES:
        for msgs in convs:
            for agp in (False, True):
                case = {"template": name, "messages": msgs, "add_generation_prompt": agp, "text": None,
                        "error": None, "diverge": False}
                try:
                    case["text"] = render(template, bos, eos, msgs, agp)
                    n_text += 1
                except TemplateRaised as e:
                    case["error"] = str(e)
                    n_err += 1
                # Llama 2's template drops a system message at an odd place
                # after the first without a word; tpdecode refuses it
                if kind == "llama2" and any(r == S for r, _ in msgs[1:]) and case["text"] is not None:
                    marked = msgs[:1] + [(r, "LATE-SYSTEM" if r == S else c) for r, c in msgs[1:]]
                    assert "LATE-SYSTEM" not in render(template, bos, eos, marked, agp), \
                        "llama2: a late system message was expected to vanish"
                    case["diverge"] = True
                    n_div += 1
                cases.append(case)

    # the rewrites: check with jinja2 that they render (not) the same
    var_out = []
    for name, kind, template, bos, eos in TEMPLATES:
        for t, same in variants(name, template, kind):
            differs = False
            for msgs in convs:
                for agp in (False, True):
                    try:
                        a = render(template, bos, eos, msgs, agp)
                    except TemplateRaised as e:
                        a = ("raised", str(e))
                    try:
                        b = render(t, bos, eos, msgs, agp)
                    except TemplateRaised as e:
                        b = ("raised", str(e))
                    differs = differs or a != b
            assert differs != same, f"{name}: a rewrite expected to render {'the same' if same else 'differently'}"
            var_out.append({"template": t, "kind": kind, "same": same})

    doc = {"seed": seed,
           "templates": [{"name": n, "kind": k, "template": t, "bos": b, "eos": e} for n, k, t, b, e in TEMPLATES],
           "cases": cases, "variants": var_out}
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    print(f"chat_ref.py: {len(TEMPLATES)} templates, {len(convs)} conversations, {len(cases)} cases "
          f"({n_text} rendered, {n_err} raised, {n_div} rendered but refused by tpdecode), "
          f"{len(var_out)} template rewrites")


if __name__ == "__main__":
    main()
