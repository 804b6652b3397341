//! Accounts, sessions and friends over HTTP (PROTOCOL.md 3).

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn register_login_and_lookup() {
    let s = Server::start().await;
    let (st, b) = s
        .post(
            "/v1/users",
            None,
            json!({"user":"alice","password":"password1","name":"Alice A"}),
        )
        .await;
    assert_eq!((st, b.clone()), (201, json!({"user":"alice"})));
    let (st, b) = s
        .post(
            "/v1/users",
            None,
            json!({"user":"alice","password":"password2"}),
        )
        .await;
    assert_eq!((st, b["code"].as_str()), (409, Some("user_exists")));
    let (st, b) = s
        .post("/v1/users", None, json!({"user":"bob","password":"short"}))
        .await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid")));
    let (st, b) = s
        .post(
            "/v1/users",
            None,
            json!({"user":"bad name!","password":"password1"}),
        )
        .await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid")));
    let (st, b) = s.post("/v1/users", None, json!({"user":"x"})).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid")));
    let (st, _) = s
        .post(
            "/v1/users",
            None,
            json!({"user":"carol","password":"password1"}),
        )
        .await;
    assert_eq!(st, 201);

    let (st, b) = s
        .post(
            "/v1/sessions",
            None,
            json!({"user":"alice","password":"wrong-pass"}),
        )
        .await;
    assert_eq!((st, b["code"].as_str()), (401, Some("bad_credentials")));
    let (st, b) = s
        .post(
            "/v1/sessions",
            None,
            json!({"user":"nobody","password":"password1"}),
        )
        .await;
    assert_eq!((st, b["code"].as_str()), (401, Some("bad_credentials")));
    let (st, b) = s
        .post(
            "/v1/sessions",
            None,
            json!({"user":"alice","password":"password1"}),
        )
        .await;
    assert_eq!(st, 200);
    let token = b["token"].as_str().unwrap().to_owned();
    let exp = b["expires_at"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        exp > now + 3_600_000,
        "expires_at is in ms and in the future: {exp}"
    );

    let (st, b) = s.get("/v1/users/alice", Some(&token)).await;
    assert_eq!(
        (st, b),
        (
            200,
            json!({"user":"alice","name":"Alice A","avatar":null,"online":false})
        )
    );
    let (st, b) = s.get("/v1/users/carol", Some(&token)).await;
    assert_eq!(
        (st, b),
        (
            200,
            json!({"user":"carol","name":"carol","avatar":null,"online":false})
        )
    );
    let (st, b) = s.get("/v1/users/nobody", Some(&token)).await;
    assert_eq!((st, b["code"].as_str()), (404, Some("no_such_user")));
    let (st, b) = s.get("/v1/users/alice", None).await;
    assert_eq!((st, b["code"].as_str()), (401, Some("unauthenticated")));
    let (st, b) = s.get("/v1/users/alice", Some("not-a-token")).await;
    assert_eq!((st, b["code"].as_str()), (401, Some("unauthenticated")));

    // Online flag follows a live connection.
    let c = s.connect(&token, "phone").await;
    let (_, b) = s.get("/v1/users/alice", Some(&token)).await;
    assert_eq!(b["online"], true);
    c.close().await;
}

#[tokio::test]
async fn tokens_survive_a_restart() {
    let s = Server::start().await;
    let token = s.user("alice").await;
    let dir = s.stop().await;
    // The signing key was stored once, in the store, and is reused.
    let s = Server::start_in(dir, |_| {}).await;
    let (st, _) = s.get("/v1/users/alice", Some(&token)).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn friends_request_accept_list_delete() {
    let s = Server::start().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;

    let (st, v) = s.put("/v1/friends/bob", Some(&a)).await;
    assert_eq!((st, v), (200, json!({"status":"requested"})));
    // Asking again stays a request.
    let (_, v) = s.put("/v1/friends/bob", Some(&a)).await;
    assert_eq!(v, json!({"status":"requested"}));
    let (_, v) = s.get("/v1/friends", Some(&a)).await;
    assert_eq!(v, json!({"friends":[],"incoming":[],"outgoing":["bob"]}));
    let (_, v) = s.get("/v1/friends", Some(&b)).await;
    assert_eq!(v, json!({"friends":[],"incoming":["alice"],"outgoing":[]}));

    let (st, v) = s.put("/v1/friends/alice", Some(&b)).await;
    assert_eq!((st, v), (200, json!({"status":"friends"})));
    let (_, v) = s.get("/v1/friends", Some(&a)).await;
    assert_eq!(
        v,
        json!({"friends":[{"user":"bob","online":false}],"incoming":[],"outgoing":[]})
    );

    let bob = s.connect(&b, "d").await;
    let (_, v) = s.get("/v1/friends", Some(&a)).await;
    assert_eq!(v["friends"], json!([{"user":"bob","online":true}]));
    bob.close().await;

    let (st, v) = s.put("/v1/friends/nobody", Some(&a)).await;
    assert_eq!((st, v["code"].as_str()), (404, Some("no_such_user")));
    let (st, v) = s.put("/v1/friends/alice", Some(&a)).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
    let (st, _) = s.put("/v1/friends/alice", Some(&c)).await;
    assert_eq!(st, 200);

    let (st, v) = s.delete("/v1/friends/bob", Some(&a)).await;
    assert_eq!((st, v), (204, serde_json::Value::Null));
    let (_, v) = s.get("/v1/friends", Some(&b)).await;
    assert_eq!(v, json!({"friends":[],"incoming":[],"outgoing":[]}));
    // Carol's request to alice can be declined with delete.
    let (_, v) = s.get("/v1/friends", Some(&a)).await;
    assert_eq!(v["incoming"], json!(["carol"]));
    let (st, _) = s.delete("/v1/friends/carol", Some(&a)).await;
    assert_eq!(st, 204);
    let (_, v) = s.get("/v1/friends", Some(&c)).await;
    assert_eq!(v["outgoing"], json!([]));
    let (st, _) = s.get("/v1/friends", None).await;
    assert_eq!(st, 401);
}

/// Every change of a friendship is pushed to both sides' online devices,
/// as each side's list now shows the other.
#[tokio::test]
async fn friend_changes_are_pushed_to_both_sides() {
    let s = Server::start().await;
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let mut alice = s.connect(&a, "d").await;
    let mut bob = s.connect(&b, "d").await;

    s.put("/v1/friends/bob", Some(&a)).await;
    assert_eq!(
        bob.next_of("friend").await,
        json!({"type":"friend","user":"alice","status":"incoming"})
    );
    assert_eq!(
        alice.next_of("friend").await,
        json!({"type":"friend","user":"bob","status":"outgoing"})
    );

    s.put("/v1/friends/alice", Some(&b)).await;
    assert_eq!(
        alice.next_of("friend").await,
        json!({"type":"friend","user":"bob","status":"friends"})
    );
    assert_eq!(
        bob.next_of("friend").await,
        json!({"type":"friend","user":"alice","status":"friends"})
    );

    s.delete("/v1/friends/alice", Some(&b)).await;
    assert_eq!(
        alice.next_of("friend").await,
        json!({"type":"friend","user":"bob","status":"removed"})
    );
    assert_eq!(
        bob.next_of("friend").await,
        json!({"type":"friend","user":"alice","status":"removed"})
    );
}
