#!/usr/bin/env bash
# The command-line programs end to end: --json schema, sampling reproducible
# across TP degrees, text in and text out (--prompt, output_text, the synth
# tokenizer, all against Python's tokenizers; not-UTF-8 text, a padded
# vocabulary, no tokenizer.json), --logits-out (and failing before any work when it cannot
# be written), the plain output, synth reproducibility and rewriting a folder,
# the programs' one-line errors, --version and --help, option ranges, the
# --threads cap, varied greedy output of the synthetic presets, the mpirun and
# srun examples, and --backend cuda (the CPU's ids on a GPU, one line without).
#   cli.sh BUILD_DIR [MPIEXEC]
set -u
B=$1
MPI=${2:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d /tmp/tpd-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export OMPI_MCA_rmaps_base_oversubscribe=1
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
# one_error PROG FILE PHRASE: FILE (stderr) is exactly one line, "PROG: error: ...PHRASE..."
one_error() {
  [ "$(wc -l < "$2")" -eq 1 ] && grep -q "^$1: error: " "$2" && grep -qF -- "$3" "$2"
}
# distinct: number of distinct words on stdin
distinct() { tr ' ' '\n' | grep -v '^$' | sort -u | wc -l; }

"$B/tpdecode-synth" --out "$T/m" --preset tiny --dtype bf16 --seed 11 > "$T/synth.out" || exit 1
"$B/tpdecode-synth" --out "$T/m2" --preset tiny --dtype bf16 --seed 11 > /dev/null || exit 1
"$B/tpdecode-synth" --out "$T/m3" --preset tiny --dtype bf16 --seed 12 > /dev/null || exit 1
cmp -s "$T/m/model.safetensors" "$T/m2/model.safetensors" && ok "synth: same seed, same bytes" || bad "synth: same seed differs"
cmp -s "$T/m/model.safetensors" "$T/m3/model.safetensors" && bad "synth: another seed, same bytes" || ok "synth: another seed differs"
size=$(stat -c %s "$T/m/model.safetensors")
grep -qF "wrote $T/m/model.safetensors ($size bytes)" "$T/synth.out" && grep -qF "wrote $T/m/config.json" "$T/synth.out" \
  && grep -qF "wrote $T/m/tokenizer.json" "$T/synth.out" && grep -qF "wrote $T/m/tokenizer_config.json" "$T/synth.out" \
  && grep -q "4 files, .* in $T/m " "$T/synth.out" && ok "synth prints the files it wrote, their sizes and the folder" \
  || { bad "synth output does not list its files:"; cat "$T/synth.out"; }

ARGS=(-m "$T/m" --prompt-ids 1,2,3,4,5 --prompt-ids 9 --prompt-ids 100,200,300 -n 20 --ignore-eos)
"$B/tpdecode" "${ARGS[@]}" --json > "$T/g1.json" && "$B/tests/unit/jsoncheck" 3 20 < "$T/g1.json" > "$T/g1.ids" \
  && ok "--json schema (greedy, TP=1)" || bad "--json schema"
"$B/tpdecode" "${ARGS[@]}" --json --temp 0.8 --top-k 40 --top-p 0.9 --seed 5 > "$T/s1.json" \
  && "$B/tests/unit/jsoncheck" 3 20 < "$T/s1.json" > "$T/s1.ids" || bad "sampled run"
"$B/tpdecode" "${ARGS[@]}" --json --temp 0.8 --top-k 40 --top-p 0.9 --seed 6 > "$T/s6.json" \
  && "$B/tests/unit/jsoncheck" 3 20 < "$T/s6.json" > "$T/s6.ids" || bad "sampled run, seed 6"
cmp -s "$T/s1.ids" "$T/s6.ids" && bad "seeds 5 and 6 sample the same tokens" || ok "another seed samples other tokens"
cmp -s "$T/s1.ids" "$T/g1.ids" && bad "sampling gave the greedy tokens" || ok "sampling differs from greedy"

"$B/tpdecode" "${ARGS[@]}" --logits-out "$T/l.f32" > "$T/plain.txt" || bad "--logits-out run"
size=$(stat -c %s "$T/l.f32" 2>/dev/null || echo 0)
[ "$size" -eq $((3 * 512 * 4)) ] && ok "--logits-out writes [3, 512] float32" || bad "--logits-out wrote $size bytes"
grep -q '^seq 2:' "$T/plain.txt" && grep -q 'tokens/s' "$T/plain.txt" && ok "plain output" || bad "plain output"

# ---- text in, text out: --prompt and output_text against the reference `tokenizers` (Python) ----
# tokcheck TOKENIZER_JSON RUN_JSON TEXT...: each sequence's prompt_ids are what tokenizers encodes its TEXT
# to ("-" for a --prompt-ids sequence: not checked), its output_text is tokenizers' decode of its
# output_ids (special tokens skipped), and output_ids_not_in_tokenizer lists the ids tokenizers lacks;
# prints "N_SEQS N_NOT_IN_TOKENIZER"
cat > "$T/tokcheck.py" <<'EOF'
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
seqs = json.load(open(sys.argv[2], encoding="utf-8"))["sequences"]
texts = sys.argv[3:]
bad = 0
if len(seqs) != len(texts):
    print(f"{len(seqs)} sequences for {len(texts)} prompts"); sys.exit(1)
n_unknown = 0
for i, (s, t) in enumerate(zip(seqs, texts)):
    if t != "-":
        want = tok.encode(t).ids
        if s["prompt_ids"] != want:
            print(f"seq {i} {t!r}: prompt_ids {s['prompt_ids']}, tokenizers {want}"); bad = 1
    ref = tok.decode(s["output_ids"], skip_special_tokens=True)
    if s.get("output_text") != ref:
        print(f"seq {i}: output_text {s.get('output_text')!r}, tokenizers {ref!r}"); bad = 1
    unknown = [x for x in s["output_ids"] if tok.id_to_token(x) is None]
    n_unknown += len(unknown)
    if s.get("output_ids_not_in_tokenizer") != unknown:
        print(f"seq {i}: output_ids_not_in_tokenizer {s.get('output_ids_not_in_tokenizer')}, expected {unknown}"); bad = 1
print(len(seqs), n_unknown)
sys.exit(bad)
EOF
PY=${TPD_PYTHON:-python3}
TEXTS=("The river runs past the old mill." "I'll say it's 12345 times; don't you?" $'  runs   of\twhitespace\n\n and  lines \n'
  "naïve café, Ærøskøbing" "東京と北京 (CJK)" "emoji 🙂👍🏽 and 🇫🇷" "<|end_of_text|> special tokens in text <|begin_of_text|>"
  "x" "")
PARGS=()
for t in "${TEXTS[@]}"; do PARGS+=(--prompt "$t"); done
if ! "$PY" -c 'import tokenizers' 2> /dev/null; then
  bad "text checks: '$PY' cannot import tokenizers (pip install tokenizers; .ci/run installs it)"
else
  # the synth tokenizer: the model's vocab_size ids, BOS/EOS where config.json says, BOS added
  "$PY" - "$T/m" <<'EOF' > "$T/tokcfg.out" 2>&1 && ok "synth tokenizer: $(cat "$T/tokcfg.out")" || { bad "synth tokenizer:"; cat "$T/tokcfg.out"; }
import json, sys
from tokenizers import Tokenizer
d = sys.argv[1]
tok = Tokenizer.from_file(d + "/tokenizer.json")
cfg, tcfg = json.load(open(d + "/config.json")), json.load(open(d + "/tokenizer_config.json"))
assert tok.get_vocab_size() == cfg["vocab_size"], (tok.get_vocab_size(), cfg["vocab_size"])
assert tok.token_to_id(tcfg["bos_token"]) == cfg["bos_token_id"] and tok.token_to_id(tcfg["eos_token"]) == cfg["eos_token_id"]
assert tcfg["add_bos_token"] is True and tok.encode("hi").ids[0] == cfg["bos_token_id"]
assert tok.decode(tok.encode("Hello, world").ids) == "Hello, world"
print(f"tokenizers loads it: {tok.get_vocab_size()} ids = vocab_size, BOS {cfg['bos_token_id']} / EOS {cfg['eos_token_id']} as config.json, BOS added")
EOF
  # a batch of texts and one id prompt, 10 tokens each (the tiny model's ids are half raw bytes: split characters)
  if "$B/tpdecode" -m "$T/m" "${PARGS[@]}" --prompt-ids 5,300,7 -n 10 --ignore-eos --json > "$T/text.json" 2> "$T/err"; then
    "$PY" "$T/tokcheck.py" "$T/m/tokenizer.json" "$T/text.json" "${TEXTS[@]}" - > "$T/tc.out" \
      && ok "--prompt: prompt_ids, output_text and output_ids_not_in_tokenizer equal tokenizers' on $(cut -d' ' -f1 < "$T/tc.out") sequences" \
      || { bad "--prompt against tokenizers:"; cat "$T/tc.out"; }
  else
    bad "--prompt batch run failed:"; cat "$T/err"
  fi
  # --chat: the user message (and --system) through the chat template; the synth tokenizer has no
  # template and no header tokens, so a llama model takes Llama 2's [INST] format (docs/usage.md)
  "$B/tpdecode" -m "$T/m" --chat "Hello there" --system "Be brief" -n 2 --json > "$T/chat.json" 2> "$T/err" \
    && "$PY" - "$T/m/tokenizer.json" "$T/chat.json" <<'EOF' > "$T/chat.out" 2>&1 && ok "--chat: $(cat "$T/chat.out")" || { bad "--chat:"; cat "$T/chat.out" "$T/err"; }
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
ids = json.load(open(sys.argv[2]))["sequences"][0]["prompt_ids"]
want = "<|begin_of_text|>[INST] <<SYS>>\nBe brief\n<</SYS>>\n\nHello there [/INST]"
assert tok.decode(ids, skip_special_tokens=False) == want, tok.decode(ids, skip_special_tokens=False)
assert ids == tok.encode(want, add_special_tokens=False).ids
print(f"{len(ids)} prompt ids decode to the Llama 2 [INST] render and equal tokenizers' encoding of it")
EOF
  # plain output of one --prompt streams the text: the same bytes as --json's output_text
  "$B/tpdecode" -m "$T/m" --prompt "${TEXTS[3]}" -n 24 --ignore-eos > "$T/stream.txt" 2> "$T/err" \
    && "$B/tpdecode" -m "$T/m" --prompt "${TEXTS[3]}" -n 24 --ignore-eos --json > "$T/stream.json" \
    && "$PY" - "$T/stream.txt" "$T/stream.json" <<'EOF' > "$T/st.out" 2>&1 && ok "plain --prompt: $(cat "$T/st.out")" || { bad "plain --prompt output:"; cat "$T/st.out" "$T/err"; }
import json, sys
out = open(sys.argv[1], "rb").read()
want = json.load(open(sys.argv[2], encoding="utf-8"))["sequences"][0]["output_text"].encode("utf-8")
assert out.startswith(b"seq 0: "), out[:40]
end = out.rindex(b"\nprefill ")
got = out[len(b"seq 0: "):end]
assert got == want, (got, want)
print(f"'seq 0: ' and the {len(got)} bytes of output_text, then the timing line")
EOF
  # ids of a model's padded vocabulary (vocab_size 640, tokenizer 512): generated, left out of the text
  "$B/tpdecode-synth" --out "$T/pad" --preset tiny --vocab 640 --seed 11 > /dev/null && cp "$T/m/tokenizer.json" "$T/m/tokenizer_config.json" "$T/pad/" \
    && "$B/tpdecode" -m "$T/pad" "${PARGS[@]:0:6}" -n 16 --ignore-eos --json > "$T/pad.json" 2> "$T/err" \
    && "$PY" "$T/tokcheck.py" "$T/pad/tokenizer.json" "$T/pad.json" "${TEXTS[@]:0:3}" > "$T/tc.out" \
    && [ "$(cut -d' ' -f2 < "$T/tc.out")" -gt 0 ] \
    && ok "padded vocab: $(cut -d' ' -f2 < "$T/tc.out") generated ids beyond the tokenizer, listed in output_ids_not_in_tokenizer, left out of output_text as tokenizers does" \
    || { bad "padded vocab (640 ids, tokenizer 512):"; cat "$T/tc.out" "$T/err"; }
  "$B/tpdecode" -m "$T/pad" --prompt "${TEXTS[0]}" -n 24 --ignore-eos --json > "$T/pad1.json" 2> /dev/null
  n_pad=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["sequences"][0]["output_ids_not_in_tokenizer"]))' "$T/pad1.json" 2> /dev/null)
  "$B/tpdecode" -m "$T/pad" --prompt "${TEXTS[0]}" -n 24 --ignore-eos > "$T/out" 2> "$T/err"
  rc=$?
  [ $rc -eq 0 ] && [ "${n_pad:-0}" -gt 0 ] && [ "$(wc -l < "$T/err")" -eq 1 ] \
    && grep -q "^tpdecode: note: seq 0: $n_pad generated ids\{0,1\} not in the tokenizer (512 tokens; the model's vocab_size is 640) left out of the text: [0-9]" "$T/err" \
    && ok "padded vocab, plain output: $(cat "$T/err")" || { bad "padded vocab, plain output: status $rc, $n_pad ids:"; cat "$T/err"; }

  # Llama 3's vocabulary size: merges capped, whole words after them reached through ignore_merges
  start=$(date +%s%N)
  "$B/tpdecode-synth" --out "$T/big" --preset tiny --vocab 128256 --seed 2 > /dev/null || bad "synth --vocab 128256"
  ms=$((($(date +%s%N) - start) / 1000000))
  "$PY" - "$T/big/tokenizer.json" <<'EOF' > "$T/bigtext" 2> "$T/err"
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
n_learnt = 258 + len(json.load(open(sys.argv[1]))["model"]["merges"])
words = [tok.decode([i]) for i in (n_learnt, n_learnt + 1000, 60000, 128255)]
assert all(len(tok.encode(w, add_special_tokens=False).ids) == 1 for w in words), words
sys.stdout.write("Whole words:" + "".join(words) + ", and the river runs past the mill.")
EOF
  if [ -s "$T/bigtext" ] && "$B/tpdecode" -m "$T/big" --prompt "$(cat "$T/bigtext")" "${PARGS[@]}" -n 4 --json > "$T/big.json" 2> "$T/err"; then
    "$PY" "$T/tokcheck.py" "$T/big/tokenizer.json" "$T/big.json" "$(cat "$T/bigtext")" "${TEXTS[@]}" > "$T/tc.out" \
      && [ "$ms" -lt 10000 ] \
      && ok "vocab 128256 (synth in $ms ms): '$(cat "$T/bigtext")' and the texts encode as tokenizers does" \
      || { bad "vocab 128256 (synth in $ms ms):"; cat "$T/tc.out"; }
  else
    bad "vocab 128256 run:"; cat "$T/bigtext" "$T/err"
  fi
  rm -rf "$T/big" "$T/pad"
