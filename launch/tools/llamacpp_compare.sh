#!/usr/bin/env bash
# llamacpp_compare.sh - measure llama.cpp's batched decode speed on a tpdecode
# checkpoint, so tpdecode's numbers can be set beside an outside baseline on the
# same model shape, machine and thread count.
#
# NOT RUN IN CI: llama.cpp is not installed there and is never vendored into this
# repository. Build it yourself elsewhere (CPU, Release), then point at it:
#
#   LLAMA_CPP_BUILD=dir  build tree holding llama-batched-bench (dir or dir/bin)
#   LLAMA_CPP_SRC=dir    llama.cpp source tree (gguf-py/, convert_hf_to_gguf.py)
#   PYTHON=python3       interpreter with numpy (+ torch/transformers for --converter hf)
#
# Usage:
#   llamacpp_compare.sh MODEL_DIR [--threads N] [--batches 1,8,16] [--npp 64]
#       [--ntg 32] [--ctx N] [--repeat R] [--gguf FILE] [--converter auto|hf|own]
#
# MODEL_DIR is a tpdecode/HF Llama checkpoint (config.json, model.safetensors in
# bf16, tokenizer.json byte-level BPE). It is converted once to a bf16 GGUF
# (default MODEL_DIR/../<name>-bf16.gguf unless --gguf is given; MODEL_DIR is
# only read). --converter hf uses llama.cpp's convert_hf_to_gguf.py; own uses the
# small writer below (gguf-py's GGUFWriter, same tensor shapes and bf16 bytes,
# norms in f32 as llama.cpp's own converter stores them); auto tries hf when
# torch and transformers import, else own. Each configuration runs --repeat
# times (default 2) with prompts not shared across sequences; the table printed
# is llama-batched-bench's own (S_TG t/s = system generated tokens/s).
set -euo pipefail

die() { echo "llamacpp_compare: $*" >&2; exit 2; }

[ $# -ge 1 ] || die "usage: $0 MODEL_DIR [--threads N] [--batches LIST] [--npp N] [--ntg N] [--ctx N] [--repeat R] [--gguf FILE] [--converter auto|hf|own]"
MODEL_DIR=$1; shift
THREADS=2; BATCHES=1,8,16,32,64; NPP=64; NTG=32; CTX=""; REPEAT=2; GGUF=""; CONV=auto
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || die "option $1 needs a value"
    case $1 in
        --threads) THREADS=$2 ;;
        --batches) BATCHES=$2 ;;
        --npp) NPP=$2 ;;
        --ntg) NTG=$2 ;;
        --ctx) CTX=$2 ;;
        --repeat) REPEAT=$2 ;;
        --gguf) GGUF=$2 ;;
        --converter) CONV=$2 ;;
        *) die "unknown option '$1'" ;;
    esac
    shift 2
done

isint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
for v in THREADS NPP NTG REPEAT; do isint "${!v}" || die "--${v,,} must be a positive integer, got '${!v}'"; done
[ -z "$CTX" ] || isint "$CTX" || die "--ctx must be a positive integer, got '$CTX'"
[[ $BATCHES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--batches must be a comma list of positive integers, got '$BATCHES'"
case $CONV in auto|hf|own) ;; *) die "--converter must be auto, hf or own, got '$CONV'" ;; esac

[ -n "${LLAMA_CPP_BUILD:-}" ] || die "LLAMA_CPP_BUILD is not set (llama.cpp build dir containing llama-batched-bench)"
[ -n "${LLAMA_CPP_SRC:-}" ] || die "LLAMA_CPP_SRC is not set (llama.cpp source dir containing gguf-py/)"
BENCH=""
for c in "$LLAMA_CPP_BUILD/bin/llama-batched-bench" "$LLAMA_CPP_BUILD/llama-batched-bench"; do
    if [ -x "$c" ]; then BENCH=$c; break; fi
done
[ -n "$BENCH" ] || die "no executable llama-batched-bench in $LLAMA_CPP_BUILD/bin or $LLAMA_CPP_BUILD (build target llama-batched-bench)"
[ -d "$LLAMA_CPP_SRC/gguf-py/gguf" ] || die "$LLAMA_CPP_SRC/gguf-py/gguf not found (LLAMA_CPP_SRC must be a llama.cpp source tree)"
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || die "python interpreter '$PY' not found (set PYTHON)"
"$PY" -c 'import numpy' 2>/dev/null || die "'$PY' cannot import numpy (pip install numpy, or set PYTHON)"
for f in config.json model.safetensors tokenizer.json; do
    [ -f "$MODEL_DIR/$f" ] || die "$MODEL_DIR/$f not found (expected a tpdecode checkpoint dir)"
done

if [ -z "$GGUF" ]; then
    md=$(cd "$MODEL_DIR" && pwd)
    GGUF="$(dirname "$md")/$(basename "$md")-bf16.gguf"
fi

