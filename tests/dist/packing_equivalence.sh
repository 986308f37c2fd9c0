#!/usr/bin/env bash
# data.packing proofs on the tiny model and the bundled tasks (fp32, 6 steps of 2 micro-batches of
# 8 examples):
#  (b) a packed run and an unpacked run over the same examples in the same order give the same
#      losses and adapter gradients, on 1 rank and on tp=2 x pp=2 (1F1B) (and dp=2 against 1 rank
#      unpacked, layout tolerances), and the packed runs
#      really packed (fewer positions computed: grid_tokens); the same with data.pack_len=256
#      (rows longer than the shards' max_len of 64);
#  (c) a packed run resumed from its step-3 checkpoint is BITWISE equal to the uninterrupted
#      packed run (every step's loss, final adapters and optimizer state), with adapter dropout on.
# Tolerances (packed vs unpacked, same layout): losses 1e-5 relative, each gradient tensor 1e-4 of
# its norm, final adapters 1e-3 absolute. Packing changes only the float summation order: GEMMs over
# another number of rows, softmax rows with extra exactly-zero terms, the contrastive pool summing
# zero weights over more positions; measured: losses ~1e-7, gradients ~1e-5. Adam normalises the
# update, so near-zero gradients' noise moves parameters by up to ~lr (as layout_equivalence.sh).
# Dropout is off in (b): its masks are drawn over the [rows, L] grid, which packing changes.
set -euo pipefail
export MORE_FAIL_AT=${MORE_FAIL_AT:-}
BUILD=$1; DATA=$2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
run() {  # name np packing [args...]
  mpirun -np "$2" -x MORE_FAIL_AT "$BUILD/more_train" --config "$SRC/launch/demo.toml" --model.dtype=float32 --model.path="$DATA/tiny" \
    --data.train="$DATA/shards" --train.out_dir="$OUT/$1" --data.packing="$3" --train.micro_batch=8 \
    --train.global_batch=16 --train.steps=6 --ckpt.every=3 --train.warmup=2 --train.lr=5e-3 --adapter.dropout=0 \
    --eval.at_start=false --eval.every=0 --eval.max_samples=16 --train.log_every=1 --train.threads=1 \
    --train.progress=false --train.dump_grads=true "${@:4}" >> "$OUT/$1.log" 2>&1 || { tail -20 "$OUT/$1.log"; return 1; }
}
run ref 1 false
run packed 1 true
run packed_long 1 true --data.pack_len=256  # rows longer than the shards' max_len (64)
run tp2pp2 4 false --parallel.tp=2 --parallel.pp=2
run tp2pp2_packed 4 true --parallel.tp=2 --parallel.pp=2
run dp2_packed 2 true --train.micro_batch=4  # each replica packs its own 4 examples of the plan
# (c) resume, dropout on
run drop 1 true --adapter.dropout=0.1 --train.dump_grads=false
# the first launch stops with an injected failure at the start of step 4 (after the step-3
# checkpoint; the same train.steps, so the same LR schedule), the second resumes
if MORE_FAIL_AT=0:4 run drop_resumed 1 true --adapter.dropout=0.1 --train.dump_grads=false >/dev/null; then
  echo "FAIL: the injected failure did not stop the first launch"; exit 1
fi
grep -q "injected failure" "$OUT/drop_resumed.log" || { echo "FAIL: first launch failed otherwise"; tail -20 "$OUT/drop_resumed.log"; exit 1; }
run drop_resumed 1 true --adapter.dropout=0.1 --train.dump_grads=false
grep -q "resumed from .*step-00000003" "$OUT/drop_resumed.log" || { echo "FAIL: the second launch did not resume"; exit 1; }
/usr/bin/python3 - "$OUT" <<'PY'
import glob, json, os, struct, sys
import numpy as np
out = sys.argv[1]
def steps(name):
    return [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl") if '"train"' in l]
def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n]); base = 8 + n
    return {k: np.frombuffer(raw[base + v["data_offsets"][0]: base + v["data_offsets"][1]], np.float32)
            for k, v in hdr.items() if k != "__metadata__"}
