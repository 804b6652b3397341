//! Process-level tests of the `tern` binary: crash safety (kill -9), graceful
//! shutdown on SIGTERM, the default data directory, and configuration
//! layering (defaults -> TOML -> `TERN_*` env -> flags).
//!
//! Every server is a real child process on `127.0.0.1:0`; the bound address
//! is read from its `tern: listening on ADDR` line. Every wait has a timeout
//! and every child is killed by a drop guard, so a failing test never hangs
//! or leaks a process.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod support;
use support::{tern_cmd, Tern, WAIT};

/// The WebSocket client of these tests.
impl Tern {
    /// An authenticated WebSocket with the offline batch consumed.
    async fn connect(&self, token: &str, device: &str) -> Ws {
        let url = format!("ws://{}/v1/ws", self.addr);
        let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("WS connect in time")
            .expect("WS connect");
        let mut ws = Ws {
            ws,
            queued: VecDeque::new(),
        };
        ws.send(json!({"type": "auth", "id": "1", "token": token, "device": device}))
            .await;
        let ok = ws.next_frame().await;
        assert_eq!(
            (ok["type"].as_str(), ok["id"].as_str()),
            (Some("ok"), Some("1")),
            "auth: {ok}"
        );
        loop {
            let f = ws.next_frame().await;
            match f["type"].as_str() {
                Some("offline_done") => return ws,
                Some("msg") => {}
                _ => panic!("unexpected frame before offline_done: {f}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A small WebSocket client
// ---------------------------------------------------------------------------

struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames split out of a `batch`, not yet returned.
    queued: VecDeque<Value>,
}

/// What the server sent next: a JSON frame, or the end of the connection.
#[derive(Debug)]
enum Next {
    Frame(Value),
    /// A Close frame: its code (None for a close without a code).
    Close(Option<u16>),
    /// The stream ended or failed without a Close frame.
    Gone(String),
}

impl Ws {
    async fn send(&mut self, v: Value) {
        self.send_raw(Message::Text(v.to_string().into())).await;
    }

    async fn send_raw(&mut self, m: Message) {
        timeout(WAIT, self.ws.send(m))
            .await
            .expect("WS send in time")
            .expect("WS send");
    }

    /// Queues a frame without flushing (for pipelining).
    async fn feed(&mut self, v: Value) {
        timeout(WAIT, self.ws.feed(Message::Text(v.to_string().into())))
            .await
            .expect("WS feed in time")
            .expect("WS feed");
    }

    async fn flush(&mut self) {
        timeout(WAIT, self.ws.flush())
            .await
            .expect("WS flush in time")
            .expect("WS flush");
    }

    /// The next text frame or the end of the connection, within `WAIT`.
    async fn next(&mut self) -> Next {
        if let Some(v) = self.queued.pop_front() {
            return Next::Frame(v);
        }
        loop {
            let m = match timeout(WAIT, self.ws.next()).await {
                Err(_) => panic!("no frame from the server within {WAIT:?}"),
                Ok(None) => return Next::Gone("stream ended".into()),
                Ok(Some(Err(e))) => return Next::Gone(e.to_string()),
                Ok(Some(Ok(m))) => m,
            };
            match m {
                Message::Text(t) => {
                    let v: Value =
                        serde_json::from_str(t.as_str()).expect("server frames are JSON");
                    if v["type"] == "batch" {
                        self.queued.extend(
                            v["frames"]
                                .as_array()
                                .expect("batch frames")
                                .iter()
                                .cloned(),
                        );
                        if let Some(v) = self.queued.pop_front() {
                            return Next::Frame(v);
                        }
                        continue;
                    }
                    return Next::Frame(v);
                }
                Message::Close(c) => return Next::Close(c.map(|c| u16::from(c.code))),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Binary(_) => panic!("unexpected binary frame"),
            }
        }
    }

    /// The next JSON frame; panics if the connection ends instead.
    async fn next_frame(&mut self) -> Value {
        match self.next().await {
            Next::Frame(v) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Reads until the server's Close frame; returns its code and the JSON
    /// frames that came before it.
    async fn until_close(&mut self) -> (Option<u16>, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            match self.next().await {
                Next::Frame(v) => before.push(v),
                Next::Close(code) => return (code, before),
                Next::Gone(why) => {
                    panic!("connection ended without a Close frame ({why}); frames: {before:?}")
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Every `send` the server acknowledged is in history after a SIGKILL and
/// a restart on the same data directory, with the same `msg_id` and `seq`,
/// and the conversation's seqs are 1..=N without gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let server = Tern::start(dir.path()).await;
    server.register("bob").await;
    let alice = server.user("alice").await;
    let mut ws = server.connect(&alice, "d").await;

    // Pipeline: every frame goes out before any reply is read.
    for i in 0..N {
        ws.feed(json!({
            "type": "send", "id": format!("s{i}"), "to": "bob",
            "client_msg_id": format!("c{i}"), "kind": "text", "content": format!("message {i}"),
        }))
        .await;
    }
    ws.flush().await;

    let mut acked: HashMap<String, (String, u64)> = HashMap::new(); // client_msg_id -> (msg_id, seq)
    while acked.len() < N {
        let f = ws.next_frame().await;
        match f["type"].as_str() {
            Some("ok") => {
                let id = f["id"].as_str().expect("ok has id");
                let i: usize = id
                    .strip_prefix('s')
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{f}"));
                assert_eq!(f["conv"], "dm:alice:bob", "{f}");
                assert!(
                    f.get("duplicate").is_none(),
                    "first send reported duplicate: {f}"
                );
                let msg_id = f["msg_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("msg_id is a string: {f}"))
                    .to_owned();
                let seq = f["seq"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("seq is an integer: {f}"));
                assert!(
                    acked.insert(format!("c{i}"), (msg_id, seq)).is_none(),
                    "two oks for {id}"
                );
            }
            Some("error") => panic!("send failed: {f}"),
            _ => {} // pushes to alice's own devices etc. are not under test
        }
    }
    // Crash right after the last ok: no graceful shutdown, no flush.
    server.kill9().await;

    let server = Tern::start(dir.path()).await;
    let bob = server.login("bob").await;
    let (st, body) = server
        .get("/v1/conversations/dm:alice:bob/messages?limit=500", &bob)
        .await;
    assert_eq!(st, 200, "history: {body}");
    let msgs = body["msgs"]
        .as_array()
        .unwrap_or_else(|| panic!("msgs: {body}"));
    let stored: HashMap<&str, &Value> = msgs
        .iter()
        .map(|m| {
            (
                m["client_msg_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("client_msg_id: {m}")),
                m,
            )
        })
        .collect();
    for (cid, (msg_id, seq)) in &acked {
        let m = stored
            .get(cid.as_str())
            .unwrap_or_else(|| panic!("acknowledged message {cid} (seq {seq}) lost"));
        assert_eq!(
            m["msg_id"].as_str(),
            Some(msg_id.as_str()),
            "msg_id of {cid}: {m}"
        );
        assert_eq!(m["seq"].as_u64(), Some(*seq), "seq of {cid}: {m}");
        assert_eq!(m["from"], "alice", "{m}");
        assert_eq!(m["content"], format!("message {}", &cid[1..]), "{m}");
    }
    // Nothing but acked messages could have been stored (every send was acked).
    assert_eq!(msgs.len(), N, "history has exactly the acked messages");
    let seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=N as u64).collect::<Vec<_>>(),
        "seqs ascending and gap-free"
    );
    let mut acked_seqs: Vec<u64> = acked.values().map(|(_, s)| *s).collect();
    acked_seqs.sort_unstable();
    assert_eq!(
        acked_seqs,
        (1..=N as u64).collect::<Vec<_>>(),
        "acked seqs gap-free"
    );
}

/// A crash in the middle of a pipelined burst: every acknowledged message
/// survives; messages stored but not yet acknowledged may exist too, and a
/// client that retries every unacknowledged send with the same
/// `client_msg_id` after the restart ends with each message exactly once
/// and gap-free seqs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_then_retry_loses_and_duplicates_nothing() {
    const N: usize = 300;
    const KILL_AFTER: usize = 60;
    let send = |i: usize| {
        json!({
            "type": "send", "id": format!("s{i}"), "to": "bob",
            "client_msg_id": format!("c{i}"), "kind": "text", "content": format!("message {i}"),
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Tern::start(dir.path()).await;
    server.register("bob").await;
    let alice = server.user("alice").await;
    let mut ws = server.connect(&alice, "d").await;
    for i in 0..N {
        ws.feed(send(i)).await;
    }
    ws.flush().await;
    let mut acked: HashMap<usize, (String, u64)> = HashMap::new();
    while acked.len() < KILL_AFTER {
        let f = ws.next_frame().await;
        match f["type"].as_str() {
            Some("ok") => {
                let i: usize = f["id"]
                    .as_str()
                    .and_then(|s| s[1..].parse().ok())
                    .unwrap_or_else(|| panic!("{f}"));
                acked.insert(
                    i,
                    (
                        f["msg_id"].as_str().unwrap().to_owned(),
                        f["seq"].as_u64().unwrap(),
                    ),
                );
            }
            Some("error") => panic!("send failed: {f}"),
            _ => {}
        }
    }
    server.kill9().await;
    drop(ws);

    let server = Tern::start(dir.path()).await;
    let alice = server.login("alice").await;
    let mut ws = server.connect(&alice, "d2").await;
    // Retry everything not acknowledged, then (as a lost-reply retry) a few acked ones.
    let retry: Vec<usize> = (0..N)
        .filter(|i| !acked.contains_key(i))
        .chain(0..5)
        .collect();
    for &i in &retry {
        ws.send(send(i)).await;
        let f = ws.next_frame().await;
        assert_eq!(
            (f["type"].as_str(), f["id"].as_str()),
            (Some("ok"), Some(format!("s{i}").as_str())),
            "{f}"
        );
        let got = (
            f["msg_id"].as_str().unwrap().to_owned(),
            f["seq"].as_u64().unwrap(),
        );
        if let Some(prev) = acked.get(&i) {
            assert_eq!(
                &got, prev,
                "retry of acked c{i} returns the same msg_id and seq"
            );
            assert_eq!(
                f["duplicate"], true,
                "retry of acked c{i} is a duplicate: {f}"
            );
        } else {
            acked.insert(i, got);
        }
    }

    let bob = server.login("bob").await;
    let (st, body) = server
        .get("/v1/conversations/dm:alice:bob/messages?limit=500", &bob)
        .await;
    assert_eq!(st, 200, "history: {body}");
    let msgs = body["msgs"]
        .as_array()
        .unwrap_or_else(|| panic!("msgs: {body}"));
    assert_eq!(msgs.len(), N, "each message exactly once");
    let seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=N as u64).collect::<Vec<_>>(), "seqs gap-free");
    for m in msgs {
        let i: usize = m["client_msg_id"]
            .as_str()
            .and_then(|s| s[1..].parse().ok())
            .unwrap_or_else(|| panic!("{m}"));
        let (msg_id, seq) = &acked[&i];
        assert_eq!(
            (m["msg_id"].as_str(), m["seq"].as_u64()),
            (Some(msg_id.as_str()), Some(*seq)),
            "{m}"
        );
    }
}

/// SIGTERM: every WebSocket gets a Close frame with 1001 (after any
/// stored-but-unpushed message), and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tern::start(dir.path()).await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut a = server.connect(&alice, "d").await;
    let mut b = server.connect(&bob, "d").await;

    // One acknowledged message just before the signal: bob must get it
    // before his socket closes (PROTOCOL 2.10).
    a.send(json!({"type": "send", "id": "2", "to": "bob", "client_msg_id": "c1", "kind": "text", "content": "bye"}))
        .await;
    let ok = a.next_frame().await;
    assert_eq!(
        (ok["type"].as_str(), ok["seq"].as_u64()),
        (Some("ok"), Some(1)),
        "{ok}"
    );

    server.sigterm();
    let ((ca, _), (cb, before_b)) = tokio::join!(a.until_close(), b.until_close());
    assert_eq!(ca, Some(1001), "alice's close code");
    assert_eq!(cb, Some(1001), "bob's close code");
    assert!(
        before_b
            .iter()
            .any(|f| f["type"] == "msg" && f["msg"]["client_msg_id"] == "c1"),
        "bob got the stored message before the close: {before_b:?}"
    );

    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        server.stderr()
    );
}

/// With no `--data`, the store lives in `./tern-data` of the current directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_defaults() {
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = tern_cmd(&["serve", "--listen", "127.0.0.1:0"]);
    cmd.current_dir(cwd.path());
    let server = Tern::spawn(cmd).await;
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    assert_ne!(server.addr.port(), 0);
    let db = cwd.path().join("tern-data").join("tern.db");
    assert!(db.is_file(), "{} exists once listening", db.display());
    // And it serves: the store is usable.
    server.register("carol").await;
    server.kill9().await;
}

/// The shipped example configuration is accepted by `tern serve --config`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_config_starts() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tern.example.toml");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Tern::spawn(tern_cmd(&[
        "serve",
        "--config",
        example,
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
    ]))
    .await;
    assert!(data.join("tern.db").is_file());
    server.kill9().await;
}

/// TOML file, then `TERN_*` env, then flags, checked by behaviour; an
/// invalid file stops `tern serve` with a non-zero status and a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_env_and_flags_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let file_data = tmp.path().join("file-data");
    let flag_data = tmp.path().join("flag-data");
    let cfg = tmp.path().join("tern.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n[limits]\nframe_bytes = 2048\ncontent_bytes = 1000\n",
            file_data.to_str().unwrap()
        ),
    )
    .unwrap();

