#!/usr/bin/env bash
# Runs every measurement of docs/benchmarks.md and appends one JSON line per result to
# $BENCH/results.jsonl (default runs/bench). Builds the models and data it needs first:
#   tiny  : the demo model (hidden 64, 2 layers) on the bundled tasks (max_len 64)
#   mid   : hidden 384, 8 layers, vocab 8192 (~20M parameters)   } on "long" rows: 12 examples
#   100m  : hidden 768, 12 layers, vocab 8192 (~98M parameters)  } of a task per row, 256 tokens
# Usage: bash launch/bench.sh [SECTIONS="matmul train ratio pipeline tp loader ckpt"]  (also: profile peer item4 realdata)
# Run it on an otherwise idle machine: every section measures wall time.
# BENCH_SETUP=0: skip launch/setup.sh and use build/ and build-t211/ as they are (e.g. to measure
# a trainer built earlier, without rebuilding it first).
set -euo pipefail
cd "$(dirname "$0")/.."
SECTIONS=${1:-matmul train ratio pipeline tp loader ckpt}
BENCH=${BENCH:-runs/bench}; OUTF=$BENCH/results.jsonl
SETUP=${BENCH_SETUP:-1}
[ "$SETUP" = 0 ] || bash launch/setup.sh > /dev/null
source launch/env.sh
B=./build/more_bench
mkdir -p "$BENCH"

# ---- models and data -------------------------------------------------------------------------
TOK=$BENCH/tok.model
bash launch/bundled_data.sh "$BENCH"
if ! ls "$BENCH"/long/shards/train-*.h5 > /dev/null 2>&1; then
  # 12 consecutive examples of one task per row ("... answer: <target> ." joined), last target kept
  /usr/bin/python3 - "$BENCH/long" <<'PY'
import json, os, sys
out = sys.argv[1]; src = "shard_data/bundled"
m = json.load(open(os.path.join(src, "tasks.json")))
for t in m["tasks"]:
    rows = [json.loads(l) for l in open(os.path.join(src, t["train"])) if l.strip()]
    os.makedirs(os.path.join(out, t["name"]), exist_ok=True)
    with open(os.path.join(out, t["name"], "train.jsonl"), "w") as f:
        for i in range(0, len(rows) - 11, 12):
            g = rows[i:i + 12]
            ctx = " . ".join(r["input"] + " " + str(r["target"]) for r in g[:-1])
            f.write(json.dumps({"input": ctx + " . " + g[-1]["input"], "target": g[-1]["target"]}) + "\n")
    t["train"] = t["name"] + "/train.jsonl"; t.pop("eval", None)
json.dump(m, open(os.path.join(out, "tasks.json"), "w"), indent=1)
PY
  ./build/shard_data build --manifest "$BENCH/long/tasks.json" --tokenizer "$TOK" --out "$BENCH/long/shards" \
    --max-len 256 --splits train
fi
mk() {  # name hidden inter layers heads vocab
  [ -f "$BENCH/$1/model.safetensors" ] && return
  ./build/make_tiny_llama --out "$BENCH/$1" --tokenizer "$TOK" --vocab-size "$6" --hidden-size "$2" \
    --intermediate-size "$3" --layers "$4" --heads "$5" --kv-heads "$5" --seed 1 --dtype f32 > /dev/null
}
mk tiny 64 128 2 4 512
mk mid 384 1024 8 6 8192
mk llama100m 768 2048 12 12 8192

# fp32 unless a section says otherwise (model.dtype=auto would pick bf16 on a CPU with native bf16;
# the sections below are the fp32 history of this file; profile and peer are the bf16 ones)
COMMON=(--config launch/demo.toml --adapter.dropout=0 --eval.every=0 --ckpt.every=0 --bench.out="$OUTF")
F32=(--model.dtype=float32)
TINY=(--model.path="$BENCH/tiny" --data.train="$BENCH/shards" --data.bucket=64)
MID=(--model.path="$BENCH/mid" --data.train="$BENCH/long/shards" --data.bucket=256)
BIG=(--model.path="$BENCH/llama100m" --data.train="$BENCH/long/shards" --data.bucket=256)
run() { echo "== $*" >&2; "$@" 2>&1 | grep -E '^(BENCH|  )' || true; }

