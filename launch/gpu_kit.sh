#!/usr/bin/env bash
# The device kit: everything the GPU machine lacks to build and run the project, in one ignored
# folder, gpu-kit/ (docs/gpu.md). That machine has a compiler, cmake, ninja, CUDA 13 and Python
# with PyTorch 2.11, and reaches no package registry; the kit brings Open MPI, HDF5, spdlog, fmt,
# toml++, nlohmann-json, GoogleTest, SentencePiece, tcmalloc and the Boost headers the project
# includes, as Debian 12 packages extracted into one relocatable tree, plus env.sh, which points
# cmake, pkg-config, the loader and Open MPI (OPAL_PREFIX) at it.
#
# Run here (with Debian's apt), once:  bash launch/gpu_kit.sh      -> gpu-kit/kit.tar.xz (< 60 MiB)
# On the machine:  tar -xJf gpu-kit/kit.tar.xz -C /tmp && source /tmp/more-kit/env.sh
# Proven in a clean root by tests/kit/kit_clean_root.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/gpu-kit
DEBS=$ROOT/.cache/kit-debs
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
KIT=$STAGE/more-kit
SYS=$KIT/sys          # the extracted packages: $SYS/usr/{bin,include,lib,share}

# Development packages and the runtime libraries they need beyond a minimal Debian/Ubuntu (libc,
# libstdc++, zlib, OpenSSL's libcrypto are assumed; tests/kit/kit_clean_root.sh checks the list
# against a debootstrap minbase root). Open MPI's network transports (UCX, libfabric, verbs, PSM)
# are left out: one node uses shared memory; their plugins are removed below.
PKGS=(
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libpmix2 libhwloc15 libnuma1 libmunge2
  libnl-3-200 libnl-route-3-200
  libevent-core-2.1-7 libevent-pthreads-2.1-7 libevent-2.1-7 libltdl7 libudev1
  libhdf5-dev libhdf5-103-1 libhdf5-hl-100 libsz2 libaec0 libcurl4 libnghttp2-14 librtmp1
  libssh2-1 libpsl5 libbrotli1 libldap-2.5-0 libsasl2-2 libgssapi-krb5-2 libkrb5-3
  libk5crypto3 libkrb5support0 libkeyutils1 libidn2-0 libunistring2 libgnutls30 libhogweed6
  libnettle8 libgmp10 libp11-kit0 libtasn1-6 libffi8 libssl3
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 nlohmann-json3-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libsentencepiece-dev libsentencepiece0 libprotobuf-lite32
  libtcmalloc-minimal4
)
mkdir -p "$DEBS" "$OUT" "$SYS"
need=()
for p in "${PKGS[@]}"; do ls "$DEBS"/"${p}"_*.deb >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  (cd "$DEBS" && apt-get download "${need[@]}" >/dev/null 2>&1) || {
    apt-get update -qq && (cd "$DEBS" && apt-get download "${need[@]}" >/dev/null); }
fi
for p in "${PKGS[@]}"; do dpkg-deb -x "$(ls "$DEBS"/"${p}"_*.deb | head -1)" "$SYS"; done

# Boost: only the headers the project includes (their closure, as the compiler sees it), not
# the 150 MB of libboost-dev.
BOOST_USERS=$(grep -rl '#include <boost/' src include | tr '\n' ' ')
for f in $BOOST_USERS; do
  g++ -std=c++20 -M -Iinclude -I/usr/include/hdf5/serial $(pkg-config --cflags-only-I sentencepiece 2>/dev/null) "$f" 2>/dev/null
done | tr ' \\' '\n\n' | grep '^/usr/include/boost/' | sort -u > "$STAGE/boost.txt"
echo /usr/include/boost/version.hpp >> "$STAGE/boost.txt"
echo /usr/include/boost/config.hpp >> "$STAGE/boost.txt"
while read -r h; do mkdir -p "$SYS$(dirname "$h")"; cp "$h" "$SYS$h"; done < "$STAGE/boost.txt"
# Boost's CMake package: FindBoost's module mode needs only boost/version.hpp (Boost_NO_BOOST_CMAKE)

