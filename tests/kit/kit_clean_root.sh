#!/usr/bin/env bash
# Proves the device kit (launch/gpu_kit.sh) on a machine like the GPU one: a clean Debian 12 root
# (debootstrap minbase) holding only a compiler, cmake, ninja, pkg-config, python3 (+numpy), the PyTorch
# 2.11 wheel's files and the CUDA toolkit, and none of the packages the kit brings. In that root
# the kit's build of the project must configure (CUDA path on), build, and pass the CPU tests,
# the distributed ones under mpirun -np 2 among them.
# Slow (a full build on 2 cores: 9 min idle, 17 min on a busy machine): run by launch/test.sh when MORE_TEST_KIT=1, and by
# hand: bash tests/kit/kit_clean_root.sh [ROOT] (default .cache/kit-root, made once, reused).
# Needs root (debootstrap, chroot, bind mounts).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
R=${1:-$SRC/.cache/kit-root}
CUDA=$(readlink -f "${CUDA_HOME:-/usr/local/cuda}")
[ "$(id -u)" -eq 0 ] || { echo "kit_clean_root.sh: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
# The URI of the host's configured apt source that serves SUITE's main archive (empty: none found).
host_apt_source() {
  local suite=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do  # deb822: a stanza with URIs: and Suites: naming the suite
    [ -f "$f" ] || continue
    awk -v s="$suite" 'BEGIN{RS=""} /(^|\n)Types:[^\n]*deb( |$|\n)/ {
        u=""; ok=0; n=split($0, L, "\n")
        for (i=1;i<=n;i++) { if (L[i] ~ /^URIs:/) { split(L[i], w, " "); u=w[2] }
                            if (L[i] ~ /^Suites:/) { m=split(L[i], w, " "); for (j=2;j<=m;j++) if (w[j]==s) ok=1 } }
        if (ok && u != "") { print u; exit } }' "$f"
  done | head -1 | grep . && return 0
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do  # one-line format: deb URI SUITE ...
    [ -f "$f" ] || continue
    awk -v s="$suite" '{ l=$0; sub(/\[[^]]*\]/, "", l); n=split(l, w, " ")
                        if (n >= 3 && w[1]=="deb" && w[3]==s) { print w[2]; exit } }' "$f"
  done | head -1
}
if [ ! -f "$R/.more-root-ok" ]; then
  rm -rf "$R"
  # the package source: the host's own apt source for bookworm (deb822 or one-line format), else
  # debootstrap's built-in default; no mirror is named here
  MIRROR=$(host_apt_source bookworm)
  debootstrap --variant=minbase --include=g++,cmake,ninja-build,python3,python3-numpy,pkg-config,make,xz-utils \
    bookworm "$R" ${MIRROR:+"$MIRROR"} > "$SRC/.cache/kit-debootstrap.log" 2>&1 \
    || { tail -5 "$SRC/.cache/kit-debootstrap.log"; exit 1; }
  touch "$R/.more-root-ok"
fi
# numpy: the golden test's float64 reference uses it (the GPU machine's python3 has it)
chroot "$R" dpkg -s python3-numpy >/dev/null 2>&1 ||
  chroot "$R" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy >/dev/null
# The root must lack what the kit brings, or the test proves nothing.
for p in libopenmpi-dev openmpi-bin libopenmpi3 libhdf5-dev libhdf5-103-1 libspdlog-dev libfmt-dev \
         nlohmann-json3-dev libtomlplusplus-dev libgtest-dev libsentencepiece-dev libboost-dev \
         libtcmalloc-minimal4 libtorch-dev; do
  if chroot "$R" dpkg -s "$p" >/dev/null 2>&1; then echo "FAIL: the clean root has $p" >&2; exit 1; fi
done
bash "$SRC/launch/gpu_kit.sh"
PY=$(bash "$SRC/launch/venv.sh" | tail -1)
SITE=$("$PY" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')

mounts=()
bind() {  # host path, path in root, [ro]
  mkdir -p "$R$2"; mount --bind "$1" "$R$2"; mounts=("$R$2" "${mounts[@]}")
  [ "${3:-}" = ro ] && mount -o remount,bind,ro "$R$2"
  return 0
}
cleanup() { for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
mkdir -p "$R/proc" && mount -t proc proc "$R/proc" && mounts=("$R/proc")
bind /dev /dev
bind /sys /sys ro                        # hwloc (Open MPI) reads the CPU topology there
bind "$SITE" /opt/torch-site ro          # the wheel's files: torch/ and nvidia/{cusparselt,nvshmem,cu13}
bind "$CUDA" /usr/local/cuda ro          # the toolkit, as on the GPU machine
rm -rf "$R/build" "$R/opt/more-kit" "$R/src"
# a snapshot of the tracked files as they are now (a live bind would let edits made during the
# build mix two versions of a header into one binary)
mkdir -p "$R/src"
git -C "$SRC" ls-files -z | (cd "$SRC" && tar --null -T - -cf -) | tar -x -C "$R/src"
cp "$SRC/gpu-kit/kit.tar.xz" "$R/opt/"

# PYTHONPATH: the wheel's torch for python3, as the GPU machine's python3 has it (the golden
# test's float64 reference loads the model with it)
chroot "$R" /usr/bin/env -i HOME=/root PATH=/usr/local/cuda/bin:/usr/bin:/bin TERM=dumb PYTHONPATH=/opt/torch-site \
  NPROC="$(nproc)" /bin/bash -euo pipefail -c '
  tar -xJf /opt/kit.tar.xz -C /opt
  source /opt/more-kit/env.sh
  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/usr/local/cuda/lib64
  T=/opt/torch-site/torch
  cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release $MORE_KIT_CMAKE_ARGS \
    "-DCMAKE_PREFIX_PATH=$T;$T/share/cmake" -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
    -DTORCH_CUDA_ARCH_LIST=9.0 > /build.cmake.log 2>&1 || { tail -30 /build.cmake.log; exit 1; }
  grep -q "^MORE_HAVE_CUDA_BUILD:INTERNAL=ON" /build/CMakeCache.txt || { echo "FAIL: CUDA path off"; exit 1; }
  grep -E "MoRE:|Found (MPI|HDF5|GTest|Torch)" /build.cmake.log
  ninja -C /build -j"$NPROC" > /build.ninja.log 2>&1 || { grep -A5 -E "FAILED|error" /build.ninja.log | head -40; exit 1; }
  echo "built: $(ls /build | grep -c -E "^more_|^shard_data$") tools"
  which mpirun; mpirun --version | head -1
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  export OMPI_MCA_hwloc_base_binding_policy=none
  # the CPU suite; the soak, the kill/resume matrix and the HF test (it needs transformers)
  # are left to the main builds
  ctest --test-dir /build -j2 --output-on-failure -E "soak|kill_resume|hf_interop"
'
