#!/usr/bin/env bash
# Server CPU per delivery: starts a fresh embedded server (as bench-all.sh
# does), runs one `tern bench` scenario against it, and reports the
# server's CPU time (utime + stime from /proc/<pid>/stat) from the moment
# the bench's connections are all up until the bench ends (sending and
# drain; account set-up and connecting are left out), per million
# deliveries, next to the bench's own figures.
#
#   scripts/bench-cpu.sh CONNS group --groups 1 --members 500 --online 500 --rate 600 --duration 20
#
# CONNS: how many connections the scenario opens (501+ for the example:
# its receivers plus its sending devices); the window starts when the
# server counts at least that many. TERN (default ./target/release/tern)
# picks the binary; DATA_ROOT where the data directory goes (/dev/shm:
# no disk in the measure); EXTRA_ENV adds server settings (e.g.
# "TERN_LIMITS__WRITE_INTERVAL_MS=0"). With PERF_OUT set, the server is
# also profiled (`perf record -g`) for PERF_SECS (10) seconds of the window.
set -euo pipefail
cd "$(dirname "$0")/.."
TERN=${TERN:-./target/release/tern}
PORT=${PORT:-8090}
URL=http://127.0.0.1:$PORT
conns=$1; shift
data=$(mktemp -d -p "${DATA_ROOT:-/tmp}")
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; rm -rf "$data" "$data.log" "$data.json"' EXIT
# shellcheck disable=SC2086
env TERN_AUTH__ARGON2_M_COST_KIB=8 TERN_AUTH__ARGON2_T_COST=1 INSECURE_TERN_TEST_WEAK_HASHING=1 \
  RUST_LOG=warn ${EXTRA_ENV:-} \
  "$TERN" serve --listen "127.0.0.1:$PORT" --data "$data" > "$data.log" 2>&1 &
server=$!
for _ in $(seq 1 50); do grep -q listening "$data.log" 2>/dev/null && break; sleep 0.2; done
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
"$TERN" bench "$@" --url "$URL" --server-pid "$server" --json > "$data.json" &
bench=$!
while :; do
  n=$(curl -s "$URL/metrics" | awk '$1 == "tern_connections" {print int($2)}')
  [ "${n:-0}" -ge "$conns" ] && break
  kill -0 "$bench" 2>/dev/null || { echo "bench ended before $conns connections" >&2; exit 1; }
  sleep 0.05
done
t0=$(ticks); w0=$(date +%s.%N)
if [ -n "${PERF_OUT:-}" ]; then
  perf record -F 499 -g -o "$PERF_OUT" -p "$server" -- sleep "${PERF_SECS:-10}" 2>/dev/null
elif [ -n "${PERF_STAT:-}" ]; then
  # Socket writes and task switches per delivery over PERF_SECS seconds.
  d0=$(curl -s "$URL/metrics" | awk '$1 == "tern_deliveries_total" {print $2}')
  perf stat -x, -e syscalls:sys_enter_sendto,syscalls:sys_enter_writev,context-switches \
    -p "$server" -- sleep "${PERF_SECS:-10}" 2> "$data.stat"
  d1=$(curl -s "$URL/metrics" | awk '$1 == "tern_deliveries_total" {print $2}')
  awk -F, -v d="$(echo "$d1 - $d0" | bc -l)" \
    '{printf "%s per delivery: %.4f (%d over %d deliveries)\n", $3, $1 / d, $1, d}' "$data.stat" >&2
fi
wait "$bench"
t1=$(ticks); w1=$(date +%s.%N)
# Connections that turned lagging (pushes unacked for limits.lagging_after_ms).
lagging=$(curl -s "$URL/metrics" | awk '$1 == "tern_lagging_connections_total" {print int($2)}')
hz=$(getconf CLK_TCK)
jq -c --argjson cpu "$(echo "($t1 - $t0) / $hz" | bc -l)" --argjson wall "$(echo "$w1 - $w0" | bc -l)" --argjson lagging "${lagging:-0}" \
  '{deliveries, deliveries_per_s, msgs_per_s, p50_ms, p99_ms, lost, closed, client_cpu_pct,
    lagging: $lagging, server_cpu_s: $cpu, server_cpu_pct: (100 * $cpu / $wall),
    server_cpu_s_per_m_deliveries: (if .deliveries > 0 then $cpu * 1e6 / .deliveries else null end)}' \
  "$data.json"
