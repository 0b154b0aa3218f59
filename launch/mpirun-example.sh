#!/usr/bin/env bash
# One process per GPU (or per CPU socket) on one node, tensor-parallel degree N.
#   launch/mpirun-example.sh MODEL_DIR N [tpdecode options...]
# Each rank loads only its shard; ranks on a node split the cores between them
# (override with --threads).  Add --backend cuda on GPU nodes: the GPU of a
# rank is its node-local rank.
set -euo pipefail
MODEL=$1
N=$2
shift 2
exec mpirun -np "$N" --bind-to none --map-by slot \
  "$(dirname "$0")/../build/tpdecode" -m "$MODEL" --prompt-ids 1,2,3,4 -n 64 "$@"
