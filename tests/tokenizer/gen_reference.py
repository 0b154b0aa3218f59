#!/usr/bin/env python3
"""Reference data for the tokenizer parity test (tests/tokenizer).

Trains small tokenizers with the Hugging Face `tokenizers` package on a
corpus generated here, of the kinds tpdecode implements, and writes one
folder per kind under OUT:

  tokenizer.json, tokenizer_config.json (when the kind has one)
  cases.json   {"strings": [{"hex", "ids", "ids_plain", "text", "text_skip"}],
                "decode": [{"ids", "text", "text_skip"}],
                "invalid": [{"hex", "offset"}]}

ids: encode(add_special_tokens=True) (or what tokenizer_config.json's
add_bos_token asks, see below); ids_plain: add_special_tokens=False; text /
text_skip: decode(ids, skip_special_tokens=False / True), UTF-8 in hex.  "decode" holds
random id sequences (any order: broken characters, stray specials) with the
reference's decoding.  "invalid" holds byte strings that are not UTF-8 and
the offset of their first bad byte.

Also OUT/broken: the byte-level kind with its merges in reverse order and
the good expectations; the driver must report mismatches there.

With --bench, each folder also gets bench.txt (a ~1 MB text from the corpus)
and bench_reference_mbs.txt (the reference's encode speed on it, one thread).

Usage: gen_reference.py OUT [--seed N] [--bench]
Exit 77 (skip) when `tokenizers` is not installed.
"""
import json
import os
import random
import sys
import time

try:
    import tokenizers
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
except ImportError:
    print("SKIP: the Python package `tokenizers` is not installed (pip install tokenizers)")
    sys.exit(77)

LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")

WORDS = ("the of and to in is was for on that with as by it at from his an were are which this be or has had not "
         "but their also its one first new after who they have two her she been other when there all during into "
         "school time may years more most only over city some world would where later up such used many can state "
         "about national out known university united then made don't I'm we'll you've it's they'd THE Hello WORLD").split()
ACCENTED = "café naïve Zürich résumé façade São Paulo über Ελληνικά русский язык español niño Ångström".split()
CJK = "中文 日本語 한국어 東京 北京 你好世界 こんにちは ひらがな カタカナ 漢字".split()
EMOJI = ["😀", "👍🏽", "🇫🇷", "❤️", "🚀", "👩‍💻", "∑", "→", "…", "°C"]
DIGITS = ["0", "7", "42", "123", "2024", "3.14159", "1,000,000", "0x1F", "v1.2.3", "99%"]
PUNCT = list(".,;:!?()[]{}<>\"'-_/\\|@#$%^&*+=~`")


def corpus(rng, n_lines):
    lines = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rng.randint(3, 18)):
            r = rng.random()
            if r < 0.6:
                parts.append(rng.choice(WORDS))
            elif r < 0.7:
                parts.append(rng.choice(ACCENTED))
            elif r < 0.78:
                parts.append(rng.choice(CJK))
            elif r < 0.83:
                parts.append(rng.choice(EMOJI))
            elif r < 0.92:
                parts.append(rng.choice(DIGITS))
            else:
                parts.append(rng.choice(PUNCT))
        sep = rng.choice([" ", " ", " ", "  ", "\t", "\n", " \n "])
        lines.append(sep.join(parts))
    return lines


