#!/bin/sh
# Reads the ptxas resource reports the CUDA build keeps (<object>.ptxas.log,
# written by ptxas_log.sh from `-Xptxas -v`) and fails if any kernel has a
# stack frame or spills registers: the hot kernels must keep their arrays in
# registers (compile-time indices only) and fit without spilling.
#   usage: check_ptxas.sh BUILD_DIR
# Prints one line per kernel and target: registers, stack, spill bytes.
set -u
dir=${1:?usage: check_ptxas.sh BUILD_DIR}
logs=$(find "$dir" -name '*.ptxas.log' -path '*tpd_cuda.dir*' 2>/dev/null | sort)
if [ -z "$logs" ]; then
  echo "check_ptxas: no ptxas reports under $dir (is the CUDA backend built?)" >&2
  exit 1
fi
demangle="cat"
if command -v c++filt >/dev/null 2>&1; then demangle=c++filt; fi
# Kernels that run once at load time may be excused here (none are).
excused='^$'
# shellcheck disable=SC2086
awk -v excused="$excused" '
  /Compiling entry function/ {
    name = $0; sub(/.*entry function .\047?/, "", name); sub(/\047 for .*/, "", name)
    arch = $0; sub(/.* for \047/, "", arch); sub(/\047.*/, "", arch)
    next
  }
  /bytes stack frame/ {
    stack = $1; spill_st = $5; spill_ld = $9
    next
  }
  /Used [0-9]+ registers/ {
    regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
    if (name == "") next
    bad = (stack + 0 != 0 || spill_st + 0 != 0 || spill_ld + 0 != 0) && name !~ excused
    printf "%s %s regs=%s stack=%s spill_st=%s spill_ld=%s %s\n", (bad ? "FAIL" : "ok  "), arch, regs, stack, spill_st, spill_ld, name
    if (bad) n_bad++
    n++
    name = ""
  }
  END {
    printf "check_ptxas: %d kernel report(s), %d with a stack frame or spills\n", n, n_bad
    exit (n_bad > 0 || n == 0) ? 1 : 0
  }
' $logs > "$dir/ptxas_report.txt"
rc=$?
$demangle < "$dir/ptxas_report.txt"
exit $rc
