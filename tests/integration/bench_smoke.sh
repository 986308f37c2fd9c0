#!/usr/bin/env bash
# more_bench runs in every mode on the tiny model and reports sane JSON (numbers in range,
# one entry per rank). Speed itself is measured by launch/bench.sh, not here.
set -uo pipefail
BUILD=$1; DATA=$2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
pass=0; fail=0
COMMON=(--config "$SRC/launch/demo.toml" --model.path="$DATA/tiny" --data.train="$DATA/shards"
        --train.out_dir="$OUT/run" --train.threads=1 --bench.warmup=1 --bench.steps=2 --bench.out="$OUT/b.jsonl")
check() {  # name, python condition on j (the BENCH JSON of the last line)
  if tail -1 "$OUT/b.jsonl" 2> /dev/null | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); sys.exit(0 if ($2) else 1)"; then
    echo "ok: $1"; pass=$((pass + 1))
  else
    echo "FAIL: $1: $(tail -1 "$OUT/b.jsonl" 2> /dev/null | cut -c1-400)"; tail -5 "$OUT/log"; fail=$((fail + 1))
  fi
}
timeout 300 mpirun -np 2 "$BUILD/more_bench" train "${COMMON[@]}" --parallel.pp=2 > "$OUT/log" 2>&1
check "train pp=2" "j['pp'] == 2 and len(j['ranks']) == 2 and 0 < j['mfu'] <= 1 and j['tokens_per_s'] > 0 \
  and all(r['peak_rss_mib'] > 0 and r['planned_mib'] > 0 for r in j['ranks']) and j['own_shape_gflops'] > 0"
# real data (bench.sh realdata): the examples train draws (more_bench batches), train's real and
# padded token counts against them (padding to a multiple of data.bucket, computed here), and the
# eager peer replaying them padded to each batch's longest example
RD=(--train.global_batch=8 --train.micro_batch=8 --data.bucket=16 --bench.warmup=1 --bench.steps=2)
timeout 300 mpirun -np 1 "$BUILD/more_bench" batches "${COMMON[@]}" "${RD[@]}" --bench.out="$OUT/batches.jsonl" > "$OUT/log" 2>&1
timeout 300 mpirun -np 1 "$BUILD/more_bench" train "${COMMON[@]}" "${RD[@]}" --bench.ceiling=0 \
  --bench.tag=rd_tiny_bundled_padded > "$OUT/log" 2>&1
check "train real vs padded tokens (--bench.ceiling=0)" "'mfu' not in j and len(j['step_tokens']) == 2 \
  and all(p >= t > 0 for p, t in zip(j['step_padded_tokens'], j['step_tokens'])) and 0 < j['pad_fraction'] < 1 \
  and abs(j['padded_tokens_per_s'] / j['real_tokens_per_s'] - 1 / (1 - j['pad_fraction'])) < 1e-6"