for s in $SECTIONS; do case $s in
matmul)
  run $B matmul --bench.threads=1 --bench.dtype=float32 --bench.out="$OUTF"
  run $B matmul --bench.threads=2 --bench.dtype=float32 --bench.out="$OUTF"
  run $B matmul --bench.threads=2 --bench.dtype=bfloat16 --bench.out="$OUTF" ;;
train)  # one rank, 2 threads: throughput, MFU, peak RSS vs the planner
  run mpirun -np 1 $B train "${COMMON[@]}" "${F32[@]}" "${TINY[@]}" --train.threads=2 --train.global_batch=16 \
    --train.micro_batch=16 --bench.steps=20 --bench.tag=tiny
  # 100m at the trainer's default bucket (pad each batch to a multiple of 16 tokens), then with
  # every batch padded to 256 (fixed shapes, more padding)
  run mpirun -np 1 $B train "${COMMON[@]}" "${F32[@]}" "${BIG[@]}" --data.bucket=16 --train.threads=2 --train.global_batch=8 \
    --train.micro_batch=8 --bench.warmup=1 --bench.steps=5 --bench.tag=100m
  run mpirun -np 1 $B train "${COMMON[@]}" "${F32[@]}" "${BIG[@]}" --train.threads=2 --train.global_batch=8 \
    --train.micro_batch=8 --bench.warmup=1 --bench.steps=5 --bench.tag=100m_b256 ;;
ratio)  # MoRE r8 vs LoRA r8, same batches, alternating
  run mpirun -np 1 $B ratio "${COMMON[@]}" "${F32[@]}" "${TINY[@]}" --train.threads=2 --train.global_batch=16 \
    --train.micro_batch=16 --bench.steps=30 --bench.tag=tiny
  run mpirun -np 1 $B ratio "${COMMON[@]}" "${F32[@]}" "${MID[@]}" --train.threads=2 --train.global_batch=8 \
    --train.micro_batch=8 --bench.warmup=1 --bench.steps=4 --bench.tag=mid ;;
pipeline)  # pp = 1, 2, 4 at a fixed global batch of 16 rows, m = 16 / micro micro-batches
  run mpirun -np 1 $B train "${COMMON[@]}" "${F32[@]}" "${MID[@]}" --train.threads=2 --train.global_batch=16 \
    --train.micro_batch=16 --bench.warmup=1 --bench.steps=3 --bench.tag=pp1_m1
  for m in 2 4 8; do
    run mpirun -np 2 $B train "${COMMON[@]}" "${F32[@]}" "${MID[@]}" --train.threads=1 --parallel.pp=2 \
      --train.global_batch=16 --train.micro_batch=$((16 / m)) --bench.warmup=1 --bench.steps=3 --bench.tag=pp2_m$m
  done
  for m in 4 8; do  # 4 ranks on 2 cores: oversubscribed, shows the schedule's cost, not a speed-up
    run mpirun -np 4 $B train "${COMMON[@]}" "${F32[@]}" "${MID[@]}" --train.threads=1 --parallel.pp=4 \
      --train.global_batch=16 --train.micro_batch=$((16 / m)) --bench.warmup=1 --bench.steps=3 --bench.tag=pp4_m$m
  done ;;
tp)
  run mpirun -np 1 $B train "${COMMON[@]}" "${F32[@]}" "${MID[@]}" --train.threads=2 --train.global_batch=8 \
    --train.micro_batch=8 --bench.warmup=1 --bench.steps=3 --bench.tag=tp1
  run mpirun -np 2 $B train "${COMMON[@]}" "${F32[@]}" "${MID[@]}" --train.threads=1 --parallel.tp=2 --train.global_batch=8 \
    --train.micro_batch=8 --bench.warmup=1 --bench.steps=3 --bench.tag=tp2
  run mpirun -np 2 $B train "${COMMON[@]}" "${F32[@]}" "${MID[@]}" --train.threads=1 --parallel.dp=2 --train.global_batch=8 \
    --train.micro_batch=4 --bench.warmup=1 --bench.steps=3 --bench.tag=dp2 ;;
loader)
  run mpirun -np 1 $B loader "${COMMON[@]}" "${F32[@]}" "${TINY[@]}" --train.threads=2 --train.global_batch=16 \
    --train.micro_batch=16 --bench.seconds=5 --bench.tag=tiny ;;
