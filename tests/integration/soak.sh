#!/usr/bin/env bash
# Soak: the tiny model for many steps with periodic checkpoints.
#  1. an uninterrupted run; its resident memory (max over ranks, logged every step) must not grow;
#  2. the same run killed with SIGKILL from outside (a random rank, at a random moment: inside a
#     step, a collective or a checkpoint write) CYCLES times and relaunched each time; the final
#     adapters and optimizer state must be byte-identical to (1), with the same loss at every step.
# Usage: soak.sh BUILD DATA [STEPS=200] [CYCLES=3] [NP=2] ["LAYOUT ARGS"="--parallel.pp=2"]
# Writes <OUT>/soak.json (the RSS figures) when SOAK_REPORT=<file> is set.
set -uo pipefail
BUILD=$1; DATA=$2; STEPS=${3:-200}; CYCLES=${4:-3}; NP=${5:-2}; LAYOUT=${6:---parallel.pp=2}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d)
trap '[ -n "${KEEP_OUT:-}" ] || rm -rf "$OUT"' EXIT
SEED=${MORE_TEST_SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$SEED
echo "seed $SEED (MORE_TEST_SEED=$SEED replays the choices); $STEPS steps, $CYCLES kill cycles, $NP ranks $LAYOUT"
EVERY=$(( STEPS / 20 > 1 ? STEPS / 20 : 2 ))
args() {  # out dir
  # model.dtype pinned to float32 (bitwise equality): auto is bf16 on a CPU with native bf16
  echo --config "$SRC/launch/demo.toml" --model.dtype=float32 --model.path="$DATA/tiny" --data.train="$DATA/shards" \
    --train.out_dir="$1" --train.steps=$STEPS --ckpt.every=$EVERY --ckpt.keep_last=2 --train.log_every=1 \
    --eval.at_start=false --eval.every=0 --eval.max_samples=8 --train.threads=1 --train.progress=false \
    --adapter.dropout=0.1 $LAYOUT
}
last_step() { grep -o '"step":[0-9]*' "$1/metrics.jsonl" 2> /dev/null | tail -1 | cut -d: -f2; }

T0=$SECONDS
timeout 1800 mpirun -np "$NP" "$BUILD/more_train" $(args "$OUT/ref") > "$OUT/ref.log" 2>&1 \
  || { echo "FAIL uninterrupted run"; tail -20 "$OUT/ref.log"; exit 1; }
echo "uninterrupted run: $((SECONDS - T0)) s"

kills=0
for c in $(seq 1 "$CYCLES"); do
  timeout 1800 mpirun -np "$NP" "$BUILD/more_train" $(args "$OUT/cut") >> "$OUT/cut.log" 2>&1 &
  MPIRUN=$!
  start=$(last_step "$OUT/cut"); start=${start:-0}
  target=$(( start + 1 + RANDOM % ((STEPS - start) * 3 / 4 + 1) ))
  while kill -0 $MPIRUN 2> /dev/null; do
    s=$(last_step "$OUT/cut"); [ "${s:-0}" -ge $target ] && break
    sleep 0.02
  done
  pids=$(pgrep -f "^[^ ]*/more_train .*$OUT/cut")  # the ranks, not mpirun/timeout
  if [ -n "$pids" ]; then
    pids=($pids); victim=${pids[$((RANDOM % ${#pids[@]}))]}
    rank=$(tr '\0' '\n' < /proc/$victim/environ 2> /dev/null | grep '^OMPI_COMM_WORLD_RANK=' | cut -d= -f2)
    kill -9 "$victim" 2> /dev/null && kills=$((kills + 1))
    echo "cycle $c: SIGKILL to rank ${rank:-?} (pid $victim) near step $(last_step "$OUT/cut")"
  fi
  t=$SECONDS
  wait $MPIRUN; rc=$?
  [ $rc -eq 124 ] && { echo "FAIL cycle $c: the job hung after the kill"; exit 1; }
  echo "  job ended in $((SECONDS - t)) s (exit $rc)"
done
timeout 1800 mpirun -np "$NP" "$BUILD/more_train" $(args "$OUT/cut") >> "$OUT/cut.log" 2>&1 \
  || { echo "FAIL final relaunch"; tail -20 "$OUT/cut.log"; exit 1; }
echo "resumed $(grep -c 'resumed from' "$OUT/cut.log") time(s) after $kills kill(s)"

fail=0
for f in "$OUT/ref/checkpoints/step-$(printf %08d $STEPS)"/{adapters,optimizer}.stage-*.safetensors; do
  cmp -s "$f" "$OUT/cut/checkpoints/step-$(printf %08d $STEPS)/$(basename "$f")" \
    || { echo "FAIL $(basename "$f") differs from the uninterrupted run's"; fail=1; }
done
/usr/bin/env python3 - "$OUT/ref/metrics.jsonl" "$OUT/cut/metrics.jsonl" "${SOAK_REPORT:-}" <<'PY' || fail=1
import json, sys
def rows(path):
    out = {}
    for line in open(path):
        j = json.loads(line)
        if j.get("type") == "train": out[j["step"]] = j
    return out
ref, cut = rows(sys.argv[1]), rows(sys.argv[2])
bad = [s for s in ref if s not in cut or cut[s]["loss"] != ref[s]["loss"]]
if bad or len(ref) != len(cut):
    print("FAIL losses differ at steps", bad[:10]); sys.exit(1)
print(f"ok   losses of all {len(ref)} steps equal to the uninterrupted run's")
steps = sorted(ref)
rss = [ref[s]["rss_mib"] for s in steps]
n = len(rss)
early = sorted(rss[n // 10: n // 4 + 1])  # after warm-up (allocator pools, prefetch, first checkpoint)
late = sorted(rss[-max(1, n // 5):])
e, l = early[len(early) // 2], late[len(late) // 2]
growth = l - e
per_1k = growth / max(1, steps[-1] - steps[n // 10]) * 1000
print(f"rss (max over ranks): median {e:.1f} MiB at 10-25% of the run, {l:.1f} MiB in the last 20%, "
      f"growth {growth:+.2f} MiB ({per_1k:+.2f} MiB per 1000 steps); peak {max(r['peak_rss_mib'] for r in ref.values()):.1f} MiB")
if sys.argv[3]:
    json.dump({"steps": steps[-1], "rss_early_mib": e, "rss_late_mib": l, "growth_mib": growth,
               "rss_series": [[s, ref[s]["rss_mib"]] for s in steps]}, open(sys.argv[3], "w"))
limit = max(4.0, 0.02 * e)
if growth > limit:
    print(f"FAIL resident memory grew by {growth:.2f} MiB (limit {limit:.2f})"); sys.exit(1)
print(f"ok   no memory growth (limit {limit:.2f} MiB)")
PY
[ $fail -eq 0 ] && echo "ok   final adapters and optimizer byte-identical" && echo "soak passed" || exit 1
