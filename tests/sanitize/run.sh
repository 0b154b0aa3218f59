#!/usr/bin/env bash
# The CPU suite under AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer):
# configures BUILD_DIR (default build-asan) with -DTPD_SANITIZE=address,undefined,
# builds it and runs the tests below with every report fatal.  Exit status 0 only when
# every test passed and no sanitizer wrote a report.  docs/reliability.md, "Sanitizers",
# says which tests are left out and why.
#
#   tests/sanitize/run.sh [BUILD_DIR]
#
# Needs what the plain build needs (gcc with libasan and libubsan: Debian's gcc has both).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
B=${1:-build-asan}
S=$ROOT/tests/sanitize
T0=$(date +%s)

# Left out, each for a reason (docs/reliability.md, "Sanitizers"):
#   unit.alloc, unit.alloc.np2   the program replaces malloc for the whole process
#                                (tests/unit/alloc_count.c), which cannot coexist with
#                                AddressSanitizer's allocator
#   install.pkgconfig            links the installed libtpdecode.a into a program built
#                                without the sanitizers, which cannot resolve their symbols
#   docs.quickstart              builds a second, plain tree from scratch (minutes)
#   docs.commands                re-runs the documentation's commands (minutes; covered by
#                                the same programs' tests here)
#   gpu.emu.policy, gpu.emu.ops, gpu.emu.nccl_tp2
#                                the three slowest emulator tests (50-90 s each on a quiet
#                                machine): over the 8-minute budget; the emulator's programs
#                                are built with ASan + UBSan in the plain suite too
#                                (TPD_EMU_SANITIZE), which runs these every time
#   server.tp2                   its mpirun-signal cases need a 1500-token request to finish
#                                within 8 s of SIGTERM, about 10x what the ASan build decodes;
#                                the rest of it passes here with no report (server.tp1,
#                                reliability.server and bench.serve_* cover the server)
#   loadio.*                     the page-cache test reads a 370 MB model seven times;
#                                it checks bytes, not memory safety, and its loader
#                                code runs here in every engine test
EXCLUDE='^(unit\.alloc|unit\.alloc\.np2|install\.pkgconfig|docs\.quickstart|docs\.commands|gpu\.emu\.policy|gpu\.emu\.ops|gpu\.emu\.nccl_tp2|server\.tp2|loadio\..*)$'

LOGS=$ROOT/$B/sanitize-logs
# Every report is fatal.  ASan's and LSan's go to files under $LOGS (log_path), so a
# test that expects its program to fail, or drops its stderr, cannot hide one; UBSan's
# (which ignore log_path when linked with ASan) abort the program and are looked for in
# ctest's log below.  fast_unwind_on_malloc=0: full allocation stacks, without which a
# leak inside an Open MPI plugin (unloaded at MPI_Finalize) has no frame to match a
# suppression.
ASAN_BASE="detect_leaks=1:abort_on_error=1:halt_on_error=1:fast_unwind_on_malloc=0"
ASAN_BASE+=":detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1"
ASAN_BASE+=":log_path=$LOGS/asan"
export ASAN_OPTIONS=$ASAN_BASE
export LSAN_OPTIONS="suppressions=$S/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:suppressions=$S/ubsan.supp"

cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DTPD_WITH_CUDA=OFF -DTPD_SANITIZE=address,undefined >/dev/null
cmake --build "$B" -j2 >"$ROOT/$B/sanitize-build.log" 2>&1 || { tail -40 "$ROOT/$B/sanitize-build.log"; exit 1; }
T1=$(date +%s)
echo "sanitize: configure + build $((T1 - T0)) s"

rm -rf "$LOGS"
mkdir -p "$LOGS"
status=0
ctest --test-dir "$B" --output-on-failure -j2 -E "$EXCLUDE" || status=1
T2=$(date +%s)

# the emulator's own tests set ASAN_OPTIONS themselves (their leaks off); what they
# print stays in ctest's log: look there too, leaving out the one test that wants a report
reports=$(grep -l -E "ERROR: |SUMMARY: " "$LOGS"/* 2>/dev/null | sort || true)
inlog=$(awk '/^[0-9]+\/[0-9]+ Test: /{t=$3} /ERROR: (Address|Leak)Sanitizer|runtime error: /{if (t != "gpu.emu.faults.overrun") print t": "$0}' \
  "$B/Testing/Temporary/LastTest.log" | sort -u)
if [ -n "$reports" ] || [ -n "$inlog" ]; then
  status=1
  for f in $reports; do
    echo "==== sanitizer report $f"
    head -60 "$f"
  done
  [ -n "$inlog" ] && printf 'sanitizer reports in the test log:\n%s\n' "$inlog"
else
  echo "sanitize: no sanitizer reports"
fi
echo "sanitize: tests $((T2 - T1)) s, total $((T2 - T0)) s"
exit $status
