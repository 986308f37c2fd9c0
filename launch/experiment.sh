#!/usr/bin/env bash
# The quality experiment of docs/results.md: pretrain a small LLaMA on the bundled tasks' text,
# then fine-tune LoRA r8 / r16, MoRE r8 and its ablations on the bundled multi-task set, each
# for the same steps and seeds, and tabulate the final eval scores (mean +- std over seeds).
# Usage: bash launch/experiment.sh [SEEDS="1 2 3"] [STEPS=600]
#   EXP=runs/exp (output root), CONFIGS="lora_r8 more_r8 ..." (a subset), THREADS=2,
#   BIN=build (the binaries: point it at a copy to keep editing and rebuilding while runs go on;
#   anything but build/ skips launch/setup.sh).
# Re-running skips finished runs (delete $EXP/<config>-s<seed> to redo one).
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-1 2 3}; STEPS=${2:-600}
EXP=${EXP:-runs/exp}; THREADS=${THREADS:-2}; BIN=${BIN:-./build}
[ "$BIN" = ./build ] && bash launch/setup.sh > /dev/null
source launch/env.sh
DATA=$EXP/data
BUILD=$BIN bash launch/bundled_data.sh "$DATA"
# 1. the base: random init (std 0.02), then causal-LM pretraining on the tasks' inputs only
if [ ! -f "$EXP/base/model.safetensors" ]; then
  "$BIN"/make_tiny_llama --out "$EXP/random" --tokenizer "$DATA/tok.model" --hidden-size 128 \
    --intermediate-size 256 --layers 4 --heads 4 --kv-heads 2 --seed 1 --dtype f32
  "$BIN"/more_pretrain --model "$EXP/random" --data "$DATA/shards" --out "$EXP/base" --steps 800 \
    --lr 2e-3 --log-every 100 --threads "$THREADS"
fi
# 2. the adapter runs: one line per configuration, the overrides on top of launch/demo.toml
declare -A CFG=(
  [lora_r8]="--adapter.method=lora --adapter.rank=8"
  [lora_r16]="--adapter.method=lora --adapter.rank=16 --adapter.alpha=32"
  [more_r8]="--adapter.method=more --adapter.rank=8"
  [more_normal_init]="--adapter.method=more --adapter.rank=8 --adapter.task_emb_init=normal --adapter.task_emb_std=0.01"
  [more_soft]="--adapter.method=more --adapter.rank=8 --adapter.selection=soft"
  [more_no_cl]="--adapter.method=more --adapter.rank=8 --adapter.lambda_cl=0"
  [more_uniform]="--adapter.method=more --adapter.rank=8 --data.sampling=uniform"
  [more_no_scaling]="--adapter.method=more --adapter.rank=8 --adapter.scaling=none"
  # Table 5 "w/o task embeddings": the gate reads one learned input shared by all tasks (so every
  # task gets the same expert); the contrastive loss needs per-task embeddings and is off
  [more_no_task_emb]="--adapter.method=more --adapter.rank=8 --adapter.gate_input=shared --adapter.lambda_cl=0"
  # Table 5 "w/ subset experts" (our reading, docs/method.md): only the even ranks are experts
  [more_subset_experts]="--adapter.method=more --adapter.rank=8 --adapter.experts=2,4,6,8"
)
ORDER=${CONFIGS:-lora_r8 lora_r16 more_r8 more_normal_init more_soft more_no_cl more_uniform more_no_scaling more_no_task_emb more_subset_experts}
for c in $ORDER; do
  for s in $SEEDS; do
    out=$EXP/$c-s$s
    grep -q "\"step\":$STEPS,.*\"type\":\"eval\"" "$out/metrics.jsonl" 2> /dev/null && continue
    rm -rf "$out"
    echo "== $c seed $s"
    # model.dtype pinned to float32 (the fp32 runs docs/results.md reports): auto is bf16 on a CPU with native bf16
    mpirun -np 1 "$BIN"/more_train --config launch/demo.toml --model.dtype=float32 --model.path="$EXP/base" \
      --data.train="$DATA/shards" --train.out_dir="$out" --ckpt.dir="$out/checkpoints" \
      --train.threads="$THREADS" --train.progress=false --train.steps="$STEPS" --train.seed="$s" \
      --eval.every=$((STEPS / 3)) --eval.max_samples=1000 --ckpt.every="$STEPS" ${CFG[$c]} \
      > "$out.log" 2>&1 || { echo "FAILED: see $out.log"; exit 1; }
    grep "eval @ step $STEPS" "$out.log" | sed 's/.*\] //'
  done
done
/usr/bin/python3 launch/exp_table.py "$EXP" $ORDER > "$EXP/results.md"
/usr/bin/python3 launch/rank_counts.py "$EXP" $ORDER --steps 0 60 600 "$STEPS" >> "$EXP/results.md" || true
cat "$EXP/results.md"
/usr/bin/python3 launch/plot.py loss $(for c in lora_r8 more_r8; do echo "$EXP/$c-s1"; done) --out "$EXP/loss.png" \
  --labels "LoRA r8,MoRE r8" || true
/usr/bin/python3 launch/plot.py ranks "$EXP/more_r8-s1" --out "$EXP/ranks.png" || true
/usr/bin/python3 launch/plot.py embeddings "$EXP/more_r8-s1/checkpoints/step-$(printf %08d "$STEPS")" \
  --out "$EXP/embeddings.png" || true
