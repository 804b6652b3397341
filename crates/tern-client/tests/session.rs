//! The SDK against a real in-process server: delivery, acks, duplicates,
//! gaps, reconnects, retries, receipts, typing, presence, recall, groups
//! and rooms.

mod common;

use common::*;
use std::time::Duration;
use tern_client::wire::FriendState;
use tern_client::{ClientConfig, ConvId, Error, ErrorCode, Event, OutMessage};

#[tokio::test]
async fn send_receive_and_ack() {
    let s = Server::start().await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let (a, mut ae) = alice.connect("laptop").await.unwrap();
    let (_b, mut be) = bob.connect("phone").await.unwrap();
    assert!(matches!(
        ae.recv().await,
        Some(Event::Connected { resumed: false, .. })
    ));
    let sent = a.send(OutMessage::text_to("bob", "hello")).await.unwrap();
    assert_eq!((sent.conv.as_ref(), sent.seq), ("dm:alice:bob", 1));
    assert!(!sent.duplicate);
    let got = messages(&mut be, 1).await;
    assert_eq!(
        (got[0].msg_id, text(&got[0])),
        (sent.msg_id, "hello".into())
    );
    // The session acked it: alice gets the delivered receipt, and bob's
    // next device finds nothing queued.
    let delivered = expect(&mut ae, "a delivered receipt", |e| match e {
        Event::Receipt(r) => r.delivered_seq,
        _ => None,
    })
    .await;
    assert_eq!(delivered, 1);
    let (_b2, mut be2) = bob.connect("tablet").await.unwrap();
    let done = expect(&mut be2, "offline_done", |e| match e {
        Event::OfflineDone { count, .. } => Some(*count),
        _ => None,
    })
    .await;
    assert_eq!(done, 0);
}

#[tokio::test]
async fn a_redelivered_push_is_dropped() {
    // The server pushes again after 200 ms without an ack; this client
    // acks only after 1.5 s, so it sees the message at least twice.
    let s = Server::start_with(|c| c.delivery.ack_timeout_ms = 200).await;
    let alice = s.user("alice").await;
    let slow = ClientConfig {
        ack_delay: Duration::from_millis(1500),
        ..ClientConfig::default()
    };
    let bob = s.user_with("bob", slow).await;
    let (b, mut be) = bob.connect("phone").await.unwrap();
    expect(&mut be, "offline_done", |e| {
        matches!(e, Event::OfflineDone { .. }).then_some(())
    })
    .await;
    alice
        .send_http(OutMessage::text_to("bob", "once"))
        .await
        .unwrap();
    let got = messages(&mut be, 1).await;
    assert_eq!(text(&got[0]), "once");
    let more = drain(&mut be, Duration::from_secs(2)).await;
    assert!(
        !more.iter().any(|e| matches!(e, Event::Message(_))),
        "{more:?}"
    );
    assert!(b.stats().duplicates_dropped >= 1, "{:?}", b.stats());
}

#[tokio::test]
async fn a_gap_is_filled_from_history() {
    // Groups above the write limit are read diffusion: a device in the
    // background gets `notify` instead of the message, so its next push
    // skips a seq.
    let s = Server::start_with(|c| c.groups.write_limit = 2).await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    s.user("carol").await;
    let g = alice
        .create_group("team", &["bob", "carol"])
        .await
        .unwrap()
        .group
        .into_owned();
    let conv = ConvId::group(&g).to_string();
    let (b, mut be) = bob.connect("phone").await.unwrap();
    expect(&mut be, "offline_done", |e| {
        matches!(e, Event::OfflineDone { .. }).then_some(())
    })
    .await;
    let first = alice
        .send_http(OutMessage::text_to_group(&g, "one"))
        .await
        .unwrap();
    let m = expect(&mut be, "message one", |e| match e {
        Event::Message(m) if m.seq == first.seq => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(text(&m), "one");
    b.set_active(false).await.unwrap();
    alice
        .send_http(OutMessage::text_to_group(&g, "two"))
        .await
        .unwrap();
    let n = expect(&mut be, "notify", |e| match e {
        Event::Notify(n) => Some(n.max_seq),
        _ => None,
    })
    .await;
    assert_eq!(n, first.seq + 1);
    b.set_active(true).await.unwrap();
    alice
        .send_http(OutMessage::text_to_group(&g, "three"))
        .await
        .unwrap();
    let got = messages(&mut be, 2).await;
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [first.seq + 1, first.seq + 2]);
    assert_eq!(got.iter().map(text).collect::<Vec<_>>(), ["two", "three"]);
    assert!(got.iter().all(|m| m.conv == conv));
    let st = b.stats();
    assert!(st.gap_fills >= 1 && st.filled_messages >= 1, "{st:?}");
}

#[tokio::test]
async fn reconnects_after_a_restart_and_gets_what_was_sent_meanwhile() {
    let mut s = Server::start().await;
    let alice = s.user("alice").await;
    let fast = ClientConfig {
        reconnect_base: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let bob = s.user_with("bob", fast).await;
    let (b, mut be) = bob.connect("phone").await.unwrap();
    alice
        .send_http(OutMessage::text_to("bob", "before"))
        .await
        .unwrap();
    assert_eq!(text(&messages(&mut be, 1).await[0]), "before");

    s.stop().await;
    let code = expect(&mut be, "disconnect", |e| match e {
        Event::Disconnected {
            code, reconnecting, ..
        } => Some((*code, *reconnecting)),
        _ => None,
    })
    .await;
    assert_eq!(code, (Some(1001), true));
    s.restart().await;
    // Sent while bob's session is still away (or just back).
    for t in ["m1", "m2", "m3"] {
        alice
            .send_http(OutMessage::text_to("bob", t))
            .await
            .unwrap();
    }
    expect(&mut be, "reconnect", |e| {
        matches!(e, Event::Connected { resumed: true, .. }).then_some(())
    })
    .await;
    let got = messages(&mut be, 3).await;
    assert_eq!(got.iter().map(text).collect::<Vec<_>>(), ["m1", "m2", "m3"]);
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3, 4]);
    let more = drain(&mut be, Duration::from_millis(800)).await;
    assert!(
        !more.iter().any(|e| matches!(e, Event::Message(_))),
        "{more:?}"
    );
    assert!(b.stats().reconnects >= 1);
}

