#!/usr/bin/env bash
# shellcheck disable=SC2054 # commas inside words are the programs' list syntax
# The first-contact check of the CUDA backend on the lent GPU machine (one
# NVIDIA H200, 16 cores, no network, no MPI, no cJSON; CUDA 13 wheels for
# NCCL and cuBLAS in its python3; torch and transformers; compute-sanitizer;
# at most 600 s per command).  docs/cuda.md gives the exact `run` call.
#
#   tests/gpu/device_check.sh --prepare    here: build the carry (.carry/) that the call takes along
#   tests/gpu/device_check.sh              there, from the repository root: the check
#   tests/gpu/device_check.sh --rehearse   here: every stage that needs no GPU (ctest gpu.device_check.rehearse)
#
# Stages, most valuable first (TPD_DC_STAGES picks some, comma-separated):
#   facts     nvidia-smi subset, clocks, driver, CUDA, libraries found
#   sanitize  compute-sanitizer memcheck, racecheck, synccheck on test_gpu_graph and test_gpu_ops (parallel)
#   tests     the GPU test programs (each checks bf16 and f32 activations itself)
#   bw        read-only bandwidth probe (the decode ceiling) and device-to-device copy
#   gemv      GB/s of every matmul at the Llama-3.1-8B TP 1/2/8 shapes, batch 1, 8, 64, against the read probe
#   logits    small random models: tpdecode on the GPU vs transformers on the same GPU vs the CPU backend
#   bench     tpdecode-bench on the 8b model (written once, in the background from the start), batch 1/2/4/8/64, ctx 64/1024/4096, its floor
#   attpp     the bench again with TPD_ATT_PP=2 (the attention's first schedule) at batch 1/8/64, ctx 64/4096
#   xover     GEMV vs cuBLASLt at batch 1, 2, 3, 4, 8 (TPD_GEMV_MAX_M=16 vs 0), if time is left
# One global deadline (TPD_DC_DEADLINE, default 420 s); every stage runs
# under `timeout`, bounded by what is left.  Logs go to $OUT (default
# /tmp/tpd-device-check-MODE) as each stage runs, 7 files: summary.txt (stage
# results as they come, then the table), facts.log, sanitizer.log,
# tests.log, bw.log, logits.log, bench.log.  The last thing printed is the
# table: stage, pass/fail; GB/s and fraction of read bandwidth per matmul
# shape and batch; ms/token.  Exit 0 when no stage failed.
#
# Environment: OUT; TPD_DC_DEADLINE; TPD_DC_STAGES; TPD_DC_CARRY (default
# ./.carry); TPD_DC_MODELS (default /tmp/tpd-dc-models); TPD_DC_BUILD (the
# build folder: --prepare builds there, default build-carry; --rehearse
# takes its binaries, default build); TPD_DC_ACT_MODES (default "bf16 f32":
# the activation modes of tpdecode in the logits stage).
set -uo pipefail

MODE=device
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --rehearse) MODE=rehearse ;;
  "") ;;
  -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "device_check.sh: unknown argument '$1' (--prepare, --rehearse, or none)" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
T0=$(date +%s)
DEADLINE=${TPD_DC_DEADLINE:-420}
RESERVE=8 # seconds kept for the table
CARRY=${TPD_DC_CARRY:-$ROOT/.carry}
MODELS=${TPD_DC_MODELS:-/tmp/tpd-dc-models}
STAGES=${TPD_DC_STAGES:-facts,sanitize,tests,bw,gemv,logits,bench,attpp,xover}
ACT_MODES=${TPD_DC_ACT_MODES:-bf16 f32}
JOBS=$(nproc 2>/dev/null || echo 4)
PY=${TPD_DC_PYTHON:-python3}
HERE=$ROOT/tests/gpu
# the binaries the check runs, and where the build puts them
PROGRAMS="tpdecode tpdecode-synth tpdecode-bench tpd-gpu-bw"
TESTS="test_gpu_nodevice test_gpu_ops test_gpu_graph test_gpu_engine test_gpu_nccl"

now() { echo $(($(date +%s) - T0)); }
left() { echo $((DEADLINE - $(now))); }
want() { case ",$STAGES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# bounded CAP CMD...: CMD under timeout, at most CAP seconds and never past
# the deadline (less the reserve); 124 when it was cut, 125 when no time was left
bounded() {
  local cap=$1 l
  shift
  l=$(($(left) - RESERVE))
  [ "$l" -lt "$cap" ] && cap=$l
  if [ "$cap" -lt 3 ]; then
    echo "(not started: the ${DEADLINE}s deadline is reached)"
    return 125
  fi
  timeout -k 5 "$cap" "$@"
}

# ---------------------------------------------------------------- carry --

source_hash() { # the sources a build depends on (not this script, docs or python)
  (cd "$ROOT" && find CMakeLists.txt cmake comm kernels launch runtime tests \
    -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cpp' -o -name '*.cmake' -o -name CMakeLists.txt \) \
    2>/dev/null | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
}

# cmake_args BUILD [WERROR]: the configuration of a build for the device:
# CUDA, sm_90a, no MPI, no emulation; cJSON from the carry; NCCL and
# cuBLASLt from the toolkit or the CUDA 13 wheels (found by find_libs);
# warnings are errors only where asked (here, not on the device)
cmake_args() {
  local a=(-S "$ROOT" -B "$1" -DCMAKE_BUILD_TYPE=Release -DTPD_WITH_CUDA=ON -DTPD_CUDA_ARCHS=90a
    -DTPD_WITH_MPI=OFF -DTPD_GPU_EMU=OFF -DBUILD_TESTING=ON -DTPD_WERROR="${2:-OFF}")
  [ -d "$CARRY/deps/usr/include/cjson" ] && a+=(-DCJSON_INCLUDE_DIR="$CARRY/deps/usr/include" -DCJSON_LIBRARY="$CARRY/deps/usr/lib/libcjson.so")
  # the toolkit's own libraries are found by CMake; the wheels' are named
  case "${NCCL_LIB:-/usr/local/cuda}" in /usr/local/cuda*) ;; *) a+=(-DNCCL_INCLUDE_DIR="$NCCL_INC" -DNCCL_LIBRARY="$NCCL_LIB") ;; esac
  case "${LT_LIB:-/usr/local/cuda}" in /usr/local/cuda*) ;; *) a+=(-DCUDA_cublasLt_LIBRARY="$LT_LIB") ;; esac
  command -v ninja >/dev/null 2>&1 && a+=(-G Ninja)
  printf '%s\n' "${a[@]}"
}

