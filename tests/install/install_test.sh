#!/usr/bin/env bash
# install.pkgconfig: what a program built on libtpdecode gets from an installed
# tree, with nothing of the source or build tree on its paths.
#
#   install_test.sh CMAKE BUILD_DIR CC PKG_CONFIG READELF LIBDIR DOCDIR VERSION [MPIEXEC]
#
#  1. cmake --install BUILD_DIR --prefix into a fresh folder: libraries (the
#     .so with SONAME libtpdecode.so.MAJOR), headers, programs, tpdecode.pc
#  2. pkg-config (PKG_CONFIG_PATH = that tree only) reports VERSION and flags
#     into that tree
#  3. the installed launch/examples/embed.c, compiled as a user would (-Werror),
#     once with --cflags --libs (needs libtpdecode.so.MAJOR) and once with
#     --static --libs and -ltpdecode taken as the archive (no libtpdecode.so
#     needed)
#  4. both print tpd_version() = VERSION and, on a random tiny synthetic model
#     and random prompt ids, the same greedy tokens as the installed tpdecode
#     CLI; with MPIEXEC also at TP 2
# Every step must succeed; the first failure is named and ends the test.
set -u -o pipefail
[ $# -ge 8 ] || { echo "usage: install_test.sh CMAKE BUILD_DIR CC PKG_CONFIG READELF LIBDIR DOCDIR VERSION [MPIEXEC]"; exit 2; }
CMAKE=$1 BLD=$2 CC=$3 PKGCONF=$4 READELF=$5 LIBDIR=$6 DOCDIR=$7 VERSION=$8 MPIEXEC=${9:-}
W=$(mktemp -d /tmp/tpd-install-XXXXXX) || exit 1
trap 'rm -rf "$W"' EXIT
P=$W/prefix
fail() { echo "FAIL $*"; exit 1; }
ok() { echo "ok   $*"; }
# run LOG CMD...: CMD's output to LOG; on failure, names CMD and shows the log's end
run() {
  local log=$1
  shift
  "$@" > "$log" 2>&1 || { echo "FAIL $*:"; tail -n 30 "$log" | sed 's/^/    /'; exit 1; }
}
needed() { "$READELF" -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p'; }

# ---- 1. install ----
run "$W/install.log" "$CMAKE" --install "$BLD" --prefix "$P"
for f in bin/tpdecode bin/tpdecode-bench bin/tpdecode-synth "$LIBDIR/libtpdecode.a" "$LIBDIR/libtpdecode.so" \
  "$LIBDIR/pkgconfig/tpdecode.pc" include/tpdecode/tpdecode.h include/tpdecode/tpdecode_sched.h \
  "$DOCDIR/examples/embed.c" "$DOCDIR/examples/serve.c"; do
  [ -e "$P/$f" ] || fail "cmake --install did not install $f"
done
major=${VERSION%%.*}
soname=$("$READELF" -d "$P/$LIBDIR/libtpdecode.so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = "libtpdecode.so.$major" ] || fail "libtpdecode.so has SONAME '$soname', expected libtpdecode.so.$major"
[ -e "$P/$LIBDIR/$soname" ] || fail "$LIBDIR/$soname (the SONAME) is not installed"
ok "cmake --install $BLD --prefix $P: $(cd "$P" && find . ! -type d | sed 's|^\./||' | sort | tr '\n' ' ')"

# ---- 2. pkg-config ----
export PKG_CONFIG_PATH="$P/$LIBDIR/pkgconfig"
pc() { "$PKGCONF" "$@" tpdecode; }
v=$(pc --modversion) || fail "$PKGCONF --modversion tpdecode with PKG_CONFIG_PATH=$PKG_CONFIG_PATH"
[ "$v" = "$VERSION" ] || fail "pkg-config --modversion tpdecode: '$v', expected $VERSION"
cflags=$(pc --cflags) || fail "$PKGCONF --cflags tpdecode"
libs=$(pc --libs) || fail "$PKGCONF --libs tpdecode"
slibs=$(pc --static --libs) || fail "$PKGCONF --static --libs tpdecode"
echo "pkg-config --cflags: $cflags"
echo "pkg-config --libs: $libs"
echo "pkg-config --static --libs: $slibs"
case "$cflags" in *"$P/"*) ;; *) fail "pkg-config --cflags does not point into $P: $cflags" ;; esac
case "$libs" in *"$P/"*) ;; *) fail "pkg-config --libs does not point into $P: $libs" ;; esac
# a static link: -ltpdecode as the archive (the linker would take the .so)
static_libs="" had=0
for w in $slibs; do
  if [ "$w" = -ltpdecode ]; then
    w=-l:libtpdecode.a
    had=1
  fi
  static_libs="$static_libs $w"
done
[ $had -eq 1 ] || fail "pkg-config --static --libs has no -ltpdecode: $slibs"

# ---- 3. the example, compiled as a user would ----
mkdir "$W/src" && cp "$P/$DOCDIR/examples/embed.c" "$P/$DOCDIR/examples/serve.c" "$W/src/" ||
  fail "copying the installed examples"
