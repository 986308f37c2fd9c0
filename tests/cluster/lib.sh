# Sourced by the cluster tests: a 2-node test cluster of their own (MORE_CLUSTER=mc<pid>, removed
# by a trap on exit), a hostfile, and launch/multinode.sh run from node1 as a user runs it.
# Expects BUILD, DATA and SRC set by the test.
CLUSTER_SH=$SRC/tests/cluster/cluster.sh
# skip (77: ctest's SKIP_RETURN_CODE) where namespaces cannot be made: not root, or a container
# without CAP_SYS_ADMIN
if [ "$(id -u)" -ne 0 ] || ! unshare --net --uts --mount true 2>/dev/null; then
  echo "SKIP: the test cluster needs root and network/UTS/mount namespaces"; exit 77
fi
export MORE_CLUSTER=${MORE_CLUSTER:-mc$(( $$ % 100000 ))}
OUT=$(mktemp -d -p "${CLUSTER_OUT_BASE:-/tmp}" more-cluster-test.XXXXXX)
cluster_cleanup() {
  bash "$CLUSTER_SH" down
  [ -n "${KEEP_OUT:-}" ] || rm -rf "$OUT"
}
trap cluster_cleanup EXIT
trap 'exit 130' INT TERM
bash "$CLUSTER_SH" up 2
printf 'node1 slots=2\nnode2 slots=2\n' > "$OUT/hostfile"
# the arguments of every run (tiny model, float32 for bitwise comparisons)
RUN_ARGS=(--model.dtype=float32 --model.path="$DATA/tiny" --data.train="$DATA/shards" --train.log_every=1
          --eval.at_start=false --eval.every=0 --eval.max_samples=8 --train.threads=1 --train.progress=false
          --adapter.dropout=0.1)
# multinode LOG ARGS...: launch/multinode.sh on node1 with the 2-node hostfile, NP=4, PPN=2
multinode() {
  local log=$1; shift
  bash "$CLUSTER_SH" exec node1 env NP=4 PPN=2 MORE_BUILD="$BUILD" \
    OMPI_MCA_plm_rsh_agent="$SRC/tests/cluster/rsh_agent.sh" \
    bash "$SRC/launch/multinode.sh" "$OUT/hostfile" "$SRC/launch/demo.toml" "${RUN_ARGS[@]}" "$@" > "$log" 2>&1
}
# onehost NP LOG ARGS...: the same run with every rank on this host (plain mpirun)
onehost() {
  local np=$1 log=$2; shift 2
  mpirun -np "$np" "$BUILD/more_train" --config "$SRC/launch/demo.toml" "${RUN_ARGS[@]}" "$@" > "$log" 2>&1
}
veth_bytes() {  # NODE rx|tx: bytes the host-side veth of NODE received from it / sent to it
  cat "/sys/class/net/${MORE_CLUSTER}v${1#node}/statistics/${2}_bytes"
}
lo_bytes() {  # NODE: bytes over NODE's loopback (TCP between ranks of one node would show here)
  ip netns exec "$MORE_CLUSTER-$1" cat /sys/class/net/lo/statistics/tx_bytes
}
fail=0; pass=0
check() {  # name, what, command...
  local name=$1 what=$2; shift 2
  if "$@"; then pass=$((pass + 1)); echo "ok   $name: $what"
  else fail=$((fail + 1)); echo "FAIL $name: $what"; return 1; fi
}
same_files() {  # DIR_A DIR_B STEP: checkpoint STEP's adapters and optimizer state byte for byte
  local f ok=0 n=0 s; s=$(printf 'step-%08d' "$3")
  for f in "$1/checkpoints/$s"/{adapters,optimizer}.stage-*.safetensors; do
    [ -e "$f" ] || { echo "  missing $f"; return 1; }
    n=$((n + 1))
    cmp -s "$f" "$2/checkpoints/$s/$(basename "$f")" || { echo "  differs: $s/$(basename "$f")"; ok=1; }
  done
  [ $n -gt 0 ] && return $ok
}
same_losses() {  # METRICS_A METRICS_B: every step's loss and grad norm equal exactly
  python3 - "$1" "$2" <<'PY'
import json, sys
def read(p):
    return {j["step"]: (j["loss"], j["grad_norm"]) for j in map(json.loads, open(p)) if j.get("type") == "train"}
a, b = read(sys.argv[1]), read(sys.argv[2])
bad = [s for s in a if b.get(s) != a[s]]
if bad or not a or a.keys() != b.keys():
    print("  steps differ:", bad[:5], sorted(a)[:3], sorted(b)[:3]); sys.exit(1)
PY
}