# assemble_carry BUILD DEST: the binaries, cJSON (library + header, for a
# build there), the source hash
assemble_carry() {
  local b=$1 d=$2 p f h
  rm -rf "${d:?}/bin" "${d:?}/lib" "${d:?}/deps"
  mkdir -p "$d/bin" "$d/lib" "$d/deps/usr/include/cjson" "$d/deps/usr/lib" || return 1
  for p in $PROGRAMS; do
    [ -x "$b/$p" ] || { echo "assemble_carry: $b/$p is missing (build it first)"; return 1; }
    cp "$b/$p" "$d/bin/"
  done
  for p in $TESTS; do
    if [ -x "$b/tests/gpu/$p" ]; then cp "$b/tests/gpu/$p" "$d/bin/"; else echo "assemble_carry: note: $p not built (not carried)"; fi
  done
  # cJSON: this machine's (libcjson-dev), else the carry's (a build on the device)
  f=$(ldconfig -p 2>/dev/null | awk '/libcjson\.so\.1 / {print $NF; exit}')
  [ -n "$f" ] || f=$(ls /usr/lib/*/libcjson.so.1 "$CARRY/lib/libcjson.so.1" 2>/dev/null | head -1)
  [ -n "$f" ] || { echo "assemble_carry: libcjson.so.1 not found"; return 1; }
  h=$(ls /usr/include/cjson/cJSON.h "$CARRY/deps/usr/include/cjson/cJSON.h" 2>/dev/null | head -1)
  [ -n "$h" ] || { echo "assemble_carry: cjson/cJSON.h not found"; return 1; }
  cp -L "$f" "$d/lib/libcjson.so.1"
  cp -L "$f" "$d/deps/usr/lib/libcjson.so"
  cp -L "$f" "$d/deps/usr/lib/libcjson.so.1"
  cp "$h" "$d/deps/usr/include/cjson/" || return 1
  strip --strip-unneeded "$d"/bin/* 2>/dev/null || true
  source_hash > "$d/SOURCES"
  { echo "built $(date -u +%FT%TZ) on $(uname -n) from $b"; nvcc --version 2>/dev/null | tail -1
    git -C "$ROOT" describe --always --dirty 2>/dev/null; } > "$d/BUILD_INFO"
  echo "carry: $(du -sh "$d" | cut -f1) in $d ($(ls "$d/bin" | wc -l) programs)"
}

# Libraries the binaries need there: the toolkit's, else the CUDA 13 wheels
# in python3's site-packages (nvidia/cu13/...); cJSON from the carry.
find_libs() {
  local dirs=() d nv
  if ! command -v nvcc >/dev/null 2>&1; then # for a build there
    for d in /usr/local/cuda/bin /usr/local/cuda-13*/bin; do [ -x "$d/nvcc" ] && { export PATH="$d:$PATH"; break; }; done
  fi
  nv=$("$PY" -c 'import nvidia, sys; print("\n".join(nvidia.__path__))' 2>/dev/null || true)
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/lib; do
    [ -d "$d" ] && dirs+=("$d")
  done
  for d in $nv; do mapfile -t -O "${#dirs[@]}" dirs < <(find "$d" -maxdepth 3 -type d -name lib 2>/dev/null); done
  LT_LIB='' NCCL_LIB='' NCCL_INC='' LT_INC='' CUDART_DIR=
  for d in ${dirs[@]+"${dirs[@]}"}; do
    [ -z "$LT_LIB" ] && LT_LIB=$(ls "$d"/libcublasLt.so.13* "$d"/libcublasLt.so 2>/dev/null | head -1)
    [ -z "$NCCL_LIB" ] && NCCL_LIB=$(ls "$d"/libnccl.so.2* "$d"/libnccl.so 2>/dev/null | head -1)
    [ -z "$CUDART_DIR" ] && ls "$d"/libcudart.so.13* >/dev/null 2>&1 && CUDART_DIR=$d
  done
  for d in /usr/local/cuda/include /usr/include $(for n in $nv; do find "$n" -maxdepth 3 -type d -name include 2>/dev/null; done); do
    [ -z "$NCCL_INC" ] && [ -f "$d/nccl.h" ] && NCCL_INC=$d
    [ -z "$LT_INC" ] && [ -f "$d/cublasLt.h" ] && LT_INC=$d
  done
  local ld=$CARRY/lib
  for f in "$LT_LIB" "$NCCL_LIB"; do [ -n "$f" ] && ld="$ld:$(dirname "$f")"; done
  [ -n "$CUDART_DIR" ] && ld="$ld:$CUDART_DIR"
  export LD_LIBRARY_PATH="$ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  [ -n "$LT_INC" ] && export CPATH="$LT_INC${CPATH:+:$CPATH}"
}

build_here_for_device() { # BUILD [WERROR]: configure + build the programs the check runs
  local b=$1 args
  mapfile -t args < <(cmake_args "$b" "${2:-OFF}")
  echo "== configure: cmake ${args[*]}"
  bounded 200 cmake "${args[@]}" || return 1
  echo "== build"
  bounded 400 cmake --build "$b" -j "$JOBS" --target $PROGRAMS $TESTS
}

# ---------------------------------------------------------------- modes --

if [ "$MODE" = prepare ]; then
  B=${TPD_DC_BUILD:-$ROOT/build-carry}
  DEADLINE=${TPD_DC_DEADLINE:-1800}
  find_libs
  rm -rf "$CARRY/deps" # cJSON: this machine's (libcjson-dev)
  mkdir -p "$CARRY"
  build_here_for_device "$B" ON || { echo "prepare: the build failed"; exit 1; }
  assemble_carry "$B" "$CARRY" || exit 1
  grep -q '^/.carry/' "$ROOT/.gitignore" 2>/dev/null || echo "prepare: note: .carry/ is not in .gitignore; add it, or it travels as untracked files"
  echo "prepare: done; call the device with carry [\".carry\"] (docs/cuda.md)"
  exit 0
fi

OUT=${OUT:-${TMPDIR:-/tmp}/tpd-device-check-$MODE}
mkdir -p "$OUT" "$MODELS" || exit 2
W=$(mktemp -d "${TMPDIR:-/tmp}/tpd-dc.XXXXXX")
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
for f in facts sanitizer tests bw logits bench; do : > "$OUT/$f.log"; done
STAGE_NAMES=()
declare -A RESULT
BAD=0      # stages that failed
TIMEOUTS=0 # stages cut by their time limit (incomplete, not failed)
log() { printf '[%4ds] %s\n' "$(now)" "$*" | tee -a "$SUMMARY"; }
# result NAME TEXT: a stage's result, kept for the table; FAIL or timeout count as failures
result() {
  [ -n "${RESULT[$1]+x}" ] || STAGE_NAMES+=("$1")
  RESULT[$1]=$2
  case "$2" in FAIL* | missing*) BAD=$((BAD + 1)) ;; timeout* | *"not run (deadline)"*) TIMEOUTS=$((TIMEOUTS + 1)) ;; esac
  log "$1: $2"
}
rc_word() { # exit code of a test program -> result word
  case "$1" in
    0) echo pass ;; 77) echo "skip (no GPU)" ;; 124 | 137) echo "timeout" ;; 125) echo "not run (deadline)" ;;
    *) echo "FAIL (exit $1)" ;;
  esac
}

