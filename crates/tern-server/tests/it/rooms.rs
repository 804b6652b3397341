//! Live rooms (PROTOCOL.md 2.9): join, leave, room_send, nothing stored,
//! the delivery cap per device, the sender's rate and the join bound.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Reads `room_msg` frames until the `{"end":true}` marker; returns the
/// `(content, ts)` of each one before it.
pub async fn until_marker(c: &mut Client) -> Vec<(Value, i64)> {
    let mut got = Vec::new();
    loop {
        let f = c.next_of("room_msg").await;
        if f["content"] == json!({"end": true}) {
            return got;
        }
        got.push((f["content"].clone(), f["ts"].as_i64().unwrap()));
    }
}

/// The server's window is one second of its monotonic clock; `ts` is its
/// wall clock, read just before. This margin absorbs the difference.
const CLOCK_MARGIN_MS: i64 = 50;

/// Checks what one device got from a burst of messages numbered 0.. under
/// a cap of `cap` per second: the first `cap` all arrive, in order; later
/// ones never more than `cap` within one second of server time.
pub fn check_capped(got: &[(Value, i64)], sent: usize, cap: usize) {
    let n: Vec<u64> = got.iter().map(|(c, _)| c.as_u64().unwrap()).collect();
    assert!(
        n.windows(2).all(|w| w[0] < w[1]),
        "in order, no repeats: {n:?}"
    );
    let first = cap.min(sent);
    assert!(n.len() >= first, "the first {first} always arrive: {n:?}");
    assert_eq!(n[..first], (0..first as u64).collect::<Vec<_>>());
    for (i, (_, t)) in got.iter().enumerate() {
        let within = got[i..]
            .iter()
            .take_while(|(_, u)| *u < t + 1000 - CLOCK_MARGIN_MS)
            .count();
        assert!(
            within <= cap,
            "{within} messages within a second (cap {cap}): {got:?}"
        );
    }
}

/// The value of a counter in `/metrics` (0 when absent).
pub async fn counter(s: &Server, name: &str) -> f64 {
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn join_room_send_and_leave() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let mut phone = s.connect(&ta, "phone").await;
    let mut laptop = s.connect(&ta, "laptop").await;
    let mut b = s.connect(&tb, "b").await;
    let mut c = s.connect(&tc, "c").await;
    for cl in [&mut phone, &mut laptop, &mut b] {
        let r = cl.ok(json!({"type":"join","room":"launch"})).await;
        assert_eq!(r.as_object().unwrap().len(), 2, "a bare ok: {r}");
    }
    c.err(
        json!({"type":"room_send","room":"launch","content":"hi"}),
        "not_member",
    )
    .await;

    phone
        .ok(json!({"type":"room_send","room":"launch","content":"hi"}))
        .await;
    for cl in [&mut laptop, &mut b] {
        let f = cl.next().await;
        assert_eq!(
            (
                f["type"].as_str(),
                f["room"].as_str(),
                f["from"].as_str(),
                f["content"].as_str()
            ),
            (Some("room_msg"), Some("launch"), Some("alice"), Some("hi"))
        );
        assert!(f["ts"].as_i64().unwrap() > 0);
        assert_eq!(f.as_object().unwrap().len(), 5, "{f}");
    }
    phone.quiet(Duration::from_millis(300)).await;
    c.quiet(Duration::from_millis(100)).await;

    // Any JSON value within the content limit.
    for content in [json!({"emoji":"🚀","n":[1,2]}), json!(42), json!(null)] {
        b.ok(json!({"type":"room_send","room":"launch","content":content}))
            .await;
        for cl in [&mut phone, &mut laptop] {
            let f = cl.next_of("room_msg").await;
            assert_eq!(
                (f["from"].as_str(), f["content"].clone()),
                (Some("bob"), content.clone())
            );
        }
    }
    b.err(
        json!({"type":"room_send","room":"launch","content":"x".repeat(16385)}),
        "content_too_large",
    )
    .await;
    b.err(json!({"type":"room_send","room":"launch"}), "invalid")
        .await;
    b.err(json!({"type":"room_send","content":"x"}), "invalid")
        .await;
    b.err(json!({"type":"join","room":"bad room"}), "invalid")
        .await;
    b.err(json!({"type":"join","room":"x".repeat(65)}), "invalid")
        .await;
    b.err(json!({"type":"join"}), "invalid").await;

    // After leaving, nothing arrives and sending is refused.
    b.ok(json!({"type":"leave","room":"launch"})).await;
    b.ok(json!({"type":"leave","room":"launch"})).await;
    b.ok(json!({"type":"leave","room":"never-joined"})).await;
    phone
        .ok(json!({"type":"room_send","room":"launch","content":"bye"}))
        .await;
    assert_eq!(laptop.next_of("room_msg").await["content"], "bye");
    b.quiet(Duration::from_millis(300)).await;
    b.err(
        json!({"type":"room_send","room":"launch","content":"x"}),
        "not_member",
    )
    .await;
    // A connection's rooms end with it: a new connection of the same
    // device is in no room until it joins.
    laptop.close().await;
    let mut laptop = s.connect(&ta, "laptop").await;
    b.ok(json!({"type":"join","room":"launch"})).await;
    b.ok(json!({"type":"room_send","room":"launch","content":"again"}))
        .await;
    assert_eq!(phone.next_of("room_msg").await["content"], "again");
    laptop.quiet(Duration::from_millis(300)).await;

    // Nothing was stored.
    for t in [&ta, &tb] {
        let (st, v) = s.get("/v1/conversations", Some(t)).await;
        assert_eq!((st, v["convs"].clone()), (200, json!([])));
    }
}

