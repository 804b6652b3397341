#!/usr/bin/env bash
# Times failed logins of an existing user and of unknown users against a
# fresh embedded server with the default argon2 parameters: the two should
# cost the same (a login of an unknown user verifies against a dummy hash).
# Usage: scripts/login-timing.sh [path/to/tern] [tries]
set -euo pipefail
TERN=${1:-target/debug/tern}
TRIES=${2:-20}
PORT=18181
DATA=$(mktemp -d)
trap 'kill $PID 2>/dev/null; rm -rf "$DATA"' EXIT
# Failed logins are limited by default; this run is about their cost.
TERN_RATE__LOGIN_USER_FAILURES=100000 TERN_RATE__LOGIN_ADDR_FAILURES=100000 \
  "$TERN" serve --data "$DATA" --listen 127.0.0.1:$PORT >"$DATA/log" 2>&1 &
PID=$!
for _ in $(seq 50); do curl -sf 127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
curl -sf -XPOST 127.0.0.1:$PORT/v1/users -d '{"user":"alice","password":"password1"}' >/dev/null
python3 - "$PORT" "$TRIES" <<'PY'
import json, statistics, sys, time, urllib.error, urllib.request
port, tries = sys.argv[1], int(sys.argv[2])
def login(user):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/sessions",
        data=json.dumps({"user": user, "password": "wrong-password"}).encode())
    t = time.perf_counter()
    try:
        urllib.request.urlopen(req).read(); st = 200
    except urllib.error.HTTPError as e:
        st = e.code
    return st, (time.perf_counter() - t) * 1000
# Interleaved, so that load from elsewhere on the machine hits both alike.
times = {"existing user": [], "unknown user": []}
for i in range(tries):
    for label, user in [("existing user", "alice"), ("unknown user", f"ghost{i}")]:
        times[label].append(login(user))
for label, r in times.items():
    ms = sorted(x[1] for x in r)
    print(f"{label:14} statuses {sorted(set(x[0] for x in r))} "
          f"median {statistics.median(ms):.1f} ms  p90 {ms[int(len(ms) * 0.9) - 1]:.1f} ms")
PY
