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
