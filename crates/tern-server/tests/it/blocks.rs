//! Blocks (PROTOCOL.md 5.3): each request and each error code, and every
//! path that reaches the blocker, over real HTTP and WebSocket sockets.

use crate::common::*;
use crate::moderation::{call, done, refused};
use serde_json::json;

#[tokio::test]
async fn blocks_stop_sends_requests_presence_and_typing() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    s.befriend(("alice", &ta), ("bob", &tb)).await;
    s.befriend(("carol", &tc), ("bob", &tb)).await;
    let g = s.new_group(&ta, "team", &["bob"]).await;
    let mut alice = s.connect(&ta, "a").await;

    refused(&s, "PUT", "/v1/blocks/alice", &ta, None, 400, "invalid").await;
    refused(
        &s,
        "PUT",
        "/v1/blocks/nobody",
        &ta,
        None,
        404,
        "no_such_user",
    )
    .await;
    done(&s, "PUT", "/v1/blocks/bob", &ta, None).await;
    done(&s, "PUT", "/v1/blocks/bob", &ta, None).await;
    let (st, v) = call(&s, "GET", "/v1/blocks", &ta, None).await;
    assert_eq!((st, v), (200, json!({"blocked":["bob"]})));
    assert_eq!(s.as_user(&tb).blocks().await.unwrap(), Vec::<String>::new());

    // bob's 1:1 sends to alice: `blocked`, not stored; alice's still go.
    let mut bob = s.connect(&tb, "b").await;
    let conv = dm("alice", "bob");
    let before = s
        .as_user(&ta)
        .messages(&conv, None, Some(0), Some(50))
        .await
        .unwrap()
        .msgs
        .len();
    bob.err(
        json!({"type":"send","to":"alice","client_msg_id":"b1","kind":"text","content":"hi"}),
        "blocked",
    )
    .await;
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&tb),
            json!({"to":"alice","client_msg_id":"b2","kind":"text","content":"hi"}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("blocked")), "{v}");
    let after = s
        .as_user(&ta)
        .messages(&conv, None, Some(0), Some(50))
        .await
        .unwrap()
        .msgs
        .len();
    assert_eq!(before, after);
    alice.send_text("bob", "a1", "one way").await;
    // Friend requests from bob: `blocked` (the friendship stays).
    let e = s.as_user(&tb).add_friend("alice").await.unwrap_err();
    assert_eq!(e.code(), Some(tern_proto::ErrorCode::Blocked), "{e}");

    // Presence: hidden both ways (queries, friend lists, user info, pushes).
    let q = bob
        .ok(json!({"type":"presence","users":["alice","carol"]}))
        .await;
    assert_eq!(q["online"], json!({"alice":false,"carol":false}));
    let q = alice.ok(json!({"type":"presence","users":["bob"]})).await;
    assert_eq!(q["online"], json!({"bob":false}));
    let f = s.as_user(&ta).friends().await.unwrap();
    assert!(f.friends.iter().all(|e| !e.online), "{f:?}");
    assert!(!s.as_user(&tb).user_info("alice").await.unwrap().online);
    assert!(s.as_user(&tc).user_info("alice").await.unwrap().online);
    let mut carol = s.connect(&tc, "c").await;
    let b2 = s.connect(&tb, "b2").await;
    bob.close().await;
    b2.close().await;
    // carol is told bob left; alice, who blocked him, is not.
    let p = carol.next_of("presence").await;
    assert_eq!(
        (p["user"].as_str(), p["online"].as_bool()),
        (Some("bob"), Some(false))
    );
    let mut bob = s.connect(&tb, "b").await;
    let p = carol.next_of("presence").await;
    assert_eq!(
        (p["user"].as_str(), p["online"].as_bool()),
        (Some("bob"), Some(true))
    );

    // Typing from bob does not reach alice; groups are unaffected.
    bob.ok(json!({"type":"typing","id":"t","conv":conv})).await;
    bob.send_group(&g, "g1", "in the group").await;
    let next = alice.next().await;
    assert_eq!(
        (next["type"].as_str(), next["msg"]["content"].as_str()),
        (Some("msg"), Some("in the group")),
        "{next}"
    );

    // Unblocked: everything flows again.
    done(&s, "DELETE", "/v1/blocks/bob", &ta, None).await;
    refused(
        &s,
        "DELETE",
        "/v1/blocks/nobody",
        &ta,
        None,
        404,
        "no_such_user",
    )
    .await;
    let (_, v) = call(&s, "GET", "/v1/blocks", &ta, None).await;
    assert_eq!(v, json!({"blocked":[]}));
    bob.ok(json!({"type":"typing","id":"t2","conv":conv})).await;
    let t = alice.next_of("typing").await;
    assert_eq!(t["user"], "bob");
    bob.send_text("alice", "b3", "hi again").await;
    let q = bob.ok(json!({"type":"presence","users":["alice"]})).await;
    assert_eq!(q["online"], json!({"alice":true}));
}

#[tokio::test]
async fn blocks_are_bounded() {
    let s = Server::start_with(|c| c.limits.blocks_max = 1).await;
    let ta = s.user("alice").await;
    s.user("bob").await;
    s.user("carol").await;
    let a = s.as_user(&ta);
    a.block("bob", true).await.unwrap();
    // Blocking again is no new block.
    a.block("bob", true).await.unwrap();
    let e = a.block("carol", true).await.unwrap_err();
    assert_eq!(e.code(), Some(tern_proto::ErrorCode::Forbidden), "{e}");
    a.block("bob", false).await.unwrap();
    a.block("carol", true).await.unwrap();
    assert_eq!(a.blocks().await.unwrap(), ["carol"]);
}