own_convert() {
    local script
    script=$(mktemp /tmp/llamacpp_compare_conv.XXXXXX.py)
    cat >"$script" <<'PYEOF'
# tpdecode checkpoint (HF Llama layout, bf16 safetensors) -> GGUF bf16.
import json, struct, sys
import numpy as np
import gguf

src, dst = sys.argv[1], sys.argv[2]
cfg = json.load(open(f"{src}/config.json"))

def fail(msg):
    sys.exit(f"llamacpp_compare: {msg}")

if cfg.get("architectures") != ["LlamaForCausalLM"]:
    fail(f"architectures {cfg.get('architectures')} is not supported (only LlamaForCausalLM)")
if cfg.get("rope_scaling") is not None:
    fail("config rope_scaling is set; this converter does not implement rope scaling")
if cfg.get("attention_bias") or cfg.get("mlp_bias"):
    fail("config attention_bias/mlp_bias is true; this converter does not implement biases")
if cfg.get("hidden_act", "silu") != "silu":
    fail(f"config hidden_act '{cfg.get('hidden_act')}' is not supported (only silu)")
dim, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
hd = dim // nh
if dim % nh or nh % nkv:
    fail(f"hidden_size {dim} / heads {nh} / kv heads {nkv} do not divide")
if "head_dim" in cfg and cfg["head_dim"] != hd:
    fail(f"config head_dim {cfg['head_dim']} != hidden_size/num_attention_heads {hd}")
nl, vocab, tied = cfg["num_hidden_layers"], cfg["vocab_size"], bool(cfg.get("tie_word_embeddings", False))

# safetensors: u64 header length, JSON header, raw little-endian data.
with open(f"{src}/model.safetensors", "rb") as f:
    hlen = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(hlen))
hdr.pop("__metadata__", None)
raw = np.memmap(f"{src}/model.safetensors", dtype=np.uint8, mode="r", offset=8 + hlen)

def load(name, shape):
    if name not in hdr:
        fail(f"tensor {name} missing from model.safetensors")
    e = hdr.pop(name)
    if e["dtype"] != "BF16":
        fail(f"tensor {name} has dtype {e['dtype']}; only BF16 is supported")
    if list(e["shape"]) != list(shape):
        fail(f"tensor {name} shape {e['shape']} != expected {list(shape)}")
    a, b = e["data_offsets"]
    return np.asarray(raw[a:b]).view("<u2").reshape(shape)

def rope_rows(w, heads):
    # HF stores each head's rows as [first halves of the pairs | second halves];
    # GGUF llama rope expects the two members of each pair on adjacent rows.
    r = w.reshape(heads, 2, hd // 2, w.shape[1])
    return np.ascontiguousarray(r.transpose(0, 2, 1, 3).reshape(w.shape))

def bf16_to_f32(w):
    return (w.astype(np.uint32) << 16).view(np.float32)

wr = gguf.GGUFWriter(dst, "llama")
wr.add_name("tpdecode-synth")
wr.add_context_length(cfg["max_position_embeddings"])
wr.add_embedding_length(dim)
wr.add_block_count(nl)
wr.add_feed_forward_length(cfg["intermediate_size"])
wr.add_head_count(nh)
wr.add_head_count_kv(nkv)
wr.add_rope_dimension_count(hd)
wr.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
wr.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
wr.add_vocab_size(vocab)
wr.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)

tok = json.load(open(f"{src}/tokenizer.json"))
if tok["model"]["type"] != "BPE":
    fail(f"tokenizer model {tok['model']['type']} is not supported (only byte-level BPE)")
tokens = [None] * vocab
types = [gguf.TokenType.NORMAL] * vocab
for t, i in tok["model"]["vocab"].items():
    if i >= vocab:
        fail(f"tokenizer id {i} >= vocab_size {vocab}")
    tokens[i] = t
for a in tok.get("added_tokens", []):
    if a["id"] >= vocab:
        fail(f"added token id {a['id']} >= vocab_size {vocab}")
    tokens[a["id"]] = a["content"]
    types[a["id"]] = gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED
for i in range(vocab):
    if tokens[i] is None:
        tokens[i] = f"[PAD{i}]"
        types[i] = gguf.TokenType.UNUSED
merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"].get("merges", [])]
wr.add_tokenizer_model("gpt2")
wr.add_tokenizer_pre("llama-bpe")
wr.add_token_list(tokens)
wr.add_token_types(types)
wr.add_token_merges(merges)
try:
    tcfg = json.load(open(f"{src}/tokenizer_config.json"))
except FileNotFoundError:
    tcfg = {}
if "add_bos_token" in tcfg:
    wr.add_add_bos_token(bool(tcfg["add_bos_token"]))
if "bos_token_id" in cfg:
    wr.add_bos_token_id(cfg["bos_token_id"])
if "eos_token_id" in cfg:
    wr.add_eos_token_id(cfg["eos_token_id"])

