#!/usr/bin/env bash
# Slurm: one task per GPU across the allocation (TP over all of them).
#   sbatch -N 1 --ntasks-per-node=8 --gpus-per-node=8 launch/srun-example.sh MODEL_DIR
# tpdecode reads its rank from the PMI environment srun provides; the build
# must use an MPI with Slurm/PMIx support.
set -euo pipefail
MODEL=$1
shift
exec srun --mpi=pmix --cpu-bind=none \
  "$(dirname "$0")/../build/tpdecode" -m "$MODEL" --backend cuda --prompt-ids 1,2,3,4 -n 64 "$@"
