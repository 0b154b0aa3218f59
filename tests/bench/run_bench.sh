#!/bin/sh
# End-to-end runs of tpdecode-bench for ctest; the exit status is the verdict
# (77: skipped).
#   run_bench.sh sweep BENCH CHECK WORKDIR MPIRUN   mpirun -np 2, --sweep --predict --comm on the small preset
#   run_bench.sh json  BENCH CHECK WORKDIR          one process, --json on the tiny preset
#   run_bench.sh table BENCH CHECK WORKDIR          one process, the human table on the tiny preset
set -u
mode=$1 bench=$2 check=$3 work=$4 mpirun=${5:-}
rm -rf "$work"
mkdir -p "$work"
common="--model-cache $work/models --steps 3 --warmup 1 --membw-mb 64"

fail() {
  echo "run_bench.sh $mode: $1"
  for f in "$work"/stdout.txt "$work"/stderr.txt; do
    [ -s "$f" ] && { echo "--- $f"; cat "$f"; }
  done
  exit 1
}

case $mode in
  sweep)
    if [ -z "$mpirun" ] || ! command -v "$mpirun" > /dev/null 2>&1; then
      echo "skipped: mpirun not found"
      exit 77
    fi
    extra=""
    if "$mpirun" --version 2>&1 | grep -q "Open MPI"; then extra="--oversubscribe"; fi
    # shellcheck disable=SC2086
    "$mpirun" -np 2 $extra "$bench" --preset small --sweep --predict h200 --predict-batch 1,4,16,64 \
      --comm --comm-max 1048576 --comm-iters 5 --comm-warmup 1 \
      --batch 1,2,4 --ctx 16,64 $common --out-dir "$work/out" > "$work/stdout.txt" 2> "$work/stderr.txt" ||
      fail "the benchmark failed"
    cat "$work/stdout.txt"
    grep -q "busbw" "$work/stdout.txt" || fail "no all-reduce table"
    grep -q "meas/flr" "$work/stdout.txt" || fail "no measured/floor column"
    grep -q "energy: null" "$work/stdout.txt" || grep -q "energy: RAPL" "$work/stdout.txt" || fail "no energy line"
    "$check" dir "$work/out" --configs 6 --predicted --comm || fail "outputs do not check"
    if command -v xmllint > /dev/null 2>&1; then
      xmllint --noout "$work/out/pareto.svg" || fail "xmllint rejects pareto.svg"
    fi
    ;;
  json)
    # shellcheck disable=SC2086
    "$bench" --preset tiny --batch 1,2 --ctx 8 $common --json > "$work/out.jsonl" 2> "$work/stderr.txt" ||
      fail "the benchmark failed"
    "$check" jsonl "$work/out.jsonl" --configs 2 || fail "--json output does not check"
    ;;
  table)
    # shellcheck disable=SC2086
    "$bench" --preset tiny --batch 1,2 $common > "$work/stdout.txt" 2> "$work/stderr.txt" || fail "the benchmark failed"
    cat "$work/stdout.txt"
    grep -q "^batch 2 / batch 1 system tokens/s: " "$work/stdout.txt" || fail "no batch 2 / batch 1 line"
    grep -q "of read" "$work/stdout.txt" || fail "no fraction-of-read-bandwidth column"
    grep -q "MB/tok" "$work/stdout.txt" || fail "no bytes-per-token column"
    ;;
  *)
    echo "run_bench.sh: unknown mode $mode"
    exit 2
    ;;
esac
echo "run_bench.sh $mode: ok"
