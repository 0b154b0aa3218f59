#!/usr/bin/env bash
# One-shot check of the CUDA backend on a lent GPU machine (H200), from the
# repository root:
#   1. configure + build (Release, CUDA on, sm_90a), with a CPU-only build of
#      tpdecode-synth first so the 16 GB 8b model is written while CUDA
#      compiles
#   2. the GPU tests (ctest -R gpu, the CPU-emulation ones left out)
#   3. the device-to-device copy bandwidth (tpd-gpu-copybw)
#   4. tpdecode-bench --preset 8b --dtype bf16 --backend cuda --batch 1,8,64
#   5. a short table: ms/token, GB/s, fraction of the copy bandwidth, exposed comm
#   6. if time is left: batch 8 and 16 with the GEMV up to 16 rows vs cuBLASLt
#      for every M (TPD_GEMV_MAX_M=16 / 0), for the crossover
# Logs go to $OUT (or ./device-check-out), at most 7 files: summary.log (the
# table and every problem), build.log, ptxas.log, ctest.log, bench.log,
# bench.csv, crossover.csv.  Must finish in under 8 minutes:
# every stage has a timeout and the script goes on (and says so) when one
# fails, so the final table shows what was reached.
#
# Dependencies: CMake, a C compiler, nvcc + cuBLASLt.  cJSON may be missing
# on the device machine: set TPD_DEPS_PREFIX to a folder holding extracted
# .deb packages (libcjson1 + libcjson-dev: usr/include/cjson, usr/lib/...);
# .deb files found directly in that folder are extracted first.  Default:
# .carry/deps when it exists, e.g. prepared here with
#   mkdir -p .carry/deps && (cd .carry/deps && apt-get download libcjson1 libcjson-dev)
# and carried with the call.  MPI is optional (TP=1 without it).
#   TPD_MODEL_CACHE  where the 8b model is written (default /tmp/tpdecode-models)
#   TPD_BENCH_ARGS   extra tpdecode-bench arguments
set -euo pipefail

T0=$(date +%s)
OUT=${OUT:-$PWD/device-check-out}
mkdir -p "$OUT"
W=$(mktemp -d)
BUILD=${TPD_DEVICE_BUILD:-build-device}
SYNTH_BUILD=${BUILD}-synth
CACHE=${TPD_MODEL_CACHE:-/tmp/tpdecode-models}
MODEL_DIR=$CACHE/8b-BF16-s1
JOBS=$(nproc 2>/dev/null || echo 8)
STATUS=()

log() { printf '[%4ds] %s\n' $(($(date +%s) - T0)) "$*" | tee -a "$OUT/summary.log"; }
note() { STATUS+=("$1"); log "$1"; }

# ---- environment ----
if ! command -v nvcc >/dev/null 2>&1; then
  for d in /usr/local/cuda/bin /usr/local/cuda-13.0/bin; do
    if [ -x "$d/nvcc" ]; then export PATH="$d:$PATH"; break; fi
  done
