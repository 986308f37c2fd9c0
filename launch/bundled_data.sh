#!/usr/bin/env bash
# The bundled multi-task set as the demo, the experiment and the benchmarks use it: a
# SentencePiece model of 512 pieces trained on it (DIR/tok.model) and HDF5 shards of rows up to
# 64 tokens (DIR/shards, train and eval splits). Does nothing when DIR/shards already holds both.
# Usage: bash launch/bundled_data.sh DIR   (from the repository root, after the build)
set -euo pipefail
DIR=$1; BUILD=${BUILD:-./build}   # BUILD: the build tree whose shard_data to use
ls "$DIR"/shards/train-*.h5 "$DIR"/shards/eval-*.h5 > /dev/null 2>&1 && exit 0
"$BUILD"/shard_data tokenizer --manifest shard_data/bundled/tasks.json --out-prefix "$DIR/tok" --vocab-size 512
"$BUILD"/shard_data build --manifest shard_data/bundled/tasks.json --tokenizer "$DIR/tok.model" \
  --out "$DIR/shards" --max-len 64
