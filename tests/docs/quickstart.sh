#!/usr/bin/env bash
# The README's first command, as written, in a copy of the source tree (so it
# configures and builds its own build/ as a fresh checkout would): it must
# build, write the model and generate text from text prompts with 2 ranks.
#   quickstart.sh SOURCE_DIR
set -u
SRC=$(cd "$1" && pwd)
W=$(mktemp -d /tmp/tpd-quickstart-XXXXXX)
trap 'rm -rf "$W"' EXIT
if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # tracked and untracked-but-not-ignored files: what a clone plus the change holds
  (cd "$SRC" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$W") || exit 1
else
  (cd "$SRC" && tar --exclude='./build*' -cf - .) | (cd "$W" && tar xf -) || exit 1
fi
cmd=$(awk '/^```sh/{getline; print; exit}' "$SRC/README.md")
[ "$cmd" = "bash launch/quickstart.sh" ] || { echo "FAIL README's first command is '$cmd', not the one this test runs"; exit 1; }
cd "$W" || exit 1
if ! bash launch/quickstart.sh > "$W/out.log" 2>&1; then
  echo "FAIL bash launch/quickstart.sh failed; the end of its output:"
  tail -n 30 "$W/out.log"
  exit 1
fi
tail -n 8 "$W/out.log"
# the generation ran: two sequences, each with output
n=$(grep -c '^seq [0-9]*:' "$W/out.log")
[ "$n" -eq 2 ] || { echo "FAIL expected 2 generated sequences in the quickstart output, saw $n"; exit 1; }
# text in (--prompt) and text out: the sequences are text with letters, not lists of ids
grep -q "^+ mpirun .* --prompt '" "$W/out.log" || { echo "FAIL the quickstart does not generate from a --prompt text"; exit 1; }
n=$(grep '^seq [0-9]*:' "$W/out.log" | grep -c '[A-Za-z]')
[ "$n" -eq 2 ] && ! grep -q '^seq [0-9]*:\( [0-9]*\)*$' "$W/out.log" \
  || { echo "FAIL the quickstart's sequences are not text"; exit 1; }
echo "ok   bash launch/quickstart.sh built, wrote the model and generated 2 sequences of text from 2 text prompts"
