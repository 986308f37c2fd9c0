#!/usr/bin/env bash
# Bad input under mpirun: every case must end all ranks with a non-zero exit and a message
# naming the problem (and never hang: each run has a time limit).
set -uo pipefail
BUILD=$1; DATA=$2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
pass=0; fail=0
expect_fail() {  # name, expected text, args...
  local name=$1 text=$2; shift 2
  timeout 120 mpirun -np 2 ${MPIARGS:-} "$BUILD/more_train" --config "$SRC/launch/demo.toml" --model.path="$DATA/tiny" \
    --data.train="$DATA/shards" --train.out_dir="$OUT/$name" --train.steps=2 --eval.at_start=false \
    --train.threads=1 "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q -- "$text" "$OUT/$name.log"; then
    pass=$((pass+1)); echo "ok   $name (exit $rc)"
  else
    fail=$((fail+1)); echo "FAIL $name (exit $rc)"; tail -5 "$OUT/$name.log"
  fi
}
mkdir -p "$OUT/empty_shards" "$OUT/trunc"
cp "$DATA/tiny/config.json" "$DATA/tiny/tokenizer.model" "$OUT/trunc/"
head -c 20000 "$DATA/tiny/model.safetensors" > "$OUT/trunc/model.safetensors"
mkdir -p "$OUT/corrupt"; cp "$DATA"/shards/*.h5 "$OUT/corrupt/"
f=$(ls "$OUT"/corrupt/train-*.h5 | head -1); head -c 3000 "$f" > "$f.x" && mv "$f.x" "$f"
expect_fail unknown_key "train.stepz" --train.stepz=3
expect_fail bad_value "is not a valid integer" --train.steps=many
expect_fail unknown_task "nosuchtask" --data.tasks=nosuchtask
expect_fail missing_shards "empty_shards" --data.train="$OUT/empty_shards"
expect_fail corrupt_shard "train-" --data.train="$OUT/corrupt"
expect_fail truncated_weights "truncated" --model.path="$OUT/trunc"
expect_fail layout_world "world size 2" --parallel.tp=4
expect_fail batch_divide "train.global_batch" --train.global_batch=12
expect_fail nan_stop "non-finite" --train.lr=1e30 --train.grad_clip=0 --train.steps=30
# one rank fails while the others wait in a collective / pipeline receive: all must end
export MORE_FAIL_AT=1:2
MPIARGS="-x MORE_FAIL_AT" expect_fail rank1_fails_dp "injected failure" --train.steps=5
MPIARGS="-x MORE_FAIL_AT" expect_fail rank1_fails_pp "injected failure" --train.steps=5 --parallel.pp=2
export MORE_FAIL_AT=0:3
MPIARGS="-x MORE_FAIL_AT" expect_fail rank0_fails_tp "injected failure" --train.steps=5 --parallel.tp=2
unset MORE_FAIL_AT
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
