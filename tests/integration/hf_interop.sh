#!/usr/bin/env bash
# Hugging Face interoperability, checked against the real libraries (tests/hf/hf_interop.py) and
# against the TRAINING side: every run below evaluates its trained state with eval.dump on, so
# the trainer itself writes the log-likelihood of every scored eval sequence
# (<run>/eval/step-N.jsonl, computed by the training processes on their live adapters, whatever
# their layout); transformers + peft recompute those numbers from the exported PEFT adapters
# (per-rank, per-rank with alpha_pattern removed, zero-padded uniform) and merged models.
# Runs: MoRE ("paper" scaling) on 1 rank, MoRE on tp=2 x pp=2 (4 ranks), per-component scaling,
# the released code's combination (adapter.gate=frozen_at_init + per-component scaling: its export
# must keep the ranks chosen at step 0), soft selection, plain LoRA, a few-shot transfer run (review=sentiment from the MoRE run: |T|
# of s(r_t) is the source's 5, not 1) and a run started from a PEFT adapter (adapter.init_from;
# its step-0 evaluation must equal that adapter in peft, its final one its own export).
# Also the base model and more_logits of three exports against transformers + peft (logits).
# Needs the pinned Python environment: ${SRC}/.venv (made by launch/venv.sh). About a minute (52-75 s
# measured on 2 cores).
# Usage: hf_interop.sh BUILD DATA
set -euo pipefail
BUILD=$1; DATA=$2
source "$(dirname "$0")/venv_env.sh"  # SRC, PY, OUT, offline
IDS="1,25,80,7,300,41,9,12;1,100,3,77,5,250,61,2"

train() {  # name, ranks, overrides...
  local name=$1 np=$2; shift 2
  # model.dtype pinned to float32 (checks against transformers + peft): auto is bf16 on a CPU with
  # native bf16; the final evaluation (after the final checkpoint, so of the exported state) is dumped
  mpirun -np "$np" "$BUILD/more_train" --config "$SRC/launch/demo.toml" --model.dtype=float32 \
    --model.path="$DATA/tiny" --data.train="$DATA/shards" --train.out_dir="$OUT/$name" --eval.at_start=false \
    --eval.every=0 --eval.max_samples=6 --eval.dump=true --train.threads=1 --train.progress=false \
    --ckpt.every=1000 --train.warmup=0 "$@" > "$OUT/$name.log" 2>&1 \
    || { echo "FAIL training $name"; tail -20 "$OUT/$name.log"; exit 1; }
}
export_run() {  # name, more_export args...
  local name=$1; shift
  "$BUILD/more_export" --out "$OUT/$name/ex" "$@" > "$OUT/ex_$name.log" 2>&1 || { cat "$OUT/ex_$name.log"; exit 1; }
}
logits() {  # out, args...
  local out=$1; shift
  "$BUILD/more_logits" --model "$DATA/tiny" --ids "$IDS" --out "$out" "$@"
}
tasks_of() { "$PY" -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['adapter_record']['tasks']))" "$1/adapter_config.json"; }

t0=$SECONDS
# high learning rate, few steps: B moves far from zero so the adapter changes the outputs a lot
train more 1 --train.steps=6 --train.lr=0.03
train tp2pp2 4 --train.steps=4 --train.lr=0.03 --parallel.tp=2 --parallel.pp=2
train perc 1 --train.steps=4 --train.lr=0.03 --adapter.scaling=per_component
train frozen 1 --train.steps=4 --train.lr=0.03 --adapter.scaling=per_component --adapter.gate=frozen_at_init
train soft 1 --train.steps=4 --train.lr=0.03 --adapter.selection=soft
train lora 1 --train.steps=4 --train.lr=0.03 --adapter.method=lora --adapter.rank=4
# few-shot transfer from the MoRE run (the case whose export was 5x too strong)
python3 "$SRC/shard_data/fewshot/generate.py" "$OUT/fewshot" > /dev/null
"$BUILD/shard_data" build --manifest "$OUT/fewshot/tasks.json" --tokenizer "$DATA/tok.model" --out "$OUT/fs_shards" \
  --max-len 64 > /dev/null
train transfer 1 --train.steps=4 --train.lr=0.03 --data.train="$OUT/fs_shards" \
  --transfer.from="$OUT/more/checkpoints" --transfer.tasks=review=sentiment
grep -q "|T| of s(r_t) = 5" "$OUT/transfer.log" || { echo "FAIL: the transfer run did not keep the source's |T|"; exit 1; }
echo "trained 7 runs in $((SECONDS - t0)) s"

