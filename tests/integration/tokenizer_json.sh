#!/usr/bin/env bash
# Models that ship tokenizer.json (Llama 3 / Mistral / Qwen style), end to end, against the real
# libraries of the pinned venv (tests/hf/tokenizer_json.py):
#  1. a tiny Llama-3-like byte-level BPE tokenizer.json (+ tokenizer_config.json with a chat
#     template) is made with the `tokenizers` library; a tiny random model of its vocabulary size
#     with make_tiny_llama; both files go into the model directory (with the fixture's
#     tokenizer.model too: a model may ship both, as Mistral does);
#  2. launch/hf_tokenize.py makes pre-tokenized manifests (plain, and chat template with
#     --eos-token '<|eot_id|>'); shard_data build shards them;
#  3. every stored row, candidate, special id and the tokenizer hash equal what AutoTokenizer
#     gives (read back with build/tests/h5poke, not the project's shard reader); and the bundled
#     text encoded with the sentencepiece package, given as pre-tokenized rows, shards exactly as
#     the text does through shard_data's SentencePiece path;
#  4. more_train trains on the plain shards and evaluates every task (accuracy / mcc / pearson
#     scored over the candidates' ids);
#  5. refusals: shards of this tokenizer.json against a model whose tokenizer.json differs; the
#     front end on a tokenizer without BOS (and that tokenizer with --bos-token, which works), an
#     unknown --bos-token, --chat-template without a template, a model without tokenizer.json.
# Needs ${SRC}/.venv (launch/venv.sh). Usage: tokenizer_json.sh BUILD DATA
set -euo pipefail
BUILD=$1; DATA=$2
source "$(dirname "$0")/venv_env.sh"  # SRC, PY, OUT, offline
MAN="$SRC/shard_data/bundled/tasks.json"
T="$SRC/tests/hf/tokenizer_json.py"
FRONT="$SRC/launch/hf_tokenize.py"

V=$("$PY" "$T" make "$OUT/tok" "$MAN" | tail -1)
echo "tokenizer.json with $V tokens"
M="$OUT/model"
"$BUILD/make_tiny_llama" --out "$M" --vocab-size "$V" --hidden-size 64 --intermediate-size 128 --layers 2 \
  --heads 4 --kv-heads 2 --seed 5 --dtype f32 --init-std 0.2 > /dev/null
cp "$OUT/tok/tokenizer.json" "$OUT/tok/tokenizer_config.json" "$DATA/tok.model" "$M/"
mv "$M/tok.model" "$M/tokenizer.model"

# plain rows
"$PY" "$FRONT" --model "$M" --manifest "$MAN" --out "$OUT/pt" --splits train,eval
"$BUILD/shard_data" build --manifest "$OUT/pt/manifest.json" --out "$OUT/shards" --max-len 96 --overlong error \
  > "$OUT/build.log" || { cat "$OUT/build.log"; exit 1; }
"$PY" "$T" check "$M" "$MAN" "$OUT/shards" "$BUILD/tests/h5poke" plain
# chat-template rows, the end-of-turn token as EOS
"$PY" "$FRONT" --model "$M" --manifest "$MAN" --out "$OUT/ptc" --splits train --chat-template --eos-token '<|eot_id|>'
"$BUILD/shard_data" build --manifest "$OUT/ptc/manifest.json" --out "$OUT/shards_chat" --max-len 128 \
  --overlong error --splits train > "$OUT/build_chat.log" || { cat "$OUT/build_chat.log"; exit 1; }
"$PY" "$T" check "$M" "$MAN" "$OUT/shards_chat" "$BUILD/tests/h5poke" chat '<|eot_id|>'

# the pre-tokenized path is the text path: the text manifest encoded with the sentencepiece
# package gives the same shards as the text with --tokenizer (a max-len of 24 truncates the prompts
# of about 1200 rows, so the truncation rule is compared too)
"$PY" "$T" sp "$MAN" "$DATA/tok.model" "$OUT/sp"
"$BUILD/shard_data" build --manifest "$MAN" --tokenizer "$DATA/tok.model" --out "$OUT/sp_text" --max-len 24 \
  --rows-per-shard 700 > "$OUT/sp_text.log" || { cat "$OUT/sp_text.log"; exit 1; }
"$BUILD/shard_data" build --manifest "$OUT/sp/manifest.json" --out "$OUT/sp_ids" --max-len 24 \
  --rows-per-shard 700 > "$OUT/sp_ids.log" || { cat "$OUT/sp_ids.log"; exit 1; }
awk '$1 ~ /^(topic|nli|similarity)$/ && $3 > 0 { n++ } END { exit n >= 3 ? 0 : 1 }' "$OUT/sp_text.log" \
  || { echo "FAIL: --max-len 24 truncated no rows"; cat "$OUT/sp_text.log"; exit 1; }