ckpt)
  run mpirun -np 1 $B ckpt "${COMMON[@]}" "${F32[@]}" "${BIG[@]}" --train.threads=2 --adapter.rank=64 --bench.tag=100m_r64 ;;
profile)  # where a bf16 step's time goes: one step of the 100m run under the autograd profiler
  [ "$SETUP" = 0 ] || bash launch/setup.sh --torch211 > /dev/null
  run mpirun -np 1 ./build-t211/more_bench train "${COMMON[@]}" "${BIG[@]}" --model.dtype=bfloat16 --train.threads=2 \
    --train.global_batch=8 --train.micro_batch=8 --bench.warmup=1 --bench.steps=1 --bench.profile="$BENCH/profile_100m_bf16" \
    --bench.tag=profile_100m_bf16
  /usr/bin/python3 launch/trace_summary.py "$BENCH/profile_100m_bf16.rank0.json" ;;
realdata)  # real (non-pad) tokens/s on real example lengths (docs/benchmarks.md, "Real data"):
  # the trainer padded (today's bucketing, data.bucket=16) and packed (--data.packing=true, when
  # the build has it) vs the eager and compiled peers on the SAME examples in the same micro-batches
  # (more_bench batches writes them; peer_bench.py --batches pads each to its longest example, as
  # transformers' collators do). Data sets (REALDATA_SETS): bundled (the bundled tasks, natural
  # lengths 6-36 tokens, rows of up to 64; 32 examples per step) and longtail (4 tasks of
  # log-uniform 10-256 token examples, shard_data/longtail/generate.py; 16 examples per step).
  # Shapes (REALDATA_SHAPES, default mid): mid (~20M, seconds per run) and 100m; bf16 base, r8,
  # one rank, REALDATA_THREADS (2) threads. Sides (REALDATA_SIDES, default "padded packed eager
  # compiled"): the trainer MoRE r8 padded and packed, the peers LoRA r8; also padded_lora,
  # packed_lora (the trainer with LoRA r8), hf (transformers + PEFT), padded_b1 (the trainer
  # padded to each batch's longest example as the peers are: data.bucket=1), packed_long
  # (packed into rows of up to REALDATA_PACK_LEN (256) tokens: data.pack_len) and packed_b1
  # (packed, the row length not rounded: data.bucket=1). REALDATA_ROUNDS (5)
  # alternations, 2 warm-up and REALDATA_STEPS (3) timed steps per run. The defaults took 19 min
  # on the 2-vCPU EPYC under a load of ~10 with 1 thread (docs/benchmarks.md §13); the 100m shape
  # took 15 min per data set there (REALDATA_SHAPES=100m REALDATA_SETS=bundled, then =longtail).
  # The full set (REALDATA_SHAPES="mid 100m", all six trainer/peer sides) would take an estimated
  # ~1.5 h there (not run).
  [ "$SETUP" = 0 ] || bash launch/setup.sh --torch211 > /dev/null
  if ! ls "$BENCH"/longtail/shards/train-*.h5 > /dev/null 2>&1; then
    /usr/bin/python3 shard_data/longtail/generate.py "$BENCH/longtail" --tokenizer "$TOK" --vocab-size 512
    ./build/shard_data build --manifest "$BENCH/longtail/manifest.json" --out "$BENCH/longtail/shards" \
      --max-len 256 --splits train > /dev/null
  fi
  touch "$OUTF"  # a fresh BENCH has none yet (cat of a missing file failed the pipe under pipefail)
  first=$(( $(wc -l < "$OUTF") + 1 ))
  RB=./build-t211/more_bench; STEPS=${REALDATA_STEPS:-3}; TH=${REALDATA_THREADS:-2}; PACKED=1
  SIDES=${REALDATA_SIDES:-padded packed eager compiled}
  SETS=${REALDATA_SETS:-bundled longtail}
  for shape in ${REALDATA_SHAPES:-mid}; do
    model=$BENCH/$shape; [ "$shape" = 100m ] && model=$BENCH/llama100m
    for set in $SETS; do
      if [ "$set" = bundled ]; then D=(--data.train="$BENCH/shards"); mb=32; else D=(--data.train="$BENCH/longtail/shards"); mb=16; fi
      RT=(--model.path="$model" "${D[@]}" --data.bucket=16 --model.dtype=bfloat16 --train.threads="$TH"
          --train.global_batch=$mb --train.micro_batch=$mb --bench.warmup=2 --bench.steps="$STEPS")
      batches=$BENCH/realdata_${shape}_$set.batches.jsonl
      mpirun -np 1 $RB batches "${COMMON[@]}" "${RT[@]}" --bench.out="$batches" 2>&1 | grep -v '^BENCH' || true
      for i in $(seq "${REALDATA_ROUNDS:-5}"); do
        for side in $SIDES; do
          tag=rd_${shape}_${set}_$side; extra=()
          case $side in *lora) extra=(--adapter.method=lora --adapter.lambda_cl=0) ;; esac
          case $side in
          padded|padded_lora)
            run mpirun -np 1 $RB train "${COMMON[@]}" "${RT[@]}" "${extra[@]}" --bench.ceiling=0 --bench.tag="$tag" ;;
          padded_b1)  # padded as the peers pad: to the batch's longest example (no bucket rounding)
            run mpirun -np 1 $RB train "${COMMON[@]}" "${RT[@]}" --data.bucket=1 --bench.ceiling=0 --bench.tag="$tag" ;;
          packed|packed_lora|packed_long|packed_b1)
            [ $PACKED = 1 ] || continue
            [ "$side" = packed_long ] && extra=(--data.pack_len="${REALDATA_PACK_LEN:-256}")
            [ "$side" = packed_b1 ] && extra=(--data.bucket=1)  # packed rows of any length, no rounding
            log=$(mpirun -np 1 $RB train "${COMMON[@]}" "${RT[@]}" "${extra[@]}" --data.packing=true --bench.ceiling=0 \
                  --bench.tag="$tag" 2>&1 || true)
            if grep -q "unknown config key 'data.packing'" <<< "$log"; then
              echo "realdata: this build has no data.packing: the packed sides are left out" >&2; PACKED=0
            else grep -E '^(BENCH|  )' <<< "$log" || echo "$log" | tail -5 >&2; fi ;;
          eager|compiled|hf)
            chk=(); [ "$side" = compiled ] && [ "$i" = 1 ] && [ "$set" = "${SETS%% *}" ] &&
              chk=(--check)  # first round of a shape: exits non-zero on a mismatch
            .venv/bin/python launch/peer_bench.py "$side" "$model" --batches "$batches" --threads "$TH" \
              --dtype bfloat16 --warmup 2 --steps "$STEPS" "${chk[@]}" --tag "$tag" 2> >(grep -v '^W[0-9]' >&2) |
              tee -a "$OUTF" | cut -c1-160 ;;
          *) echo "unknown realdata side '$side'" >&2; exit 2 ;;
          esac
        done
      done
    done
  done
  /usr/bin/python3 launch/realdata_summary.py "$OUTF" "$first" ;;
