//! Edit, reply, mention, react (PROTOCOL.md 5.1 and 5.6b): each request,
//! push and error code over real HTTP and WebSocket sockets.

use crate::common::*;
use crate::moderation::{call, done, refused};
use serde_json::{json, Value};
use std::time::Duration;

fn conv_of(gid: &str) -> String {
    format!("group:{gid}")
}

fn edit(conv: &str, seq: u64, content: Value) -> Value {
    json!({"type":"edit","conv":conv,"seq":seq,"content":content})
}

fn react(conv: &str, seq: u64, emoji: &str, on: bool) -> Value {
    json!({"type":"react","conv":conv,"seq":seq,"emoji":emoji,"on":on})
}

/// The messages of a history page.
async fn history(c: &mut Client, conv: &str) -> Vec<Value> {
    let r = c
        .ok(json!({"type":"history","conv":conv,"after_seq":0,"limit":500}))
        .await;
    r["msgs"].as_array().unwrap().clone()
}

/// The caller's sync entry of `conv`.
async fn entry(c: &mut Client, conv: &str) -> Value {
    let r = c.ok(json!({"type":"sync"})).await;
    r["convs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["conv"] == conv)
        .cloned()
        .unwrap_or_else(|| panic!("no {conv} in {r}"))
}

#[tokio::test]
async fn edit_rules_push_and_history() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let conv = dm("alice", "bob");
    let mut a = s.connect(&ta, "a").await;
    let mut a2 = s.connect(&ta, "a2").await;
    let mut b = s.connect(&tb, "b").await;
    let mut c = s.connect(&tc, "c").await;
    a.send_text("bob", "m1", "helo").await;
    let ok = a.send_text("bob", "m2", "second").await;
    assert_eq!(ok["seq"], 2);

    // The sender edits; everyone's devices (the editing one too) hear it.
    let r = a.ok(edit(&conv, 1, json!("hello"))).await;
    let at = r["edited_at"].as_i64().unwrap();
    assert_eq!(
        (r["conv"].as_str(), r["seq"].as_u64()),
        (Some(&*conv), Some(1))
    );
    for dev in [&mut a, &mut a2, &mut b] {
        let p = dev.next_of("edited").await;
        assert_eq!(p["conv"], conv);
        assert_eq!(p["seq"], 1);
        assert_eq!(p["by"], "alice");
        assert_eq!(p["content"], "hello");
        assert_eq!(p["edited_at"], at);
        assert!(p["msg_id"].is_string(), "{p}");
    }
    // History and sync's last show the newest content with edited_at.
    let h = history(&mut b, &conv).await;
    assert_eq!(h[0]["content"], "hello");
    assert_eq!(h[0]["edited_at"], at);
    assert!(h[1].get("edited_at").is_none(), "{}", h[1]);
    a.ok(edit(&conv, 2, json!("second, edited"))).await;
    let e = entry(&mut b, &conv).await;
    assert_eq!(e["last"]["content"], "second, edited");
    assert!(e["last"]["edited_at"].is_i64(), "{e}");
    assert_eq!(e["unread"], 2, "an edit changes no unread count");

    // Only the sender; the kind stays; the content limit applies.
    b.err(edit(&conv, 1, json!("mine now")), "forbidden").await;
    a.err(edit(&conv, 1, json!({"not":"text"})), "invalid")
        .await;
    a.err(edit(&conv, 9, json!("x")), "invalid").await;
    a.err(
        edit(&conv, 1, json!("x".repeat(16_400))),
        "content_too_large",
    )
    .await;
    c.err(edit(&conv, 1, json!("x")), "not_member").await;
    // A missing field names itself.
    let r = a
        .err(json!({"type":"edit","conv":conv,"seq":1}), "invalid")
        .await;
    assert!(r["message"].as_str().unwrap().contains("content"), "{r}");
    // A recalled message is never edited.
    a.ok(json!({"type":"recall","conv":conv,"seq":2})).await;
    a.err(edit(&conv, 2, json!("back")), "forbidden").await;

    // HTTP PATCH answers as the frame does.
    let path = format!("/v1/conversations/{conv}/messages/1");
    let (st, v) = call(&s, "PATCH", &path, &ta, Some(json!({"content":"via http"}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["seq"], 1);
    assert!(v["edited_at"].as_i64().unwrap() > at, "{v}");
    while b.next_of("edited").await["content"] != "via http" {}
    refused(
        &s,
        "PATCH",
        &path,
        &tb,
        Some(json!({"content":"x"})),
        403,
        "forbidden",
    )
    .await;
    refused(
        &s,
        "PATCH",
        &format!("/v1/conversations/{conv}/messages/77"),
        &ta,
        Some(json!({"content":"x"})),
        400,
        "invalid",
    )
    .await;
}

#[tokio::test]
async fn edit_window_is_configured() {
    let s = Server::start_with(|c| c.limits.edit_window_secs = 1).await;
    let ta = s.user("alice").await;
    s.user("bob").await;
    let conv = dm("alice", "bob");
    let mut a = s.connect(&ta, "a").await;
    a.send_text("bob", "m1", "x").await;
    a.ok(edit(&conv, 1, json!("y"))).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    a.err(edit(&conv, 1, json!("z")), "forbidden").await;
}

#[tokio::test]
async fn replies_are_stored_and_checked() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    s.user("carol").await;
    let g = s.new_group(&ta, "team", &["bob"]).await;
    let conv = conv_of(&g);
    let mut a = s.connect(&ta, "a").await;
    let mut b = s.connect(&tb, "b").await;
    a.send_group(&g, "q", "question").await; // seq 3 (after the joins)
    let top = a
        .ok(json!({"type":"send","group":g,"client_msg_id":"r","kind":"text","content":"answer","reply_to":3}))
        .await;
    let pushed = loop {
        let m = b.next_msg().await;
        if m["seq"] == top["seq"] {
            break m;
        }
    };
    assert_eq!(pushed["reply_to"], 3);
    let h = history(&mut b, &conv).await;
    assert_eq!(h.last().unwrap()["reply_to"], 3);
    assert_eq!(entry(&mut b, &conv).await["last"]["reply_to"], 3);
    // A seq the conversation does not have, or 0.
    for bad in [0, 99] {
        a.err(
            json!({"type":"send","group":g,"client_msg_id":format!("x{bad}"),"kind":"text","content":"x","reply_to":bad}),
            "invalid",
        )
        .await;
    }
    // 1:1 replies, over HTTP too; a seq of another conversation is refused.
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&ta),
            json!({"to":"carol","client_msg_id":"d1","kind":"text","content":"hi"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&ta),
            json!({"to":"carol","client_msg_id":"d2","kind":"text","content":"re","reply_to":1}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&ta),
            json!({"to":"carol","client_msg_id":"d3","kind":"text","content":"re","reply_to":3}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")), "{v}");
    let h = history(&mut a, &dm("alice", "carol")).await;
    assert_eq!(h[1]["reply_to"], 1);
    assert!(h[0].get("reply_to").is_none());
}

#[tokio::test]
async fn mentions_are_checked_and_flag_sync_until_read() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    s.user("dan").await;
    let g = s.new_group(&ta, "team", &["bob", "carol"]).await;
    let conv = conv_of(&g);
    let mut a = s.connect(&ta, "a").await;
    let mut b = s.connect(&tb, "b").await;
    let mut c = s.connect(&tc, "c").await;
    let mention = |cmid: &str, who: Value| json!({"type":"send","group":g,"client_msg_id":cmid,"kind":"text","content":"hey","mentions":who});
    // Members only; @all only for the owner and admins; groups only.
    b.err(mention("x1", json!(["dan"])), "invalid").await;
    b.err(mention("x2", json!(["@all"])), "forbidden").await;
    a.err(
        json!({"type":"send","to":"bob","client_msg_id":"x3","kind":"text","content":"x","mentions":["bob"]}),
        "invalid",
    )
    .await;
    let ok = b.ok(mention("m1", json!(["carol"]))).await;
    let seq = ok["seq"].as_u64().unwrap();
    let m = c.next_msg().await;
    let m = if m["seq"] == seq {
        m
    } else {
        c.next_msg().await
    };
    assert_eq!(m["mentions"], json!(["carol"]));
    assert_eq!(entry(&mut c, &conv).await["mentioned"], true);
    assert!(entry(&mut a, &conv).await.get("mentioned").is_none());
    assert!(
        entry(&mut b, &conv).await.get("mentioned").is_none(),
        "the sender is not mentioned by its own message"
    );
    // A later message does not clear it; reading past the mention does.
    a.send_group(&g, "m2", "later").await;
    c.ok(json!({"type":"read","conv":conv,"seq":seq - 1})).await;
    assert_eq!(entry(&mut c, &conv).await["mentioned"], true);
    c.ok(json!({"type":"read","conv":conv,"seq":seq})).await;
    assert!(entry(&mut c, &conv).await.get("mentioned").is_none());
    // @all by the owner mentions every member but the sender.
    let ok = a.ok(mention("m3", json!(["@all"]))).await;
    assert_eq!(entry(&mut b, &conv).await["mentioned"], true);
    assert_eq!(entry(&mut c, &conv).await["mentioned"], true);
    assert!(entry(&mut a, &conv).await.get("mentioned").is_none());
    let h = history(&mut b, &conv).await;
    assert_eq!(h.last().unwrap()["mentions"], json!(["@all"]));
    b.ok(json!({"type":"read","conv":conv,"seq":ok["seq"]}))
        .await;
    assert!(entry(&mut b, &conv).await.get("mentioned").is_none());
    // An admin may mention @all too.
    done(&s, "PUT", &format!("/v1/groups/{g}/admins/bob"), &ta, None).await;
    b.ok(mention("m4", json!(["@all"]))).await;
}

/// A mentioned member in the background of a large (read-diffused) group
/// gets the full message, not a `notify`.
#[tokio::test]
async fn mentioned_members_get_the_message_in_the_background() {
    let s = Server::start_with(|c| c.groups.write_limit = 2).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let g = s.new_group(&ta, "big", &["bob", "carol"]).await;
    let conv = conv_of(&g);
    let mut a = s.connect(&ta, "a").await;
    let mut b = s.connect(&tb, "b").await;
    let mut c = s.connect(&tc, "c").await;
    for dev in [&mut b, &mut c] {
        dev.ok(json!({"type":"state","active":false})).await;
    }
    let ok = a
        .ok(json!({"type":"send","group":g,"client_msg_id":"m1","kind":"text","content":"bob!","mentions":["bob"]}))
        .await;
    let f = b.next().await;
    assert_eq!(
        f["type"], "msg",
        "the mentioned member gets the message: {f}"
    );
    assert_eq!(f["msg"]["seq"], ok["seq"]);
    let f = c.next().await;
    assert_eq!(f["type"], "notify", "the others get a notice: {f}");
    assert_eq!(f["conv"], conv);
    // @all: everyone gets the message.
    let ok = a
        .ok(json!({"type":"send","group":g,"client_msg_id":"m2","kind":"text","content":"all","mentions":["@all"]}))
        .await;
    for dev in [&mut b, &mut c] {
        let f = dev.next().await;
        assert_eq!(f["type"], "msg", "{f}");
        assert_eq!(f["msg"]["seq"], ok["seq"]);
    }
    // Without a mention, notices again.
    a.send_group(&g, "m3", "plain").await;
    for dev in [&mut b, &mut c] {
        assert_eq!(dev.next().await["type"], "notify");
    }
}

#[tokio::test]
async fn reactions_push_list_and_bound() {
    let s = Server::start_with(|c| {
        c.limits.reaction_emoji_max = 3;
        c.limits.reaction_users_listed = 2;
    })
    .await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let te = s.user("erin").await;
    let g = s.new_group(&ta, "team", &["bob", "carol"]).await;
    let conv = conv_of(&g);
    let mut a = s.connect(&ta, "a").await;
    let mut b = s.connect(&tb, "b").await;
    let mut c = s.connect(&tc, "c").await;
    let mut e = s.connect(&te, "e").await;
    let ok = a.send_group(&g, "m1", "hi").await;
    let seq = ok["seq"].as_u64().unwrap();
    let before = entry(&mut b, &conv).await;

    b.ok(react(&conv, seq, "👍", true)).await;
    for dev in [&mut a, &mut b, &mut c] {
        let p = dev.next_of("reaction").await;
        assert_eq!(
            p,
            json!({"type":"reaction","conv":conv,"seq":seq,"user":"bob","emoji":"👍","on":true})
        );
    }
    // Listed in the order of reacting (times apart by a few ms).
    tokio::time::sleep(Duration::from_millis(5)).await;
    c.ok(react(&conv, seq, "👍", true)).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    a.ok(react(&conv, seq, "👍", true)).await;
    a.ok(react(&conv, seq, "🎉", true)).await;
    // Reacting twice is fine and changes nothing.
    a.ok(react(&conv, seq, "🎉", true)).await;
    // History: each emoji's count and at most reaction_users_listed users.
    let h = history(&mut c, &conv).await;
    let m = h.iter().find(|m| m["seq"] == seq).unwrap();
    assert_eq!(m["reactions"]["👍"]["count"], 3);
    assert_eq!(m["reactions"]["👍"]["users"], json!(["bob", "carol"]));
    assert_eq!(m["reactions"]["🎉"], json!({"count":1,"users":["alice"]}));
    // Never changes seq or unread.
    let after = entry(&mut b, &conv).await;
    assert_eq!(
        (after["max_seq"].clone(), after["unread"].clone()),
        (before["max_seq"].clone(), before["unread"].clone())
    );
    // Bounds: the emoji's size, distinct emojis per message.
    b.err(react(&conv, seq, "", true), "invalid").await;
    b.err(react(&conv, seq, &"x".repeat(33), true), "invalid")
        .await;
    b.ok(react(&conv, seq, &"x".repeat(32), true)).await;
    b.err(react(&conv, seq, "❤️", true), "invalid").await;
    // A user joining an emoji in use is fine at the bound.
    b.ok(react(&conv, seq, "🎉", true)).await;
    // Unknown seq; strangers.
    b.err(react(&conv, 999, "👍", true), "invalid").await;
    e.err(react(&conv, seq, "👍", true), "not_member").await;
    // Taking back: pushed with on:false; one that is not there: not_found.
    b.ok(react(&conv, seq, "👍", false)).await;
    let p = loop {
        let p = a.next_of("reaction").await;
        if p["on"] == false {
            break p;
        }
    };
    assert_eq!(
        (p["user"].as_str(), p["on"].as_bool()),
        (Some("bob"), Some(false))
    );
    b.err(react(&conv, seq, "👍", false), "not_found").await;
    let h = history(&mut a, &conv).await;
    let m = h.iter().find(|m| m["seq"] == seq).unwrap();
    assert_eq!(m["reactions"]["👍"]["count"], 2);
    assert_eq!(m["reactions"]["👍"]["users"], json!(["carol", "alice"]));

    // HTTP: PUT and DELETE answer 204; a missing reaction is 404.
    let path = format!(
        "/v1/conversations/{conv}/messages/{seq}/reactions/{}",
        tern_proto::request::percent("🔥")
    );
    refused(&s, "PUT", &path, &tc, None, 400, "invalid").await; // a 4th emoji
    b.ok(react(&conv, seq, &"x".repeat(32), false)).await;
    done(&s, "PUT", &path, &tc, None).await;
    while b.next_of("reaction").await["emoji"] != "🔥" {}
    done(&s, "DELETE", &path, &tc, None).await;
    refused(&s, "DELETE", &path, &tc, None, 404, "not_found").await;
    refused(&s, "PUT", &path, &te, None, 403, "not_member").await;
    let (st, v) = call(
        &s,
        "PUT",
        &format!("/v1/conversations/{conv}/messages/999/reactions/ok"),
        &tc,
        None,
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")), "{v}");
}

/// 1:1 reactions reach both sides; a recalled message takes none.
#[tokio::test]
async fn reactions_in_direct_messages() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let conv = dm("alice", "bob");
    let mut a = s.connect(&ta, "a").await;
    let mut b = s.connect(&tb, "b").await;
    a.send_text("bob", "m1", "x").await;
    a.send_text("bob", "m2", "y").await;
    b.ok(react(&conv, 1, "👍", true)).await;
    assert_eq!(a.next_of("reaction").await["user"], "bob");
    a.ok(json!({"type":"recall","conv":conv,"seq":2})).await;
    b.err(react(&conv, 2, "👍", true), "forbidden").await;
    let r = b
        .err(
            json!({"type":"react","conv":conv,"seq":1,"emoji":"👍"}),
            "invalid",
        )
        .await;
    assert!(r["message"].as_str().unwrap().contains("on"), "{r}");
}

/// Nothing changes in a dissolved group; a removed member neither edits
/// nor reacts.
#[tokio::test]
async fn dissolved_groups_and_removed_members() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    s.user("carol").await;
    let g = s.new_group(&ta, "team", &["bob", "carol"]).await;
    let conv = conv_of(&g);
    let mut a = s.connect(&ta, "a").await;
    let mut b = s.connect(&tb, "b").await;
    let ok = b.send_group(&g, "m1", "x").await;
    let seq = ok["seq"].as_u64().unwrap();
    s.remove_member(&ta, &g, "bob").await;
    b.err(edit(&conv, seq, json!("y")), "not_member").await;
    b.err(react(&conv, seq, "👍", true), "not_member").await;
    let ok = a.send_group(&g, "m2", "x").await;
    let seq = ok["seq"].as_u64().unwrap();
    done(&s, "DELETE", &format!("/v1/groups/{g}"), &ta, None).await;
    a.err(edit(&conv, seq, json!("y")), "forbidden").await;
    a.err(react(&conv, seq, "👍", true), "forbidden").await;
}
