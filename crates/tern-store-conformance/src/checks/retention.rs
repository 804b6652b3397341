//! 5.6 retention (a conversation's own retention, rounds of expiry) and
//! account erase.

use super::*;
use tern_core::search::{query_terms, SearchQuery};
use tern_core::store::{ExpireRound, MediaRecord, DELETED_USER_KIND, ERASED_PASSWORD_HASH};

const DAY: i64 = 86_400_000;

fn round(default_days: u32, now: i64, max_msgs: u32) -> ExpireRound {
    ExpireRound {
        default_days,
        now,
        after: String::new(),
        max_convs: 100,
        max_msgs,
    }
}

async fn found(s: &dyn Store, user: &str, word: &str) -> Vec<u64> {
    while s.index_pending(1000).await.unwrap() > 0 {}
    let q = SearchQuery {
        terms: query_terms(word).unwrap(),
        conv: None,
        before_ts: None,
        limit: 100,
    };
    seqs(&s.search(user, &q).await.unwrap())
}

fn media(id: &str, owner: &str) -> MediaRecord {
    MediaRecord {
        id: id.into(),
        owner: owner.into(),
        size: 10,
        mime: "image/png".into(),
        sha256: "ab".repeat(32),
        w: None,
        h: None,
        filename: String::new(),
        created_at: 1,
        referenced: false,
    }
}

/// An image message from `from` to `to` naming media `id`.
fn image(from: &str, to: &str, ts: i64, cmid: &str, id: &str) -> NewMessage {
    NewMessage {
        kind: "image".into(),
        content: format!("{{\"media\":\"{id}\",\"url\":\"/v1/media/{id}\"}}"),
        ..dm(from, to, ts, cmid)
    }
}

pub async fn retention_set_cleared_and_listed(s: &dyn Store) {
    for u in ["ra", "rb", "rc"] {
        s.create_user(user(u, 1)).await.unwrap();
    }
    send(s, dm("ra", "rb", 10, "hi")).await;
    send(s, dm("ra", "rc", 10, "hey")).await;
    assert_eq!(s.retention("dm:ra:rb").await.unwrap(), 0);
    assert!(s.retentions("ra").await.unwrap().is_empty());
    s.set_retention("dm:ra:rb", 7, 100).await.unwrap();
    s.set_retention("dm:ra:rb", 30, 200).await.unwrap();
    s.set_retention("dm:ra:rc", 1, 200).await.unwrap();
    assert_eq!(s.retention("dm:ra:rb").await.unwrap(), 30);
    let mut mine = s.retentions("ra").await.unwrap();
    mine.sort();
    assert_eq!(
        mine,
        vec![("dm:ra:rb".to_owned(), 30), ("dm:ra:rc".to_owned(), 1)]
    );
    // Shared by the members: the other party sees it too.
    assert_eq!(
        s.retentions("rb").await.unwrap(),
        vec![("dm:ra:rb".to_owned(), 30)]
    );
    s.set_retention("dm:ra:rb", 0, 300).await.unwrap();
    assert_eq!(s.retention("dm:ra:rb").await.unwrap(), 0);
    assert!(s.retentions("rb").await.unwrap().is_empty());
    // Clearing twice is harmless.
    s.set_retention("dm:ra:rb", 0, 300).await.unwrap();
}

