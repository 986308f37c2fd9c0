#!/usr/bin/env bash
# The demo path on the fixture: 2 data-parallel ranks train MoRE adapters with checkpoints; the
# final eval must beat the untrained (step 0) eval; then more_export writes the adapters and
# the merged models, and a resumed run continues from the last checkpoint.
set -euo pipefail
BUILD=$1; DATA=$2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
mpirun -np 2 "$BUILD/more_train" --config "$SRC/launch/demo.toml" --model.path="$DATA/tiny" \
  --data.train="$DATA/shards" --train.out_dir="$OUT/run" --train.steps=300 --eval.every=0 \
  --ckpt.every=100 --train.threads=1 --train.progress=false
/usr/bin/python3 - "$OUT/run/metrics.jsonl" <<'PY'
import json, sys
evals = [json.loads(l) for l in open(sys.argv[1]) if '"eval"' in l]
first, last = evals[0], evals[-1]
print("untrained mean %.4f -> trained mean %.4f" % (first["mean"], last["mean"]))
for t, s in last["scores"].items():
    print("  %-14s %s %.3f (untrained %.3f)" % (t, s["metric"], s["score"], first["scores"][t]["score"]))
assert first["step"] == 0 and last["step"] == 300, (first["step"], last["step"])
assert last["mean"] > first["mean"] + 0.05, "training did not beat the untrained model"
PY
test -f "$OUT/run/checkpoints/step-00000300/state.json"
test -f "$OUT/run/checkpoints/step-00000200/state.json"
test "$(cat "$OUT/run/checkpoints/latest")" = "step-00000300"
test -f "$OUT/run/export/adapters.safetensors"
mpirun -np 1 "$BUILD/more_export" --checkpoint "$OUT/run/checkpoints/step-00000300" --out "$OUT/export" --merge sentiment
test -f "$OUT/export/merged/sentiment/model.safetensors"
cmp "$OUT/export/adapters.safetensors" "$OUT/run/export/adapters.safetensors"
# resuming a finished run with more steps continues from step 200
mpirun -np 2 "$BUILD/more_train" --config "$SRC/launch/demo.toml" --model.path="$DATA/tiny" \
  --data.train="$DATA/shards" --train.out_dir="$OUT/run" --train.steps=320 --eval.every=0 \
  --ckpt.every=0 --train.threads=1 --train.progress=false > "$OUT/resume.log" 2>&1
grep -q "resumed from .*step-00000300 at step 300" "$OUT/resume.log"
echo "1 passed, 0 failed"