def fixed_strings(specials):
    s0, s1 = specials[0], specials[1]
    return [
        "", " ", "  ", "\t", "\n", "\r\n", " \n\n \t ", "a", "Hello world", "Hello, world!", " Hello world ",
        "   leading spaces", "trailing spaces   ", "multiple    spaces   inside", "tabs\tand\ttabs\t\t",
        "new\nlines\n\n\nhere", "mixed \t\n whitespace \r\n runs", "The quick brown fox jumps over the lazy dog.",
        "don't I'm we'll you've it's they'd DON'T", "café naïve Zürich résumé", "Ελληνικά και русский язык",
        "中文 日本語 한국어", "你好世界，こんにちは！", "emoji 😀👍🏽🇫🇷 ❤️ 🚀 👩‍💻", "😀😀😀", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑ → … °C",
        "0", "42", "1234567890", "3.14159 and 2,718", "x=1+2*3; y = f(x) // comment", "http://example.com/a?b=c&d=e",
        "€100 ¥200 £300 ₹400", "ＡＢＣ full width", "zero\u200bwidth\u200djoiner", "a\u00a0b\u2003c\u3000d",
        "rare: ɐɔǝɟƃɥ ʞ ɯuodɹs ʇnʌ ʍxʎz", "Ç ĉ ħ ĳ ŀ ŉ ſ", "\u0301 combining \u0301\u0302 marks",
        s0 + "Hello" + s1, "Hello " + s0 + " world", s0, s0 + s0 + s1, " " + s1 + " ", "x" + s1 + "y",
        "text<|lstrip|>more", "text   <|lstrip|>   more", "<|lstrip|>", "a wordtok b", "awordtok b",
        "a wordtokb", "wordtok", "(wordtok)", "wordtok\u0301 x", "\u0301wordtok", "wordtok_", "\u0663wordtok",
        "wordtok\u200d", "über wordtok über", "x\u00a0wordtok\u00a0y", "normtok", "x normtok y", "xnormtoky", s0 + " normtok " + s1,
        "'s 're 've 'm 'll 'd 'S 'RE", "A'B'c", "!!!???...", "   \n   ", "a  \n  b", "123abc456def",
        "the▁sentencepiece▁marker ▁▁ ▁", "Ġ Ċ ĉ chars of the byte alphabet", "<0x41> <0xFF> byte tokens",
    ]


def random_strings(rng, alphabet, n, max_len):
    out = []
    for _ in range(n):
        k = rng.randint(1, max_len)
        out.append("".join(rng.choice(alphabet) for _ in range(k)))
    return out


def add_tokens(tok, specials):
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.add_special_tokens([AddedToken("<|lstrip|>", lstrip=True, rstrip=True, special=True, normalized=False)])
    tok.add_tokens([AddedToken("wordtok", single_word=True, normalized=False),
                    AddedToken("normtok", normalized=True)])


def train_byte_level(lines, pattern, specials, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, tr)
    return tok


def train_gpt2(lines, specials):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tr = trainers.BpeTrainer(vocab_size=700, special_tokens=specials,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, tr)
    return tok


def train_sp(lines, form, vocab_size):
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    if form == "normalizer":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        scheme, split = form
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=split)
        if scheme == "first":
            tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                             decoders.Strip(" ", 1, 0)])
        elif scheme == "always":
            tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁",
                                                                                         prepend_scheme="always")])
        else:
            tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=80,
                             show_progress=False)
    tok.train_from_iterator(lines, tr)
    # SentencePiece keeps the 256 byte tokens in its vocabulary: append them
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    nxt = max(vocab.values()) + 1
    for b in range(256):
        name = "<0x%02X>" % b
        if name not in vocab:
            vocab[name] = nxt
            nxt += 1
    return Tokenizer.from_str(json.dumps(j))


def set_template(tok, bos):
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, tok.token_to_id(bos))])


def rewrite_merges(tok, as_strings=None, ignore_merges=None, extra_words=()):
    j = json.loads(tok.to_str())
    m = j["model"]
    if as_strings is not None:
        merges = [x if isinstance(x, list) else x.split(" ") for x in m["merges"]]
        m["merges"] = [" ".join(x) for x in merges] if as_strings else merges
    if ignore_merges is not None:
        m["ignore_merges"] = ignore_merges
    nxt = max(m["vocab"].values()) + 1
    for w in extra_words:  # whole words with no merge path: only ignore_merges finds them
        if w not in m["vocab"]:
            m["vocab"][w] = nxt
            nxt += 1
    for a in j["added_tokens"]:  # the added tokens outside the vocabulary move up after it
        if a["content"] not in m["vocab"]:
            a["id"] = nxt
            nxt += 1
    return j


BENCH_TEXT = None  # set by --bench: a long text from the corpus


def hexs(s):
    return s.encode("utf-8").hex()  # texts may hold NUL (byte-level decoding of Ā)


