#!/usr/bin/env bash
# A task set's data as the demo, the experiment and the benchmarks use it: a SentencePiece model
# of 512 pieces trained on it (DIR/tok.model) and HDF5 shards of rows up to 64 tokens (DIR/shards,
# train and eval splits). Does nothing when DIR/shards already holds both.
# Usage: bash launch/bundled_data.sh DIR [TASKSET]   (from the repository root, after the build)
#   TASKSET bundled (default): the checked-in set shard_data/bundled/tasks.json
#           capacity: the mix of shard_data/capacity/generate.py (issue 24 item 5), generated
#                     into DIR/text with its defaults and seed 1
set -euo pipefail
DIR=$1; SET=${2:-bundled}; BUILD=${BUILD:-./build}   # BUILD: the build tree whose shard_data to use
ls "$DIR"/shards/train-*.h5 "$DIR"/shards/eval-*.h5 > /dev/null 2>&1 && exit 0
case $SET in
  bundled) MANIFEST=shard_data/bundled/tasks.json ;;
  capacity) /usr/bin/python3 shard_data/capacity/generate.py "$DIR/text"; MANIFEST=$DIR/text/tasks.json ;;
  *) echo "bundled_data.sh: unknown task set '$SET' (bundled, capacity)" >&2; exit 2 ;;
esac
"$BUILD"/shard_data tokenizer --manifest "$MANIFEST" --out-prefix "$DIR/tok" --vocab-size 512
"$BUILD"/shard_data build --manifest "$MANIFEST" --tokenizer "$DIR/tok.model" \
  --out "$DIR/shards" --max-len 64