#[tokio::test]
async fn a_send_across_a_reconnect_is_stored_once() {
    let mut s = Server::start().await;
    let fast = ClientConfig {
        reconnect_base: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(300),
        retry_base: Duration::from_millis(50),
        send_attempts: 40,
        ..ClientConfig::default()
    };
    let alice = s.user_with("alice", fast).await;
    let bob = s.user("bob").await;
    let (a, mut ae) = alice.connect("laptop").await.unwrap();
    s.stop().await;
    expect(&mut ae, "disconnect", |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    let msg = OutMessage::text_to("bob", "through the outage").with_client_msg_id("outage-1");
    let sending = tokio::spawn({
        let a = a.clone();
        let msg = msg.clone();
        async move { a.send(msg).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.restart().await;
    let sent = tokio::time::timeout(WAIT, sending)
        .await
        .expect("send completes")
        .unwrap()
        .unwrap();
    // The same message again: the server knows it.
    let again = a.send(msg).await.unwrap();
    assert!(again.duplicate);
    assert_eq!((again.msg_id, again.seq), (sent.msg_id, sent.seq));
    let h = bob
        .messages("dm:alice:bob", None, None, None)
        .await
        .unwrap();
    assert_eq!(h.msgs.len(), 1);
    assert_eq!(h.msgs[0].client_msg_id.as_deref(), Some("outage-1"));
}

#[tokio::test]
async fn rate_limited_sends_are_retried() {
    let s = Server::start_with(|c| {
        c.limits.frame_rate = 5;
        c.limits.frame_burst = 5;
        c.limits.rate_close_secs = 60;
    })
    .await;
    let fast = ClientConfig {
        retry_base: Duration::from_millis(100),
        send_attempts: 50,
        ..ClientConfig::default()
    };
    let alice = s.user_with("alice", fast).await;
    let bob = s.user("bob").await;
    let (a, _ae) = alice.connect("laptop").await.unwrap();
    let sends = (0..20).map(|i| {
        let a = a.clone();
        tokio::spawn(async move { a.send(OutMessage::text_to("bob", &format!("n{i}"))).await })
    });
    let mut seqs = Vec::new();
    for h in sends {
        seqs.push(h.await.unwrap().unwrap().seq);
    }
    seqs.sort();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    let h = bob
        .messages("dm:alice:bob", None, None, Some(100))
        .await
        .unwrap();
    assert_eq!(h.msgs.len(), 20);
}

#[tokio::test]
async fn non_transient_errors_are_not_retried() {
    let s = Server::start().await;
    let alice = s.user("alice").await;
    let (a, _ae) = alice.connect("laptop").await.unwrap();
    let e = a
        .send(OutMessage::text_to("nobody", "hi"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NoSuchUser), "{e}");
    let e = s
        .client()
        .login("alice", "wrong-password")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Server {
                status: Some(401),
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn read_receipts_typing_and_recall() {
    let s = Server::start().await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let (a, mut ae) = alice.connect("laptop").await.unwrap();
    let (b, mut be) = bob.connect("phone").await.unwrap();
    let sent = a.send(OutMessage::text_to("bob", "read me")).await.unwrap();
    messages(&mut be, 1).await;
    let r = b.read(&sent.conv, sent.seq).await.unwrap();
    assert_eq!(r.read_seq, sent.seq);
    let read = expect(&mut ae, "a read receipt", |e| match e {
        Event::Receipt(r) if r.read_seq.is_some() => Some((r.by.to_string(), r.read_seq)),
        _ => None,
    })
    .await;
    assert_eq!(read, ("bob".into(), Some(sent.seq)));

    b.typing(&sent.conv).unwrap();
    let who = expect(&mut ae, "typing", |e| match e {
        Event::Typing(t) => Some(t.user.to_string()),
        _ => None,
    })
    .await;
    assert_eq!(who, "bob");

    a.recall(&sent.conv, sent.seq).await.unwrap();
    let rc = expect(&mut be, "recalled", |e| match e {
        Event::Recalled(r) => Some((r.seq, r.msg_id, r.by.to_string())),
        _ => None,
    })
    .await;
    assert_eq!(rc, (sent.seq, sent.msg_id, "alice".into()));
    let h = b.history(&sent.conv, None, None, None).await.unwrap();
    assert!(h.msgs[0].recalled && h.msgs[0].content.is_none());
}

#[tokio::test]
async fn presence_of_friends() {
    let s = Server::start().await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    assert_eq!(
        alice.add_friend("bob").await.unwrap().status,
        FriendState::Requested
    );
    assert_eq!(
        bob.add_friend("alice").await.unwrap().status,
        FriendState::Friends
    );
    let (a, mut ae) = alice.connect("laptop").await.unwrap();
    let online = a.presence(&["bob", "zed"]).await.unwrap().online;
    assert_eq!(online.get("bob"), Some(&false));
    let (b, _be) = bob.connect("phone").await.unwrap();
    let p = expect(&mut ae, "presence", |e| match e {
        Event::Presence(p) => Some((p.user.to_string(), p.online)),
        _ => None,
    })
    .await;
    assert_eq!(p, ("bob".into(), true));
    b.close().await;
    let p = expect(&mut ae, "presence", |e| match e {
        Event::Presence(p) => Some((p.user.to_string(), p.online)),
        _ => None,
    })
    .await;
    assert_eq!(p, ("bob".into(), false));
    let f = alice.friends().await.unwrap();
    assert_eq!(f.friends.len(), 1);
}

#[tokio::test]
async fn groups_over_http_and_the_session() {
    let s = Server::start().await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let carol = s.user("carol").await;
    let g = alice.create_group("team", &["bob"]).await.unwrap();
    assert_eq!(g.owner, "alice");
    let gid = g.group.into_owned();
    let (a, _ae) = alice.connect("laptop").await.unwrap();
    let (_b, mut be) = bob.connect("phone").await.unwrap();
    let sent = a
        .send(OutMessage::text_to_group(&gid, "hi team"))
        .await
        .unwrap();
    let got = expect(&mut be, "the group message", |e| match e {
        Event::Message(m) if m.kind == "text" => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!((got.seq, text(&got)), (sent.seq, "hi team".into()));
    let e = carol
        .send_http(OutMessage::text_to_group(&gid, "let me in"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotMember));
    let after = bob.add_members(&gid, &["carol"]).await.unwrap();
    assert_eq!(after.members.len(), 3);
    carol.remove_member(&gid, "carol").await.unwrap();
    assert_eq!(alice.group(&gid).await.unwrap().members.len(), 2);
    let convs = bob.conversations().await.unwrap();
    assert!(convs
        .convs
        .iter()
        .any(|c| c.group.as_deref() == Some(gid.as_str())));
}

#[tokio::test]
async fn rooms_and_rejoin_after_reconnect() {
    let mut s = Server::start().await;
    let fast = ClientConfig {
        reconnect_base: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let alice = s.user_with("alice", fast.clone()).await;
    let bob = s.user_with("bob", fast).await;
    let (a, mut ae) = alice.connect("laptop").await.unwrap();
    let (b, mut be) = bob.connect("phone").await.unwrap();
    a.join("launch").await.unwrap();
    b.join("launch").await.unwrap();
    a.room_send("launch", &serde_json::json!("go"))
        .await
        .unwrap();
    let m = expect(&mut be, "room message", |e| match e {
        Event::RoomMessage(m) => Some((m.from.to_string(), m.content.get().to_owned())),
        _ => None,
    })
    .await;
    assert_eq!(m, ("alice".into(), "\"go\"".into()));

    s.stop().await;
    s.restart().await;
    for ev in [&mut ae, &mut be] {
        expect(ev, "reconnect", |e| {
            matches!(e, Event::Connected { resumed: true, .. }).then_some(())
        })
        .await;
    }
    // Both joined again by themselves: a message goes through. (The rejoin
    // is written before any later request, so a `ping` round trip of each
    // proves it took effect.)
    a.ping().await.unwrap();
    b.ping().await.unwrap();
    a.room_send("launch", &serde_json::json!({"n": 2}))
        .await
        .unwrap();
    let m = expect(&mut be, "room message", |e| match e {
        Event::RoomMessage(m) => Some(m.content.get().to_owned()),
        _ => None,
    })
    .await;
    assert_eq!(m, r#"{"n":2}"#);
}

#[tokio::test]
async fn a_revoked_token_ends_the_session() {
    let s = Server::start().await;
    let alice = s.user("alice").await;
    let (_a, mut ae) = alice.connect("laptop").await.unwrap();
    alice.logout().await.unwrap();
    let end = expect(&mut ae, "disconnect", |e| match e {
        Event::Disconnected {
            code, reconnecting, ..
        } => Some((*code, *reconnecting)),
        _ => None,
    })
    .await;
    assert_eq!(end, (Some(4001), false));
    assert!(ae.recv().await.is_none());
    let e = alice.connect("laptop").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthenticated), "{e}");
}
