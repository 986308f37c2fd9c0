#!/usr/bin/env bash
# The GPU proof of docs/gpu.md, on a machine with CUDA GPUs and a CUDA build of PyTorch 2.x
# (python3's torch; its LibTorch is what the project builds against):
#   0. if the system lacks the project's other dependencies (Open MPI, HDF5, spdlog, ...), unpacks
#      the device kit gpu-kit/kit.tar.xz (made by launch/gpu_kit.sh) and uses it;
#   1. builds into $BUILD (default build-cuda) with every core: the CUDA/NCCL path compiled in;
#   2. runs test_cuda (GPU vs CPU equivalence, bf16 tolerance, recomputation and resume on the
#      GPU) and the CPU suite's unit, distributed and short integration tests;
#   3. benchmarks a 7B-shaped layer stack (LLaMA-2-7B dimensions, 4 layers, random bf16 weights)
#      on one GPU: bf16 GEMM ceiling, tokens/s and MFU, peak GPU memory (the caching allocator's
#      peak, as torch.cuda.max_memory_allocated) against more_plan, and the MoRE/LoRA step ratio.
# Writes JSON lines and logs to $RESULTS (default $BUILD/gpu_results): gpu_results.jsonl,
# timings.json (seconds per part), test_cuda.log, ctest.log, build.log.
# Usage: bash launch/gpu_check.sh            (env: BUILD, RESULTS, JOBS, SKIP_CTEST=1, PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-cuda}
RESULTS=${RESULTS:-$BUILD/gpu_results}
JOBS=${JOBS:-$(nproc)}
PY=${PYTHON:-python3}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
mkdir -p "$RESULTS"
T0=$SECONDS; declare -A PART
part() { PART[$1]=$((SECONDS - T0)); T0=$SECONDS; echo "== $1 done in ${PART[$1]} s"; }
nvidia-smi -L || true

# ---- 0. dependencies: the system's, else the kit's ---------------------------------------------
have_sys() { command -v mpirun >/dev/null && [ -e /usr/include/spdlog/spdlog.h ] &&
             { [ -e /usr/include/hdf5/serial/hdf5.h ] || [ -e /usr/include/hdf5.h ]; }; }
KIT_ARGS=()
if ! have_sys; then
  [ -f gpu-kit/kit.tar.xz ] || { echo "error: dependencies missing and no gpu-kit/kit.tar.xz" \
    "(make it with launch/gpu_kit.sh on a Debian 12 machine and carry it)" >&2; exit 1; }
  KIT_DIR=${KIT_DIR:-/tmp}
  [ -f "$KIT_DIR/more-kit/env.sh" ] || tar -xJf gpu-kit/kit.tar.xz -C "$KIT_DIR"
  source "$KIT_DIR/more-kit/env.sh"
  read -r -a KIT_ARGS <<< "$MORE_KIT_CMAKE_ARGS"
  echo "using the device kit at $MORE_KIT"
fi
TORCH_DIR=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
"$PY" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs {torch.cuda.device_count()}")
# the project links system/kit spdlog, fmt and HDF5, built with the C++11 ABI: the LibTorch must be too
assert torch.compiled_with_cxx11_abi(), "this PyTorch's LibTorch uses the pre-C++11 ABI"
EOF
part deps

# ---- 1. build -----------------------------------------------------------------------------------
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "${KIT_ARGS[@]}" \
  "-DCMAKE_PREFIX_PATH=$TORCH_DIR;$TORCH_DIR/share/cmake" -DCUDAToolkit_ROOT="$CUDA_HOME" \
  -DCMAKE_CUDA_COMPILER="$CUDA_HOME/bin/nvcc" -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
  > "$RESULTS/build.log" 2>&1 || { tail -40 "$RESULTS/build.log"; exit 1; }
grep -q '^MORE_HAVE_CUDA_BUILD:INTERNAL=ON' "$BUILD/CMakeCache.txt" ||
  { grep MoRE "$RESULTS/build.log"; echo "error: the CUDA path was not enabled" >&2; exit 1; }