def write_kind(out, name, j, cfg, strings, rng, expect_plain_as_special=False, note=""):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    text = json.dumps(j, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(text)
    if cfg is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, ensure_ascii=False)
    tok = Tokenizer.from_str(text)  # the reference reads back exactly the file tpdecode reads
    cases = {"strings": [], "decode": [], "invalid": [], "note": note}
    for s in strings:
        plain = tok.encode(s, add_special_tokens=False).ids
        ids = plain if expect_plain_as_special else tok.encode(s, add_special_tokens=True).ids
        cases["strings"].append({"hex": s.encode("utf-8").hex(), "ids": ids, "ids_plain": plain,
                                 "text": hexs(tok.decode(ids, skip_special_tokens=False)),
                                 "text_skip": hexs(tok.decode(ids, skip_special_tokens=True))})
    # every id the reference has a token for (a file may leave holes; tpdecode rejects those)
    valid = [i for i in range(tok.get_vocab_size(with_added_tokens=True) + 8) if tok.id_to_token(i) is not None]
    byte_ids = [i for i in valid if tok.id_to_token(i).startswith("<0x")] or valid
    for k in range(60):
        pool = byte_ids if k % 3 == 0 else valid  # runs of byte tokens: broken and complete characters
        ids = [rng.choice(pool if rng.random() < 0.7 else valid) for _ in range(rng.randint(1, 24))]
        cases["decode"].append({"ids": ids, "text": hexs(tok.decode(ids, skip_special_tokens=False)),
                                "text_skip": hexs(tok.decode(ids, skip_special_tokens=True))})
    for b in [b"\xff", b"abc\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
              b"a\x80b", "caf\u00e9".encode() + b"\xe9", b"\xf0\x9f\x98", b"ok \xfe ok"]:
        try:
            b.decode("utf-8")
            raise SystemExit("not invalid: %r" % b)
        except UnicodeDecodeError as e:
            cases["invalid"].append({"hex": b.hex(), "offset": e.start})
    with open(os.path.join(d, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
    if BENCH_TEXT:  # the reference's encoding speed on one long text (one thread), for the benchmark
        data = BENCH_TEXT.encode("utf-8")
        t0 = time.perf_counter()
        reps = 0
        while reps < 3 or time.perf_counter() - t0 < 0.5:
            tok.encode(BENCH_TEXT, add_special_tokens=False)
            reps += 1
        mbs = len(data) * reps / (time.perf_counter() - t0) / 1e6
        with open(os.path.join(d, "bench.txt"), "w", encoding="utf-8") as f:
            f.write(BENCH_TEXT)
        with open(os.path.join(d, "bench_reference_mbs.txt"), "w") as f:
            f.write("%.2f\n" % mbs)
    return d, len(cases["strings"])


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1234
    rng = random.Random(seed)
    lines = corpus(rng, 3000)
    alphabet = sorted(set("".join(lines))) + [" ", " ", "\n", "\t"]
    long_random = random_strings(rng, alphabet, 40, 200) + [" ".join(rng.sample(lines, 5)) for _ in range(20)]
    os.makedirs(out, exist_ok=True)
    summary = []
    if "--bench" in sys.argv:
        global BENCH_TEXT
        BENCH_TEXT = "\n".join(corpus(random.Random(seed + 1), 20000))

    # byte-level BPE, Llama 3 style: Split(regex) + ByteLevel, merges as pairs, ignore_merges
    l3_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
    tok = train_byte_level(lines, LLAMA3_PAT, l3_specials, 900)
    add_tokens(tok, [])
    tok.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False),
                                              processors.TemplateProcessing(
                                                  single="<|begin_of_text|> $A",
                                                  special_tokens=[("<|begin_of_text|>", 0)])])
    # ASCII letters are their own byte-level form; Ġ is the space
    j = rewrite_merges(tok, as_strings=False, ignore_merges=True,
                       extra_words=["quickbrown", "ĠHello", "Hello", "Ġthe", "jumps", "Ġjumps"])
    strings = fixed_strings(["<|begin_of_text|>", "<|eot_id|>"]) + long_random + [
        "Hello quickbrown jumps", "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"]
    cfg = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": "{{ messages }}"}
    summary.append(write_kind(out, "bytelevel_llama3", j, cfg, strings, rng))
    # the same files with merges reversed: the parity test must fail there
    jb = json.loads(json.dumps(j))
    jb["model"]["merges"] = jb["model"]["merges"][::-1]
    jb["model"]["ignore_merges"] = False
    bd = os.path.join(out, "broken")
    os.makedirs(bd, exist_ok=True)
    with open(os.path.join(bd, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(jb, f, ensure_ascii=False)
    with open(os.path.join(out, "bytelevel_llama3", "cases.json"), encoding="utf-8") as f:
        good = f.read()
    with open(os.path.join(bd, "cases.json"), "w", encoding="utf-8") as f:
        f.write(good)

    # the same with tokenizer_config.json add_bos_token false: it wins over the post-processor
    cfg2 = dict(cfg, add_bos_token=False)
    summary.append(write_kind(out, "bytelevel_llama3_nobos", j, cfg2, strings[:40], rng, expect_plain_as_special=True))

    # byte-level BPE, Qwen2 style: merges as "a b" strings, no BOS, ByteLevel post-processor
    q_specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = train_byte_level(lines, QWEN2_PAT, q_specials, 800)
    add_tokens(tok, [])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    j = rewrite_merges(tok, as_strings=True, ignore_merges=False)
    strings = fixed_strings(["<|im_start|>", "<|im_end|>"]) + long_random
    summary.append(write_kind(out, "bytelevel_qwen2", j, {"bos_token": None, "eos_token": "<|im_end|>"}, strings, rng))

    # byte-level BPE, GPT-2 style: ByteLevel(add_prefix_space, use_regex)
    tok = train_gpt2(lines, ["<|endoftext|>", "<|pad|>"])
    add_tokens(tok, [])
    j = rewrite_merges(tok)
    strings = fixed_strings(["<|endoftext|>", "<|pad|>"]) + long_random
    summary.append(write_kind(out, "bytelevel_gpt2", j, None, strings, rng))

    # the GPT-2 model under other pre-tokenizers: every Split behavior, invert, String patterns, and a
    # Regex Replace normalizer (any pre-tokenization suits a byte-level vocabulary)
    j = rewrite_merges(tok)
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"Regex": "[0-9]{2,}"}, "content": "<num>"},
        {"type": "Replace", "pattern": {"String": "  "}, "content": " "}]}
    split = lambda pat, beh, inv=False, lit=False: {"type": "Split", "pattern": {"String" if lit else "Regex": pat},
                                                    "behavior": beh, "invert": inv}
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        split(r"\s+", "MergedWithPrevious"), split(r"\p{N}", "Contiguous"), split("the", "MergedWithNext", lit=True),
        split(r"[,.!?]", "Removed"), split(r"\p{L}+", "Isolated", inv=True), split("o", "Removed", inv=True, lit=True),
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    summary.append(write_kind(out, "bytelevel_split_behaviors", j, None, strings, rng))

    # SentencePiece-style BPE without byte fallback: unknown characters become <unk> (fused)
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"],
                                                       limit_alphabet=40, show_progress=False))
    add_tokens(tok, [])
    summary.append(write_kind(out, "sp_unk", rewrite_merges(tok), None, fixed_strings(["<s>", "</s>"]) + long_random,
                              rng))

    # SentencePiece-style BPE with byte fallback
    sp_cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": {"content": "<s>", "lstrip": False},
              "eos_token": "</s>", "chat_template": [{"name": "default", "template": "{{ x }}"},
                                                     {"name": "tool_use", "template": "{{ y }}"}]}
    sp_strings = fixed_strings(["<s>", "</s>"]) + long_random
    for name, form, strings_form in [("sp_metaspace_first", ("first", False), None),
                                     ("sp_metaspace_always", ("always", True), True),
                                     ("sp_metaspace_never", ("never", True), False),
                                     ("sp_normalizer", "normalizer", True)]:
        tok = train_sp(lines, form, 700)
        add_tokens(tok, [])
        set_template(tok, "<s>")
        j = rewrite_merges(tok, as_strings=strings_form)
        summary.append(write_kind(out, name, j, sp_cfg, sp_strings, rng))
    with open(os.path.join(out, "kinds.txt"), "w") as f:
        for d, n in summary:
            f.write(os.path.basename(d) + "\n")
    print("tokenizers %s: %s" % (tokenizers.__version__, ", ".join("%s (%d strings)" % (os.path.basename(d), n)
                                                                    for d, n in summary)))


if __name__ == "__main__":
    main()