peer)  # the trainer (LibTorch 2.11 build; MoRE r8 and LoRA r8) vs eager PyTorch vs the same loop
  # under torch.compile (inductor; its first run checks it against eager: --check) vs transformers +
  # PEFT, 100m, bf16, 8 rows x 256 tokens each step (every batch padded to 256), one rank, 2 threads,
  # alternating PEER_ROUNDS (5) times; then MoRE/LoRA on the mid model in bf16 and in fp32.
  # PEER_BASELINE=path to another more_bench (e.g. built at an earlier commit) adds it to the
  # alternation. The summary names the host's CPU: ratios hold for that CPU only.
  [ "$SETUP" = 0 ] || bash launch/setup.sh --torch211 > /dev/null
  first=$(( $(wc -l < "$OUTF" 2>/dev/null || echo 0) + 1 ))
  PT=(--model.dtype=bfloat16 --train.threads=2 --train.global_batch=8 --train.micro_batch=8 --bench.warmup=1
      --bench.steps=3)
  for i in $(seq "${PEER_ROUNDS:-5}"); do
    run mpirun -np 1 ./build-t211/more_bench train "${COMMON[@]}" "${BIG[@]}" "${PT[@]}" --bench.tag=peer_trainer
    run mpirun -np 1 ./build-t211/more_bench train "${COMMON[@]}" "${BIG[@]}" "${PT[@]}" --adapter.method=lora \
      --adapter.lambda_cl=0 --bench.tag=peer_trainer_lora
    if [ -n "${PEER_BASELINE:-}" ]; then
      run mpirun -np 1 "$PEER_BASELINE" train "${COMMON[@]}" "${BIG[@]}" "${PT[@]}" --bench.tag=peer_trainer_before
    fi
    for p in eager compiled hf; do
      chk=(); [ "$p" = compiled ] && [ "$i" = 1 ] && chk=(--check)  # exits non-zero on a mismatch
      .venv/bin/python launch/peer_bench.py $p "$BENCH/llama100m" --batch 8 --seq 256 --threads 2 \
        --dtype bfloat16 --warmup 1 --steps 3 "${chk[@]}" --tag peer_$p 2> >(grep -v '^W[0-9]' >&2) |
        tee -a "$OUTF" | cut -c1-160
    done
  done
  for dt in bfloat16 float32; do  # MoRE r8 vs LoRA r8, alternating in one process
    run mpirun -np 1 ./build-t211/more_bench ratio "${COMMON[@]}" "${MID[@]}" --model.dtype=$dt --train.threads=2 \
      --train.global_batch=8 --train.micro_batch=8 --bench.warmup=1 --bench.steps=10 --bench.tag=peer_ratio_$dt
  done
  /usr/bin/python3 - "$OUTF" "$first" <<'PY'
