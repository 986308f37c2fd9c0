#!/usr/bin/env bash
# more_train on several nodes with Open MPI's mpirun and a hostfile (see launch/hostfile.example).
# Usage: bash launch/multinode.sh HOSTFILE CONFIG.toml [--section.key=value ...]
#   NP (default 16) and PPN (ranks per node, default 8) may be set in the environment, and
#   MORE_BUILD (default build) the build folder whose more_train runs.
#   e.g. bash launch/multinode.sh launch/hostfile run.toml --model.path=/models/llama-2-7b \
#          --data.train=/data/shards --parallel.tp=8 --parallel.pp=2
#
# Placement: --map-by ppr:8:node puts 8 consecutive ranks on each node (0-7 on the first host,
# 8-15 on the second). The trainer orders ranks tp fastest (rank = tp_rank + tp*(pp_rank +
# pp*dp_rank)), so with tp = PPN (or a divisor of it) every TP group is inside one node; the
# pipeline's point-to-point transfers and the small adapter all-reduce are what cross nodes.
# Check the layout and its per-rank memory first: ./build/more_plan --world 16 --parallel.tp=8 ...
#
# The same paths must exist on every node (a shared file system, or the build, model and
# shards copied to the same place). -x forwards this shell's variables to remote ranks.
#
# GPUs: add --model.device=cuda with PPN = GPUs per node (docs/gpu.md); the GPU path has not
# been run on a GPU yet (no GPU was available to this work).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: bash launch/multinode.sh HOSTFILE CONFIG.toml [--section.key=value ...]" >&2
  exit 2
fi
HOSTFILE=$1; CONFIG=$2; shift 2
NP=${NP:-16}
PPN=${PPN:-8}
BUILD=$(cd "${MORE_BUILD:-build}" && pwd)
source launch/env.sh
# With model.device=cuda, also forward NCCL's settings, e.g. -x NCCL_DEBUG=WARN -x NCCL_SOCKET_IFNAME=<nic>.
exec mpirun --hostfile "$HOSTFILE" -np "$NP" --map-by "ppr:${PPN}:node" --bind-to none \
  -x PATH -x LD_LIBRARY_PATH -x OPENBLAS_NUM_THREADS \
  -x OMPI_MCA_btl_vader_single_copy_mechanism \
  "$BUILD/more_train" --config "$CONFIG" "$@"
