//! Property tests against a real server (the stable, CI-run counterpart of
//! the `ws_frames` and `http_queries` fuzz targets): arbitrary WebSocket
//! frames after `auth`, arbitrary query strings and bodies on the HTTP
//! routes. Whatever comes in, the server answers within the protocol:
//! a close code of its table (docs/PROTOCOL-NOTES.md) followed by an
//! orderly end of stream, or an HTTP status below 500 with a JSON
//! `{"code","message"}` body.

use crate::common::*;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One client frame with whatever header bits the case chose.
#[derive(Debug, Clone)]
struct RawFrame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    payload: Vec<u8>,
}

impl RawFrame {
    fn bytes(&self) -> Vec<u8> {
        let mut f = vec![(u8::from(self.fin) << 7) | (self.rsv << 4) | self.opcode];
        let m = if self.masked { 0x80 } else { 0 };
        let n = self.payload.len();
        if n < 126 {
            f.push(m | n as u8);
        } else {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        if self.masked {
            let key = [1, 2, 3, 4];
            f.extend_from_slice(&key);
            f.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            f.extend_from_slice(&self.payload);
        }
        f
    }
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // JSON-ish text, sometimes with bytes that are not UTF-8.
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(ping, junk)| {
            let mut p = if ping {
                br#"{"type":"ping","id":"p","x":""#.to_vec()
            } else {
                br#"{"type":"send","to":"#.to_vec()
            };
            p.extend(junk);
            p.extend_from_slice(br#""}"#);
            p
        }),
        prop::collection::vec(any::<u8>(), 0..300),
        Just(vec![b'x'; 5000]),
    ]
}

fn raw_frame() -> impl Strategy<Value = RawFrame> {
    (
        prop::bool::weighted(0.8),
        prop::sample::select(vec![0u8, 0, 0, 0, 1, 2, 4]),
        prop::sample::select(vec![0u8, 1, 1, 1, 2, 3, 8, 9, 9, 10, 11]),
        prop::bool::weighted(0.9),
        payload(),
    )
        .prop_map(|(fin, rsv, opcode, masked, payload)| RawFrame {
            fin,
            rsv,
            opcode,
            masked,
            payload,
        })
}

/// Connects, authenticates through the URL, sends `frames`, then a ping
/// request and a close; reads to the end. Returns the server's close code,
/// if it sent one, and whether the stream ended in order.
async fn run_frames(s: &Server, token: &str, frames: &[RawFrame]) -> (Option<u16>, bool) {
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let req = format!(
        "GET /v1/ws?token={token}&device=prop HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut bytes = req.into_bytes();
    for f in frames {
        bytes.extend(f.bytes());
    }
    // A well-formed ping and close at the end: a connection still open
    // answers them.
    bytes.extend(
        RawFrame {
            fin: true,
            rsv: 0,
            opcode: 1,
            masked: true,
            payload: br#"{"type":"ping","id":"last"}"#.to_vec(),
        }
        .bytes(),
    );
    bytes.extend(
        RawFrame {
            fin: true,
            rsv: 0,
            opcode: 8,
            masked: true,
            payload: 1000u16.to_be_bytes().to_vec(),
        }
        .bytes(),
    );
    let (mut rd, mut wr) = tcp.split();
    let write = async {
        let _ = wr.write_all(&bytes).await;
    };
    let read = async {
        let mut all = Vec::new();
        let mut chunk = [0u8; 8192];
        let ended = loop {
            match tokio::time::timeout(WAIT, rd.read(&mut chunk)).await {
                Ok(Ok(0)) => break true,
                Ok(Ok(n)) => all.extend_from_slice(&chunk[..n]),
                Ok(Err(_)) => break false,
                Err(_) => panic!("the server neither answered nor closed"),
            }
        };
        (all, ended)
    };
    let ((), (all, ended)) = tokio::join!(write, read);
    // Skip the answer head, then walk the server's frames.
    let mut i = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("upgrade answer")
        + 4;
    let mut code = None;
    while i + 2 <= all.len() {
        let op = all[i] & 0x0f;
        let (len, start) = match all[i + 1] & 0x7f {
            126 => (
                usize::from(u16::from_be_bytes([all[i + 2], all[i + 3]])),
                i + 4,
            ),
            127 => (
                u64::from_be_bytes(all[i + 2..i + 10].try_into().unwrap()) as usize,
                i + 10,
            ),
            n => (usize::from(n), i + 2),
        };
        if op == 8 {
            // 1005: a close frame without a code (RFC 6455 7.1.5).
            code = Some(if len >= 2 {
                u16::from_be_bytes([all[start], all[start + 1]])
            } else {
                1005
            });
            break;
        }
        i = start + len;
    }
    (code, ended)
}

#[test]
fn arbitrary_frames_get_a_close_code_of_the_table() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, token) = rt.block_on(async {
        let s = Server::start_with(|c| {
            c.limits.frame_bytes = 4096;
            c.limits.content_bytes = 1000;
        })
        .await;
        let t = s.user("alice").await;
        (s, t)
    });
    let cfg = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(cfg, |(frames in prop::collection::vec(raw_frame(), 1..6))| {
        let (code, ended) = rt.block_on(run_frames(&s, &token, &frames));
        // A close frame of the client's own, if the server got that far,
        // is echoed with its code.
        let echo = frames.iter().find(|f| f.opcode == 8).map(|f| match f.payload.len() {
            0 => 1005,
            1 => 1002,
            _ => u16::from_be_bytes([f.payload[0], f.payload[1]]),
        });
        prop_assert!(
            matches!(code, Some(1000 | 1002 | 1007 | 1009)) || (code.is_some() && code == echo),
            "close code {:?}", code
        );
        prop_assert!(ended, "the stream ended with a reset");
    });
    drop(s);
}

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9]{1,25}",
        "-[0-9]{1,5}",
        "[%a-zA-Z0-9&=+._~-]{0,12}",
        Just("%FF%FE".to_owned()),
        Just("1e3".to_owned()),
    ]
}

