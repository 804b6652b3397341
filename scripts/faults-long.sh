#!/usr/bin/env bash
# The long forms of the fault tests of docs/RELIABILITY.md, one after the
# other, on release builds. Each prints one line of counts; the lines are
# collected in $OUT (default target/faults-long.txt).
#
#   scripts/faults-long.sh            # everything (about 15 minutes here)
#   scripts/faults-long.sh crash      # one of: props crash lossy slow silent storm cluster
#
# Sizes can be overridden through the same variables the tests read:
# TERN_CRASH_LOOPS (50), TERN_LOSSY_SECS (60), TERN_LOSSY_STALL (0.3),
# TERN_LOSSY_CUT (0.02), TERN_SLOW_CONNS (1000), TERN_SLOW_MSGS (400),
# TERN_STORM_CLIENTS (10000), TERN_SILENT_RUNS (7), TERN_SILENT_WAIT_SECS
# (30), PROPTEST_CASES (2000 for the store, 100000
# for the decoder). TERN_FAULT_SEED replays a run's random choices.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/faults-long.txt}
what=${1:-all}
mkdir -p "$(dirname "$OUT")"

run() { # name, env assignments..., -- cargo test arguments...
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  echo "== $name: ${envs[*]} cargo test --release $*" | tee -a "$OUT"
  env "${envs[@]}" cargo test --release "$@" -- --nocapture --test-threads 1 2>&1 \
    | grep -E '(^|\.\.\. )[a-z_]+: |test result|panicked' | tee -a "$OUT" \
    || echo "FAILED: $name" | tee -a "$OUT"
}

want() { [ "$what" = all ] || [ "$what" = "$1" ]; }

want props && run props-decoder PROPTEST_CASES="${PROPTEST_CASES:-100000}" -- -p tern-proto --test props
want props && run props-store PROPTEST_CASES="${PROPTEST_CASES:-2000}" -- -p tern-store-sqlite --test props
want crash && run crash-loop TERN_CRASH_LOOPS="${TERN_CRASH_LOOPS:-50}" -- -p tern --test faults crash_loop
want lossy && run lossy TERN_LOSSY_SECS="${TERN_LOSSY_SECS:-60}" TERN_LOSSY_STALL="${TERN_LOSSY_STALL:-0.3}" \
  TERN_LOSSY_CUT="${TERN_LOSSY_CUT:-0.02}" -- -p tern --test faults lossy
want slow && run slow-consumers TERN_SLOW_CONNS="${TERN_SLOW_CONNS:-1000}" TERN_SLOW_MSGS="${TERN_SLOW_MSGS:-400}" \
  -- -p tern --test faults slow_consumers
want silent && run silent-readers TERN_SILENT_RUNS="${TERN_SILENT_RUNS:-7}" \
  TERN_SILENT_WAIT_SECS="${TERN_SILENT_WAIT_SECS:-30}" -- -p tern-server --test it silent
want storm && run reconnect-storm TERN_STORM_CLIENTS="${TERN_STORM_CLIENTS:-10000}" -- -p tern --test faults storm
want cluster && run cluster-node-kill CI=1 -- -p tern --test cluster node_kill_during
echo "counts in $OUT"
