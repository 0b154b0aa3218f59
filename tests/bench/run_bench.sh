#!/bin/sh
# End-to-end runs of tpdecode-bench for ctest; the exit status is the verdict
# (77: skipped).
#   run_bench.sh sweep BENCH CHECK WORKDIR MPIRUN   mpirun -np 2, --sweep --predict --comm on the small preset
#   run_bench.sh json  BENCH CHECK WORKDIR          one process, --json (decode and --comm rows) on the tiny preset
#   run_bench.sh table BENCH CHECK WORKDIR          one process, the human table on the tiny preset
#   run_bench.sh sweep1 BENCH CHECK WORKDIR         one process, --sweep --predict: bench.json, bench.csv, pareto.svg
#   run_bench.sh args  BENCH CHECK WORKDIR VERSION  argument errors: one line each, exit 1; --version, --help
#   run_bench.sh kernels BENCH CHECK WORKDIR        --kernels on the tiny preset: the table, --json rows checked
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
    for b in 1 2 4; do
      grep -q "^batch $b, ctx 16 -> 64: ms/token [+-][0-9.]* (best steps [+-][0-9.]*), floor +[0-9.]* at [0-9.]* GB/s: [0-9.-]*x the floor's growth" \
        "$work/stdout.txt" || fail "no growth-with-context line for batch $b"
    done
    grep -q "energy: null" "$work/stdout.txt" || grep -q "energy: RAPL" "$work/stdout.txt" || fail "no energy line"
    "$check" dir "$work/out" --configs 6 --predicted --comm || fail "outputs do not check"
    if command -v xmllint > /dev/null 2>&1; then
      xmllint --noout "$work/out/pareto.svg" || fail "xmllint rejects pareto.svg"
    fi
    ;;
  json)
    # shellcheck disable=SC2086
    "$bench" --preset tiny --batch 1,2 --ctx 8,24 $common --json --comm --comm-max 16384 --comm-iters 2 \
      --comm-warmup 1 > "$work/out.jsonl" 2> "$work/stderr.txt" || fail "the benchmark failed"
    "$check" jsonl "$work/out.jsonl" --configs 4 || fail "--json output does not check"
    grep -q '"kind":"allreduce"' "$work/out.jsonl" || fail "no all-reduce rows"
    [ "$(grep -c '"kind":"ctx_growth"' "$work/out.jsonl")" = 2 ] || fail "not one ctx_growth line per batch"
    ;;
  table)
    # shellcheck disable=SC2086
    "$bench" --preset tiny --batch 1,2 $common --comm --comm-max 16384 --comm-iters 2 --comm-warmup 1 \
      > "$work/stdout.txt" 2> "$work/stderr.txt" || fail "the benchmark failed"
    cat "$work/stdout.txt"
    grep -q "^batch 2 / batch 1 system tokens/s: " "$work/stdout.txt" || fail "no batch 2 / batch 1 line"
    grep -q "of read" "$work/stdout.txt" || fail "no fraction-of-read-bandwidth column"
    grep -q "MB/tok" "$work/stdout.txt" || fail "no bytes-per-token column"
    grep -q "host comm  *exposed" "$work/stdout.txt" || fail "no host comm / exposed columns"
    # TP 1: exposed communication is n/a; one rank: no bus bandwidth
    awk '$1 == 1 && $2 ~ /^[0-9]+$/ && NF >= 21 { if ($11 != "n/a") exit 1 }' "$work/stdout.txt" ||
      fail "exposed communication is not n/a at TP 1"
    grep -q "^# average bus bandwidth: n/a (one rank" "$work/stdout.txt" || fail "a bus bandwidth at one rank"
    awk '$3 == "float" { n++; if ($5 != "n/a" || $6 != "n/a") exit 1 } END { if (!n) exit 1 }' "$work/stdout.txt" ||
      fail "an algbw/busbw number at one rank (or no all-reduce rows)"
    ;;
  kernels)
    # shellcheck disable=SC2086
    "$bench" --kernels --preset tiny --batch 1,3 --ctx 8,40 $common --json > "$work/out.jsonl" \
      2> "$work/stderr.txt" || fail "the benchmark failed"
    "$check" kernels "$work/out.jsonl" --configs 6 || fail "--kernels --json rows do not check"
    # bf16 activations: AMX tiles or vdpbf16ps where the CPU has them (the tiny preset is bf16), and the
    # compute probe of the same instructions; where the level has neither, a one-line refusal naming it
    # shellcheck disable=SC2086
    if TPD_CPU_BF16_DOT=1 "$bench" --kernels --preset tiny --batch 1,17 --ctx 8 $common > "$work/bf16.txt" \
      2> "$work/stderr.txt"; then
      # the kernels the backend reports and the compute probe's instructions agree; a CPU with AVX512-BF16
      # runs one of the two bf16 paths (AMX where the build has it and the OS grants it)
      if grep -q "cpu/amx-bf16, " "$work/bf16.txt"; then
        grep -q "peak .* (AMX-BF16 tiles)" "$work/bf16.txt" || { cat "$work/bf16.txt"; fail "amx-bf16 without the AMX probe"; }
      elif grep -q "cpu/avx512bf16-dot, " "$work/bf16.txt"; then
        grep -q "(AVX512_BF16 dot products)" "$work/bf16.txt" || { cat "$work/bf16.txt"; fail "vdpbf16ps without its probe"; }
      else
        cat "$work/bf16.txt"; fail "TPD_CPU_BF16_DOT=1 was accepted and runs neither bf16 path"
      fi
      if grep -q "amx_bf16" /proc/cpuinfo 2>/dev/null && grep -q "amx_tile" /proc/cpuinfo && [ -z "${TPD_CPU_ISA:-}" ]; then
        grep -q "cpu/amx-bf16, " "$work/bf16.txt" || echo "note: the CPU has AMX, the run did not use it (not built, or not granted)"
      fi
    else
      grep -q "TPD_CPU_BF16_DOT=1: bf16 dot products need AVX512-BF16 or AMX-BF16" "$work/stderr.txt" ||
        { cat "$work/stderr.txt"; fail "the TPD_CPU_BF16_DOT=1 run failed without the refusal"; }
      if grep -q "avx512_bf16" /proc/cpuinfo 2>/dev/null && [ -z "${TPD_CPU_ISA:-}" ]; then
        cat "$work/stderr.txt"; fail "TPD_CPU_BF16_DOT=1 refused on a CPU with AVX512-BF16"
      fi
      echo "TPD_CPU_BF16_DOT=1 refused here, as it should be: $(head -1 "$work/stderr.txt")"
    fi
    # TPD_CPU_BF16_DOT=0, and --activations f32 (the variable unset): the f32 kernels and the f32
    # probe, whatever the rate probe would choose
    for how in env opt; do
      if [ $how = env ]; then
        # shellcheck disable=SC2086
        TPD_CPU_BF16_DOT=0 "$bench" --kernels --preset tiny --batch 1 --ctx 8 $common > "$work/f32.txt" \
          2> "$work/stderr.txt" || { cat "$work/stderr.txt"; fail "the TPD_CPU_BF16_DOT=0 run failed"; }
      else
        # shellcheck disable=SC2086
        TPD_CPU_BF16_DOT= "$bench" --kernels --preset tiny --batch 1 --ctx 8 --activations f32 $common \
          > "$work/f32.txt" 2> "$work/stderr.txt" || { cat "$work/stderr.txt"; fail "the --activations f32 run failed"; }
      fi
      if ! grep -Eq "cpu/(avx512bf16|avx512|avx2|scalar), " "$work/f32.txt" ||
        ! grep -Eq "\((AVX-512 f32 FMA|AVX2 f32 FMA|scalar f32 multiply-add)\)" "$work/f32.txt"; then
        cat "$work/f32.txt"; fail "f32 activations ($how): not the f32 kernels and the f32 probe"
      fi
    done
    # shellcheck disable=SC2086
    "$bench" --kernels --preset tiny --batch 2 --ctx 16 $common > "$work/stdout.txt" 2> "$work/stderr.txt" ||
      fail "the table run failed"
    cat "$work/stdout.txt"
    grep -q "^kernel  *batch  *ctx  *MB/pass  *best ms  *median ms  *GB/s  *of read" "$work/stdout.txt" ||
      fail "no kernel table header"
    [ "$(grep -c '^matmul  *2  *- ' "$work/stdout.txt")" = 1 ] && [ "$(grep -c '^attention  *2  *16 ' "$work/stdout.txt")" = 1 ] ||
      fail "not one matmul and one attention row"
    # a model whose fused qkv weight is the largest (above the LM head and gate/up) and whose attention
    # width (heads x head_dim 128) is not its dim (64): the bench sized its buffers from the LM head, gate/up
    # and dim alone and wrote past them (a crash on such a shape; ASan names it in the sanitizer stage)
    if [ -n "${5:-}" ]; then
      "$5" --out "$work/wide" --layers 2 --dim 64 --heads 8 --kv-heads 2 --head-dim 16 --ffn 64 --vocab 96 --ctx 64 \
        > /dev/null || fail "tpdecode-synth failed"
      # shellcheck disable=SC2086
      "$bench" --kernels -m "$work/wide" --batch 2 --ctx 16 $common --json > "$work/wide.jsonl" 2> "$work/stderr.txt" ||
        { cat "$work/stderr.txt"; fail "--kernels on a model whose qkv weight is the largest failed"; }
      # weights: 2 layers x (qkv 192x64 + o 64x128 + gate/up 128x64 + down 64x64) + LM head 96x64, bf16
      grep -q "\"kernel\":\"matmul\",\"batch\":2,\"ctx\":null,\"bytes_per_pass\":$(( (2 * (192 * 64 + 64 * 128 + 128 * 64 + 64 * 64) + 96 * 64) * 2 ))," \
        "$work/wide.jsonl" || { cat "$work/wide.jsonl"; fail "the matmul row's bytes per pass are not the model's weights"; }
    fi
    ;;
  sweep1)
    # shellcheck disable=SC2086
    "$bench" --preset tiny --sweep --predict h200 --predict-batch 1,4,16,64,256 --batch 1,2,4 --ctx 8,32 $common \
      --out-dir "$work/out" > "$work/stdout.txt" 2> "$work/stderr.txt" || fail "the benchmark failed"
    "$check" dir "$work/out" --configs 6 --predicted || fail "outputs do not check"
    if command -v xmllint > /dev/null 2>&1; then
      xmllint --noout "$work/out/pareto.svg" || fail "xmllint rejects pareto.svg"
    fi
    ;;
  args)
    version=${5:-}
    # each error: exit status 1, exactly one line on stderr, nothing on stdout (no usage text)
    one_error() { # expected-substring args...
      want=$1
      shift
      "$bench" "$@" > "$work/stdout.txt" 2> "$work/stderr.txt"
      rc=$?
      [ $rc -eq 1 ] || fail "'$*': exit status $rc, expected 1"
      [ ! -s "$work/stdout.txt" ] || fail "'$*': printed on stdout"
      [ "$(wc -l < "$work/stderr.txt")" -eq 1 ] || fail "'$*': more than one line on stderr"
      grep -q "^tpdecode-bench: error: " "$work/stderr.txt" || fail "'$*': not a 'tpdecode-bench: error:' line"
      grep -qF -- "$want" "$work/stderr.txt" || fail "'$*': the error does not say '$want'"
      if grep -qi "token" "$work/stderr.txt"; then fail "'$*': talks about tokens"; fi
    }
    one_error "unknown option '--bogus'" --preset tiny --bogus
    one_error "unknown option '--bogus'" --preset tiny --steps 2 --bogus
    one_error "option --steps needs a value" --preset tiny --steps
    one_error "--batch '1,abc': 'abc' is not an integer" --preset tiny --batch 1,abc
    one_error "--batch '1,0': 0 is out of range" --preset tiny --batch 1,0
    one_error "--ctx '8,': a trailing comma" --preset tiny --ctx 8,
    one_error "--steps 'x': expected an integer" --preset tiny --steps x
    one_error "--dtype 'f8': expected f32, bf16 or f16" --preset tiny --dtype f8
    one_error "--backend 'tpu'" --preset tiny --backend tpu
    one_error "unknown preset 'huge'" --preset huge
    one_error "unexpected argument 'tiny'" --preset tiny tiny
    one_error "nothing to do" --steps 2
    one_error "--kernels needs a model" --kernels --steps 2
    one_error "--kernels does not take --serve" --kernels --preset tiny --serve
    one_error "--kernels does not take --sweep" --kernels --preset tiny --sweep
    one_error "--plot-serving does not take --kernels" --kernels --plot-serving x.json
    "$bench" --version > "$work/stdout.txt" 2> "$work/stderr.txt" || fail "--version failed"
    grep -q "^tpdecode-bench $version" "$work/stdout.txt" || fail "--version does not print 'tpdecode-bench $version'"
    "$bench" --help > "$work/stdout.txt" 2> "$work/stderr.txt" || fail "--help failed"
    for opt in --batch --ctx --steps --warmup --threads --membw-mb --dtype --comm-max --predict-ctx; do
      grep -- "^  $opt" "$work/stdout.txt" | grep -q "default" || fail "--help shows no default for $opt"
    done
    # --threads above the cores: capped, with one warning (the run goes on)
    "$bench" --preset tiny --threads 100000 --batch 1 --ctx 4 $common > "$work/stdout.txt" 2> "$work/stderr.txt" ||
      fail "--threads 100000 failed"
    grep -q "^tpdecode-bench: warning: --threads 100000 " "$work/stderr.txt" ||
      fail "no warning for --threads 100000"
    grep -q "thread.* per rank" "$work/stdout.txt" || fail "no machine line"
    if grep -q "100000 threads" "$work/stdout.txt"; then fail "--threads 100000 was not capped"; fi
    ;;
  *)
    echo "run_bench.sh: unknown mode $mode"
    exit 2
    ;;
esac
echo "run_bench.sh $mode: ok"