#[test]
fn arbitrary_queries_and_bodies_get_protocol_answers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, token, gid) = rt.block_on(async {
        let s = Server::start().await;
        let t = s.user("alice").await;
        s.user("bob").await;
        let gid = s.new_group(&t, "g", &["bob"]).await;
        (s, t, gid)
    });
    let cfg = ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let check = |st: u16, body: &[u8]| -> Result<(), TestCaseError> {
        prop_assert!(st < 500, "status {}", st);
        if st >= 400 {
            let v: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {body:?}")))?;
            prop_assert!(v["code"].is_string() && v["message"].is_string(), "{}", v);
        }
        Ok(())
    };
    proptest!(cfg, |(
        names in prop::collection::vec(
            prop::sample::select(vec!["before_seq", "after_seq", "limit", "since", "x", ""]), 0..4),
        values in prop::collection::vec(query_value(), 4),
        conv in prop::sample::select(vec![0usize, 1, 2]),
        route in 0usize..5,
        body in prop::collection::vec(any::<u8>(), 0..64),
        json_body in r#"\{("[a-z_]{1,8}":("[a-z0-9:]{0,8}"|[0-9]{1,3}|null|\[\]|\{\}),?){0,4}\}"#,
    )| {
        let q: Vec<String> = names
            .iter()
            .zip(&values)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let conv = [format!("group:{gid}"), "dm:alice:bob".to_owned(), "nope".to_owned()][conv].clone();
        let (st, answer) = rt.block_on(async {
            let path = match route {
                0 => format!("/v1/conversations/{conv}/messages?{}", q.join("&")),
                1 => format!("/v1/conversations?{}", q.join("&")),
                2 => "/v1/messages".to_owned(),
                3 => "/v1/groups".to_owned(),
                _ => format!("/v1/groups/{gid}/members"),
            };
            let req = if route < 2 {
                s.http.get(s.url(&path))
            } else {
                let b = if body.first().is_some_and(|b| b % 2 == 0) {
                    json_body.clone().into_bytes()
                } else {
                    body.clone()
                };
                s.http.post(s.url(&path)).header("content-type", "application/json").body(b)
            };
            let r = req.bearer_auth(&token).send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.bytes().await.unwrap().to_vec())
        });
        check(st, &answer)?;
    });
    drop(s);
}