#[tokio::test]
async fn room_delivery_is_capped_per_device() {
    let cap = 5;
    let s = Server::start_with(|c| {
        c.rooms.deliver_rate = cap as u32;
        c.rooms.send_rate = 1000;
    })
    .await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let mut a = s.connect(&ta, "a").await;
    let mut receivers = [
        s.connect(&tb, "phone").await,
        s.connect(&tb, "tablet").await,
        s.connect(&tc, "c").await,
    ];
    a.ok(json!({"type":"join","room":"live"})).await;
    for r in receivers.iter_mut() {
        r.ok(json!({"type":"join","room":"live"})).await;
    }
    let dropped_before = counter(&s, "tern_room_dropped_total").await;
    let sent = 30;
    let mut ids = Vec::new();
    for i in 0..sent {
        ids.push(
            a.submit(json!({"type":"room_send","room":"live","content":i}))
                .await,
        );
    }
    for id in ids {
        let r = a.reply(&id).await;
        assert_eq!(r["type"], "ok", "dropping is silent for the sender: {r}");
    }
    // Once the window has passed, a marker gets through to everyone.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.ok(json!({"type":"room_send","room":"live","content":{"end":true}}))
        .await;
    let mut dropped = 0;
    for r in receivers.iter_mut() {
        let got = until_marker(r).await;
        check_capped(&got, sent, cap);
        dropped += sent - got.len();
    }
    assert!(dropped > 0, "a burst of {sent} beyond a cap of {cap}");
    // The counter is process-wide; it grew by at least what we saw missing.
    let after = counter(&s, "tern_room_dropped_total").await;
    assert!(
        after - dropped_before >= dropped as f64,
        "tern_room_dropped_total {dropped_before} -> {after}, saw {dropped} dropped"
    );
}

#[tokio::test]
async fn room_sender_is_rate_limited() {
    let s = Server::start_with(|c| c.rooms.send_rate = 3).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a = s.connect(&ta, "a").await;
    let mut b = s.connect(&tb, "b").await;
    for c in [&mut a, &mut b] {
        c.ok(json!({"type":"join","room":"r"})).await;
        c.ok(json!({"type":"join","room":"other"})).await;
    }
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            a.submit(json!({"type":"room_send","room":"r","content":i}))
                .await,
        );
    }
    let mut codes = Vec::new();
    for id in ids {
        let r = a.reply(&id).await;
        codes.push(r["code"].as_str().unwrap_or("ok").to_owned());
    }
    assert_eq!(codes, ["ok", "ok", "ok", "rate_limited"]);
    // The limit is per room, and the connection stays usable.
    a.ok(json!({"type":"room_send","room":"other","content":"o"}))
        .await;
    a.barrier().await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let f = b.next_of("room_msg").await;
        got.push((f["room"].clone(), f["content"].clone()));
    }
    assert_eq!(
        got,
        [
            (json!("r"), json!(0)),
            (json!("r"), json!(1)),
            (json!("r"), json!(2)),
            (json!("other"), json!("o"))
        ]
    );
    b.quiet(Duration::from_millis(300)).await;
    // A second later the sender may send again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.ok(json!({"type":"room_send","room":"r","content":"later"}))
        .await;
    assert_eq!(b.next_of("room_msg").await["content"], "later");
}

#[tokio::test]
async fn joined_rooms_per_connection_are_bounded() {
    let s = Server::start_with(|c| c.rooms.max_joined = 2).await;
    let ta = s.user("alice").await;
    let mut a = s.connect(&ta, "a").await;
    let mut a2 = s.connect(&ta, "a2").await;
    a.ok(json!({"type":"join","room":"r1"})).await;
    a.ok(json!({"type":"join","room":"r2"})).await;
    a.err(json!({"type":"join","room":"r3"}), "invalid").await;
    // Joining again is harmless and does not count twice.
    a.ok(json!({"type":"join","room":"r1"})).await;
    a.ok(json!({"type":"leave","room":"r2"})).await;
    a.ok(json!({"type":"join","room":"r3"})).await;
    a.err(
        json!({"type":"room_send","room":"r2","content":1}),
        "not_member",
    )
    .await;
    // The bound is per connection.
    for r in ["r1", "r2"] {
        a2.ok(json!({"type":"join","room":r})).await;
    }
    a2.ok(json!({"type":"room_send","room":"r1","content":"to a"}))
        .await;
    assert_eq!(a.next_of("room_msg").await["content"], "to a");
}
