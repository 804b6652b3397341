//! Shared by the test targets: where the services are, and what to do
//! when they are not there.

#![allow(dead_code)]

pub mod conformance;

pub fn redis_url() -> String {
    std::env::var("TERN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn nats_url() -> String {
    std::env::var("TERN_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A service is down: fails under CI, else the test passes vacuously.
pub fn unreachable(what: &str, url: &str, e: impl std::error::Error) {
    let mut e: String = {
        let mut s = e.to_string();
        let mut src = e.source();
        while let Some(cause) = src {
            s.push_str(&format!(": {cause}"));
            src = cause.source();
        }
        s
    };
    e.truncate(300);
    if std::env::var_os("CI").is_some() {
        panic!("{what} at {url} is not reachable (CI is set): {e}");
    }
    eprintln!("skipping: {what} at {url} not reachable: {e}");
}

/// A name no other test uses (key prefixes, streams, subjects).
pub fn unique(tag: &str) -> String {
    format!("{tag}{:012x}", rand::random::<u64>() >> 16)
}
