//! Read positions, receipts, unread counts, sync and history, recall and
//! delete (PROTOCOL.md 2.4-2.6), over WebSocket and HTTP.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn seqs(msgs: &Value) -> Vec<u64> {
    msgs.as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

/// alice and bob, connected, with `n` messages from alice to bob.
async fn pair(s: &Server, n: u64) -> (String, String, Client, Client) {
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a = s.connect(&ta, "a").await;
    let b = s.connect(&tb, "b").await;
    for i in 1..=n {
        a.send_text("bob", &format!("m{i}"), &format!("text {i}"))
            .await;
    }
    (ta, tb, a, b)
}

#[tokio::test]
async fn read_moves_forward_only_and_sends_receipts() {
    let s = Server::start().await;
    let (_ta, tb, mut a, mut b) = pair(&s, 5).await;
    let mut b2 = s.connect(&tb, "b2").await;
    let conv = dm("alice", "bob");
    let r = b.ok(json!({"type":"read","conv":conv,"seq":3})).await;
    assert_eq!(r["read_seq"], 3);
    let want = json!({"type":"receipt","conv":conv,"by":"bob","read_seq":3});
    assert_eq!(a.next_of("receipt").await, want);
    // The reader's other device learns it too; the reading device does not.
    assert_eq!(b2.next_of("receipt").await, want);
    // Never backwards: the answer says where the position stays.
    let r = b.ok(json!({"type":"read","conv":conv,"seq":2})).await;
    assert_eq!(r["read_seq"], 3);
    a.quiet(Duration::from_millis(300)).await;
    // Seqs that do not exist.
    b.err(json!({"type":"read","conv":conv,"seq":6}), "invalid")
        .await;
    b.err(json!({"type":"read","conv":conv,"seq":0}), "invalid")
        .await;
    b.err(
        json!({"type":"read","conv":"dm:bob:carol","seq":1}),
        "invalid",
    )
    .await;
    b.err(
        json!({"type":"read","conv":"dm:alice:carol","seq":1}),
        "not_member",
    )
    .await;
    b.err(json!({"type":"read","conv":"nonsense","seq":1}), "invalid")
        .await;
    b.err(json!({"type":"read","conv":conv}), "invalid").await;
}

#[tokio::test]
async fn unread_counts_are_exact() {
    let s = Server::start().await;
    let (ta, tb, mut a, mut b) = pair(&s, 5).await;
    let tc = s.user("carol").await;
    let mut c = s.connect(&tc, "c").await;
    for i in 1..=3 {
        c.send_text("bob", &format!("c{i}"), "from carol").await;
    }
    let sync = b.ok(json!({"type":"sync"})).await;
    assert_eq!(sync["total_unread"], 8);
    let convs = sync["convs"].as_array().unwrap();
    assert_eq!(convs.len(), 2);
    // Newest activity first: carol wrote last.
    assert_eq!(convs[0]["conv"], dm("bob", "carol"));
    assert_eq!(convs[0]["peer"], "carol");
    assert_eq!(
        (
            convs[0]["max_seq"].as_u64(),
            convs[0]["read_seq"].as_u64(),
            convs[0]["unread"].as_u64()
        ),
        (Some(3), Some(0), Some(3))
    );
    assert_eq!(convs[0]["last"]["content"], "from carol");
    assert_eq!(convs[1]["unread"], 5);
    assert!(convs[0]["updated_at"].as_i64() >= convs[1]["updated_at"].as_i64());

    // The sender has nothing unread: own messages never count, and sending
    // moved alice's read position.
    let sa = a.ok(json!({"type":"sync"})).await;
    assert_eq!(sa["total_unread"], 0);
    assert_eq!(sa["convs"][0]["read_seq"], 5);

    // Bob replies: his read position moves to his message, so alice's
    // earlier ones are read too; alice now has 1 unread.
    b.send_text("alice", "r1", "reply").await;
    let sb = b.ok(json!({"type":"sync"})).await;
    assert_eq!(sb["total_unread"], 3);
    let sa = a.ok(json!({"type":"sync"})).await;
    assert_eq!(
        (
            sa["total_unread"].as_u64(),
            sa["convs"][0]["unread"].as_u64()
        ),
        (Some(1), Some(1))
    );

    // Recalled and deleted messages still count (unread is by position).
    c.ok(json!({"type":"recall","conv":dm("bob","carol"),"seq":3}))
        .await;
    b.ok(json!({"type":"delete","conv":dm("bob","carol"),"seqs":[2]}))
        .await;
    let sb = b.ok(json!({"type":"sync"})).await;
    assert_eq!(sb["total_unread"], 3);
    b.ok(json!({"type":"read","conv":dm("bob","carol"),"seq":2}))
        .await;
    let sb = b.ok(json!({"type":"sync"})).await;
    assert_eq!(sb["total_unread"], 1);
    // The same over HTTP.
    let (st, v) = s.get("/v1/conversations", Some(&tb)).await;
    assert_eq!(st, 200);
    assert_eq!(v["total_unread"], 1);
    assert_eq!(
        v["convs"][0]["conv"],
        dm("bob", "carol"),
        "reading moved the conversation up"
    );
    let (_, v) = s.get("/v1/conversations", Some(&ta)).await;
    assert_eq!(v["total_unread"], 1);
}