cd "$W/src" || exit 1
run "$W/cc-shared.log" "$CC" -std=c11 -Wall -Wextra -Werror -pedantic embed.c $cflags $libs -o "$W/embed-shared"
run "$W/cc-static.log" "$CC" -std=c11 -Wall -Wextra -Werror -pedantic embed.c $cflags $static_libs -o "$W/embed-static"
# the serving example: leader/follower engine and the scheduler (tpdecode_sched.h)
run "$W/cc-serve.log" "$CC" -std=c11 -Wall -Wextra -Werror -pedantic serve.c $cflags $libs -o "$W/serve"
needed "$W/embed-shared" | grep -qx "libtpdecode.so.$major" ||
  fail "embed (shared) does not need libtpdecode.so.$major: $(needed "$W/embed-shared" | tr '\n' ' ')"
if needed "$W/embed-static" | grep -q libtpdecode; then
  fail "embed (--static) still needs libtpdecode.so: $(needed "$W/embed-static" | tr '\n' ' ')"
fi
where=$(LD_LIBRARY_PATH="$P/$LIBDIR" ldd "$W/embed-shared" | sed -n 's/.*libtpdecode\.so[^ ]* => \([^ ]*\).*/\1/p')
[ "$where" = "$P/$LIBDIR/$soname" ] || fail "embed (shared) loads libtpdecode from '$where', not $P/$LIBDIR/$soname"
ok "embed.c built against the installed tree: shared (loads $where) and static (needs $(needed "$W/embed-static" | tr '\n' ' '))"

# ---- 4. same tokens as the CLI ----
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
run "$W/synth.log" "$P/bin/tpdecode-synth" --out "$W/model" --preset tiny --dtype f32 --seed "$seed"
vocab=$(sed -n 's/.*"vocab_size":[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$W/model/config.json")
[ -n "$vocab" ] && [ "$vocab" -gt 1 ] || fail "no vocab_size in $W/model/config.json"
ids=""
for _ in 1 2 3 4 5; do ids="$ids $(($(od -An -N4 -tu4 /dev/urandom | tr -d ' ') % vocab))"; done
ids=${ids# }
N=12
echo "model: tpdecode-synth --preset tiny --dtype f32 --seed $seed; prompt ids: $ids; $N greedy tokens"

tokens() { sed -n "s/^$1//p" "$2" | tr -s ' ' | sed 's/^ //; s/ $//'; }
check_tp() {  # TP LAUNCHER...
  local tp=$1 t_cli t_sh t_st n
  shift
  run "$W/cli$tp.log" "$@" "$P/bin/tpdecode" -m "$W/model" --prompt-ids "${ids// /,}" -n $N --ignore-eos
  run "$W/shared$tp.log" env LD_LIBRARY_PATH="$P/$LIBDIR" "$@" "$W/embed-shared" "$W/model" $N $ids
  run "$W/static$tp.log" "$@" "$W/embed-static" "$W/model" $N $ids
  run "$W/serve$tp.log" env LD_LIBRARY_PATH="$P/$LIBDIR" "$@" "$W/serve" "$W/model" $N $ids
  t_cli=$(tokens 'seq 0:' "$W/cli$tp.log")
  t_sh=$(tokens 'tokens:' "$W/shared$tp.log")
  t_st=$(tokens 'tokens:' "$W/static$tp.log")
  n=$(printf '%s\n' "$t_cli" | wc -w)
  [ "$n" -eq $N ] || fail "TP $tp: tpdecode printed $n tokens, expected $N: $(cat "$W/cli$tp.log")"
  [ "$t_sh" = "$t_cli" ] || fail "TP $tp: embed (shared) tokens '$t_sh' differ from tpdecode's '$t_cli'"
  [ "$t_st" = "$t_cli" ] || fail "TP $tp: embed (static) tokens '$t_st' differ from tpdecode's '$t_cli'"
  for k in shared static; do
    v=$(tokens 'tpd_version:' "$W/$k$tp.log")
    [ "$v" = "$VERSION" ] || fail "TP $tp: embed ($k) printed tpd_version '$v', expected $VERSION"
  done
  t_sv=$(tokens 'request 0 (5 prompt ids): tokens:' "$W/serve$tp.log" | sed 's/ *\[.*//')
  [ "$t_sv" = "$t_cli" ] || fail "TP $tp: serve (scheduler, leader mode) request 0 tokens '$t_sv' differ from tpdecode's '$t_cli': $(cat "$W/serve$tp.log")"
  for r in 1 2; do
    n=$(tokens "request $r ($((5 - r)) prompt ids): tokens:" "$W/serve$tp.log" | sed 's/ *\[.*//' | wc -w)
    [ "$n" -eq $N ] || fail "TP $tp: serve request $r printed $n tokens, expected $N: $(cat "$W/serve$tp.log")"
  done
  ok "TP $tp: tpdecode, embed (shared), embed (static) and serve's request 0 all give: $t_cli"
}
check_tp 1
if [ -n "$MPIEXEC" ]; then
  check_tp 2 "$MPIEXEC" -np 2
else
  echo "note: no MPI in this build (or no mpirun): TP 2 not checked"
fi
v=$("$P/bin/tpdecode" --version) || fail "installed tpdecode --version"
case "$v" in "tpdecode $VERSION "*) ;; *) fail "installed tpdecode --version says '$v', expected 'tpdecode $VERSION ...'" ;; esac
ok "tpdecode --version: $v"
