//! Presence queries, friend presence pushes and typing (PROTOCOL.md 2.7).

use crate::common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn friends_see_first_connect_and_last_disconnect() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    s.befriend(("alice", &ta), ("bob", &tb)).await;
    let mut bob = s.connect(&tb, "b").await;
    let mut carol = s.connect(&tc, "c").await;

    let a1 = s.connect(&ta, "phone").await;
    let p = bob.next_of("presence").await;
    assert_eq!(
        (p["user"].as_str(), p["online"].as_bool()),
        (Some("alice"), Some(true))
    );
    assert!(p["ts"].as_i64().is_some());
    // A second device is not a new presence; a non-friend hears nothing.
    let a2 = s.connect(&ta, "laptop").await;
    a1.close().await;
    bob.quiet(Duration::from_millis(300)).await;
    carol.quiet(Duration::from_millis(50)).await;
    a2.close().await;
    let p = bob.next_of("presence").await;
    assert_eq!(
        (p["user"].as_str(), p["online"].as_bool()),
        (Some("alice"), Some(false))
    );

    let q = carol
        .ok(json!({"type":"presence","users":["alice","bob","nobody"]}))
        .await;
    assert_eq!(
        q["online"],
        json!({"alice":false,"bob":true,"nobody":false})
    );
    let users: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    carol
        .err(json!({"type":"presence","users":users}), "invalid")
        .await;
    carol.err(json!({"type":"presence"}), "invalid").await;
}

#[tokio::test]
async fn typing_is_relayed_not_stored() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut a = s.connect(&ta, "a").await;
    let mut b1 = s.connect(&tb, "b1").await;
    let mut b2 = s.connect(&tb, "b2").await;
    let conv = dm("alice", "bob");
    a.send(json!({"type":"typing","conv":conv})).await;
    let want = json!({"type":"typing","conv":conv,"user":"alice"});
    assert_eq!(b1.next().await, want);
    assert_eq!(b2.next().await, want);
    a.quiet(Duration::from_millis(200)).await;
    let h = b1.ok(json!({"type":"history","conv":conv})).await;
    assert_eq!(h["msgs"], json!([]));
    let sy = b1.ok(json!({"type":"sync"})).await;
    assert_eq!(sy["convs"], json!([]));
    a.err(json!({"type":"typing","conv":"dm:bob:carol"}), "not_member")
        .await;
}
