#!/bin/sh
# A remote-shell agent for Open MPI (`mpirun --mca plm_rsh_agent PATH`) whose
# "hosts" are network namespaces of this machine.  mpirun calls it as it would
# call ssh:
#   netns-agent.sh [ssh options] [USER@]HOST COMMAND...
# It drops the ssh options, then runs COMMAND (its words joined by spaces, as
# ssh does) with /bin/sh inside the network namespace named HOST
# (`ip netns exec HOST`), in a UTS namespace of its own whose host name is
# HOST.  The host name matters: Open MPI tells nodes apart by it, and two
# "hosts" that both report this machine's name are taken for one node, which
# breaks as soon as a node runs two ranks (MPI_Comm_split_type crashes).
# A HOST that is not a network namespace is an error (exit 255, as ssh's).
# Used by tests/multihost/multihost.py; docs/reliability.md, "More than one
# host", shows it in a recipe.
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -[BbcDEeFIiJLlmOopQRSWw]) shift 2 ;; # an ssh option whose value is the next word
    -*) shift ;;                          # a flag, or an option with its value attached
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "netns-agent: usage: netns-agent.sh [ssh options] HOST COMMAND..." >&2
  exit 255
fi
host=${1#*@}
shift
if ! ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF -- "$host"; then
  echo "netns-agent: no network namespace named '$host' (ip netns list)" >&2
  exit 255
fi
exec ip netns exec "$host" unshare --uts -- /bin/sh -c 'hostname "$0" && exec /bin/sh -c "$1"' "$host" "$*"
