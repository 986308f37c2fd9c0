#!/usr/bin/env bash
# Crash recovery under mpirun: a rank killed with SIGKILL (at a random step, or while a checkpoint
# is being written or committed) ends the whole job; a relaunch resumes from the last complete
# checkpoint, and the final adapters and optimizer state are BITWISE equal to an uninterrupted
# run's, with the same loss at every step (adapter dropout on, so the random stream is covered too).
# Usage: kill_resume.sh BUILD DATA NP "LAYOUT ARGS" "STAGE ROOT RANKS"
#   e.g. kill_resume.sh build build/testdata 4 "--parallel.tp=2 --parallel.pp=2" "0 2"
# The random choices come from MORE_TEST_SEED (printed; set it to replay a run).
set -uo pipefail
BUILD=$1; DATA=$2; NP=${3:-2}; LAYOUT=${4:---parallel.pp=2}; ROOTS=(${5:-0 1})
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d)
trap '[ -n "${KEEP_OUT:-}" ] || rm -rf "$OUT"' EXIT
SEED=${MORE_TEST_SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$SEED
echo "seed $SEED (MORE_TEST_SEED=$SEED replays this run)"
STEPS=16; EVERY=4
fail=0; pass=0
run() {  # dir, log, extra env...: one launch, bounded in time
  local dir=$1 log=$2; shift 2
  # model.dtype pinned to float32 (bitwise equality): auto is bf16 on a CPU with native bf16
  timeout 180 env "$@" mpirun -np "$NP" -x MORE_FAIL_AT "$BUILD/more_train" --config "$SRC/launch/demo.toml" --model.dtype=float32 \
    --model.path="$DATA/tiny" --data.train="$DATA/shards" --train.out_dir="$dir" --train.steps=$STEPS \
    --ckpt.every=$EVERY --ckpt.keep_last=3 --train.log_every=1 --eval.at_start=false --eval.every=0 \
    --eval.max_samples=8 --train.threads=1 --train.progress=false --adapter.dropout=0.1 $LAYOUT >> "$log" 2>&1
}
check() {  # name, condition text, command...
  local name=$1 what=$2; shift 2
  if "$@"; then pass=$((pass + 1)); echo "ok   $name: $what"
  else fail=$((fail + 1)); echo "FAIL $name: $what"; fi
}
same_final() {  # dir: final checkpoint files equal the reference's, byte for byte
  local f ok=0
  for f in "$OUT/ref/checkpoints/step-000000$STEPS"/{adapters,optimizer}.stage-*.safetensors; do
    cmp -s "$f" "$1/checkpoints/step-000000$STEPS/$(basename "$f")" || { echo "  differs: $(basename "$f")"; ok=1; }
  done
  return $ok
}
same_losses() {  # dir: the last logged loss of every step equals the reference's exactly
  /usr/bin/env python3 - "$OUT/ref/metrics.jsonl" "$1/metrics.jsonl" <<'PY'
import json, sys
def losses(path):
    out = {}
    for line in open(path):
        j = json.loads(line)
        if j.get("type") == "train": out[j["step"]] = j["loss"]
    return out
ref, got = losses(sys.argv[1]), losses(sys.argv[2])
bad = [s for s in ref if got.get(s) != ref[s]]
if bad or len(ref) != len(got):
    print("  loss differs at steps", bad[:5], "of", len(ref)); sys.exit(1)
PY
}
resumed_at() {  # log, step
  grep -q "resumed from .*step-$(printf %08d "$2") at step $2" "$1"
}

run "$OUT/ref" "$OUT/ref.log" MORE_FAIL_AT= || { echo "FAIL reference run"; tail -20 "$OUT/ref.log"; exit 1; }

# 1. SIGKILL of a random rank at the start of a random step
RANK=$((RANDOM % NP)); S=$((EVERY + 1 + RANDOM % (STEPS - EVERY - 1)))
T0=$(date +%s)
run "$OUT/kill" "$OUT/kill.log" MORE_FAIL_AT="$RANK:$S:kill"; RC=$?
check kill "rank $RANK killed at step $S ends the job (exit $RC, $(( $(date +%s) - T0 )) s)" test $RC -ne 0 -a $RC -ne 124
run "$OUT/kill" "$OUT/kill.log" MORE_FAIL_AT=
PREV=$(( (S - 1) / EVERY * EVERY ))
check kill "relaunch resumes at step $PREV" resumed_at "$OUT/kill.log" $PREV
check kill "final adapters and optimizer bitwise equal" same_final "$OUT/kill"
check kill "losses of every step equal" same_losses "$OUT/kill"

# 2. SIGKILL of a stage root while it writes its checkpoint files
RANK=${ROOTS[$((RANDOM % ${#ROOTS[@]}))]}; C=$(( EVERY * (2 + RANDOM % (STEPS / EVERY - 2)) ))
run "$OUT/write" "$OUT/write.log" MORE_FAIL_AT="$RANK:$C:ckpt_write"; RC=$?
check ckpt_write "rank $RANK killed writing checkpoint $C ends the job (exit $RC)" test $RC -ne 0 -a $RC -ne 124
check ckpt_write "latest still names step $((C - EVERY))" \
  grep -qx "step-$(printf %08d $((C - EVERY)))" "$OUT/write/checkpoints/latest"
check ckpt_write "no step-$C directory, only the in-progress one" \
  test ! -e "$OUT/write/checkpoints/step-$(printf %08d $C)" -a -d "$OUT/write/checkpoints/.tmp-step-$(printf %08d $C)"
run "$OUT/write" "$OUT/write.log" MORE_FAIL_AT=
check ckpt_write "relaunch resumes the previous checkpoint (step $((C - EVERY)))" resumed_at "$OUT/write.log" $((C - EVERY))
check ckpt_write "incomplete checkpoint removed" grep -q "removed .*tmp-step-$(printf %08d $C)" "$OUT/write.log"
check ckpt_write "final adapters and optimizer bitwise equal" same_final "$OUT/write"
check ckpt_write "losses of every step equal" same_losses "$OUT/write"

# 3. SIGKILL of rank 0 after the new directory is in place but before "latest" names it
C=$(( EVERY * (1 + RANDOM % (STEPS / EVERY - 1)) ))
run "$OUT/commit" "$OUT/commit.log" MORE_FAIL_AT="0:$C:ckpt_commit"; RC=$?
check ckpt_commit "rank 0 killed committing checkpoint $C ends the job (exit $RC)" test $RC -ne 0 -a $RC -ne 124
PREV=$((C - EVERY))
run "$OUT/commit" "$OUT/commit.log" MORE_FAIL_AT=
if [ $PREV -gt 0 ]; then
  check ckpt_commit "relaunch resumes the checkpoint 'latest' names (step $PREV)" resumed_at "$OUT/commit.log" $PREV
else
  check ckpt_commit "relaunch starts fresh (no checkpoint was committed)" bash -c "! grep -q 'resumed from' '$OUT/commit.log'"
fi
check ckpt_commit "final adapters and optimizer bitwise equal" same_final "$OUT/commit"
check ckpt_commit "losses of every step equal" same_losses "$OUT/commit"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ] || { for f in "$OUT"/*.log; do echo "== $f"; grep -v "^\[.*info" "$f" | tail -15; done; exit 1; }