pub async fn expiry_removes_a_prefix_and_moves_positions(s: &dyn Store) {
    for u in ["ea", "eb"] {
        s.create_user(user(u, 1)).await.unwrap();
    }
    let conv = dm_conv("ea", "eb");
    send(s, dm("ea", "eb", 1_000, "alpha")).await;
    send(s, dm("ea", "eb", 2_000, "bravo")).await;
    send(s, dm("ea", "eb", 3_000, "charlie")).await;
    send(s, dm("ea", "eb", 5 * DAY, "delta")).await;
    s.react(&conv, 1, "eb", "👍", true, 20, 1_500)
        .await
        .unwrap();
    s.delete_for_user("eb", &conv, &[2]).await.unwrap();
    assert_eq!(found(s, "eb", "alpha").await, vec![1]);
    assert_eq!(convs(s, "eb").await.total_unread, 4);

    // Nothing set and no default: nothing goes.
    let none = s.expire_messages(&round(0, 10 * DAY, 100)).await.unwrap();
    assert_eq!((none.messages, none.next), (0, None));
    assert_eq!(history_seqs(s, "ea", &conv, all()).await, vec![1, 2, 3, 4]);

    // A day's retention at 1 day + 2500 ms: seqs 1 and 2 have expired.
    s.set_retention(&conv, 1, 0).await.unwrap();
    let now = DAY + 2_500;
    let done = s.expire_messages(&round(0, now, 100)).await.unwrap();
    assert_eq!(done.messages, 2);
    assert_eq!(done.next, None);
    assert_eq!(history_seqs(s, "ea", &conv, all()).await, vec![3, 4]);
    assert_eq!(history_seqs(s, "eb", &conv, all()).await, vec![3, 4]);
    assert_eq!(s.message(&conv, 1).await.unwrap(), None);
    assert_eq!(s.max_seq(&conv).await.unwrap(), 4);
    // Gap fill from before the kept history starts at its first seq.
    assert_eq!(
        history_seqs(s, "eb", &conv, page(None, Some(0), 10)).await,
        vec![3, 4]
    );
    // Unread counts only what is kept; the queue holds only what is kept.
    let l = convs(s, "eb").await;
    assert_eq!((l.convs[0].read_seq, l.convs[0].unread), (2, 2));
    assert_eq!(l.total_unread, 2);
    assert_eq!(queue_seqs(s, "eb", &conv).await, vec![3, 4]);
    // Search, reactions: gone with their messages.
    assert!(found(s, "eb", "alpha").await.is_empty());
    assert!(found(s, "eb", "bravo").await.is_empty());
    assert_eq!(found(s, "eb", "charlie").await, vec![3]);
    assert!(s.reactions(&conv, 1, 4, 10).await.unwrap().is_empty());
    // Running the round again (another node) changes nothing.
    let again = s.expire_messages(&round(0, now, 100)).await.unwrap();
    assert_eq!(again.messages, 0);
    assert_eq!(history_seqs(s, "ea", &conv, all()).await, vec![3, 4]);
    // seq goes on where it was; never reused.
    let next = send(s, dm("eb", "ea", 6 * DAY, "echo")).await;
    assert_eq!(next.seq, 5);
    // Newly indexed messages are found (the index's position is sound).
    assert_eq!(found(s, "ea", "echo").await, vec![5]);
}

pub async fn expiry_is_bounded_and_honours_the_default(s: &dyn Store) {
    for u in ["da", "db", "dc"] {
        s.create_user(user(u, 1)).await.unwrap();
    }
    let ab = dm_conv("da", "db");
    let ac = dm_conv("da", "dc");
    for i in 0..5 {
        send(s, dm("da", "db", 1_000 + i, &format!("ab{i}"))).await;
        send(s, dm("da", "dc", 1_000 + i, &format!("ac{i}"))).await;
    }
    // The conversation with its own retention keeps what it says.
    s.set_retention(&ac, 30, 0).await.unwrap();
    let now = 2 * DAY;
    // At most 3 messages per round: the next round starts again where
    // this one stopped.
    let first = s.expire_messages(&round(1, now, 3)).await.unwrap();
    assert_eq!(first.messages, 3);
    let second = s
        .expire_messages(&ExpireRound {
            after: first.next.clone().unwrap(),
            ..round(1, now, 3)
        })
        .await
        .unwrap();
    assert_eq!(second.messages, 2);
    assert!(history(s, "db", &ab, all()).await.is_empty());
    assert_eq!(history(s, "dc", &ac, all()).await.len(), 5);
    assert_eq!(s.max_seq(&ab).await.unwrap(), 5);
    assert_eq!(convs(s, "db").await.total_unread, 0);
    // At most `max_convs` per round, then `next` names the last one.
    let one = s
        .expire_messages(&ExpireRound {
            max_convs: 1,
            ..round(1, now, 100)
        })
        .await
        .unwrap();
    assert_eq!(one.next.as_deref(), Some(ab.as_str()));
}

pub async fn expiry_releases_media_no_kept_message_names(s: &dyn Store) {
    for u in ["ma", "mb"] {
        s.create_user(user(u, 1)).await.unwrap();
    }
    let (only, both, avatar) = ("1".repeat(32), "2".repeat(32), "3".repeat(32));
    for id in [&only, &both, &avatar] {
        s.media_add(&media(id, "ma")).await.unwrap();
        s.media_reference(id, "ma").await.unwrap().unwrap();
    }
    s.set_profile("ma", None, Some(&avatar)).await.unwrap();
    send(s, image("ma", "mb", 1_000, "i1", &only)).await;
    send(s, image("ma", "mb", 1_001, "i2", &both)).await;
    send(s, image("ma", "mb", 1_002, "i3", &avatar)).await;
    send(s, image("ma", "mb", 3 * DAY, "i4", &both)).await;
    let done = s.expire_messages(&round(1, 2 * DAY, 100)).await.unwrap();
    assert_eq!((done.messages, done.media), (3, 1));
    let referenced =
        |id: String| async move { s.media_get(&id).await.unwrap().unwrap().referenced };
    assert!(!referenced(only.clone()).await);
    assert!(referenced(both.clone()).await);
    assert!(referenced(avatar.clone()).await);
    assert_eq!(s.media_sweep(10, 100).await.unwrap().len(), 1);
}

