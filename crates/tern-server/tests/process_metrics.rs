//! Checks that read the process-wide Prometheus registry. The `metrics`
//! facade is global, so these run in their own test binary, as one test,
//! where no other server moves the counters.

// This binary uses only part of the shared harness.
#[allow(dead_code)]
#[path = "it/common.rs"]
mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// The value of one sample line of `/metrics` (0 when absent).
async fn metric(s: &Server, name: &str) -> f64 {
    let (st, m) = s.get("/metrics", None).await;
    assert_eq!(st, 200);
    m.as_str()
        .unwrap()
        .lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.split_whitespace().last())
        .map(|v| v.parse::<f64>().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn healthz_metrics_and_slow_readers() {
    let s = Server::start_with(|c| {
        c.delivery.ack_timeout_ms = 200;
        c.limits.outbound_queue = 16;
        c.limits.frame_rate = 100_000;
        c.limits.frame_burst = 100_000;
    })
    .await;
    let (st, _) = s.get("/healthz", None).await;
    assert_eq!(st, 200);

    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let before = [
        metric(&s, "tern_messages_stored_total").await,
        metric(&s, "tern_deliveries_total").await,
        metric(&s, "tern_acks_total").await,
        metric(&s, "tern_frames_in_total").await,
        metric(&s, "tern_frames_out_total").await,
    ];
    let mut a = s.connect(&ta, "a").await;
    let mut b = s.connect(&tb, "b").await;
    assert_eq!(metric(&s, "tern_connections").await, 2.0);
    for i in 0..5 {
        a.send_text("bob", &format!("m{i}"), "x").await;
    }
    for _ in 0..5 {
        b.next_of("msg").await;
    }
    b.send(json!({"type":"ack","conv":dm("alice","bob"),"seq":5}))
        .await;
    b.barrier().await;
    a.next_of("receipt").await;
    assert_eq!(
        metric(&s, "tern_messages_stored_total").await - before[0],
        5.0
    );
    // 5 pushes to bob and one receipt to alice.
    assert_eq!(metric(&s, "tern_deliveries_total").await - before[1], 6.0);
    assert_eq!(metric(&s, "tern_acks_total").await - before[2], 1.0);
    assert!(metric(&s, "tern_frames_in_total").await - before[3] >= 7.0);
    assert!(metric(&s, "tern_frames_out_total").await - before[4] >= 12.0);
    let (_, text) = s.get("/metrics", None).await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("tern_storage_seconds_bucket{op=\"append\""),
        "storage latency histogram"
    );
    assert!(text.contains("tern_storage_seconds_count{op=\"append\"}"));

    // Redelivery: one unacked push is repeated 3 times.
    let r0 = metric(&s, "tern_redeliveries_total").await;
    a.send_text("bob", "late", "x").await;
    let mut got = 0;
    while let Some(f) = b.next_within(Duration::from_millis(1500)).await {
        assert_eq!(f["msg"]["client_msg_id"], "late");
        got += 1;
    }
    assert_eq!(got, 4);
    assert_eq!(metric(&s, "tern_redeliveries_total").await - r0, 3.0);
    b.close().await;
    a.close().await;

    slow_reader_is_cut_off_and_keeps_its_messages(&s).await;
    let (st, _) = s.get("/healthz", None).await;
    assert_eq!(st, 200);
}

/// A device that reads nothing while messages pour in is closed with 4008
/// once its queue is full; every message stays queued for it.
async fn slow_reader_is_cut_off_and_keeps_its_messages(s: &Server) {
    let tc = s.user("carol").await;
    let td = s.user("dave").await;
    let mut c = s.connect(&tc, "c").await;
    let mut d = s.connect(&td, "d").await;
    let closes = metric(s, "tern_slow_reader_closes_total").await;
    let body = "y".repeat(15_000);
    let mut sent = 0;
    for i in 0..1000 {
        c.send_text("dave", &format!("m{i}"), &body).await;
        sent += 1;
        if i % 10 == 0 && metric(s, "tern_slow_reader_closes_total").await > closes {
            break;
        }
    }
    assert!(sent < 1000, "the slow reader was cut off");
    assert_eq!(d.closed_with().await, 4008);
    let (_, (msgs, done)) = s.connect_offline(&td, "d").await;
    assert_eq!(done["count"], sent);
    assert_eq!(msgs.len(), sent);
    let h = c
        .ok(json!({"type":"history","conv":dm("carol","dave"),"limit":1}))
        .await;
    assert_eq!(h["msgs"][0]["seq"], sent);
}
