# Sourced by launch/sanitize.sh and launch/fuzz.sh: configures, once, a torch-free clang build with
# AddressSanitizer + UndefinedBehaviorSanitizer (MORE_WITH_TORCH=OFF, MORE_SANITIZE=address,undefined;
# ccache when present).
# Usage: clang_sanitized_configure WHO BUILD_DIR CXX CC [extra cmake args]
clang_sanitized_configure() {
  local who=$1 b=$2 cxx=$3 cc=$4; shift 4
  command -v "$cxx" >/dev/null || { echo "$who: $cxx not found (apt install clang-14 libclang-rt-14-dev)" >&2; exit 1; }
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  [ -f "$b/CMakeCache.txt" ] && return 0
  cmake -S . -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" \
    "${launcher[@]}" -DMORE_WITH_TORCH=OFF -DMORE_SANITIZE=address,undefined "$@" >/dev/null
}
