#!/usr/bin/env bash
# Installs the Debian 12 packages the project needs (if missing) and builds it into build/.
# Usage: bash launch/setup.sh [extra cmake args]
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(build-essential cmake ninja-build pkg-config git
      libtorch-dev libopenblas0-openmp libopenblas-dev libtcmalloc-minimal4
      libopenmpi-dev openmpi-bin libhdf5-dev libspdlog-dev libfmt-dev libboost-dev
      libgtest-dev libgmock-dev libsentencepiece-dev nlohmann-json3-dev libtomlplusplus-dev
      python3-torch python3-numpy python3-matplotlib)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
ninja -C build -j"$(nproc)"