fi
# bad text, no tokenizer: one line each
"$B/tpdecode" -m "$T/m" --prompt "ok" --prompt $'caf\xe9 latin-1' -n 2 > "$T/out" 2> "$T/err"
rc=$?
[ $rc -ne 0 ] && [ ! -s "$T/out" ] && one_error tpdecode "$T/err" "--prompt of sequence 1: " && grep -q "UTF-8" "$T/err" \
  && ok "--prompt that is not UTF-8: $(cat "$T/err")" || { bad "--prompt not UTF-8: status $rc:"; cat "$T/out" "$T/err"; }
mkdir -p "$T/notok" && cp "$T/m/config.json" "$T/m/model.safetensors" "$T/notok/"
"$B/tpdecode" -m "$T/notok" --prompt "hello" -n 2 > "$T/out" 2> "$T/err"
rc=$?
[ $rc -ne 0 ] && one_error tpdecode "$T/err" "$T/notok/tokenizer.json does not exist" \
  && ok "--prompt without tokenizer.json: $(cat "$T/err")" || { bad "--prompt without tokenizer.json: status $rc:"; cat "$T/err"; }
"$B/tpdecode" -m "$T/notok" --prompt-ids 1,2 -n 2 --json > "$T/out" 2> "$T/err" && [ ! -s "$T/err" ] \
  && "$B/tests/unit/jsoncheck" 1 2 < "$T/out" > /dev/null && ! grep -q output_text "$T/out" \
  && ok "--prompt-ids without tokenizer.json: ids only, no output_text" || { bad "--prompt-ids without tokenizer.json:"; cat "$T/out" "$T/err"; }
