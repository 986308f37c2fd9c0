#!/usr/bin/env bash
# The demo: set up, make the tiny model + tokenizer + HDF5 shards from the bundled tasks, then
# train MoRE adapters on 4 MPI ranks as tensor-parallel 2 x pipeline-parallel 2 (1F1B) with
# checkpointing, and export them. Re-running resumes from checkpoints/demo (delete it to start over).
# Usage: bash launch/demo.sh [--section.key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
source launch/env.sh
DATA=runs/demo/data
bash launch/bundled_data.sh "$DATA"
if [ ! -f "$DATA/tiny/model.safetensors" ]; then
  ./build/make_tiny_llama --out "$DATA/tiny" --tokenizer "$DATA/tok.model" --hidden-size 64 \
    --intermediate-size 128 --layers 2 --heads 4 --kv-heads 2 --seed 1 --dtype f32 \
    --init-std 0.2  # a random model needs O(1) weights for its frozen LM head to express confident labels
fi
mpirun -np 4 ./build/more_train --config launch/demo.toml --model.path="$DATA/tiny" \
  --data.train="$DATA/shards" --parallel.tp=2 --parallel.pp=2 --train.micro_batch=4 \
  --train.out_dir=runs/demo --ckpt.dir=checkpoints/demo "$@"
echo "metrics: runs/demo/metrics.jsonl  checkpoints: checkpoints/demo  export: runs/demo/export"
