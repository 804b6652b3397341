//! Process-level tests of the `tern` binary: crash safety (kill -9), graceful
//! shutdown on SIGTERM, the default data directory, and configuration
//! layering (defaults -> TOML -> `TERN_*` env -> flags).
//!
//! Every server is a real child process on `127.0.0.1:0`; the bound address
//! is read from its `tern: listening on ADDR` line. Every wait has a timeout
//! and every child is killed by a drop guard, so a failing test never hangs
//! or leaks a process. The clients are the SDK's (`tern_client`).

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tern_client::wire::MsgView;
use tern_client::{Error, ErrorCode, Event, Events, OutMessage, Session};
use tokio::process::Command;
use tokio::time::timeout;

mod support;
use support::peer::full_history;
use support::{tern_cmd, Tern, WAIT};

/// An SDK session of `user` (who must exist) as `device`.
async fn connect(server: &Tern, user: &str, device: &str) -> (Session, Events) {
    let client = server.login_client(user).await;
    timeout(WAIT, client.connect(device))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// The events up to the first `Disconnected`, and its close code.
async fn until_disconnected(events: &mut Events) -> (Option<u16>, Vec<Event>) {
    let mut before = Vec::new();
    loop {
        match timeout(WAIT, events.recv()).await {
            Err(_) => panic!("no disconnection within {WAIT:?}; events: {before:?}"),
            Ok(None) => panic!("the session ended without a disconnection: {before:?}"),
            Ok(Some(Event::Disconnected { code, .. })) => return (code, before),
            Ok(Some(e)) => before.push(e),
        }
    }
}

/// Text message `i` of alice to bob, with client_msg_id `c{i}`.
fn numbered(i: usize) -> OutMessage {
    OutMessage::text_to("bob", &format!("message {i}")).with_client_msg_id(&format!("c{i}"))
}

/// A message's text content.
fn text(m: &MsgView) -> String {
    let raw = m.content.as_ref().expect("content");
    serde_json::from_str(raw.get()).expect("text content")
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
    server.register("alice").await;
    let (alice, _events) = connect(&server, "alice", "d").await;

    // Every send is handed to the session before any answer is read: they
    // are all in flight at once.
    let answers = timeout(
        WAIT,
        futures_util::future::join_all((0..N).map(|i| alice.send(numbered(i)))),
    )
    .await
    .expect("every send answered in time");
    let mut acked: HashMap<String, (u64, u64)> = HashMap::new(); // client_msg_id -> (msg_id, seq)
    for (i, a) in answers.into_iter().enumerate() {
        let ok = a.unwrap_or_else(|e| panic!("send c{i} failed: {e}"));
        assert_eq!(ok.conv, "dm:alice:bob", "{ok:?}");
        assert!(!ok.duplicate, "first send reported duplicate: {ok:?}");
        assert!(
            acked.insert(format!("c{i}"), (ok.msg_id, ok.seq)).is_none(),
            "two oks for c{i}"
        );
    }
    // Crash right after the last ok: no graceful shutdown, no flush.
    server.kill9().await;
    drop(alice);

    let server = Tern::start(dir.path()).await;
    let bob = server.login_client("bob").await;
    let msgs = full_history(&bob, "dm:alice:bob").await;
    let stored: HashMap<&str, &MsgView> = msgs
        .iter()
        .map(|m| (m.client_msg_id.as_deref().expect("client_msg_id"), m))
        .collect();
    for (cid, (msg_id, seq)) in &acked {
        let m = stored
            .get(cid.as_str())
            .unwrap_or_else(|| panic!("acknowledged message {cid} (seq {seq}) lost"));
        assert_eq!((m.msg_id, m.seq), (*msg_id, *seq), "{cid}: {m:?}");
        assert_eq!(m.from, "alice", "{m:?}");
        assert_eq!(text(m), format!("message {}", &cid[1..]), "{m:?}");
    }
    // Nothing but acked messages could have been stored (every send was acked).
    assert_eq!(msgs.len(), N, "history has exactly the acked messages");
    let seqs: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
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

/// A crash in the middle of a burst of sends in flight: every acknowledged
/// message survives; messages stored but not yet acknowledged may exist
/// too, and a client that retries every unacknowledged send with the same
/// `client_msg_id` after the restart ends with each message exactly once
/// and gap-free seqs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_then_retry_loses_and_duplicates_nothing() {
    const N: usize = 300;
    const KILL_AFTER: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let server = Tern::start(dir.path()).await;
    server.register("bob").await;
    server.register("alice").await;
    let (alice, _events) = connect(&server, "alice", "d").await;
    let mut burst: FuturesUnordered<_> = (0..N)
        .map(|i| {
            let alice = alice.clone();
            async move { (i, alice.send(numbered(i)).await) }
        })
        .collect();
    let mut acked: HashMap<usize, (u64, u64)> = HashMap::new();
    while acked.len() < KILL_AFTER {
        let (i, r) = timeout(WAIT, burst.next())
            .await
            .expect("an answer in time")
            .expect("sends left");
        let ok = r.unwrap_or_else(|e| panic!("send c{i} failed: {e}"));
        acked.insert(i, (ok.msg_id, ok.seq));
    }
    server.kill9().await;
    // The application dies with the server: what was in flight is dropped.
    drop(burst);
    drop(alice);

    let server = Tern::start(dir.path()).await;
    let (alice, _events) = connect(&server, "alice", "d2").await;
    // Retry everything not acknowledged, then (as a lost-reply retry) a few acked ones.
    let retry: Vec<usize> = (0..N)
        .filter(|i| !acked.contains_key(i))
        .chain(0..5)
        .collect();
    for &i in &retry {
        let ok = alice
            .send(numbered(i))
            .await
            .unwrap_or_else(|e| panic!("retry of c{i} failed: {e}"));
        let got = (ok.msg_id, ok.seq);
        if let Some(prev) = acked.get(&i) {
            assert_eq!(
                &got, prev,
                "retry of acked c{i} returns the same msg_id and seq"
            );
            assert!(ok.duplicate, "retry of acked c{i} is a duplicate: {ok:?}");
        } else {
            acked.insert(i, got);
        }
    }

    let bob = server.login_client("bob").await;
    let msgs = full_history(&bob, "dm:alice:bob").await;
    assert_eq!(msgs.len(), N, "each message exactly once");
    let seqs: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=N as u64).collect::<Vec<_>>(), "seqs gap-free");
    for m in &msgs {
        let i: usize = m
            .client_msg_id
            .as_deref()
            .and_then(|s| s[1..].parse().ok())
            .unwrap_or_else(|| panic!("{m:?}"));
        assert_eq!((m.msg_id, m.seq), acked[&i], "{m:?}");
    }
}