fi
CMAKE_EXTRA=()
if [ -z "${TPD_DEPS_PREFIX:-}" ] && [ -d "$PWD/.carry/deps" ]; then TPD_DEPS_PREFIX=$PWD/.carry/deps; fi
if [ -n "${TPD_DEPS_PREFIX:-}" ]; then
  shopt -s nullglob
  debs=("$TPD_DEPS_PREFIX"/*.deb)
  shopt -u nullglob
  for deb in ${debs[@]+"${debs[@]}"}; do dpkg-deb -x "$deb" "$TPD_DEPS_PREFIX" || log "could not extract $deb"; done
  export CMAKE_PREFIX_PATH="$TPD_DEPS_PREFIX/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  for d in "$TPD_DEPS_PREFIX"/usr/lib/x86_64-linux-gnu "$TPD_DEPS_PREFIX"/usr/lib; do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
fi
# cuBLASLt from the pip wheel when the toolkit folder has none
if ! ls /usr/local/cuda/lib64/libcublasLt.so* >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1; then
  pipdir=$(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))' 2>/dev/null || true)
  if [ -n "$pipdir" ] && [ -d "$pipdir/lib" ]; then
    lib=$(ls "$pipdir"/lib/libcublasLt.so* 2>/dev/null | head -1 || true)
    if [ -n "$lib" ]; then
      CMAKE_EXTRA+=("-DCUDA_cublasLt_LIBRARY=$lib")
      export CPATH="$pipdir/include${CPATH:+:$CPATH}"
      export LD_LIBRARY_PATH="$pipdir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      log "using cuBLASLt from $pipdir"
    fi
  fi
fi
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)

{
  echo "== machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 || true
  nvcc --version 2>&1 | tail -2 || true
  cmake --version | head -1
  echo "cores: $JOBS"
} > "$W/machine.log" 2>&1
log "machine: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo '?'), $JOBS cores"

# ---- 1a. CPU-only synth build, model written in the background ----
SYNTH_PID=
if [ -f "$MODEL_DIR/.complete" ]; then
  log "8b model already at $MODEL_DIR"
else
  if timeout 240 cmake -S . -B "$SYNTH_BUILD" -DCMAKE_BUILD_TYPE=Release -DTPD_WITH_CUDA=OFF \
       -DTPD_WITH_MPI=OFF -DBUILD_TESTING=OFF ${GEN[@]+"${GEN[@]}"} > "$W/synth_build.log" 2>&1 &&
     timeout 240 cmake --build "$SYNTH_BUILD" --target tpdecode-synth -j "$JOBS" >> "$W/synth_build.log" 2>&1; then
    log "writing the 8b bf16 model to $MODEL_DIR in the background"
    mkdir -p "$CACHE"
    ( timeout 330 "$SYNTH_BUILD/tpdecode-synth" --preset 8b --dtype bf16 --seed 1 --out "$MODEL_DIR" \
        > "$W/synth.log" 2>&1 && touch "$MODEL_DIR/.complete" ) &
    SYNTH_PID=$!
  else
    note "synth build FAILED (see build.log); the bench will write the model itself"
  fi
fi

# ---- 1b. the CUDA build ----
BUILT=0
if timeout 150 cmake -S . -B "$BUILD" ${GEN[@]+"${GEN[@]}"} -DCMAKE_BUILD_TYPE=Release -DTPD_WITH_CUDA=ON \
     -DTPD_CUDA_ARCHS=90a -DTPD_GPU_EMU=OFF ${CMAKE_EXTRA[@]+"${CMAKE_EXTRA[@]}"} > "$W/configure.log" 2>&1; then
  grep 'tpdecode:' "$W/configure.log" | tee -a "$OUT/summary.log" || true
  targets=(tpdecode-bench tpd-gpu-copybw test_gpu_nodevice test_gpu_ops test_gpu_graph test_gpu_engine)
  if grep -q 'MPI (multi-rank TP over host buffers): found' "$W/configure.log"; then targets+=(test_gpu_mpi); fi
  if grep -q 'NCCL (device all-reduce): found' "$W/configure.log"; then targets+=(test_gpu_nccl); fi
  if timeout 300 cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" > "$W/build.log" 2>&1; then
    BUILT=1
    log "build done"
  else
    note "build FAILED (tail of build.log below)"
    tail -30 "$W/build.log" | tee -a "$OUT/summary.log"
  fi
else
  note "configure FAILED (tail of configure.log below)"
  tail -30 "$W/configure.log" | tee -a "$OUT/summary.log"
fi

# ---- 2. GPU tests ----
if [ "$BUILT" = 1 ]; then
  sh kernels/cuda/check_ptxas.sh "$BUILD" > "$OUT/ptxas.log" 2>&1 || note "ptxas check FAILED: a kernel spills or has a stack frame"
  tail -1 "$OUT/ptxas.log" | tee -a "$OUT/summary.log" || true
  if timeout 240 ctest --test-dir "$BUILD" -R '^gpu\.' -E 'emu' --output-on-failure --timeout 200 \
       > "$OUT/ctest.log" 2>&1; then
    log "GPU tests passed"
  else
    note "GPU tests FAILED or timed out (see ctest.log)"
  fi
  grep -E 'tests passed|Passed|Failed|Skipped|\*\*\*' "$OUT/ctest.log" | tee -a "$OUT/summary.log" || true
  grep -hE '^(FAIL|ok  )' "$OUT/ctest.log" > "$W/checks.log" 2>/dev/null || true
fi

# ---- 3. copy bandwidth ----
COPY_GBS=
if [ "$BUILT" = 1 ]; then
  if timeout 60 "$BUILD/tpd-gpu-copybw" 4096 > "$W/copybw.log" 2>&1; then
    COPY_GBS=$(awk '/^copy_gbs/ {print $2}' "$W/copybw.log")
    log "device-to-device copy: $COPY_GBS GB/s (read + write)"
  else
    note "copy bandwidth probe FAILED (see bench.log)"
  fi
fi

# ---- 4. the benchmark ----
if [ -n "$SYNTH_PID" ]; then
  log "waiting for the 8b model"
  if wait "$SYNTH_PID"; then log "8b model written ($(du -sh "$MODEL_DIR" 2>/dev/null | cut -f1))"; else note "model writing FAILED or timed out (see bench.log)"; fi
fi
BENCH_OK=0
if [ -n "$SYNTH_PID" ] && [ ! -f "$MODEL_DIR/.complete" ]; then
  note "bench skipped: the 8b model was not written"
elif [ "$BUILT" = 1 ]; then
  [ -f "$MODEL_DIR/.complete" ] || log "the bench writes the 8b model itself (slow)"
  left=$((470 - ($(date +%s) - T0)))
  # shellcheck disable=SC2086 # TPD_BENCH_ARGS is a list of words
  if [ "$left" -lt 60 ]; then
    note "bench skipped: only ${left}s of the 8-minute budget left"
  elif TPD_LOG=info timeout "$left" "$BUILD/tpdecode-bench" --preset 8b --dtype bf16 --backend cuda --batch 1,8,64 \
         --model-cache "$CACHE" --membw-mb 256 --csv ${TPD_BENCH_ARGS:-} > "$OUT/bench.csv" 2> "$W/bench.log"; then
    BENCH_OK=1
    log "bench done"
  else
    note "bench FAILED or timed out (see bench.log)"
    tail -15 "$W/bench.log" | tee -a "$OUT/summary.log"
  fi
fi

# ---- 6. crossover probe (before the table, so the table can show it) ----
XOVER=()
if [ "$BENCH_OK" = 1 ]; then
  for m in 16 0; do
    left=$((450 - ($(date +%s) - T0)))
    if [ "$left" -lt 100 ]; then log "crossover run TPD_GEMV_MAX_M=$m skipped: ${left}s left"; continue; fi
    if TPD_GEMV_MAX_M=$m timeout "$left" "$BUILD/tpdecode-bench" --preset 8b --dtype bf16 --backend cuda \
         --batch 8,16 --steps 8 --model-cache "$CACHE" --membw-mb 64 --csv > "$W/xover_$m.csv" \
         2> "$W/xover_$m.log"; then
      sed "s/^/TPD_GEMV_MAX_M=$m,/" "$W/xover_$m.csv" >> "$OUT/crossover.csv"
      XOVER+=("$m")
    else
      log "crossover run TPD_GEMV_MAX_M=$m failed (see bench.log)"
    fi
  done
fi

# ---- 5. the table ----
{
  echo
  echo "== tpdecode CUDA backend on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo '?'): 8b bf16, TP=1"
  echo "   copy bandwidth (device-to-device, read + write): ${COPY_GBS:-n/a} GB/s"
  if [ "$BENCH_OK" = 1 ]; then
    awk -F, -v copy="${COPY_GBS:-0}" '
      NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
      $0 == "" || $1 == "batch" { next }
      {
        b = $col["batch"]; ms = $col["ms_per_step_median"]; gbs = $col["achieved_gbs"]
        comm = ("comm_ms_per_token" in col) ? $col["comm_ms_per_token"] : ""
        frac = (copy > 0 && gbs != "") ? sprintf("%.3f", gbs / copy) : "n/a"
        if (!header++) printf "   %6s %12s %10s %14s %14s\n", "batch", "ms/token", "GB/s", "of copy bw", "exposed comm"
        printf "   %6s %12.3f %10.1f %14s %14s\n", b, ms, gbs, frac, comm == "" ? "n/a" : sprintf("%.3f ms", comm)
      }' "$OUT/bench.csv"
    echo "   (ms/token = median decode step; GB/s = weight + KV bytes read per step / time)"
    for m in ${XOVER[@]+"${XOVER[@]}"}; do
      awk -F, -v m="$m" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        $1 != "" && $1 != "batch" { printf "   TPD_GEMV_MAX_M=%-3s batch %3s: %8.3f ms/token %8.1f GB/s\n", m, $col["batch"],
          $col["ms_per_step_median"], $col["achieved_gbs"] }' "$W/xover_$m.csv"
    done
  else
    echo "   bench: not run or failed"
  fi
  if [ -s "$W/checks.log" ]; then
    echo "   checks: $(grep -c '^ok' "$W/checks.log" || true) ok, $(grep -c '^FAIL' "$W/checks.log" || true) FAIL"
    grep '^FAIL' "$W/checks.log" | head -10 | sed 's/^/   /' || true
  fi
  for s in ${STATUS[@]+"${STATUS[@]}"}; do echo "   ! $s"; done
  echo "   total $(($(date +%s) - T0)) s; logs in $OUT"
} | tee -a "$OUT/summary.log"
# consolidate the logs (at most 7 files come back)
for f in machine synth_build configure build; do
  [ -f "$W/$f.log" ] && { echo "==== $f"; cat "$W/$f.log"; }
done > "$OUT/build.log" 2>&1 || true
for f in synth copybw bench xover_16 xover_0; do
  [ -f "$W/$f.log" ] && { echo "==== $f"; cat "$W/$f.log"; }
done > "$OUT/bench.log" 2>&1 || true
rm -rf "$W"
[ "${#STATUS[@]}" -eq 0 ]