echo "garbage" > "$T/notok/tokenizer.json"
"$B/tpdecode" -m "$T/notok" --prompt-ids 1,2 -n 2 --json > "$T/out" 2> "$T/err"
rc=$?
[ $rc -eq 0 ] && "$B/tests/unit/jsoncheck" 1 2 < "$T/out" > /dev/null && ! grep -q output_text "$T/out" \
  && [ "$(wc -l < "$T/err")" -eq 1 ] && grep -q "^tpdecode: warning: .*tokenizer.json.*; --json has no output_text$" "$T/err" \
  && ok "--prompt-ids --json with a broken tokenizer.json: the ids, and $(cat "$T/err")" \
  || { bad "--prompt-ids --json with a broken tokenizer.json: status $rc:"; cat "$T/out" "$T/err"; }
"$B/tpdecode-synth" --out "$T/notok" --vocab 200 > "$T/synth.out" && [ ! -e "$T/notok/tokenizer.json" ] \
  && grep -qF "removed $T/notok/tokenizer.json" "$T/synth.out" \
  && ok "synth --vocab 200 (below 256 bytes + 2 specials): no tokenizer, the earlier tokenizer.json removed" \
  || { bad "synth --vocab 200 and its tokenizer:"; cat "$T/synth.out"; }

# ---- synth into a folder that holds an earlier model: nothing stale may be loaded ----
# logits MODEL_DIR OUT: the last step's logits of a fixed greedy run
logits() { "$B/tpdecode" -m "$1" --prompt-ids 3,1,4,1,5 --prompt-ids 9,2 -n 6 --ignore-eos --logits-out "$2" > /dev/null; }
W=$T/reused
"$B/tpdecode-synth" --out "$W" --seed 21 --shards 3 > /dev/null && logits "$W" "$T/a21.f32" || bad "sharded seed-21 model"
echo stale > "$W/tokenizer.json"
echo keep > "$W/notes.txt"
"$B/tpdecode-synth" --out "$W" --seed 22 > "$T/reuse.out" || bad "synth into a used folder"
"$B/tpdecode-synth" --out "$T/fresh22" --seed 22 > /dev/null && logits "$T/fresh22" "$T/f22.f32" || bad "fresh seed-22 model"
logits "$W" "$T/b22.f32" || bad "run on the rewritten folder"
stale=$(cd "$W" && ls model-*-of-*.safetensors model.safetensors.index.json 2>/dev/null | wc -l)
[ "$stale" -eq 0 ] && ok "synth removed the earlier model's shards and index" \
  || bad "$stale stale shard/index file(s) left in $W: $(ls "$W" | tr '\n' ' ')"
