#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECS seconds each (default 180)
# and prints libFuzzer's closing lines. Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). Crashes land in
# fuzz/artifacts/TARGET/; `cargo +nightly fuzz run TARGET FILE` replays one.
#
#   scripts/fuzz.sh [SECS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-180}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decode server_frames http_bodies http_queries ws_frames)

# Seed corpora: one valid input of each shape, so the fuzzer starts from
# the protocol rather than from nothing.
seed() { # target, name, bytes (printf format)
  mkdir -p "corpus/$1"
  # shellcheck disable=SC2059
  printf "$3" > "corpus/$1/seed-$2"
}
seed frame_decode send '{"type":"send","id":"2","to":"bob","client_msg_id":"c1","kind":"text","content":"hi"}'
seed frame_decode ack '{"type":"ack","conv":"dm:alice:bob","seq":41}'
seed frame_decode history '{"type":"history","id":"6","conv":"group:g","before_seq":100,"after_seq":90,"limit":50}'
seed frame_decode delete '{"type":"delete","id":"9","conv":"dm:a:b","seqs":[1,2,3]}'
seed frame_decode room '{"type":"room_send","room":"r","content":null}'
seed server_frames msg '\000{"type":"msg","msg":{"msg_id":"7311","conv":"dm:a:b","seq":41,"from":"a","to":"b","kind":"text","content":"hello","ts":1,"client_msg_id":"c"}}'
seed server_frames receipt '\001{"type":"receipt","conv":"dm:a:b","by":"b","delivered_seq":41}'
seed server_frames error '\002{"type":"error","id":"3","code":"invalid","message":"x"}'
seed server_frames body '\003{"code":"invalid","message":"x"}'
seed server_frames done '\004{"type":"offline_done","count":0,"truncated":false}'
seed http_bodies user '\000{"user":"u1","password":"password1","name":"U"}'
seed http_bodies session '\001{"user":"fuzzer","password":"password1"}'
seed http_bodies send '\002{"to":"peer","client_msg_id":"c1","kind":"text","content":"hi"}'
seed http_bodies group '\003{"name":"g","members":["peer"]}'
seed http_bodies members '\004{"users":["peer"]}'
seed http_queries history '\001before_seq=10&after_seq=2&limit=5'
seed http_queries sync '\000since=0&limit=200'
seed ws_frames ping '\201\217{"type":"ping"}'
seed ws_frames fragments '\001\202{"\200\216"type":"ping"}'

cargo +nightly fuzz build -s none
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s"
  cargo +nightly fuzz run -s none "$t" "corpus/$t" -- \
    -max_total_time="$secs" -max_len=4096 -print_final_stats=1 2>&1 \
    | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|==[0-9]+== ERROR|SUMMARY|Test unit written|thread .* panicked)' || true
  ls "artifacts/$t" 2>/dev/null | sed 's/^/  finding: /' || true
done
