//! 5.6 retention: a conversation's `retention_days` (set, validated,
//! shared, who may set it) and the sweep of expired messages (history,
//! search, offline delivery, gap fill, unread, seq, media), over real
//! sockets on the embedded store. Messages are made old by moving their
//! `ts` back in the store's file (the server keeps running: WAL with a
//! busy timeout), so no test waits days.

use crate::common::*;
use serde_json::{json, Value};

const DAY_MS: i64 = 86_400_000;

/// `PUT /v1/conversations/{conv}/settings` with a JSON body.
async fn put_settings(s: &Server, token: &str, conv: &str, body: Value) -> (u16, Value) {
    let r = s
        .http
        .put(s.url(&format!("/v1/conversations/{conv}/settings")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// The sync entry of `conv` for `token`, and `total_unread`.
async fn entry(s: &Server, token: &str, conv: &str) -> (Value, u64) {
    let (st, v) = s.get("/v1/conversations", Some(token)).await;
    assert_eq!(st, 200, "{v}");
    let e = v["convs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conv"] == conv)
        .cloned()
        .unwrap_or(Value::Null);
    (e, v["total_unread"].as_u64().unwrap())
}

/// Moves the `ts` of messages `1..=upto` of `conv` back by `days`.
fn age(s: &Server, conv: &str, upto: u64, days: i64) {
    let path = s.dir.path().join(tern_store_sqlite::DB_FILE);
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let n = c
        .execute(
            "UPDATE messages SET ts = ts - ?1 WHERE conv = ?2 AND seq <= ?3",
            rusqlite::params![days * DAY_MS, conv, upto as i64],
        )
        .unwrap();
    assert_eq!(n as u64, upto, "messages aged");
}

/// The seqs of `conv`'s history for `token`.
async fn history(s: &Server, token: &str, conv: &str, query: &str) -> Vec<u64> {
    let (st, v) = s
        .get(
            &format!("/v1/conversations/{conv}/messages{query}"),
            Some(token),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    seqs(&v["msgs"])
}

/// Waits until `conv`'s history for `token` is `want` (the sweep runs
/// every second).
async fn until_history(s: &Server, token: &str, conv: &str, want: &[u64]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = history(s, token, conv, "").await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history stayed {got:?}, expected {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn hits(s: &Server, token: &str, q: &str) -> usize {
    let (st, v) = s.get(&format!("/v1/search?q={q}"), Some(token)).await;
    assert_eq!(st, 200, "{v}");
    v["hits"].as_array().unwrap().len()
}

/// Waits until a search finds `n` hits (indexing runs apart from sends).
async fn until_hits(s: &Server, token: &str, q: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while hits(s, token, q).await != n {
        assert!(tokio::time::Instant::now() < deadline, "{q}: not {n} hits");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn fast_sweep(c: &mut tern_server::Config) {
    c.retention.sweep_secs = 1;
}

#[tokio::test]
async fn retention_is_validated_shared_and_only_for_those_allowed() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let mut alice = s.connect(&ta, "a").await;
    alice.send_text("bob", "r1", "hello").await;
    let conv = dm("alice", "bob");

    // Either party of a 1:1 conversation; the answer carries it.
    let (st, v) = put_settings(&s, &tb, &conv, json!({"retention_days": 7})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"muted_until": 0, "pinned": false, "retention_days": 7})
    );
    // A property of the conversation: the other side sees it, whatever
    // its own settings.
    let (e, _) = entry(&s, &ta, &conv).await;
    assert_eq!(e["retention_days"], 7);
    let got = s.as_user(&ta).set_retention(&conv, 30).await.unwrap();
    assert_eq!(got.retention_days, 30);
    let (e, _) = entry(&s, &tb, &conv).await;
    assert_eq!(e["retention_days"], 30);
    // Setting mute or pin leaves it.
    let (_, v) = put_settings(&s, &tb, &conv, json!({"pinned": true})).await;
    assert_eq!(v["retention_days"], 30);

    // Bounds: 1..=3650; 0 or null clears.
    for bad in [
        json!(3651),
        json!(-1),
        json!("7"),
        json!(1.5),
        json!(4294967296u64),
    ] {
        let (st, v) = put_settings(&s, &ta, &conv, json!({"retention_days": bad})).await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert_eq!(v["code"], "invalid");
    }
    let (_, v) = put_settings(&s, &ta, &conv, json!({"retention_days": 3650})).await;
    assert_eq!(v["retention_days"], 3650);
    let (_, v) = put_settings(&s, &ta, &conv, json!({"retention_days": null})).await;
    assert_eq!(v["retention_days"], 0);
    let (e, _) = entry(&s, &tb, &conv).await;
    assert!(e.get("retention_days").is_none(), "{e}");
    put_settings(&s, &ta, &conv, json!({"retention_days": 5})).await;
    let (_, v) = put_settings(&s, &ta, &conv, json!({"retention_days": 0})).await;
    assert_eq!(v["retention_days"], 0);

    // Someone else's conversation.
    let (st, v) = put_settings(&s, &tc, &conv, json!({"retention_days": 5})).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")));

    // Groups: the owner and admins; a plain member is refused.
    let gid = s.new_group(&ta, "team", &["bob", "carol"]).await;
    let gconv = format!("group:{gid}");
    let (st, v) = put_settings(&s, &tc, &gconv, json!({"retention_days": 2})).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (st, _) = put_settings(&s, &ta, &gconv, json!({"retention_days": 2})).await;
    assert_eq!(st, 200);
    let (st, _) = s
        .put(&format!("/v1/groups/{gid}/admins/bob"), Some(&ta))
        .await;
    assert_eq!(st, 204);
    let (st, v) = put_settings(&s, &tb, &gconv, json!({"retention_days": 3})).await;
    assert_eq!((st, v["retention_days"].as_u64()), (200, Some(3)));
    let (e, _) = entry(&s, &tc, &gconv).await;
    assert_eq!(e["retention_days"], 3);
    // A plain member may still mute the group for itself.
    let (st, v) = put_settings(&s, &tc, &gconv, json!({"pinned": true})).await;
    assert_eq!((st, v["retention_days"].as_u64()), (200, Some(3)));
    alice.close().await;
    s.stop().await;
}

#[tokio::test]
async fn expired_messages_leave_history_search_queue_and_unread() {
    let s = Server::start_with(fast_sweep).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let conv = dm("alice", "bob");
    let mut alice = s.connect(&ta, "a").await;
    // Bob is offline: everything is queued for him.
    alice.send_text("bob", "e1", "oldest zebra").await;
    alice.send_text("bob", "e2", "older yak").await;
    alice.send_text("bob", "e3", "recent xerus").await;
    until_hits(&s, &tb, "zebra", 1).await;
    let (e, total) = entry(&s, &tb, &conv).await;
    assert_eq!((e["unread"].as_u64(), total), (Some(3), 3));

    put_settings(&s, &ta, &conv, json!({"retention_days": 1})).await;
    age(&s, &conv, 2, 2);
    until_history(&s, &tb, &conv, &[3]).await;
    assert_eq!(history(&s, &ta, &conv, "").await, vec![3]);
    // Gap fill from below the kept history starts at its first seq.
    assert_eq!(history(&s, &tb, &conv, "?after_seq=0").await, vec![3]);
    assert_eq!(
        history(&s, &tb, &conv, "?before_seq=3").await,
        Vec::<u64>::new()
    );
    // Search: the expired never match.
    assert_eq!(hits(&s, &tb, "zebra").await, 0);
    assert_eq!(hits(&s, &tb, "yak").await, 0);
    assert_eq!(hits(&s, &tb, "xerus").await, 1);
    // Unread counts what is kept: the read position moved past the rest.
    let (e, total) = entry(&s, &tb, &conv).await;
    assert_eq!(e["unread"], 1, "{e}");
    assert_eq!(e["read_seq"], 2, "{e}");
    assert_eq!(e["max_seq"], 3, "{e}");
    assert_eq!(total, 1);
    // Offline delivery at login: only the kept message.
    let (mut bob, (msgs, done)) = s.connect_offline(&tb, "b").await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["msg"]["seq"], 3);
    assert_eq!(done["count"], 1);
    // seq goes on, gap-free, never reused.
    let ok = alice.send_text("bob", "e4", "newest").await;
    assert_eq!(ok["seq"], 4);
    let m = bob.next_msg().await;
    assert_eq!(m["seq"], 4);
    // An expired message takes no reaction, edit or recall: it is gone.
    let (st, v) = s
        .put(
            &format!("/v1/conversations/{conv}/messages/1/reactions/%F0%9F%91%8D"),
            Some(&tb),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")), "{v}");
    alice.close().await;
    bob.close().await;
    s.stop().await;
}

#[tokio::test]
async fn the_server_default_applies_where_no_retention_is_set() {
    let s = Server::start_with(|c| {
        fast_sweep(c);
        c.retention.default_days = 1;
        // Small rounds: the sweep goes on over several of them.
        c.retention.sweep_batch = 2;
        c.retention.sweep_convs = 1;
    })
    .await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let mut alice = s.connect(&ta, "a").await;
    for i in 0..5 {
        alice.send_text("bob", &format!("b{i}"), "to bob").await;
        alice.send_text("carol", &format!("c{i}"), "to carol").await;
    }
    let (ab, ac) = (dm("alice", "bob"), dm("alice", "carol"));
    // Carol's conversation keeps its messages for longer.
    put_settings(&s, &tc, &ac, json!({"retention_days": 30})).await;
    age(&s, &ab, 5, 2);
    age(&s, &ac, 5, 2);
    until_history(&s, &tb, &ab, &[]).await;
    assert_eq!(history(&s, &tc, &ac, "").await, vec![1, 2, 3, 4, 5]);
    let (e, total) = entry(&s, &tb, &ab).await;
    assert_eq!(
        (e["unread"].as_u64(), e["max_seq"].as_u64()),
        (Some(0), Some(5))
    );
    assert_eq!(e["last"], Value::Null);
    assert_eq!(total, 0);
    alice.close().await;
    s.stop().await;
}

#[tokio::test]
async fn media_of_expired_messages_is_swept() {
    let s = Server::start_with(|c| {
        fast_sweep(c);
        c.media.grace_secs = 1;
        c.media.sweep_secs = 1;
    })
    .await;
    let ta = s.user("alice").await;
    s.user("bob").await;
    let conv = dm("alice", "bob");
    let mut ids = Vec::new();
    for (i, text) in ["old", "kept"].iter().enumerate() {
        let r = s
            .http
            .post(s.url("/v1/media?filename=f.txt"))
            .bearer_auth(&ta)
            .header("content-type", "text/plain")
            .body(text.as_bytes().to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let v: Value = r.json().await.unwrap();
        let id = v["media"].as_str().unwrap().to_owned();
        let (st, v) = s
            .post(
                "/v1/messages",
                Some(&ta),
                json!({"to":"bob","client_msg_id":format!("m{i}"),"kind":"file","content":{"media":id}}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        ids.push(id);
    }
    put_settings(&s, &ta, &conv, json!({"retention_days": 1})).await;
    age(&s, &conv, 1, 2);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (st, _) = s.get(&format!("/v1/media/{}", ids[0]), Some(&ta)).await;
        if st == 404 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the media stayed");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(!s.dir.path().join("media").join(&ids[0]).exists());
    // The kept message's media stays.
    let (st, _) = s.get(&format!("/v1/media/{}", ids[1]), Some(&ta)).await;
    assert_eq!(st, 200);
    assert_eq!(history(&s, &ta, &conv, "").await, vec![2]);
    s.stop().await;
}