[ "$(cat "$W/notes.txt" 2>/dev/null)" = keep ] && ok "synth kept the files it does not own" \
  || bad "synth removed or changed foreign files"
cmp -s "$W/tokenizer.json" "$T/fresh22/tokenizer.json" && ok "synth rewrote the stale tokenizer.json" \
  || bad "synth left a stale tokenizer.json"
[ "$(grep -c "removed $W/" "$T/reuse.out")" -eq 4 ] && ok "synth reports the 4 earlier files it removed" \
  || { bad "synth does not report the removed files:"; cat "$T/reuse.out"; }
cmp -s "$T/b22.f32" "$T/f22.f32" && ok "rewritten folder: the logits of a fresh seed-22 model" \
  || bad "rewritten folder: logits differ from a fresh seed-22 model"
cmp -s "$T/b22.f32" "$T/a21.f32" && bad "rewritten folder: still the seed-21 model's logits" \
  || ok "rewritten folder: not the earlier model's logits"
# and back: single file -> shards (another seed): the single file must go
"$B/tpdecode-synth" --out "$W" --seed 23 --shards 2 > /dev/null || bad "synth shards into a used folder"
"$B/tpdecode-synth" --out "$T/fresh23" --seed 23 > /dev/null && logits "$T/fresh23" "$T/f23.f32" || bad "fresh seed-23 model"
logits "$W" "$T/b23.f32" || bad "run on the re-sharded folder"
[ ! -e "$W/model.safetensors" ] && [ -e "$W/model-00002-of-00002.safetensors" ] && cmp -s "$T/b23.f32" "$T/f23.f32" \
  && ok "re-sharded folder: no stale model.safetensors, the seed-23 model's logits" \
  || bad "re-sharded folder: $(ls "$W" | tr '\n' ' ')"

# ---- one-line errors, --version, --help ----
for prog in tpdecode tpdecode-synth; do
  v=$("$B/$prog" --version)
  [ "$(printf '%s\n' "$v" | wc -l)" -eq 1 ] && printf '%s' "$v" | grep -qE "^$prog [0-9]+\.[0-9]+\.[0-9]+ \(backends: cpu" \
    && ok "$prog --version: $v" || bad "$prog --version: '$v'"
done
"$B/tpdecode" --help > "$T/help.txt"
# every option line of tpdecode --help that takes a value names its default (or says it is required)
missing=$(grep -E '^  -' "$T/help.txt" | grep -E ' [A-Z]+([ ,]|$)|\|' | grep -vE 'default|required' || true)
[ -z "$missing" ] && grep -q -- '--version' "$T/help.txt" && ok "tpdecode --help: every option shows its default" \
  || bad "tpdecode --help lacks defaults: $missing"
"$B/tpdecode-synth" --help > "$T/shelp.txt"
grep -q -- '--preset NAME .*(default tiny)' "$T/shelp.txt" && grep -q -- '--dtype .*(default bf16)' "$T/shelp.txt" \
  && grep -q -- '--seed .*(default 1)' "$T/shelp.txt" && grep -qE '^  1b +dim 2048, 16 layers' "$T/shelp.txt" \
  && ok "tpdecode-synth --help: defaults and the presets' shapes" || bad "tpdecode-synth --help lacks defaults"
# synth_err NAME PHRASE ARGS...: one line "tpdecode-synth: error: ...PHRASE...", non-zero exit
synth_err() {
  local name=$1 phrase=$2
  shift 2
  "$B/tpdecode-synth" "$@" > /dev/null 2> "$T/serr"
  local rc=$?
  [ $rc -ne 0 ] && one_error tpdecode-synth "$T/serr" "$phrase" && ok "synth $name: $(cat "$T/serr")" \
    || { bad "synth $name: status $rc:"; cat "$T/serr"; }
}
synth_err "unknown last option" "unknown option '--frobnicate'" --out "$T/x" --frobnicate
synth_err "unknown option" "unknown option '--frobnicate'" --frobnicate 1 --out "$T/x"
synth_err "missing value" "option --seed needs a value" --out "$T/x" --seed
synth_err "no --out" "no output directory" --preset tiny
synth_err "bad number" "--dim 'x': expected an integer in [1, " --out "$T/x" --dim x
synth_err "bad preset" "unknown preset 'huge'" --out "$T/x" --preset huge
synth_err "too many shards" "100 shards for 21 tensors" --out "$T/x" --shards 100
"$B/tpdecode" -m "$T/m" --prompt-ids 1 --frobnicate > /dev/null 2> "$T/err"
one_error tpdecode "$T/err" "unknown option '--frobnicate'" && ok "tpdecode: unknown last option" \
  || { bad "tpdecode unknown last option:"; cat "$T/err"; }

