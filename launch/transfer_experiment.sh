#!/usr/bin/env bash
# Few-shot domain transfer (docs/method.md, paper Sec. 5): the bundled few-shot task "review"
# (8 examples per class, metric f1) trained from a MoRE checkpoint of launch/experiment.sh with
# its embeddings from sentiment (related) or topic (unrelated), against MoRE and LoRA r8 trained
# from scratch on the same 16 examples. Same steps and seeds for all; prints a table.
# Usage: bash launch/transfer_experiment.sh SOURCE_RUN [SEEDS="1 2 3"] [STEPS=100]
#   SOURCE_RUN: an experiment run directory (e.g. runs/exp2k/more_r8-s2) whose base and data
#   are SOURCE_RUN/../base and ../data. OUT=<SOURCE_RUN>-transfer, BIN=build, THREADS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$1; SEEDS=${2:-1 2 3}; STEPS=${3:-100}
EXP=$(dirname "$SRC"); OUT=${OUT:-$SRC-transfer}; BIN=${BIN:-./build}; THREADS=${THREADS:-1}
source launch/env.sh
mkdir -p "$OUT"
[ -f "$OUT/shards/train-00000-of-00001.h5" ] || {
  python3 shard_data/fewshot/generate.py "$OUT/fewshot"
  "$BIN"/shard_data build --manifest "$OUT/fewshot/tasks.json" --tokenizer "$EXP/data/tok.model" \
    --out "$OUT/shards" --max-len 64 > /dev/null; }
declare -A CFG=(
  [transfer_sentiment]="--adapter.method=more --transfer.from=$SRC/checkpoints --transfer.tasks=review=sentiment"
  [transfer_topic]="--adapter.method=more --transfer.from=$SRC/checkpoints --transfer.tasks=review=topic"
  [scratch_more]="--adapter.method=more"
  [scratch_lora_r8]="--adapter.method=lora"
)
ORDER="transfer_sentiment transfer_topic scratch_more scratch_lora_r8"
for s in $SEEDS; do
  for c in $ORDER; do
    out=$OUT/$c-s$s
    grep -q "\"step\":$STEPS,.*\"type\":\"eval\"" "$out/metrics.jsonl" 2> /dev/null && continue
    rm -rf "$out"
    # model.dtype pinned to float32 (the fp32 runs docs/results.md reports): auto is bf16 on a CPU with native bf16
    mpirun -np 1 "$BIN"/more_train --config launch/demo.toml --model.dtype=float32 --model.path="$EXP/base" --data.train="$OUT/shards" \
      --train.out_dir="$out" --train.threads="$THREADS" --train.progress=false --train.steps="$STEPS" \
      --train.seed="$s" --train.global_batch=16 --train.warmup=10 --eval.every=$((STEPS / 2)) \
      --eval.max_samples=0 --ckpt.every="$STEPS" --adapter.rank=8 ${CFG[$c]} > "$out.log" 2>&1 \
      || { echo "FAILED: see $out.log"; exit 1; }
    echo "$c seed $s: $(grep "eval @ step $STEPS" "$out.log" | sed 's/.*\] //')"
  done
done
/usr/bin/python3 launch/exp_table.py "$OUT" $ORDER | tee "$OUT/results.md"
