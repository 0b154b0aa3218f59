#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (checked in; run
again only to change them).

Usage: make_seeds.py SYNTH [TOKREF]
  SYNTH   a built tpdecode-synth (its small models give the safetensors,
          config.json and tokenizer seeds; tests/fuzz/data/ holds the fixed
          files the targets load beside the input, written by the same tool)
  TOKREF  optional: the output folder of tests/tokenizer/gen_reference.py;
          each kind's tokenizer.json, cut down to a few dozen tokens, becomes
          a tokenizer seed, and its tokenizer_config.json a config seed.
Chat templates come from tests/unit/chat_ref.py (needs jinja2).
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "corpus")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def st_file(tensors, meta=None):
    """A safetensors file from {name: (dtype, shape, n_bytes)}."""
    header, data, at = {}, b"", 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, (dt, shape, n) in tensors.items():
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [at, at + n]}
        data += bytes((i * 37 + 11) & 255 for i in range(n))
        at += n
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def synth(exe, out, *args):
    subprocess.run([exe, "--out", out, *args], check=True, stdout=subprocess.DEVNULL)


def shrink_tokenizer(j, keep=48):
    m = j.get("model") or {}
    vocab = m.get("vocab") or {}
    kept = {k: v for k, v in vocab.items() if v < keep}
    for a in j.get("added_tokens") or []:
        if a.get("content") in vocab:
            kept[a["content"]] = vocab[a["content"]]
    merges = []
    for mg in m.get("merges") or []:
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in kept and b in kept and a + b in kept:
            merges.append(mg)
    m["vocab"], m["merges"] = kept, merges
    j["added_tokens"] = [a for a in j.get("added_tokens") or [] if a.get("id", 0) < keep + 8]
    return j


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    exe = sys.argv[1]
    tokref = sys.argv[2] if len(sys.argv) > 2 else None
    shutil.rmtree(OUT, ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix="tpd-seeds-")
    try:
        small = ["--layers", "1", "--dim", "8", "--heads", "2", "--kv-heads", "1", "--ffn", "8", "--vocab", "16"]
        # ---- safetensors: byte 0 even = a whole file, odd = an index ----
        for i, extra in enumerate([["--dtype", "f32"], ["--dtype", "bf16", "--tie", "1"], ["--dtype", "f16"]]):
            synth(exe, f"{tmp}/st{i}", *small, *extra)
            put("safetensors", b"\0" + read(f"{tmp}/st{i}/model.safetensors"))
        put("safetensors", b"\0" + st_file({}))
        put("safetensors", b"\0" + st_file({"a": ("I64", [2], 16), "b": ("U8", [], 1), "c": ("BOOL", [0, 3], 0)},
                                            meta={"format": "pt"}))
        put("safetensors", b"\0" + st_file({"w": ("F8_E4M3", [2, 2, 1], 4), "x": ("F64", [1], 8)}))
        # the index that names the shards of tests/fuzz/data/ (same tool, same arguments)
        synth(exe, f"{tmp}/sh", *small, "--shards", "2")
        for k in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
            if read(f"{tmp}/sh/{k}") != read(os.path.join(HERE, "data", k)):
                sys.exit(f"make_seeds.py: {k} differs from tests/fuzz/data/{k}; write data/ again with this synth")
        idx = json.loads(read(f"{tmp}/sh/model.safetensors.index.json"))
        put("safetensors", b"\1" + json.dumps(idx).encode())
        idx2 = {"metadata": {"total_size": 1}, "weight_map": dict(list(idx["weight_map"].items())[:3])}
        put("safetensors", b"\1" + json.dumps(idx2).encode())
        # ---- config.json ----
        for i, extra in enumerate([[], ["--arch", "mistral", "--sliding-window", "64"], ["--arch", "qwen2"],
                                   ["--rope-llama3", "--tie", "1"], ["--attention-bias", "--head-dim", "8"]]):
            synth(exe, f"{tmp}/c{i}", *small, *extra)
            put("config", read(f"{tmp}/c{i}/config.json"))
        conf = os.path.join(ROOT, "tests", "data", "conformance")
        for d in sorted(os.listdir(conf)):
            if os.path.exists(os.path.join(conf, d, "config.json")):
                put("config", read(os.path.join(conf, d, "config.json")))
        base = json.loads(read(f"{tmp}/c0/config.json"))
        v5 = dict(base)
        del v5["rope_theta"], v5["rope_scaling"]
        v5["rope_parameters"] = {"rope_type": "linear", "rope_theta": 500000.0, "factor": 4.0}
        v5["eos_token_id"] = [2, 3]
        put("config", json.dumps(v5))
        # ---- tokenizer.json ----
        put("tokenizer", read(os.path.join(HERE, "data", "tokenizer.json")))
        if tokref:
            for kind in sorted(os.listdir(tokref)):
                p = os.path.join(tokref, kind, "tokenizer.json")
                if os.path.exists(p) and kind != "broken":
                    put("tokenizer", json.dumps(shrink_tokenizer(json.loads(read(p))), ensure_ascii=False))
                    c = os.path.join(tokref, kind, "tokenizer_config.json")
                    if os.path.exists(c):
                        put("tokenizer_config", read(c))
        # ---- tokenizer_config.json (beside data/tokenizer.json) and chat templates ----
        put("tokenizer_config", read(os.path.join(HERE, "data", "tokenizer_config.json")))
        sys.path.insert(0, os.path.join(ROOT, "tests", "unit"))
        import chat_ref  # noqa: E402
        for name, kind, tmpl, bos, eos in chat_ref.TEMPLATES:
            cfg = {"add_bos_token": False, "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                   "chat_template": tmpl}
            put("tokenizer_config", json.dumps(cfg))
        put("tokenizer_config", json.dumps({"chat_template": [{"name": "default", "template": chat_ref.CHATML}],
                                            "bos_token": {"content": "<|begin_of_text|>", "lstrip": False},
                                            "add_eos_token": True, "eos_token": "<|end_of_text|>"}))
        # ---- server request bodies: byte 0 even = /v1/completions, odd = chat ----
        comp = [
            {"model": "tiny", "prompt": "Hello, world", "max_tokens": 8},
            {"model": "tiny", "prompt": [1, 72, 101, 108], "max_tokens": 4, "temperature": 0.7, "top_p": 0.9,
             "top_k": 5, "seed": 42, "stop": ["\n", "."], "logprobs": 2, "stream": True,
             "stream_options": {"include_usage": True}, "user": "u", "n": 1},
            {"model": "tiny", "prompt": "x", "echo": False, "ignore_eos": True, "presence_penalty": 0,
             "frequency_penalty": 0.0, "stop": "end", "max_tokens": None},
        ]
        for b in comp:
            put("server_request", b"\0" + json.dumps(b).encode())
        chat = [
            {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]},
            {"model": "tiny", "messages": [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Hi"},
                                           {"role": "assistant", "content": "Hello"},
                                           {"role": "user", "content": "caf\u00e9?"}],
             "max_completion_tokens": 16, "logprobs": True, "top_logprobs": 3, "stream": True},
        ]
        for b in chat:
            put("server_request", b"\1" + json.dumps(b, ensure_ascii=False).encode())
        # ---- the CLI's --prompt-ids ----
        for s in ["1,2,3", "0", "2147483647", "1,", "12,345,6789,0,1,1,1", "-1", "1,,2", "+7, 8", ""]:
            put("cli_ids", s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for t in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, t))
        size = sum(os.path.getsize(os.path.join(OUT, t, f)) for f in files)
        print(f"make_seeds.py: {t}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
