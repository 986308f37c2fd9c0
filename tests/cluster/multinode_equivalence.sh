#!/usr/bin/env bash
# launch/multinode.sh across two hosts of the test cluster (tests/cluster/cluster.sh: node1, node2,
# their own hostnames and addresses), as a user runs it: hostfile of 2 nodes, NP=4, PPN=2, for
#   tp2pp2: tp=2 inside a node x pp=2 across the nodes (the pipeline's activations and gradients cross)
#   tp2dp2: tp=2 inside a node x dp=2 across the nodes (the adapter gradients' all-reduce crosses)
# Each must end BITWISE equal to the same run with all 4 ranks on one host (checkpoint files and every
# step's loss and gradient norm). The traffic must really cross: node2's veth byte counters
# (/sys/class/net/<veth>/statistics, both directions) show at least the bytes the layout must send
# (computed from the shapes below), while the nodes' loopback stays quiet (ranks of one node talk
# over shared memory, not TCP). Every rank logs its host and node-local rank: 0,1 on each node.
# Usage: multinode_equivalence.sh BUILD DATA   (root; Open MPI, iproute2, util-linux)
set -uo pipefail
BUILD=$(cd "$1" && pwd); DATA=$(cd "$2" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
source "$SRC/launch/env.sh"
source "$SRC/tests/cluster/lib.sh"
STEPS=6
HIDDEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hidden_size"])' "$DATA/tiny/config.json")

for layout in "tp2pp2 --parallel.tp=2 --parallel.pp=2" "tp2dp2 --parallel.tp=2 --parallel.pp=1"; do
  set -- $layout; name=$1; shift
  args=(--train.steps=$STEPS --ckpt.every=3 "$@")
  onehost 4 "$OUT/$name.onehost.log" --train.out_dir="$OUT/$name.onehost" "${args[@]}" ||
    { echo "FAIL $name: the one-host run"; tail -20 "$OUT/$name.onehost.log"; exit 1; }
  rx0=$(veth_bytes node2 rx); tx0=$(veth_bytes node2 tx); lo10=$(lo_bytes node1); lo20=$(lo_bytes node2)
  T0=$(date +%s.%N)
  multinode "$OUT/$name.log" --train.out_dir="$OUT/$name" "${args[@]}"; rc=$?
  took=$(python3 -c "import time; print(f'{time.time() - $T0:.1f}')")
  rx=$(( $(veth_bytes node2 rx) - rx0 )); tx=$(( $(veth_bytes node2 tx) - tx0 ))
  lo1=$(( $(lo_bytes node1) - lo10 )); lo2=$(( $(lo_bytes node2) - lo20 ))
  check "$name" "launch/multinode.sh across node1+node2 ran (exit $rc, ${took} s)" test $rc -eq 0 ||
    { tail -30 "$OUT/$name.log"; continue; }
  check "$name" "checkpoints (adapters, optimizer) bitwise equal to the one-host run" \
    same_files "$OUT/$name.onehost" "$OUT/$name" $STEPS
  check "$name" "every step's loss and gradient norm equal to the one-host run" \
    same_losses "$OUT/$name.onehost/metrics.jsonl" "$OUT/$name/metrics.jsonl"
  placed=$(grep -o "rank [0-9]: host node[0-9], node-local rank [0-9] of [0-9]" "$OUT/$name.log" | sort | tr '\n' ';')
  check "$name" "ranks 0,1 on node1 and 2,3 on node2 with node-local ranks 0,1 ($placed)" test "$placed" = \
    "rank 0: host node1, node-local rank 0 of 2;rank 1: host node1, node-local rank 1 of 2;rank 2: host node2, node-local rank 0 of 2;rank 3: host node2, node-local rank 1 of 2;"
  # What the layout must send across, a lower bound from the shapes (float32 = 4 bytes):
  #  pp: each of the tp=2 ranks of stage 0 sends every micro-batch's hidden states [B, L, D] to its
  #      stage-1 peer, and gets their gradient [B, L, D] back: B*L >= the micro-batch's real tokens,
  #      so each direction >= 2 * tokens * D * 4 per step (tokens: the step's tokens in metrics.jsonl)
  #  dp: the all-reduce of the adapter gradients between the 2 replicas: each side must receive the
  #      other's gradients, >= all adapter parameters * 4 bytes per step and direction (the tp ranks'
  #      shards together hold every parameter at least once), read from the exported adapters' header
  need=$(python3 - "$name" "$OUT/$name.onehost" "$HIDDEN" <<'PY'
import json, struct, sys
name, run, hidden = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = [j for j in map(json.loads, open(f"{run}/metrics.jsonl")) if j.get("type") == "train"]
if name == "tp2pp2":
    tokens = sum(round(j["tokens_per_s"] * j["step_s"]) for j in steps)
    print(2 * tokens * hidden * 4)
else:
    raw = open(f"{run}/export/adapters.safetensors", "rb").read()
    hdr = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    params = sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in hdr.items() if k != "__metadata__")
    print(len(steps) * params)
PY
)
  echo "  $name: node1 -> node2 $tx B, node2 -> node1 $rx B over the veth (lower bound $need B each way," \
       "$((tx / STEPS)) / $((rx / STEPS)) B per step); loopback node1 $lo1 B, node2 $lo2 B"
  check "$name" "node1 -> node2 bytes over the link ($tx) >= what the layout must send ($need)" test "$tx" -ge "$need"
  check "$name" "node2 -> node1 bytes over the link ($rx) >= what the layout must send ($need)" test "$rx" -ge "$need"
  # the ranks of one node reach each other over shared memory: TCP between them would cross the
  # node's loopback with the tp all-reduces, >= 2 per layer and micro-batch of [B, L, D] each way,
  # more than the bound above; what does cross it (~20 kB) is Open MPI's own start-up and wire-up
  check "$name" "no rank traffic over the nodes' loopback ($lo1 B, $lo2 B < 10% of $need)" \
    test $((lo1 * 10)) -lt "$need" -a $((lo2 * 10)) -lt "$need"
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
