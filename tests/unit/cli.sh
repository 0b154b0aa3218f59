#!/usr/bin/env bash
# The command-line programs end to end: --json schema, sampling reproducible
# across TP degrees, --logits-out, the plain output, synth reproducibility,
# and --backend cuda failing plainly where it cannot run.
#   cli.sh BUILD_DIR [MPIEXEC]
set -u
B=$1
MPI=${2:-}
T=$(mktemp -d /tmp/tpd-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

"$B/tpdecode-synth" --out "$T/m" --preset tiny --dtype bf16 --seed 11 || exit 1
"$B/tpdecode-synth" --out "$T/m2" --preset tiny --dtype bf16 --seed 11 || exit 1
"$B/tpdecode-synth" --out "$T/m3" --preset tiny --dtype bf16 --seed 12 || exit 1
cmp -s "$T/m/model.safetensors" "$T/m2/model.safetensors" && ok "synth: same seed, same bytes" || bad "synth: same seed differs"
cmp -s "$T/m/model.safetensors" "$T/m3/model.safetensors" && bad "synth: another seed, same bytes" || ok "synth: another seed differs"

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

if [ -n "$MPI" ]; then
  for np in 2 4; do
    "$MPI" -np $np --oversubscribe "$B/tpdecode" "${ARGS[@]}" --json --temp 0.8 --top-k 40 --top-p 0.9 --seed 5 \
      > "$T/s$np.json" 2>"$T/err$np" && "$B/tests/unit/jsoncheck" 3 20 < "$T/s$np.json" > "$T/s$np.ids" \
      || { bad "TP=$np sampled run"; cat "$T/err$np"; }
    cmp -s "$T/s1.ids" "$T/s$np.ids" && ok "seed 5 samples the same tokens at TP=$np as at TP=1" \
      || bad "TP=$np sampled tokens differ from TP=1"
  done
fi

out=$("$B/tpdecode" -m "$T/m" --prompt-ids 1 --backend cuda 2>&1 >/dev/null)
rc=$?
if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$out" | grep -c '^tpdecode: error')" -eq 1 ] && printf '%s' "$out" | grep -qi 'cuda'; then
  ok "--backend cuda without a usable GPU: $(printf '%s\n' "$out" | grep '^tpdecode: error')"
elif [ $rc -eq 0 ]; then
  ok "--backend cuda ran (a GPU is present)"
else
  bad "--backend cuda: status $rc: $out"
fi
exit $fail