pub async fn erase_keeps_tombstones_and_removes_the_rest(s: &dyn Store) {
    for u in ["xa", "xb", "xc", "xd"] {
        s.create_user(user(u, 1)).await.unwrap();
    }
    s.friend_request("xa", "xb", 1).await.unwrap();
    s.friend_request("xb", "xa", 2).await.unwrap();
    s.friend_request("xd", "xa", 3).await.unwrap();
    s.block("xa", "xc", 4).await.unwrap();
    s.block("xc", "xa", 4).await.unwrap();
    let conv = dm_conv("xa", "xb");
    send(s, dm("xa", "xb", 10, "secret")).await;
    send(s, dm("xb", "xa", 11, "answer")).await;
    send(s, dm("xa", "xb", 12, "another")).await;
    s.react(&conv, 2, "xa", "👍", true, 20, 13).await.unwrap();
    s.set_conv_settings("xa", &conv, None, Some(true))
        .await
        .unwrap();
    let id = "4".repeat(32);
    s.media_add(&media(&id, "xa")).await.unwrap();
    s.media_reference(&id, "xa").await.unwrap().unwrap();
    s.set_profile("xa", Some("Xa"), Some(&id)).await.unwrap();
    let reg = tern_core::store::PushRegistration {
        user: "xa".into(),
        device: "phone".into(),
        provider: "fcm".into(),
        token: "t".into(),
        endpoint: String::new(),
        p256dh: String::new(),
        auth: String::new(),
        session: "5".repeat(32),
        updated_at: 5,
    };
    s.push_register(&reg, 20).await.unwrap();
    assert_eq!(s.push_registrations("xa").await.unwrap().len(), 1);
    assert_eq!(found(s, "xb", "secret").await, vec![1]);
    assert_eq!(queue_seqs(s, "xa", &conv).await, vec![2]);

    for _ in 0..2 {
        // Twice: a retry after a crash changes nothing more.
        s.erase_user("xa").await.unwrap();
        let rec = s.get_user("xa").await.unwrap().unwrap();
        assert!(rec.is_erased());
        assert_eq!(rec.password_hash, ERASED_PASSWORD_HASH);
        let p = s.profile("xa").await.unwrap().unwrap();
        assert_eq!((p.name.as_str(), p.avatar), ("", None));
        assert_eq!(s.friends("xb").await.unwrap(), FriendLists::default());
        assert_eq!(s.friends("xd").await.unwrap(), FriendLists::default());
        assert_eq!(s.friends("xa").await.unwrap(), FriendLists::default());
        assert_eq!(s.blocks("xc").await.unwrap(), Blocks::default());
        assert_eq!(s.blocks("xa").await.unwrap(), Blocks::default());
        assert!(s.push_registrations("xa").await.unwrap().is_empty());
        let msgs = history(s, "xb", &conv, all()).await;
        assert_eq!(seqs(&msgs), vec![1, 2, 3]);
        for m in [&msgs[0], &msgs[2]] {
            assert_eq!(m.from, "xa");
            assert_eq!(m.kind, DELETED_USER_KIND);
            assert_eq!(m.content, None);
        }
        assert_eq!(msgs[1].content.as_deref(), Some("\"answer\""));
        assert!(found(s, "xb", "secret").await.is_empty());
        assert!(found(s, "xb", "another").await.is_empty());
        assert_eq!(found(s, "xb", "answer").await, vec![2]);
        assert!(s.reactions(&conv, 1, 3, 10).await.unwrap().is_empty());
        assert!(s.conv_settings("xa").await.unwrap().is_empty());
        assert!(queue(s, "xa").await.0.is_empty());
        assert!(!s.media_get(&id).await.unwrap().unwrap().referenced);
    }
    // The other party's own queue and unread are as they were.
    assert_eq!(queue_seqs(s, "xb", &conv).await, vec![1, 3]);
}
