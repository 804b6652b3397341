//! The server every HTTP and WebSocket fuzz target drives: a `tern-server`
//! on 127.0.0.1 (SQLite in a temporary directory, started once per
//! process) with a user, a token and a group, and one kept-alive HTTP/1.1
//! request at a time over a plain socket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, OnceLock};

pub struct Target {
    pub conn: Mutex<Option<BufReader<TcpStream>>>,
    pub addr: SocketAddr,
    pub token: String,
    /// `/v1/groups/{gid}/members` of a group the fuzzing user owns.
    pub members_path: String,
}

static TARGET: OnceLock<Target> = OnceLock::new();

/// One request; returns (status, body).
pub fn request(
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

pub fn target() -> &'static Target {
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
