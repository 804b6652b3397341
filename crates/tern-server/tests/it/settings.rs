//! 5.3 profiles, conversation settings and sessions: each request, its
//! errors and its pushes, over real HTTP and WebSocket sockets.

use crate::common::*;
use crate::moderation::{call, done, refused};
use serde_json::json;

#[tokio::test]
async fn profile_update_is_seen_and_pushed_to_friends_and_own_devices() {
    let s = Server::start_with(|c| c.limits.avatar_bytes = 16).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    s.befriend(("alice", &ta), ("bob", &tb)).await;
    let mut bob = s.connect(&tb, "b").await;
    let mut alice2 = s.connect(&ta, "a2").await;
    let mut carol = s.connect(&tc, "c").await;

    let (st, v) = call(&s, "GET", "/v1/users/alice", &tb, None).await;
    assert_eq!(st, 200);
    assert_eq!(v["avatar"], json!(null));

    let (st, v) = call(
        &s,
        "PATCH",
        "/v1/users/me",
        &ta,
        Some(json!({"name":"Alice A.","avatar":"m-123"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"user":"alice","name":"Alice A.","avatar":"m-123","online":true})
    );
    for c in [&mut bob, &mut alice2] {
        let p = c.next_of("profile").await;
        assert_eq!(
            p,
            json!({"type":"profile","user":"alice","name":"Alice A.","avatar":"m-123"})
        );
    }
    // Not a friend: no push.
    assert!(carol
        .drain(std::time::Duration::from_millis(300))
        .await
        .iter()
        .all(|f| f["type"] != "profile"));
    let (_, v) = call(&s, "GET", "/v1/users/alice", &tc, None).await;
    assert_eq!(
        (v["name"].clone(), v["avatar"].clone()),
        (json!("Alice A."), json!("m-123"))
    );

    // Only the avatar, then clearing it: the name stays.
    let (_, v) = call(&s, "PATCH", "/v1/users/me", &ta, Some(json!({"avatar":""}))).await;
    assert_eq!(
        (v["name"].clone(), v["avatar"].clone()),
        (json!("Alice A."), json!(null))
    );

    // Bad input: invalid.
    for body in [
        json!({"name":""}),
        json!({"name":"   "}),
        json!({"name":"x".repeat(129)}),
        json!({"avatar":"x".repeat(17)}),
        json!({"avatar":"no spaces"}),
        json!({"nick":"x"}),
    ] {
        refused(&s, "PATCH", "/v1/users/me", &ta, Some(body), 400, "invalid").await;
    }
    let (_, v) = call(
        &s,
        "PATCH",
        "/v1/users/me",
        &ta,
        Some(json!({"avatar":"x".repeat(16)})),
    )
    .await;
    assert_eq!(v["avatar"], json!("x".repeat(16)));
}

#[tokio::test]
async fn conv_settings_are_checked_synced_and_pushed() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let conv = dm("alice", "bob");
    let mut bob = s.connect(&tb, "b").await;
    let mut alice = s.connect(&ta, "a").await;
    alice.send_text("bob", "a1", "hi").await;
    bob.next_msg().await;

    let until = tern_core::now_ms() + 3_600_000;
    let path = format!("/v1/conversations/{conv}/settings");
    let (st, v) = call(
        &s,
        "PUT",
        &path,
        &tb,
        Some(json!({"muted_until":until,"pinned":true})),
    )
    .await;
    assert_eq!(
        (st, v),
        (
            200,
            json!({"muted_until":until,"pinned":true,"retention_days":0})
        )
    );
    let p = bob.next_of("conv_settings").await;
    assert_eq!(
        p,
        json!({"type":"conv_settings","conv":conv,"muted_until":until,"pinned":true})
    );

    // Muted: unread still counts, the entry carries the settings.
    alice.send_text("bob", "a2", "again").await;
    let (_, v) = s.get("/v1/conversations", Some(&tb)).await;
    let e = &v["convs"][0];
    assert_eq!(
        (e["muted_until"].clone(), e["pinned"].clone()),
        (json!(until), json!(true))
    );
    assert_eq!(e["unread"], json!(2));
    let q = bob.ok(json!({"type":"sync"})).await;
    assert_eq!(q["convs"][0]["pinned"], json!(true));
    // The other side's settings are its own.
    let (_, v) = s.get("/v1/conversations", Some(&ta)).await;
    assert_eq!(
        (
            v["convs"][0]["muted_until"].clone(),
            v["convs"][0]["pinned"].clone()
        ),
        (json!(0), json!(false))
    );

    // One field at a time; 0 unmutes; a past time is stored as 0.
    let (_, v) = call(&s, "PUT", &path, &tb, Some(json!({"muted_until":0}))).await;
    assert_eq!(v, json!({"muted_until":0,"pinned":true,"retention_days":0}));
    let (_, v) = call(
        &s,
        "PUT",
        &path,
        &tb,
        Some(json!({"muted_until":5,"pinned":false})),
    )
    .await;
    assert_eq!(
        v,
        json!({"muted_until":0,"pinned":false,"retention_days":0})
    );

    // Access and input.
    refused(
        &s,
        "PUT",
        &path,
        &tc,
        Some(json!({"pinned":true})),
        403,
        "not_member",
    )
    .await;
    refused(
        &s,
        "PUT",
        &path,
        &tb,
        Some(json!({"muted_until":-1})),
        400,
        "invalid",
    )
    .await;
    refused(
        &s,
        "PUT",
        &path,
        &tb,
        Some(json!({"pinned":"yes"})),
        400,
        "invalid",
    )
    .await;
    refused(
        &s,
        "PUT",
        "/v1/conversations/nonsense/settings",
        &tb,
        Some(json!({"pinned":true})),
        400,
        "invalid",
    )
    .await;
    refused(
        &s,
        "PUT",
        "/v1/conversations/group:nogroup/settings",
        &tb,
        Some(json!({"pinned":true})),
        404,
        "no_such_group",
    )
    .await;
    let g = s.new_group(&ta, "team", &["bob"]).await;
    let gpath = format!("/v1/conversations/group:{g}/settings");
    let (st, _) = call(&s, "PUT", &gpath, &tb, Some(json!({"pinned":true}))).await;
    assert_eq!(st, 200);
    refused(
        &s,
        "PUT",
        &gpath,
        &tc,
        Some(json!({"pinned":true})),
        403,
        "not_member",
    )
    .await;
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_one_or_all() {
    let s = Server::start().await;
    let t1 = s.user("alice").await;
    let t2 = s.login("alice").await;
    let t3 = s.login("alice").await;
    let tb = s.user("bob").await;
    let mut phone = s.connect(&t2, "phone").await;

    let (st, v) = call(&s, "GET", "/v1/sessions", &t1, None).await;
    assert_eq!(st, 200, "{v}");
    let list = v["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{v}");
    assert_eq!(
        list.iter().filter(|e| e["current"] == json!(true)).count(),
        1
    );
    assert_eq!(list[0]["current"], json!(true), "oldest first: {v}");
    for e in &list {
        assert!(e["expires_at"].as_i64() > e["created_at"].as_i64(), "{e}");
        assert!(e["last_seen"].as_i64() >= e["created_at"].as_i64(), "{e}");
    }
    assert_eq!(list[1]["devices"], json!(["phone"]), "{v}");
    let second = list[1]["session"].as_str().unwrap().to_owned();

    // Someone else's, an unknown one: not_found.
    refused(
        &s,
        "DELETE",
        &format!("/v1/sessions/{second}"),
        &tb,
        None,
        404,
        "not_found",
    )
    .await;
    refused(
        &s,
        "DELETE",
        "/v1/sessions/nope",
        &t1,
        None,
        404,
        "not_found",
    )
    .await;
    refused(
        &s,
        "DELETE",
        &format!("/v1/sessions/{}", "0".repeat(32)),
        &t1,
        None,
        404,
        "not_found",
    )
    .await;

    // One: its socket closes with 4001, its token is refused.
    done(&s, "DELETE", &format!("/v1/sessions/{second}"), &t1, None).await;
    assert_eq!(phone.closed_with().await, 4001);
    refused(&s, "GET", "/v1/sessions", &t2, None, 401, "unauthenticated").await;
    refused(
        &s,
        "DELETE",
        &format!("/v1/sessions/{second}"),
        &t1,
        None,
        404,
        "not_found",
    )
    .await;
    let (_, v) = call(&s, "GET", "/v1/sessions", &t3, None).await;
    assert_eq!(v["sessions"].as_array().unwrap().len(), 2, "{v}");

    // All: every token of the user, the caller's included; bob's stay.
    let mut other = s.connect(&t3, "tablet").await;
    done(&s, "DELETE", "/v1/sessions?all=true", &t1, None).await;
    assert_eq!(other.closed_with().await, 4001);
    for t in [&t1, &t3] {
        refused(&s, "GET", "/v1/sessions", t, None, 401, "unauthenticated").await;
    }
    let (st, _) = call(&s, "GET", "/v1/sessions", &tb, None).await;
    assert_eq!(st, 200);
    refused(
        &s,
        "DELETE",
        "/v1/sessions?all=maybe",
        &tb,
        None,
        400,
        "invalid",
    )
    .await;
}

#[tokio::test]
async fn sessions_listed_is_bounded() {
    let s = Server::start_with(|c| c.limits.sessions_listed = 2).await;
    let t1 = s.user("alice").await;
    s.login("alice").await;
    let t3 = s.login("alice").await;
    let (_, v) = call(&s, "GET", "/v1/sessions", &t3, None).await;
    let list = v["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    // The newest two: the first login's is left out.
    assert_eq!(list[1]["current"], json!(true), "{v}");
    let (_, v1) = call(&s, "GET", "/v1/sessions", &t1, None).await;
    assert!(v1["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["current"] == json!(false)));
}
