#!/usr/bin/env bash
# Builds the torch-free units (more_base, more_text), their tools and their unit tests
# (tests/unit/base/) with clang-14 and AddressSanitizer + UndefinedBehaviorSanitizer in
# build-asan/ (MORE_WITH_TORCH=OFF, MORE_SANITIZE=address,undefined; any report fails the test),
# then runs them with ctest (the test-data fixture is made by the sanitized tools too).
# Timing on the 2-core CI machine: docs/reliability.md, "Sanitizers". launch/test.sh runs this
# when MORE_TEST_SANITIZE=1.
# Usage: bash launch/sanitize.sh [ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
B=build-asan
CXX=${MORE_SAN_CXX:-clang++-14}
CC=${MORE_SAN_CC:-clang-14}
command -v "$CXX" >/dev/null || { echo "sanitize.sh: $CXX not found (apt install clang-14 libclang-rt-14-dev)" >&2; exit 1; }
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
if [ ! -f $B/CMakeCache.txt ]; then
  cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_C_COMPILER="$CC" \
    "${launcher[@]}" -DMORE_WITH_TORCH=OFF -DMORE_SANITIZE=address,undefined >/dev/null
fi
ninja -C $B -j"${MORE_SAN_JOBS:-$(nproc)}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/launch/lsan.supp:print_suppressions=0}
ctest --test-dir $B --output-on-failure -j"${MORE_SAN_JOBS:-$(nproc)}" "$@"
