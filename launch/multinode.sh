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
mpirun --hostfile "$HOSTFILE" -np "$NP" --map-by "ppr:${PPN}:node" --bind-to none \
  -x PATH -x LD_LIBRARY_PATH -x OPENBLAS_NUM_THREADS \
  -x OMPI_MCA_btl_vader_single_copy_mechanism \
  "$BUILD/more_train" --config "$CONFIG" "$@" &
MPIRUN=$!
trap 'kill -TERM $MPIRUN 2>/dev/null' INT TERM
# A node that drops off the network holds mpirun: when the ranks here end (the watchdog,
# parallel.timeout_s, names the silent peers and aborts), mpirun orders the lost node's daemon to
# end its ranks and waits for it; that message sits unacknowledged in a TCP socket, which
# suspends TCP keep-alive, so only the kernel's retransmission limit (net.ipv4.tcp_retries2,
# ~15 min) would end the wait. MPI_Finalize synchronises every rank, so once the ranks on this
# node have all ended, the job is over: if mpirun is still running MORE_LAUNCH_LINGER_S (default
# 10) seconds later, it is waiting for a node it cannot reach and is ended here (measured cut ->
# launcher exit: docs/cluster.md). Only when this node runs ranks (it is in the hostfile).
LINGER=${MORE_LAUNCH_LINGER_S:-10}
local_ranks() {  # does mpirun still have a more_train child here? (/proc: no procps needed)
  local c
  for c in $(cat /proc/"$MPIRUN"/task/*/children 2>/dev/null); do
    [ "$(cat "/proc/$c/comm" 2>/dev/null)" = more_train ] && return 0
  done
  return 1
}
seen=0; idle=0
while kill -0 "$MPIRUN" 2>/dev/null; do
  if local_ranks; then seen=1; idle=0
  elif [ $seen -eq 1 ]; then
    idle=$((idle + 1))
    if [ $idle -gt "$LINGER" ]; then
      echo "multinode.sh: every rank on $(uname -n) has ended, but mpirun still waits for a node it cannot reach" \
           "after ${LINGER} s: ending it (MORE_LAUNCH_LINGER_S)" >&2
      kill -KILL "$MPIRUN" 2>/dev/null
      wait "$MPIRUN" 2>/dev/null || true
      exit 1
    fi
  fi
  sleep 1
done
wait "$MPIRUN"