import json, statistics, sys
sys.path.insert(0, "launch")
from realdata_summary import host_cpu  # the one description of the host's CPU
print(f"host CPU: {host_cpu()}")
lines = open(sys.argv[1]).read().splitlines()[int(sys.argv[2]) - 1:]
rows = [json.loads(l.split("BENCH ", 1)[-1]) for l in lines if '"peer_' in l]
steps, mfu, compile_s = {}, [], []
for r in rows:
    if r["tag"].startswith("peer_ratio_"):
        print(f"{r['tag']:22s} MoRE {r['more_step_s']:.3f} s / LoRA {r['lora_step_s']:.3f} s = {r['ratio']:.3f}")
        continue
    steps.setdefault(r["tag"], []).extend(r["step_s"])
    if r["tag"] == "peer_trainer": mfu.append(r["mfu"])
    if "compile_s" in r: compile_s.append(r["compile_s"])
t = steps.get("peer_trainer")
for tag, s in sorted(steps.items()):
    line = f"{tag:22s} fastest {min(s):7.3f} s  median {statistics.median(s):7.3f} s  ({len(s)} steps)"
    if t and tag != "peer_trainer":
        line += f"  trainer (MoRE) faster by {min(s) / min(t):.2f}x (fastest), {statistics.median(s) / statistics.median(t):.2f}x (median)"
    print(line)
if compile_s: print(f"torch.compile time (left out of its steps): " + ", ".join(f"{c:.1f} s" for c in compile_s))
if mfu: print(f"trainer bf16 MFU: median {100 * statistics.median(mfu):.1f}% ({100 * min(mfu):.1f}-{100 * max(mfu):.1f}%)")
PY
  ;;