ninja -C "$BUILD" -j"$JOBS" >> "$RESULTS/build.log" 2>&1 ||
  { grep -B2 -A12 -E '^FAILED|error:' "$RESULTS/build.log" | head -80; exit 1; }
part build

# ---- 2. tests -----------------------------------------------------------------------------------
source launch/env.sh
rc_cuda=0; "$BUILD"/tests/test_cuda > "$RESULTS/test_cuda.log" 2>&1 || rc_cuda=$?
grep -E '^\[ +(OK|FAILED|SKIPPED|PASSED) ' "$RESULTS/test_cuda.log" || tail -20 "$RESULTS/test_cuda.log"
part test_cuda
rc_ctest=0
if [ -z "${SKIP_CTEST:-}" ]; then
  # unit, distributed and the short integration tests; the serial bad-input table (~4 min), the
  # soak and kill/resume matrix, and the HF test (needs .venv) stay with CI
  timeout 300 ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" \
    -E 'soak|kill_resume|bad_input|hf_interop|bench_smoke|pretrain' \
    > "$RESULTS/ctest.log" 2>&1 || rc_ctest=$?
  grep -E 'tests passed|tests failed|\(Failed\)|\(SEGFAULT\)|\(Timeout\)' "$RESULTS/ctest.log" || tail -5 "$RESULTS/ctest.log"
fi
part ctest

# ---- 3. 7B-shaped layer stack ---------------------------------------------------------------------
G=$BUILD/gpu_bench; OUTF=$RESULTS/gpu_results.jsonl
mkdir -p "$G"
BUILD=$BUILD bash launch/bundled_data.sh "$G" > /dev/null
[ -f "$G/llama7b-4l/model.safetensors" ] ||
  "$BUILD"/make_tiny_llama --out "$G/llama7b-4l" --vocab-size 32000 --hidden-size 4096 --intermediate-size 11008 \
    --layers 4 --heads 32 --kv-heads 32 --max-position 4096 --seed 1 --dtype bf16 > /dev/null
part make_model
B="$BUILD/more_bench"
COMMON=(--config launch/demo.toml --model.path="$G/llama7b-4l" --data.train="$G/shards" --model.device=cuda
        --adapter.dropout=0 --eval.every=0 --ckpt.every=0 --data.bucket=64 --bench.out="$OUTF")
rc_bench=0
$B matmul --bench.device=cuda --bench.dtype=bfloat16 --bench.out="$OUTF" || rc_bench=1
for mb in 8 32; do
  mpirun -np 1 $B train "${COMMON[@]}" --train.micro_batch=$mb --train.global_batch=$((4 * mb)) \
    --bench.warmup=2 --bench.steps=10 --bench.tag=7b4l_mb$mb || rc_bench=1
done
mpirun -np 1 $B train "${COMMON[@]}" --train.micro_batch=32 --train.global_batch=128 --train.recompute_layers=4 \
  --bench.warmup=2 --bench.steps=10 --bench.tag=7b4l_mb32_recompute || rc_bench=1
mpirun -np 1 $B ratio "${COMMON[@]}" --train.micro_batch=32 --train.global_batch=32 --bench.warmup=2 \
  --bench.steps=20 --bench.tag=7b4l || rc_bench=1
"$BUILD"/more_plan --config launch/demo.toml --model "$G/llama7b-4l" --world 1 --seq-len 64 --train.micro_batch=32 \
  --train.global_batch=128 --base-dtype bf16 --gpu-gb 139 > "$RESULTS/more_plan.txt" 2>&1 || true
part bench

{ printf '{'; sep=; for k in "${!PART[@]}"; do printf '%s"%s": %s' "$sep" "$k" "${PART[$k]}"; sep=", "; done
  printf ', "rc_test_cuda": %s, "rc_ctest": %s, "rc_bench": %s}\n' $rc_cuda $rc_ctest $rc_bench; } > "$RESULTS/timings.json"
cat "$RESULTS/timings.json"
echo "results: $RESULTS"
[ $rc_cuda -eq 0 ] && [ $rc_ctest -eq 0 ] && [ $rc_bench -eq 0 ]
