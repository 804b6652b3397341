//! 5.6 scheduled messages: `send` with `at`, `GET /v1/scheduled`,
//! `DELETE /v1/scheduled/{id}`, over real HTTP and WebSocket sockets.

use crate::common::*;
use crate::moderation::{call, done, refused};
use serde_json::json;
use tern_client::OutMessage;

fn now() -> i64 {
    tern_core::now_ms()
}

/// A server whose scheduler looks for due messages often.
async fn server(tweak: impl FnOnce(&mut tern_server::config::Config)) -> Server {
    Server::start_with(|c| {
        c.scheduled.poll_ms = 50;
        tweak(c);
    })
    .await
}

#[tokio::test]
async fn scheduled_send_is_listed_then_delivered_as_a_normal_message_once() {
    let s = server(|_| {}).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut alice = s.connect(&ta, "a").await;
    let mut bob = s.connect(&tb, "b").await;
    let at = now() + 1500;
    let ok = alice
        .ok(json!({"type":"send","to":"bob","client_msg_id":"c1","kind":"text","content":"later","at":at}))
        .await;
    let id = ok["scheduled"].as_str().expect("a scheduled id").to_owned();
    assert_eq!(id.len(), 32, "{ok}");
    assert_eq!(ok["conv"], "dm:alice:bob");
    assert_eq!(ok["at"], json!(at));
    assert_eq!(ok["client_msg_id"], "c1");
    assert!(ok.get("seq").is_none(), "no seq before it is sent: {ok}");
    // The same client_msg_id scheduled twice: kept twice, sent once.
    let ok2 = alice
        .ok(json!({"type":"send","to":"bob","client_msg_id":"c1","kind":"text","content":"later","at":at + 10}))
        .await;
    // Without a client_msg_id: the server makes one up.
    let (st, ok3) = call(
        &s,
        "POST",
        "/v1/messages",
        &ta,
        Some(json!({"to":"bob","kind":"text","content":"third","at":at + 20})),
    )
    .await;
    assert_eq!(st, 200, "{ok3}");
    let made_up = ok3["client_msg_id"].as_str().unwrap().to_owned();
    assert!(!made_up.is_empty());

    let (st, list) = call(&s, "GET", "/v1/scheduled", &ta, None).await;
    assert_eq!(st, 200);
    let list = list["scheduled"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(
        list[0],
        json!({"id":id,"conv":"dm:alice:bob","at":at,"kind":"text","content":"later","client_msg_id":"c1"})
    );
    assert_eq!(list[1]["id"], ok2["scheduled"]);
    assert_eq!(list[2]["client_msg_id"], json!(made_up));
    // Bob has none of his own, and sees none of alice's.
    let (_, theirs) = call(&s, "GET", "/v1/scheduled", &tb, None).await;
    assert_eq!(theirs, json!({"scheduled":[]}));

    // At its time: a normal push with a seq, to bob and to alice's device.
    let m = bob.next_msg().await;
    assert_eq!(
        (m["seq"].as_u64(), m["from"].as_str(), m["content"].as_str()),
        (Some(1), Some("alice"), Some("later"))
    );
    assert_eq!(m["client_msg_id"], "c1");
    let mine = alice.next_msg().await;
    assert_eq!(mine["msg_id"], m["msg_id"]);
    // The copy with the same client_msg_id was a duplicate: the next
    // message is the third, seq 2.
    let m3 = bob.next_msg().await;
    assert_eq!(
        (m3["seq"].as_u64(), m3["content"].as_str()),
        (Some(2), Some("third"))
    );
    assert_eq!(m3["client_msg_id"], json!(made_up));
    // Sending c1 now is a retry of the sent one.
    let dup = alice.send_text("bob", "c1", "later").await;
    assert_eq!(dup["duplicate"], true);
    assert_eq!(dup["seq"], 1);
    let h = s
        .as_user(&tb)
        .messages("dm:alice:bob", None, None, None)
        .await
        .unwrap();
    assert_eq!(seqs(&serde_json::to_value(&h).unwrap()["msgs"]), vec![1, 2]);
    // Sent ones leave the list (each row goes once its send committed).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, list) = call(&s, "GET", "/v1/scheduled", &ta, None).await;
        if list["scheduled"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still listed: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cancelled_message_is_not_sent_and_ids_of_others_are_not_found() {
    let s = server(|_| {}).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mut bob = s.connect(&tb, "b").await;
    let api = s.as_user(&ta);
    let soon = now() + 800;
    let cancelled = api
        .schedule_http(OutMessage::text_to("bob", "never").at(soon))
        .await
        .unwrap();
    // The marker is due after the cancelled one: it comes first only if
    // the cancelled one was never sent.
    api.schedule_http(OutMessage::text_to("bob", "marker").at(soon + 400))
        .await
        .unwrap();
    let path = format!("/v1/scheduled/{}", cancelled.scheduled);
    // Another user's id: not found, and it stays.
    refused(&s, "DELETE", &path, &tb, None, 404, "not_found").await;
    refused(
        &s,
        "DELETE",
        "/v1/scheduled/nope",
        &ta,
        None,
        404,
        "not_found",
    )
    .await;
    api.cancel_scheduled(&cancelled.scheduled).await.unwrap();
    refused(&s, "DELETE", &path, &ta, None, 404, "not_found").await;
    let list = api.scheduled().await.unwrap();
    assert_eq!(list.scheduled.len(), 1);
    assert_eq!(list.scheduled[0].content.get(), r#""marker""#);

    let m = bob.next_msg().await;
    assert_eq!(
        (m["seq"].as_u64(), m["content"].as_str()),
        (Some(1), Some("marker"))
    );
    // Over the SDK's session too.
    let (session, _events) = s.session(&ta, "a2").await;
    let ok = session
        .schedule(OutMessage::text_to("bob", "by session").at(now() + 300))
        .await
        .unwrap();
    assert_eq!(ok.conv, "dm:alice:bob");
    let m = bob.next_msg().await;
    assert_eq!(
        (m["seq"].as_u64(), m["content"].as_str()),
        (Some(2), Some("by session"))
    );
    // Cancelling over plain HTTP answers 204.
    let later = api
        .schedule_http(OutMessage::text_to("bob", "x").at(now() + 60_000))
        .await
        .unwrap();
    done(
        &s,
        "DELETE",
        &format!("/v1/scheduled/{}", later.scheduled),
        &ta,
        None,
    )
    .await;
}

#[tokio::test]
async fn bad_times_and_bad_sends_are_refused_when_scheduled() {
    let s = server(|c| c.limits.content_bytes = 100).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let _tc = s.user("carol").await;
    let mut alice = s.connect(&ta, "a").await;
    let gid = s.new_group(&tb, "g", &["carol"]).await;
    let year = 365 * 24 * 3600 * 1000_i64;
    let send = |extra: serde_json::Value| {
        let mut v =
            json!({"type":"send","to":"bob","client_msg_id":"x","kind":"text","content":"hi"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    for at in [
        json!(now() - 1000),
        json!(0),
        json!(now() + year + 60_000),
        json!(-5),
    ] {
        alice.err(send(json!({"at": at})), "invalid").await;
    }
    alice.err(send(json!({"at": "soon"})), "invalid").await;
    let later = now() + 60_000;
    alice
        .err(send(json!({"at": later, "to": "nobody"})), "no_such_user")
        .await;
    alice
        .err(
            json!({"type":"send","group":gid,"client_msg_id":"x","kind":"text","content":"hi","at":later}),
            "not_member",
        )
        .await;
    alice
        .err(
            send(json!({"at": later, "content": "x".repeat(200)})),
            "content_too_large",
        )
        .await;
    alice
        .err(send(json!({"at": later, "kind": "system"})), "invalid")
        .await;
    alice
        .err(send(json!({"at": later, "reply_to": 5})), "invalid")
        .await;
    // Over HTTP the same.
    refused(
        &s,
        "POST",
        "/v1/messages",
        &ta,
        Some(json!({"to":"bob","kind":"text","content":"hi","at": now() - 1})),
        400,
        "invalid",
    )
    .await;
    // Nothing was kept.
    let (_, list) = call(&s, "GET", "/v1/scheduled", &ta, None).await;
    assert_eq!(list, json!({"scheduled":[]}));
    // A year ahead is fine.
    alice.ok(send(json!({"at": now() + year - 60_000}))).await;
}

#[tokio::test]
async fn pending_scheduled_messages_per_user_are_bounded() {
    let s = server(|c| c.scheduled.max_per_user = 2).await;
    let ta = s.user("alice").await;
    let _tb = s.user("bob").await;
    let api = s.as_user(&ta);
    let at = now() + 3_600_000;
    let first = api
        .schedule_http(OutMessage::text_to("bob", "1").at(at))
        .await
        .unwrap();
    api.schedule_http(OutMessage::text_to("bob", "2").at(at))
        .await
        .unwrap();
    refused(
        &s,
        "POST",
        "/v1/messages",
        &ta,
        Some(json!({"to":"bob","kind":"text","content":"3","at":at})),
        400,
        "invalid",
    )
    .await;
    api.cancel_scheduled(&first.scheduled).await.unwrap();
    api.schedule_http(OutMessage::text_to("bob", "3").at(at))
        .await
        .unwrap();
    assert_eq!(api.scheduled().await.unwrap().scheduled.len(), 2);
}

#[tokio::test]
async fn a_sender_who_left_the_group_gets_nothing_sent_at_its_time() {
    let s = server(|_| {}).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let gid = s.new_group(&tb, "g", &["alice", "carol"]).await;
    let mut carol = s.connect(&tc, "c").await;
    let soon = now() + 800;
    let (st, v) = call(
        &s,
        "POST",
        "/v1/messages",
        &ta,
        Some(json!({"group":gid,"kind":"text","content":"from alice","at":soon})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    s.remove_member(&tb, &gid, "alice").await;
    let (st, v) = call(
        &s,
        "POST",
        "/v1/messages",
        &tb,
        Some(json!({"group":gid,"kind":"text","content":"marker","at":soon + 400})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // The first text after the removal is bob's marker: alice's was
    // refused at its time (and dropped).
    loop {
        let m = carol.next_msg().await;
        if m["kind"] == "text" {
            assert_eq!(m["content"], "marker", "{m}");
            break;
        }
    }
    let (_, list) = call(&s, "GET", "/v1/scheduled", &ta, None).await;
    assert_eq!(list, json!({"scheduled":[]}));
}