item4)  # issue 25 item 4, each change alone (LibTorch 2.11 build, bf16 base, one rank, 2 threads),
  # alternating ITEM4_ROUNDS (5) times: adapter.dtype float32 vs bfloat16 (MoRE r8 and LoRA r8,
  # attention fixed to fused) and model.attention composed (MoRE, fp32 adapters; against the fused
  # MoRE run), on the
  # 100m shape of `peer` (8 x 256) and on the demo shape (tiny model, launch/demo.toml's batch, the
  # bundled rows); then MoRE/LoRA (mid, `ratio`) with the defaults in bf16 and fp32 and with bf16
  # adapters. PEER_BASELINE=path to another more_bench adds it and this build with the defaults (MoRE)
  # to each round. ITEM4_SHAPES ("100m demo"), ITEM4_METHODS ("more lora") and ITEM4_RATIO=0 (skip
  # the ratios) and ITEM4_STEPS (3 timed steps per 100m run) narrow it on a busy machine.
  [ "$SETUP" = 0 ] || bash launch/setup.sh --torch211 > /dev/null
  first=$(( $(wc -l < "$OUTF" 2>/dev/null || echo 0) + 1 ))
  T4=./build-t211/more_bench
  P100=("${COMMON[@]}" "${BIG[@]}" --model.dtype=bfloat16 --train.threads=2 --train.global_batch=8
        --train.micro_batch=8 --bench.warmup=1 --bench.steps=${ITEM4_STEPS:-3})
  PDEMO=("${COMMON[@]}" "${TINY[@]}" --data.bucket=16 --model.dtype=bfloat16 --train.threads=2
         --train.global_batch=16 --train.micro_batch=8 --bench.warmup=2 --bench.steps=10)
  for i in $(seq "${ITEM4_ROUNDS:-5}"); do
    for shape in ${ITEM4_SHAPES:-100m demo}; do
      if [ $shape = 100m ]; then P=("${P100[@]}"); else P=("${PDEMO[@]}"); fi
      if [ -n "${PEER_BASELINE:-}" ]; then  # the defaults, before and after (no regression)
        run mpirun -np 1 "$PEER_BASELINE" train "${P[@]}" --bench.tag=item4_${shape}_before
        run mpirun -np 1 $T4 train "${P[@]}" --bench.tag=item4_${shape}_after
      fi
      for m in ${ITEM4_METHODS:-more lora}; do
        ml=(); [ $m = lora ] && ml=(--adapter.method=lora --adapter.lambda_cl=0)
        for ad in float32 bfloat16; do
          run mpirun -np 1 $T4 train "${P[@]}" "${ml[@]}" --model.attention=fused --adapter.dtype=$ad \
            --bench.tag=item4_${shape}_${m}_adapter_$ad
        done
      done
      # (fused: the MoRE float32 run above)
      run mpirun -np 1 $T4 train "${P[@]}" --model.attention=composed --bench.tag=item4_${shape}_more_attention_composed
    done
  done
  [ "${ITEM4_RATIO:-1}" = 0 ] ||
  for v in bfloat16/float32 float32/float32 bfloat16/bfloat16; do  # base dtype / adapter dtype
    bd=${v%/*}; ad=${v#*/}
    run mpirun -np 1 $T4 ratio "${COMMON[@]}" "${MID[@]}" --model.dtype=$bd --adapter.dtype=$ad --train.threads=2 \
      --train.global_batch=8 --train.micro_batch=8 --bench.warmup=1 --bench.steps=10 --bench.tag=item4_ratio_${bd}_adapter_$ad
  done
  /usr/bin/python3 - "$OUTF" "$first" <<'PY'
import json, statistics, sys
sys.path.insert(0, "launch")
from realdata_summary import host_cpu  # the one description of the host's CPU
print(f"host CPU: {host_cpu()}; load average now {open('/proc/loadavg').read().split()[0]}")
lines = open(sys.argv[1]).read().splitlines()[int(sys.argv[2]) - 1:]
rows = [json.loads(l.split("BENCH ", 1)[-1]) for l in lines if '"item4_' in l]
steps, rss, att = {}, {}, []
for r in rows:
    if r["tag"].startswith("item4_ratio_"):
        print(f"{r['tag']:40s} MoRE {r['more_step_s']:.3f} s / LoRA {r['lora_step_s']:.3f} s = {r['ratio']:.3f}")
        continue
    steps.setdefault(r["tag"], []).extend(r["step_s"])
    rss.setdefault(r["tag"], []).append(max(x["peak_rss_mib"] for x in r["ranks"]))
for tag, s in sorted(steps.items()):
    print(f"{tag:40s} fastest {min(s):7.3f} s  median {statistics.median(s):7.3f} s  ({len(s)} steps)  "
          f"peak RSS {min(rss[tag]):.0f}-{max(rss[tag]):.0f} MiB")
for shape in ("100m", "demo"):
    for a, b, what in ((f"item4_{shape}_more_adapter_float32", f"item4_{shape}_more_adapter_bfloat16", "MoRE adapters fp32 / bf16"),
                       (f"item4_{shape}_lora_adapter_float32", f"item4_{shape}_lora_adapter_bfloat16", "LoRA adapters fp32 / bf16"),
                       (f"item4_{shape}_more_attention_composed", f"item4_{shape}_more_adapter_float32", "attention composed / fused"),
                       (f"item4_{shape}_after", f"item4_{shape}_before", "defaults after / before")):
        if a in steps and b in steps:
            print(f"{shape:5s} {what:28s} {min(steps[a]) / min(steps[b]):.3f} (fastest)  "
                  f"{statistics.median(steps[a]) / statistics.median(steps[b]):.3f} (median)")
PY
  ;;
*) echo "unknown section '$s'" >&2; exit 2 ;;
esac; done
echo "results: $OUTF"
