#!/usr/bin/env bash
# Slurm: one task per GPU across the allocation (TP over all of them).
#   sbatch -N 1 --ntasks-per-node=8 --gpus-per-node=8 launch/srun-example.sh MODEL_DIR [tpdecode options...]
# tpdecode reads its rank from the PMI environment srun provides; the build
# must use an MPI with Slurm/PMIx support.  Without --prompt or --prompt-ids a
# built-in prompt is used, without -n 64 tokens, without --backend cuda; yours replace them.
# Environment: TPD_BUILD_DIR (default: build/ next to launch/), SRUN (default srun).
set -euo pipefail
usage="usage: $0 MODEL_DIR [tpdecode options...]   (under sbatch: one task per GPU)"
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  echo "$usage" >&2
  exit 2
fi
MODEL=$1
shift
TPDECODE=${TPD_BUILD_DIR:-$(dirname "$0")/../build}/tpdecode
DEFAULTS=()
has() { local o; for o in "${@:2}"; do [ "$o" = "$1" ] && return 0; done; return 1; }
has --backend "$@" || DEFAULTS+=(--backend cuda)
has --prompt-ids "$@" || has --prompt "$@" || DEFAULTS+=(--prompt-ids 1,2,3,4)
has -n "$@" || DEFAULTS+=(-n 64)
exec "${SRUN:-srun}" --mpi=pmix --cpu-bind=none \
  "$TPDECODE" -m "$MODEL" ${DEFAULTS[@]+"${DEFAULTS[@]}"} "$@"
