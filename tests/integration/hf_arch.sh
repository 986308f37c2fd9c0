#!/usr/bin/env bash
# The supported LLaMA-family architectures against the real transformers + peft
# (tests/hf/hf_arch.py): for Llama 3 (head_dim != hidden/heads, llama3 rope scaling, tied
# embeddings), Mistral (rope_theta 1e6, no sliding window) and Qwen2 (q/k/v biases), a tiny
# random model made by transformers (save_pretrained, config in the 5.x layout, plus a copy in
# the 4.x layout) is
#   - run by more_logits on 1 rank, on the 4.x-layout copy, and under tp=2 x pp=2 (mpirun -np 4);
#   - trained with MoRE for a few steps (llama3, qwen2: also under tp=2 x pp=2, same losses as
#     1 rank), exported (--peft all --merge all), and its adapted
#     logits (more_logits --export) recomputed by PeftModel.from_pretrained and by the merged
#     model loaded in transformers.
# A Mistral config with a sliding window shorter than the sequence is refused (more_logits).
# Needs the pinned Python environment: ${SRC}/.venv (made by launch/venv.sh).
# A fourth model with linear rope scaling (llama_linear) is checked on its base logits only.
# Usage: hf_arch.sh BUILD DATA [ARCH...]   (default: llama3 mistral qwen2 llama_linear)
set -euo pipefail
BUILD=$1; DATA=$2; shift 2
ARCHS=${*:-llama3 mistral qwen2 llama_linear}
source "$(dirname "$0")/venv_env.sh"  # SRC, PY, OUT, offline
# two sequences of 20 tokens (< the shards' vocabulary of 512), past llama3's original_max_position_embeddings 16
IDS="1,25,80,7,300,41,9,12,511,3,77,5,250,61,2,400,33,18,90,6;1,100,3,77,5,250,61,2,17,44,480,8,120,9,310,27,64,11,200,4"

t0=$SECONDS
archs=""
# shellcheck disable=SC2086
"$PY" "$SRC/tests/hf/hf_arch.py" make "$OUT" $ARCHS 2> "$OUT/make.log" || { cat "$OUT/make.log"; exit 1; }
for a in $ARCHS; do
  m="$OUT/$a"
  "$BUILD/more_logits" --model "$m" --ids "$IDS" --out "$OUT/$a.bin"
  "$BUILD/more_logits" --model "$m-v4" --ids "$IDS" --out "$OUT/$a-v4.bin"
  if [ "$a" = llama_linear ]; then  # rope type linear: base logits only
    archs="$archs{\"name\": \"$a\", \"base\": \"$m\", \"logits\": \"$OUT/$a.bin\", \"logits_v4\": \"$OUT/$a-v4.bin\"},"
    continue
  fi
  mpirun -np 4 "$BUILD/more_logits" --model "$m" --ids "$IDS" --out "$OUT/$a-tp2pp2.bin" --tp 2 --pp 2 \
    > "$OUT/$a-tp2pp2.log" 2>&1 || { echo "FAIL: tp=2 x pp=2 forward of $a"; tail -20 "$OUT/$a-tp2pp2.log"; exit 1; }
  # a short MoRE run (float32: checked against transformers + peft), high learning rate so the
  # adapters move the logits far beyond the tolerance
  mpirun -np 1 "$BUILD/more_train" --config "$SRC/launch/demo.toml" --model.dtype=float32 --model.path="$m" \
    --data.train="$DATA/shards" --data.tokenizer="$DATA/tok.model" --train.out_dir="$OUT/run_$a" \
    --eval.at_start=false --eval.every=0 --train.threads=1 --train.progress=false --ckpt.every=1000 \
    --train.steps=4 --train.lr=0.03 --train.warmup=0 --train.log_every=1 > "$OUT/train_$a.log" 2>&1 \
    || { echo "FAIL training $a"; tail -20 "$OUT/train_$a.log"; exit 1; }
  # the same run under tp=2 x pp=2 (llama3: tied head on both stages, head_dim; qwen2: sharded
  # biases) must take the same steps
  if [ "$a" != mistral ]; then
    mpirun -np 4 "$BUILD/more_train" --config "$SRC/launch/demo.toml" --model.dtype=float32 --model.path="$m" \
      --data.train="$DATA/shards" --data.tokenizer="$DATA/tok.model" --train.out_dir="$OUT/run4_$a" \
      --eval.at_start=false --eval.every=0 --train.threads=1 --train.progress=false --ckpt.every=1000 \
      --train.steps=4 --train.lr=0.03 --train.warmup=0 --train.log_every=1 --parallel.tp=2 --parallel.pp=2 \
      > "$OUT/train4_$a.log" 2>&1 || { echo "FAIL training $a under tp=2 x pp=2"; tail -20 "$OUT/train4_$a.log"; exit 1; }
  fi
  "$PY" - "$OUT/run_$a/metrics.jsonl" "$a" "$OUT/run4_$a/metrics.jsonl" <<'PY'
