//! 5.3 through the SDK, over real sockets: profiles, conversation
//! settings and sessions, with the `profile` and `conv_settings` events.

mod common;

use common::{expect, Server, PASSWORD};
use tern_client::wire::FriendState;
use tern_client::{ErrorCode, Event, OutMessage};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn a_profile_change_reaches_friends_and_own_devices() {
    let s = Server::start().await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    alice.add_friend("bob").await.unwrap();
    assert_eq!(
        bob.add_friend("alice").await.unwrap().status,
        FriendState::Friends
    );
    let (_b, mut be) = bob.connect("phone").await.unwrap();
    let (_a, mut ae) = alice.connect("tablet").await.unwrap();

    let me = alice
        .update_profile(Some("Alice A."), Some("av-1"))
        .await
        .unwrap();
    assert_eq!(
        (&*me.user, &*me.name, me.avatar.as_deref(), me.online),
        ("alice", "Alice A.", Some("av-1"), true)
    );
    for ev in [&mut be, &mut ae] {
        let p = expect(ev, "profile", |e| match e {
            Event::Profile(p) => Some(p.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            (&*p.user, &*p.name, p.avatar.as_deref()),
            ("alice", "Alice A.", Some("av-1"))
        );
    }
    let seen = bob.user_info("alice").await.unwrap();
    assert_eq!(
        (&*seen.name, seen.avatar.as_deref()),
        ("Alice A.", Some("av-1"))
    );

    // Only the avatar, cleared: the name stays.
    let me = alice.update_profile(None, Some("")).await.unwrap();
    assert_eq!((&*me.name, me.avatar), ("Alice A.", None));
    let p = expect(&mut be, "profile", |e| match e {
        Event::Profile(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(p.avatar, None);

    let e = alice.update_profile(Some("  "), None).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Invalid), "{e}");
    let e = alice
        .update_profile(None, Some("not a media id"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Invalid), "{e}");
}

#[tokio::test]
async fn conversation_settings_reach_the_other_device_and_sync() {
    let s = Server::start().await;
    let alice = s.user("alice").await;
    let _bob = s.user("bob").await;
    let sent = alice
        .send_http(OutMessage::text_to("bob", "hi"))
        .await
        .unwrap();
    let conv = sent.conv.to_string();
    let (_phone, mut pe) = alice.connect("phone").await.unwrap();
    let until = now_ms() + 3_600_000;

    let got = alice
        .set_conv_settings(&conv, Some(until), Some(true))
        .await
        .unwrap();
    assert_eq!((got.muted_until, got.pinned), (until, true));
    let p = expect(&mut pe, "conv_settings", |e| match e {
        Event::ConvSettings(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!((&*p.conv, p.muted_until, p.pinned), (&*conv, until, true));
    let entry = |list: tern_client::wire::SyncAnswer<'static>| {
        list.convs
            .into_iter()
            .find(|c| c.conv == conv)
            .map(|c| (c.muted_until, c.pinned))
    };
    assert_eq!(
        entry(alice.conversations().await.unwrap()),
        Some((until, true))
    );

    // Unmute only: pinned stays.
    let got = alice.set_conv_settings(&conv, Some(0), None).await.unwrap();
    assert_eq!((got.muted_until, got.pinned), (0, true));
    assert_eq!(entry(alice.conversations().await.unwrap()), Some((0, true)));

    let e = alice
        .set_conv_settings("group:nope", None, Some(true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NoSuchGroup), "{e}");
    let e = alice
        .set_conv_settings(&conv, Some(-1), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Invalid), "{e}");
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_one_by_one_or_all() {
    let s = Server::start().await;
    let laptop = s.user("alice").await;
    let phone = s.client().login("alice", PASSWORD).await.unwrap();
    let tablet = s.client().login("alice", PASSWORD).await.unwrap();
    let (_p, mut pe) = phone.connect("phone").await.unwrap();

    let list = laptop.sessions().await.unwrap().sessions;
    assert_eq!(list.len(), 3, "{list:?}");
    let current: Vec<bool> = list.iter().map(|v| v.current).collect();
    assert_eq!(current, [true, false, false]);
    let with_phone: Vec<_> = list.iter().filter(|v| !v.devices.is_empty()).collect();
    assert_eq!(with_phone.len(), 1);
    assert_eq!(with_phone[0].devices, ["phone"]);
    let phone_session = with_phone[0].session.to_string();
    // The phone's own listing marks its session as current.
    let mine = phone.sessions().await.unwrap().sessions;
    assert!(mine.iter().any(|v| v.current && v.session == phone_session));

    laptop.revoke_session(&phone_session).await.unwrap();
    let end = expect(&mut pe, "disconnect", |e| match e {
        Event::Disconnected {
            code, reconnecting, ..
        } => Some((*code, *reconnecting)),
        _ => None,
    })
    .await;
    assert_eq!(end, (Some(4001), false));
    let e = phone.sessions().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthenticated), "{e}");
    assert_eq!(laptop.sessions().await.unwrap().sessions.len(), 2);

    // Gone already, or never there: not_found.
    for id in [
        phone_session.as_str(),
        "0123456789abcdef0123456789abcdef",
        "x",
    ] {
        let e = laptop.revoke_session(id).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotFound), "{id}: {e}");
    }

    laptop.revoke_all_sessions().await.unwrap();
    for c in [&laptop, &tablet] {
        let e = c.sessions().await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Unauthenticated), "{e}");
    }
    // A new login works at once.
    let again = s.client().login("alice", PASSWORD).await.unwrap();
    assert_eq!(again.sessions().await.unwrap().sessions.len(), 1);
}
