#!/usr/bin/env bash
# Pre-emption: SIGUSR1 (Slurm's warning signal; SIGTERM behaves the same) sent to ONE rank makes
# every rank save a checkpoint at the next step boundary and exit 0; a relaunch resumes there.
# Also when the signal comes during start-up, before the first step, as soon as every rank has
# announced through MORE_SIGNAL_READY_FILE that it handles it.
set -euo pipefail
BUILD=$1; DATA=$2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
args=(--config "$SRC/launch/demo.toml" --model.path="$DATA/tiny" --data.train="$DATA/shards"
      --train.out_dir="$OUT/run" --eval.at_start=false --eval.max_samples=8 --ckpt.every=0
      --train.log_every=5 --train.threads=1 --train.progress=false)
timeout 300 mpirun -np 2 "$BUILD/more_train" "${args[@]}" --train.steps=100000 > "$OUT/run.log" 2>&1 &
MPIRUN=$!
for _ in $(seq 1 600); do
  grep -q '"type":"train"' "$OUT/run/metrics.jsonl" 2>/dev/null && break
  sleep 0.1
done
PID=$(pgrep -f "^[^ ]*/more_train .*$OUT/run" | tail -1)  # a rank, not mpirun
kill -USR1 "$PID"
wait $MPIRUN
grep -q "stop signal received: saving a checkpoint" "$OUT/run.log"
STEP=$(cat "$OUT/run/checkpoints/latest")
test -f "$OUT/run/checkpoints/$STEP/state.json"
echo "saved $STEP after the signal"
N=$((10#${STEP#step-}))
timeout 300 mpirun -np 2 "$BUILD/more_train" "${args[@]}" --train.steps=$((N + 5)) > "$OUT/resume.log" 2>&1
grep -q "resumed from .*$STEP at step $N" "$OUT/resume.log"

# The signal during start-up (after the placement log, while the trainer loads the model, which
# takes minutes on a real one; a requeue or pre-emption can come then): not fatal, the run stops
# after its first step with a checkpoint and exits 0, so Slurm's requeue finds a clean exit.
early=(--config "$SRC/launch/demo.toml" --model.path="$DATA/tiny" --data.train="$DATA/shards"
       --train.out_dir="$OUT/early" --eval.at_start=false --eval.max_samples=8 --ckpt.every=0
       --train.log_every=5 --train.threads=1 --train.progress=false --train.steps=100000)
# MORE_SIGNAL_READY_FILE (what launch/slurm.sbatch waits for before it passes a signal on): created
# once every rank handles the signal, i.e. before the placement log, and removed at exit.
MORE_SIGNAL_READY_FILE=$OUT/ready timeout 300 mpirun -x MORE_SIGNAL_READY_FILE -np 2 "$BUILD/more_train" "${early[@]}" \
  > "$OUT/early.log" 2>&1 &
MPIRUN=$!
for _ in $(seq 1 3000); do
  [ -e "$OUT/ready" ] && break
  sleep 0.01
done
test -e "$OUT/ready" || { echo "FAIL: no MORE_SIGNAL_READY_FILE"; exit 1; }
PID=$(pgrep -f "^[^ ]*/more_train .*$OUT/early" | tail -1)
kill -USR1 "$PID"
wait $MPIRUN
grep -q "stop signal received: saving a checkpoint at step 1 " "$OUT/early.log"
STEP=$(cat "$OUT/early/checkpoints/latest")
test -f "$OUT/early/checkpoints/$STEP/state.json"
echo "saved $STEP after a signal during start-up"
test ! -e "$OUT/ready" || { echo "FAIL: MORE_SIGNAL_READY_FILE left behind"; exit 1; }
echo "3 passed, 0 failed"
