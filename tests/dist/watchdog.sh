#!/usr/bin/env bash
# The watchdog (dist/watchdog.h) on 3 ranks: rank 2 stalls, rank 0 waits in a world all-reduce,
# rank 1 in a receive from rank 2. Each waiting rank must name its operation, report the other
# as waiting too (its notice arrived) and rank 2 as silent, and the job must end non-zero well
# before the limit. Usage: watchdog.sh BUILD
set -uo pipefail
BUILD=$1
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
t0=$SECONDS
timeout 60 mpirun -np 3 "$BUILD/tests/dist/watchdog_check" > "$LOG" 2>&1
rc=$?
took=$((SECONDS - t0))
cat "$LOG"
fail() { echo "FAIL: $1 (exit $rc after $took s)"; exit 1; }
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "the job must end non-zero by itself"
[ $took -lt 40 ] || fail "too slow"
[ "$(grep -c "watched operations ok" "$LOG")" = 3 ] || fail "the watched operations must compute correctly on every rank"
grep -q "returned from a wait" "$LOG" && fail "a wait that cannot complete returned"
grep -q "\[rank 0\] watchdog: all_reduce in the world group (world ranks 0, 1, 2) has not completed after" "$LOG" || fail "rank 0's operation"
grep -q "\[rank 1\] watchdog: recv with world rank 2 (rank 2 of the world group, world ranks 0, 1, 2) has not completed after" "$LOG" || fail "rank 1's operation and peer"
grep -q "\[rank 0\] watchdog: no word from world rank(s) 2: stalled or dead; waiting too: world rank 1 waits in recv with world rank 2" "$LOG" || fail "rank 0 must name rank 2 as silent and rank 1 as waiting"
grep -q "\[rank 1\] watchdog: no word from world rank(s) 2: stalled or dead; waiting too: world rank 0 waits in all_reduce in the world group" "$LOG" || fail "rank 1 must name rank 2 as silent and rank 0 as waiting"
grep -q "\] error: watchdog: " "$LOG" || fail "the watchdog's error"
echo "ok: watchdog named the operations, the waiting ranks and the silent one; job ended with exit $rc after $took s"