#[tokio::test]
async fn sync_since_and_limit() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let mut a = s.connect(&ta, "a").await;
    let mut stamps = Vec::new();
    for u in ["u1", "u2", "u3", "u4"] {
        s.user(u).await;
        let ok = a.send_text(u, u, "hi").await;
        stamps.push(ok["ts"].as_i64().unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all = a.ok(json!({"type":"sync","since":0,"limit":200})).await;
    let peers: Vec<&str> = all["convs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["u4", "u3", "u2", "u1"]);
    let two = a.ok(json!({"type":"sync","limit":2})).await;
    assert_eq!(two["convs"].as_array().unwrap().len(), 2);
    assert_eq!(two["convs"][0]["peer"], "u4");
    let since = a.ok(json!({"type":"sync","since":stamps[1]})).await;
    let peers: Vec<&str> = since["convs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["u4", "u3"]);
    a.err(json!({"type":"sync","limit":0}), "invalid").await;
    a.err(json!({"type":"sync","limit":1001}), "invalid").await;
    let (st, v) = s.get("/v1/conversations?limit=1", Some(&ta)).await;
    assert_eq!((st, v["convs"].as_array().unwrap().len()), (200, 1));
    let (st, v) = s
        .get(&format!("/v1/conversations?since={}", stamps[2]), Some(&ta))
        .await;
    assert_eq!((st, v["convs"][0]["peer"].as_str()), (200, Some("u4")));
}

#[tokio::test]
async fn history_pages_and_gap_fill() {
    let s = Server::start().await;
    let (_ta, tb, _a, mut b) = pair(&s, 120).await;
    let conv = dm("alice", "bob");
    let h = b.ok(json!({"type":"history","conv":conv})).await;
    assert_eq!(
        seqs(&h["msgs"]),
        (71..=120).collect::<Vec<_>>(),
        "default: newest 50, ascending"
    );
    let h = b
        .ok(json!({"type":"history","conv":conv,"before_seq":100,"limit":10}))
        .await;
    assert_eq!(seqs(&h["msgs"]), (90..=99).collect::<Vec<_>>());
    let h = b
        .ok(json!({"type":"history","conv":conv,"after_seq":10,"limit":5}))
        .await;
    assert_eq!(
        seqs(&h["msgs"]),
        vec![11, 12, 13, 14, 15],
        "paging forward: oldest above after_seq"
    );
    let h = b
        .ok(json!({"type":"history","conv":conv,"after_seq":90,"before_seq":100,"limit":50}))
        .await;
    assert_eq!(
        seqs(&h["msgs"]),
        (91..=99).collect::<Vec<_>>(),
        "both bounds exclusive"
    );
    // Gap fill: a client that has up to 117 asks for what follows.
    let h = b
        .ok(json!({"type":"history","conv":conv,"after_seq":117}))
        .await;
    assert_eq!(seqs(&h["msgs"]), vec![118, 119, 120]);
    let m = &h["msgs"][0];
    assert_eq!(
        (m["from"].as_str(), m["to"].as_str(), m["content"].as_str()),
        (Some("alice"), Some("bob"), Some("text 118"))
    );
    assert!(m["msg_id"].as_str().is_some());
    let h = b
        .ok(json!({"type":"history","conv":conv,"limit":500}))
        .await;
    assert_eq!(h["msgs"].as_array().unwrap().len(), 120);
    b.err(json!({"type":"history","conv":conv,"limit":501}), "invalid")
        .await;
    b.err(json!({"type":"history","conv":conv,"limit":0}), "invalid")
        .await;
    b.err(
        json!({"type":"history","conv":"dm:alice:carol"}),
        "not_member",
    )
    .await;
    // HTTP.
    let (st, v) = s
        .get(
            &format!("/v1/conversations/{conv}/messages?after_seq=5&limit=3"),
            Some(&tb),
        )
        .await;
    assert_eq!((st, seqs(&v["msgs"])), (200, vec![6, 7, 8]));
    let (st, v) = s
        .get(
            &format!("/v1/conversations/{conv}/messages?before_seq=3"),
            Some(&tb),
        )
        .await;
    assert_eq!((st, seqs(&v["msgs"])), (200, vec![1, 2]));
    let (st, v) = s
        .get(
            &format!("/v1/conversations/{conv}/messages?limit=900"),
            Some(&tb),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
    let (st, v) = s
        .get(
            &format!("/v1/conversations/{conv}/messages?limit=abc"),
            Some(&tb),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
    let tc = s.user("carol").await;
    let (st, v) = s
        .get(&format!("/v1/conversations/{conv}/messages"), Some(&tc))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")));
}

#[tokio::test]
async fn recall_within_window_by_sender_only() {
    let s = Server::start().await;
    let (_ta, tb, mut a, mut b) = pair(&s, 2).await;
    let mut b2 = s.connect(&tb, "b2").await;
    let conv = dm("alice", "bob");
    b.err(json!({"type":"recall","conv":conv,"seq":1}), "forbidden")
        .await;
    let ok2 = a.ok(json!({"type":"history","conv":conv})).await;
    let id2 = ok2["msgs"][1]["msg_id"].clone();
    a.ok(json!({"type":"recall","conv":conv,"seq":2})).await;
    let want = json!({"type":"recalled","conv":conv,"seq":2,"msg_id":id2,"by":"alice"});
    assert_eq!(b.next_of("recalled").await, want);
    assert_eq!(b2.next_of("recalled").await, want);
    let h = b.ok(json!({"type":"history","conv":conv})).await;
    let m = &h["msgs"][1];
    assert_eq!(m["recalled"], true);
    assert!(
        m.get("content").is_none() || m["content"].is_null(),
        "no content after recall: {m}"
    );
    assert_eq!(h["msgs"][0]["content"], "text 1");
    a.err(json!({"type":"recall","conv":conv,"seq":9}), "invalid")
        .await;
    // The conversation list shows the recall as the last activity.
    let sy = b.ok(json!({"type":"sync"})).await;
    assert_eq!(sy["convs"][0]["last"]["recalled"], true);
}

#[tokio::test]
async fn recall_after_the_window_is_forbidden() {
    let s = Server::start_with(|c| c.delivery.recall_window_secs = 1).await;
    let (_ta, _tb, mut a, _b) = pair(&s, 1).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    a.err(
        json!({"type":"recall","conv":dm("alice","bob"),"seq":1}),
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn delete_hides_from_own_history_only() {
    let s = Server::start().await;
    let (ta, _tb, mut a, mut b) = pair(&s, 4).await;
    let conv = dm("alice", "bob");
    b.ok(json!({"type":"delete","conv":conv,"seqs":[2,3]}))
        .await;
    let h = b.ok(json!({"type":"history","conv":conv})).await;
    assert_eq!(seqs(&h["msgs"]), vec![1, 4]);
    let h = a.ok(json!({"type":"history","conv":conv})).await;
    assert_eq!(seqs(&h["msgs"]), vec![1, 2, 3, 4]);
    let (_, v) = s
        .get(&format!("/v1/conversations/{conv}/messages"), Some(&ta))
        .await;
    assert_eq!(seqs(&v["msgs"]), vec![1, 2, 3, 4]);
    b.err(json!({"type":"delete","conv":conv,"seqs":[7]}), "invalid")
        .await;
    b.err(json!({"type":"delete","conv":conv,"seqs":[]}), "invalid")
        .await;
    b.err(
        json!({"type":"delete","conv":"dm:carol:dave","seqs":[1]}),
        "not_member",
    )
    .await;
}

/// A 1:1 entry of `sync` carries the peer's delivered and read positions,
/// so a device that was never pushed the receipts shows them; notes to
/// oneself carry neither.
#[tokio::test]
async fn sync_carries_the_peers_receipt_positions() {
    let s = Server::start().await;
    let (ta, _tb, mut a, mut b) = pair(&s, 3).await;
    let conv = dm("alice", "bob");
    for _ in 0..3 {
        b.next_msg().await;
    }
    b.send(json!({"type":"ack","conv":conv,"seq":3})).await;
    a.next_of("receipt").await;
    b.ok(json!({"type":"read","conv":conv,"seq":2})).await;
    a.next_of("receipt").await;
    a.send_text("alice", "self", "a note").await;

    // A new device of alice, asking over HTTP.
    let (st, v) = s.get("/v1/conversations", Some(&ta)).await;
    assert_eq!(st, 200);
    let entry = |c: &str| {
        v["convs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["conv"] == c)
            .unwrap()
            .clone()
    };
    let e = entry(&conv);
    assert_eq!(
        (
            e["peer_delivered_seq"].as_u64(),
            e["peer_read_seq"].as_u64()
        ),
        (Some(3), Some(2))
    );
    let own = entry(&dm("alice", "alice"));
    assert!(own.get("peer_read_seq").is_none() && own.get("peer_delivered_seq").is_none());
}
