//! Membership is checked first on every read and write path, over HTTP and
//! WebSocket alike: a user who never was in a conversation learns nothing
//! about it (not even how many messages it holds) and changes nothing in
//! it; a plain member cannot act as the owner; a former member keeps only
//! what the protocol grants (history up to the removal).

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A group of alice (owner) and bob with three text messages, and a
/// stranger, mallory, who was never in it. Returns the server, the tokens
/// `(alice, bob, mallory)` and the group id.
async fn setup() -> (Server, [String; 3], String) {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tm = s.user("mallory").await;
    let gid = s.new_group(&ta, "g", &["bob"]).await;
    for i in 0..3 {
        let (st, v) = s
            .post(
                "/v1/messages",
                Some(&ta),
                json!({"group": gid, "client_msg_id": format!("m{i}"), "kind": "text", "content": "hi"}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    (s, [ta, tb, tm], gid)
}

fn conv(gid: &str) -> String {
    format!("group:{gid}")
}

/// The whole history of `conv` as the user of `token` sees it.
async fn history(s: &Server, token: &str, conv: &str) -> Vec<Value> {
    let (st, v) = s
        .get(
            &format!("/v1/conversations/{conv}/messages?after_seq=0&limit=500"),
            Some(token),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["msgs"].as_array().unwrap().clone()
}

#[tokio::test]
async fn stranger_cannot_delete_or_read_group_messages() {
    let (s, [ta, _tb, tm], gid) = setup().await;
    let c = conv(&gid);
    let mut m = s.connect(&tm, "d").await;
    // Existing and missing seqs get the same answer: the count is not told.
    for seqs in [json!([1]), json!([2, 3]), json!([999])] {
        m.err(json!({"type":"delete","conv":c,"seqs":seqs}), "not_member")
            .await;
    }
    for seq in [1, 4, 5, 999] {
        m.err(json!({"type":"read","conv":c,"seq":seq}), "not_member")
            .await;
    }
    // Nothing was written: the group is not in the stranger's list.
    let (st, v) = s.get("/v1/conversations", Some(&tm)).await;
    assert_eq!(st, 200);
    assert_eq!(v["convs"], json!([]), "{v}");
    assert_eq!(v["total_unread"], 0);
    // The members' view is unchanged.
    assert_eq!(history(&s, &ta, &c).await.len(), 5);
}

#[tokio::test]
async fn stranger_gets_not_member_on_every_path() {
    let (s, [_ta, tb, tm], gid) = setup().await;
    let c = conv(&gid);
    let mut m = s.connect(&tm, "d").await;
    let mut b = s.connect(&tb, "d").await;
    // WebSocket.
    m.err(json!({"type":"history","conv":c}), "not_member")
        .await;
    m.err(json!({"type":"recall","conv":c,"seq":3}), "not_member")
        .await;
    m.err(json!({"type":"typing","conv":c}), "not_member").await;
    m.err(json!({"type":"ack","conv":c,"seq":3}), "not_member")
        .await;
    m.err(json!({"type":"read_status","conv":c,"seq":3}), "not_member")
        .await;
    m.err(
        json!({"type":"send","group":gid,"client_msg_id":"x","kind":"text","content":"x"}),
        "not_member",
    )
    .await;
    // No typing frame reached the members.
    b.quiet(Duration::from_millis(200)).await;
    // HTTP.
    let (st, v) = s
        .get(&format!("/v1/conversations/{c}/messages"), Some(&tm))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")), "{v}");
    let (st, v) = s.get(&format!("/v1/groups/{gid}"), Some(&tm)).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")), "{v}");
    let (st, v) = s
        .post(
            &format!("/v1/groups/{gid}/members"),
            Some(&tm),
            json!({"users": ["mallory"]}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")), "{v}");
    let (st, v) = s
        .delete(&format!("/v1/groups/{gid}/members/bob"), Some(&tm))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")), "{v}");
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&tm),
            json!({"group": gid, "client_msg_id": "y", "kind": "text", "content": "y"}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")), "{v}");
    // The group is unchanged: mallory was not added, bob not removed.
    let (st, v) = s.get(&format!("/v1/groups/{gid}"), Some(&tb)).await;
    assert_eq!(st, 200);
    assert_eq!(v["members"], json!(["alice", "bob"]), "{v}");
}

#[tokio::test]
async fn stranger_cannot_touch_a_dm_of_others() {
    let (s, [ta, tb, tm], _gid) = setup().await;
    let mut a = s.connect(&ta, "d").await;
    a.send_text("bob", "c1", "psst").await;
    let c = "dm:alice:bob";
    let mut m = s.connect(&tm, "d").await;
    for f in [
        json!({"type":"history","conv":c}),
        json!({"type":"read","conv":c,"seq":1}),
        json!({"type":"delete","conv":c,"seqs":[1]}),
        json!({"type":"recall","conv":c,"seq":1}),
        json!({"type":"typing","conv":c}),
        json!({"type":"ack","conv":c,"seq":1}),
    ] {
        m.err(f, "not_member").await;
    }
    let (st, _) = s
        .get(&format!("/v1/conversations/{c}/messages"), Some(&tm))
        .await;
    assert_eq!(st, 403);
    // Nothing changed for bob: mallory's read and delete did not count.
    let (_, v) = s.get("/v1/conversations", Some(&tb)).await;
    let dm = v["convs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["conv"] == c)
        .cloned()
        .unwrap();
    assert_eq!(
        (dm["unread"].as_u64(), dm["read_seq"].as_u64()),
        (Some(1), Some(0)),
        "{v}"
    );
    let (_, v) = s.get("/v1/conversations", Some(&tm)).await;
    assert_eq!(v["convs"], json!([]), "{v}");
}

#[tokio::test]
async fn plain_member_cannot_act_as_owner() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    s.user("carol").await;
    s.user("dave").await;
    let gid = s.new_group(&ta, "g", &["bob", "carol"]).await;
    // bob removes carol: forbidden.
    let (st, v) = s
        .delete(&format!("/v1/groups/{gid}/members/carol"), Some(&tb))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    // bob removes the owner: forbidden.
    let (st, v) = s
        .delete(&format!("/v1/groups/{gid}/members/alice"), Some(&tb))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    // Adding is open to any member (PROTOCOL.md 3).
    s.add_members(&tb, &gid, &["dave"]).await;
    // bob recalls alice's message: forbidden.
    let mut a = s.connect(&ta, "d").await;
    let sent = a.send_group(&gid, "a1", "mine").await;
    let mut b = s.connect(&tb, "d").await;
    b.err(
        json!({"type":"recall","conv":conv(&gid),"seq":sent["seq"]}),
        "forbidden",
    )
    .await;
    let (_, v) = s.get(&format!("/v1/groups/{gid}"), Some(&ta)).await;
    assert_eq!(v["members"], json!(["alice", "bob", "carol", "dave"]));
}

#[tokio::test]
async fn former_member_reads_up_to_removal_only() {
    let (s, [ta, tb, _tm], gid) = setup().await;
    let c = conv(&gid);
    s.remove_member(&ta, &gid, "bob").await;
    // Messages after the removal: seq 7 and 8 (1 created, 2 joined, 3-5
    // texts, 6 removed).
    let mut a = s.connect(&ta, "d").await;
    a.send_group(&gid, "late1", "after").await;
    a.send_group(&gid, "late2", "after").await;
    let mut b = s.connect(&tb, "d").await;
    // History up to the removal.
    let seen = history(&s, &tb, &c).await;
    assert_eq!(seen.last().unwrap()["seq"], 6, "{seen:?}");
    // read and delete within it work; a read of a later message stops at
    // it, a read of a seq that does not exist is `invalid` (PROTOCOL.md
    // 2.4), as for a member; a delete beyond it is answered like a seq
    // that does not exist.
    let r = b.ok(json!({"type":"read","conv":c,"seq":5})).await;
    assert_eq!(r["read_seq"], 5);
    b.ok(json!({"type":"delete","conv":c,"seqs":[3]})).await;
    for seq in [7, 8] {
        let r = b.ok(json!({"type":"read","conv":c,"seq":seq})).await;
        assert_eq!(r["read_seq"], 6);
    }
    for seq in [9, 1000] {
        b.err(json!({"type":"read","conv":c,"seq":seq}), "invalid")
            .await;
    }
    b.err(json!({"type":"delete","conv":c,"seqs":[4, 7]}), "invalid")
        .await;
    b.err(json!({"type":"delete","conv":c,"seqs":[9]}), "invalid")
        .await;
    // Writing and live paths are for current members only.
    b.err(json!({"type":"typing","conv":c}), "not_member").await;
    b.err(json!({"type":"read_status","conv":c,"seq":5}), "not_member")
        .await;
    let (st, _) = s.get(&format!("/v1/groups/{gid}"), Some(&tb)).await;
    assert_eq!(st, 403);
    // The delete of 4 was refused as a whole.
    let seen: Vec<u64> = history(&s, &tb, &c)
        .await
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seen, [1, 2, 4, 5, 6]);
}
