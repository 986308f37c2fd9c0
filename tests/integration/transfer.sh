#!/usr/bin/env bash
# Few-shot domain transfer end to end: a MoRE run on the bundled tasks, then a run on the bundled
# few-shot task "review" (16 rows, metric f1) started from its checkpoint with
# --transfer.tasks=review=sentiment. Checks: at step 0 the new task chooses, in every module,
# the rank the source run's sentiment chose at its end (its embeddings are sentiment's); the
# transfer run trains, evaluates review with f1 and exports.
# Usage: transfer.sh BUILD DATA
set -euo pipefail
BUILD=$1; DATA=$2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
python3 "$SRC/shard_data/fewshot/generate.py" "$OUT/fewshot"
"$BUILD/shard_data" build --manifest "$OUT/fewshot/tasks.json" --tokenizer "$DATA/tok.model" --out "$OUT/fs_shards" \
  --max-len 64 > /dev/null
common=(--config "$SRC/launch/demo.toml" --model.path="$DATA/tiny" --train.threads=1 --train.progress=false
        --eval.max_samples=40 --train.log_every=5 --ckpt.every=0)
mpirun -np 1 "$BUILD/more_train" "${common[@]}" --data.train="$DATA/shards" --train.out_dir="$OUT/src" \
  --train.steps=10 --eval.at_start=false > "$OUT/src.log" 2>&1 || { tail "$OUT/src.log"; exit 1; }
mpirun -np 1 "$BUILD/more_train" "${common[@]}" --data.train="$OUT/fs_shards" --train.out_dir="$OUT/dst" \
  --train.steps=10 --train.warmup=2 --transfer.from="$OUT/src/checkpoints" --transfer.tasks=review=sentiment \
  > "$OUT/dst.log" 2>&1 || { tail "$OUT/dst.log"; exit 1; }
grep -q "transfer: task 'review' starts from the embeddings of 'sentiment'" "$OUT/dst.log"
python3 - "$OUT/src/metrics.jsonl" "$OUT/dst/metrics.jsonl" <<'PY'
import json, sys
def lines(p, kind):
    return [j for j in map(json.loads, open(p)) if j.get("type") == kind]
src = lines(sys.argv[1], "ranks")[-1]
dst = lines(sys.argv[2], "ranks")
assert dst[0]["step"] == 0 and dst[0]["task_names"] == ["review"], dst[0]
s = src["task_names"].index("sentiment")
for m, ranks in dst[0]["task_ranks"].items():
    assert ranks == [src["task_ranks"][m][s]], (m, ranks, src["task_ranks"][m])
ev = lines(sys.argv[2], "eval")
assert ev[-1]["step"] == 10 and ev[-1]["scores"]["review"]["metric"] == "f1", ev[-1]
assert "accuracy" in ev[-1]["scores"]["review"]
print("transfer ok: review starts at sentiment's ranks in", len(dst[0]["task_ranks"]), "modules; f1 at step 10 =",
      ev[-1]["scores"]["review"]["score"])
PY
test -f "$OUT/dst/export/adapter_config.json"