# ---- option ranges and the thread cap ----
"$B/tpdecode" -m "$T/m" --prompt-ids 1 -n 100000000 > /dev/null 2> "$T/err"
one_error tpdecode "$T/err" "-n '100000000': expected an integer in [1, 16777216]" && ok "-n out of range names the range" \
  || { bad "-n out of range:"; cat "$T/err"; }
"$B/tpdecode" -m "$T/m" --prompt-ids 1,2 -n 4 --threads 1000 > "$T/thr.out" 2> "$T/err"
cores=$(getconf _NPROCESSORS_ONLN)
used=$(sed -n 's/.*, \([0-9]*\) threads\{0,1\} per rank$/\1/p' "$T/thr.out")
[ "$(wc -l < "$T/err")" -eq 1 ] && grep -q '^tpdecode: warning: --threads 1000 .*using' "$T/err" \
  && [ -n "$used" ] && [ "$used" -le "$cores" ] && ok "--threads 1000 capped to $used on $cores CPUs: $(cat "$T/err")" \
  || { bad "--threads 1000 not capped (ran with '${used}' threads on $cores CPUs):"; cat "$T/err"; }

# ---- --logits-out that cannot be written: fails before any work, one line naming it ----
# (the model directory does not exist either: the output is checked first)
start=$(date +%s)
"$B/tpdecode" -m "$T/no-model" --prompt-ids 1 --logits-out /nonexistent/dir/x > "$T/out" 2> "$T/err"
rc=$?
[ $rc -ne 0 ] && one_error tpdecode "$T/err" "/nonexistent/dir/x" && grep -q "cannot open" "$T/err" \
  && ok "--logits-out to a missing folder fails before the model is read: $(cat "$T/err")" \
  || { bad "--logits-out /nonexistent/dir/x: status $rc:"; cat "$T/err"; }
"$B/tpdecode" -m "$T/m" --prompt-ids 1 -n 200 --logits-out /nonexistent/dir/x > "$T/out" 2> "$T/err"
rc=$?
[ $rc -ne 0 ] && [ ! -s "$T/out" ] && one_error tpdecode "$T/err" "/nonexistent/dir/x" \
  && ok "--logits-out to a missing folder: nothing generated" || { bad "--logits-out: generated first:"; cat "$T/out" "$T/err"; }
"$B/tpdecode" -m "$T/m" --prompt-ids 1,600 --logits-out "$T/unfinished.f32" > /dev/null 2> "$T/err"
[ ! -e "$T/unfinished.f32" ] && one_error tpdecode "$T/err" "token id 600" \
  && ok "a failed run leaves no --logits-out file" || bad "a failed run left $T/unfinished.f32"
echo "     ($(($(date +%s) - start)) s for the --logits-out checks)"

# ---- greedy output of the synthetic presets is varied ----
# varied NAME MODEL_DIR [tpdecode options]: 3 prompts x 16 greedy tokens, each >= 8 distinct, none just the last prompt token
varied() {
  local name=$1 dir=$2
  shift 2
  if ! "$B/tpdecode" -m "$dir" --prompt-ids 1,15,300,42 --prompt-ids 7,8 --prompt-ids 100,200,300 -n 16 --ignore-eos \
      --json "$@" > "$T/v.json" || ! "$B/tests/unit/jsoncheck" 3 16 < "$T/v.json" > "$T/v.ids"; then
    bad "$name: run failed"
    return
  fi
  local counts="" worst=16 line d lasts=(42 8 300) i=0 echo_last=0
  while read -r line; do
    d=$(printf '%s' "$line" | distinct)
    counts="$counts $d"
    [ "$d" -lt "$worst" ] && worst=$d
    [ "$(printf '%s' "$line" | tr -s ' ' '\n' | grep -v '^$' | sort -u)" = "${lasts[$i]}" ] && echo_last=1
    i=$((i + 1))
  done < "$T/v.ids"
  [ "$worst" -ge 8 ] && [ $echo_last -eq 0 ] && ok "$name: distinct tokens of 16 per prompt:$counts" \
    || { bad "$name: distinct tokens of 16 per prompt:$counts"; cat "$T/v.ids"; }
}
varied "tiny preset, greedy" "$T/m"
"$B/tpdecode-synth" --out "$T/small" --preset small --seed 1 > /dev/null || bad "small preset"
varied "small preset, greedy" "$T/small"
# the 1b preset's formula (dim 2048, tied embeddings, llama3 rope) at 2 layers and a smaller vocabulary
"$B/tpdecode-synth" --out "$T/1b" --preset 1b --layers 2 --ffn 1024 --vocab 8192 --seed 1 > /dev/null || bad "1b-shaped model"
varied "1b shape (tied), greedy" "$T/1b"
varied "1b shape (tied), --temp 1" "$T/1b" --temp 1 --seed 3
rm -rf "$T/1b" "$T/small"

# ---- the launch examples ----
out=$("$ROOT/launch/mpirun-example.sh" 2>&1)
rc=$?
[ $rc -ne 0 ] && printf '%s' "$out" | grep -q '^usage: .*mpirun-example.sh MODEL_DIR N' && ! printf '%s' "$out" | grep -q unbound \
  && ok "mpirun-example.sh without arguments: $out" || bad "mpirun-example.sh without arguments: status $rc: $out"
