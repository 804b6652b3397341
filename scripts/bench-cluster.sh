#!/usr/bin/env bash
# Runs the cluster scenarios of docs/BENCHMARKS.md: three `tern serve` nodes
# on this machine's PostgreSQL, Redis and NATS (a fresh schema and cluster
# name per run), and `tern bench` spreading its clients over the three.
# Reports go to docs/bench/ (or $OUT). Build first: cargo build --release -p tern
# (or name another binary: TERN=/path/to/tern).
#
#   scripts/bench-cluster.sh              # every scenario
#   scripts/bench-cluster.sh dm-12k       # only the named ones
set -euo pipefail
cd "$(dirname "$0")/.."
TERN=${TERN:-./target/release/tern}
OUT=${OUT:-docs/bench}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
mkdir -p "$OUT"
logs=$(mktemp -d)
pids=()
schema=""
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  if [ -n "$schema" ]; then
    psql "$PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null
    redis-cli --scan --pattern "$schema:*" | xargs -r redis-cli del >/dev/null
  fi
  schema=""
}
trap 'stop; rm -rf "$logs"' EXIT
start() { # three nodes on 127.0.0.1:8091-8093
  stop
  schema="tern_bench_$(date +%s)_$RANDOM"
  psql "$PG" -qc "CREATE SCHEMA $schema" >/dev/null
  for i in 1 2 3; do
    TERN_AUTH__ARGON2_M_COST_KIB=8 TERN_AUTH__ARGON2_T_COST=1 INSECURE_TERN_TEST_WEAK_HASHING=1 RUST_LOG=warn \
    TERN_STORE__URL="$PG?options=-c%20search_path%3D$schema" \
    TERN_CLUSTER__NAME="$schema" \
      "$TERN" serve --config deploy/cluster.toml --listen "127.0.0.1:809$i" \
        --data "$logs/data$i" > "$logs/node$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 1 2 3; do
    for _ in $(seq 1 100); do
      curl -sf "127.0.0.1:809$i/healthz" >/dev/null && break
      sleep 0.2
    done
  done
}
URLS=(--url http://127.0.0.1:8091 --url http://127.0.0.1:8092 --url http://127.0.0.1:8093)
run() { # name, args...
  local name=$1; shift
  start
  echo "== cluster-$name: tern bench $* (3 nodes)" >&2
  "$TERN" bench "$@" "${URLS[@]}" --server-pid "${pids[0]}" --json --out "$OUT/cluster-$name" \
    | tee "$OUT/cluster-$name.json"
  grep -h -i "error\|panic" "$logs"/node*.log | head -5 >&2 || true
}
sel=("$@")
pick() { [ ${#sel[@]} -eq 0 ] || [[ " ${sel[*]} " == *" $1 "* ]]; }
pick dm-5k      && run dm-5k     dm --pairs 500 --rate 5000 --duration 20
pick dm-6k      && run dm-6k     dm --pairs 500 --rate 6000 --duration 20
pick dm-8k      && run dm-8k     dm --pairs 500 --rate 8000 --duration 20
pick dm-12k     && run dm-12k    dm --pairs 500 --rate 12000 --duration 20
pick group-500  && run group-500 group --groups 1 --members 500 --online 500 --rate 600 --duration 20
pick group-500-100 && run group-500-100 group --groups 1 --members 500 --online 500 --rate 100 --duration 20
pick group-500-200 && run group-500-200 group --groups 1 --members 500 --online 500 --rate 200 --duration 20
pick connect-50k && run connect-50k connect --conns 50000 --devices 10 --hold 5
exit 0