n=0
for f in "$OUT"/sp_text/*.h5; do
  g="$OUT/sp_ids/$(basename "$f")"
  for a in tokenizer_hash max_len split tasks shard_index num_shards vocab_size bos_id eos_id pad_id; do
    [ "$("$BUILD/tests/h5poke" attr "$f" $a)" = "$("$BUILD/tests/h5poke" attr "$g" $a)" ] \
      || { echo "FAIL: $(basename "$f") attribute $a differs between the text and the pre-tokenized build"; exit 1; }
  done
  for task in sentiment topic nli acceptability similarity; do
    for d in input_ids target_mask lengths prompt_lengths label_index label_value; do
      cmp -s <("$BUILD/tests/h5poke" dump "$f" /tasks/$task/$d) <("$BUILD/tests/h5poke" dump "$g" /tasks/$task/$d) \
        || { echo "FAIL: $(basename "$f") /tasks/$task/$d differs between the text and the pre-tokenized build"; exit 1; }
      n=$((n + 1))
    done
  done
done
[ "$(ls "$OUT"/sp_ids/*.h5 | wc -l)" = "$(ls "$OUT"/sp_text/*.h5 | wc -l)" ] && [ $n -gt 0 ]
echo "ok: pre-tokenized (sentencepiece ids) and text builds agree on $n datasets and every attribute"

# train and evaluate on the plain shards
run() {  # name, model, extra args
  local name=$1 model=$2; shift 2
  timeout 300 mpirun -np 1 "$BUILD/more_train" --config "$SRC/launch/demo.toml" --model.dtype=float32 \
    --model.path="$model" --data.train="$OUT/shards" --train.out_dir="$OUT/$name" --train.steps=8 \
    --train.warmup=0 --eval.at_start=false --eval.every=0 --eval.max_samples=16 --train.threads=1 \
    --train.progress=false --ckpt.every=1000 "$@" > "$OUT/$name.log" 2>&1
}
run train "$M" || { echo "FAIL: training on tokenizer.json shards"; tail -20 "$OUT/train.log"; exit 1; }
"$PY" - "$OUT/train/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ev = [r for r in rows if r.get("type") == "eval"]
assert ev, "no eval row in metrics.jsonl"
scores = ev[-1]["scores"]
want = {"sentiment", "topic", "nli", "acceptability", "similarity"}
assert set(scores) == want, f"evaluated {sorted(scores)}, expected {sorted(want)}"
for t, s in scores.items():
    assert s["n"] == 16 and math.isfinite(s["score"]), (t, s)
train = [r for r in rows if r.get("type") == "train"]
assert train and all(math.isfinite(r["loss"]) for r in train), "no finite training loss"
print("ok: trained", len(train), "logged steps; eval", {t: round(s["score"], 3) for t, s in scores.items()})
PY

fail=0
expect_fail() {  # name, expected text, command...
  local name=$1 text=$2; shift 2
  local rc=0
  "$@" > "$OUT/$name.log" 2>&1 || rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$text" "$OUT/$name.log"; then echo "ok   $name (exit $rc)"
  else echo "FAIL $name (exit $rc)"; tail -5 "$OUT/$name.log"; fail=1; fi
}
M2="$OUT/model_other_tok"; mkdir -p "$M2"; cp "$M"/config.json "$M"/*.safetensors "$M/tokenizer_config.json" "$M2/"
sed 's/"<|eot_id|>"/"<|eot_ID|>"/' "$M/tokenizer.json" > "$M2/tokenizer.json"
run_shown() { run "$@" || { local rc=$?; cat "$OUT/$1.log"; return $rc; }; }
expect_fail other_tokenizer_json "were made with another tokenizer: their tokenizer_hash is" run_shown other "$M2"
NB="$OUT/no_bos"; mkdir -p "$NB"; cp "$M/tokenizer.json" "$NB/"
"$PY" -c "import json,sys; c=json.load(open(sys.argv[1])); c.pop('bos_token'); json.dump(c, open(sys.argv[2], 'w'))" \
  "$M/tokenizer_config.json" "$NB/tokenizer_config.json"
expect_fail front_no_bos "the tokenizer defines no BOS token" "$PY" "$FRONT" --model "$NB" --manifest "$MAN" --out "$OUT/x1"
# the same tokenizer with a BOS named on the command line (as for Qwen2.5) goes through
"$PY" "$FRONT" --model "$NB" --manifest "$MAN" --out "$OUT/nb" --splits train --bos-token '<|end_of_text|>' > /dev/null
"$PY" - "$OUT/nb" "$NB" <<'PY' || fail=1
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[2])
bos = tok.convert_tokens_to_ids("<|end_of_text|>")
man = json.load(open(sys.argv[1] + "/manifest.json"))
row = json.loads(open(sys.argv[1] + "/" + man["tasks"][0]["train"]).readline())
assert man["tokenizer"]["bos_id"] == bos and row["input_ids"][0] == bos, (man["tokenizer"], row["input_ids"][:3])
print("ok   front_bos_token_given (bos", bos, ")")
PY
expect_fail front_unknown_bos "--bos-token '<|nope|>' is not a token of this tokenizer" \
  "$PY" "$FRONT" --model "$NB" --manifest "$MAN" --out "$OUT/x2" --bos-token '<|nope|>'
NT="$OUT/no_template"; mkdir -p "$NT"; cp "$M/tokenizer.json" "$NT/"
"$PY" -c "import json,sys; c=json.load(open(sys.argv[1])); c.pop('chat_template'); json.dump(c, open(sys.argv[2], 'w'))" \
  "$M/tokenizer_config.json" "$NT/tokenizer_config.json"
expect_fail front_no_chat_template "has no chat template" "$PY" "$FRONT" --model "$NT" --manifest "$MAN" --out "$OUT/x3" --chat-template
expect_fail front_no_tokenizer_json "no tokenizer.json in" "$PY" "$FRONT" --model "$DATA/tiny" --manifest "$MAN" --out "$OUT/x4"
[ $fail -eq 0 ] || exit 1
echo "tokenizer_json: all checks passed"
