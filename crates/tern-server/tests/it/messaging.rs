//! Sending, delivery, acks, offline queue and receipts (PROTOCOL.md 2.2, 2.3).

use crate::common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn send_pushes_to_every_other_device_in_seq_order() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a_phone = s.connect(&ta, "phone").await;
    let mut a_laptop = s.connect(&ta, "laptop").await;
    let mut b_phone = s.connect(&tb, "phone").await;
    let mut b_tab = s.connect(&tb, "tablet").await;

    let conv = dm("alice", "bob");
    let mut ids = Vec::new();
    for i in 1..=20u64 {
        let ok = a_phone
            .send_text("bob", &format!("c{i}"), &format!("hello {i}"))
            .await;
        assert_eq!(ok["conv"], conv.as_str());
        assert_eq!(ok["seq"], i, "gap-free seq");
        let id = ok["msg_id"].as_str().expect("msg_id is a decimal string");
        assert!(id.parse::<u64>().is_ok());
        assert!(ok["ts"].as_i64().unwrap() > 0);
        assert!(ok.get("duplicate").is_none() || ok["duplicate"] == false);
        ids.push(id.to_owned());
    }
    // Bob answers: same conversation, next seq.
    let ok = b_tab.send_text("alice", "b1", "hi alice").await;
    assert_eq!(ok["seq"], 21);
    for c in [&mut b_phone, &mut a_laptop] {
        for i in 1..=20u64 {
            let f = c.next_of("msg").await;
            let m = &f["msg"];
            assert_eq!(m["seq"], i);
            assert_eq!(m["msg_id"], ids[i as usize - 1].as_str());
            assert_eq!(m["conv"], conv.as_str());
            assert_eq!(m["from"], "alice");
            assert_eq!(m["to"], "bob");
            assert_eq!(m["kind"], "text");
            assert_eq!(m["content"], format!("hello {i}"));
            assert_eq!(m["client_msg_id"], format!("c{i}"));
            assert!(m["ts"].as_i64().is_some());
        }
        let f = c.next_of("msg").await;
        assert_eq!(
            (f["msg"]["seq"].as_u64(), f["msg"]["from"].as_str()),
            (Some(21), Some("bob"))
        );
    }
    // b_tab got alice's 20 messages but not its own reply.
    for i in 1..=20u64 {
        assert_eq!(b_tab.next_of("msg").await["msg"]["seq"], i);
    }
    b_tab.quiet(Duration::from_millis(300)).await;
    // The sending device gets only bob's reply.
    let f = a_phone.next_of("msg").await;
    assert_eq!(f["msg"]["seq"], 21);
    a_phone.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn duplicate_client_msg_id_returns_the_same_message() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a = s.connect(&ta, "d").await;
    let mut b = s.connect(&tb, "d").await;
    let first = a.send_text("bob", "same", "one").await;
    let again = a.send_text("bob", "same", "changed text").await;
    assert_eq!(again["duplicate"], true);
    for k in ["msg_id", "seq", "ts", "conv"] {
        assert_eq!(first[k], again[k], "{k}");
    }
    // The same client_msg_id from another sender is a different message.
    let other = b.send_text("alice", "same", "bob's").await;
    assert_eq!(other["seq"], 2);
    assert_ne!(other["msg_id"], first["msg_id"]);
    // Only one push of alice's message reached bob.
    assert_eq!(b.next_of("msg").await["msg"]["content"], "one");
    b.quiet(Duration::from_millis(300)).await;
    // Dedup also over HTTP and across transports.
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&ta),
            json!({"to":"bob","client_msg_id":"same","kind":"text","content":"x"}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        (v["msg_id"].clone(), v["duplicate"].clone()),
        (first["msg_id"].clone(), json!(true))
    );
    let h = a
        .ok(json!({"type":"history","conv":dm("alice","bob")}))
        .await;
    assert_eq!(h["msgs"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn concurrent_senders_get_gap_free_seqs() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut tasks = Vec::new();
    for (tok, to, dev) in [
        (&ta, "bob", "a1"),
        (&ta, "bob", "a2"),
        (&tb, "alice", "b1"),
        (&tb, "alice", "b2"),
    ] {
        let mut c = s.connect(tok, dev).await;
        let to = to.to_owned();
        let dev = dev.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                let ok = c.send_text(&to, &format!("{dev}-{i}"), "x").await;
                seqs.push(ok["seq"].as_u64().unwrap());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one connection's sends are ordered"
        );
        all.extend(seqs);
    }
    all.sort();
    assert_eq!(all, (1..=200).collect::<Vec<u64>>());
}