out=$("$ROOT/launch/srun-example.sh" 2>&1)
rc=$?
[ $rc -ne 0 ] && printf '%s' "$out" | grep -q '^usage: .*srun-example.sh MODEL_DIR' && ! printf '%s' "$out" | grep -q unbound \
  && ok "srun-example.sh without arguments: $out" || bad "srun-example.sh without arguments: status $rc: $out"
# srun replaced by a stub that drops srun's options and runs the program (TP=1)
mkdir -p "$T/bin"
printf '#!/usr/bin/env bash\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n' > "$T/bin/srun"
chmod +x "$T/bin/srun"
SRUN=$T/bin/srun TPD_BUILD_DIR=$B "$ROOT/launch/srun-example.sh" "$T/m" --backend cpu --prompt-ids 5,6,7 -n 8 --json \
  > "$T/srun.json" 2> "$T/err" && "$B/tests/unit/jsoncheck" 1 8 --prompts < "$T/srun.json" > "$T/srun.p" \
  && [ "$(cat "$T/srun.p")" = "5 6 7 " ] && ok "srun-example.sh: the user's prompt and -n replace the built-in ones" \
  || { bad "srun-example.sh with --prompt-ids 5,6,7 -n 8:"; cat "$T/srun.json" "$T/err"; }
SRUN=$T/bin/srun TPD_BUILD_DIR=$B "$ROOT/launch/srun-example.sh" "$T/m" --backend cpu --prompt "hello there" -n 4 --json \
  > "$T/srun.json" 2> "$T/err" && "$B/tests/unit/jsoncheck" 1 4 < "$T/srun.json" > /dev/null \
  && ok "srun-example.sh: the user's --prompt replaces the built-in prompt" \
  || { bad "srun-example.sh with --prompt:"; cat "$T/srun.json" "$T/err"; }
if [ -n "$MPI" ]; then
  MPIRUN=$MPI TPD_BUILD_DIR=$B "$ROOT/launch/mpirun-example.sh" "$T/m" 2 --prompt-ids 5,6,7 -n 8 --json \
    > "$T/mpirun.json" 2> "$T/err" && "$B/tests/unit/jsoncheck" 1 8 --prompts < "$T/mpirun.json" > "$T/mpirun.p" \
    && [ "$(cat "$T/mpirun.p")" = "5 6 7 " ] && ok "mpirun-example.sh at np 2: the user's prompt and -n replace the built-in ones" \
    || { bad "mpirun-example.sh np 2 with --prompt-ids 5,6,7 -n 8:"; cat "$T/mpirun.json" "$T/err"; }
  # at TP=2 the same greedy ids as TP=1
  "$B/tpdecode" -m "$T/m" --prompt-ids 5,6,7 -n 8 --json | "$B/tests/unit/jsoncheck" 1 8 > "$T/tp1.ids"
  "$B/tests/unit/jsoncheck" 1 8 < "$T/mpirun.json" > "$T/tp2.ids" 2>/dev/null
  cmp -s "$T/tp1.ids" "$T/tp2.ids" && ok "mpirun-example.sh: TP=2 ids equal TP=1" || bad "mpirun-example.sh: TP=2 ids differ from TP=1"
  # --prompt at TP=2: every rank encodes the texts; the same sequences (ids and text) as TP=1
  "$MPI" -np 2 "$B/tpdecode" -m "$T/m" "${PARGS[@]}" --prompt-ids 5,300,7 -n 10 --ignore-eos --json > "$T/text2.json" 2> "$T/err"
  "$PY" -c 'import json, sys; a, b = (json.load(open(f))["sequences"] for f in sys.argv[1:]); sys.exit(a != b or not a)' \
    "$T/text.json" "$T/text2.json" 2> /dev/null && ok "--prompt at TP=2: the sequences of TP=1, text included" \
    || { bad "--prompt at TP=2 differs from TP=1:"; cat "$T/err"; }
  "$MPI" -np 2 "$B/tpdecode" -m "$T/m" --prompt $'\xff' -n 2 > "$T/out" 2> "$T/err"
  [ $? -ne 0 ] && [ ! -s "$T/out" ] && [ "$(grep -c '^tpdecode: error: --prompt of sequence 0: .*UTF-8' "$T/err")" -eq 1 ] \
    && ok "--prompt not UTF-8 at TP=2: one line" || { bad "--prompt not UTF-8 at TP=2:"; cat "$T/out" "$T/err"; }
  # --help under mpirun: printed once, by rank 0
  n=$("$MPI" -np 2 "$B/tpdecode" --help 2>/dev/null | grep -c '^usage:')
  [ "$n" -eq 1 ] && ok "--help under mpirun -np 2 prints once" || bad "--help under mpirun -np 2 printed $n times"
  # --logits-out that cannot be written, at TP=2: one line, before any generation
  "$MPI" -np 2 "$B/tpdecode" -m "$T/m" --prompt-ids 1 --logits-out /nonexistent/dir/x > "$T/out" 2> "$T/err"
  [ $? -ne 0 ] && [ ! -s "$T/out" ] && [ "$(grep -c '^tpdecode: error: .*/nonexistent/dir/x' "$T/err")" -eq 1 ] \
    && ok "--logits-out to a missing folder at TP=2: one line, nothing generated" \
    || { bad "--logits-out to a missing folder at TP=2:"; cat "$T/out" "$T/err"; }

  for np in 2 4; do
    "$MPI" -np $np --oversubscribe "$B/tpdecode" "${ARGS[@]}" --json --temp 0.8 --top-k 40 --top-p 0.9 --seed 5 \
      > "$T/s$np.json" 2>"$T/err$np" && "$B/tests/unit/jsoncheck" 3 20 < "$T/s$np.json" > "$T/s$np.ids" \
      || { bad "TP=$np sampled run"; cat "$T/err$np"; }
    cmp -s "$T/s1.ids" "$T/s$np.ids" && ok "seed 5 samples the same tokens at TP=$np as at TP=1" \
      || bad "TP=$np sampled tokens differ from TP=1"
  done
