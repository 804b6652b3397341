//! Bad input and every configured bound (PROTOCOL.md 2.10).

use crate::common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn bad_frames_get_error_codes_and_the_connection_stays() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    s.user("bob").await;
    let mut a = s.connect(&ta, "a").await;
    a.send_raw("not json").await;
    let e = a.next().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("bad_frame"))
    );
    a.send_raw(r#"{"id":"x1"}"#).await;
    let e = a.next().await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("bad_frame"), Some("x1"))
    );
    a.send_raw("[1,2]").await;
    assert_eq!(a.next().await["code"], "bad_frame");
    a.err(json!({"type":"teleport"}), "unknown_type").await;
    let send = |v: serde_json::Value| {
        let mut base =
            json!({"type":"send","to":"bob","client_msg_id":"c1","kind":"text","content":"x"});
        for (k, val) in v.as_object().unwrap() {
            if val.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = val.clone();
            }
        }
        base
    };
    a.err(send(json!({"to":"nobody"})), "no_such_user").await;
    a.err(send(json!({"to":"bad name"})), "no_such_user").await;
    a.err(send(json!({"client_msg_id":null})), "invalid").await;
    a.err(send(json!({"client_msg_id":""})), "invalid").await;
    a.err(send(json!({"client_msg_id":"x".repeat(65)})), "invalid")
        .await;
    a.err(send(json!({"kind":"system"})), "invalid").await;
    a.err(send(json!({"kind":"video"})), "invalid").await;
    a.err(send(json!({"kind":"text","content":{"a":1}})), "invalid")
        .await;
    a.err(send(json!({"kind":"image","content":"str"})), "invalid")
        .await;
    a.err(send(json!({"content":null})), "invalid").await;
    a.err(send(json!({"to":null})), "invalid").await;
    a.err(send(json!({"group":"g1"})), "invalid").await;
    a.err(send(json!({"seq":"x"})), "invalid").await;
    a.err(
        send(json!({"content":"x".repeat(16385)})),
        "content_too_large",
    )
    .await;
    // Exactly at the limit is fine (the JSON string with quotes is 16384 bytes).
    a.ok(send(
        json!({"client_msg_id":"big","content":"x".repeat(16382)}),
    ))
    .await;
    let long_id = "i".repeat(65);
    let r = a.request(json!({"type":"ping","id":long_id})).await;
    drop(r);
    // Still usable after all of that.
    a.barrier().await;
    a.ok(send(json!({"client_msg_id":"c2"}))).await;
}

#[tokio::test]
async fn oversized_frame_closes_1009() {
    let s = Server::start_with(|c| {
        c.limits.frame_bytes = 4096;
        c.limits.content_bytes = 1000;
    })
    .await;
    let ta = s.user("alice").await;
    let mut a = s.connect(&ta, "a").await;
    let r = a
        .request(json!({"type":"ping","pad":"x".repeat(3000)}))
        .await;
    assert_eq!(r["type"], "pong");
    a.send(json!({"type":"ping","pad":"x".repeat(5000)})).await;
    assert_eq!(a.closed_with().await, 1009);
}

