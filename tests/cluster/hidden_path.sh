#!/usr/bin/env bash
# A path one node cannot see, on the test cluster (tests/cluster/cluster.sh): node2's daemon and ranks
# run in a mount namespace where an empty tmpfs lies over the path (tests/cluster/rsh_agent.sh,
# <state>/node2.hide). For the model directory, the shard directory and the checkpoint directory of
# a run to resume, launch/multinode.sh (tp=2 x pp=2 over node1 + node2) must end non-zero with every
# rank printing an error that names node2, its ranks 2 and 3 and the path; nothing may be written
# to the checkpoint directory (the run directory does not appear; a resumed one is left as it was).
# Usage: hidden_path.sh BUILD DATA
set -uo pipefail
BUILD=$(cd "$1" && pwd); DATA=$(cd "$2" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
source "$SRC/launch/env.sh"
source "$SRC/tests/cluster/lib.sh"
# copies of the test data that only this test hides (the tmpfs covers the copy, not the fixture)
cp -a "$DATA/tiny" "$OUT/model"; cp -a "$DATA/shards" "$OUT/shards"
RUN_ARGS=("${RUN_ARGS[@]}" --model.path="$OUT/model" --data.train="$OUT/shards")
ARGS=(--parallel.tp=2 --parallel.pp=2 --train.steps=4 --ckpt.every=2 --parallel.timeout_s=30)
# a run to resume: 2 steps on one host, checkpoint step 2
onehost 4 "$OUT/first.log" --train.out_dir="$OUT/resumed" "${ARGS[@]}" --train.steps=2 ||
  { echo "FAIL: the first run"; tail -20 "$OUT/first.log"; exit 1; }
listing() { find "$1" -printf '%P %s %T@\n' | sort; }
for case in "model.path $OUT/model" "data.train $OUT/shards" "checkpoint directory $OUT/resumed/checkpoints"; do
  path=${case##* }; key=${case% *}; name=${key// /_}
  echo "$path" > "/run/more-cluster/$MORE_CLUSTER/node2.hide"
  if [ "$name" = checkpoint_directory ]; then dir=$OUT/resumed; else dir=$OUT/$name.run; fi
  before=$(listing "$OUT/resumed")
  T0=$SECONDS
  multinode "$OUT/$name.log" --train.out_dir="$dir" "${ARGS[@]}"; rc=$?
  rm -f "/run/more-cluster/$MORE_CLUSTER/node2.hide"
  check "$name" "the launcher exits non-zero (exit $rc, $((SECONDS - T0)) s)" test $rc -ne 0 -a $((SECONDS - T0)) -lt 60
  for r in 0 1 2 3; do
    check "$name" "rank $r names the path, node2 and its ranks 2, 3" grep -q \
      "^\[rank $r\] error: path check: the ranks do not see the same $key '$path': .*ranks 2, 3 on node2: " "$OUT/$name.log"
  done
  if [ "$name" = checkpoint_directory ]; then
    check "$name" "the resumed run's directory is left as it was" test "$(listing "$OUT/resumed")" = "$before"
  else
    check "$name" "nothing written: no run directory" test ! -e "$dir"
  fi
done
grep -h "error: path check" "$OUT"/*.log | sort -u | head -3
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
