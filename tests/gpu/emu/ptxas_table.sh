#!/bin/sh
# Writes the table of per-kernel resources the CPU emulation's occupancy
# calls read (tests/gpu/emu, TPD_EMU_PTXAS_TABLE): one line per kernel of
# the CUDA build, "mangled-name registers static-shared-bytes", taken from
# the ptxas reports of BUILD_DIR (<object>.ptxas.log, kernels/cuda/ptxas_log.sh)
# for one SASS target.
#   usage: ptxas_table.sh BUILD_DIR ARCH OUT     e.g. ptxas_table.sh build sm_90a t.txt
# The checked-in tests/gpu/emu/ptxas_sm90a.txt is this output for sm_90a;
# the test gpu.emu.ptxas_table says when it is out of date.
set -u
dir=${1:?usage: ptxas_table.sh BUILD_DIR ARCH OUT}
arch=${2:?usage: ptxas_table.sh BUILD_DIR ARCH OUT}
out=${3:?usage: ptxas_table.sh BUILD_DIR ARCH OUT}
logs=$(find "$dir" -name '*.ptxas.log' -path '*tpd_cuda.dir*' 2>/dev/null | sort)
if [ -z "$logs" ]; then
  echo "ptxas_table: no ptxas reports under $dir (is the CUDA backend built?)" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")" || exit 1
tmp="$out.tmp"
{
  echo "# kernel registers static-shared-bytes: ptxas -v for $arch (tests/gpu/emu/ptxas_table.sh)"
  # shellcheck disable=SC2086
  awk -v want="$arch" '
    /Compiling entry function/ {
      name = $0; sub(/.*entry function .\047?/, "", name); sub(/\047 for .*/, "", name)
      arch = $0; sub(/.* for \047/, "", arch); sub(/\047.*/, "", arch)
      next
    }
    /Used [0-9]+ registers/ {
      if (name == "" || arch != want) next
      regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
      smem = 0
      if ($0 ~ /[0-9]+ bytes smem/) { smem = $0; sub(/ bytes smem.*/, "", smem); sub(/.* /, "", smem) }
      print name, regs, smem
      name = ""
    }
  ' $logs | LC_ALL=C sort -u
} > "$tmp" || exit 1
if [ "$(grep -vc '^#' "$tmp")" = 0 ]; then
  echo "ptxas_table: no kernel compiled for $arch under $dir" >&2
  rm -f "$tmp"
  exit 1
fi
mv "$tmp" "$out"
