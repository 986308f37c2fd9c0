#!/usr/bin/env bash
# The demo: set up, make the tiny model + tokenizer + HDF5 shards from the bundled tasks, then
# train MoRE adapters with MPI ranks and checkpointing, and export them.
# Usage: bash launch/demo.sh [NP] [--section.key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
source launch/env.sh
NP=${1:-2}; shift || true
DATA=runs/demo/data
if [ ! -f "$DATA/tiny/model.safetensors" ]; then
  ./build/shard_data tokenizer --manifest shard_data/bundled/tasks.json --out-prefix "$DATA/tok" --vocab-size 512
  ./build/shard_data build --manifest shard_data/bundled/tasks.json --tokenizer "$DATA/tok.model" \
    --out "$DATA/shards" --max-len 64
  ./build/make_tiny_llama --out "$DATA/tiny" --tokenizer "$DATA/tok.model" --hidden-size 64 \
    --intermediate-size 128 --layers 2 --heads 4 --kv-heads 2 --seed 1 --dtype f32 \
    --init-std 0.2  # a random model needs O(1) weights for its frozen LM head to express confident labels
fi
mpirun -np "$NP" ./build/more_train --config launch/demo.toml --model.path="$DATA/tiny" \
  --data.train="$DATA/shards" --train.out_dir=runs/demo --ckpt.dir=checkpoints/demo "$@"
echo "metrics: runs/demo/metrics.jsonl  checkpoints: checkpoints/demo  export: runs/demo/export"
