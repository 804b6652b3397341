//! HTTP request bodies, through the real server: a `tern-server` on
//! 127.0.0.1 (SQLite in a temporary directory) gets each input as the body
//! of one of the JSON-taking routes, over a kept-alive HTTP/1.1
//! connection. Every answer must be a success or a protocol error (status
//! below 500 with a `{"code","message"}` body); a panic anywhere in the
//! server aborts the process, which libFuzzer reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_proto::wire::ErrorBody;

#[path = "support/server.rs"]
mod server;
use server::{request, target};

fuzz_target!(|data: &[u8]| {
    let t = target();
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let (path, auth) = match which % 5 {
        0 => ("/v1/users", false),
        1 => ("/v1/sessions", false),
        2 => ("/v1/messages", true),
        3 => ("/v1/groups", true),
        _ => (t.members_path.as_str(), true),
    };
    let mut conn = t.conn.lock().unwrap();
    let token = auth.then_some(t.token.as_str());
    let (status, answer) = request(&mut conn, t.addr, "POST", path, token, body);
    assert!(
        status < 500,
        "POST {path} {:?} -> {status} {}",
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&answer)
    );
    if status >= 400 {
        let e: Result<ErrorBody<'static>, _> = serde_json::from_slice(&answer);
        assert!(
            e.is_ok(),
            "POST {path} {:?} -> {status} with a body that is not a protocol error: {}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&answer)
        );
    }
});
