#!/usr/bin/env bash
# Installs the Debian 12 packages the project needs (if missing) and builds it.
#   build/        against Debian's LibTorch 1.13 (CPU)                         always
#   build-t211/   against PyPI's LibTorch 2.11.0+cu130, the GPU machine's, with the CUDA/NCCL
#                 path compiled and linked (torch_cuda, every *_cuda.cpp)      with --torch211
# --torch211 also makes .venv/ (launch/venv.sh: torch 2.11, transformers, peft), whose wheels
# are cached in .cache/wheels/.
# Usage: bash launch/setup.sh [--torch211] [extra cmake args]
set -euo pipefail
cd "$(dirname "$0")/.."
T211=0
if [ "${1:-}" = "--torch211" ]; then T211=1; shift; fi
PKGS=(build-essential cmake ninja-build pkg-config git
      libtorch-dev libopenblas0-openmp libopenblas-dev libtcmalloc-minimal4
      libopenmpi-dev openmpi-bin libhdf5-dev libspdlog-dev libfmt-dev libboost-dev
      libgtest-dev libgmock-dev libsentencepiece-dev nlohmann-json3-dev libtomlplusplus-dev
      python3-torch python3-numpy python3-matplotlib
      iproute2   # ip netns: the multi-node test cluster (tests/cluster/)
      clang-14 libclang-rt-14-dev)  # clang-14: the sanitizer and fuzzing builds (launch/sanitize.sh, fuzz.sh)
bash launch/apt_need.sh "${PKGS[@]}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
ninja -C build -j"$(nproc)"

if [ $T211 -eq 1 ]; then
  PY=$(bash launch/venv.sh | tail -1)
  TORCH_DIR=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  # Both folders: <torch>/lib must come first so find_library takes the wheel's libtorch, not
  # Debian's (TorchConfig searches the system paths before its own hint).
  # TORCH_CUDA_ARCH_LIST: the GPU machine's H200 (sm_90); without it TorchConfig probes for a
  # GPU. The project has no .cu files of its own; this only sets LibTorch's nvcc flags.
  cmake -S . -B build-t211 -G Ninja -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_PREFIX_PATH=$TORCH_DIR;$TORCH_DIR/share/cmake" \
    -DCMAKE_CUDA_COMPILER="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" \
    -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" "$@" >/dev/null
  grep -q '^MORE_HAVE_CUDA_BUILD:INTERNAL=ON' build-t211/CMakeCache.txt || {
    echo "setup.sh: build-t211 did not enable the CUDA path (see cmake's output)" >&2; exit 1; }
  ninja -C build-t211 -j"$(nproc)"
fi
