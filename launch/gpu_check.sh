#!/usr/bin/env bash
# The GPU proof of docs/gpu.md, on a machine with CUDA GPUs and a CUDA build of PyTorch (or a
# CUDA LibTorch), the project's other dependencies installed (launch/setup.sh lists them):
#   1. builds against that LibTorch into $BUILD (default build-cuda): MORE_WITH_NCCL, the NCCL
#      backend and the CUDA sources compiled in;
#   2. runs the whole test suite there: the CPU tests, test_cuda (GPU vs CPU equivalence, bf16
#      tolerance, recomputation and resume on the GPU) and, with >= 2 GPUs, dist_nccl_backend
#      on CUDA tensors;
#   3. benchmarks a 7B-shaped layer stack (LLaMA-2-7B dimensions, 4 layers, random bf16
#      weights) on one GPU: tokens/s and MFU against the bf16 matmul ceiling, and the MoRE/LoRA
#      step-time ratio; appends JSON lines to $BUILD/gpu_results.jsonl.
# Usage: bash launch/gpu_check.sh [LIBTORCH_PREFIX]
#        (default prefix: torch.utils.cmake_prefix_path of python3's torch)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-cuda}
PREFIX=${1:-$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
nvidia-smi -L
# The project links Debian's spdlog/fmt/HDF5, built with the C++11 ABI: the LibTorch must be too.
if python3 -c 'import torch' 2> /dev/null; then
  abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
  [ "$abi" = 1 ] || { echo "error: this PyTorch's LibTorch uses the pre-C++11 ABI; use a cxx11-ABI LibTorch" \
    "(PyTorch >= 2.7 wheels, or the 'cxx11 ABI' LibTorch download) and pass its prefix" >&2; exit 1; }
fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCUDAToolkit_ROOT="$CUDA_HOME" -DCMAKE_CUDA_COMPILER="$CUDA_HOME/bin/nvcc"
grep -q "MORE_WITH_NCCL" "$BUILD/build.ninja" || { echo "error: the CUDA path was not enabled (see cmake output)" >&2; exit 1; }
cmake --build "$BUILD"
source launch/env.sh
ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)"
"$BUILD"/tests/test_cuda   # printed in full: these are the GPU equivalence checks

# ---- 7B-shaped layer stack -------------------------------------------------------------------
G=$BUILD/gpu_bench; OUTF=$BUILD/gpu_results.jsonl
mkdir -p "$G"
BUILD=$BUILD bash launch/bundled_data.sh "$G"
[ -f "$G/llama7b-4l/model.safetensors" ] ||
  "$BUILD"/make_tiny_llama --out "$G/llama7b-4l" --vocab-size 32000 --hidden-size 4096 --intermediate-size 11008 \
    --layers 4 --heads 32 --kv-heads 32 --max-position 4096 --seed 1 --dtype bf16 > /dev/null
B="$BUILD/more_bench"
COMMON=(--config launch/demo.toml --model.path="$G/llama7b-4l" --data.train="$G/shards" --model.device=cuda
        --adapter.dropout=0 --eval.every=0 --ckpt.every=0 --data.bucket=64 --bench.out="$OUTF")
$B matmul --bench.device=cuda --bench.out="$OUTF"
for mb in 8 32; do
  mpirun -np 1 $B train "${COMMON[@]}" --train.micro_batch=$mb --train.global_batch=$((4 * mb)) \
    --bench.warmup=2 --bench.steps=10 --bench.tag=7b4l_mb$mb
done
mpirun -np 1 $B train "${COMMON[@]}" --train.micro_batch=32 --train.global_batch=128 --train.recompute_layers=4 \
  --bench.warmup=2 --bench.steps=10 --bench.tag=7b4l_mb32_recompute
mpirun -np 1 $B ratio "${COMMON[@]}" --train.micro_batch=32 --train.global_batch=32 --bench.warmup=2 \
  --bench.steps=20 --bench.tag=7b4l
echo "results: $OUTF"