# In a rehearsal the carry is laid out from the ctest build, in a temporary
# folder; programs that need a GPU must then skip (77), and the GPU runs of
# tpdecode are played by the CPU backend.
if [ "$MODE" = rehearse ]; then
  RB=${TPD_DC_BUILD:-$ROOT/build}
  CARRY=$W/carry
  log "rehearsal: carry laid out from $RB in $CARRY"
  if assemble_carry "$RB" "$CARRY" >> "$OUT/facts.log" 2>&1; then result carry "pass (laid out from $RB)"
  else result carry "FAIL (see facts.log)"; fi
  # what travels: the tree (tracked and untracked-not-ignored files) and the carry, 64 MiB at most
  tree_kb=$(git -C "$ROOT" ls-files -co --exclude-standard -z 2>/dev/null | (cd "$ROOT" && xargs -0 du -ck 2>/dev/null) | tail -1 | cut -f1)
  carry_kb=$(du -sk "$CARRY" | cut -f1)
  if [ $((${tree_kb:-0} + carry_kb)) -lt $((56 * 1024)) ]; then result "carry size" "pass (tree ${tree_kb:-?} KB + carry $carry_kb KB)"
  else result "carry size" "FAIL (tree ${tree_kb:-?} KB + carry $carry_kb KB: too close to the 64 MiB limit)"; fi
  # the device's configuration (CUDA, no MPI, no emulation) configures, with the targets the check runs
  mapfile -t cargs < <(NCCL_LIB='' LT_LIB='' cmake_args "$W/devcfg" OFF)
  if bounded 120 cmake "${cargs[@]}" > "$W/devcfg.log" 2>&1 &&
     [ -d "$W/devcfg/tests/gpu/CMakeFiles/tpd-gpu-bw.dir" ] && [ -d "$W/devcfg/tests/gpu/CMakeFiles/test_gpu_nccl.dir" ]; then
    result "device configuration" "pass (CUDA, no MPI: tpd-gpu-bw and the one-rank test_gpu_nccl configured)"
  else
    cat "$W/devcfg.log" >> "$OUT/facts.log"
    result "device configuration" "FAIL (see facts.log)"
  fi
  EMU_BW=$RB/emu_tpd_gpu_bw
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 # the emulation's streams and graphs live until exit
  GPU_BACKEND=cpu
  EXPECT_GPU=77
else
  GPU_BACKEND=cuda
  EXPECT_GPU=0
fi
find_libs
BIN=$CARRY/bin