# --checkpoint accepts the checkpoints root, the latest pointer and a step directory
export_run more --checkpoint "$OUT/more/checkpoints" --peft all --peft-uniform --merge all
export_run tp2pp2 --checkpoint "$OUT/tp2pp2/checkpoints/latest" --peft all --merge all
export_run perc --checkpoint "$OUT/perc/checkpoints/latest" --peft all --peft-uniform --merge all
export_run frozen --checkpoint "$OUT/frozen/checkpoints" --peft all --peft-uniform --merge all
# the frozen gate's ranks: the export's task_ranks are the ranks the run chose at step 0 (its first
# "ranks" metrics line), and its PEFT adapters (checked against the trainer's evaluation below) use them
"$PY" - "$OUT/frozen" <<'PY' || exit 1
import json, sys
run = sys.argv[1]
first = next(j for j in map(json.loads, open(run + "/metrics.jsonl")) if j.get("type") == "ranks")
assert first["step"] == 0, first["step"]
exported = json.load(open(run + "/ex/adapter_config.json"))
assert exported["adapter_record"]["gate"] == "frozen_at_init", exported["adapter_record"]
if exported["task_ranks"] != first["task_ranks"]:
    sys.exit("FAIL: the frozen-gate export's task_ranks differ from the ranks chosen at step 0")
tasks = exported["adapter_record"]["tasks"]
for t, name in enumerate(tasks):
    pattern = json.load(open(f"{run}/ex/peft/{name}/adapter_config.json"))["rank_pattern"]
    want = {"model." + m.rsplit(".", 1)[0] + "." + {"q": "self_attn.q_proj", "k": "self_attn.k_proj",
            "v": "self_attn.v_proj", "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
            "down": "mlp.down_proj"}[m.rsplit(".", 1)[1]]: r[t] for m, r in first["task_ranks"].items()}
    if pattern != want:
        sys.exit(f"FAIL: the PEFT adapter of '{name}' does not use the ranks chosen at step 0")
print(f"frozen gate: export and PEFT ranks = the step-0 choice ({len(first['task_ranks'])} modules, {len(tasks)} tasks)")
PY
export_run soft --checkpoint "$OUT/soft/checkpoints" --peft all --peft-uniform --merge all
export_run lora --checkpoint "$(ls -d "$OUT"/lora/checkpoints/step-* | tail -1)" --peft all --merge all
# the transfer run: the end-of-run export (<out_dir>/export) and more_export --peft/--merge from it
export_run transfer --export "$OUT/transfer/export" --model "$DATA/tiny" --peft all --peft-uniform --merge all

# a LoRA run of rank 8 started from the MoRE run's PEFT adapter of its first task: its step-0
# evaluation is the imported adapter (checked against that adapter in peft), and it then trains
first=$(tasks_of "$OUT/more/ex" | cut -d' ' -f1)
train imp 1 --train.steps=3 --train.lr=0.03 --adapter.method=lora --adapter.rank=8 \
  --adapter.init_from="$OUT/more/ex/peft/$first" --eval.at_start=true
grep -q "started from the PEFT LoRA" "$OUT/imp.log" || { echo "FAIL: the import was not logged"; exit 1; }
export_run imp --checkpoint "$OUT/imp/checkpoints" --peft all --merge all
echo "trained and exported 7 runs in $((SECONDS - t0)) s"

# more_logits of exports (the project's unmerged adapter path, reading the export's record)
logits "$OUT/base.bin"
runs=""
for r in more transfer lora; do
  ents=""
  src=$OUT/$r/ex; [ "$r" = transfer ] && src=$OUT/transfer/export
  for t in $(tasks_of "$src"); do
    logits "$OUT/$r/$t.bin" --export "$src" --task "$t"
    ents="$ents\"$t\": \"$OUT/$r/$t.bin\","
  done
  runs="$runs{\"name\": \"$r\", \"export\": \"$OUT/$r/ex\", \"logits\": {${ents%,}}, \"expect_mixed_ranks\": $([ $r = more ] && echo true || echo false)},"
done

evals=""
for r in more tp2pp2 perc frozen soft lora transfer imp; do
  steps=$(ls "$OUT/$r/eval" | sort -t- -k2 -n | tail -1)
  variants='["peft", "peft_no_alpha_pattern", "merged"'
  case $r in more|perc|frozen|soft|transfer) variants="$variants, \"uniform\"" ;; esac
  evals="$evals{\"name\": \"$r\", \"dump\": \"$OUT/$r/eval/$steps\", \"export\": \"$OUT/$r/ex\", \"variants\": $variants]},"
done

cat > "$OUT/manifest.json" <<JSON
{"ids": [[$(echo "$IDS" | sed 's/;/],[/')]], "base": "$DATA/tiny", "base_logits": "$OUT/base.bin",
 "runs": [${runs%,}],
 "evals": [${evals%,}],
 "imports": [{"peft": "$OUT/more/ex/peft/$first", "dump": "$OUT/imp/eval/step-0.jsonl", "task": "$first"}],
 "tokenizer_dirs": ["$OUT/more/ex/merged/$first", "$OUT/more/ex/peft/$first"]}
JSON
"$PY" "$SRC/tests/hf/hf_interop.py" "$OUT/manifest.json"
echo "hf_interop: $((SECONDS - t0)) s"
