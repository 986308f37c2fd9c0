#!/usr/bin/env bash
# Hugging Face interoperability, checked against the real libraries (tests/hf/hf_interop.py):
# trains tiny runs (MoRE with "paper" scaling, MoRE with per-component scaling, plain LoRA),
# exports each as PEFT adapters (per-rank and zero-padded uniform) and merged models, computes
# the project's own logits with more_logits, and has transformers + peft recompute them.
# Also a run started from a PEFT adapter (adapter.init_from) must reproduce that adapter.
# Needs the pinned Python environment: ${SRC}/.venv (made by launch/venv.sh).
# Usage: hf_interop.sh BUILD DATA
set -euo pipefail
BUILD=$1; DATA=$2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PY="$SRC/.venv/bin/python"
if [ ! -x "$PY" ]; then
  echo "FAIL: $PY is missing: run 'bash launch/venv.sh' (it makes .venv with transformers and peft)" >&2
  exit 1
fi
OUT=$(mktemp -d)
trap '[ -n "${KEEP_OUT:-}" ] || rm -rf "$OUT"' EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
IDS="1,25,80,7,300,41,9,12;1,100,3,77,5,250,61,2"

train() {  # name, overrides...
  local name=$1; shift
  # model.dtype pinned to float32 (checks against transformers + peft): auto is bf16 on a CPU with native bf16
  mpirun -np 1 "$BUILD/more_train" --config "$SRC/launch/demo.toml" --model.dtype=float32 --model.path="$DATA/tiny" \
    --data.train="$DATA/shards" --train.out_dir="$OUT/$name" --eval.at_start=false --eval.every=0 \
    --train.threads=1 --train.progress=false --ckpt.every=1000 "$@" > "$OUT/$name.log" 2>&1 \
    || { echo "FAIL training $name"; tail -20 "$OUT/$name.log"; exit 1; }
}
logits() {  # out, args...
  local out=$1; shift
  "$BUILD/more_logits" --model "$DATA/tiny" --ids "$IDS" --out "$out" "$@"
}
tasks_of() { "$PY" -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['tasks']))" "$1/adapter_config.json"; }

t0=$SECONDS
# high learning rate, few steps: B moves far from zero so the adapter changes the logits a lot
train more --train.steps=6 --train.lr=0.03 --train.warmup=0
train perc --train.steps=4 --train.lr=0.03 --train.warmup=0 --adapter.scaling=per_component
train lora --train.steps=4 --train.lr=0.03 --train.warmup=0 --adapter.method=lora --adapter.rank=4
echo "trained 3 runs in $((SECONDS - t0)) s"

# --checkpoint accepts the checkpoints root, the latest pointer and a step directory
"$BUILD/more_export" --checkpoint "$OUT/more/checkpoints" --out "$OUT/more/ex" --peft all --peft-uniform --merge all > "$OUT/ex_more.log" 2>&1 \
  || { cat "$OUT/ex_more.log"; exit 1; }
"$BUILD/more_export" --checkpoint "$OUT/perc/checkpoints/latest" --out "$OUT/perc/ex" --peft all --peft-uniform > "$OUT/ex_perc.log" 2>&1 \
  || { cat "$OUT/ex_perc.log"; exit 1; }
"$BUILD/more_export" --checkpoint "$(ls -d "$OUT"/lora/checkpoints/step-* | tail -1)" --out "$OUT/lora/ex" --peft all --merge all > "$OUT/ex_lora.log" 2>&1 \
  || { cat "$OUT/ex_lora.log"; exit 1; }

logits "$OUT/base.bin"
runs=""
for r in more perc lora; do
  ents=""
  for t in $(tasks_of "$OUT/$r/ex"); do
    logits "$OUT/$r/$t.bin" --export "$OUT/$r/ex" --task "$t"
    ents="$ents\"$t\": \"$OUT/$r/$t.bin\","
  done
  case $r in
    more) extra='"uniform": true, "merged": true, "expect_mixed_ranks": true' ;;
    perc) extra='"uniform": true' ;;
    lora) extra='"merged": true' ;;
  esac
  runs="$runs{\"name\": \"$r\", \"export\": \"$OUT/$r/ex\", \"logits\": {${ents%,}}, $extra},"
done

# import: a LoRA run of rank 8 started from the MoRE run's PEFT adapter of its first task, with
# lr 1e-30 (no change at float precision), must give that PEFT adapter's outputs (ranks r_t < 8 land in the first ranks, the rest add 0)
first=$(tasks_of "$OUT/more/ex" | cut -d' ' -f1)
train imp --train.steps=1 --train.lr=1e-30 --train.warmup=0 --adapter.method=lora --adapter.rank=8 \
  --adapter.init_from="$OUT/more/ex/peft/$first"
grep -q "started from the PEFT LoRA" "$OUT/imp.log" || { echo "FAIL: the import was not logged"; exit 1; }
"$BUILD/more_export" --checkpoint "$OUT/imp/checkpoints" --out "$OUT/imp/ex" > /dev/null 2>&1
logits "$OUT/imp/out.bin" --export "$OUT/imp/ex" --task "$first"

cat > "$OUT/manifest.json" <<JSON
{"ids": [[$(echo "$IDS" | sed 's/;/],[/')]], "base": "$DATA/tiny", "base_logits": "$OUT/base.bin",
 "runs": [${runs%,}],
 "imports": [{"peft": "$OUT/more/ex/peft/$first", "logits": "$OUT/imp/out.bin"}],
 "tokenizer_dirs": ["$OUT/more/ex/merged/$first", "$OUT/more/ex/peft/$first"]}
JSON
"$PY" "$SRC/tests/hf/hf_interop.py" "$OUT/manifest.json"
echo "hf_interop: $((SECONDS - t0)) s"