# Prune what building and running never read.
rm -rf "$SYS"/usr/share/{doc,man,lintian,locale,bug} "$SYS"/etc/{logcheck,bash_completion.d}
find "$SYS" -name '*.a' ! -name 'libgtest*.a' ! -name 'libgmock*.a' -delete
OMPI_PLUG=$SYS/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
rm -f "$OMPI_PLUG"/mca_{btl_openib,btl_uct,btl_ofi,btl_usnic,pml_ucx,osc_ucx,spml_ucx,mtl_ofi,mtl_psm,mtl_psm2,atomic_ucx,oob_ud,pml_cm,sshmem_ucx}*.so
rm -f "$SYS"/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix/pmix_mca_psec_munge.so
# Absolute symlinks (Debian's alternatives and a few .so links) are made relative to the kit.
find "$SYS" -type l | while read -r l; do
  t=$(readlink "$l")
  case $t in /*) if [ -e "$SYS$t" ]; then ln -sfr "$SYS$t" "$l"; else rm -f "$l"; fi ;; esac
done
# mpirun/mpicc in Debian are alternatives links into /etc; point them at the real binaries.
for b in mpirun mpiexec; do ln -sf orterun "$SYS/usr/bin/$b" 2>/dev/null || true; done
ln -sf opal_wrapper "$SYS/usr/bin/mpicc"
[ -e "$SYS/usr/bin/orterun" ] || { echo "gpu_kit.sh: orterun missing from openmpi-bin" >&2; exit 1; }
# pkg-config files name prefix=/usr: rewritten to the kit at activation (env.sh).
cat > "$KIT/env.sh" <<'EOF'
# source this: puts the kit's Open MPI, HDF5, spdlog, ... on every search path.
MORE_KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export MORE_KIT
_u=$MORE_KIT/sys/usr; _l=$_u/lib/x86_64-linux-gnu
export PATH=$_u/bin:$PATH
export LD_LIBRARY_PATH=$_l:$_l/openmpi/lib:$_l/hdf5/serial${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CMAKE_PREFIX_PATH=$_u${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
export PKG_CONFIG_PATH=$MORE_KIT/pkgconfig
export CPATH=$_u/include${CPATH:+:$CPATH}
# Open MPI 4.1 relocation: its install prefix, plugins and help files move with OPAL_PREFIX;
# PMIx's (its own prefix, .../pmix2) with the PMIX_* install-directory variables.
export OPAL_PREFIX=$_u OPAL_LIBDIR=$_l/openmpi/lib
export PMIX_PREFIX=$_l/pmix2 PMIX_EXEC_PREFIX=$_l/pmix2 PMIX_INSTALL_PREFIX=$_l/pmix2 \
  PMIX_LIBDIR=$_l/pmix2/lib PMIX_PKGLIBDIR=$_l/pmix2/lib/pmix
export OMPI_MCA_mca_base_component_show_load_errors=0
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1
# mpirun's launcher insists on an rsh/ssh agent even for one node; without ssh, name one that
# exists and is never called for local ranks
command -v ssh >/dev/null || command -v rsh >/dev/null || export OMPI_MCA_plm_rsh_agent=false
# cmake hints for the packages whose finders do not follow CMAKE_PREFIX_PATH alone
export MORE_KIT_CMAKE_ARGS="-DMPI_C_COMPILER=$_u/bin/mpicc -DHDF5_C_COMPILER_EXECUTABLE=/nonexistent -DHDF5_ROOT=$_u -DHDF5_INCLUDE_DIRS=$_u/include/hdf5/serial -DHDF5_C_INCLUDE_DIR=$_u/include/hdf5/serial -DHDF5_hdf5_LIBRARY_RELEASE=$_l/hdf5/serial/libhdf5.so -DBoost_INCLUDE_DIR=$_u/include -DBoost_NO_BOOST_CMAKE=ON -DBoost_NO_SYSTEM_PATHS=ON -DMORE_TCMALLOC_LIB=$_l/libtcmalloc_minimal.so.4"
mkdir -p "$MORE_KIT/pkgconfig"
for pc in "$_l"/pkgconfig/*.pc "$_u"/share/pkgconfig/*.pc; do
  [ -f "$pc" ] && sed "s|^prefix=/usr|prefix=$_u|; s|=/usr/|=$_u/|g; s| -I/usr/| -I$_u/|g; s| -L/usr/| -L$_u/|g" "$pc" > "$MORE_KIT/pkgconfig/$(basename "$pc")"
done
unset _u _l
EOF
# Open MPI's wrapper data and mca params name /usr paths: OPAL_PREFIX relocates ${prefix}-based
# ones; Debian writes absolute ones, rewritten to ${prefix}.
for f in "$SYS"/usr/share/openmpi/*-wrapper-data.txt; do
  sed -i 's|/usr/lib/x86_64-linux-gnu|${libdir}/../../..|g; s|/usr/include|${includedir}/..|g' "$f"
done

tar -C "$STAGE" -cJf "$OUT/kit.tar.xz" more-kit
size=$(stat -c %s "$OUT/kit.tar.xz"); unpacked=$(du -sm "$KIT" | cut -f1)
echo "gpu_kit.sh: $OUT/kit.tar.xz: $((size / 1048576)) MiB ($unpacked MiB unpacked, ${#PKGS[@]} packages)"
[ "$size" -lt $((60 * 1048576)) ] || { echo "gpu_kit.sh: the kit is over 60 MiB" >&2; exit 1; }
