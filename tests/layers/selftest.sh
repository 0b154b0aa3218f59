#!/usr/bin/env bash
# check_layers.sh on small made-up trees: a clean one passes; each kind of
# violation fails and is printed as FILE:LINE -> TARGET.
set -u
CHECK=$(cd "$(dirname "$0")" && pwd)/check_layers.sh
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }

# mk TREE FILE [INCLUDE...]: FILE in TREE including each INCLUDE
mk() {
  local t=$1 f=$2; shift 2
  mkdir -p "$W/$t/$(dirname "$f")"
  { echo "/* $f */"; for i in "$@"; do echo "#include \"$i\""; done; } > "$W/$t/$f"
}
base() {
  local t=$1
  mk "$t" runtime/base/error.h
  mk "$t" runtime/base/dtype.h runtime/base/error.h
  mk "$t" runtime/model/config.h runtime/base/dtype.h
  mk "$t" runtime/engine/tpdecode.h runtime/model/config.h comm/comm.h
  mk "$t" runtime/engine/engine.c runtime/engine/tpdecode.h kernels/backend.h kernels/cpu/cpu_isa.h
  mk "$t" kernels/backend.h runtime/base/dtype.h
  mk "$t" kernels/cpu/cpu_isa.h
  mk "$t" kernels/cpu/ops.c kernels/backend.h kernels/cpu/cpu_isa.h "../../runtime/base/error.h"
  mk "$t" comm/comm.h runtime/base/error.h
  mk "$t" launch/tools/synth.h runtime/model/config.h
  mk "$t" launch/tools/membw.c kernels/cpu/cpu_isa.h
  mk "$t" launch/tpdecode.c runtime/engine/tpdecode.h launch/tools/synth.h stdio.h
  mkdir -p "$W/$t/tests" && echo '#include "launch/tpdecode.c"' > "$W/$t/tests/t.c"   # tests/ is not checked
}
# expect TREE RC PHRASE...: check_layers.sh on TREE exits RC and prints every PHRASE
expect() {
  local t=$1 rc=$2; shift 2
  local out got
  out=$(TPD_LAYERS_KNOWN=$KNOWN bash "$CHECK" "$W/$t" 2>&1); got=$?
  [ "$got" -eq "$rc" ] || { bad "$t: exit $got, expected $rc:"; echo "$out"; return; }
  for p in "$@"; do
    printf '%s\n' "$out" | grep -qF -- "$p" || { bad "$t: output lacks '$p':"; echo "$out"; return; }
  done
  ok "$t: exit $rc${1:+, says '$1'}"
}

# the exception list the made-up trees are checked with
KNOWN='
runtime/engine/engine.c -> kernels/cpu/cpu_isa.h  # a made-up exception
'
base clean
expect clean 0 "ok   layers:" "known: runtime/engine/engine.c:4 -> kernels/cpu/cpu_isa.h"

base up && mk up kernels/cpu/membw.c kernels/cpu/cpu_isa.h runtime/generate.h && mk up runtime/generate.h runtime/engine/tpdecode.h
expect up 1 "FAIL layers: kernels/cpu/membw.c:3 -> runtime/generate.h  (kernels includes engine, a higher layer)"

base relative && mk relative comm/comm_x.c comm/comm.h "../launch/tools/synth.h"
expect relative 1 "FAIL layers: comm/comm_x.c:3 -> launch/tools/synth.h  (comm includes tools, a higher layer)"

base model_up && mk model_up runtime/model/shard.h runtime/model/config.h runtime/engine/tpdecode.h
expect model_up 1 "FAIL layers: runtime/model/shard.h:3 -> runtime/engine/tpdecode.h  (model includes engine, a higher layer)"

base tools_up && mk tools_up launch/tools/sol.h runtime/model/config.h launch/cli.h && mk tools_up launch/cli.h comm/comm.h
expect tools_up 1 "FAIL layers: launch/tools/sol.h:3 -> launch/cli.h  (tools includes programs, a higher layer)"

base internals && mk internals runtime/engine/kvcache.c runtime/engine/tpdecode.h kernels/cuda/cuda_util.h && mk internals kernels/cuda/cuda_util.h
expect internals 1 "FAIL layers: runtime/engine/kvcache.c:3 -> kernels/cuda/cuda_util.h  (engine reaches past the kernels interface"

base circle && mk circle comm/comm_nccl.c comm/comm.h kernels/cuda/check.h && mk circle kernels/cuda/check.h comm/comm.h
expect circle 1 "include circle between folders" "comm/comm_nccl.c:3 -> kernels/cuda/check.h" "kernels/cuda/check.h:2 -> comm/comm.h"

base stale && mk stale runtime/engine/engine.c runtime/engine/tpdecode.h kernels/backend.h
expect stale 1 "known exception \"runtime/engine/engine.c -> kernels/cpu/cpu_isa.h\" no longer occurs"

base unlisted && mk unlisted runtime/engine/kvcache.c kernels/cpu/cpu_isa.h
expect unlisted 1 "FAIL layers: runtime/engine/kvcache.c:2 -> kernels/cpu/cpu_isa.h  (engine reaches past the kernels interface"

base nolayer && mk nolayer serve/server.c
expect nolayer 1 "FAIL layers: serve/server.c: in no layer"

[ "$fails" -eq 0 ] || { echo "FAIL $fails case(s)"; exit 1; }
echo "ok   check_layers.sh: a clean tree passes, each kind of violation fails"
