#!/bin/sh
# libtpdecode is what a server links: it must define none of the tools'
# symbols (speed-of-light model, SVG plot and Pareto frontier, energy
# counters, bandwidth probe, synthetic-model writer, percentiles) nor the
# programs' batch-generation loop.
#   lib_contents.sh NM LIB absent    fail if LIB defines any of them (libtpdecode.a,
#                                    libtpdecode.so)
#   lib_contents.sh NM LIB present   fail unless LIB defines each family (the
#                                    tools library: the patterns still match real names)
# A shared object (LIB named *.so or *.so.N...) is read with nm -D: what it
# exports.  It must also export only tpd_* names (cmake/tpdecode.map), among
# them tpd_version.
NM=${1:-nm}
LIB=$2
MODE=${3:-absent}
[ -n "$NM" ] || NM=nm
FAMILIES='tpd_sol_ tpd_pareto_ tpd_plot_ tpd_energy_ tpd_synth_ tpd_membw_ tpd_percentile'
PROGRAM_ONLY='tpd_generate tpd_gen_'

case "$LIB" in
  *.so | *.so.*) SHARED=1; TABLE=-D ;;
  *) SHARED=0; TABLE=-g ;;
esac
out=$("$NM" $TABLE --defined-only "$LIB" 2>&1) || { echo "FAIL $NM $TABLE --defined-only $LIB: $out"; exit 1; }
# OBJECT SYMBOL for every defined global symbol (OBJECT "-" in a shared object)
defs=$(printf '%s\n' "$out" | awk -v shared="$SHARED" '
  /:$/ { obj = substr($0, 1, length($0) - 1); next }
  NF >= 3 { print (shared == 1 ? "-" : obj), $3 }')
n=$(printf '%s\n' "$defs" | grep -c .)
[ "$n" -gt 0 ] || { echo "FAIL $LIB: no defined symbols (not a built library?)"; exit 1; }

bad=0
for fam in $FAMILIES $PROGRAM_ONLY; do
  hits=$(printf '%s\n' "$defs" | awk -v p="$fam" 'index($2, p) == 1')
  if [ "$MODE" = present ]; then
    case " $PROGRAM_ONLY " in *" $fam "*) continue ;; esac
    if [ -z "$hits" ]; then echo "FAIL $LIB defines no $fam* symbol: the pattern no longer matches the tools"; bad=1; fi
  elif [ -n "$hits" ]; then
    printf '%s\n' "$hits" | while read -r obj sym; do echo "FAIL $LIB defines $sym (in $obj): it belongs to the tools or the programs"; done
    bad=1
  fi
done
if [ "$SHARED" -eq 1 ]; then
  # symbol versions (nm prints NAME@VERSION) are not part of the name
  others=$(printf '%s\n' "$defs" | awk '{ sub(/@.*/, "", $2) } index($2, "tpd_") != 1 { print $2 }')
  if [ -n "$others" ]; then
    printf '%s\n' "$others" | head -n 20 | while read -r sym; do echo "FAIL $LIB exports $sym: only tpd_* (cmake/tpdecode.map)"; done
    bad=1
  fi
  printf '%s\n' "$defs" | awk '$2 == "tpd_version" { f = 1 } END { exit !f }' ||
    { echo "FAIL $LIB does not export tpd_version"; bad=1; }
fi
[ "$bad" -eq 0 ] || exit 1
if [ "$MODE" = present ]; then
  echo "ok   $LIB defines every tools family ($FAMILIES)"
else
  # the right library: it holds the engine
  printf '%s\n' "$defs" | awk '$2 == "tpd_engine_create" { f = 1 } END { exit !f }' ||
    { echo "FAIL $LIB does not define tpd_engine_create: not libtpdecode?"; exit 1; }
  if [ "$SHARED" -eq 1 ]; then
    echo "ok   $LIB: exports $n symbols, all tpd_*, none of the tools' ($FAMILIES) or the programs' ($PROGRAM_ONLY)"
  else
    echo "ok   $LIB: $n defined symbols, none of the tools' ($FAMILIES) or the programs' ($PROGRAM_ONLY)"
  fi
fi