if /usr/bin/python3 - "$OUT/batches.jsonl" "$OUT/b.jsonl" <<'PY'
import json, sys
mbs = [json.loads(l) for l in open(sys.argv[1])]
t = json.loads(open(sys.argv[2]).read().splitlines()[-1])
assert [m["step"] for m in mbs] == [0, 1, 2], [m["step"] for m in mbs]
for m in mbs:
    assert len(m["ids"]) == 8 and len(m["targets"]) == 8
    for ids, tg in zip(m["ids"], m["targets"]):  # BOS prompt target EOS; targets: a run ending at EOS
        assert ids[0] == 1 and ids[-1] == 2 and tg and tg[-1] == len(ids) - 1, (ids, tg)
        assert tg == list(range(tg[0], len(ids))) and tg[0] >= 2, tg
    longest = max(len(r) for r in m["ids"])
    assert m["trainer_seq_len"] == -(-longest // 16) * 16, (m["trainer_seq_len"], longest)
timed = mbs[1:]  # after --bench.warmup=1
assert t["step_tokens"] == [sum(len(r) for r in m["ids"]) for m in timed], (t["step_tokens"],)
assert t["step_padded_tokens"] == [8 * -(-max(len(r) for r in m["ids"]) // 16) * 16 for m in timed], t["step_padded_tokens"]
PY
then echo "ok: batches match train's real and padded tokens"; pass=$((pass + 1))
else echo "FAIL: batches vs train"; tail -5 "$OUT/log"; fail=$((fail + 1)); fi
# bad input (docs/reliability.md row 117): batches without --bench.out; a batches file shorter
# than the peer's warm-up + timed steps
timeout 120 mpirun -np 1 "$BUILD/more_bench" batches --config "$SRC/launch/demo.toml" --model.path="$DATA/tiny" \
  --data.train="$DATA/shards" > "$OUT/log" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "more_bench batches needs --bench.out=FILE" "$OUT/log"
then echo "ok: batches without --bench.out is refused"; pass=$((pass + 1))
else echo "FAIL: batches without --bench.out (exit $rc)"; tail -5 "$OUT/log"; fail=$((fail + 1)); fi
# with data.packing the same examples come out of their packed rows (ids and targets equal)
timeout 300 mpirun -np 1 "$BUILD/more_bench" batches "${COMMON[@]}" "${RD[@]}" --data.packing=true \
  --bench.out="$OUT/batches_packed.jsonl" > "$OUT/log" 2>&1
if /usr/bin/python3 - "$OUT/batches.jsonl" "$OUT/batches_packed.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(f)] for f in sys.argv[1:3])
assert len(a) == len(b) == 3
for x, y in zip(a, b):
    assert (x["step"], x["task"], x["ids"], x["targets"]) == (y["step"], y["task"], y["ids"], y["targets"])
PY
then echo "ok: batches with data.packing: the same examples"; pass=$((pass + 1))
else echo "FAIL: batches with data.packing"; tail -5 "$OUT/log"; fail=$((fail + 1)); fi
if [ -x "$SRC/.venv/bin/python" ]; then
  timeout 300 "$SRC/.venv/bin/python" "$SRC/launch/peer_bench.py" eager "$DATA/tiny" --batches "$OUT/batches.jsonl" \
    --threads 1 --dtype float32 --warmup 1 --steps 2 --tag rd_tiny_bundled_eager > "$OUT/peer.json" 2> "$OUT/log"
  if /usr/bin/python3 - "$OUT/batches.jsonl" "$OUT/peer.json" <<'PY'
import json, sys
mbs = [json.loads(l) for l in open(sys.argv[1])][1:]  # the timed steps, after --warmup 1
p = json.loads(open(sys.argv[2]).read().splitlines()[-1])
assert p["step_tokens"] == [sum(len(r) for r in m["ids"]) for m in mbs], p["step_tokens"]
assert p["step_padded_tokens"] == [8 * max(len(r) for r in m["ids"]) for m in mbs], p["step_padded_tokens"]
assert p["real_tokens_per_s"] > 0 and len(p["step_s"]) == 2
PY
  then echo "ok: peer_bench.py --batches: the same examples, each batch padded to its longest"; pass=$((pass + 1))
  else echo "FAIL: peer_bench.py --batches"; tail -5 "$OUT/log"; fail=$((fail + 1)); fi
  timeout 120 "$SRC/.venv/bin/python" "$SRC/launch/peer_bench.py" eager "$DATA/tiny" --batches "$OUT/batches.jsonl" \
    --threads 1 --dtype float32 --warmup 2 --steps 5 > "$OUT/log" 2>&1
  rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "holds 3 steps, fewer than --warmup 2 + --steps 5" "$OUT/log"
  then echo "ok: peer_bench.py: a batches file too short is refused"; pass=$((pass + 1))
  else echo "FAIL: peer_bench.py with a short batches file (exit $rc)"; tail -5 "$OUT/log"; fail=$((fail + 1)); fi
  # bench.sh realdata's summary of the two: same examples on both sides, one ratio row
  cat "$OUT/b.jsonl" "$OUT/peer.json" > "$OUT/rd.jsonl"
  if /usr/bin/python3 "$SRC/launch/realdata_summary.py" "$OUT/rd.jsonl" > "$OUT/rd.txt" 2>&1 &&
     grep -q "same examples on every side: yes" "$OUT/rd.txt" && grep -q "^| trainer MoRE r8, padded" "$OUT/rd.txt"
  then echo "ok: realdata_summary.py"; pass=$((pass + 1))
  else echo "FAIL: realdata_summary.py"; cat "$OUT/rd.txt"; fail=$((fail + 1)); fi
else
  echo "FAIL: $SRC/.venv/bin/python is missing: run 'bash launch/venv.sh'"; fail=$((fail + 1))
fi
timeout 300 mpirun -np 1 "$BUILD/more_bench" ratio "${COMMON[@]}" --bench.steps=4 > "$OUT/log" 2>&1
check "ratio" "j['more_rank'] == 8 and j['lora_rank'] == 8 and len(j['more_steps']) == 4 and 0.2 < j['ratio'] < 5"
timeout 300 mpirun -np 1 "$BUILD/more_bench" loader "${COMMON[@]}" --bench.seconds=0.5 > "$OUT/log" 2>&1
check "loader" "j['loader_samples_per_s'] > 0 and j['headroom'] > 1"
timeout 300 mpirun -np 1 "$BUILD/more_bench" ckpt "${COMMON[@]}" > "$OUT/log" 2>&1
check "ckpt" "j['bytes'] > 0 and j['save_mb_s'] > 0 and j['load_mb_s'] > 0 and j['disk_write_mb_s'] > 0"
# a profiled step and its summary: the groups' self times add up to the time covered by the
# outermost events of the trace (computed here from the JSON), GEMMs among them
timeout 300 mpirun -np 1 "$BUILD/more_bench" train "${COMMON[@]}" --bench.steps=1 --bench.profile="$OUT/prof" > "$OUT/log" 2>&1
if /usr/bin/python3 "$SRC/launch/trace_summary.py" "$OUT/prof.rank0.json" > "$OUT/summary" 2>&1 &&
   /usr/bin/python3 - "$OUT/summary" "$OUT/prof.rank0.json" <<'PY'
import json, re, sys
rows = [l for l in open(sys.argv[1]) if l.startswith("| ") and " s |" in l and "no event" not in l]
secs = {l.split("|")[1].strip(): float(l.split("|")[2].split()[0]) for l in rows}
ev = sorted((e for e in json.load(open(sys.argv[2])) if e.get("ph") == "X"), key=lambda e: (e["tid"], e["ts"], -e["dur"]))
outer, end = 0.0, {}
for e in ev:  # events not inside an earlier event of their thread
    if e["ts"] >= end.get(e["tid"], -1):
        outer += e["dur"]; end[e["tid"]] = e["ts"] + e["dur"]
ok = abs(sum(secs.values()) - outer / 1e6) <= 0.0005 * len(secs) + 1e-3 * outer / 1e6 and secs.get("GEMM (mm, addmm, bmm)", 0) > 0
print(sum(secs.values()), outer / 1e6)
sys.exit(0 if ok else 1)
PY
then echo "ok: profile + trace_summary"; pass=$((pass + 1))
else echo "FAIL: profile + trace_summary"; cat "$OUT/summary"; tail -5 "$OUT/log"; fail=$((fail + 1)); fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
