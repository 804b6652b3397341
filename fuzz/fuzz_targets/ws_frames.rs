//! The WebSocket frame layer, through the real server: a `tern-server` on
//! 127.0.0.1 gets each input, after an upgrade authenticated in the URL,
//! as a run of frames: per frame one header byte (FIN, RSV bits, opcode,
//! any of them), one byte whose top bit says masked and whose low bits
//! give the length (up to 127 bytes), then the payload; a ping request and
//! a close follow. The server must end the connection with a close code
//! of its table (docs/PROTOCOL-NOTES.md: 1000, 1002, 1007, 1009, or the
//! echo of the client's own close) and then an orderly end of stream.
#![no_main]
// Not every import is used by every input shape.
#![allow(dead_code, unused_imports)]

use libfuzzer_sys::fuzz_target;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, OnceLock};
use tern_proto::wire::ErrorBody;

#[path = "support/server.rs"]
mod server;
use server::{request, target};

/// One client frame.
fn frame(first: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first, (u8::from(masked) << 7) | payload.len() as u8];
    if masked {
        let key = [9u8, 8, 7, 6];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

fuzz_target!(|data: &[u8]| {
    let t = target();
    let mut frames = Vec::new();
    let mut echo = None;
    let mut rest = data;
    while rest.len() >= 2 {
        let (first, len_byte) = (rest[0], rest[1]);
        let len = usize::from(len_byte & 0x7f).min(rest.len() - 2);
        let payload = &rest[2..2 + len];
        if first & 0x0f == 8 && echo.is_none() {
            echo = Some(match payload.len() {
                0 => 1005,
                1 => 1002,
                _ => u16::from_be_bytes([payload[0], payload[1]]),
            });
        }
        frames.extend(frame(first, len_byte & 0x80 != 0, payload));
        rest = &rest[2 + len..];
    }
    frames.extend(frame(0x81, true, br#"{"type":"ping","id":"last"}"#));
    frames.extend(frame(0x88, true, &1000u16.to_be_bytes()));

    let mut s = TcpStream::connect(t.addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let req = format!(
        "GET /v1/ws?token={}&device=fuzz HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        t.token
    );
    let mut bytes = req.into_bytes();
    bytes.extend(frames);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&bytes);
    });
    let mut all = Vec::new();
    let ended = loop {
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("the server neither answered nor closed")
            }
            Err(_) => break false,
        }
    };
    writer.join().unwrap();
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
            code = Some(if len >= 2 {
                u16::from_be_bytes([all[start], all[start + 1]])
            } else {
                1005
            });
            break;
        }
        i = start + len;
    }
    assert!(
        matches!(code, Some(1000 | 1002 | 1007 | 1009)) || (code.is_some() && code == echo),
        "close code {code:?} for {data:?}"
    );
    assert!(ended, "reset after the close for {data:?}");
});
