#!/usr/bin/env bash
# Runs every `tern bench` scenario of docs/BENCHMARKS.md against a fresh
# embedded server on 127.0.0.1:8090 and writes the JSON reports and SVG
# plots to docs/bench/ (or $OUT). Build first: cargo build --release -p tern
#
# The server is started with cheap password hashing so that creating tens
# of thousands of bench users takes seconds; nothing else differs from the
# defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
TERN=./target/release/tern
OUT=${OUT:-docs/bench}
URL=http://127.0.0.1:8090
mkdir -p "$OUT"
data=$(mktemp -d)
server=""
start() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$data"/*
  TERN_AUTH__ARGON2_M_COST_KIB=8 TERN_AUTH__ARGON2_T_COST=1 INSECURE_TERN_TEST_WEAK_HASHING=1 RUST_LOG=warn \
    "$TERN" serve --listen 127.0.0.1:8090 --data "$data" > "$data.log" 2>&1 &
  server=$!
  for _ in $(seq 1 50); do grep -q listening "$data.log" 2>/dev/null && break; sleep 0.2; done
}
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
run() { # name, args...
  local name=$1; shift
  start
  echo "== $name: tern bench $*" >&2
  "$TERN" bench "$@" --url "$URL" --server-pid "$server" --json --out "$OUT/$name" | tee "$OUT/$name.json"
}
run connect   connect --conns 19500 --devices 10 --hold 5
run dm-5k     dm --pairs 500 --rate 5000 --duration 20
run dm-12k    dm --pairs 500 --rate 12000 --duration 20
run dm-14k    dm --pairs 500 --rate 14000 --duration 20
run dm-50k    dm --pairs 500 --rate 50000 --duration 10 --drain 60
run group-500 group --groups 1 --members 500 --online 500 --rate 600 --duration 20
run group-500-edge group --groups 1 --members 500 --online 500 --rate 1000 --duration 20
run group-1000 group --groups 1 --members 1000 --online 1000 --rate 200 --duration 20
run room-5000 room --conns 5000 --devices 10 --rate 100 --duration 20
