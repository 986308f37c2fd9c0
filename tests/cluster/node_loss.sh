#!/usr/bin/env bash
# The loss of a node mid-step, on the test cluster (tests/cluster/cluster.sh), with launch/multinode.sh
# as users run it (tp=2 inside a node x pp=2 across node1 and node2, parallel.timeout_s=T):
#   cut:  node2's link is cut (ip link set <veth> down) during training
#   kill: every rank on node2 gets SIGKILL during training
# Each time, the ranks on node1 must exit non-zero within T + MARGIN, naming the operation and the
# silent peers (the watchdog) or the dead ranks (mpirun), and the launcher (mpirun under
# launch/multinode.sh) must end too within T + MARGIN. MARGIN: the watchdog's two grace periods
# (2 x clamp(T/2, 1, 10) s), the launcher's linger (MORE_LAUNCH_LINGER_S, 10 s) and 10 s of slack.
# Then launch/multinode.sh on node1 alone (another layout: tp=1 x pp=2) resumes from the last
# checkpoint and ends bitwise equal (checkpoint files, every step's loss) to a one-host run of the
# same layout from a copy of that checkpoint. Usage: node_loss.sh BUILD DATA [cut|kill ...]
set -uo pipefail
BUILD=$(cd "$1" && pwd); DATA=$(cd "$2" && pwd); shift 2
CASES=("${@:-cut kill}"); CASES=(${CASES[*]})
SRC=$(cd "$(dirname "$0")/../.." && pwd)
source "$SRC/launch/env.sh"
source "$SRC/tests/cluster/lib.sh"
T=8; LINGER=10
MARGIN=$(( 2 * (T / 2 < 1 ? 1 : (T / 2 > 10 ? 10 : T / 2)) + LINGER + 10 ))
STEPS=60; EVERY=4
LAYOUT=(--parallel.tp=2 --parallel.pp=2 --parallel.timeout_s=$T)
node1_ranks() {  # ids of the trainer's processes in node1's network namespace
  local pid
  for pid in $(ip netns pids "$MORE_CLUSTER-node1"); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = more_train ] && echo "$pid"
  done
}
node2_ranks() {
  local pid
  for pid in $(ip netns pids "$MORE_CLUSTER-node2"); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = more_train ] && echo "$pid"
  done
}
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

for how in "${CASES[@]}"; do
  dir=$OUT/$how
  MORE_LAUNCH_LINGER_S=$LINGER multinode "$OUT/$how.log" --train.out_dir="$dir" --train.steps=$STEPS \
    --ckpt.every=$EVERY "${LAYOUT[@]}" &
  launcher=$!
  for _ in $(seq 600); do grep -q "step 9/$STEPS" "$OUT/$how.log" 2>/dev/null && break; sleep 0.1; done
  if [ "$how" = cut ]; then
    ip link set "${MORE_CLUSTER}v2" down
    what="node2's link cut"
  else
    for pid in $(node2_ranks); do kill -KILL "$pid"; done
    what="node2's ranks killed"
  fi
  t0=$(now); t_ranks=""; t_launcher=""
  for _ in $(seq $(( (T + MARGIN + 20) * 5 ))); do
    [ -z "$t_ranks" ] && [ -z "$(node1_ranks)" ] && t_ranks=$(now)
    if ! kill -0 $launcher 2>/dev/null; then t_launcher=$(now); break; fi
    sleep 0.2
  done
  wait $launcher; rc=$?
  [ -n "$t_launcher" ] || { kill -KILL $launcher 2>/dev/null; t_launcher=$(now); }
  [ -n "$t_ranks" ] || t_ranks=$t_launcher
  echo "  $how: $what at step 9+; node1's ranks gone after $(since "$t0" "$t_ranks") s," \
       "the launcher after $(since "$t0" "$t_launcher") s (exit $rc); limit T + MARGIN = $((T + MARGIN)) s"
  check "$how" "the launcher exits non-zero (exit $rc)" test $rc -ne 0
  check "$how" "node1's ranks end within $((T + MARGIN)) s" \
    python3 -c "import sys; sys.exit(float(sys.argv[2]) - float(sys.argv[1]) > $((T + MARGIN)))" "$t0" "$t_ranks"
  check "$how" "the launcher ends within $((T + MARGIN)) s" \
    python3 -c "import sys; sys.exit(float(sys.argv[2]) - float(sys.argv[1]) > $((T + MARGIN)))" "$t0" "$t_launcher"
  if [ "$how" = cut ]; then
    for r in 0 1; do
      # the cut finds each rank waiting somewhere: in a transfer with its pp peer ("... with world
      # rank 2 ..."), in a collective of its pp group, or in a collective of its tp group with a
      # live rank that itself waits on node2 (seen in CI: rank 0 in the tp all_reduce while rank 1
      # waits in its recv from rank 3). Each rank names the operation it waits in and, from the
      # ranks' exchange, the silent ranks 2 and 3.
      check "$how" "rank $r names its operation and the silent ranks 2, 3" \
        grep -Eq "\[rank $r\] error: watchdog: [a-z_]+ (in the [a-z]+ group|with world rank [0-9]+)[^;]* did not complete within parallel.timeout_s = 8 s; no word from world rank\(s\) 2, 3: stalled or dead" "$OUT/$how.log"
    done
  else
    check "$how" "the launcher names a killed rank on node2" \
      grep -Eq "process rank [23] with PID [0-9]+ on node node2 exited on signal 9" "$OUT/$how.log"
  fi
  ip link set "${MORE_CLUSTER}v2" up
  latest=$(cat "$dir/checkpoints/latest" 2>/dev/null); step=$((10#${latest#step-}))
  check "$how" "a checkpoint was committed before the loss ($latest)" test "$step" -ge $EVERY
  # relaunch on the surviving node alone, as tp=1 x pp=2; the reference: the same from a copy
  cp -a "$dir" "$dir.ref"
  printf 'node1 slots=2\n' > "$OUT/hostfile.node1"
  bash "$CLUSTER_SH" exec node1 env NP=2 PPN=2 MORE_BUILD="$BUILD" \
    bash "$SRC/launch/multinode.sh" "$OUT/hostfile.node1" "$SRC/launch/demo.toml" "${RUN_ARGS[@]}" \
    --train.out_dir="$dir" --train.steps=$STEPS --ckpt.every=$EVERY --parallel.pp=2 >> "$OUT/$how.resume.log" 2>&1
  check "$how" "the relaunch on node1 alone (tp=1 x pp=2) runs (exit $?)" test $? -eq 0 ||
    tail -20 "$OUT/$how.resume.log"
  check "$how" "it resumed from $latest" grep -q "resumed from .*$latest at step $step" "$OUT/$how.resume.log"
  onehost 2 "$OUT/$how.ref.log" --train.out_dir="$dir.ref" --train.steps=$STEPS --ckpt.every=$EVERY --parallel.pp=2
  check "$how" "final checkpoint bitwise equal to a one-host run from that checkpoint" same_files "$dir.ref" "$dir" $STEPS
  check "$how" "every step's loss equal to that run's" same_losses "$dir.ref/metrics.jsonl" "$dir/metrics.jsonl"
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] || { grep -v "info\]" "$OUT"/*.log | grep -i "error\|watchdog\|mpirun\|multinode" | tail -30; exit 1; }
