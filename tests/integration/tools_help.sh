#!/usr/bin/env bash
# Every tool answers --help with its usage on stdout and exit 0, with nothing on stderr (no MPI
# start-up, no MPI_Abort banner), run directly (not under mpirun).
# Usage: tools_help.sh BUILD DATA
set -uo pipefail
BUILD=$1
fail=0
for t in more_train more_export more_bench more_pretrain more_plan more_logits make_tiny_llama shard_data; do
  out=$("$BUILD/$t" --help 2> /tmp/help_err.$$); rc=$?
  err=$(cat /tmp/help_err.$$)
  if [ $rc -eq 0 ] && grep -qi "usage" <<< "$out" && [ -z "$err" ]; then
    echo "ok   $t --help"
  else
    echo "FAIL $t --help: exit $rc, stdout '$(head -c 200 <<< "$out")', stderr '$(head -c 400 <<< "$err")'"
    fail=1
  fi
done
rm -f /tmp/help_err.$$
exit $fail
