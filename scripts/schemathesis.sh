#!/usr/bin/env bash
# Property-based HTTP fuzzing of a fresh embedded server against its own
# OpenAPI document (`GET /v1/openapi.json`) with schemathesis (PyPI). Not
# part of CI: it installs schemathesis into a virtualenv (.venv-schemathesis)
# and runs for a few minutes. Every answer must be documented (status,
# content type, schema, headers) and no call may answer 5xx.
#
#   scripts/schemathesis.sh [MAX_EXAMPLES]      (default 50 per operation)
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-50}
venv=.venv-schemathesis
[ -x "$venv/bin/schemathesis" ] || {
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis>=4,<5'
}
cargo build -p tern
data=$(mktemp -d)
port=18650
# Cheap hashing and open limits: the fuzzer registers and logs in a lot.
INSECURE_TERN_TEST_WEAK_HASHING=1 TERN_AUTH__ARGON2_M_COST_KIB=8 TERN_AUTH__ARGON2_T_COST=1 \
  TERN_RATE__REGISTER_RATE=1000000 TERN_RATE__REGISTER_BURST=1000000 \
  TERN_RATE__LOGIN_USER_FAILURES=1000000 TERN_RATE__LOGIN_ADDR_FAILURES=1000000 \
  target/debug/tern serve --listen 127.0.0.1:$port --data "$data" >/dev/null 2>"$data/log" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
# A user and a token for the calls that need one.
printf 'password1\n' | target/debug/tern user add fuzz --password-stdin --data "$data"
token=$(target/debug/tern token fuzz --data "$data")
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --exclude-path /v1/ws \
  --max-examples "$examples"