# ---------------------------------------------------------------- setup --
# The carried binaries, if they start (libraries found) and were built from
# these sources; else a build here, if time allows.
carry_ok() {
  [ -x "$BIN/test_gpu_nodevice" ] || { echo "no carried binaries in $BIN"; return 1; }
  local miss
  miss=$(for f in "$BIN"/*; do ldd "$f" 2>/dev/null | grep 'not found' | sed "s|^|$(basename "$f"): |"; done)
  [ -z "$miss" ] || { echo "carried binaries miss libraries:"; echo "$miss"; return 1; }
  "$BIN/test_gpu_nodevice" > "$W/nodevice.txt" 2>&1
  local rc=$?
  [ "$rc" = 0 ] || { echo "test_gpu_nodevice exits $rc:"; cat "$W/nodevice.txt"; return 1; }
  return 0
}
{
  echo "== libraries: cublasLt ${LT_LIB:-not found}; nccl ${NCCL_LIB:-not found} (include ${NCCL_INC:-not found});"
  echo "   cudart dir ${CUDART_DIR:-not found}; LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
} >> "$OUT/facts.log"
if carry_ok >> "$OUT/facts.log" 2>&1; then
  if [ "$MODE" = device ] && [ -f "$CARRY/SOURCES" ] && [ "$(cat "$CARRY/SOURCES")" != "$(source_hash)" ]; then
    log "the carried binaries were built from other sources than this tree: building here"
    if build_here_for_device "$ROOT/build-dc" >> "$OUT/facts.log" 2>&1 && assemble_carry "$ROOT/build-dc" "$W/built" >> "$OUT/facts.log" 2>&1; then
      BIN=$W/built/bin
      result setup "pass (built here: the carry was stale)"
    else
      result setup "FAIL (stale carry and the build here failed; running the carried binaries, see facts.log)"
    fi
  else
    result setup "pass (carried binaries$([ -f "$CARRY/BUILD_INFO" ] && echo ", $(head -1 "$CARRY/BUILD_INFO" | cut -c1-60)"))"
  fi
elif [ "$MODE" = device ]; then
  log "carried binaries unusable (facts.log): building here"
  if build_here_for_device "$ROOT/build-dc" >> "$OUT/facts.log" 2>&1 && assemble_carry "$ROOT/build-dc" "$W/built" >> "$OUT/facts.log" 2>&1; then
    BIN=$W/built/bin
    result setup "pass (built here)"
  else
    result setup "FAIL (no usable binaries; see facts.log)"
    tail -30 "$OUT/facts.log"
  fi
else
  result setup "FAIL (the carried binaries do not start here; see facts.log)"
fi
have() { [ -x "$BIN/$1" ]; }

# the 8b model for the bench, written once, in the background from the start
M8B=$MODELS/8b-bf16-s1
SYNTH_PID=
if want bench && have tpdecode-synth; then
  if [ "$MODE" = rehearse ]; then
    M8B=$W/tiny-bench
    "$BIN/tpdecode-synth" --preset tiny --seed 1 --out "$M8B" >> "$OUT/bench.log" 2>&1 && touch "$M8B/.complete"
  elif [ ! -f "$M8B/.complete" ]; then
    ( bounded 600 "$BIN/tpdecode-synth" --preset 8b --dtype bf16 --seed 1 --out "$M8B" > "$W/synth8b.log" 2>&1 &&
        touch "$M8B/.complete" ) &
    SYNTH_PID=$!
    log "writing the 8b model to $M8B in the background"
  fi
fi

# ---------------------------------------------------------------- facts --
GPU_NAME='?'
if want facts; then
  {
    echo "== facts"
    date -u
    uname -a
    ldd --version 2>&1 | head -1
    echo "cores: $JOBS"; free -g 2>/dev/null | head -2; df -h /tmp 2>/dev/null | tail -1
    if command -v nvidia-smi >/dev/null 2>&1; then
      nvidia-smi --query-gpu=name,driver_version,memory.total,pstate,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.draw,power.limit,temperature.gpu,persistence_mode,compute_mode,ecc.mode.current --format=csv
      nvidia-smi -q | grep -E 'Driver Version|CUDA Version|Product Name|Product Architecture|MIG Mode|Current  *:|Virtualization|GPU Part Number' | head -20
      nvidia-smi -q -d CLOCK | sed -n '1,60p'
    else
      echo "nvidia-smi: not found"
    fi
    command -v nvcc >/dev/null 2>&1 && nvcc --version | tail -2
    command -v compute-sanitizer >/dev/null 2>&1 && compute-sanitizer --version | head -2
    "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1 | tail -1
    [ -f "$CARRY/BUILD_INFO" ] && { echo "carry:"; cat "$CARRY/BUILD_INFO"; }
  } >> "$OUT/facts.log" 2>&1
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  [ -n "$GPU_NAME" ] || GPU_NAME="no GPU"
  result facts "ok ($GPU_NAME; $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 || echo '-'))"
fi

# --------------------------------------------------------------- sanitize --
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer 2>/dev/null | head -1)
[ -n "$CS" ] || [ "$MODE" = rehearse ] || CS=$(find /usr/local /opt -maxdepth 6 -name compute-sanitizer -type f 2>/dev/null | head -1)
if want sanitize; then
  if [ "$MODE" = rehearse ] || [ -z "$CS" ]; then
    # the same program lines, without the tool: they must start and skip
    for t in test_gpu_graph test_gpu_ops; do
      TPD_TEST_SEED=1 bounded 60 "$BIN/$t" >> "$OUT/sanitizer.log" 2>&1
      rc=$?
      if [ "$MODE" = device ]; then r="missing (compute-sanitizer not found; $t alone: $(rc_word $rc))"
      elif [ "$rc" = 77 ]; then r="ok (starts, skips: no GPU)"
      else r="FAIL (exit $rc, expected 77)"; fi
      result "sanitize $t (no tool)" "$r"
    done
  else
    # A report counts against us unless it is a racecheck hazard whose line
    # names a kernel of cuBLASLt (nvjet_*, cutlass, xmma): those are NVIDIA's
    # own shared-memory schedules, counted and shown but not ours to fix.
    # TPD_TEST_SANITIZER=1: the tests skip their planned device faults (a sync
    # inside a capture, an out-of-bounds gather), which the tests stage runs.
    LIBK='nvjet_|cublas|cutlass|xmma'
    sanitize_job() { # TOOL: graph then ops under the tool
      local tool=$1 t rc res="" one n lib
      for t in test_gpu_graph test_gpu_ops; do
        echo "== $tool: $t"
        one="$W/san_${tool}_$t.out"
        TPD_TEST_SANITIZER=1 TPD_TEST_SEED=1 bounded 170 "$CS" --tool "$tool" --error-exitcode 99 --print-limit 400 "$BIN/$t" > "$one" 2>&1
        rc=$?
        cat "$one"
        n=$(grep -c '^========= .*\(Invalid \|Race reported\|Barrier error\|Error: \|Warning: \|Program hit\)' "$one")
        lib=$(grep '^========= .*Race reported' "$one" | grep -cE "$LIBK")
        case $rc in
          0) res="$res $t pass;" ;;
          99) # --error-exitcode hides the program's own status: its summary line decides
              if [ "$tool" = racecheck ] && [ "$n" -gt 0 ] && [ "$lib" = "$n" ] && grep -q ': all [0-9]* checks passed' "$one"; then
                res="$res $t pass ($n hazard reports, all inside cuBLASLt kernels);"
              else res="$res $t FAIL ($((n - lib)) reports in our code, $lib in cuBLASLt kernels);"; fi ;;
          124 | 137) res="$res $t timeout;" ;;
          125) res="$res $t not run;" ;; *) res="$res $t FAIL (exit $rc);" ;;
        esac
      done
      echo "RESULT$res"
    }
    for tool in memcheck racecheck synccheck; do
      sanitize_job "$tool" > "$W/san_$tool.log" 2>&1 &
      eval "SAN_$tool=$!"
    done
    for tool in memcheck racecheck synccheck; do
      eval "wait \$SAN_$tool"
      { echo "######## $tool"; grep -v '^RESULT' "$W/san_$tool.log"; } >> "$OUT/sanitizer.log"
      r=$(grep '^RESULT' "$W/san_$tool.log" | sed 's/^RESULT //; s/;$//')
      # reports so far (a run cut by its timeout prints no summary)
      n=$(grep -c '^========= .*\(Invalid \|Race reported\|Barrier error\|Error: \|Warning: \|Program hit\)' "$W/san_$tool.log")
      case "$r" in *FAIL*) r="FAIL:$r ($n reports)" ;; *timeout*) r="timeout:$r ($n reports before the cut)" ;;
        "") r="FAIL (no result)" ;; *) r="pass:$r" ;; esac
      result "sanitize $tool" "$r"
    done
  fi
fi

# ------------------------------------------------------------------ tests --
# The test programs check both activation modes (bf16, f32) themselves;
# tpdecode takes --activations where the build has it (the logits stage).
MODES="bf16"
# whether tpdecode takes --activations at all (the CPU reference asks for f32 with it, whatever the modes)
CPU_ACT_F32=0
have tpdecode && "$BIN/tpdecode" --help 2>&1 | grep -q -- '--activations' && CPU_ACT_F32=1
if echo "$ACT_MODES" | grep -qw f32 && [ "$CPU_ACT_F32" = 1 ]; then
  MODES="bf16 f32"
fi
if want tests; then
  for t in $TESTS; do
    if ! have "$t"; then
      [ "$MODE" = rehearse ] && result "test $t" "skip (not in this build)" || result "test $t" "missing (not built)"
      continue
    fi
    echo "######## $t" >> "$OUT/tests.log"
    bounded 200 "$BIN/$t" >> "$OUT/tests.log" 2>&1
    rc=$?
    want_rc=$EXPECT_GPU
    [ "$t" = test_gpu_nodevice ] && want_rc=0
    if [ "$rc" = "$want_rc" ]; then r=$([ "$rc" = 77 ] && echo "ok (skips: no GPU)" || echo pass); else r=$(rc_word $rc); fi
    [ "$MODE" = rehearse ] && [ "$rc" != "$want_rc" ] && r="FAIL (exit $rc, expected $want_rc)"
    n_ok=$(sed -n "/^######## $t\$/,\$p" "$OUT/tests.log" | grep -c '^ok ')
    n_fail=$(sed -n "/^######## $t\$/,\$p" "$OUT/tests.log" | grep -c '^FAIL')
    [ "$rc" = 77 ] || r="$r ($n_ok ok, $n_fail FAIL)"
    result "test $t" "$r"
  done
fi

# --------------------------------------------------------------------- bw --
BW=$BIN/tpd-gpu-bw
READ_GBS=
COPY_GBS=
if want bw; then
  if [ "$MODE" = rehearse ]; then
    bounded 30 "$BW" read >> "$OUT/bw.log" 2>&1; rc=$?
    [ "$rc" = 77 ] && result "bw (carried tpd-gpu-bw)" "ok (skips: no GPU)" || result "bw (carried tpd-gpu-bw)" "FAIL (exit $rc)"
    BW=$EMU_BW
    BW_ARGS=--tiny
  else
    BW_ARGS=4096
  fi
  if [ -x "$BW" ]; then
    bounded 60 "$BW" read $BW_ARGS > "$W/read.txt" 2>&1; rc=$?
    cat "$W/read.txt" >> "$OUT/bw.log"
    READ_GBS=$(awk '/^read_gbs/ {print $2}' "$W/read.txt")
    [ "$rc" = 0 ] && [ -n "$READ_GBS" ] && result "bw read" "pass ($READ_GBS GB/s)" || result "bw read" "$(rc_word $rc)"
    bounded 60 "$BW" copy $BW_ARGS > "$W/copy.txt" 2>&1; rc=$?
    cat "$W/copy.txt" >> "$OUT/bw.log"
    COPY_GBS=$(awk '/^copy_gbs/ {print $2}' "$W/copy.txt")
    [ "$rc" = 0 ] && [ -n "$COPY_GBS" ] && result "bw copy" "pass ($COPY_GBS GB/s, read + write)" || result "bw copy" "$(rc_word $rc)"
  elif [ "$MODE" = rehearse ]; then
    result "bw read" "skip (no $BW: a build without the emulation)"
  else
    result "bw read" "missing (no $BW)"
  fi
fi

# ------------------------------------------------------------------- gemv --
if want gemv && [ -x "$BW" ]; then
  if [ "$MODE" = rehearse ]; then g_args=(--tiny --tp 1,2 --batch 1,9); else g_args=(--tp 1,2,8 --batch 1,8,64); fi
  echo "######## gemv ${g_args[*]}" >> "$OUT/bw.log"
  bounded 150 "$BW" gemv "${g_args[@]}" --read-gbs "${READ_GBS:-0}" > "$W/gemv.csv" 2> "$W/gemv.err"; rc=$?
  cat "$W/gemv.csv" "$W/gemv.err" >> "$OUT/bw.log"
  n=$(grep -c '^gemv,[0-9]' "$W/gemv.csv")
  [ "$rc" = 0 ] && result gemv "pass ($n shapes x batches)" || result gemv "$(rc_word $rc) ($n rows)"
fi

# ----------------------------------------------------------------- logits --
# tpdecode on the GPU (each activation mode) decodes 8 tokens; its last
# logits are those after prompt + the first 7 of them.  The CPU backend and
# transformers (float32 and bfloat16, on the same GPU) compute the logits of
# that same sequence; every pair is compared.
if want logits && have tpdecode && have tpdecode-synth; then
  LM=$W/logits
  mkdir -p "$LM"
  CLI_ACT=0
  [ "$MODES" = "bf16 f32" ] && CLI_ACT=1
  : > "$LM/jobs"
  : > "$LM/cmp"
  lg_ok=1
  for spec in "llama:--preset small --layers 3 --heads 8 --kv-heads 2 --vocab 3001 --rope-llama3 --seed 11" \
              "qwen2:--preset small --arch qwen2 --layers 2 --tie 1 --vocab 2999 --seed 12" \
              "mistral:--preset small --arch mistral --layers 2 --heads 4 --kv-heads 4 --sliding-window 24 --seed 13"; do
    name=${spec%%:*}
    md=$LM/$name
    # shellcheck disable=SC2086 # the spec is a list of words
    if ! bounded 60 "$BIN/tpdecode-synth" --out "$md" ${spec#*:} >> "$OUT/logits.log" 2>&1; then lg_ok=0; continue; fi
    V=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$md/config.json")
    prompt=$(awk -v v="$V" -v s="${#name}" 'BEGIN { srand(s); for (i = 0; i < 40; i++) printf "%s%d", i ? "," : "", 3 + int(rand() * (v - 3)) }')
    for mode in $MODES; do
      act=()
      [ "$mode" = f32 ] && { [ "$CLI_ACT" = 1 ] || continue; act=(--activations f32); }
      [ "$mode" = bf16 ] && [ "$CLI_ACT" = 1 ] && [ "$GPU_BACKEND" = cuda ] && act=(--activations bf16)
      g=$LM/$name.gpu.$mode
      echo "== $name: tpdecode --backend $GPU_BACKEND ${act[*]} -n 8" >> "$OUT/logits.log"
      if ! bounded 60 "$BIN/tpdecode" -m "$md" --prompt-ids "$prompt" -n 8 --ignore-eos --backend "$GPU_BACKEND" ${act[@]+"${act[@]}"} \
          --json --logits-out "$g.bin" > "$g.json" 2>> "$OUT/logits.log"; then
        lg_ok=0; cat "$g.json" >> "$OUT/logits.log"; continue
      fi
      seq=$("$PY" -c 'import json,sys; s=json.load(open(sys.argv[1]))["sequences"][0]; print(",".join(str(x) for x in s["prompt_ids"] + s["output_ids"][:7]))' "$g.json")
      c=$LM/$name.cpu.$mode
      echo "== $name: tpdecode --backend cpu on the same $(echo "$seq" | tr ',' '\n' | wc -l) ids" >> "$OUT/logits.log"
      # the f32 reference: f32 KV and, where tpdecode takes --activations, f32 matmul inputs (the cpu
      # rounds them to bf16 by default on a CPU whose vdpbf16ps outruns its FMA)
      cpu_act=(); [ "$CPU_ACT_F32" = 1 ] && cpu_act=(--activations f32)
      bounded 60 "$BIN/tpdecode" -m "$md" --prompt-ids "$seq" -n 1 --backend cpu --kv-cache f32 ${cpu_act[@]+"${cpu_act[@]}"} \
        --logits-out "$c.bin" >> "$OUT/logits.log" 2>&1 || lg_ok=0
      # pairs: OUT REF TOL LABEL
      tol_gpu=3e-2; [ "$mode" = f32 ] && tol_gpu=2e-3
      echo "$g.bin $c.bin $tol_gpu $name:gpu-$mode~cpu" >> "$LM/cmp"
      if [ "$MODE" = device ]; then
        echo "$md $LM/$name.hf32.$mode.bin float32 $seq" >> "$LM/jobs"
        echo "$md $LM/$name.hf16.$mode.bin bfloat16 $seq" >> "$LM/jobs"
        echo "$g.bin $LM/$name.hf32.$mode.bin $tol_gpu $name:gpu-$mode~hf-f32" >> "$LM/cmp"
        echo "$c.bin $LM/$name.hf32.$mode.bin 1e-3 $name:cpu~hf-f32" >> "$LM/cmp"
        echo "$LM/$name.hf16.$mode.bin $LM/$name.hf32.$mode.bin 1e-1 $name:hf-bf16~hf-f32(scale)" >> "$LM/cmp"
      fi
      echo "$V" > "$LM/$name.vocab"
    done
  done
  if [ "$MODE" = device ]; then
    echo "== transformers" >> "$OUT/logits.log"
    PYTHONUNBUFFERED=1 bounded 150 "$PY" "$HERE/hf_logits.py" logits "$LM/jobs" >> "$OUT/logits.log" 2>&1 || lg_ok=0
  else
    echo "== hf_logits.py: compiles, and its comparison passes its selftest (no torch here)" >> "$OUT/logits.log"
    "$PY" -c 'import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)' "$HERE/hf_logits.py" "$W/hf.pyc" >> "$OUT/logits.log" 2>&1 &&
      "$PY" "$HERE/hf_logits.py" selftest >> "$OUT/logits.log" 2>&1 || lg_ok=0
  fi
  n_cmp=0 n_fail=0
  while read -r o r tol label; do
    n_cmp=$((n_cmp + 1))
    "$PY" "$HERE/hf_logits.py" compare --vocab "$(cat "$LM/${label%%:*}.vocab")" --tol "$tol" --label "$label" "$o" "$r" \
      > "$W/cmp.txt" 2>&1 || n_fail=$((n_fail + 1))
    cat "$W/cmp.txt" | tee -a "$OUT/logits.log" | sed 's/^/   /' >> "$W/logits_table.txt"
  done < "$LM/cmp"
  if [ "$lg_ok" = 1 ] && [ "$n_fail" = 0 ] && [ "$n_cmp" -gt 0 ]; then result logits "pass ($n_cmp comparisons)"
  else result logits "FAIL ($n_fail of $n_cmp comparisons failed$([ "$lg_ok" = 1 ] || echo '; a run failed, see logits.log'))"; fi
fi

# ------------------------------------------------------------------ bench --
if want bench && have tpdecode-bench; then
  if [ -n "$SYNTH_PID" ]; then
    log "waiting for the 8b model"
    wait "$SYNTH_PID"
    cat "$W/synth8b.log" >> "$OUT/bench.log"
  fi
  if [ ! -f "$M8B/.complete" ]; then
    result bench "FAIL (the model was not written; see bench.log)"
  else
    if [ "$MODE" = rehearse ]; then b_args=(--backend cpu --batch 1,2 --steps 2 --warmup 1 --threads 1)
    else b_args=(--backend cuda --batch 1,2,4,8,64 --ctx 64,1024,4096 --hw h200 --membw-mb 256); fi
    echo "######## tpdecode-bench -m $M8B ${b_args[*]} --csv" >> "$OUT/bench.log"
    TPD_LOG=info bounded 240 "$BIN/tpdecode-bench" -m "$M8B" "${b_args[@]}" --csv > "$W/bench.csv" 2> "$W/bench.err"; rc=$?
    cat "$W/bench.csv" "$W/bench.err" >> "$OUT/bench.log"
    n=$(grep -c '^[0-9]' "$W/bench.csv")
    if [ "$rc" = 0 ] && [ "$n" -gt 0 ]; then result bench "pass ($n rows)"
    elif [ "$rc" = 0 ]; then result bench "FAIL (no rows; see bench.log)"
    else result bench "$(rc_word $rc) ($n rows; see bench.log)"; fi
  fi
fi

# ------------------------------------------------------------------ attpp --
# the same model with the attention's other schedule (TPD_ATT_PP=2)
if want attpp && have tpdecode-bench && ! [ -f "$M8B/.complete" ]; then
  result attpp "skip (no bench model: the bench stage writes it)"
elif want attpp && have tpdecode-bench; then
  if [ "$MODE" = rehearse ]; then a_args=(--backend cpu --batch 1 --steps 2 --warmup 1 --threads 1)
  else a_args=(--backend cuda --batch 1,8,64 --ctx 64,4096 --hw h200 --membw-mb 256); fi
  echo "######## TPD_ATT_PP=2 tpdecode-bench -m $M8B ${a_args[*]} --csv" >> "$OUT/bench.log"
  TPD_ATT_PP=2 bounded 120 "$BIN/tpdecode-bench" -m "$M8B" "${a_args[@]}" --csv > "$W/bench_pp2.csv" 2> "$W/bench_pp2.err"; rc=$?
  cat "$W/bench_pp2.csv" "$W/bench_pp2.err" >> "$OUT/bench.log"
  n=$(grep -c '^[0-9]' "$W/bench_pp2.csv")
  if [ "$rc" = 0 ] && [ "$n" -gt 0 ]; then result attpp "pass ($n rows)"
  elif [ "$rc" = 0 ]; then result attpp "FAIL (no rows; see bench.log)"
  else result attpp "$(rc_word $rc) ($n rows; see bench.log)"; fi
fi

# ------------------------------------------------------------------ xover --
if want xover && [ -x "$BW" ]; then
  if [ "$MODE" = rehearse ]; then x_args=(--tiny --tp 2 --batch 2); else x_args=(--tp 1,8 --batch 1,2,3,4,8); fi
  : > "$W/xover.csv"
  for m in 16 0; do
    echo "######## TPD_GEMV_MAX_M=$m gemv ${x_args[*]}" >> "$OUT/bw.log"
    TPD_GEMV_MAX_M=$m bounded 60 "$BW" gemv "${x_args[@]}" --read-gbs "${READ_GBS:-0}" > "$W/x.csv" 2>> "$OUT/bw.log"; rc=$?
    cat "$W/x.csv" >> "$OUT/bw.log"
    sed -n "s/^gemv,\([0-9]\)/$m,\1/p" "$W/x.csv" >> "$W/xover.csv"
    [ "$rc" = 0 ] || result "xover MAX_M=$m" "$(rc_word $rc)"
  done
  [ -s "$W/xover.csv" ] && result xover "done ($(wc -l < "$W/xover.csv") rows)"
fi

# ------------------------------------------------------------------ table --
{
  echo
  echo "== device check ($MODE): $GPU_NAME, $(now) s of ${DEADLINE} s; logs in $OUT"
  printf '%-34s %s\n' stage result
  for s in "${STAGE_NAMES[@]}"; do printf '%-34s %s\n' "$s" "${RESULT[$s]}"; done
  if [ -s "$W/gemv.csv" ]; then
    echo "matmul GB/s (fraction of the read probe, ${READ_GBS:-?} GB/s); copy ${COPY_GBS:-?} GB/s"
    awk -F, '
      /^gemv,[0-9]/ { k = $2 SUBSEP $3; if (!(k in seen)) { seen[k] = 1; order[++n] = k }
                      if (!($4 in bs)) { bs[$4] = 1; bl[++nb] = $4 }
                      cell[k, $4] = sprintf("%7.0f %s", $9, $10 == "" ? "      " : "(" $10 ")") }
      END { if (!n) exit
            printf "  %-3s %-8s", "tp", "op"; for (j = 1; j <= nb; j++) printf " %15s", "batch " bl[j]; printf "\n"
            for (i = 1; i <= n; i++) { split(order[i], a, SUBSEP); printf "  %-3s %-8s", a[1], a[2]
              for (j = 1; j <= nb; j++) printf " %15s", cell[order[i], bl[j]]; printf "\n" } }' "$W/gemv.csv"
  fi
  [ -s "$W/logits_table.txt" ] && { echo "logits (normalised error against the reference on the right):"; cat "$W/logits_table.txt"; }
  for bc in bench bench_pp2; do
    [ -s "$W/$bc.csv" ] || continue
    echo "tpdecode-bench $(basename "$M8B"), TP 1$([ "$bc" = bench_pp2 ] && echo ", TPD_ATT_PP=2"):"
    awk -F, -v rd="${READ_GBS:-0}" '
      NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
      /^[0-9]/ { fr = (rd > 0) ? sprintf("%.2f of read", $c["achieved_gbs"] / rd) : "-"
                 fl = $c["floor_ms_per_token"] == "" ? "no floor" : sprintf("floor %.3f ms (x%.2f)", $c["floor_ms_per_token"], $c["measured_over_floor"])
                 printf "  batch %3s ctx %5s: %8.3f ms/token %8.1f GB/s %-14s %s\n", $c["batch"], $c["ctx"], $c["ms_per_step_median"], $c["achieved_gbs"], fr, fl }' "$W/$bc.csv"
  done
  if [ -s "$W/xover.csv" ]; then
    echo "GEMV (TPD_GEMV_MAX_M=16) vs cuBLASLt (=0), us per call:"
    awk -F, '{ k = $2 " " $3 " M=" $4; if (!(k in s)) { s[k] = 1; o[++n] = k } t[k, $1] = $8 }
      END { for (i = 1; i <= n; i++) printf "  tp%-18s gemv %8.2f  cublaslt %8.2f\n", o[i], t[o[i], 16], t[o[i], 0] }' "$W/xover.csv"
  fi
  if [ "$BAD" = 0 ]; then echo "PASS$([ "$TIMEOUTS" = 0 ] || echo " ($TIMEOUTS stage(s) incomplete: cut by their time limit)")"
  else echo "FAIL: $BAD stage(s) failed$([ "$TIMEOUTS" = 0 ] || echo ", $TIMEOUTS incomplete")"; fi
} | tee -a "$SUMMARY"
rm -rf "$W"
# a rehearsal must also finish every stage (a hang is a defect)
[ "$BAD" = 0 ] && { [ "$MODE" = device ] || [ "$TIMEOUTS" = 0 ]; }