    // listen and frame_bytes from the file; content_bytes: env beats file;
    // data_dir: flag beats file.
    let mut cmd = tern_cmd(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        flag_data.to_str().unwrap(),
    ]);
    cmd.env("TERN_LIMITS__CONTENT_BYTES", "100");
    let server = Tern::spawn(cmd).await;
    assert!(
        server.addr.ip().is_loopback() && server.addr.port() != 0,
        "listen from the file: {}",
        server.addr
    );
    assert!(
        flag_data.join("tern.db").is_file(),
        "--data beats the file's data_dir"
    );
    assert!(!file_data.exists(), "the file's data_dir is unused");

    server.register("bob").await;
    let alice = server.user("alice").await;
    let mut ws = server.connect(&alice, "d").await;

    // content_bytes = 100 (env): 90 chars encode to 92 bytes, 200 chars to 202.
    let send = |id: &str, n: usize| json!({"type": "send", "id": id, "to": "bob", "client_msg_id": id, "kind": "text", "content": "x".repeat(n)});
    ws.send(send("small", 90)).await;
    let ok = ws.next_frame().await;
    assert_eq!(
        (ok["type"].as_str(), ok["id"].as_str()),
        (Some("ok"), Some("small")),
        "{ok}"
    );
    ws.send(send("big", 200)).await;
    let err = ws.next_frame().await;
    assert_eq!(
        (
            err["type"].as_str(),
            err["id"].as_str(),
            err["code"].as_str()
        ),
        (Some("error"), Some("big"), Some("content_too_large")),
        "{err}"
    );

    // frame_bytes = 2048 (file): a 3000-byte frame closes with 1009, though
    // the default limit (64 KiB) would allow it.
    ws.send_raw(Message::Text(
        format!("{{\"type\":\"ping\",\"pad\":\"{}\"}}", "p".repeat(3000)).into(),
    ))
    .await;
    let (code, _) = ws.until_close().await;
    assert_eq!(code, Some(1009), "frame over limits.frame_bytes");
    server.kill9().await;

    // An invalid file: non-zero exit and a message naming the setting.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:0\"\n[limits]\nframe_bytes = 10\n",
    )
    .unwrap();
    let out = run_to_exit(tern_cmd(&[
        "serve",
        "--config",
        bad.to_str().unwrap(),
        "--data",
        flag_data.to_str().unwrap(),
    ]))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "bad frame_bytes must fail; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("frame_bytes"),
        "stderr names the bad setting:\n{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it never listened"
    );

    // An unknown key is an error, not silently ignored.
    let typo = tmp.path().join("typo.toml");
    std::fs::write(
        &typo,
        "listen = \"127.0.0.1:0\"\n[limits]\nframe_byte = 4096\n",
    )
    .unwrap();
    let out = run_to_exit(tern_cmd(&[
        "serve",
        "--config",
        typo.to_str().unwrap(),
        "--data",
        flag_data.to_str().unwrap(),
    ]))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "unknown key must fail; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("`frame_byte`"),
        "stderr names the unknown key:\n{stderr}"
    );

    // A bad environment variable fails the same way.
    let mut cmd = tern_cmd(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        flag_data.to_str().unwrap(),
    ]);
    cmd.env("TERN_LIMITS__CONTENT_BYTES", "0");
    let out = run_to_exit(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "content_bytes = 0 must fail; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("content_bytes"),
        "stderr names the bad setting:\n{stderr}"
    );
}

/// Runs a command that is expected to exit on its own, within `WAIT`.
async fn run_to_exit(mut cmd: Command) -> std::process::Output {
    let child = cmd.spawn().expect("spawn tern");
    match timeout(WAIT, child.wait_with_output()).await {
        Ok(r) => r.expect("wait"),
        // The child was moved into the timed-out future and is killed on drop.
        Err(_) => panic!("tern kept running with a config that should be rejected"),
    }
}
