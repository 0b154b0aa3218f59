#!/bin/sh
# tpdecode-bench --kv-cache auto|f32|bf16 for ctest: the option reaches the
# engines (tpd_engine_opts.kv_cache) and wins over TPD_KV_CACHE, which still
# applies without it; a bad value is one error line naming it.
#   run_bench_kv.sh BENCH WORKDIR
# The KV dtype shows in each row's bytes_per_token: weights + ctx_attended x
# KV bytes per token + the embedding row, so at one model and context two
# rows differ by exactly ctx_attended x (4 - 2) x 2 x layers x kv heads x
# head_dim between an f32 and a bf16 cache, and not at all between two of
# the same dtype.
set -u
bench=$1 work=$2
rm -rf "$work"
mkdir -p "$work"
common="--preset tiny --batch 1 --ctx 8 --steps 2 --warmup 1 --membw-mb 16 --json --model-cache $work/models"

fail() {
  echo "run_bench_kv.sh: $1"
  for f in "$work"/stdout.txt "$work"/stderr.txt; do
    [ -s "$f" ] && { echo "--- $f"; cat "$f"; }
  done
  exit 1
}

field() { # name: its number in the decode row of stdout.txt
  grep '"kind":"decode"' "$work/stdout.txt" | sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p"
}

# run LABEL ENV-VALUE ARGS...: one decode row; sets bpt (bytes per token) and att (ctx_attended)
run() {
  label=$1 env=$2
  shift 2
  if [ -n "$env" ]; then
    # shellcheck disable=SC2086
    TPD_KV_CACHE=$env "$bench" $common "$@" > "$work/stdout.txt" 2> "$work/stderr.txt" || fail "$label: failed"
  else
    # shellcheck disable=SC2086
    env -u TPD_KV_CACHE "$bench" $common "$@" > "$work/stdout.txt" 2> "$work/stderr.txt" || fail "$label: failed"
  fi
  bpt=$(field bytes_per_token)
  att=$(field ctx_attended)
  if [ -z "$bpt" ] || [ -z "$att" ]; then fail "$label: no decode row with bytes_per_token and ctx_attended"; fi
  echo "$label: bytes_per_token $bpt, ctx_attended $att"
}

cfg() { # key in config.json of model dir $1
  sed -n "s/.*\"$2\":[[:space:]]*\([0-9]*\).*/\1/p" "$1/config.json"
}

# same A B LABEL: A == B; apart A B LABEL: A - B == ctx_attended x the f32 - bf16 KV bytes per token
same() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a == b) }' || fail "$3: bytes_per_token $1, expected $2"; }
apart() {
  awk -v a="$1" -v b="$2" -v d="$att" -v k="$kv_diff" 'BEGIN { w = d * k; e = a - b - w; exit !(w > 0 && e < 1e-6 * w && -e < 1e-6 * w) }' ||
    fail "$3: bytes_per_token $1 - $2, expected $att x $kv_diff"
}

for dtype in bf16 f32; do
  run "$dtype model, auto" "" --dtype "$dtype"
  auto=$bpt
  model=$(find "$work/models" -maxdepth 1 -type d -iname "tiny-$dtype-*" | head -n 1)
  if [ -z "$model" ] || [ ! -f "$model/config.json" ]; then fail "no $dtype model under $work/models"; fi
  L=$(cfg "$model" num_hidden_layers) H=$(cfg "$model" num_attention_heads) KV=$(cfg "$model" num_key_value_heads)
  D=$(cfg "$model" hidden_size)
  if [ -z "$L" ] || [ -z "$H" ] || [ -z "$KV" ] || [ -z "$D" ]; then fail "$model/config.json: no layers/heads/hidden_size"; fi
  kv_diff=$((2 * 2 * L * KV * (D / H)))
  run "$dtype model, --kv-cache f32" "" --dtype "$dtype" --kv-cache f32
  f32=$bpt
  run "$dtype model, --kv-cache bf16" "" --dtype "$dtype" --kv-cache bf16
  bf16=$bpt
  apart "$f32" "$bf16" "$dtype model: --kv-cache f32 against bf16"
  if [ "$dtype" = bf16 ]; then same "$auto" "$bf16" "bf16 model, auto (a bf16 cache)"; else same "$auto" "$f32" "f32 model, auto (an f32 cache)"; fi
  run "$dtype model, auto, TPD_KV_CACHE=f32" f32 --dtype "$dtype"
  same "$bpt" "$f32" "$dtype model, TPD_KV_CACHE=f32 without --kv-cache (an f32 cache)"
  run "$dtype model, auto, TPD_KV_CACHE=bf16" bf16 --dtype "$dtype"
  same "$bpt" "$bf16" "$dtype model, TPD_KV_CACHE=bf16 without --kv-cache (a bf16 cache)"
  run "$dtype model, --kv-cache bf16, TPD_KV_CACHE=f32" f32 --dtype "$dtype" --kv-cache bf16
  same "$bpt" "$bf16" "$dtype model, --kv-cache bf16 over TPD_KV_CACHE=f32"
  run "$dtype model, --kv-cache f32, TPD_KV_CACHE=bogus" bogus --dtype "$dtype" --kv-cache f32
  same "$bpt" "$f32" "$dtype model, --kv-cache f32 over TPD_KV_CACHE=bogus"
done

# one_error ENV-VALUE WANT ARGS...: exit status 1, one 'tpdecode-bench: error:' line saying WANT, nothing on stdout
one_error() {
  env=$1 want=$2
  shift 2
  # shellcheck disable=SC2086
  env TPD_KV_CACHE="$env" "$bench" $common "$@" > "$work/stdout.txt" 2> "$work/stderr.txt"
  rc=$?
  [ $rc -eq 1 ] || fail "'$*' (TPD_KV_CACHE=$env): exit status $rc, expected 1"
  [ ! -s "$work/stdout.txt" ] || fail "'$*' (TPD_KV_CACHE=$env): printed on stdout"
  [ "$(wc -l < "$work/stderr.txt")" -eq 1 ] || fail "'$*' (TPD_KV_CACHE=$env): more than one line on stderr"
  grep -q "^tpdecode-bench: error: " "$work/stderr.txt" || fail "'$*': not a 'tpdecode-bench: error:' line"
  grep -qF -- "$want" "$work/stderr.txt" || fail "'$*' (TPD_KV_CACHE=$env): the error does not say '$want'"
  echo "error: $(cat "$work/stderr.txt")"
}
one_error "" "--kv-cache 'bogus'" --kv-cache bogus
one_error f32 "--kv-cache 'BF16'" --kv-cache BF16
one_error bogus "'bogus'"
echo "run_bench_kv.sh: ok"
