//! The WebSocket frame layer, through the real server: a `tern-server` on
//! 127.0.0.1 gets each input, after an upgrade authenticated in the URL,
//! as a run of frames: per frame one header byte (FIN, RSV bits, opcode,
//! any of them), one byte whose top bit says masked and whose low bits
//! give the length (up to 127 bytes), then the payload; a ping request and
//! a close follow. The server must end the connection with a close code
//! of its table (docs/PROTOCOL-NOTES.md: 1000, 1002, 1007, 1009, or the
//! echo of the client's own close) and then an orderly end of stream.
#![no_main]
// The server set-up is shared in shape with `http_bodies`; not all of it is used here.
#![allow(dead_code, unused_imports)]

use libfuzzer_sys::fuzz_target;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, OnceLock};
use tern_proto::wire::ErrorBody;

struct Target {
    conn: Mutex<Option<BufReader<TcpStream>>>,
    addr: SocketAddr,
    token: String,
    /// `/v1/groups/{gid}/members` of a group the fuzzing user owns.
    members_path: String,
}

static TARGET: OnceLock<Target> = OnceLock::new();

/// One request; returns (status, body).
fn request(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    if conn.is_none() {
        let s = TcpStream::connect(addr).expect("connect");
        // One write per request and no Nagle: no 40 ms delayed-ack stalls.
        s.set_nodelay(true).expect("nodelay");
        *conn = Some(BufReader::new(s));
    }
    let c = conn.as_mut().unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    c.get_mut().write_all(&req).expect("write request");
    let mut line = String::new();
    c.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut len = None;
    let mut chunked = false;
    let mut close = false;
    loop {
        line.clear();
        c.read_line(&mut line).expect("header");
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
        if l.starts_with("connection:") && l.contains("close") {
            close = true;
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            c.read_line(&mut line).expect("chunk size");
            let n = usize::from_str_radix(line.trim(), 16).expect("chunk size");
            let mut chunk = vec![0; n + 2];
            c.read_exact(&mut chunk).expect("chunk");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        out.resize(n, 0);
        c.read_exact(&mut out).expect("body");
    }
    if close {
        *conn = None;
    }
    (status, out)
}

fn target() -> &'static Target {
    TARGET.get_or_init(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let mut cfg = tern_server::Config {
            data_dir: dir.path().to_path_buf(),
            ..tern_server::Config::default()
        };
        cfg.auth.argon2_m_cost_kib = 8;
        cfg.auth.argon2_t_cost = 1;
        cfg.auth.weak_hashing_for_tests = true;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                tern_server::serve(l, cfg, std::future::pending::<()>())
                    .await
                    .unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        let mut conn = None;
        // Wait for the store to open.
        loop {
            if let Ok(s) = TcpStream::connect(addr) {
                drop(s);
                let (st, _) = request(&mut conn, addr, "GET", "/healthz", None, b"");
                if st == 200 {
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for u in ["fuzzer", "peer"] {
            let body = format!(r#"{{"user":"{u}","password":"password1"}}"#);
            let (st, b) = request(&mut conn, addr, "POST", "/v1/users", None, body.as_bytes());
            assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
        }
        let (st, b) = request(
            &mut conn,
            addr,
            "POST",
            "/v1/sessions",
            None,
            br#"{"user":"fuzzer","password":"password1"}"#,
        );
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let token = v["token"].as_str().unwrap().to_owned();
        let (st, b) = request(
            &mut conn,
            addr,
            "POST",
            "/v1/groups",
            Some(&token),
            br#"{"name":"g","members":["peer"]}"#,
        );
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let gid = v["group"].as_str().unwrap();
        Target {
            conn: Mutex::new(conn),
            addr,
            token,
            members_path: format!("/v1/groups/{gid}/members"),
        }
    })
}

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
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
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
            126 => (usize::from(u16::from_be_bytes([all[i + 2], all[i + 3]])), i + 4),
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