fi

# ---- --kv-cache: both dtypes decode (the plain line names the one used; auto is bf16 for this bf16
# model), an unknown value is one line naming it in every program ----
for kv in f32 bf16 auto; do
  want=$kv; [ "$kv" = auto ] && want=bf16
  "$B/tpdecode" "${ARGS[@]}" --kv-cache $kv > "$T/kv.txt" 2> "$T/err" && grep -q '^seq 2:' "$T/kv.txt" \
    && grep -q "KV ${want^^}," "$T/kv.txt" && ok "--kv-cache $kv decodes with a ${want^^} KV cache" \
    || { bad "--kv-cache $kv:"; cat "$T/kv.txt" "$T/err"; }
done
"$B/tpdecode" "${ARGS[@]}" --kv-cache bogus > /dev/null 2> "$T/err"
[ $? -ne 0 ] && one_error tpdecode "$T/err" "'bogus'" && ok "--kv-cache bogus: $(cat "$T/err")" \
  || { bad "--kv-cache bogus:"; cat "$T/err"; }
"$B/tpdecode-server" -m "$T/m" --kv-cache bogus > /dev/null 2> "$T/err"
[ $? -ne 0 ] && one_error tpdecode-server "$T/err" "'bogus'" && ok "server --kv-cache bogus: $(cat "$T/err")" \
  || { bad "server --kv-cache bogus:"; cat "$T/err"; }
"$B/tpdecode-bench" -m "$T/m" --activations bogus > /dev/null 2> "$T/err"
[ $? -ne 0 ] && one_error tpdecode-bench "$T/err" "'bogus'" && ok "bench --activations bogus: $(cat "$T/err")" \
  || { bad "bench --activations bogus:"; cat "$T/err"; }
"$B/tpdecode-server" -m "$T/m" --activations bogus > /dev/null 2> "$T/err"
[ $? -ne 0 ] && one_error tpdecode-server "$T/err" "'bogus'" && ok "server --activations bogus: $(cat "$T/err")" \
  || { bad "server --activations bogus:"; cat "$T/err"; }
# bf16 where the kernels' level has no bf16 dot products (capped at avx2): the engine refuses it, naming
# the level, through each program's option
TPD_CPU_ISA=avx2 "$B/tpdecode-server" -m "$T/m" --port 0 --activations bf16 > /dev/null 2> "$T/err"
[ $? -ne 0 ] && grep -q "activations 'bf16' on the cpu backend need AVX512-BF16" "$T/err" && grep -Eq "level (avx2|scalar)" "$T/err" \
  && ok "server --activations bf16 at avx2: refused" || { bad "server --activations bf16 at avx2:"; cat "$T/err"; }
TPD_CPU_ISA=avx2 "$B/tpdecode" "${ARGS[@]}" --activations bf16 > /dev/null 2> "$T/err"
[ $? -ne 0 ] && one_error tpdecode "$T/err" "activations 'bf16' on the cpu backend need AVX512-BF16" \
  && ok "--activations bf16 at avx2: $(cat "$T/err")" || { bad "--activations bf16 at avx2:"; cat "$T/err"; }
"$B/tpdecode" "${ARGS[@]}" --activations bogus > /dev/null 2> "$T/err"
[ $? -ne 0 ] && one_error tpdecode "$T/err" "'bogus'" && ok "--activations bogus: $(cat "$T/err")" \
  || { bad "--activations bogus:"; cat "$T/err"; }
"$B/tpdecode-bench" -m "$T/m" --kv-cache bogus > /dev/null 2> "$T/err"
[ $? -ne 0 ] && one_error tpdecode-bench "$T/err" "'bogus'" && ok "bench --kv-cache bogus: $(cat "$T/err")" \
  || { bad "bench --kv-cache bogus:"; cat "$T/err"; }
TPD_KV_CACHE=bogus "$B/tpdecode" "${ARGS[@]}" > /dev/null 2> "$T/err"
[ $? -ne 0 ] && one_error tpdecode "$T/err" "'bogus'" && ok "TPD_KV_CACHE=bogus: $(cat "$T/err")" \
  || { bad "TPD_KV_CACHE=bogus:"; cat "$T/err"; }
# a bf16 KV cache with f32 cuda activations: refused naming the value (or no cuda in this build)
"$B/tpdecode" "${ARGS[@]}" --backend cuda --activations f32 --kv-cache bf16 > /dev/null 2> "$T/err"
if "$B/tpdecode" --version | grep -q 'backends: cpu, cuda'; then
  one_error tpdecode "$T/err" "kv cache 'bf16'" && ok "cuda f32 + --kv-cache bf16: $(cat "$T/err")" \
    || { bad "cuda f32 + --kv-cache bf16:"; cat "$T/err"; }
else
  one_error tpdecode "$T/err" "backend 'cuda' is not in this build" && ok "cuda f32 + --kv-cache bf16 (no cuda here)" \
    || { bad "cuda f32 + --kv-cache bf16 without cuda:"; cat "$T/err"; }
fi

# ---- --activations on the cpu: f32 runs the f32 kernels; bf16 the bf16 dot path where the kernels' level
# has AVX512-BF16, else one line naming the level; the plain line names the kernels ----
"$B/tpdecode" "${ARGS[@]}" --activations f32 > "$T/act.txt" 2> "$T/err" && grep -q '^seq 2:' "$T/act.txt" \
  && grep -q "cpu/" "$T/act.txt" && ! grep -Eq "cpu/(avx512bf16-dot|amx-bf16)," "$T/act.txt" \
  && ok "--activations f32 on the cpu: $(grep -o 'cpu/[a-z0-9-]*' "$T/act.txt")" \
  || { bad "--activations f32 on the cpu:"; cat "$T/act.txt" "$T/err"; }
