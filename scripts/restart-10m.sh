#!/usr/bin/env bash
# Restart after kill -9 with many stored messages (issue 13's target row:
# 10 M messages, to serving in <= 5 s).
#
#   scripts/restart-10m.sh            # N=10000000 messages
#   N=1000000 scripts/restart-10m.sh  # a smaller store
#
# 1. A fresh embedded server; `tern bench dm` makes PAIRS pairs of users and
#    their conversations (with a few real messages), then the server stops.
# 2. N more messages are written straight into `tern.db` with sqlite3,
#    spread evenly over those conversations (seqs continue each
#    conversation's, conversation heads and read positions follow), so that
#    the store looks like one that served N messages.
# 3. The server starts on that store, `tern bench dm` sends into it, and the
#    server is killed with SIGKILL in the middle of the load (its log holds
#    committed transactions not yet checkpointed).
# 4. It starts again; the script reports the time from exec to `/healthz`
#    answering 200 and to a first login answering, then checks with a
#    second short bench run that sends are stored and delivered.
#
# TERN picks the binary (default ./target/release/tern), DATA_ROOT where
# the data directory goes (default /tmp; it takes about 2.5 GB for 10 M).
set -euo pipefail
cd "$(dirname "$0")/.."
TERN=${TERN:-./target/release/tern}
PORT=${PORT:-8094}
URL=http://127.0.0.1:$PORT
N=${N:-10000000}
PAIRS=${PAIRS:-1000}
data=$(mktemp -d -p "${DATA_ROOT:-/tmp}")
server=""
cleanup() {
  [ -n "$server" ] && kill -9 "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$data"
}
trap cleanup EXIT
export TERN_AUTH__ARGON2_M_COST_KIB=8 TERN_AUTH__ARGON2_T_COST=1 INSECURE_TERN_TEST_WEAK_HASHING=1 RUST_LOG=warn

start() {
  "$TERN" serve --listen "127.0.0.1:$PORT" --data "$data/d" >> "$data/server.log" 2>&1 &
  server=$!
}
now() { date +%s.%N; }
wait_healthz() {
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200 ]; do sleep 0.01; done
}

echo "== set-up: $PAIRS pairs"
start
wait_healthz
"$TERN" bench dm --url "$URL" --pairs "$PAIRS" --rate 2000 --duration 2 --prefix rs > /dev/null
kill "$server"; wait "$server" || true; server=""

echo "== writing $N messages with sqlite3"
t0=$(now)
sqlite3 "$data/d/tern.db" <<SQL
PRAGMA synchronous = OFF;
PRAGMA cache_size = -1000000;
CREATE TEMP TABLE cv AS
  SELECT row_number() OVER (ORDER BY c.conv) - 1 AS i, c.conv AS conv, c.max_seq AS base,
         (SELECT from_user FROM messages m WHERE m.conv = c.conv LIMIT 1) AS a,
         (SELECT to_user FROM messages m WHERE m.conv = c.conv LIMIT 1) AS b
  FROM convs c WHERE c.conv LIKE 'dm:%' AND EXISTS (SELECT 1 FROM messages m WHERE m.conv = c.conv);
CREATE TEMP TABLE k AS SELECT count(*) AS nc, ($N + count(*) - 1) / count(*) AS per FROM cv;
BEGIN;
WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < (SELECT nc * per FROM k) - 1)
INSERT INTO messages (conv, seq, msg_id, from_user, to_user, group_id, kind, content, ts, client_msg_id, inboxed)
SELECT cv.conv, cv.base + 1 + n.x % k.per,
       -- ids from a day before now, node 0, 4096 per millisecond: below any live id
       ((CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 86400000 - 1704067200000 + n.x / 4096) << 22) | (n.x % 4096),
       CASE WHEN n.x % 2 = 0 THEN cv.a ELSE cv.b END,
       CASE WHEN n.x % 2 = 0 THEN cv.b ELSE cv.a END,
       NULL, 'text', printf('{"text":"restart test message %d, about a hundred bytes of body to look like chat"}', n.x),
       CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 86400000 + n.x / 4096, NULL, 1
FROM n, k JOIN cv ON cv.i = n.x / k.per;
UPDATE convs SET max_seq = max_seq + (SELECT per FROM k)
  WHERE conv IN (SELECT conv FROM cv);
UPDATE user_convs SET
  inbox_seq = (SELECT max_seq FROM convs WHERE convs.conv = user_convs.conv),
  delivered_seq = (SELECT max_seq FROM convs WHERE convs.conv = user_convs.conv),
  read_seq = (SELECT max_seq FROM convs WHERE convs.conv = user_convs.conv)
  WHERE conv IN (SELECT conv FROM cv);
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
t1=$(now)
count=$(sqlite3 "$data/d/tern.db" "SELECT count(*) FROM messages")
echo "messages stored: $count ($(du -sh "$data/d" | cut -f1) on disk, written in $(echo "$t1 - $t0" | bc) s)"

echo "== load, then kill -9"
start
wait_healthz
"$TERN" bench dm --url "$URL" --pairs "$PAIRS" --rate 5000 --duration 20 --prefix rs > /dev/null 2>&1 &
bench=$!
sleep 10
wal=$(stat -c %s "$data/d/tern.db-wal" 2>/dev/null || echo 0)
kill -9 "$server"; wait "$server" 2>/dev/null || true; server=""
kill "$bench" 2>/dev/null; wait "$bench" 2>/dev/null || true
echo "killed during load; write-ahead log at kill: $((wal / 1024)) KiB"

echo "== restart"
t0=$(now)
start
wait_healthz
t1=$(now)
until curl -s -f -o /dev/null -H 'content-type: application/json' \
  -d '{"user":"rs-s0","password":"bench-password"}' "$URL/v1/sessions"; do sleep 0.01; done
t2=$(now)
printf 'exec to /healthz 200: %.3f s\nexec to a login answered: %.3f s\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t0" | bc)"
echo "== after the restart: a short load"
"$TERN" bench dm --url "$URL" --pairs "$PAIRS" --rate 2000 --duration 5 --prefix rs --json \
  | jq -c '{msgs_sent, msgs_ok, msgs_per_s, p99_ms, late, lost, errors}'