BF = gguf.GGMLQuantizationType.BF16
ff = cfg["intermediate_size"]
wr.add_tensor("token_embd.weight", load("model.embed_tokens.weight", (vocab, dim)), raw_dtype=BF)
for l in range(nl):
    p, q = f"model.layers.{l}.", f"blk.{l}."
    wr.add_tensor(q + "attn_norm.weight", bf16_to_f32(load(p + "input_layernorm.weight", (dim,))))
    wr.add_tensor(q + "attn_q.weight", rope_rows(load(p + "self_attn.q_proj.weight", (nh * hd, dim)), nh), raw_dtype=BF)
    wr.add_tensor(q + "attn_k.weight", rope_rows(load(p + "self_attn.k_proj.weight", (nkv * hd, dim)), nkv), raw_dtype=BF)
    wr.add_tensor(q + "attn_v.weight", load(p + "self_attn.v_proj.weight", (nkv * hd, dim)), raw_dtype=BF)
    wr.add_tensor(q + "attn_output.weight", load(p + "self_attn.o_proj.weight", (dim, nh * hd)), raw_dtype=BF)
    wr.add_tensor(q + "ffn_norm.weight", bf16_to_f32(load(p + "post_attention_layernorm.weight", (dim,))))
    wr.add_tensor(q + "ffn_gate.weight", load(p + "mlp.gate_proj.weight", (ff, dim)), raw_dtype=BF)
    wr.add_tensor(q + "ffn_up.weight", load(p + "mlp.up_proj.weight", (ff, dim)), raw_dtype=BF)
    wr.add_tensor(q + "ffn_down.weight", load(p + "mlp.down_proj.weight", (dim, ff)), raw_dtype=BF)
wr.add_tensor("output_norm.weight", bf16_to_f32(load("model.norm.weight", (dim,))))
if not tied:
    wr.add_tensor("output.weight", load("lm_head.weight", (vocab, dim)), raw_dtype=BF)
if hdr:
    fail(f"model.safetensors has tensors this converter does not map: {sorted(hdr)[:5]}")
wr.write_header_to_file()
wr.write_kv_data_to_file()
wr.write_tensors_to_file()
wr.close()
print(f"llamacpp_compare: wrote {dst} (own converter, bf16 matrices, f32 norms)")
PYEOF
    local rc=0
    PYTHONPATH="$LLAMA_CPP_SRC/gguf-py${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$script" "$MODEL_DIR" "$GGUF.tmp" || rc=$?
    rm -f "$script"
    [ $rc -eq 0 ] || { rm -f "$GGUF.tmp"; die "own converter failed (exit $rc)"; }
    mv "$GGUF.tmp" "$GGUF"
}

hf_convert() {
    [ -f "$LLAMA_CPP_SRC/convert_hf_to_gguf.py" ] || return 1
    PYTHONPATH="$LLAMA_CPP_SRC/gguf-py${PYTHONPATH:+:$PYTHONPATH}" \
        "$PY" "$LLAMA_CPP_SRC/convert_hf_to_gguf.py" "$MODEL_DIR" --outtype bf16 --outfile "$GGUF.tmp" || { rm -f "$GGUF.tmp"; return 1; }
    mv "$GGUF.tmp" "$GGUF"
    echo "llamacpp_compare: wrote $GGUF (convert_hf_to_gguf.py)"
}

if [ -f "$GGUF" ] && [ "$GGUF" -nt "$MODEL_DIR/model.safetensors" ]; then
    echo "llamacpp_compare: using existing $GGUF"
else
    case $CONV in
        own) own_convert ;;
        hf) hf_convert || die "convert_hf_to_gguf.py failed (see above); try --converter own" ;;
        auto)
            if "$PY" -c 'import torch, transformers' 2>/dev/null && hf_convert; then :
            else echo "llamacpp_compare: convert_hf_to_gguf.py unavailable or failed; using own converter"; own_convert
            fi ;;
    esac
fi

maxb=$(tr ',' '\n' <<<"$BATCHES" | sort -n | tail -1)
[ -n "$CTX" ] || CTX=$(( maxb * (NPP + NTG) ))
echo "llamacpp_compare: cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p')"
LOG=$(mktemp /tmp/llamacpp_compare_log.XXXXXX)
trap 'rm -f "$LOG"' EXIT
CMD=("$BENCH" -m "$GGUF" -c "$CTX" -b 2048 -ub 512 -npp "$NPP" -ntg "$NTG" -npl "$BATCHES" -t "$THREADS" -tb "$THREADS")
echo "llamacpp_compare: command: ${CMD[*]}"
for r in $(seq 1 "$REPEAT"); do
    echo "llamacpp_compare: run $r/$REPEAT; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    if ! "${CMD[@]}" >"$LOG" 2>&1; then
        tail -n 20 "$LOG" >&2
        die "llama-batched-bench failed (its last log lines are above)"
    fi
    [ "$r" -gt 1 ] || grep -m1 -E '^build: ' "$LOG" || true
    grep -E '^\|' "$LOG" || die "llama-batched-bench printed no result table"
    echo "llamacpp_compare: run $r/$REPEAT; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
done