import json, math, os, sys
def losses(p):
    return [json.loads(l)["loss"] for l in open(p) if '"train"' in l]
one = losses(sys.argv[1])
assert len(one) == 4 and all(math.isfinite(x) for x in one), one
print(f"{sys.argv[2]}: MoRE trained 4 steps, loss {one[0]:.4f} -> {one[-1]:.4f}")
if os.path.exists(sys.argv[3]):
    four = losses(sys.argv[3])
    worst = max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(one, four))
    ok = len(four) == 4 and worst <= 1e-4
    print(f"{'ok  ' if ok else 'FAIL'} {sys.argv[2]}: tp=2 x pp=2 training losses {[round(x, 5) for x in four]} "
          f"vs 1 rank, max relative diff {worst:.2e}")
    sys.exit(0 if ok else 1)
PY
  "$BUILD/more_export" --checkpoint "$OUT/run_$a/checkpoints" --out "$OUT/ex_$a" --peft all --merge all \
    > "$OUT/ex_$a.log" 2>&1 || { cat "$OUT/ex_$a.log"; exit 1; }
  ents=""
  for t in $("$PY" -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['tasks']))" "$OUT/ex_$a/adapter_config.json"); do
    "$BUILD/more_logits" --model "$m" --ids "$IDS" --out "$OUT/$a-$t.bin" --export "$OUT/ex_$a" --task "$t"
    ents="$ents\"$t\": \"$OUT/$a-$t.bin\","
  done
  archs="$archs{\"name\": \"$a\", \"base\": \"$m\", \"logits\": \"$OUT/$a.bin\", \"logits_v4\": \"$OUT/$a-v4.bin\",
   \"logits_tp2pp2\": \"$OUT/$a-tp2pp2.bin\", \"export\": \"$OUT/ex_$a\", \"tasks\": {${ents%,}}},"
  echo "$a: made, run, trained and exported in $((SECONDS - t0)) s"
done

# a sliding window shorter than the sequence: refused, naming it
mkdir -p "$OUT/window"
cp "$DATA/tiny/model.safetensors" "$OUT/window/"
"$PY" - "$DATA/tiny/config.json" "$OUT/window/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=8)
c.pop("attention_bias", None)
json.dump(c, open(sys.argv[2], "w"))
PY
if "$BUILD/more_logits" --model "$OUT/window" --ids "$IDS" --out "$OUT/window.bin" > "$OUT/window.log" 2>&1; then
  echo "FAIL: a sliding window of 8 with 20-token sequences was accepted"; exit 1
fi
grep -q "sliding_window is 8" "$OUT/window.log" || { echo "FAIL: window refusal does not name it:"; cat "$OUT/window.log"; exit 1; }
echo "ok   sliding_window 8 < 20 tokens refused: $(grep -o 'error.*' "$OUT/window.log" | head -c 160)"

echo "{\"ids\": [[$(echo "$IDS" | sed 's/;/],[/')]], \"archs\": [${archs%,}]}" > "$OUT/manifest.json"
"$PY" "$SRC/tests/hf/hf_arch.py" check "$OUT/manifest.json"
echo "hf_arch: $((SECONDS - t0)) s"
