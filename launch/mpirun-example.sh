#!/usr/bin/env bash
# One process per GPU (or per CPU socket) on one node, tensor-parallel degree N.
#   launch/mpirun-example.sh MODEL_DIR N [tpdecode options...]
# Each rank loads only its shard; ranks on a node split the cores between them
# (override with --threads).  Add --backend cuda on GPU nodes: the GPU of a
# rank is its node-local rank.  Without --prompt or --prompt-ids a built-in
# prompt is used, without -n 64 tokens; yours replace them.
# Environment: TPD_BUILD_DIR (default: build/ next to launch/), MPIRUN (default mpirun).
set -euo pipefail
usage="usage: $0 MODEL_DIR N [tpdecode options...]   (N: ranks, the tensor-parallel degree)"
if [ $# -lt 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  echo "$usage" >&2
  exit 2
fi
MODEL=$1
N=$2
shift 2
case $N in
  '' | *[!0-9]* | 0*) echo "$0: error: N '$N' must be a positive integer; $usage" >&2; exit 2 ;;
esac
TPDECODE=${TPD_BUILD_DIR:-$(dirname "$0")/../build}/tpdecode
DEFAULTS=()
has() { local o; for o in "${@:2}"; do [ "$o" = "$1" ] && return 0; done; return 1; }
has --prompt-ids "$@" || has --prompt "$@" || DEFAULTS+=(--prompt-ids 1,2,3,4)
has -n "$@" || DEFAULTS+=(-n 64)
exec "${MPIRUN:-mpirun}" -np "$N" --bind-to none --map-by slot \
  "$TPDECODE" -m "$MODEL" ${DEFAULTS[@]+"${DEFAULTS[@]}"} "$@"