/// SIGTERM: every WebSocket gets a Close frame with 1001 (after any
/// stored-but-unpushed message), and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tern::start(dir.path()).await;
    server.register("alice").await;
    server.register("bob").await;
    let (a, mut ae) = connect(&server, "alice", "d").await;
    let (_b, mut be) = connect(&server, "bob", "d").await;

    // One acknowledged message just before the signal: bob must get it
    // before his socket closes (PROTOCOL 2.10).
    let ok = a
        .send(OutMessage::text_to("bob", "bye").with_client_msg_id("c1"))
        .await
        .expect("send");
    assert_eq!(ok.seq, 1, "{ok:?}");

    server.sigterm();
    let ((ca, _), (cb, before_b)) =
        tokio::join!(until_disconnected(&mut ae), until_disconnected(&mut be));
    assert_eq!(ca, Some(1001), "alice's close code");
    assert_eq!(cb, Some(1001), "bob's close code");
    assert!(
        before_b
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.client_msg_id.as_deref() == Some("c1"))),
        "bob got the stored message before the close: {before_b:?}"
    );

    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        server.stderr()
    );
}

/// SIGTERM after a WebSocket has come and gone: nothing is left to wait
/// for, so the process exits at once (not after a shutdown bound), with
/// success, and says what it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_a_closed_socket_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tern::start(dir.path()).await;
    server.register("alice").await;
    let (a, mut ae) = connect(&server, "alice", "d").await;
    a.close().await;
    let (code, _) = until_disconnected(&mut ae).await;
    assert_eq!(code, Some(1000), "the client's own close");
    // The server has seen the close and ended the session.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(2)).await;
    let took = started.elapsed();
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        server.stderr()
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let log = server.stderr();
    assert!(log.contains("shutting down"), "stderr:\n{log}");
}

/// SIGTERM with a connection open: it reads its 1001 before the process
/// exits, and the exit is prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_open_socket_sends_1001_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tern::start(dir.path()).await;
    server.register("alice").await;
    let (_a, mut ae) = connect(&server, "alice", "d").await;

    let started = std::time::Instant::now();
    server.sigterm();
    let (code, _) = until_disconnected(&mut ae).await;
    // A close frame with its code, not a lost connection: the process
    // wrote it before it exited.
    assert_eq!(code, Some(1001), "close code");
    let status = server.wait_exit(Duration::from_secs(2)).await;
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        server.stderr()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
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
    server.register("alice").await;
    let (ws, mut events) = connect(&server, "alice", "d").await;

    // content_bytes = 100 (env): 90 chars encode to 92 bytes, 200 chars to 202.
    let send =
        |id: &str, n: usize| OutMessage::text_to("bob", &"x".repeat(n)).with_client_msg_id(id);
    let ok = ws.send(send("small", 90)).await;
    assert!(ok.is_ok(), "{ok:?}");
    match ws.send(send("big", 200)).await {
        Err(e @ Error::Server { .. }) => {
            assert_eq!(e.code(), Some(ErrorCode::ContentTooLarge), "{e:?}")
        }
        other => panic!("200 chars over content_bytes: {other:?}"),
    }

    // frame_bytes = 2048 (file): a 3000-byte frame closes with 1009, though
    // the default limit (64 KiB) would allow it. (`room_send` is not
    // retried, so the frame goes out once.)
    let big = serde_json::Value::from("p".repeat(3000));
    let r = ws.room_send("lobby", &big).await;
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    let (code, _) = until_disconnected(&mut events).await;
    assert_eq!(code, Some(1009), "frame over limits.frame_bytes");
    drop(ws);
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
