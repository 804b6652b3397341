//! Error codes of 5.1-5.4 that the per-feature files leave to this one:
//! the token is checked before anything else (401 before 400, 403, 404
//! and 413) on every call, whether it is missing, malformed, revoked alone
//! or revoked with every session of its user; and each code of an edit
//! and a reaction over HTTP.

use crate::common::*;
use crate::moderation::{call, done, refused};
use serde_json::{json, Value};

/// Every HTTP call of 5.1-5.4 with an input that is wrong in some other
/// way too (bad JSON, unknown ids, a body too large): only the token
/// counts while it is bad.
fn calls(conv: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let big = json!({"content": "x".repeat(20_000)});
    vec![
        // 5.1
        (
            "PATCH",
            format!("/v1/conversations/{conv}/messages/1"),
            Some(big),
        ),
        (
            "PATCH",
            "/v1/conversations/nonsense/messages/x".into(),
            Some(json!({})),
        ),
        (
            "PUT",
            format!("/v1/conversations/{conv}/messages/99/reactions/%F0%9F%91%8D"),
            None,
        ),
        (
            "DELETE",
            format!("/v1/conversations/{conv}/messages/1/reactions/none"),
            None,
        ),
        // 5.2
        ("GET", "/v1/search?q=&limit=0".into(), None),
        // 5.3
        ("PATCH", "/v1/users/me".into(), Some(json!({"nick": 1}))),
        ("GET", "/v1/users/nobody".into(), None),
        (
            "PUT",
            "/v1/conversations/group:none/settings".into(),
            Some(json!({"muted_until": -1})),
        ),
        ("GET", "/v1/sessions".into(), None),
        ("DELETE", "/v1/sessions/nope".into(), None),
        ("DELETE", "/v1/sessions?all=maybe".into(), None),
        // 5.4 and blocks
        (
            "PATCH",
            "/v1/groups/none".into(),
            Some(json!({"muted_all": "yes"})),
        ),
        ("DELETE", "/v1/groups/none".into(), None),
        ("PUT", "/v1/groups/none/admins/nobody".into(), None),
        ("DELETE", "/v1/groups/none/admins/nobody".into(), None),
        (
            "PUT",
            "/v1/groups/none/mutes/nobody".into(),
            Some(json!({"until": "soon"})),
        ),
        ("DELETE", "/v1/groups/none/mutes/nobody".into(), None),
        ("PUT", "/v1/blocks/nobody".into(), None),
        ("DELETE", "/v1/blocks/nobody".into(), None),
        ("GET", "/v1/blocks".into(), None),
    ]
}

/// Each call of [`calls`] answers 401 `unauthenticated` with `token`
/// (`None`: no `Authorization` header).
async fn all_unauthenticated(s: &Server, token: Option<&str>, conv: &str) {
    for (method, path, body) in calls(conv) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = s.http.request(m, s.url(&path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let st = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (st, v["code"].as_str()),
            (401, Some("unauthenticated")),
            "{method} {path} with {token:?}: {v}"
        );
    }
}

#[tokio::test]
async fn a_bad_token_is_refused_before_any_other_check() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let conv = dm("alice", "bob");
    let mut a = s.connect(&ta, "a").await;
    a.send_text("bob", "m1", "hi").await;

    all_unauthenticated(&s, None, &conv).await;
    all_unauthenticated(&s, Some("not-a-token"), &conv).await;
    // Well formed, but a character of its signature altered (not the
    // last: its low bits are padding).
    let mut forged: Vec<char> = ta.chars().collect();
    let i = forged.len() - 5;
    forged[i] = if forged[i] == 'A' { 'Q' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    all_unauthenticated(&s, Some(&forged), &conv).await;

    // Revoked alone (DELETE /v1/sessions).
    let t2 = s.login("alice").await;
    done(&s, "DELETE", "/v1/sessions", &t2, None).await;
    all_unauthenticated(&s, Some(&t2), &conv).await;

    // Revoked with every session of its user: every older token, on every
    // call and at `auth`; bob's token and a new login still work.
    let t3 = s.login("alice").await;
    done(&s, "DELETE", "/v1/sessions?all=true", &t3, None).await;
    assert_eq!(a.closed_with().await, 4001);
    for t in [&ta, &t3] {
        all_unauthenticated(&s, Some(t), &conv).await;
        let mut c = Client::open(&s.ws_url()).await;
        c.err(json!({"type":"auth","token":t}), "unauthenticated")
            .await;
        assert_eq!(c.closed_with().await, 4001);
    }
    let (st, _) = call(&s, "GET", "/v1/blocks", &tb, None).await;
    assert_eq!(st, 200);
    let fresh = s.login("alice").await;
    let (st, v) = call(&s, "GET", "/v1/sessions", &fresh, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1, "{v}");
}

#[tokio::test]
async fn edits_and_reactions_over_http_answer_each_code() {
    let s = Server::start_with(|c| c.limits.reaction_emoji_max = 2).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let conv = dm("alice", "bob");
    let mut a = s.connect(&ta, "a").await;
    a.send_text("bob", "m1", "one").await;
    let msg = format!("/v1/conversations/{conv}/messages/1");
    let edit = |c: &str| Some(json!({"content": c}));

    // 5.1 edit: each code, then the one that works.
    let big = Some(json!({"content": "x".repeat(16_385)}));
    refused(&s, "PATCH", &msg, &ta, big, 413, "content_too_large").await;
    refused(&s, "PATCH", &msg, &ta, Some(json!({})), 400, "invalid").await;
    refused(&s, "PATCH", &msg, &ta, Some(json!([1])), 400, "invalid").await;
    let seq_path = format!("/v1/conversations/{conv}/messages/x");
    refused(&s, "PATCH", &seq_path, &ta, edit("y"), 400, "invalid").await;
    let bad_conv = "/v1/conversations/dm:bob:alice/messages/1";
    refused(&s, "PATCH", bad_conv, &ta, edit("y"), 400, "invalid").await;
    refused(&s, "PATCH", &msg, &tb, edit("y"), 403, "forbidden").await;
    refused(&s, "PATCH", &msg, &tc, edit("y"), 403, "not_member").await;
    let nogroup = "/v1/conversations/group:nogroup/messages/1";
    refused(&s, "PATCH", nogroup, &ta, edit("y"), 404, "no_such_group").await;
    let (st, v) = call(&s, "PATCH", &msg, &ta, edit("one!")).await;
    assert_eq!((st, &v["seq"]), (200, &json!(1)), "{v}");

    // 5.1 reactions: each code, then the ones that work.
    let react = |e: &str| format!("{msg}/reactions/{e}");
    let long = "x".repeat(33);
    refused(&s, "PUT", &react(&long), &tb, None, 400, "invalid").await;
    let missing = format!("/v1/conversations/{conv}/messages/9/reactions/ok");
    refused(&s, "PUT", &missing, &tb, None, 400, "invalid").await;
    refused(&s, "PUT", &react("ok"), &tc, None, 403, "not_member").await;
    refused(&s, "DELETE", &react("ok"), &tb, None, 404, "not_found").await;
    done(&s, "PUT", &react("ok"), &tb, None).await;
    done(&s, "PUT", &react("yes"), &tb, None).await;
    // A third distinct emoji over the configured two.
    refused(&s, "PUT", &react("no"), &ta, None, 400, "invalid").await;
    done(&s, "PUT", &react("ok"), &ta, None).await;
    done(&s, "DELETE", &react("ok"), &tb, None).await;
    refused(&s, "DELETE", &react("ok"), &tb, None, 404, "not_found").await;
}
