#!/usr/bin/env bash
# `tern bench media` rows of docs/BENCHMARKS.md: 1 MB and 20 MB files,
# uploaded then downloaded with 4 in flight, against
#   - an embedded server (media as files under its data directory), and
#   - a cluster-mode node (PostgreSQL, Redis, NATS) keeping media in S3:
#     its own moto_server on port 5090 (pip install 'moto[server]'), a
#     database of its own (tern_mbench_<pid>) on the PostgreSQL at
#     $PG (default postgres://postgres@127.0.0.1:5432), Redis and NATS at
#     their default ports under a cluster name of its own.
# Build first: cargo build --release -p tern. Prints one JSON line per row.
set -euo pipefail
cd "$(dirname "$0")/.."
TERN=${TERN:-./target/release/tern}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
COUNT_1M=${COUNT_1M:-200}
COUNT_20M=${COUNT_20M:-20}
data=$(mktemp -d)
server=""
moto=""
db="tern_mbench_$$"
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  [ -n "$moto" ] && kill "$moto" 2>/dev/null || true
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
weak=(TERN_AUTH__ARGON2_M_COST_KIB=8 TERN_AUTH__ARGON2_T_COST=1 INSECURE_TERN_TEST_WEAK_HASHING=1 RUST_LOG=warn)
start() { # extra env...
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$data/srv" && mkdir -p "$data/srv"
  env "${weak[@]}" "$@" "$TERN" serve --listen 127.0.0.1:8091 --data "$data/srv" > "$data/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do grep -q listening "$data/serve.log" 2>/dev/null && break; sleep 0.2; done
  grep -q listening "$data/serve.log" || { cat "$data/serve.log" >&2; exit 1; }
}
rows() { # label
  for spec in "1M $COUNT_1M" "20M $COUNT_20M"; do
    set -- $spec
    echo "== $label: tern bench media --size $1 --count $2 --concurrency 4" >&2
    "$TERN" bench media --url http://127.0.0.1:8091 --size "$1" --count "$2" --concurrency 4 \
      --server-pid "$server" --json | sed "s/^{/{\"store\":\"$label\",/"
  done
}

label=embedded
start
rows

moto_server -p 5090 > "$data/moto.log" 2>&1 &
moto=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:5090/ && break; sleep 0.2; done
curl -sf -X PUT http://127.0.0.1:5090/tern-mbench > /dev/null
psql -q "$PG/postgres" -c "CREATE DATABASE $db"
label=s3
start TERN_STORE__URL="$PG/$db" TERN_CLUSTER__REDIS_URL=redis://127.0.0.1:6379 \
  TERN_CLUSTER__NATS_URL=nats://127.0.0.1:4222 TERN_CLUSTER__NAME="mbench$$" \
  TERN_MEDIA__S3_BUCKET=tern-mbench TERN_MEDIA__S3_ENDPOINT=http://127.0.0.1:5090 \
  TERN_MEDIA__S3_REGION=us-east-1 TERN_MEDIA__S3_ACCESS_KEY=test TERN_MEDIA__S3_SECRET_KEY=test
rows
