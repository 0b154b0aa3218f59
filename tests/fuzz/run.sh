#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs each for SECONDS, two at a time.
#
#   bash tests/fuzz/run.sh SECONDS [TARGET...]
#
# TARGET: safetensors config tokenizer tokenizer_config server_request cli_ids
# (default: all).  Environment: TPD_FUZZ_BUILD (build folder, default
# build-fuzz at the repository root), TPD_FUZZ_JOBS (targets at once, default
# 2), TPD_FUZZ_WORK (where corpora, logs and reproducers go; default
# TPD_FUZZ_BUILD/run).  Each target starts from its checked-in seeds
# (tests/fuzz/corpus/<target>/, read only) and its regressions
# (tests/fuzz/regress/<target>/) and writes new inputs to
# TPD_FUZZ_WORK/<target>/corpus.  Exit status: 0 when no target found a
# crash, a leak, a timeout or an out-of-memory; otherwise 1, with each
# reproducer's path printed and how to run it.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
all="safetensors config tokenizer tokenizer_config server_request cli_ids"
if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
  echo "usage: $0 SECONDS [TARGET...]   (targets: $all)" >&2
  exit 2
fi
secs=$1
shift
targets=${*:-$all}
for t in $targets; do
  case " $all " in *" $t "*) ;; *) echo "run.sh: unknown target '$t' (targets: $all)" >&2; exit 2 ;; esac
done
build=${TPD_FUZZ_BUILD:-$root/build-fuzz}
work=${TPD_FUZZ_WORK:-$build/run}
jobs=${TPD_FUZZ_JOBS:-2}
cc=${CC:-clang}
if ! command -v "$cc" >/dev/null; then
  echo "run.sh: $cc not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi

echo "run.sh: building in $build"
mkdir -p "$build"
if ! cmake -S "$here" -B "$build" -DCMAKE_C_COMPILER="$cc" >"$build/configure.log" 2>&1; then
  cat "$build/configure.log" >&2
  echo "run.sh: configure failed (needs clang with libFuzzer: Debian clang + libclang-rt-14-dev)" >&2
  exit 1
fi
tlist=()
for t in $targets; do tlist+=(--target "fuzz_$t"); done
if ! cmake --build "$build" -j"$(nproc)" "${tlist[@]}" >"$build/build.log" 2>&1; then
  tail -40 "$build/build.log" >&2
  echo "run.sh: build failed (log: $build/build.log)" >&2
  exit 1
fi

# one target: libFuzzer with a wall-clock budget, a memory cap and a per-input timeout
run_one() {
  local t=$1 dir=$work/$1
  rm -rf "$dir/artifacts"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  local seeds=("$here/corpus/$t")
  [ -d "$here/regress/$t" ] && seeds+=("$here/regress/$t")
  # -close_fd_mask=1: the library's stdout stays quiet; stderr keeps libFuzzer's report
  TPD_LOG=error ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$build/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -max_len=65536 -print_final_stats=1 -close_fd_mask=1 -artifact_prefix="$dir/artifacts/" \
    "$dir/corpus" "${seeds[@]}" >"$dir/log" 2>&1
  echo $? >"$dir/rc"
}

rm -rf "$work"
mkdir -p "$work"
start=$(date +%s)
running=0
for t in $targets; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

fail=0
printf '%-18s %10s %8s %8s %8s %8s  %s\n' target execs exec/s cov ft corpus result
for t in $targets; do
  dir=$work/$t
  rc=$(cat "$dir/rc" 2>/dev/null || echo 99)
  stat() { grep -E "^stat::$1:" "$dir/log" | tail -1 | awk '{print $2}'; }
  last=$(grep -E "^#[0-9]+" "$dir/log" | tail -1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.*corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  arts=$(find "$dir/artifacts" -type f 2>/dev/null)
  result=ok
  if [ "$rc" != 0 ] || [ -n "$arts" ]; then
    result="FAILED (rc $rc; log $dir/log)"
    fail=1
  fi
  printf '%-18s %10s %8s %8s %8s %8s  %s\n' "$t" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
  for a in $arts; do
    echo "  reproducer: $a"
    echo "    rerun: $build/fuzz_$t $a"
    echo "    then copy it to tests/fuzz/regress/$t/ (the ctest fuzz_regress_$t runs it with the normal build)"
  done
  if [ "$result" != ok ]; then
    grep -E "ERROR|SUMMARY|fuzz check failed|runtime error|==[0-9]+==" "$dir/log" | head -8 | sed 's/^/    /'
  fi
done
echo "run.sh: $(($(date +%s) - start)) s of fuzzing; logs under $work"
exit $fail
