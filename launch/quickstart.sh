#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine: install what the build needs, build,
# write a small random model (with its tokenizer) and generate from it with
# 2 MPI ranks (TP=2): two text prompts in, each one's generated text out
# (a random model's text: pieces of words).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
if ! command -v mpirun >/dev/null || ! [ -f /usr/include/cjson/cJSON.h ] || ! [ -f /usr/include/pcre2.h ] || ! command -v cmake >/dev/null \
  || ! [ -f /usr/include/microhttpd.h ] || ! command -v curl >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    build-essential cmake openmpi-bin libopenmpi-dev libcjson-dev libpcre2-dev libmicrohttpd-dev curl
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
MODEL=${TPD_MODEL_DIR:-/tmp/tpdecode-small}
build/tpdecode-synth --out "$MODEL" --preset small --dtype bf16 --seed 1
MPIFLAGS=(-np 2)
if [ "$(id -u)" -eq 0 ]; then MPIFLAGS+=(--allow-run-as-root); fi
if [ "$(nproc)" -lt 2 ]; then MPIFLAGS+=(--oversubscribe); fi
echo "+ mpirun ${MPIFLAGS[*]} build/tpdecode -m $MODEL --prompt 'The river runs past the old mill' --prompt 'Once upon a time' -n 32 --ignore-eos"
mpirun "${MPIFLAGS[@]}" build/tpdecode -m "$MODEL" --prompt 'The river runs past the old mill' --prompt 'Once upon a time' -n 32 --ignore-eos
