//! Hostile input below the JSON layer: hand-made WebSocket frames on a
//! raw TCP socket (RFC 6455 close codes, PROTOCOL.md 2.10), and tokens the
//! server signed for users it does not know.

use crate::common::*;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A WebSocket client that writes whatever bytes it is given.
struct RawWs {
    tcp: TcpStream,
    buf: Vec<u8>,
}

/// One client frame: `first` is the FIN/RSV/opcode byte; masked unless
/// `masked` is false.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n if n < 65536 => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

const TEXT: u8 = 0x81;

impl RawWs {
    /// Upgrades with the token in the URL and reads up to `offline_done`.
    async fn open(s: &Server, token: &str) -> RawWs {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        let req = format!(
            "GET /v1/ws?token={token}&device=raw{n} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            s.addr
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut ws = RawWs {
            tcp,
            buf: Vec::new(),
        };
        let head_end = loop {
            if let Some(i) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            ws.fill().await.expect("upgrade answer");
        };
        let head = String::from_utf8_lossy(&ws.buf[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        ws.buf.drain(..head_end);
        loop {
            let (op, payload) = ws.next_frame().await.expect("a frame");
            assert_eq!(op, 1, "text frames first");
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            if v["type"] == "offline_done" {
                return ws;
            }
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(15), self.tcp.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("read timed out"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next server frame (opcode, payload); server frames are never
    /// masked.
    async fn next_frame(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let op = self.buf[0] & 0x0f;
                let (len, start) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= start + len {
                    let payload = self.buf[start..start + len].to_vec();
                    self.buf.drain(..start + len);
                    return Ok((op, payload));
                }
            }
            self.fill().await?;
        }
    }

    /// Reads up to the server's close frame; returns its code and how the
    /// connection ended after it: `Ok` for an orderly end of stream (FIN),
    /// the error otherwise (a reset).
    async fn close_code(&mut self) -> (u16, std::io::Result<()>) {
        loop {
            let (op, payload) = self.next_frame().await.expect("a close frame, not a reset");
            if op == 8 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                // Answer the close, as a client does, then read to the end.
                let _ = self.tcp.write_all(&frame(0x88, &payload[..2], true)).await;
                let end = loop {
                    match self.fill().await {
                        Ok(()) => self.buf.clear(),
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
                        Err(e) => break Err(e),
                    }
                };
                return (code, end);
            }
        }
    }
}

async fn server_and_token() -> (Server, String) {
    let s = Server::start_with(|c| {
        c.limits.frame_bytes = 4096;
        c.limits.content_bytes = 1000;
    })
    .await;
    let t = s.user("alice").await;
    (s, t)
}

/// Each bad frame on a fresh connection, and the close code it gets.
#[tokio::test]
async fn bad_frames_close_with_rfc_6455_codes() {
    let (s, t) = server_and_token().await;
    let text = |bytes: &[u8]| {
        let mut p = br#"{"type":"ping","pad":""#.to_vec();
        p.extend_from_slice(bytes);
        p.extend_from_slice(br#""}"#);
        frame(TEXT, &p, true)
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("FF FE", text(&[0xff, 0xfe]), 1007),
        ("C0 AF", text(&[0xc0, 0xaf]), 1007),
        ("ED A0 80", text(&[0xed, 0xa0, 0x80]), 1007),
        ("F4 90 80 80", text(&[0xf4, 0x90, 0x80, 0x80]), 1007),
        (
            "fragmented, bad UTF-8 across fragments",
            [
                frame(0x01, b"{\"type\":\"ping\",\"x\":\"\xe2", true),
                frame(0x80, b"\x28\xa1\"}", true),
            ]
            .concat(),
            1007,
        ),
        ("unmasked", frame(TEXT, br#"{"type":"ping"}"#, false), 1002),
        ("RSV1", frame(0xc1, br#"{"type":"ping"}"#, true), 1002),
        ("RSV3", frame(0x91, br#"{"type":"ping"}"#, true), 1002),
        ("reserved data opcode 3", frame(0x83, b"x", true), 1002),
        ("reserved control opcode B", frame(0x8b, b"x", true), 1002),
        ("200-byte ping", frame(0x89, &[7; 200], true), 1002),
        ("fragmented ping", frame(0x09, b"x", true), 1002),
        ("orphan continuation", frame(0x80, b"x", true), 1002),
        (
            "text inside a fragmented message",
            [frame(0x01, b"{", true), frame(TEXT, b"{}", true)].concat(),
            1002,
        ),
        ("one frame over the limit", text(&[b'x'; 5000]), 1009),
        (
            "normal close",
            frame(0x88, &1000u16.to_be_bytes(), true),
            1000,
        ),
    ];
    for (name, bytes, want) in cases {
        eprintln!("case: {name}");
        let mut ws = RawWs::open(&s, &t).await;
        ws.tcp.write_all(&bytes).await.unwrap();
        let (code, end) = ws.close_code().await;
        assert_eq!(code, want, "{name}");
        assert!(end.is_ok(), "{name}: {end:?} after the close frame");
    }
    // The server is fine.
    let mut c = s.connect(&t, "d").await;
    c.barrier().await;
}

/// A fragmented message far over the limit, written in full while the
/// server has already closed: the client still reads 1009 and an orderly
/// end of stream, not a reset.
#[tokio::test]
async fn oversized_fragmented_message_gets_a_readable_1009() {
    let (s, t) = server_and_token().await;
    for _ in 0..3 {
        let mut ws = RawWs::open(&s, &t).await;
        let mut bytes = frame(0x01, &[b'x'; 1000], true);
        for _ in 0..2000 {
            bytes.extend(frame(0x00, &[b'x'; 1000], true));
        }
        bytes.extend(frame(0x80, b"x", true));
        let (mut rd, mut wr) = ws.tcp.into_split();
        let writer = tokio::spawn(async move {
            let r = wr.write_all(&bytes).await;
            (wr, r)
        });
        // Read while the writer writes (2 MB: more than the socket
        // buffers hold).
        let mut buf = std::mem::take(&mut ws.buf);
        let mut chunk = [0u8; 8192];
        let mut code = None;
        let end = loop {
            let n = match tokio::time::timeout(WAIT, rd.read(&mut chunk)).await {
                Ok(Ok(0)) => break Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => break Err(e),
                Err(_) => panic!("no end of stream"),
            };
            buf.extend_from_slice(&chunk[..n]);
            if code.is_none() && buf.len() >= 4 && buf[0] == 0x88 {
                code = Some(u16::from_be_bytes([buf[2], buf[3]]));
            }
        };
        let (_wr, written) = writer.await.unwrap();
        assert_eq!(code, Some(1009), "{buf:?}");
        assert!(end.is_ok(), "ended with {end:?}, not an orderly end");
        assert!(written.is_ok(), "the server drained the rest: {written:?}");
    }
}

/// A token signed with the server's secret, for a user it never had.
#[tokio::test]
async fn tokens_of_unknown_users_are_refused() {
    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
    let s = Server::start_with(|c| c.auth.secret = SECRET.to_owned()).await;
    let real = s.user("alice").await;
    let auth = tern_core::auth::Auth::new(SECRET.as_bytes(), 3600, 8, 1).unwrap();
    let (ghost, _) = auth.issue("ghost", tern_core::now_ms()).unwrap();
    // The same signature works for a user that exists.
    let (made, _) = auth.issue("alice", tern_core::now_ms()).unwrap();
    let (st, _) = s.get("/v1/friends", Some(&made)).await;
    assert_eq!(st, 200);
    let (st, v) = s.get("/v1/friends", Some(&ghost)).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    let (st, _) = s.get("/v1/users/alice", Some(&ghost)).await;
    assert_eq!(st, 401);
    // WebSocket: in the URL and in an `auth` frame.
    let mut c = Client::open(&format!("{}?token={ghost}", s.ws_url())).await;
    assert_eq!(c.next_of("error").await["code"], "unauthenticated");
    assert_eq!(c.closed_with().await, 4001);
    let mut c = Client::open(&s.ws_url()).await;
    c.send(json!({"type":"auth","id":"1","token":ghost})).await;
    assert_eq!(c.next_of("error").await["code"], "unauthenticated");
    assert_eq!(c.closed_with().await, 4001);
    let mut c = s.connect(&real, "d").await;
    c.barrier().await;
}
