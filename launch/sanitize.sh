#!/usr/bin/env bash
# Builds the torch-free units (more_base, more_text), their tools and their unit tests
# (tests/unit/base/) with clang-14 and AddressSanitizer + UndefinedBehaviorSanitizer in
# build-asan/ (MORE_WITH_TORCH=OFF, MORE_SANITIZE=address,undefined; any report fails the test),
# then runs them with ctest (the test-data fixture is made by the sanitized tools too).
# Timing on the 2-core CI machine: docs/reliability.md, "Sanitizers". launch/test.sh runs this
# by default (MORE_TEST_SANITIZE=0 skips it).
# Usage: bash launch/sanitize.sh [ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
B=build-asan
source launch/clang_sanitized.sh
clang_sanitized_configure sanitize.sh $B "${MORE_SAN_CXX:-clang++-14}" "${MORE_SAN_CC:-clang-14}"
ninja -C $B -j"${MORE_SAN_JOBS:-$(nproc)}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/launch/lsan.supp:print_suppressions=0}
ctest --test-dir $B --output-on-failure -j"${MORE_SAN_JOBS:-$(nproc)}" "$@"
