#!/bin/sh
# Compiler launcher for the CUDA sources (CUDA_COMPILER_LAUNCHER): runs the
# nvcc command it is given and keeps nvcc's stderr, where `-Xptxas -v`
# writes its resource report, in <object>.ptxas.log next to the object file.
# On success only lines that are not ptxas info are shown; on failure all.
out=
prev=
for a in "$@"; do
  if [ "$prev" = "-o" ]; then out=$a; fi
  prev=$a
done
if [ -z "$out" ]; then exec "$@"; fi
log="$out.ptxas.log"
"$@" 2>"$log"
rc=$?
if [ $rc -ne 0 ]; then
  cat "$log" >&2
else
  grep -v -e '^ptxas info' -e '^    [0-9]* bytes stack frame' "$log" >&2 || true
fi
exit $rc
