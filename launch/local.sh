#!/usr/bin/env bash
# N MPI ranks of more_train on this machine.
# Usage: bash launch/local.sh NP CONFIG.toml [--section.key=value ...]
#   e.g. bash launch/local.sh 4 launch/demo.toml --model.path=runs/demo/data/tiny \
#          --data.train=runs/demo/data/shards --parallel.tp=2 --parallel.pp=2 --train.micro_batch=4
#
# Layout: world = NP = tp x pp x dp (dp = NP / (tp*pp) unless --parallel.dp is given);
# rank = tp_rank + tp*(pp_rank + pp*dp_rank): the trainer puts tp fastest, so a TP group is
# tp neighbouring ranks (on a cluster that keeps each TP group within one node). Check a layout
# and its per-rank memory first with: ./build/more_plan --config CONFIG.toml --world NP ...
#
# Each rank sizes its intra-op thread pool to cores / local ranks (train.threads=0), so ranks
# are not bound to cores (--bind-to none) and OpenBLAS stays single-threaded (launch/env.sh).
#
# GPUs: add --model.device=cuda with NP = GPUs; each rank takes the GPU of its node-local rank
# (docs/gpu.md). The GPU path has not been run on a GPU yet (no GPU was available).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: bash launch/local.sh NP CONFIG.toml [--section.key=value ...]" >&2
  exit 2
fi
NP=$1; CONFIG=$2; shift 2
if [ ! -x ./build/more_train ]; then
  echo "error: ./build/more_train not found (hint: run bash launch/setup.sh first)" >&2
  exit 1
fi
source launch/env.sh
exec mpirun -np "$NP" --bind-to none ./build/more_train --config "$CONFIG" "$@"
