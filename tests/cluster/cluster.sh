#!/usr/bin/env bash
# A test cluster on one Linux host: N "nodes", each a network namespace plus a UTS namespace (its
# own hostname node1..nodeN and address 198.18.0.<i>/24, the range reserved for network
# benchmarks), joined by veth pairs to one bridge. No route leads anywhere else; the nodes share
# the file system, as cluster nodes share a parallel file system. Needs root (ip, nsenter).
#
# Usage: bash tests/cluster/cluster.sh up N      create node1..nodeN (refuses if they exist)
#        bash tests/cluster/cluster.sh down      end the processes in the nodes, remove everything
#        bash tests/cluster/cluster.sh exec NODE CMD...   run CMD on NODE (its net + UTS namespace)
#        bash tests/cluster/cluster.sh run N CMD...       up N, run CMD on node1, down (also on
#                                                         error or Ctrl-C: a trap)
#        bash tests/cluster/cluster.sh status    nodes, addresses, veth byte counters
# MORE_CLUSTER (default "mcdev") prefixes every name this creates (namespaces, bridge, veths,
# /run/more-cluster/$MORE_CLUSTER), so a CI run and a developer's cluster can coexist: tests
# set MORE_CLUSTER=mc<pid>. At most 7 characters (Linux interface names are <= 15).
#
# Open MPI reaches the nodes through tests/cluster/rsh_agent.sh (no sshd): see tests/cluster/README.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
P=${MORE_CLUSTER:-mcdev}
[ ${#P} -le 7 ] && [[ $P =~ ^[a-z0-9]+$ ]] || {
  echo "cluster.sh: MORE_CLUSTER='$P' must be 1-7 lower-case letters/digits" >&2; exit 2; }
STATE=/run/more-cluster/$P
BR=${P}br
SUBNET=198.18.0

netns() { echo "$P-$1"; }        # network namespace of node $1 (ip netns: /run/netns/<name>)
veth() { echo "${P}v${1#node}"; }  # host-side veth of node $1 (bytes: /sys/class/net/<veth>/statistics)

nodes() { [ -f "$STATE/nodes" ] && cat "$STATE/nodes" || true; }

enter() {  # NODE CMD...: CMD in NODE's network and UTS namespaces
  local node=$1; shift
  [ -e "/run/netns/$(netns "$node")" ] || { echo "cluster.sh: no node '$node' in cluster '$P'" >&2; return 2; }
  exec nsenter --net="/run/netns/$(netns "$node")" --uts="$STATE/$node.uts" -- "$@"
}

down() {
  local node pid
  for node in $(nodes); do
    # the processes the tests started inside the node (mpirun, orted, ranks, slurmd), by id
    if [ -e "/run/netns/$(netns "$node")" ]; then
      for pid in $(ip netns pids "$(netns "$node")" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    fi
  done
  for node in $(nodes); do
    ip link del "$(veth "$node")" 2>/dev/null || true
    ip netns del "$(netns "$node")" 2>/dev/null || true
    if [ -e "$STATE/$node.uts" ]; then umount "$STATE/$node.uts" 2>/dev/null || true; fi
  done
  ip link del "$BR" 2>/dev/null || true
  rm -rf "$STATE"
}

up() {
  local n=$1 i node
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || { echo "cluster.sh: up N, 1 <= N <= 200" >&2; exit 2; }
  if [ -e "$STATE" ] || ip link show "$BR" >/dev/null 2>&1; then
    echo "cluster.sh: cluster '$P' exists (MORE_CLUSTER=$P bash $0 down removes it)" >&2; exit 1
  fi
  mkdir -p "$STATE"
  trap 'down' ERR
  ip link add "$BR" type bridge
  ip link set "$BR" up  # the bridge has no address: the host itself is not on the network
  for i in $(seq 1 "$n"); do
    node=node$i
    echo "$node" >> "$STATE/nodes"
    ip netns add "$(netns "$node")"
    ip link add "$(veth "$node")" type veth peer name eth0 netns "$(netns "$node")"
    ip link set "$(veth "$node")" master "$BR" up
    ip -n "$(netns "$node")" link set lo up
    ip -n "$(netns "$node")" addr add "$SUBNET.$i/24" dev eth0
    ip -n "$(netns "$node")" link set eth0 up
    # a persistent UTS namespace (bound to a file) with the node's hostname
    touch "$STATE/$node.uts"
    unshare --uts="$STATE/$node.uts" hostname "$node"
    printf '%s %s\n' "$SUBNET.$i" "$node" >> "$STATE/hosts"
  done
  trap - ERR
  echo "cluster '$P' up: $(nodes | tr '\n' ' ')(198.18.0.1-$n)"
}

status() {
  local node v
  [ -f "$STATE/nodes" ] || { echo "cluster '$P' is down"; return 0; }
  for node in $(nodes); do
    v=$(veth "$node")
    printf '%s  netns %s  %s  host-side %s: rx %s B (from node) tx %s B (to node)\n' "$node" "$(netns "$node")" \
      "$(ip -n "$(netns "$node")" -br -4 addr show dev eth0 | awk '{print $3}')" "$v" \
      "$(cat "/sys/class/net/$v/statistics/rx_bytes")" "$(cat "/sys/class/net/$v/statistics/tx_bytes")"
  done
}

cmd=${1:-}; shift || true
case $cmd in
  up) up "${1:?up N}" ;;
  down) down ;;
  exec) enter "$@" ;;
  status) status ;;
  run)
    n=${1:?run N CMD...}; shift
    up "$n"
    trap down EXIT INT TERM
    "$HERE/cluster.sh" exec node1 "$@"
    ;;
  *) echo "usage: cluster.sh up N | down | exec NODE CMD... | run N CMD... | status  (MORE_CLUSTER=prefix)" >&2; exit 2 ;;
esac
