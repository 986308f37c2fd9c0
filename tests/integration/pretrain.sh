#!/usr/bin/env bash
# more_pretrain: causal-LM training of the base weights (for the quality experiment's base).
# Checks: the held-out loss falls; the output is a loadable model (more_train fine-tunes it); the
# input model is untouched; a tied LM head stays tied (no lm_head.weight written); bad usage
# (--out = --model, several ranks) fails with a message.
set -uo pipefail
BUILD=$1; DATA=$2
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
pass=0; fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }
SRC=$(cd "$(dirname "$0")/../.." && pwd)

before=$(sha256sum "$DATA/tiny/model.safetensors" | cut -d' ' -f1)
if "$BUILD/more_pretrain" --model "$DATA/tiny" --data "$DATA/shards" --out "$OUT/base" --steps 60 \
     --log-every 20 --threads 1 > "$OUT/pt.log" 2>&1; then
  read -r start end < <(tail -1 "$OUT/pt.log" | /usr/bin/python3 -c \
    'import json,sys; j=json.load(sys.stdin); print(j["eval_loss_start"], j["eval_loss_end"])')
  /usr/bin/python3 -c "import sys; sys.exit(0 if $end < $start - 0.5 else 1)" \
    && ok "held-out loss falls ($start -> $end)" || bad "held-out loss $start -> $end"
  [ "$(grep -c '"train_loss"' "$OUT/base/pretrain.jsonl")" -eq 3 ] && ok "pretrain.jsonl logs every 20 steps" \
    || bad "pretrain.jsonl: $(cat "$OUT/base/pretrain.jsonl")"
  for f in model.safetensors config.json tokenizer.model; do
    [ -f "$OUT/base/$f" ] || bad "no $f in the output"
  done
  cmp -s "$DATA/tiny/model.safetensors" "$OUT/base/model.safetensors" && bad "weights unchanged" \
    || ok "weights written and changed"
else
  bad "more_pretrain failed: $(tail -5 "$OUT/pt.log")"
fi
[ "$(sha256sum "$DATA/tiny/model.safetensors" | cut -d' ' -f1)" = "$before" ] && ok "input model untouched" \
  || bad "input model modified"

timeout 300 mpirun -np 2 "$BUILD/more_train" --config "$SRC/launch/demo.toml" --model.path="$OUT/base" \
  --data.train="$DATA/shards" --train.out_dir="$OUT/ft" --train.steps=3 --eval.at_start=false \
  --eval.every=0 --ckpt.every=0 --train.threads=1 --train.progress=false --parallel.pp=2 > "$OUT/ft.log" 2>&1 \
  && ok "more_train fine-tunes the pretrained model (pp=2)" || bad "more_train on it: $(tail -3 "$OUT/ft.log")"

"$BUILD/make_tiny_llama" --out "$OUT/tied" --tokenizer "$DATA/tok.model" --hidden-size 32 --intermediate-size 64 \
  --layers 1 --heads 2 --kv-heads 1 --tie-embeddings --dtype f32 > /dev/null 2>&1
if "$BUILD/more_pretrain" --model "$OUT/tied" --data "$DATA/shards" --out "$OUT/tied_pt" --steps 5 \
     --threads 1 > "$OUT/tied.log" 2>&1; then
  names=$(/usr/bin/python3 -c 'import json,struct,sys; f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; print(" ".join(sorted(json.loads(f.read(n)))))' "$OUT/tied_pt/model.safetensors")
  [[ " $names " == *" model.embed_tokens.weight "* && " $names " != *" lm_head.weight "* ]] \
    && ok "tied embeddings: one tensor written" || bad "tied model wrote: $names"
else
  bad "tied pretraining failed: $(tail -3 "$OUT/tied.log")"
fi

msg=$("$BUILD/more_pretrain" --model "$DATA/tiny" --data "$DATA/shards" --out "$DATA/tiny" --steps 1 2>&1)
[ $? -ne 0 ] && grep -q "must differ from --model" <<< "$msg" && ok "--out = --model refused" \
  || bad "--out = --model: $msg"
msg=$(timeout 120 mpirun -np 2 "$BUILD/more_pretrain" --model "$DATA/tiny" --data "$DATA/shards" \
      --out "$OUT/x" --steps 1 2>&1)
[ $? -ne 0 ] && grep -q "runs as one process" <<< "$msg" && ok "several ranks refused" || bad "mpirun -np 2: $msg"
msg=$("$BUILD/more_pretrain" --model "$DATA/tiny" --data "$OUT/nowhere" --out "$OUT/y" --steps 1 2>&1)
[ $? -ne 0 ] && grep -q "nowhere" <<< "$msg" && ok "missing shards named" || bad "missing shards: $msg"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
