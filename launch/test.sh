#!/usr/bin/env bash
# Set up, build and run every test (unit, distributed under mpirun, integration) twice: against
# Debian's LibTorch 1.13 (build/) and against LibTorch 2.11.0+cu130 (build-t211/, the GPU
# machine's version, CUDA path compiled; its CUDA tests skip without a GPU).
# Usage: bash launch/test.sh [ctest args]   (MORE_TEST_BUILDS="build" runs one build's suite;
#        MORE_TEST_KIT=1 also proves the device kit in a clean root: tests/kit/kit_clean_root.sh;
#        the multi-node tests on a namespace test cluster (ctest label "cluster", tests/cluster/,
#        Slurm included: docs/cluster.md) run in the first build only, a failed one once more: they prove the launchers and
#        the transport, not LibTorch; MORE_TEST_SLURM=0 skips the Slurm one, MORE_TEST_SLURM_CASES
#        (default "1 2 3 4", tests/cluster/slurm.sh) picks its cases;
#        the torch-free unit tests also run under ASan + UBSan (launch/sanitize.sh, a clang build):
#        MORE_TEST_SANITIZE=0 skips them;
#        MORE_TEST_FUZZ=1 also runs each fuzz target for MORE_TEST_FUZZ_SECS (30) s: launch/fuzz.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh --torch211
source launch/env.sh
rc=0
first=1
for b in ${MORE_TEST_BUILDS:-build build-t211}; do
  echo "=== ctest: $b ($(grep -m1 '^Torch_DIR:' "$b/CMakeCache.txt" | cut -d= -f2))"
  ctest --test-dir "$b" --output-on-failure -j2 -LE cluster "$@" || rc=1
  if [ $first -eq 1 ]; then
    # the cluster tests (run serially), each run a second time if it fails: a rank crash at start-up
    # under srun, seen once in ~190 starts and not yet explained, is open (docs/cluster.md, "Open");
    # a first failure stays in this output, above its rerun
    ctest --test-dir "$b" --output-on-failure -L cluster --repeat until-pass:2 "$@" || rc=1
  fi
  first=0
done
# torch-free units under AddressSanitizer + UndefinedBehaviorSanitizer (a clang build of more_base,
# more_text and tests/unit/base: docs/reliability.md, "Sanitizers" has its time); MORE_TEST_SANITIZE=0 skips
if [ "${MORE_TEST_SANITIZE:-1}" != 0 ]; then bash launch/sanitize.sh || rc=1; fi
# the libFuzzer targets, a bounded run each (docs/reliability.md, "Fuzzing"): MORE_TEST_FUZZ=1
if [ -n "${MORE_TEST_FUZZ:-}" ]; then bash launch/fuzz.sh "${MORE_TEST_FUZZ_SECS:-30}" || rc=1; fi
# the device kit in a clean root (slow: a third full build): MORE_TEST_KIT=1
if [ -n "${MORE_TEST_KIT:-}" ]; then bash tests/kit/kit_clean_root.sh || rc=1; fi
exit $rc
