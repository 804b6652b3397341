//! Group roles and moderation (PROTOCOL.md 5.4): each request and each
//! error code over real HTTP and WebSocket sockets (blocks: `blocks.rs`).

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A raw HTTP call: (status, body or Null).
pub(crate) async fn call(
    s: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = s.http.request(m, s.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (st, v)
}

/// A call that must fail with `status` and `code`.
pub(crate) async fn refused(
    s: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
    status: u16,
    code: &str,
) {
    let (st, v) = call(s, method, path, token, body).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (status, Some(code)),
        "{method} {path}: {v}"
    );
}

/// A call answered 204.
pub(crate) async fn done(s: &Server, method: &str, path: &str, token: &str, body: Option<Value>) {
    let (st, v) = call(s, method, path, token, body).await;
    assert_eq!(st, 204, "{method} {path}: {v}");
}

fn send(group: &str, cmid: &str) -> Value {
    json!({"type":"send","group":group,"client_msg_id":cmid,"kind":"text","content":cmid})
}

/// The `system` events of a group's history, as `(event, user)`.
async fn events(s: &Server, token: &str, gid: &str) -> Vec<(String, String)> {
    let h = s
        .as_user(token)
        .messages(&format!("group:{gid}"), None, Some(0), Some(500))
        .await
        .unwrap();
    h.msgs
        .iter()
        .filter(|m| m.kind == "system")
        .map(|m| {
            let c: Value = serde_json::from_str(m.content.as_ref().unwrap().get()).unwrap();
            (
                c["event"].as_str().unwrap().to_owned(),
                c["user"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The next `system` message pushed with `event`, skipping others.
async fn next_event(c: &mut Client, event: &str) -> Value {
    loop {
        let m = c.next_msg().await;
        if m["content"]["event"] == event {
            return m;
        }
    }
}

fn ev(e: &str, u: &str) -> (String, String) {
    (e.to_owned(), u.to_owned())
}

fn in_an_hour() -> i64 {
    tern_core::now_ms() + 3_600_000
}

#[tokio::test]
async fn settings_admins_and_mutes() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    s.user("dan").await;
    let te = s.user("erin").await;
    let g = s.new_group(&ta, "team", &["bob", "carol", "dan"]).await;
    let path = format!("/v1/groups/{g}");
    let mut carol = s.connect(&tc, "c").await;
    let mut bob = s.connect(&tb, "b").await;

    // PATCH: owner or admins; the answer is the group view.
    refused(
        &s,
        "PATCH",
        &path,
        &tc,
        Some(json!({"name":"mine"})),
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "PATCH",
        &path,
        &te,
        Some(json!({"name":"x"})),
        403,
        "not_member",
    )
    .await;
    refused(
        &s,
        "PATCH",
        "/v1/groups/nosuch",
        &ta,
        Some(json!({"name":"x"})),
        404,
        "no_such_group",
    )
    .await;
    refused(
        &s,
        "PATCH",
        &path,
        &ta,
        Some(json!({"name":""})),
        400,
        "invalid",
    )
    .await;
    refused(
        &s,
        "PATCH",
        &path,
        &ta,
        Some(json!({"muted_all":"yes"})),
        400,
        "invalid",
    )
    .await;
    let long = "x".repeat(20_000);
    refused(
        &s,
        "PATCH",
        &path,
        &ta,
        Some(json!({"announcement":long})),
        413,
        "content_too_large",
    )
    .await;
    let (st, v) = call(
        &s,
        "PATCH",
        &path,
        &ta,
        Some(json!({"name":"renamed","announcement":"read the rules"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            &v["name"],
            &v["announcement"],
            &v["muted_all"],
            &v["dissolved"],
            &v["admins"]
        ),
        (
            &json!("renamed"),
            &json!("read the rules"),
            &json!(false),
            &json!(false),
            &json!([])
        )
    );
    // Members are pushed each event, in order.
    let m = carol.next_msg().await;
    assert_eq!(
        (
            m["content"]["event"].as_str(),
            m["content"]["name"].as_str()
        ),
        (Some("group_renamed"), Some("renamed"))
    );
    let m = carol.next_msg().await;
    assert_eq!(m["content"]["event"], "announcement_changed");
    assert_eq!(m["content"]["announcement"], "read the rules");

    // Admins: the owner only.
    refused(
        &s,
        "PUT",
        &format!("{path}/admins/bob"),
        &tc,
        None,
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "PUT",
        &format!("{path}/admins/erin"),
        &ta,
        None,
        404,
        "no_such_user",
    )
    .await;
    refused(
        &s,
        "PUT",
        &format!("{path}/admins/alice"),
        &ta,
        None,
        403,
        "forbidden",
    )
    .await;
    done(&s, "PUT", &format!("{path}/admins/bob"), &ta, None).await;
    done(&s, "PUT", &format!("{path}/admins/bob"), &ta, None).await; // no second event
    done(&s, "PUT", &format!("{path}/admins/dan"), &ta, None).await;
    let view = s.as_user(&tc).group(&g).await.unwrap();
    assert_eq!(view.admins, ["bob", "dan"]);
    // Admins cannot demote, mute or remove the owner or another admin.
    refused(
        &s,
        "DELETE",
        &format!("{path}/admins/dan"),
        &tb,
        None,
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "PUT",
        &format!("{path}/mutes/dan"),
        &tb,
        Some(json!({"until":in_an_hour()})),
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "PUT",
        &format!("{path}/mutes/alice"),
        &tb,
        Some(json!({"until":in_an_hour()})),
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "DELETE",
        &format!("{path}/members/dan"),
        &tb,
        None,
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "DELETE",
        &format!("{path}/members/alice"),
        &tb,
        None,
        403,
        "forbidden",
    )
    .await;
    done(&s, "DELETE", &format!("{path}/admins/dan"), &ta, None).await;

    // Mutes: a muted member's sends get `muted` until lifted.
    refused(
        &s,
        "PUT",
        &format!("{path}/mutes/carol"),
        &tc,
        Some(json!({"until":in_an_hour()})),
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "PUT",
        &format!("{path}/mutes/carol"),
        &tb,
        Some(json!({"until":1})),
        400,
        "invalid",
    )
    .await;
    refused(
        &s,
        "PUT",
        &format!("{path}/mutes/carol"),
        &tb,
        Some(json!({})),
        400,
        "invalid",
    )
    .await;
    refused(
        &s,
        "PUT",
        &format!("{path}/mutes/erin"),
        &tb,
        Some(json!({"until":in_an_hour()})),
        404,
        "no_such_user",
    )
    .await;
    let until = in_an_hour();
    done(
        &s,
        "PUT",
        &format!("{path}/mutes/carol"),
        &tb,
        Some(json!({"until":until})),
    )
    .await;
    let m = next_event(&mut carol, "member_muted").await;
    assert_eq!(
        (
            m["content"]["user"].as_str(),
            m["content"]["until"].as_i64()
        ),
        (Some("carol"), Some(until))
    );
    carol.err(send(&g, "c1"), "muted").await;
    // The group view names who is muted, until when.
    let (st, v) = call(&s, "GET", &path, &tc, None).await;
    assert_eq!((st, &v["mutes"]), (200, &json!({"carol": until})), "{v}");
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&tc),
            json!({"group":g,"client_msg_id":"c1h","kind":"text","content":"x"}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("muted")), "{v}");
    done(&s, "DELETE", &format!("{path}/mutes/carol"), &tb, None).await;
    let (_, v) = call(&s, "GET", &path, &tc, None).await;
    assert_eq!(v["mutes"], json!({}), "{v}");
    carol.send_group(&g, "c2", "back").await;

    // muted_all: only the owner and admins send.
    let (st, v) = call(&s, "PATCH", &path, &tb, Some(json!({"muted_all":true}))).await;
    assert_eq!((st, &v["muted_all"]), (200, &json!(true)), "{v}");
    carol.err(send(&g, "c3"), "muted").await;
    bob.send_group(&g, "b1", "admins may").await;
    let mut alice = s.connect(&ta, "a").await;
    alice.send_group(&g, "a1", "owner may").await;
    call(&s, "PATCH", &path, &ta, Some(json!({"muted_all":false}))).await;
    carol.send_group(&g, "c4", "open again").await;

    // Admins remove plain members.
    done(&s, "DELETE", &format!("{path}/members/carol"), &tb, None).await;

    assert_eq!(
        events(&s, &ta, &g).await,
        [
            ev("group_created", "alice"),
            ev("member_joined", "bob"),
            ev("member_joined", "carol"),
            ev("member_joined", "dan"),
            ev("group_renamed", "alice"),
            ev("announcement_changed", "alice"),
            ev("admin_added", "bob"),
            ev("admin_added", "dan"),
            ev("admin_removed", "dan"),
            ev("member_muted", "carol"),
            ev("member_unmuted", "carol"),
            ev("muted_all_changed", "bob"),
            ev("muted_all_changed", "alice"),
            ev("member_removed", "carol"),
        ]
    );
}

#[tokio::test]
async fn moderators_recall_at_any_age() {
    let s = Server::start_with(|c| c.delivery.recall_window_secs = 0).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let g = s.new_group(&ta, "team", &["bob", "carol"]).await;
    done(&s, "PUT", &format!("/v1/groups/{g}/admins/bob"), &ta, None).await;
    let mut alice = s.connect(&ta, "a").await;
    let mut bob = s.connect(&tb, "b").await;
    let mut carol = s.connect(&tc, "c").await;
    let conv = format!("group:{g}");
    let c1 = carol.send_group(&g, "c1", "spam").await["seq"].clone();
    let a1 = alice.send_group(&g, "a1", "owner's").await["seq"].clone();
    let b1 = bob.send_group(&g, "b1", "admin's").await["seq"].clone();
    // Past the (zero) window: the sender itself may not.
    tokio::time::sleep(Duration::from_millis(20)).await;
    carol
        .err(json!({"type":"recall","conv":conv,"seq":c1}), "forbidden")
        .await;
    // An admin recalls a plain member's message, and its own; not the owner's.
    bob.ok(json!({"type":"recall","conv":conv,"seq":c1})).await;
    let r = carol.next_of("recalled").await;
    assert_eq!((r["seq"].clone(), r["by"].as_str()), (c1, Some("bob")));
    bob.ok(json!({"type":"recall","conv":conv,"seq":b1})).await;
    bob.err(json!({"type":"recall","conv":conv,"seq":a1}), "forbidden")
        .await;
    // The owner recalls anyone's.
    alice
        .ok(json!({"type":"recall","conv":conv,"seq":a1}))
        .await;
    let h = s
        .as_user(&tc)
        .messages(&conv, None, Some(0), Some(50))
        .await
        .unwrap();
    let recalled: Vec<u64> = h
        .msgs
        .iter()
        .filter(|m| m.recalled)
        .map(|m| m.seq)
        .collect();
    assert_eq!(recalled.len(), 3, "{recalled:?}");
}

#[tokio::test]
async fn dissolving_keeps_history_and_refuses_changes() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    s.user("dan").await;
    let g = s.new_group(&ta, "team", &["bob", "carol"]).await;
    let path = format!("/v1/groups/{g}");
    done(&s, "PUT", &format!("{path}/admins/bob"), &ta, None).await;
    let mut bob = s.connect(&tb, "b").await;
    bob.send_group(&g, "b1", "before").await;

    refused(&s, "DELETE", &path, &tb, None, 403, "forbidden").await;
    refused(&s, "DELETE", &path, &tc, None, 403, "forbidden").await;
    done(&s, "DELETE", &path, &ta, None).await;
    let m = next_event(&mut bob, "group_dissolved").await;
    assert_eq!(m["from"], "alice");

    // Every send is `forbidden`; every change too.
    bob.err(send(&g, "b2"), "forbidden").await;
    let mut alice = s.connect(&ta, "a").await;
    alice.err(send(&g, "a1"), "forbidden").await;
    refused(&s, "DELETE", &path, &ta, None, 403, "forbidden").await;
    refused(
        &s,
        "PATCH",
        &path,
        &ta,
        Some(json!({"name":"again"})),
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "PUT",
        &format!("{path}/admins/carol"),
        &ta,
        None,
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "PUT",
        &format!("{path}/mutes/carol"),
        &tb,
        Some(json!({"until":in_an_hour()})),
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "DELETE",
        &format!("{path}/members/carol"),
        &ta,
        None,
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "DELETE",
        &format!("{path}/members/carol"),
        &tc,
        None,
        403,
        "forbidden",
    )
    .await;
    let (st, v) = s
        .post(
            &format!("{path}/members"),
            Some(&ta),
            json!({"users":["dan"]}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");

    // Still readable, still listed, marked dissolved.
    let view = s.as_user(&tc).group(&g).await.unwrap();
    assert!(view.dissolved);
    assert_eq!(view.members, ["alice", "bob", "carol"]);
    let e = events(&s, &tc, &g).await;
    assert_eq!(e.last(), Some(&ev("group_dissolved", "alice")));
    let sync = s.as_user(&tc).conversations().await.unwrap();
    assert!(sync.convs.iter().any(|c| c.conv == format!("group:{g}")));
}
