#!/usr/bin/env python3
"""Tokenizer encode speed: tpdecode's beside the reference, Hugging Face `tokenizers`.

  tok_ref_bench.py --make DIR [--mb 4] [--vocab 32000] [--seed 1]
      writes DIR/corpus.txt (generated mixed text: made-up words, numbers,
      accents, CJK, emoji, whitespace runs, code) and DIR/tokenizer.json, a
      byte-level BPE trained on it with the reference trainer, pre-tokenized
      as Llama 3's (a Split regex, then ByteLevel without its own regex)
  tok_ref_bench.py --tokenizer DIR --text FILE [--bench TPDECODE_BENCH] [--repeat 3] [--check]
      times the reference on FILE cut into documents at each newline (kept at
      the end of its document), add_special_tokens off, best of --repeat:
        encode        one call per document, 1 thread (the Python call included)
        encode_batch  all documents in one call, TOKENIZERS_PARALLELISM=false: 1 thread
        encode_batch  all documents in one call, the reference's thread pool (all CPUs)
      with --bench, also runs `TPDECODE_BENCH --tokenize DIR --text FILE --json`
      (1 thread and all CPUs), prints every row in MB/s with the ratio
      tpdecode / reference at the same thread count, and checks that both gave
      the same token count and the same hash of the ids (see
      launch/bench/bench_tok.c); with --check, a difference or a speed that is
      not finite and positive fails (exit 1).
Exit 77 (skipped) when the `tokenizers` package is missing.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

try:
    import tokenizers
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
except ImportError:
    print("SKIP: the Python package `tokenizers` is not installed (pip install tokenizers)")
    sys.exit(77)

# Llama 3's pre-tokenizer pattern (contractions, letters, 1-3 digits, punctuation, newlines, spaces)
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def make_corpus(n_bytes, seed):
    rng = random.Random(seed)
    syl = ["ka", "ro", "the", "an", "mi", "str", "ing", "el", "on", "pa", "re", "ti", "ous", "com", "ver", "sa", "lu",
           "nd", "qu", "ex", "is", "or", "po", "de", "al", "ble", "ght", "wh", "y", "ea"]
    # a lexicon with Zipf-like frequencies, so BPE has frequent words to merge
    lexicon = ["".join(rng.choice(syl) for _ in range(rng.randint(1, 4))) for _ in range(30000)]
    cum, acc = [], 0.0
    for i in range(len(lexicon)):
        acc += 1.0 / (i + 1)
        cum.append(acc)
    accents = ["café", "naïve", "señor", "über", "façade", "år", "déjà", "Ångström"]
    cjk = [chr(rng.randint(0x4E00, 0x4FFF)) + chr(rng.randint(0x4E00, 0x4FFF)) for _ in range(3000)]
    emoji = ["😀", "🚀", "✓", "👍🏽", "🇫🇷", "❤️"]
    code = ["for (int i = 0; i < n; i++) {", "  return x * 2;", "}", "def f(x):", "    print(x, end='')",
            "if (a != b && c) goto fail;", "\tx += 1"]
    out, size, line = [], 0, []
    while size < n_bytes:
        k = rng.random()
        if k < 0.70:
            w = rng.choices(lexicon, cum_weights=cum)[0]
            if rng.random() < 0.12:
                w = w.capitalize()
            p = rng.random()
            w += "," if p < 0.08 else "." if p < 0.14 else "'s" if p < 0.16 else ""
        elif k < 0.78:
            w = str(rng.randint(0, 10 ** rng.randint(1, 7)))
        elif k < 0.84:
            w = rng.choice(accents)
        elif k < 0.90:
            w = rng.choice(cjk)
        elif k < 0.93:
            w = rng.choice(emoji)
        elif k < 0.96:
            w = rng.choice(["   ", "\t", "  "])
        else:
            w = rng.choice(code)
        line.append(w)
        if len(line) >= rng.randint(4, 28):
            s = " ".join(line) + "\n"
            out.append(s)
            size += len(s.encode("utf-8"))
            line = []
    return "".join(out)


def make(args):
    os.makedirs(args.make, exist_ok=True)
    text = make_corpus(int(args.mb * 1e6), args.seed)
    corpus = os.path.join(args.make, "corpus.txt")
    with open(corpus, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|begin_of_text|>", "<|end_of_text|>"])
    tok.train([corpus], trainer)
    tok.save(os.path.join(args.make, "tokenizer.json"))
    print(f"wrote {corpus} ({len(text.encode('utf-8'))} bytes) and {args.make}/tokenizer.json "
          f"({tok.get_vocab_size()} tokens, tokenizers {tokenizers.__version__})")


def documents(path):
    with open(path, "rb") as f:
        data = f.read()
    parts = data.split(b"\n")
    docs = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        docs.append(parts[-1])
    return len(data), [d.decode("utf-8") for d in docs]


def ids_hash(encodings):
    h, n, mask = 0, 0, (1 << 64) - 1
    for e in encodings:
        for i in e.ids:
            h = (h * 1000003 + i + 1) & mask
        n += len(e.ids)
    return n, h


def best_of(repeat, fn):
    best, out = None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        s = time.perf_counter() - t0
        best = s if best is None or s < best else best
    return best, out


def time_reference(tok_dir, text, repeat):
    """Rows (name, threads, seconds, tokens, hash) of the reference; the 1-thread
    encode_batch runs in a child with TOKENIZERS_PARALLELISM=false."""
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    n_bytes, docs = documents(text)
    rows = []
    s, enc = best_of(repeat, lambda: [tok.encode(d, add_special_tokens=False) for d in docs])
    rows.append(("encode (1 call per line)", 1, s) + ids_hash(enc))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    child = subprocess.run([sys.executable, __file__, "--batch-child", tok_dir, "--text", text, "--repeat",
                            str(repeat)], env=env, capture_output=True, text=True)
    if child.returncode != 0:
        sys.exit(f"the 1-thread encode_batch child failed: {child.stderr.strip()}")
    c = json.loads(child.stdout)
    rows.append(("encode_batch", 1, c["seconds"], c["tokens"], c["hash"]))
    s, enc = best_of(repeat, lambda: tok.encode_batch(docs, add_special_tokens=False))
    rows.append(("encode_batch", os.cpu_count() or 1, s) + ids_hash(enc))
    return n_bytes, len(docs), rows


def batch_child(tok_dir, text, repeat):
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    _, docs = documents(text)
    s, enc = best_of(repeat, lambda: tok.encode_batch(docs, add_special_tokens=False))
    n, h = ids_hash(enc)
    print(json.dumps({"seconds": s, "tokens": n, "hash": h}))


def run_ours(bench, tok_dir, text, repeat):
    p = subprocess.run([bench, "--tokenize", tok_dir, "--text", text, "--json", "--tok-repeat", str(repeat)],
                       capture_output=True, text=True, env=dict(os.environ, TPD_COMM="single"))
    if p.returncode != 0:
        sys.exit(f"{bench} --tokenize failed ({p.returncode}): {(p.stderr or p.stdout).strip()}")
    rows = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    if not rows:
        sys.exit(f"{bench} --tokenize printed no JSON row: {p.stdout.strip()}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make", metavar="DIR")
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tokenizer", metavar="DIR")
    ap.add_argument("--text", metavar="FILE")
    ap.add_argument("--bench", metavar="TPDECODE_BENCH", default="build/tpdecode-bench",
                    help="the tpdecode-bench to time (default: build/tpdecode-bench; \"\": the reference only)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--batch-child", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.batch_child:
        return batch_child(args.batch_child, args.text, args.repeat)
    if args.make:
        make(args)
        if not args.tokenizer:
            return 0
    if not args.tokenizer or not args.text:
        ap.error("--tokenizer DIR and --text FILE are needed (or --make DIR)")
    n_bytes, n_docs, ref = time_reference(args.tokenizer, args.text, args.repeat)
    ours = run_ours(args.bench, args.tokenizer, args.text, args.repeat) if args.bench else []
    print(f"text {args.text}: {n_bytes} bytes, {n_docs} documents; tokenizers {tokenizers.__version__}; "
          f"best of {args.repeat}")
    print(f"  {'':34} {'threads':>7} {'seconds':>9} {'MB/s':>9} {'tokens':>9}")
    bad = []
    ref_by_threads = {}
    for name, th, s, n, h in ref:
        mbs = n_bytes / 1e6 / s
        ref_by_threads.setdefault(th, []).append((name, mbs))
        print(f"  reference {name:24} {th:7d} {s:9.4f} {mbs:9.2f} {n:9d}")
        if not (math.isfinite(mbs) and mbs > 0):
            bad.append(f"reference {name}: {mbs} MB/s")
        if (n, h) != (ref[0][3], ref[0][4]):
            bad.append(f"reference {name} gave other ids than encode")
    for r in ours:
        mbs = r["mb_s"]
        ratios = ", ".join(f"x{mbs / m:.2f} of {name}" for name, m in ref_by_threads.get(r["threads"], []) if m > 0)
        print(f"  tpdecode {'tpd_tokenizer_encode':25} {r['threads']:7d} {r['seconds']:9.4f} {mbs:9.2f} "
              f"{r['tokens']:9d}  {ratios}")
        if not (math.isfinite(mbs) and mbs > 0 and r["seconds"] > 0):
            bad.append(f"tpdecode at {r['threads']} threads: {mbs} MB/s")
        if r["bytes"] != n_bytes or r["docs"] != n_docs:
            bad.append(f"tpdecode read {r['bytes']} bytes in {r['docs']} documents, "
                       f"the reference {n_bytes} in {n_docs}")
        if r["tokens"] != ref[0][3] or int(r["hash"], 16) != ref[0][4]:
            bad.append(f"tpdecode at {r['threads']} threads: {r['tokens']} tokens (ids hash {r['hash']}), the "
                       f"reference {ref[0][3]} ({ref[0][4]:016x})")
    for b in bad:
        print("FAIL " + b)
    if not bad and ours:
        print(f"same ids as the reference: {ref[0][3]} tokens")
    return 1 if bad and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
