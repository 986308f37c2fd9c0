#!/usr/bin/env bash
# Measures the streaming merge on a LLaMA-2-7B-shaped bf16 model (random weights, 3 shards,
# ~13.5 GB): make_tiny_llama at 7B dimensions, random MoRE adapters of rank 8
# (tests/hf/synthetic_export.py), then `more_export --export ... --merge` under
# /usr/bin/time -v. Prints peak RSS and wall time; checks the merged shard layout and index;
# removes everything at the end (KEEP=1 keeps it). Measured results: docs/formats.md (merged models).
# Usage: bash launch/merge_7b.sh [BUILD] [WORKDIR]     (needs ~28 GB free disk, .venv)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
W=${2:-$SRC/runs/merge7b}
PY=$SRC/.venv/bin/python
mkdir -p "$W"
trap '[ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
# LLaMA-2-7B (more_plan --preset llama2-7b): vocab 32000, hidden 4096, intermediate 11008,
# 32 layers, 32 heads (no GQA)
# the test tokenizer (vocabulary padded to 32000) so the merged model carries tokenizer files
/usr/bin/time -v "$BUILD/make_tiny_llama" --out "$W/base" --tokenizer "$BUILD/testdata/tok.model" --vocab-size 32000 --hidden-size 4096 \
  --intermediate-size 11008 --layers 32 --heads 32 --kv-heads 32 --dtype bf16 --num-shards 3 \
  --max-position 4096 --init-std 0.02 2> "$W/make.time"
grep -E "Maximum resident|Elapsed" "$W/make.time" | sed 's/^/make_tiny_llama: /'
"$PY" "$SRC/tests/hf/synthetic_export.py" "$W/base" "$W/ex" --rank 8 --tasks sentiment,topic
du -sh "$W/base"
/usr/bin/time -v "$BUILD/more_export" --export "$W/ex" --model "$W/base" --merge sentiment 2> "$W/merge.time"
grep -E "Maximum resident|Elapsed|Exit status" "$W/merge.time" | sed 's/^/more_export --merge: /'
# same files, same index, same tensor names/dtypes/shapes; adapted weights changed
"$PY" - "$W/base" "$W/ex/merged/sentiment" <<'PY'
import json, os, sys
from safetensors import safe_open
base, merged = sys.argv[1:]
files = sorted(f for f in os.listdir(base) if f.endswith(".safetensors"))
assert files == sorted(f for f in os.listdir(merged) if f.endswith(".safetensors")), os.listdir(merged)
assert json.load(open(f"{base}/model.safetensors.index.json")) == json.load(open(f"{merged}/model.safetensors.index.json"))
changed = same = 0
for f in files:
    with safe_open(f"{base}/{f}", "pt") as a, safe_open(f"{merged}/{f}", "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        for k in a.keys():
            if not (k.endswith("q_proj.weight") and ".layers.31." in k) and not k.endswith("norm.weight"):
                continue  # spot checks: the last layer's q_proj and the norms
            x, y = a.get_tensor(k), b.get_tensor(k)
            assert x.dtype == y.dtype and x.shape == y.shape, k
            if "proj" in k:
                assert not x.equal(y), f"{k} unchanged"; changed += 1
            else:
                assert x.equal(y), f"{k} changed"; same += 1
print(f"merged layout ok: {len(files)} shards + index as the base; {changed} adapted tensor(s) changed, {same} others identical (spot checks)")
for f in ("config.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json"):
    print(f, "present" if os.path.exists(f"{merged}/{f}") else "MISSING")
PY