#[tokio::test]
async fn self_conversation() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let mut phone = s.connect(&ta, "phone").await;
    let mut laptop = s.connect(&ta, "laptop").await;
    let ok = phone.send_text("alice", "n1", "note to self").await;
    assert_eq!(
        (ok["conv"].as_str(), ok["seq"].as_u64()),
        (Some("dm:alice:alice"), Some(1))
    );
    let m = laptop.next_of("msg").await;
    assert_eq!(m["msg"]["to"], "alice");
    phone.quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn unacked_pushes_are_redelivered_three_times() {
    let s = Server::start_with(|c| c.delivery.ack_timeout_ms = 300).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a = s.connect(&ta, "d").await;
    let mut b = s.connect(&tb, "d").await;
    let ok = a.send_text("bob", "m1", "hi").await;
    let mut got = Vec::new();
    while let Some(f) = b.next_within(Duration::from_millis(2000)).await {
        assert_eq!(f["type"], "msg");
        got.push(f["msg"]["msg_id"].clone());
    }
    assert_eq!(
        got,
        vec![ok["msg_id"].clone(); 4],
        "the push plus 3 redeliveries"
    );

    // An ack stops redelivery.
    let ok2 = a.send_text("bob", "m2", "again").await;
    let f = b.next_of("msg").await;
    assert_eq!(f["msg"]["msg_id"], ok2["msg_id"]);
    b.send(json!({"type":"ack","conv":dm("alice","bob"),"seq":2}))
        .await;
    b.quiet(Duration::from_millis(1000)).await;
}

