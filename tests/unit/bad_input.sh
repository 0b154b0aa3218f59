#!/usr/bin/env bash
# Bad input under `mpirun -np 2` with a timeout: each case must end every
# rank with a non-zero exit, print exactly one "tpdecode: error:" line that
# names the problem, never hang and never crash.  Then a rank is killed in
# the middle of a run and the job must end.
#   bad_input.sh BUILD_DIR MPIEXEC
set -u
B=$1
MPI=$2
T=$(mktemp -d /tmp/tpd-bad-XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
fail=0
"$B/tpdecode-synth" --out "$T/good" --preset tiny --dtype bf16 --seed 3 || exit 1
for k in truncated offsets dtype missing shape heads; do
  "$B/tests/unit/mkbad" "$T/good" "$T/$k" "$k" model.layers.1.mlp.up_proj.weight || exit 1
done

expect() { # expect NAME PHRASE ARGS...
  local name=$1 phrase=$2
  shift 2
  local out rc
  out=$(timeout 60 "$MPI" -np 2 --oversubscribe "$B/tpdecode" "$@" 2>&1 >/dev/null)
  rc=$?
  local lines
  lines=$(printf '%s\n' "$out" | grep -c '^tpdecode: error' || true)
  if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $rc -ge 128 ]; then
    echo "FAIL $name: exit status $rc"; fail=1
  elif [ "$lines" -ne 1 ]; then
    echo "FAIL $name: $lines error lines"; printf '%s\n' "$out"; fail=1
  elif ! printf '%s\n' "$out" | grep '^tpdecode: error' | grep -qF -- "$phrase"; then
    echo "FAIL $name: message does not say '$phrase':"; printf '%s\n' "$out" | grep '^tpdecode'; fail=1
  elif printf '%s\n' "$out" | grep -qiE 'segmentation|core dumped|signal [0-9]|backtrace'; then
    echo "FAIL $name: crashed"; printf '%s\n' "$out"; fail=1
  else
    echo "ok   $name: $(printf '%s\n' "$out" | grep '^tpdecode: error')"
  fi
}

expect missing-dir "does not exist" -m "$T/none" --prompt-ids 1,2
mkdir -p "$T/nofile" && cp "$T/good/config.json" "$T/nofile/"
expect missing-file "neither model.safetensors" -m "$T/nofile" --prompt-ids 1,2
expect truncated "file truncated" -m "$T/truncated" --prompt-ids 1,2
expect offsets "lie past the end" -m "$T/offsets" --prompt-ids 1,2
expect wrong-dtype "has dtype I16" -m "$T/dtype" --prompt-ids 1,2
expect missing-tensor "missing tensor 'model.layers.1.mlp.up_proj.weight'" -m "$T/missing" --prompt-ids 1,2
expect shape "config.json implies [172, 64]" -m "$T/shape" --prompt-ids 1,2
expect heads-vs-tp "not divisible by the TP degree (2)" -m "$T/heads" --prompt-ids 1,2
expect prompt-too-long "exceed the context of 256" -m "$T/good" --prompt-ids "$(seq -s, 1 300)"
expect token-id "token id 512 is outside the vocabulary" -m "$T/good" --prompt-ids 1,512
expect ids-trailing-comma "expected comma-separated non-negative token ids" -m "$T/good" --prompt-ids 1,2,
expect ids-plus-sign "expected comma-separated non-negative token ids" -m "$T/good" --prompt-ids +1,2
expect ids-space "expected comma-separated non-negative token ids" -m "$T/good" --prompt-ids "1, 2"
expect unknown-option "unknown option '--frobnicate'" -m "$T/good" --prompt-ids 1 --frobnicate
expect bad-number "-n 'x'" -m "$T/good" --prompt-ids 1 -n x
expect n-range "-n '100000000': expected an integer in [1, 16777216]" -m "$T/good" --prompt-ids 1 -n 100000000
expect missing-value "option --seed needs a value" -m "$T/good" --prompt-ids 1 --seed
expect logits-out "--logits-out $T/none/x: cannot open for writing" -m "$T/good" --prompt-ids 1 --logits-out "$T/none/x"

# a rank that dies: kill one rank of a long run; the job must end, non-zero
"$B/tpdecode-synth" --out "$T/long" --preset small --ctx 100000 --seed 4 >/dev/null || exit 1
timeout 120 "$MPI" -np 2 --oversubscribe "$B/tpdecode" -m "$T/long" --prompt-ids 1,2,3 -n 90000 --ignore-eos \
  >/dev/null 2>"$T/death.err" &
job=$!
victim=""
for _ in $(seq 1 100); do
  victim=$(ps -eo pid=,comm=,args= | awk -v d="$T/long" '$2=="tpdecode" && index($0, d) {print $1}' | tail -n 1)
  [ -n "$victim" ] && break
  sleep 0.1
done
sleep 1
if [ -z "$victim" ]; then
  echo "FAIL rank-death: no rank process found"; fail=1
else
  kill -9 "$victim"
  wait $job
  rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    echo "FAIL rank-death: job exit status $rc (0: did not notice, 124: hung)"; fail=1
  else
    echo "ok   rank-death: killed pid $victim, job ended with status $rc"
  fi
fi
left=$(ps -eo comm=,args= | awk -v d="$T/long" '$1=="tpdecode" && index($0, d)' | wc -l)
[ "$left" -eq 0 ] || { echo "FAIL rank-death: $left rank(s) still running"; fail=1; }
exit $fail
