#!/usr/bin/env bash
# Test fixture: trains a tiny SentencePiece model on the bundled tasks, shards them into HDF5,
# and writes a tiny random LLaMA in the Hugging Face layout. Usage: make_testdata.sh BUILD OUT
set -euo pipefail
BUILD=$1
OUT=$2
SRC=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
"$BUILD/shard_data" tokenizer --manifest "$SRC/shard_data/bundled/tasks.json" \
  --out-prefix "$OUT/tok" --vocab-size 512
"$BUILD/shard_data" build --manifest "$SRC/shard_data/bundled/tasks.json" \
  --tokenizer "$OUT/tok.model" --out "$OUT/shards" --max-len 64 --rows-per-shard 700
"$BUILD/make_tiny_llama" --out "$OUT/tiny" --tokenizer "$OUT/tok.model" --hidden-size 64 \
  --intermediate-size 128 --layers 2 --heads 4 --kv-heads 2 --seed 1 --dtype f32 --init-std 0.2
"$BUILD/make_tiny_llama" --out "$OUT/tiny_bf16_sharded" --tokenizer "$OUT/tok.model" \
  --hidden-size 64 --intermediate-size 128 --layers 2 --heads 4 --kv-heads 2 --seed 2 --init-std 0.2 \
  --dtype bf16 --num-shards 2
echo "testdata ready in $OUT"
