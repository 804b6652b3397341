//! HTTP query strings, through the real server: a `tern-server` on
//! 127.0.0.1 (SQLite in a temporary directory) gets each input as the
//! query string of `GET /v1/conversations` or
//! `GET /v1/conversations/{conv}/messages` (bytes outside the query
//! character set percent-encoded, so the request line stays HTTP), over a
//! kept-alive HTTP/1.1 connection. Every answer must be a success or a
//! protocol error (status below 500 with a `{"code","message"}` body).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_proto::wire::ErrorBody;

#[path = "support/server.rs"]
mod server;
use server::{request, target};

/// The input as a query string: query characters as they are, anything
/// else percent-encoded.
fn query(bytes: &[u8]) -> String {
    let mut q = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            q.push(b as char);
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    q
}

fuzz_target!(|data: &[u8]| {
    let t = target();
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let gid = t
        .members_path
        .trim_start_matches("/v1/groups/")
        .trim_end_matches("/members");
    let path = match which % 4 {
        0 => format!("/v1/conversations?{}", query(rest)),
        1 => format!("/v1/conversations/group:{gid}/messages?{}", query(rest)),
        2 => format!("/v1/conversations/dm:fuzzer:peer/messages?{}", query(rest)),
        _ => format!("/v1/conversations/dm:a:b/messages?{}", query(rest)),
    };
    let mut conn = t.conn.lock().unwrap();
    let (status, answer) = request(&mut conn, t.addr, "GET", &path, Some(&t.token), b"");
    assert!(
        status < 500,
        "GET {path} -> {status} {}",
        String::from_utf8_lossy(&answer)
    );
    if status >= 400 {
        let e: Result<ErrorBody<'static>, _> = serde_json::from_slice(&answer);
        assert!(
            e.is_ok(),
            "GET {path} -> {status} with a body that is not a protocol error: {}",
            String::from_utf8_lossy(&answer)
        );
    }
});
