#!/usr/bin/env bash
# Open MPI's rsh/ssh launch agent for the test cluster (tests/cluster/cluster.sh): mpirun runs
#   rsh_agent.sh [ssh options...] NODE COMMAND...
# to start its daemon (orted) on NODE; this runs COMMAND through a shell, as sshd would, inside
# NODE's network and UTS namespaces instead of over ssh. Use it with
#   mpirun --mca plm_rsh_agent "$(pwd)/tests/cluster/rsh_agent.sh" ...   (MORE_CLUSTER in the environment)
# A node with paths listed in /run/more-cluster/$MORE_CLUSTER/NODE.hide (one a line) gets its own
# mount namespace in which an empty read-only tmpfs lies over each: that node cannot see them.
set -euo pipefail
P=${MORE_CLUSTER:-mcdev}
STATE=/run/more-cluster/$P
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do  # ssh-style options mpirun may pass (-x, -o X=Y)
  case $1 in -o|-l|-p|-i) shift 2 ;; *) shift ;; esac
done
NODE=${1:?rsh_agent.sh: no node}; shift
[ -e "/run/netns/$P-$NODE" ] || { echo "rsh_agent.sh: no node '$NODE' in cluster '$P'" >&2; exit 255; }
NS=(nsenter --net="/run/netns/$P-$NODE" --uts="$STATE/$NODE.uts" --)
if [ -s "$STATE/$NODE.hide" ]; then
  # shellcheck disable=SC2016
  exec "${NS[@]}" unshare --mount --propagation private -- bash -c '
    while read -r p; do [ -n "$p" ] && mount -t tmpfs -o ro,size=4k,mode=0755 hidden "$p"; done < "$1"; shift
    exec bash -c "$*"' hide "$STATE/$NODE.hide" "$@"
fi
exec "${NS[@]}" bash -c "$*"
