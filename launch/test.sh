#!/usr/bin/env bash
# Set up, build and run every test (unit, distributed under mpirun, integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
source launch/env.sh
ctest --test-dir build --output-on-failure -j2 "$@"