#[tokio::test]
async fn offline_queue_is_pushed_at_auth_and_left_on_ack() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a = s.connect(&ta, "d").await;
    let conv = dm("alice", "bob");
    for i in 1..=5 {
        a.send_text("bob", &format!("m{i}"), &format!("t{i}")).await;
    }
    let (mut b, (msgs, done)) = s.connect_offline(&tb, "phone").await;
    assert_eq!(
        done,
        json!({"type":"offline_done","count":5,"truncated":false})
    );
    let seqs: Vec<u64> = msgs
        .iter()
        .map(|m| m["msg"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    // Another device logging in before any ack gets them too.
    let (_, (msgs2, _)) = s.connect_offline(&tb, "tablet").await;
    assert_eq!(msgs2.len(), 5);
    // Ack up to 3: 4 and 5 stay queued.
    b.send(json!({"type":"ack","conv":conv,"seq":3})).await;
    // Frames of one connection are handled in order: after the barrier
    // the ack has taken effect.
    b.barrier().await;
    let (_, (msgs3, done3)) = s.connect_offline(&tb, "laptop").await;
    let seqs: Vec<u64> = msgs3
        .iter()
        .map(|m| m["msg"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![4, 5]);
    assert_eq!(done3["count"], 2);
    b.send(json!({"type":"ack","conv":conv,"seq":5})).await;
    b.barrier().await;
    let (_, (msgs4, done4)) = s.connect_offline(&tb, "watch").await;
    assert!(msgs4.is_empty());
    assert_eq!(done4["count"], 0);
}

#[tokio::test]
async fn offline_queue_cap_keeps_newest_and_reports_truncation_once() {
    let s = Server::start_with(|c| c.delivery.offline_cap = 10).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a = s.connect(&ta, "d").await;
    for i in 1..=25 {
        a.send_text("bob", &format!("m{i}"), "x").await;
    }
    let (b, (msgs, done)) = s.connect_offline(&tb, "d").await;
    let seqs: Vec<u64> = msgs
        .iter()
        .map(|m| m["msg"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (16..=25).collect::<Vec<_>>());
    assert_eq!(
        done,
        json!({"type":"offline_done","count":10,"truncated":true})
    );
    b.close().await;
    // Truncation is reported once per drop, not at every auth.
    let (_, (msgs, done)) = s.connect_offline(&tb, "d").await;
    assert_eq!(msgs.len(), 10);
    assert_eq!(done["truncated"], false);
    // Older messages are still in history.
    let (st, h) = s
        .get(
            &format!(
                "/v1/conversations/{}/messages?limit=500",
                dm("alice", "bob")
            ),
            Some(&tb),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(h["msgs"].as_array().unwrap().len(), 25);
}

#[tokio::test]
async fn delivered_receipt_goes_to_sender_devices() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a1 = s.connect(&ta, "a1").await;
    let mut a2 = s.connect(&ta, "a2").await;
    let mut b = s.connect(&tb, "d").await;
    for i in 1..=3 {
        a1.send_text("bob", &format!("m{i}"), "x").await;
    }
    for _ in 0..3 {
        b.next_of("msg").await;
    }
    let conv = dm("alice", "bob");
    b.send(json!({"type":"ack","conv":conv,"seq":3})).await;
    let want = json!({"type":"receipt","conv":conv,"by":"bob","delivered_seq":3});
    assert_eq!(a1.next_of("receipt").await, want);
    assert_eq!(a2.next_of("receipt").await, want);
    // An ack covering nothing new sends no receipt.
    b.send(json!({"type":"ack","conv":conv,"seq":2})).await;
    b.send(json!({"type":"ack","conv":conv,"seq":3})).await;
    b.barrier().await;
    a1.quiet(Duration::from_millis(300)).await;
    // Bob acking his own message is not a receipt for alice.
    b.send_text("alice", "r1", "reply").await;
    b.barrier().await;
    a1.next_of("msg").await;
    a1.send(json!({"type":"ack","conv":conv,"seq":4})).await;
    let r = b.next_of("receipt").await;
    assert_eq!(
        r,
        json!({"type":"receipt","conv":conv,"by":"alice","delivered_seq":4})
    );
}

#[tokio::test]
async fn send_over_http_is_pushed_like_websocket() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a = s.connect(&ta, "d").await;
    let mut b = s.connect(&tb, "d").await;
    let (st, v) = s
        .post("/v1/messages", Some(&ta), json!({"to":"bob","client_msg_id":"h1","kind":"image","content":{"url":"https://x/y.png","w":1,"h":2}}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["conv"].as_str(), v["seq"].as_u64()),
        (Some(dm("alice", "bob").as_str()), Some(1))
    );
    let m = b.next_of("msg").await;
    assert_eq!(
        m["msg"]["content"],
        json!({"url":"https://x/y.png","w":1,"h":2})
    );
    assert_eq!(m["msg"]["kind"], "image");
    // Over HTTP there is no sending device: all of alice's devices get it.
    assert_eq!(a.next_of("msg").await["msg"]["msg_id"], v["msg_id"]);
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&ta),
            json!({"to":"nobody","client_msg_id":"h2","kind":"text","content":"x"}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("no_such_user")));
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&ta),
            json!({"to":"bob","client_msg_id":"h3","kind":"text","content":"x".repeat(20000)}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (413, Some("content_too_large")));
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&ta),
            json!({"to":"bob","client_msg_id":"h4","kind":"system","content":{}}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
    let (st, _) = s
        .post(
            "/v1/messages",
            None,
            json!({"to":"bob","client_msg_id":"h5","kind":"text","content":"x"}),
        )
        .await;
    assert_eq!(st, 401);
}