#[tokio::test]
async fn frame_rate_limit_then_close_4008() {
    let s = Server::start_with(|c| {
        c.limits.frame_rate = 20;
        c.limits.frame_burst = 20;
        c.limits.rate_close_secs = 1;
    })
    .await;
    let ta = s.user("alice").await;
    let mut a = s.connect(&ta, "a").await;
    for i in 0..60 {
        a.send(json!({"type":"ping","id":format!("p{i}")})).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..60 {
        let f = a.next().await;
        match (f["type"].as_str(), f["code"].as_str()) {
            (Some("pong"), _) => pongs += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            _ => panic!("unexpected {f}"),
        }
    }
    assert!(
        pongs >= 20 && limited >= 30,
        "pongs {pongs} limited {limited}"
    );
    // Staying over the limit for rate_close_secs closes the connection.
    let start = tokio::time::Instant::now();
    while a.closed().is_none() && start.elapsed() < Duration::from_secs(10) {
        for _ in 0..10 {
            if !a.try_send(json!({"type":"ping"})).await {
                break;
            }
        }
        // Read what came back before sending more.
        while a.next_within(Duration::from_millis(5)).await.is_some() {}
    }
    assert_eq!(a.closed_with().await, 4008);
    // A well-behaved connection of the same user is unaffected.
    let mut b = s.connect(&ta, "b").await;
    b.barrier().await;
}

// ----- HTTP: every error in the protocol's shape (PROTOCOL.md 3) -----

/// Sends a raw HTTP request; returns (status, JSON body, headers).
async fn raw(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let mut req = s.http.request(method, s.url(path));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {st} {text:?}"));
    (st, v, headers)
}

fn code_of(v: &serde_json::Value) -> (&str, bool) {
    (
        v["code"].as_str().unwrap_or(""),
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
    )
}

#[tokio::test]
async fn every_http_error_is_json_with_its_status() {
    use reqwest::Method;
    let s = Server::start_with(|c| c.http.body_bytes = c.limits.frame_bytes).await;
    let t = s.user("alice").await;
    let big = format!(r#"{{"user":"bob","password":"{}"}}"#, "x".repeat(70_000));
    type Case = (Method, &'static str, Option<Vec<u8>>, u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/v1/users",
            Some(big.into_bytes()),
            413,
            "content_too_large",
        ),
        (
            Method::POST,
            "/v1/users",
            Some(b"{not json".to_vec()),
            400,
            "invalid",
        ),
        (
            Method::POST,
            "/v1/users",
            Some(br#"{"user":"bob"}"#.to_vec()),
            400,
            "invalid",
        ),
        (
            Method::POST,
            "/v1/sessions",
            Some(b"[]".to_vec()),
            400,
            "invalid",
        ),
        (Method::GET, "/v1/nowhere", None, 404, "not_found"),
        (Method::GET, "/web/nowhere.js", None, 404, "not_found"),
        (Method::DELETE, "/v1/users", None, 405, "method_not_allowed"),
        (
            Method::PATCH,
            "/v1/messages",
            None,
            405,
            "method_not_allowed",
        ),
        // A plain GET where a WebSocket upgrade is expected.
        (Method::GET, "/v1/ws", None, 400, "invalid"),
    ];
    for (m, path, body, want_st, want_code) in cases {
        let (st, v, _) = raw(&s, m.clone(), path, body).await;
        assert_eq!(
            (st, code_of(&v)),
            (want_st, (want_code, true)),
            "{m} {path}: {v}"
        );
    }
    // Bad query parameters, with a token.
    for path in [
        "/v1/conversations?limit=lots",
        "/v1/conversations/dm:alice:bob/messages?before_seq=-1",
    ] {
        let r = s
            .http
            .get(s.url(path))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!((st, code_of(&v)), (400, ("invalid", true)), "{path}: {v}");
    }
    // A body over the limit on an authenticated call too.
    let r = s
        .http
        .post(s.url("/v1/messages"))
        .bearer_auth(&t)
        .body(vec![b' '; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code_of(&v), ("content_too_large", true), "{v}");
}

// ----- rate limits (config [rate]) -----

async fn login_as(s: &Server, user: &str, password: &str) -> (u16, serde_json::Value, Option<u64>) {
    let r = s
        .http
        .post(s.url("/v1/sessions"))
        .json(&json!({"user": user, "password": password}))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    (st, r.json().await.unwrap(), retry)
}

#[tokio::test]
async fn failed_logins_of_a_user_are_limited_and_others_still_log_in() {
    let s = Server::start_with(default_rates).await;
    s.user("alice").await;
    s.user("bob").await;
    // The default: 10 failures per 5 minutes.
    for i in 0..10 {
        let (st, v, _) = login_as(&s, "alice", "wrong-password").await;
        assert_eq!(
            (st, v["code"].as_str()),
            (401, Some("bad_credentials")),
            "try {i}"
        );
    }
    let (st, v, retry) = login_as(&s, "alice", "wrong-password").await;
    assert_eq!((st, v["code"].as_str()), (429, Some("rate_limited")), "{v}");
    let retry = retry.expect("429 carries Retry-After");
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    // Even the right password waits: the limit is on the account.
    let (st, _, _) = login_as(&s, "alice", "password1").await;
    assert_eq!(st, 429);
    // Another user from the same address is unaffected.
    let (st, v, _) = login_as(&s, "bob", "password1").await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn concurrent_failed_logins_cannot_pass_the_limit_together() {
    let s = Server::start_with(default_rates).await;
    s.user("alice").await;
    let tries = (0..40).map(|_| login_as(&s, "alice", "wrong-password"));
    let got = futures_util::future::join_all(tries).await;
    let wrong = got.iter().filter(|g| g.0 == 401).count();
    let limited = got.iter().filter(|g| g.0 == 429).count();
    assert_eq!(
        (wrong, limited),
        (10, 30),
        "{:?}",
        got.iter().map(|g| g.0).collect::<Vec<_>>()
    );
    // The account is locked now, for the right password too.
    assert_eq!(login_as(&s, "alice", "password1").await.0, 429);
    // Correct logins take nothing: bob is never limited.
    s.user("bob").await;
    for _ in 0..20 {
        assert_eq!(login_as(&s, "bob", "password1").await.0, 200);
    }
}

#[tokio::test]
async fn concurrent_correct_logins_of_one_user_all_succeed() {
    let s = Server::start_with(default_rates).await;
    s.user("alice").await;
    let tries = (0..64).map(|_| login_as(&s, "alice", "password1"));
    let codes: Vec<u16> = futures_util::future::join_all(tries)
        .await
        .iter()
        .map(|g| g.0)
        .collect();
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    // None of them counted as a failure: all 10 are still there.
    for i in 0..10 {
        assert_eq!(
            login_as(&s, "alice", "wrong-password").await.0,
            401,
            "try {i}"
        );
    }
    assert_eq!(login_as(&s, "alice", "wrong-password").await.0, 429);
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_with_retry_after() {
    // Real argon2 costs (19 MiB, 2 passes), one hash at a time, two waiting.
    let s = Server::start_with(|c| {
        c.auth.argon2_m_cost_kib = 19456;
        c.auth.argon2_t_cost = 2;
        c.limits.hash_concurrency = 1;
        c.limits.hash_queue = 2;
    })
    .await;
    s.user("alice").await;
    let logins = (0..12).map(|_| async {
        let (st, v, retry) = login_as(&s, "alice", "password1").await;
        (st, v["code"].as_str().unwrap_or("").to_owned(), retry)
    });
    let registrations = (0..12).map(|i| {
        let s = &s;
        async move {
            let r = s
                .http
                .post(s.url("/v1/users"))
                .json(&json!({"user": format!("new{i}"), "password": "password1"}))
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let v: serde_json::Value = r.json().await.unwrap();
            (st, v["code"].as_str().unwrap_or("").to_owned(), retry)
        }
    });
    let (l, r) = tokio::join!(
        futures_util::future::join_all(logins),
        futures_util::future::join_all(registrations)
    );
    let all: Vec<_> = l.iter().chain(r.iter()).collect();
    let done = all.iter().filter(|g| g.0 == 200 || g.0 == 201).count();
    let busy: Vec<_> = all.iter().filter(|g| g.0 == 503).collect();
    assert_eq!(done + busy.len(), 24, "{all:?}");
    assert!(
        done >= 3,
        "one running and two waiting get through: {all:?}"
    );
    assert!(busy.len() >= 6, "the rest is refused at once: {all:?}");
    for (_, code, retry) in &busy {
        assert_eq!(code, "unavailable");
        assert_eq!(*retry, Some(1), "503 carries Retry-After");
    }
    // Once the flood is over, logins go through again.
    assert_eq!(login_as(&s, "alice", "password1").await.0, 200);
}

#[tokio::test]
async fn failed_logins_from_an_address_are_limited_unknown_users_included() {
    let s = Server::start_with(|c| {
        default_rates(c);
        c.rate.login_addr_failures = 5;
    })
    .await;
    s.user("bob").await;
    // Correct logins do not count.
    for _ in 0..10 {
        assert_eq!(login_as(&s, "bob", "password1").await.0, 200);
    }
    for i in 0..5 {
        let (st, v, _) = login_as(&s, &format!("ghost{i}"), "whatever1").await;
        assert_eq!((st, v["code"].as_str()), (401, Some("bad_credentials")));
    }
    let (st, v, retry) = login_as(&s, "ghost9", "whatever1").await;
    assert_eq!((st, v["code"].as_str()), (429, Some("rate_limited")), "{v}");
    assert!(retry.is_some());
    // Now the address waits, whoever logs in from it.
    assert_eq!(login_as(&s, "bob", "password1").await.0, 429);
}

#[tokio::test]
async fn registrations_per_address_are_limited() {
    let s = Server::start_with(|c| {
        default_rates(c);
        c.rate.register_rate = 1;
        c.rate.register_burst = 3;
    })
    .await;
    for i in 0..3 {
        s.user(&format!("u{i}")).await;
    }
    let r = s
        .http
        .post(s.url("/v1/users"))
        .json(&json!({"user": "u3", "password": "password1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "rate_limited");
}

#[tokio::test]
async fn http_sends_share_the_frame_rate_per_user() {
    let s = Server::start_with(|c| {
        c.limits.frame_rate = 5;
        c.limits.frame_burst = 5;
    })
    .await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let send = |t: String, i: usize| {
        let s = &s;
        async move {
            s.post(
                "/v1/messages",
                Some(&t),
                json!({"to":"bob","client_msg_id":format!("c{i}"),"kind":"text","content":"hi"}),
            )
            .await
        }
    };
    let mut codes = Vec::new();
    for i in 0..8 {
        let (st, v) = send(ta.clone(), i).await;
        codes.push((st, v["code"].as_str().map(str::to_owned)));
    }
    let ok = codes.iter().filter(|c| c.0 == 200).count();
    let limited = codes
        .iter()
        .filter(|c| c.0 == 429 && c.1.as_deref() == Some("rate_limited"))
        .count();
    assert!(ok >= 5 && limited >= 1 && ok + limited == 8, "{codes:?}");
    // Another user has a bucket of its own.
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&tb),
            json!({"to":"alice","client_msg_id":"b1","kind":"text","content":"hi"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn friend_requests_are_limited() {
    let s = Server::start_with(|c| {
        c.rate.friend_requests_per_hour = 1;
        c.rate.friend_requests_burst = 2;
    })
    .await;
    let ta = s.user("alice").await;
    for u in ["b", "c", "d"] {
        s.user(u).await;
    }
    assert_eq!(s.put("/v1/friends/b", Some(&ta)).await.0, 200);
    assert_eq!(s.put("/v1/friends/c", Some(&ta)).await.0, 200);
    let (st, v) = s.put("/v1/friends/d", Some(&ta)).await;
    assert_eq!((st, v["code"].as_str()), (429, Some("rate_limited")), "{v}");
}

/// The status, error code and `Retry-After` of a WebSocket handshake
/// that the server refused.
async fn refused_upgrade(s: &Server) -> (u16, String, Option<u64>) {
    match tern_client::raw::Connection::open(&s.ws_url(), &sdk_config()).await {
        Ok(_) => panic!("upgrade accepted"),
        Err(tern_client::Error::Server {
            code,
            status: Some(status),
            retry_after,
            ..
        }) => (status, code, retry_after),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[tokio::test]
async fn connections_per_user_and_in_total_are_refused_clearly() {
    let s = Server::start_with(|c| {
        c.rate.connections_per_user = 2;
        c.rate.connections = 3;
    })
    .await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a1 = s.connect(&ta, "a1").await;
    let _a2 = s.connect(&ta, "a2").await;
    // A third device of alice: rate_limited, then 4008.
    let mut a3 = Client::open(&s.ws_url()).await;
    let r = a3
        .request(json!({"type":"auth","token":ta,"device":"a3"}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("rate_limited")),
        "{r}"
    );
    assert_eq!(a3.closed_with().await, 4008);
    // The same device reconnecting replaces its connection instead.
    let _a1b = s.connect(&ta, "a1").await;
    assert_eq!(a1.closed_with().await, 4009);
    // Bob takes the last of 3 connections; a fourth socket is refused.
    let _b = s.connect(&tb, "b").await;
    let (st, code, retry) = refused_upgrade(&s).await;
    assert_eq!((st, &*code), (503, "unavailable"));
    assert!(retry.is_some());
    // The server is fine.
    assert_eq!(s.get("/healthz", None).await.0, 200);
}

#[tokio::test]
async fn upgrades_are_admitted_at_the_configured_rate() {
    let s = Server::start_with(|c| {
        default_rates(c);
        c.rate.upgrade_rate = 1;
        c.rate.upgrade_burst = 2;
    })
    .await;
    let ta = s.user("alice").await;
    let _a = s.connect(&ta, "a").await;
    let _b = s.connect(&ta, "b").await;
    let (st, code, retry) = refused_upgrade(&s).await;
    assert_eq!((st, &*code), (503, "unavailable"));
    let retry = retry.expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // After it, the next one is admitted.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let _c = s.connect(&ta, "c").await;
}

// ----- HTTP timeouts (config [http]) -----

#[tokio::test]
async fn half_a_header_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start_with(|c| c.http.header_timeout_secs = 1).await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: tern\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(WAIT, tcp.read_to_end(&mut buf))
        .await
        .expect("the server closes a connection that stalls in its header");
    // Closed: at most an error answer before the end.
    assert!(
        n.is_err() || !String::from_utf8_lossy(&buf).contains("200 OK"),
        "{buf:?}"
    );
    // An idle keep-alive connection is closed the same way.
    let mut idle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let n = tokio::time::timeout(WAIT, idle.read(&mut [0u8; 16]))
        .await
        .expect("an idle connection is closed");
    assert!(matches!(n, Ok(0) | Err(_)));
}

#[tokio::test]
async fn a_body_that_never_ends_times_out_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start_with(|c| c.http.request_timeout_secs = 1).await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/users HTTP/1.1\r\nHost: tern\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user\":",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"timeout""#), "{text}");
}

#[tokio::test]
async fn groups_per_user_are_capped() {
    let s = Server::start_with(|c| c.groups.max_per_user = 2).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    s.user("cat").await;
    let g1 = s.new_group(&ta, "one", &["bob"]).await;
    let g2 = s.new_group(&ta, "two", &[]).await;
    // alice is in 2 groups: she cannot create a third...
    let (st, v) = s
        .post(
            "/v1/groups",
            Some(&ta),
            json!({"name":"three","members":[]}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("groups.max_per_user"),
        "{v}"
    );
    // ...nor be put in one, and the refused group is not created.
    let (st, v) = s
        .post(
            "/v1/groups",
            Some(&tb),
            json!({"name":"with alice","members":["alice"]}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let g3 = s.new_group(&tb, "bob only", &[]).await;
    // bob is now in 2 groups too.
    let (st, v) = s
        .post(
            &format!("/v1/groups/{g3}/members"),
            Some(&tb),
            json!({"users":["alice"]}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (st, v) = s
        .post("/v1/groups", Some(&tb), json!({"name":"x","members":[]}))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    // A user below the cap is still added.
    s.add_members(&ta, &g1, &["cat"]).await;
    // Leaving a group frees a place.
    s.remove_member(&ta, &g2, "alice").await;
    let v = s.add_members(&tb, &g3, &["alice"]).await;
    assert!(v.members.iter().any(|m| m == "alice"), "{v:?}");
}

#[tokio::test]
async fn outstanding_friend_requests_are_capped() {
    let s = Server::start_with(|c| c.rate.friend_requests_outstanding = 2).await;
    let ta = s.user("alice").await;
    let tb = s.user("b").await;
    let te = s.user("e").await;
    for u in ["c", "d"] {
        s.user(u).await;
    }
    assert_eq!(s.put("/v1/friends/b", Some(&ta)).await.0, 200);
    assert_eq!(s.put("/v1/friends/c", Some(&ta)).await.0, 200);
    // Two unanswered: a third user is refused.
    let (st, v) = s.put("/v1/friends/d", Some(&ta)).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("rate.friend_requests_outstanding"),
        "{v}"
    );
    // Asking again adds nothing and is answered as before.
    let (st, v) = s.put("/v1/friends/b", Some(&ta)).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("requested")), "{v}");
    // Accepting an incoming request is never refused.
    assert_eq!(s.put("/v1/friends/alice", Some(&te)).await.0, 200);
    let (st, v) = s.put("/v1/friends/e", Some(&ta)).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("friends")), "{v}");
    // b turns the request down: alice may ask someone else.
    assert_eq!(s.delete("/v1/friends/alice", Some(&tb)).await.0, 204);
    let (st, v) = s.put("/v1/friends/d", Some(&ta)).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("requested")), "{v}");
}

/// A server with a 16 KiB push window and no redelivery, tweaked
/// further by `tweak`; alice and bob connected, and alice's 20 messages
/// of about 4 KB sent to bob (their `ok`s in hand).
async fn window_of_16k(tweak: impl FnOnce(&mut tern_server::Config)) -> (Server, Client, Client) {
    let (s, _, mut a, b) = alice_and_bob(|c| {
        c.limits.frame_bytes = 16 * 1024;
        c.limits.content_bytes = 8 * 1024;
        c.limits.unacked_bytes = 16 * 1024;
        c.delivery.ack_timeout_ms = 600_000;
        tweak(c);
    })
    .await;
    for i in 0..20 {
        a.send_text("bob", &format!("m{i}"), &"x".repeat(4000))
            .await;
    }
    (s, a, b)
}

/// The seqs of the message pushes that arrive until none has for `d`.
async fn drained_seqs(c: &mut Client, d: Duration) -> Vec<u64> {
    c.drain(d)
        .await
        .iter()
        .filter(|f| f["type"] == "msg")
        .map(|f| f["msg"]["seq"].as_u64().unwrap())
        .collect()
}

/// Pushes stop once `limits.unacked_bytes` of them await the device's ack
/// and resume when it acks; a device that never acks fills its queue
/// meanwhile and is cut off as a slow reader (4008).
#[tokio::test]
async fn unacked_pushes_fill_a_window_that_acks_reopen() {
    let (_s, mut a, mut b) = window_of_16k(|c| {
        // No probe during the test.
        c.limits.unacked_probe_ms = 600_000;
        c.limits.outbound_queue = 32;
    })
    .await;
    // About 4 KB a push: the window holds four, then nothing comes.
    let mut seqs = Vec::new();
    let mut rounds = 0;
    while seqs.len() < 20 {
        let burst = drained_seqs(&mut b, Duration::from_millis(300)).await;
        assert!(
            (1..=5).contains(&burst.len()),
            "a window of 16 KiB let {} pushes through",
            burst.len()
        );
        seqs.extend(burst);
        rounds += 1;
        // The ack reopens the window.
        let last = *seqs.last().unwrap();
        b.send(json!({"type": "ack", "conv": dm("alice", "bob"), "seq": last}))
            .await;
    }
    assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
    assert!(rounds >= 4, "{rounds} rounds");
    // Never acking: the window stays shut, the queue fills, 4008.
    let text = "x".repeat(4000);
    for i in 20..80 {
        a.send_text("bob", &format!("m{i}"), &text).await;
    }
    assert_eq!(b.closed_with().await, 4008);
}

/// While the window is full a frame still goes out every
/// `limits.unacked_probe_ms`, so a client that acks only when a frame
/// arrives is never stuck (without probes this client would get four
/// pushes, as the test above shows).
#[tokio::test]
async fn a_full_window_still_lets_a_probe_through() {
    let (_s, _a, mut b) = window_of_16k(|c| c.limits.unacked_probe_ms = 50).await;
    // Bob never acks: past the window's four pushes, the rest still come,
    // one per probe, in order.
    for want in 1..=20u64 {
        let m = b.next_msg().await;
        assert_eq!(m["seq"], want);
    }
}

/// The `send` of alice's message `i` to bob (content and id from `i`).
fn to_bob(i: usize) -> serde_json::Value {
    json!({"type":"send","to":"bob","client_msg_id":format!("m{i}"),"kind":"text","content":format!("{i}")})
}

/// Alice sends `range` to bob all at once, then waits for every `ok`.
async fn burst_to_bob(a: &mut Client, range: std::ops::Range<usize>) {
    let mut ids = Vec::new();
    for i in range {
        ids.push(a.submit(to_bob(i)).await);
    }
    for id in ids {
        assert_eq!(a.reply(&id).await["type"], "ok");
    }
}

/// Bob logs in again: the seqs of his offline batch, checked against its
/// `offline_done` count.
async fn bobs_offline_seqs(s: &Server, tb: &str) -> Vec<u64> {
    let (_, (msgs, done)) = s.connect_offline(tb, "b").await;
    assert_eq!(done["count"].as_u64(), Some(msgs.len() as u64));
    msgs.iter()
        .map(|f| f["msg"]["seq"].as_u64().unwrap())
        .collect()
}

/// A server with `tweak` applied, alice and bob registered and connected:
/// the server, bob's token, alice's and bob's connections.
async fn alice_and_bob(
    tweak: impl FnOnce(&mut tern_server::Config),
) -> (Server, String, Client, Client) {
    let s = Server::start_with(tweak).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let a = s.connect(&ta, "a").await;
    let b = s.connect(&tb, "b").await;
    (s, tb, a, b)
}

/// A lagging connection is written only while less than
/// `limits.lagging_window_bytes` of its pushes await an ack, then sent a
/// WebSocket ping: a reader that stopped is sent that much, not as much as
/// its socket buffers take. A client that reads answers the ping and gets
/// the next window's worth, so one that never acks still gets every push,
/// in order. With no window of its own (0), the same connection gets
/// everything with no ping.
#[tokio::test]
async fn a_lagging_connection_is_written_within_its_window() {
    for window in [16 * 1024, 0] {
        let (_s, _tb, mut a, mut b) = alice_and_bob(|c| {
            c.limits.frame_bytes = 16 * 1024;
            c.limits.content_bytes = 8 * 1024;
            c.limits.lagging_after_ms = 50;
            c.limits.lagging_interval_ms = 20;
            c.limits.lagging_window_bytes = window;
            // One ping per full window (the next would wait 600 s), and
            // no redelivery during the test.
            c.limits.unacked_probe_ms = 600_000;
            c.delivery.ack_timeout_ms = 600_000;
        })
        .await;
        let text = "x".repeat(4000);
        a.send_text("bob", "m0", &text).await;
        assert_eq!(b.next_msg().await["seq"], 1);
        // Bob does not ack: past 50 ms his connection is lagging. He
        // stops reading while alice sends.
        tokio::time::sleep(Duration::from_millis(150)).await;
        for i in 1..20 {
            a.send_text("bob", &format!("m{i}"), &text).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // What the server wrote while he did not read ends with a ping.
        let (first, pinged) = b.until_ping(Duration::from_millis(500)).await;
        let mut seqs: Vec<u64> = first
            .iter()
            .map(|f| f["msg"]["seq"].as_u64().unwrap())
            .collect();
        if window == 0 {
            assert!(!pinged, "no window, no ping");
            assert_eq!(seqs, (2..=20).collect::<Vec<u64>>());
            continue;
        }
        assert!(pinged, "a full window ends with a ping");
        // About 4 KB a push: seq 1 and up to three more fill 16 KiB.
        assert!(
            (1..=3).contains(&seqs.len()),
            "a lagging window of 16 KiB let {} more pushes through",
            seqs.len()
        );
        // Reading on (each ping answered as it is read), never acking,
        // he gets the rest, one window per ping.
        let mut pings = 1;
        while seqs.len() < 19 {
            let (more, pinged) = b.until_ping(Duration::from_secs(2)).await;
            assert!(pinged || seqs.len() + more.len() == 19, "stuck at {seqs:?}");
            pings += u32::from(pinged);
            seqs.extend(more.iter().map(|f| f["msg"]["seq"].as_u64().unwrap()));
        }
        assert_eq!(seqs, (2..=20).collect::<Vec<u64>>());
        assert!(pings >= 4, "{pings} pings for 19 pushes of 4 KB");
    }
}

/// After a write, a connection's queue waits out `limits.write_interval_ms`
/// before the next write: what arrives meanwhile is written later, in
/// queue order, and the queue's bound still holds while it waits (a full
/// queue cuts the reader off with 4008; its messages stay queued for it).
#[tokio::test]
async fn write_interval_keeps_order_and_the_queue_bound() {
    // The longest interval: every push below comes while a hold is on.
    let (s, tb, mut a, mut b) = alice_and_bob(|c| {
        c.limits.write_interval_ms = 1000;
        c.limits.outbound_queue = 16;
        // Bob never acks: with the lagging lane on, his queue would be
        // taken on its own ~100 ms timer instead of after the hold, and on
        // a loaded machine sends that trickle in could stay below the
        // bound. This test is about the hold.
        c.limits.lagging_after_ms = 0;
    })
    .await;
    // The first push is written at once (the queue was quiet); the next
    // ten are queued behind the hold it starts and come in seq order.
    a.ok(to_bob(0)).await;
    assert_eq!(b.next_msg().await["seq"], 1);
    let ids = {
        let mut ids = Vec::new();
        for i in 1..=10 {
            ids.push(a.submit(to_bob(i)).await);
        }
        ids
    };
    for id in ids {
        assert_eq!(a.reply(&id).await["type"], "ok");
    }
    for seq in 2..=11 {
        assert_eq!(b.next_msg().await["seq"], seq);
    }
    // Bob's queue (16 frames) overflows within the hold of that write.
    burst_to_bob(&mut a, 11..51).await;
    assert_eq!(b.closed_with().await, 4008);
    // Nothing was acknowledged: all 51 are in bob's offline queue.
    assert_eq!(
        bobs_offline_seqs(&s, &tb).await,
        (1..=51).collect::<Vec<_>>()
    );
}

/// A connection that leaves its pushes unacknowledged for
/// `limits.lagging_after_ms` turns lagging: its queue is written on its
/// own timer (`limits.lagging_interval_ms`) instead of on every push. It
/// still gets every message once, in seq order; the queue's bound holds
/// (a full queue cuts it off with 4008, its messages stay queued); an ack
/// ends the lag.
#[tokio::test]
async fn a_lagging_connection_gets_every_push_in_order_and_its_bound_holds() {
    let (s, tb, mut a, mut b) = alice_and_bob(|c| {
        c.limits.lagging_after_ms = 50;
        c.limits.lagging_interval_ms = 1000;
        c.limits.outbound_queue = 16;
    })
    .await;
    a.ok(to_bob(0)).await;
    assert_eq!(b.next_msg().await["seq"], 1);
    // Bob does not ack: past 50 ms his connection is lagging, and what
    // comes next is written on its timer, in order.
    tokio::time::sleep(Duration::from_millis(150)).await;
    for i in 1..=10 {
        a.ok(to_bob(i)).await;
    }
    for seq in 2..=11 {
        assert_eq!(b.next_msg().await["seq"], seq);
    }
    // An ack ends the lag (at the connection's next timer); pushes keep
    // coming in order.
    b.send(json!({"type":"ack","conv":dm("alice","bob"),"seq":11}))
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 11..=15 {
        a.ok(to_bob(i)).await;
        assert_eq!(b.next_msg().await["seq"], i as u64 + 1);
    }
    // Lagging again (no ack since seq 12): 80 pushes within a few of its
    // 1 s timer intervals put more than the queue's 16 frames into one of
    // them, which cuts bob off with 4008.
    tokio::time::sleep(Duration::from_millis(150)).await;
    burst_to_bob(&mut a, 16..96).await;
    assert_eq!(b.closed_with().await, 4008);
    // Everything from seq 12 on was never acknowledged: all of it is in
    // bob's offline queue, in order.
    assert_eq!(
        bobs_offline_seqs(&s, &tb).await,
        (12..=96).collect::<Vec<_>>()
    );
}
