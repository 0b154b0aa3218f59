#!/usr/bin/env bash
# Runs every command that README.md and docs/*.md show, as written, from a
# checkout whose build/ is the build under test.
#
#   doc_commands.sh SOURCE_DIR BUILD_DIR
#
# What is run: every fenced ```sh block, in order, one bash process per file
# (so an `export` a page shows carries to the commands after it), with
# `set -e`: the first failing command fails the test and is named.
# A block right after the line `<!-- doc-test: not run: REASON -->` is not run
# (REASON says why: it needs a GPU, writes 16 GB, or is this test's own
# command); its programs must still exist and every long option it uses must
# appear in that program's --help, so a renamed flag is caught.
# The working directory is a scratch folder that links to the source tree's
# files and has build -> BUILD_DIR, so `build/tpdecode`, `launch/...` and
# relative output folders resolve as they do for a user at the repo root.
set -u
SRC=$(cd "$1" && pwd)
BLD=$(cd "$2" && pwd)
W=$(mktemp -d /tmp/tpd-docs-XXXXXX)
trap 'rm -rf "$W"' EXIT
for f in "$SRC"/* "$SRC"/.ci; do
  n=$(basename "$f")
  case "$n" in build|build-*) continue ;; esac
  ln -s "$f" "$W/$n"
done
ln -s "$BLD" "$W/build"
fail=0
n_run=0
n_checked=0

# extract FILE -> $W/blocks/<file>.run.sh (runnable) and .skip (skipped lines)
extract() {
  awk -v run="$2" -v skip="$3" '
    /^<!-- doc-test: not run:/ { skipnext = 1; next }
    /^```sh[ \t]*$/ { inblk = 1; out = skipnext ? skip : run; skipnext = 0; next }
    /^```/ && inblk { inblk = 0; next }
    inblk { print >> out; next }
    /[^ \t]/ { skipnext = skipnext && /^<!--/ }
  ' "$1"
}

# long options of a command line (after joining continuations)
check_options() {  # LINE
  local line=$1 prog help opt
  for prog in tpdecode tpdecode-synth tpdecode-bench tpdecode-server; do
    case " $line " in *"build/$prog "*) ;; *) continue ;; esac
    [ -x "$BLD/$prog" ] || { echo "FAIL not-run block names build/$prog, which the build lacks"; fail=1; continue; }
    help=$("$BLD/$prog" --help 2>&1)
    for opt in $(printf '%s\n' "${line#*build/$prog }" | grep -oE '(^|[ ])--[a-z][a-z0-9-]*' | tr -d ' '); do
      if ! printf '%s\n' "$help" | grep -qe "$opt"; then
        echo "FAIL $prog --help does not list $opt (used in: $line)"
        fail=1
      fi
    done
    echo "checked $prog"
  done
}

mkdir -p "$W/blocks"
cd "$W" || exit 1
for doc in README.md docs/*.md; do
  [ -f "$SRC/$doc" ] || continue
  key=$(echo "$doc" | tr '/' '_')
  run="$W/blocks/$key.run.sh"
  skip="$W/blocks/$key.skip"
  : > "$run"; : > "$skip"
  extract "$SRC/$doc" "$run" "$skip"
  if [ -s "$run" ]; then
    cnt=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$run" | grep -cv '^[[:space:]]*\(#\|$\)')
    echo "== $doc: running $cnt command(s)"
    if ! (cd "$W" && bash -e -o pipefail -x "$run") > "$W/blocks/$key.log" 2>&1; then
      echo "FAIL $doc: a documented command failed; the end of its output:"
      tail -n 25 "$W/blocks/$key.log" | sed 's/^/    /'
      fail=1
    else
      echo "ok   $doc: all $cnt command(s) ran"
      n_run=$((n_run + cnt))
    fi
  fi
done
# not-run blocks: their programs and options must exist
for s in "$W"/blocks/*.skip; do
  sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$s" | grep -v '^[[:space:]]*\(#\|$\)' |
    while IFS= read -r line; do check_options "$line"; done
done > "$W/optcheck.log"
grep '^FAIL' "$W/optcheck.log" && fail=1
n_checked=$(grep -c '^checked' "$W/optcheck.log")
echo "doc commands: $n_run run; $n_checked not run (a GPU, a large model, or this test itself), their options checked against --help"
[ "$n_run" -gt 0 ] || { echo "FAIL no documented command was run"; fail=1; }
exit $fail