def grads(name, step):
    g = {}
    for f in sorted(glob.glob(f"{out}/{name}/grads/step-{step}.stage-*.safetensors")): g.update(tensors(f))
    return g
failed = 0
def compare(a_name, b_name, loss_tol, grad_tol, adapter_tol):
    global failed
    a, b = steps(a_name), steps(b_name)
    assert len(a) == len(b) == 6, (a_name, b_name, len(a), len(b))
    worst_loss = 0.0
    for x, y in zip(a, b):
        if x["tasks"] != y["tasks"]:
            print(f"FAIL {b_name}: step {x['step']} tasks {y['tasks']} vs {x['tasks']}"); failed += 1
        for key in ["loss", "gen_loss", "cl_loss", "grad_norm"]:
            rel = abs(x[key] - y[key]) / max(1.0, abs(x[key]))
            worst_loss = max(worst_loss, rel)
            if rel > loss_tol:
                print(f"FAIL {b_name} step {x['step']} {key}: {y[key]} vs {x[key]}"); failed += 1
        if x["tokens"] != y["tokens"]:
            print(f"FAIL {b_name} step {x['step']}: real tokens {y['tokens']} vs {x['tokens']}"); failed += 1
    gworst = 0.0
    for step in range(1, 7):
        ga, gb = grads(a_name, step), grads(b_name, step)
        assert ga.keys() == gb.keys() and ga, (a_name, b_name, step)
        for k in ga:
            gworst = max(gworst, float(np.linalg.norm(ga[k] - gb[k])) / max(float(np.linalg.norm(ga[k])), 1e-6))
    aa = tensors(f"{out}/{a_name}/export/adapters.safetensors"); ab = tensors(f"{out}/{b_name}/export/adapters.safetensors")
    aworst = max(float(np.abs(aa[k] - ab[k]).max()) for k in aa)
    print(f"{b_name} vs {a_name}: max relative loss diff {worst_loss:.1e}, grad diff {gworst:.1e}, |adapter diff| {aworst:.1e}")
    if gworst > grad_tol: print(f"FAIL {b_name}: gradients differ by {gworst}"); failed += 1
    if aworst > adapter_tol: print(f"FAIL {b_name}: adapters differ by {aworst}"); failed += 1
def packed_fewer(packed, plain):
    global failed
    p, u = sum(s["grid_tokens"] for s in steps(packed)), sum(s["grid_tokens"] for s in steps(plain))
    real = sum(s["tokens"] for s in steps(packed))
    print(f"{packed}: {p} positions computed for {real} real tokens (unpacked: {u})")
    if not p < u: print(f"FAIL {packed}: packing computed {p} positions, unpacked {u}"); failed += 1
compare("ref", "packed", 1e-5, 1e-4, 1e-3)
compare("ref", "packed_long", 1e-5, 1e-4, 1e-3)
compare("tp2pp2", "tp2pp2_packed", 1e-5, 1e-4, 1e-3)
compare("ref", "tp2pp2_packed", 1e-4, 2e-3, 1e-3)  # layout and packing together (as layout_equivalence.sh)
compare("ref", "dp2_packed", 1e-4, 2e-3, 1e-3)
packed_fewer("packed", "ref")
packed_fewer("packed_long", "ref")
packed_fewer("tp2pp2_packed", "tp2pp2")
# (c) resume: every step's loss and the final checkpoint bitwise
a = {s["step"]: s["loss"] for s in steps("drop")}
b = {s["step"]: s["loss"] for s in steps("drop_resumed")}
if a != b: print(f"FAIL resume: losses {b} vs {a}"); failed += 1
final = sorted(glob.glob(f"{out}/drop/checkpoints/step-00000006/*.safetensors"))
if len(final) < 2: print(f"FAIL resume: no final checkpoint files ({final})"); failed += 1
for f in final:
    g = f.replace("/drop/", "/drop_resumed/")
    if open(f, "rb").read() != open(g, "rb").read(): print(f"FAIL resume: {os.path.basename(f)} differs"); failed += 1
print("resume of a packed run: losses and final checkpoint bitwise equal" if not failed else "")
print("PASS" if not failed else f"{failed} failures")
sys.exit(1 if failed else 0)
PY
