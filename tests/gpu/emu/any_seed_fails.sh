#!/bin/sh
# Proves the CPU emulation catches a fault the command contains (e.g. a
# cudaStreamWaitEvent dropped with TPD_EMU_DROP_WAIT): runs the command once
# per scheduler seed (TPD_EMU_SEED) and passes as soon as one run fails with
# output matching REGEX (a failed check, or an emulator error); fails when
# every seed passed.  Exit 77 (skip) when the command skips.
#   usage: any_seed_fails.sh "SEEDS" REGEX COMMAND [ARGS...]
set -u
seeds=${1:?usage: any_seed_fails.sh SEEDS REGEX COMMAND...}
regex=${2:?usage: any_seed_fails.sh SEEDS REGEX COMMAND...}
shift 2
log=$(mktemp "${TMPDIR:-/tmp}/tpd-emu-seed-XXXXXX") || exit 1
trap 'rm -f "$log"' EXIT
for s in $seeds; do
  TPD_EMU_SEED=$s "$@" >"$log" 2>&1
  rc=$?
  if [ "$rc" = 77 ]; then
    cat "$log"
    exit 77
  fi
  if [ "$rc" != 0 ] && grep -Eq "$regex" "$log"; then
    grep -E "$regex|TPD_EMU_DROP_WAIT|scheduler seed" "$log" | head -n 20
    echo "ok   seed $s: the run failed (exit $rc), as it must"
    exit 0
  fi
  if [ "$rc" != 0 ]; then
    tail -n 30 "$log"
    echo "FAIL seed $s: the run failed (exit $rc) but its output does not match: $regex"
    exit 1
  fi
  echo "     seed $s: the run passed"
done
echo "FAIL: the run passed for every seed of: $seeds"
exit 1
