#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) in build-fuzz/ with clang-14 and AddressSanitizer +
# UndefinedBehaviorSanitizer (torch-free: more_base only), writes their seed corpus
# (fuzz/make_corpus.py) and runs each target for SECONDS. The corpus each run grows is kept in
# build-fuzz/corpus/<target>/; a crashing input is written to build-fuzz/artifacts/<target>/ and
# makes the script fail. Logs: build-fuzz/logs/<target>.log (the last lines carry libFuzzer's
# executions and cov/ft counts; docs/reliability.md, "Fuzzing").
# Usage: bash launch/fuzz.sh [SECONDS=30] [target ...]        (default: every target)
#   MORE_FUZZ_NICE=19 runs the fuzzers under nice.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_safetensors_header fuzz_toml_config fuzz_hf_config fuzz_task_jsonl fuzz_peft_config)
B=build-fuzz
source launch/clang_sanitized.sh
clang_sanitized_configure fuzz.sh $B "${MORE_FUZZ_CXX:-clang++-14}" "${MORE_FUZZ_CC:-clang-14}" \
  -DMORE_BUILD_TESTS=OFF -DMORE_FUZZ=ON
ninja -C $B -j"${MORE_FUZZ_JOBS:-2}" "${TARGETS[@]}"
rm -rf $B/seeds && python3 fuzz/make_corpus.py $B/seeds
mkdir -p $B/logs
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rc=0
for t in "${TARGETS[@]}"; do
  mkdir -p $B/corpus/$t $B/artifacts/$t
  echo "=== $t: ${SECS} s"
  # -rss_limit_mb: the readers must not balloon on small inputs; -timeout: nor hang
  if ! nice -n "${MORE_FUZZ_NICE:-0}" $B/fuzz/$t -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix=$B/artifacts/$t/ \
      -dict=fuzz/json.dict $B/corpus/$t $B/seeds/$t >$B/logs/$t.log 2>&1; then
    echo "fuzz.sh: $t FAILED (crash input in $B/artifacts/$t/, log $B/logs/$t.log):" >&2
    tail -40 $B/logs/$t.log >&2
    rc=1
  fi
  grep -E "^#[0-9]+.*(DONE|cov:)" $B/logs/$t.log | tail -1 || true
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" $B/logs/$t.log || true
done
exit $rc
