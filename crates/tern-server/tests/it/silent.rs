//! Readers that stop reading entirely: their socket stays open, their
//! receive buffer is full and they answer no ping. PROTOCOL.md 2.10: a
//! slow reader is disconnected with 4008 rather than letting memory grow,
//! and `limits.stall_timeout_ms` bounds how long that takes.

use crate::common::*;
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The stall bound in these tests (ms).
const STALL_MS: u64 = 1000;

/// A WebSocket whose receive buffer is 4 KiB, authenticated with
/// `?token=`; its `ok` and (empty) offline batch are read, then nothing.
async fn silent_reader(s: &Server, token: &str) -> WebSocketStream<TcpStream> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(s.addr).await.unwrap();
    let url = format!("{}?token={token}&device=silent", s.ws_url());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    loop {
        let f = next_frame(&mut ws).await;
        if f["type"] == "offline_done" {
            return ws;
        }
    }
}

async fn next_frame(ws: &mut WebSocketStream<TcpStream>) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).unwrap(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

/// Reads all the reader was sent: the seqs of its pushes, in order, and
/// the close code it ends with (panics if it does not end within 10 s).
async fn read_to_close(ws: &mut WebSocketStream<TcpStream>) -> (Vec<u64>, u16) {
    let mut seqs = Vec::new();
    loop {
        let m = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(m))) => m,
            other => panic!("after {} pushes, no close frame: {other:?}", seqs.len()),
        };
        match m {
            Message::Text(t) => {
                let f: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(f["type"], "msg", "{f}");
                seqs.push(f["msg"]["seq"].as_u64().unwrap());
            }
            Message::Close(c) => return (seqs, c.map_or(0, |c| u16::from(c.code))),
            _ => {}
        }
    }
}

/// Bob stops reading while alice sends him `n` messages of 4 KB; after
/// the stall bound and then `wait`, he reads everything he was sent. It
/// is a gap-free run of his seqs from 1, then the 4008; all `n` messages
/// are still in his offline queue.
async fn silent_bob_is_cut(lane: bool, n: usize, wait: Duration) {
    let s = Server::start_with(|c| {
        c.limits.stall_timeout_ms = STALL_MS;
        if !lane {
            // No lagging lane: nothing holds writes back, so the kernel's
            // buffers fill and a write stops moving.
            c.limits.lagging_after_ms = 0;
        }
    })
    .await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a = s.connect(&ta, "a").await;
    let mut bob = silent_reader(&s, &tb).await;
    let text = "x".repeat(4000);
    if lane {
        // Bob does not ack his first push: he turns lagging, so his
        // window fills long before the buffers and pings go unanswered.
        a.send_text("bob", "m0", &text).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    for i in usize::from(lane)..n {
        a.send_text("bob", &format!("m{i}"), &text).await;
    }
    tokio::time::sleep(Duration::from_millis(STALL_MS) + wait).await;
    let (seqs, code) = read_to_close(&mut bob).await;
    assert_eq!(
        code,
        4008,
        "lane {lane}: {} pushes, then close {code}",
        seqs.len()
    );
    assert!(
        !seqs.is_empty() && seqs.len() < n,
        "{} of {n} written",
        seqs.len()
    );
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    println!(
        "silent_reader: lane {lane}, waited {} ms, read {} pushes then close {code}",
        (Duration::from_millis(STALL_MS) + wait).as_millis(),
        seqs.len()
    );
    let (_, (msgs, done)) = s.connect_offline(&tb, "b").await;
    assert_eq!(done["count"].as_u64(), Some(n as u64));
    let queued: Vec<u64> = msgs
        .iter()
        .map(|f| f["msg"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(queued, (1..=n as u64).collect::<Vec<_>>());
}

/// How many times each case runs (`TERN_SILENT_RUNS`, 1 by default) and
/// how long bob waits past the stall bound before he reads
/// (`TERN_SILENT_WAIT_SECS`, 2 by default): the long form loops with
/// longer waits (docs/RELIABILITY.md).
fn runs() -> (usize, Duration) {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (
        env("TERN_SILENT_RUNS", 1) as usize,
        Duration::from_secs(env("TERN_SILENT_WAIT_SECS", 2)),
    )
}

/// Writes fill the kernel's buffers (a send buffer of 256 KiB, bob's 4
/// KiB) and then stop moving: after `limits.stall_timeout_ms` without a
/// byte taken he is cut, and the 4008 waits for room until he reads.
#[tokio::test]
async fn a_reader_whose_socket_takes_nothing_is_cut() {
    let (n, wait) = runs();
    for _ in 0..n {
        silent_bob_is_cut(false, 300, wait).await;
    }
}

/// Lagging, bob's window fills before the buffers do, and he answers
/// none of the pings that would open it: past the stall bound, with more
/// queued for him, he is cut.
#[tokio::test]
async fn a_lagging_reader_that_answers_no_ping_is_cut() {
    let (n, wait) = runs();
    for _ in 0..n {
        silent_bob_is_cut(true, 100, wait).await;
    }
}