has_bf16=0
grep -q avx512_bf16 /proc/cpuinfo 2>/dev/null && [ -z "${TPD_CPU_ISA:-}" ] && has_bf16=1
if "$B/tpdecode" "${ARGS[@]}" --activations bf16 > "$T/act.txt" 2> "$T/err"; then
  grep -q '^seq 2:' "$T/act.txt" && grep -Eq "cpu/(avx512bf16-dot|amx-bf16)," "$T/act.txt" \
    && ok "--activations bf16 on the cpu: $(grep -o 'cpu/[a-z0-9-]*' "$T/act.txt")" \
    || { bad "--activations bf16 on the cpu runs no bf16 path:"; cat "$T/act.txt" "$T/err"; }
else
  [ $has_bf16 = 0 ] && one_error tpdecode "$T/err" "activations 'bf16'" \
    && ok "--activations bf16 refused without AVX512-BF16: $(cat "$T/err")" \
    || { bad "--activations bf16 on the cpu:"; cat "$T/err"; }
fi
# ranks whose default activations differ (here TPD_CPU_BF16_DOT per rank, two apps under one mpirun;
# in earnest: different CPUs, or a rate probe disturbed by ranks sharing cores): every rank takes f32,
# rank 0 says so once, and no rank runs other kernels than rank 0 (no second warning)
if [ -n "$MPI" ] && [ $has_bf16 = 1 ]; then
  "$MPI" -np 1 -x TPD_CPU_BF16_DOT=0 "$B/tpdecode" "${ARGS[@]}" : -np 1 -x TPD_CPU_BF16_DOT=1 "$B/tpdecode" \
    "${ARGS[@]}" > "$T/act.txt" 2> "$T/err"
  [ $? -eq 0 ] && grep -q '^seq 2:' "$T/act.txt" && grep -q "cpu/avx512bf16," "$T/act.txt" \
    && [ "$(grep -c "activations auto: rank 1 chose bf16 matmul inputs and rank 0 f32; every rank takes f32" "$T/err")" = 1 ] \
    && ! grep -q "runs kernels" "$T/err" && ok "ranks whose default activations differ: all f32, one warning" \
    || { bad "ranks whose default activations differ:"; cat "$T/act.txt" "$T/err"; }
fi
# TPD_CPU_BF16_DOT=1 where one rank's level has no bf16 dot products (capped at avx2 there): refused at
# TP 2 as at TP 1, every rank stopping, with that rank's reason
if [ -n "$MPI" ]; then
  "$MPI" -np 1 "$B/tpdecode" "${ARGS[@]}" : -np 1 -x TPD_CPU_ISA=avx2 -x TPD_CPU_BF16_DOT=1 "$B/tpdecode" \
    "${ARGS[@]}" > "$T/act.txt" 2> "$T/err"
  [ $? -ne 0 ] && [ ! -s "$T/act.txt" ] && grep -q "TPD_CPU_BF16_DOT=1: bf16 dot products need AVX512-BF16" "$T/err" \
    && grep -Eq "level (avx2|scalar)" "$T/err" && ok "TPD_CPU_BF16_DOT=1 at avx2 on rank 1 of 2: refused" \
    || { bad "TPD_CPU_BF16_DOT=1 at avx2 on rank 1 of 2:"; cat "$T/act.txt" "$T/err"; }
fi
# ranks at different instruction-set levels (TPD_CPU_ISA=avx2 on rank 1): the run completes and rank 0
# names both kernels in a warning
if [ -n "$MPI" ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null && [ -z "${TPD_CPU_ISA:-}" ]; then
  "$MPI" -np 1 "$B/tpdecode" "${ARGS[@]}" : -np 1 -x TPD_CPU_ISA=avx2 "$B/tpdecode" "${ARGS[@]}" > "$T/act.txt" 2> "$T/err"
  [ $? -eq 0 ] && grep -q '^seq 2:' "$T/act.txt" && grep -Eq "rank 1 runs kernels avx2, rank 0 avx512" "$T/err" \
    && ok "ranks at different levels: $(grep -o 'rank 1 runs kernels [^:]*' "$T/err")" \
    || { bad "ranks at different levels:"; cat "$T/act.txt" "$T/err"; }
fi

# ---- --backend cuda: the CPU's greedy ids where a GPU runs it, else one line saying why ----
"$B/tpdecode" "${ARGS[@]}" --backend cuda --json > "$T/cuda.json" 2> "$T/err"
rc=$?
built=0
"$B/tpdecode" --version | grep -q 'backends: cpu, cuda' && built=1
gpu=0
command -v nvidia-smi > /dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && gpu=1
if [ $rc -eq 0 ]; then
  if [ $built -eq 1 ] && "$B/tests/unit/jsoncheck" 3 20 < "$T/cuda.json" > "$T/cuda.ids" && cmp -s "$T/cuda.ids" "$T/g1.ids"; then
    ok "--backend cuda ran on a GPU: the same greedy ids as --backend cpu"
  else
    bad "--backend cuda ran (built with cuda: $built) but its ids differ from --backend cpu:"
    cat "$T/g1.ids" "$T/cuda.ids" 2>/dev/null
  fi
elif [ $built -eq 0 ]; then
  one_error tpdecode "$T/err" "backend 'cuda' is not in this build" && ok "--backend cuda in a CPU-only build: $(cat "$T/err")" \
    || { bad "--backend cuda in a CPU-only build: status $rc:"; cat "$T/err"; }
elif [ $gpu -eq 1 ]; then
  bad "--backend cuda failed although nvidia-smi lists a GPU:"; cat "$T/err"
else
  one_error tpdecode "$T/err" "needs a CUDA GPU" && ok "--backend cuda without a GPU: $(cat "$T/err")" \
    || { bad "--backend cuda without a GPU: status $rc:"; cat "$T/err"; }
fi
exit $fail
