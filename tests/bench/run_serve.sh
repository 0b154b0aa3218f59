#!/bin/sh
# ctest bench.serve_mpi2: `mpirun -np 2 tpdecode-bench --serve --preset tiny`
# with few steps; the exit status is the verdict (77: skipped, no mpirun).
#   run_serve.sh BENCH WORKDIR MPIRUN
# Checks: (a) one row per --batch (1, 16) and (b) one per --sched-batch (1,
# 16, 64) at TP 2, every number finite (nan, inf or a missing column fail)
# and positive where it is a time, a count or a ratio; the columns keep
# their relations (diff = leader - SPMD, bcast/floor = bcast / floor,
# sched/engine = sched us / engine us); a row says FAULT exactly when its
# bcast/floor is below 1; the --json rows say the same; bad --serve
# arguments are one error line each.
set -u
bench=$1 work=$2 mpirun=${3:-}
rm -rf "$work"
mkdir -p "$work"

fail() {
  echo "run_serve.sh: $1"
  for f in "$work"/stdout.txt "$work"/stderr.txt; do
    [ -s "$f" ] && { echo "--- $f"; cat "$f"; }
  done
  exit 1
}

if [ -z "$mpirun" ] || ! command -v "$mpirun" > /dev/null 2>&1; then
  echo "skipped: mpirun not found"
  exit 77
fi
extra=""
if "$mpirun" --version 2>&1 | grep -q "Open MPI"; then extra="--oversubscribe"; fi
common="--preset tiny --model-cache $work/models --steps 4 --warmup 1"

# shellcheck disable=SC2086
"$mpirun" -np 2 $extra "$bench" --serve $common > "$work/stdout.txt" 2> "$work/stderr.txt" ||
  fail "the benchmark failed"
cat "$work/stdout.txt"
grep -q "^(a) plan broadcast" "$work/stdout.txt" || fail "no (a) header"
grep -q "floor here is the engine step itself" "$work/stdout.txt" || fail "(b) header does not name its floor"

# (a): tp batch spmd leader diff bcasts planB bcast alone floor ratio [FAULT: ...]
awk '
  function num(x) { return x ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }
  function near(a, b, tol) { d = a - b; if (d < 0) d = -d; return d <= tol }
  /^\(a\)/ { sec = "a"; next }
  /^\(b\)/ { sec = "b"; next }
  sec == "a" && $1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ {
    if ($1 != 2) { print "tp " $1 ", expected 2"; bad = 1 }
    seen[$2] = 1; n++
    for (i = 3; i <= 11; i++) if (!num($i)) { print "batch " $2 ": column " i " is \"" $i "\""; bad = 1 }
    if (bad) next
    if (!($3 > 0 && $4 > 0 && $6 >= 1 && $7 > 0 && $8 > 0 && $9 > 0 && $10 > 0 && $11 > 0)) {
      print "batch " $2 ": a time, count or ratio is not positive"; bad = 1 }
    if (!near($5, $4 - $3, 0.00015)) { print "batch " $2 ": diff " $5 " is not leader - SPMD"; bad = 1 }
    # printed with 3, 3 and 2 decimals: the quotient of the rounded numbers may differ by that much
    if (!near($11, $8 / $10, $11 * (0.0005 / $8 + 0.0005 / $10) * 1.01 + 0.005)) { print "batch " $2 ": bcast/floor " $11 " is not " $8 "/" $10; bad = 1 }
    faulted = index($0, "FAULT") > 0
    if (faulted != ($11 < 1)) { print "batch " $2 ": FAULT flag does not match bcast/floor " $11; bad = 1 }
  }
  END {
    if (n != 2 || !seen[1] || !seen[16]) { print "expected (a) rows for batch 1 and 16, got " n; bad = 1 }
    exit bad
  }' "$work/stdout.txt" || fail "(a) rows do not check"

# (b): tp batch prompt sched_us engine_ms ratio [FAULT: ...]
awk '
  function num(x) { return x ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }
  /^\(b\)/ { sec = "b"; next }
  sec == "b" && $1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ { # not the "N rows flagged" line
    seen[$2] = 1; n++
    for (i = 3; i <= 6; i++) if (!num($i)) { print "batch " $2 ": column " i " is \"" $i "\""; bad = 1 }
    if (bad) next
    if (!($4 > 0 && $5 > 0 && $6 > 0)) { print "batch " $2 ": sched, engine or ratio not positive"; bad = 1 }
    # printed with 3, 4 and 5 decimals
    r = $4 / 1000 / $5; d = r - $6; if (d < 0) d = -d
    if (d > r * (0.0005 / $4 + 0.00005 / $5) * 1.01 + 0.000005) { print "batch " $2 ": sched/engine " $6 " is not " $4 "us/" $5 "ms"; bad = 1 }
    if (index($0, "FAULT")) { print "batch " $2 ": flagged " $0; bad = 1 }
  }
  END {
    if (n != 3 || !seen[1] || !seen[16] || !seen[64]) { print "expected (b) rows for batch 1, 16, 64, got " n; bad = 1 }
    exit bad
  }' "$work/stdout.txt" || fail "(b) rows do not check"

# --json: the same rows, no null or non-finite number where a measurement belongs
# shellcheck disable=SC2086
"$mpirun" -np 2 $extra "$bench" --serve $common --batch 4 --sched-batch 4 --json > "$work/stdout.txt" \
  2> "$work/stderr.txt" || fail "the --json run failed"
[ "$(grep -c '^{"kind":"serve_plan",' "$work/stdout.txt")" -eq 1 ] || fail "--json: not one serve_plan row"
[ "$(grep -c '^{"kind":"serve_sched",' "$work/stdout.txt")" -eq 1 ] || fail "--json: not one serve_sched row"
[ "$(wc -l < "$work/stdout.txt")" -eq 2 ] || fail "--json: other lines on stdout"
for k in ms_per_step_spmd ms_per_step_leader bcast_us_per_step plan_size_bcast_alone_us floor_us bcast_over_floor sched_us_per_step \
  engine_ms_per_step sched_over_engine; do
  grep -q "\"$k\":[0-9]" "$work/stdout.txt" || fail "--json: $k is not a positive number"
done
if grep -qiE 'nan|inf[^o]' "$work/stdout.txt"; then fail "--json: a non-finite number"; fi

# bad --serve arguments: one error line, exit status 1, nothing on stdout
one_error() { # expected-substring args...
  want=$1
  shift
  "$bench" "$@" > "$work/stdout.txt" 2> "$work/stderr.txt"
  rc=$?
  [ $rc -eq 1 ] || fail "'$*': exit status $rc, expected 1"
  [ ! -s "$work/stdout.txt" ] || fail "'$*': printed on stdout"
  [ "$(wc -l < "$work/stderr.txt")" -eq 1 ] || fail "'$*': more than one line on stderr"
  grep -qF -- "$want" "$work/stderr.txt" || fail "'$*': the error does not say '$want'"
}
export TPD_COMM=single
one_error "--serve needs a model" --serve
one_error "--serve does not take --comm" --serve --preset tiny --comm
one_error "--serve takes one --ctx value" --serve --preset tiny --ctx 8,16
one_error "--sched-batch needs --serve" --preset tiny --sched-batch 4
one_error "--sched-batch '0': 0 is out of range" --serve --preset tiny --sched-batch 0
echo "run_serve.sh: ok"
