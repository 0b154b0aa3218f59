#!/bin/sh
# parity.sh PYTHON GEN_REFERENCE TOK_DRIVER OUT [broken]
# Writes fresh reference data (seed TPD_TEST_SEED, else from the clock) and
# runs the driver on every kind (PCRE2 with its JIT, then without); with "broken", only on the tokenizer with
# reversed merges, where the driver must find mismatches.
PY=$1 GEN=$2 DRIVER=$3 OUT=$4 MODE=$5
SEED=${TPD_TEST_SEED:-$(date +%s)}
echo "tokenizer parity: TPD_TEST_SEED=$SEED"
rm -rf "$OUT"
"$PY" "$GEN" "$OUT" --seed "$SEED"
rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -ne 0 ] && { echo "FAIL: gen_reference.py exited $rc"; exit 1; }
if [ "$MODE" = broken ]; then
  "$DRIVER" "$OUT/broken" --expect-mismatch || { echo "FAIL: the parity driver passed a tokenizer with broken merges"; exit 1; }
  exit 0
fi
fail=0
n=0
for k in $(cat "$OUT/kinds.txt"); do
  "$DRIVER" "$OUT/$k" || fail=1
  # the PCRE2 interpreter must give the same as the JIT
  TPD_TOKENIZER_JIT=0 "$DRIVER" "$OUT/$k" > "$OUT/$k.nojit.log" 2>&1 || { cat "$OUT/$k.nojit.log"; fail=1; }
  n=$((n + 1))
done
[ $n -gt 0 ] || { echo "FAIL: no tokenizer kinds were generated"; exit 1; }
[ $fail -eq 0 ] && echo "tokenizer parity: all $n kinds identical to the reference" || echo "FAIL: tokenizer parity"
exit $fail
