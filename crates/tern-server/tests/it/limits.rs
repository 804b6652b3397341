//! Bad input and every configured bound (PROTOCOL.md 2.10).

use crate::common::*;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn bad_frames_get_error_codes_and_the_connection_stays() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    s.user("bob").await;
    let mut a = s.connect(&ta, "a").await;
    a.send_raw(Message::Text("not json".into())).await;
    let e = a.next().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("bad_frame"))
    );
    a.send_raw(Message::Text(r#"{"id":"x1"}"#.into())).await;
    let e = a.next().await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("bad_frame"), Some("x1"))
    );
    a.send_raw(Message::Text("[1,2]".into())).await;
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
    while a.closed.is_none() && start.elapsed() < Duration::from_secs(10) {
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
