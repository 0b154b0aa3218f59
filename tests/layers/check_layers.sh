#!/usr/bin/env bash
# The layering of the source tree, checked from its #include "..." lines
# (tests/ is not checked: tests may reach into any layer).
#
#   check_layers.sh [ROOT]     ROOT: the tree to check (default: this repository)
#
# Rules, each failure printed as FILE:LINE -> TARGET with the rule it breaks:
#   1. no include from a lower layer into a higher one (LAYERS below, bottom-up);
#   2. the model and the engine reach kernels/ and comm/ only through their
#      interfaces (INTERFACES), never into a backend's internals;
#   3. no include circle between folders;
#   4. every checked file has a layer, and every KNOWN exception still occurs
#      (a stale entry fails, so the list cannot outlive its reason).
# Includes of files not in the tree (system and third-party headers) are skipped.
set -u

# Layers, bottom-up: NAME RANK PATH-REGEX (extended regex on the path from
# the root; the first match wins).  Equal ranks may include one another
# (rule 3 still forbids a circle).
LAYERS='
foundation 0 ^runtime/base/
kernels    1 ^kernels/
comm       1 ^comm/
model      2 ^runtime/model/
engine     3 ^runtime/
tools      4 ^launch/tools/
programs   5 ^launch/
'
# What the model and the engine may include from kernels/ and comm/.
INTERFACES='kernels/backend.h comm/comm.h'
# Known exceptions, reported but not failed, one per line: FILE -> TARGET  # why
# Remove an entry as soon as its include is gone.
# TPD_LAYERS_KNOWN replaces the list (selftest.sh).
KNOWN_LIST='
'
KNOWN=${TPD_LAYERS_KNOWN-$KNOWN_LIST}

ROOT=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$ROOT" || { echo "FAIL layers: cannot enter $ROOT"; exit 1; }

files=$(find . \( -path ./tests -o -path './build*' -o -path './.*' \) -prune -o -type f \
          \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.cpp' -o -name '*.hpp' \) -print |
        sed 's|^\./||' | LC_ALL=C sort)
[ -n "$files" ] || { echo "FAIL layers: no source files under $ROOT"; exit 1; }

# FILE<TAB>LINE<TAB>TARGET for every quoted include
incs=$(printf '%s\n' "$files" | while IFS= read -r f; do
  grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
    sed -E "s|^([0-9]+):[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]*)\".*|$f	\1	\2|"
done)

{ printf 'LAYERS\n%s\nINTERFACES\n%s\nKNOWN\n%s\nFILES\n%s\nINCLUDES\n%s\n' \
    "$LAYERS" "$INTERFACES" "$KNOWN" "$files" "$incs"; } | awk -F'\t' '
function norm(p,   n, a, i, out, k, st) {
  n = split(p, a, "/"); k = 0
  for (i = 1; i <= n; i++) {
    if (a[i] == "" || a[i] == ".") continue
    if (a[i] == "..") { if (k > 0) k--; continue }
    st[++k] = a[i]
  }
  out = ""
  for (i = 1; i <= k; i++) out = out (i > 1 ? "/" : "") st[i]
  return out
}
function dir(p) { return sub(/\/[^\/]*$/, "", p) ? p : "." }
function layer(p,   i) { for (i = 1; i <= nl; i++) if (p ~ lre[i]) return i; return 0 }
# the folder a file counts in for rule 3
function unit(p) { return lname[layer(p)] == "foundation" ? "(foundation)" : dir(p) }
/^LAYERS$/ { sec = "L"; next }
/^INTERFACES$/ { sec = "I"; next }
/^KNOWN$/ { sec = "K"; next }
/^FILES$/ { sec = "F"; next }
/^INCLUDES$/ { sec = "C"; next }
sec == "L" && NF { split($0, w, " "); nl++; lname[nl] = w[1]; lrank[nl] = w[2] + 0; lre[nl] = w[3]; next }
sec == "I" && NF { n = split($0, w, " "); for (i = 1; i <= n; i++) iface[w[i]] = 1; next }
sec == "K" && NF {
  line = $0; why = ""
  if (index(line, "#")) { why = substr(line, index(line, "#") + 1); sub(/^ +/, "", why); line = substr(line, 1, index(line, "#") - 1) }
  split(line, w, " ")
  key = w[1] " -> " w[3]; known[key] = why; nknown++; kord[nknown] = key; next
}
sec == "F" && NF {
  have[$0] = 1; nfiles++
  if (!layer($0)) { print "FAIL layers: " $0 ": in no layer (add its path to LAYERS in tests/layers/check_layers.sh)"; bad++ }
  next
}
sec == "C" && NF == 3 {
  f = $1; ln = $2; t = $3
  if (t in have) tgt = t
  else if ((r = norm(dir(f) "/" t)) in have) tgt = r
  else next                      # not in the tree: a system or third-party header
  nincs++
  key = f " -> " tgt; where = f ":" ln " -> " tgt
  lf = layer(f); lt = layer(tgt)
  if (!lf || !lt) next           # reported above
  why = ""
  if (lrank[lt] > lrank[lf]) why = lname[lf] " includes " lname[lt] ", a higher layer"
  else if ((lname[lf] == "model" || lname[lf] == "engine") && (lname[lt] == "kernels" || lname[lt] == "comm") && !(tgt in iface))
    why = lname[lf] " reaches past the " lname[lt] " interface into its internals"
  if (key in known) { seen[key] = 1; print "known: " where "  (" (why != "" ? why : "no rule broken") "): " known[key]; next }
  if (why != "") { print "FAIL layers: " where "  (" why ")"; bad++ }
  uf = unit(f); ut = unit(tgt)
  if (uf != ut) {
    if (!((uf, ut) in edge)) { edge[uf, ut] = where; node[uf] = 1; node[ut] = 1 }
  }
}
END {
  for (i = 1; i <= nknown; i++)
    if (!(kord[i] in seen)) { print "FAIL layers: known exception \"" kord[i] "\" no longer occurs: remove it from KNOWN in tests/layers/check_layers.sh"; bad++ }
  # rule 3: transitive closure of the folder graph; an edge inside a circle has both ends reaching each other
  for (a in node) for (b in node) reach[a, b] = ((a, b) in edge)
  for (k in node) for (a in node) if (reach[a, k]) for (b in node) if (reach[k, b]) reach[a, b] = 1
  circles = 0
  for (a in node) for (b in node)
    if (a != b && ((a, b) in edge) && reach[b, a]) { print "FAIL layers: include circle between folders " a " and " b ": " edge[a, b]; circles++ }
  bad += circles
  if (bad) { print "FAIL layers: " bad " problem(s) in " nincs " project includes of " nfiles " files"; exit 1 }
  print "ok   layers: " nincs " project includes of " nfiles " files: none into a higher layer, none past an interface, no circle between folders; " nknown " known exception(s) above"
}'
