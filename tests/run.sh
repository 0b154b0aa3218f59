#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run runs exactly this, the README's
# test command):
#   1. the Release build and its ctest suite (unit, MPI, emulator, bench,
#      tokenizer, server, reliability, two-host, install, docs);
#   2. the CPU suite again under AddressSanitizer + UndefinedBehaviorSanitizer
#      (tests/sanitize/run.sh; docs/reliability.md says which tests it runs);
#   3. every libFuzzer target for FUZZ_SECONDS (default 60) each
#      (tests/fuzz/run.sh; needs clang).
# Stages 2 and 3 can be left out with TPD_TESTS=ctest (e.g. while iterating);
# CI runs all three.  Each stage prints its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
stages=${TPD_TESTS:-ctest,sanitize,fuzz}
t_all=$SECONDS
stage() { # name command...
  local name=$1 t=$SECONDS
  shift
  echo "== tests/run.sh: $name =="
  "$@"
  echo "== tests/run.sh: $name passed in $((SECONDS - t)) s =="
}
case ",$stages," in *,ctest,*)
  stage build bash -c 'cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2'
  stage ctest ctest --test-dir build --output-on-failure -j2 ;;
esac
case ",$stages," in *,sanitize,*) stage sanitize bash tests/sanitize/run.sh ;; esac
case ",$stages," in *,fuzz,*) stage fuzz bash tests/fuzz/run.sh "${FUZZ_SECONDS:-60}" ;; esac
echo "== tests/run.sh: all stages ($stages) passed in $((SECONDS - t_all)) s =="
