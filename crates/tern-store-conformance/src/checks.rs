//! The conformance suite of the `tern_core::store::Store` contract, shared
//! by every backend.
//!
//! Every check is a backend-neutral `pub async fn(&dyn Store)` that assumes
//! an empty store and uses its own users and conversations. A backend's test
//! target runs all of them with [`suite!`], giving it a function that opens
//! a fresh store and one that reopens the same data (for the durability
//! check). Times are plain numbers (milliseconds), chosen by the checks.

use std::sync::atomic::{AtomicU64, Ordering};

use tern_core::store::{
    AckMark, Appended, ConvList, FriendLists, FriendStatus, GroupRecord, HistoryQuery,
    MemberChange, NewMessage, ReadOutcome, Refusal, Store, StoreError, StoredMessage, UserRecord,
};

/// Recall window used by the recall tests.
const WINDOW: i64 = 60_000;

// ----- building messages -----

fn next_msg_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn dm_conv(x: &str, y: &str) -> String {
    let (a, b) = if x <= y { (x, y) } else { (y, x) };
    format!("dm:{a}:{b}")
}

fn group_conv(gid: &str) -> String {
    format!("group:{gid}")
}

/// JSON text of a `text` message's content.
fn text(s: &str) -> String {
    format!("\"{s}\"")
}

/// A 1:1 text message; both users are participants, `to` has it queued.
/// The content is the `cmid` as a JSON string.
pub fn dm(from: &str, to: &str, ts: i64, cmid: &str) -> NewMessage {
    NewMessage {
        msg_id: next_msg_id(),
        conv: dm_conv(from, to),
        from: from.into(),
        to: Some(to.into()),
        group: None,
        kind: "text".into(),
        content: text(cmid),
        ts,
        client_msg_id: Some(cmid.into()),
        participants: vec![from.into(), to.into()],
        inbox_members_up_to: 0,
        change: None,
    }
}

/// A group text message, read diffusion (queued for nobody).
pub fn gmsg(gid: &str, from: &str, ts: i64, cmid: &str) -> NewMessage {
    NewMessage {
        msg_id: next_msg_id(),
        conv: group_conv(gid),
        from: from.into(),
        to: None,
        group: Some(gid.into()),
        kind: "text".into(),
        content: text(cmid),
        ts,
        client_msg_id: Some(cmid.into()),
        participants: Vec::new(),
        inbox_members_up_to: 0,
        change: None,
    }
}

/// A server-written `system` group message recording `change`.
fn gsys(gid: &str, actor: &str, ts: i64, change: MemberChange) -> NewMessage {
    NewMessage {
        kind: "system".into(),
        content: "{}".into(),
        client_msg_id: None,
        change: Some(change),
        ..gmsg(gid, actor, ts, "")
    }
}

pub fn create(gid: &str, owner: &str, ts: i64) -> NewMessage {
    gsys(
        gid,
        owner,
        ts,
        MemberChange::Create {
            name: format!("{gid} name"),
        },
    )
}

pub fn join(gid: &str, actor: &str, user: &str, ts: i64) -> NewMessage {
    gsys(gid, actor, ts, MemberChange::Join(user.into()))
}

pub fn leave(gid: &str, actor: &str, user: &str, ts: i64) -> NewMessage {
    gsys(gid, actor, ts, MemberChange::Leave(user.into()))
}

/// Write diffusion: queued for every member but the sender.
pub fn diffused(m: NewMessage) -> NewMessage {
    NewMessage {
        inbox_members_up_to: 100,
        ..m
    }
}

pub fn user(name: &str, created_at: i64) -> UserRecord {
    UserRecord {
        user: name.into(),
        name: format!("{name} display"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at,
    }
}

fn all() -> HistoryQuery {
    HistoryQuery {
        before_seq: None,
        after_seq: None,
        limit: 1000,
    }
}

fn page(before_seq: Option<u64>, after_seq: Option<u64>, limit: u32) -> HistoryQuery {
    HistoryQuery {
        before_seq,
        after_seq,
        limit,
    }
}

fn seqs(msgs: &[StoredMessage]) -> Vec<u64> {
    msgs.iter().map(|m| m.seq).collect()
}

// ----- calling the store -----

macro_rules! assert_err {
    ($e:expr, $p:pat) => {
        match $e {
            Err($p) => {}
            other => panic!("expected Err({}), got {:?}", stringify!($p), other),
        }
    };
}

async fn append(s: &dyn Store, batch: Vec<NewMessage>) -> Vec<Appended> {
    s.append_messages(batch).await.expect("append_messages")
}

async fn append_one(s: &dyn Store, m: NewMessage) -> Appended {
    let mut out = append(s, vec![m]).await;
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// Appends one message that must be stored now.
pub async fn send(s: &dyn Store, m: NewMessage) -> StoredMessage {
    match append_one(s, m).await {
        Appended::New(m) => m,
        other => panic!("expected Appended::New, got {other:?}"),
    }
}

async fn history(s: &dyn Store, user: &str, conv: &str, q: HistoryQuery) -> Vec<StoredMessage> {
    s.history(user, conv, q).await.expect("history")
}

async fn history_seqs(s: &dyn Store, user: &str, conv: &str, q: HistoryQuery) -> Vec<u64> {
    seqs(&history(s, user, conv, q).await)
}

/// The user's offline queue as `(conv, seq)` pairs, and the truncated flag.
async fn queue(s: &dyn Store, user: &str) -> (Vec<(String, u64)>, bool) {
    queue_capped(s, user, 1000).await
}

/// [`queue`] with the newest `cap` messages kept.
async fn queue_capped(s: &dyn Store, user: &str, cap: u32) -> (Vec<(String, u64)>, bool) {
    let b = s.offline_fetch(user, cap).await.expect("offline_fetch");
    (
        b.msgs.into_iter().map(|m| (m.conv, m.seq)).collect(),
        b.truncated,
    )
}

/// Seqs of the user's offline queue (all in `conv`, which the test checks).
async fn queue_seqs(s: &dyn Store, user: &str, conv: &str) -> Vec<u64> {
    let (entries, _) = queue(s, user).await;
    entries
        .into_iter()
        .map(|(c, seq)| {
            assert_eq!(c, conv, "unexpected conversation in {user}'s queue");
            seq
        })
        .collect()
}

async fn convs(s: &dyn Store, user: &str) -> ConvList {
    s.conversations(user, 0, 1000).await.expect("conversations")
}

fn conv_ids(l: &ConvList) -> Vec<&str> {
    l.convs.iter().map(|c| c.conv.as_str()).collect()
}

// ----- append: seqs -----

pub async fn seq_is_gap_free(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    let cd = dm_conv("cat", "dan");
    assert_eq!(s.max_seq(&ab).await.unwrap(), 0);
    for i in 1..=5u64 {
        let m = send(s, dm("ann", "bob", 100 + i as i64, &format!("ab{i}"))).await;
        assert_eq!((m.conv.as_str(), m.seq), (ab.as_str(), i));
        if i <= 3 {
            // Another conversation counts on its own.
            let m = send(s, dm("dan", "cat", 200 + i as i64, &format!("cd{i}"))).await;
            assert_eq!((m.conv.as_str(), m.seq), (cd.as_str(), i));
        }
    }
    assert_eq!(s.max_seq(&ab).await.unwrap(), 5);
    assert_eq!(s.max_seq(&cd).await.unwrap(), 3);
    assert_eq!(s.max_seq(&dm_conv("eve", "fay")).await.unwrap(), 0);

    let h = history(s, "bob", &ab, all()).await;
    assert_eq!(seqs(&h), vec![1, 2, 3, 4, 5]);
    let m = &h[2];
    assert_eq!(m.from, "ann");
    assert_eq!(m.to.as_deref(), Some("bob"));
    assert_eq!(m.group, None);
    assert_eq!(m.kind, "text");
    assert_eq!(m.content.as_deref(), Some(text("ab3").as_str()));
    assert_eq!(m.ts, 103);
    assert_eq!(m.client_msg_id.as_deref(), Some("ab3"));
    assert!(!m.recalled);
}

pub async fn batch_append_keeps_input_order(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    let cd = dm_conv("cat", "dan");
    let batch: Vec<NewMessage> = (0..50)
        .map(|i| {
            if i % 2 == 0 {
                dm("ann", "bob", 1000 + i, &format!("b{i}"))
            } else {
                dm("cat", "dan", 1000 + i, &format!("b{i}"))
            }
        })
        .collect();
    let ids: Vec<u64> = batch.iter().map(|m| m.msg_id).collect();
    let out = append(s, batch).await;
    assert_eq!(out.len(), 50);
    for (i, a) in out.iter().enumerate() {
        let Appended::New(m) = a else {
            panic!("outcome {i}: expected New, got {a:?}")
        };
        let conv = if i % 2 == 0 { &ab } else { &cd };
        assert_eq!(&m.conv, conv, "outcome {i}");
        assert_eq!(m.seq, i as u64 / 2 + 1, "outcome {i}");
        assert_eq!(m.msg_id, ids[i], "outcome {i}");
        assert_eq!(m.content.as_deref(), Some(text(&format!("b{i}")).as_str()));
    }
    assert_eq!(s.max_seq(&ab).await.unwrap(), 25);
    assert_eq!(s.max_seq(&cd).await.unwrap(), 25);

    // Stored in input order.
    let h = history(s, "ann", &ab, all()).await;
    assert_eq!(seqs(&h), (1..=25).collect::<Vec<u64>>());
    let contents: Vec<String> = h.iter().map(|m| m.content.clone().unwrap()).collect();
    let expected: Vec<String> = (0..50).step_by(2).map(|i| text(&format!("b{i}"))).collect();
    assert_eq!(contents, expected);

    // The next append continues after the batch.
    assert_eq!(send(s, dm("bob", "ann", 2000, "after")).await.seq, 26);
}

// ----- append: deduplication -----

pub async fn dedup_across_calls(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    let first = send(s, dm("ann", "bob", 100, "c1")).await;
    assert_eq!(first.seq, 1);

    // Same (from, client_msg_id), otherwise different: the original back.
    let again = NewMessage {
        content: text("other"),
        ..dm("ann", "bob", 999, "c1")
    };
    let out = append_one(s, again.clone()).await;
    assert_eq!(out, Appended::Duplicate(first.clone()));
    let orig = out.message().unwrap();
    assert_eq!((orig.msg_id, orig.seq, orig.ts), (first.msg_id, 1, 100));
    assert_ne!(orig.msg_id, again.msg_id);
    assert_eq!(s.max_seq(&ab).await.unwrap(), 1);
    assert_eq!(history_seqs(s, "ann", &ab, all()).await, vec![1]);
    // Not queued a second time.
    assert_eq!(queue_seqs(s, "bob", &ab).await, vec![1]);

    // Another sender may use the same client_msg_id.
    let theirs = append_one(s, dm("bob", "ann", 200, "c1")).await;
    let Appended::New(theirs) = theirs else {
        panic!("expected New, got {theirs:?}")
    };
    assert_eq!((theirs.seq, theirs.from.as_str()), (2, "bob"));

    // The key is per sender, not per conversation: the same key in another
    // conversation is still the original message.
    let elsewhere = append_one(s, dm("ann", "cat", 300, "c1")).await;
    assert_eq!(elsewhere, Appended::Duplicate(first));
    assert_eq!(s.max_seq(&dm_conv("ann", "cat")).await.unwrap(), 0);
}

pub async fn dedup_within_batch(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    let batch = vec![
        dm("ann", "bob", 100, "k1"),
        dm("ann", "bob", 101, "k2"),
        NewMessage {
            content: text("retry"),
            ..dm("ann", "bob", 102, "k1")
        },
        dm("bob", "ann", 103, "k1"),
    ];
    let out = append(s, batch).await;
    assert_eq!(out.len(), 4);
    let Appended::New(k1) = &out[0] else {
        panic!("expected New, got {:?}", out[0])
    };
    let Appended::New(k2) = &out[1] else {
        panic!("expected New, got {:?}", out[1])
    };
    assert_eq!((k1.seq, k2.seq), (1, 2));
    assert_eq!(out[2], Appended::Duplicate(k1.clone()));
    let Appended::New(bobs) = &out[3] else {
        panic!("expected New, got {:?}", out[3])
    };
    assert_eq!(bobs.seq, 3);
    assert_eq!(s.max_seq(&ab).await.unwrap(), 3);
    let h = history(s, "ann", &ab, all()).await;
    assert_eq!(seqs(&h), vec![1, 2, 3]);
    assert_eq!(h[0].content.as_deref(), Some(text("k1").as_str()));

    // Messages without a client_msg_id are never duplicates.
    let sys = |ts| NewMessage {
        client_msg_id: None,
        kind: "system".into(),
        ..dm("ann", "bob", ts, "sys")
    };
    let out = append(s, vec![sys(200), sys(201)]).await;
    assert_eq!(
        out.iter()
            .map(|a| a.message().map(|m| m.seq))
            .collect::<Vec<_>>(),
        vec![Some(4), Some(5)]
    );
    assert!(out.iter().all(|a| matches!(a, Appended::New(_))));
}

// ----- offline queue -----

pub async fn offline_queue_in_order(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    let bc = dm_conv("bob", "cat");
    append(
        s,
        vec![dm("ann", "bob", 100, "a1"), dm("cat", "bob", 101, "c1")],
    )
    .await;
    send(s, dm("ann", "bob", 102, "a2")).await;
    send(s, dm("cat", "bob", 103, "c2")).await;
    send(s, dm("ann", "bob", 104, "a3")).await;

    let expected = vec![
        (ab.clone(), 1),
        (bc.clone(), 1),
        (ab.clone(), 2),
        (bc.clone(), 2),
        (ab.clone(), 3),
    ];
    assert_eq!(queue(s, "bob").await, (expected.clone(), false));
    // Fetching does not remove entries.
    assert_eq!(queue(s, "bob").await, (expected.clone(), false));
    let b = s.offline_fetch("bob", 1000).await.unwrap();
    assert_eq!(b.msgs[1].content.as_deref(), Some(text("c1").as_str()));
    // Senders get nothing.
    assert_eq!(queue(s, "ann").await, (vec![], false));
    assert_eq!(queue(s, "cat").await, (vec![], false));
    // The sender's own messages do not hide what is queued for them.
    send(s, dm("bob", "ann", 105, "b1")).await;
    assert_eq!(queue(s, "bob").await, (expected.clone(), false));
    assert_eq!(queue(s, "ann").await, (vec![(ab.clone(), 4)], false));
}

/// `dm:x:x` queues x's own messages (for x's other devices).
pub async fn offline_queue_self_conversation(s: &dyn Store) {
    let aa = dm_conv("ann", "ann");
    send(s, dm("ann", "ann", 100, "n1")).await;
    send(s, dm("ann", "ann", 101, "n2")).await;
    assert_eq!(
        queue(s, "ann").await,
        (vec![(aa.clone(), 1), (aa.clone(), 2)], false)
    );
    s.ack("ann", &aa, 1, None).await.unwrap();
    assert_eq!(queue(s, "ann").await, (vec![(aa.clone(), 2)], false));
}

pub async fn offline_cap_keeps_newest(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    for i in 1..=5 {
        send(s, dm("ann", "bob", 100 + i, &format!("m{i}"))).await;
    }
    assert_eq!(
        queue_capped(s, "bob", 3).await,
        (
            vec![(ab.clone(), 3), (ab.clone(), 4), (ab.clone(), 5)],
            true
        )
    );
    // Reported once: the dropped messages left the queue.
    assert_eq!(
        queue(s, "bob").await,
        (
            vec![(ab.clone(), 3), (ab.clone(), 4), (ab.clone(), 5)],
            false
        )
    );

    // A batch over the cap keeps the newest of the batch.
    let batch = (6..=9)
        .map(|i| dm("ann", "bob", 100 + i, &format!("m{i}")))
        .collect();
    append(s, batch).await;
    assert_eq!(
        queue_capped(s, "bob", 2).await,
        (vec![(ab.clone(), 8), (ab.clone(), 9)], true)
    );
    assert!(!queue_capped(s, "bob", 2).await.1);

    // Reaching the cap exactly drops nothing.
    let cd = dm_conv("cat", "dan");
    for i in 1..=3 {
        send(s, dm("cat", "dan", 200 + i, &format!("d{i}"))).await;
    }
    assert_eq!(
        queue_capped(s, "dan", 3).await,
        (
            vec![(cd.clone(), 1), (cd.clone(), 2), (cd.clone(), 3)],
            false
        )
    );

    // The cap counts the whole queue, not one conversation; acknowledged
    // entries no longer count.
    s.ack("dan", &cd, 2, None).await.unwrap();
    append(
        s,
        vec![dm("eve", "dan", 300, "e1"), dm("eve", "dan", 301, "e2")],
    )
    .await;
    let ed = dm_conv("dan", "eve");
    assert_eq!(
        queue_capped(s, "dan", 3).await,
        (
            vec![(cd.clone(), 3), (ed.clone(), 1), (ed.clone(), 2)],
            false
        )
    );
    send(s, dm("eve", "dan", 302, "e3")).await;
    assert_eq!(
        queue_capped(s, "dan", 3).await,
        (
            vec![(ed.clone(), 1), (ed.clone(), 2), (ed.clone(), 3)],
            true
        )
    );
    // The conversation that fell out of the queue stays out of it.
    assert_eq!(
        queue(s, "dan").await,
        (
            vec![(ed.clone(), 1), (ed.clone(), 2), (ed.clone(), 3)],
            false
        )
    );
}

pub async fn ack_clears_queue_of_that_conv(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    let bc = dm_conv("bob", "cat");
    send(s, dm("ann", "bob", 100, "a1")).await;
    send(s, dm("cat", "bob", 101, "c1")).await;
    send(s, dm("ann", "bob", 102, "a2")).await;
    send(s, dm("cat", "bob", 103, "c2")).await;
    send(s, dm("ann", "bob", 104, "a3")).await;

    s.ack("bob", &ab, 2, None).await.unwrap();
    assert_eq!(
        queue(s, "bob").await.0,
        vec![(bc.clone(), 1), (bc.clone(), 2), (ab.clone(), 3)]
    );
    // Acknowledging past the end is fine.
    s.ack("bob", &bc, 50, None).await.unwrap();
    assert_eq!(queue(s, "bob").await.0, vec![(ab.clone(), 3)]);
    // Another user's ack leaves bob's queue alone.
    s.ack("ann", &ab, 3, None).await.unwrap();
    assert_eq!(queue(s, "bob").await.0, vec![(ab.clone(), 3)]);
    // Any seq, however large, covers the whole conversation.
    s.ack("bob", &ab, u64::MAX, None).await.unwrap();
    assert_eq!(queue(s, "bob").await, (vec![], false));
    assert_eq!(s.max_seq(&ab).await.unwrap(), 3);
}

pub async fn ack_reports_receipts(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    send(s, dm("ann", "bob", 100, "a1")).await;
    send(s, dm("ann", "bob", 101, "a2")).await;

    // First ack covering ann's messages: a receipt for ann.
    assert_eq!(s.ack("bob", &ab, 2, Some("ann")).await.unwrap(), Some(2));
    // Nothing new.
    assert_eq!(s.ack("bob", &ab, 2, Some("ann")).await.unwrap(), None);
    assert_eq!(s.ack("bob", &ab, 1, Some("ann")).await.unwrap(), None);

    // bob's own message moves his delivered position; ann's next is new.
    send(s, dm("bob", "ann", 102, "b3")).await;
    send(s, dm("ann", "bob", 103, "a4")).await;
    assert_eq!(s.ack("bob", &ab, 4, Some("ann")).await.unwrap(), Some(4));
    // ann's delivered position was moved by her own send (4); bob's 3 is
    // below it, so acknowledging 3 is nothing new.
    assert_eq!(s.ack("ann", &ab, 3, Some("bob")).await.unwrap(), None);

    // Capped at the conversation's max seq.
    send(s, dm("ann", "bob", 104, "a5")).await;
    send(s, dm("ann", "bob", 105, "a6")).await;
    assert_eq!(s.ack("bob", &ab, 100, Some("ann")).await.unwrap(), Some(6));
    assert_eq!(s.ack("bob", &ab, 100, Some("ann")).await.unwrap(), None);

    // Moving past only messages of other users: no receipt for them.
    send(s, dm("ann", "bob", 106, "a7")).await;
    assert_eq!(s.ack("bob", &ab, 7, Some("cat")).await.unwrap(), None);
    // ...and the position did move, so ann gets none afterwards either.
    assert_eq!(s.ack("bob", &ab, 7, Some("ann")).await.unwrap(), None);
    // No receipt asked for: the offline entries go, the delivered position
    // (which only feeds receipts) stays, so a later ack still reports it.
    send(s, dm("ann", "bob", 107, "a8")).await;
    assert_eq!(s.ack("bob", &ab, 8, None).await.unwrap(), None);
    assert_eq!(s.ack("bob", &ab, 8, Some("ann")).await.unwrap(), Some(8));
}

/// `ack_many` answers like the same acks one by one, in order, and empties
/// the same offline entries.
pub async fn ack_many_matches_single_acks(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    let ac = dm_conv("ann", "cat");
    send(s, dm("ann", "bob", 200, "m1")).await;
    send(s, dm("ann", "bob", 201, "m2")).await;
    send(s, dm("ann", "cat", 202, "m3")).await;
    let mark = |user: &str, conv: &str, seq: u64, rf: Option<&str>| AckMark {
        user: user.into(),
        conv: conv.into(),
        seq,
        receipt_for: rf.map(Into::into),
    };
    let out = s
        .ack_many(vec![
            mark("bob", &ab, 1, Some("ann")),
            mark("bob", &ab, 2, Some("ann")),
            mark("bob", &ab, 2, Some("ann")),
            mark("cat", &ac, 1, None),
        ])
        .await
        .unwrap();
    assert_eq!(out, vec![Some(1), Some(2), None, None]);
    assert!(s.offline_fetch("bob", 1000).await.unwrap().msgs.is_empty());
    assert!(s.offline_fetch("cat", 1000).await.unwrap().msgs.is_empty());
    assert!(s.ack_many(Vec::new()).await.unwrap().is_empty());
}

// ----- read positions -----

pub async fn mark_read_and_unread_counts(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    for i in 1..=3 {
        send(s, dm("ann", "bob", 100 + i, &format!("a{i}"))).await;
    }
    let l = convs(s, "bob").await;
    assert_eq!(l.total_unread, 3);
    assert_eq!(
        (l.convs[0].max_seq, l.convs[0].read_seq, l.convs[0].unread),
        (3, 0, 3)
    );
    // The sender's own messages are not unread.
    let l = convs(s, "ann").await;
    assert_eq!(l.total_unread, 0);
    assert_eq!(
        (l.convs[0].max_seq, l.convs[0].read_seq, l.convs[0].unread),
        (3, 3, 0)
    );

    assert_err!(
        s.mark_read("bob", &ab, 0, 200).await,
        StoreError::Invalid(_)
    );
    assert_err!(
        s.mark_read("bob", &ab, 4, 200).await,
        StoreError::Invalid(_)
    );
    assert_err!(
        s.mark_read("bob", &dm_conv("xed", "yan"), 1, 200).await,
        StoreError::Invalid(_)
    );
    assert_eq!(convs(s, "bob").await.total_unread, 3);

    assert_eq!(
        s.mark_read("bob", &ab, 2, 200).await.unwrap(),
        ReadOutcome {
            advanced: true,
            read_seq: 2
        }
    );
    let l = convs(s, "bob").await;
    assert_eq!(
        (l.convs[0].read_seq, l.convs[0].unread, l.total_unread),
        (2, 1, 1)
    );
    // Never backwards.
    assert_eq!(
        s.mark_read("bob", &ab, 1, 210).await.unwrap(),
        ReadOutcome {
            advanced: false,
            read_seq: 2
        }
    );
    assert_eq!(
        s.mark_read("bob", &ab, 2, 220).await.unwrap(),
        ReadOutcome {
            advanced: false,
            read_seq: 2
        }
    );
    assert_eq!(convs(s, "bob").await.total_unread, 1);

    // total_unread adds up every conversation.
    // (bob's last read in `ab` was at 220, so these are newer.)
    send(s, dm("cat", "bob", 230, "c1")).await;
    send(s, dm("cat", "bob", 231, "c2")).await;
    let l = convs(s, "bob").await;
    assert_eq!(l.total_unread, 3);
    let unread: Vec<(&str, u64)> = l
        .convs
        .iter()
        .map(|c| (c.conv.as_str(), c.unread))
        .collect();
    assert_eq!(
        unread,
        vec![(dm_conv("bob", "cat").as_str(), 2), (ab.as_str(), 1)]
    );

    // Sending moves the sender's read position to the new message.
    let m = send(s, dm("bob", "ann", 250, "b4")).await;
    assert_eq!(m.seq, 4);
    let l = convs(s, "bob").await;
    let c = l.convs.iter().find(|c| c.conv == ab).unwrap();
    assert_eq!((c.max_seq, c.read_seq, c.unread), (4, 4, 0));
    assert_eq!(l.total_unread, 2);
    let l = convs(s, "ann").await;
    assert_eq!(
        (l.convs[0].read_seq, l.convs[0].unread, l.total_unread),
        (3, 1, 1)
    );
    assert_eq!(
        s.mark_read("bob", &ab, 3, 300).await.unwrap(),
        ReadOutcome {
            advanced: false,
            read_seq: 4
        }
    );
    assert_eq!(
        s.mark_read("ann", &ab, 4, 300).await.unwrap(),
        ReadOutcome {
            advanced: true,
            read_seq: 4
        }
    );
    assert_eq!(convs(s, "ann").await.total_unread, 0);
}

// ----- recall and delete -----

pub async fn recall_rules(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    let orig = send(s, dm("ann", "bob", 1000, "r1")).await;
    send(s, dm("ann", "bob", 5000, "r2")).await;

    assert_err!(
        s.recall(&ab, 1, "bob", WINDOW, 2000).await,
        StoreError::Forbidden(_)
    );
    assert_err!(
        s.recall(&ab, 1, "ann", WINDOW, 1000 + WINDOW + 1).await,
        StoreError::Forbidden(_)
    );
    assert_err!(
        s.recall(&ab, 3, "ann", WINDOW, 2000).await,
        StoreError::Invalid(_)
    );
    assert_err!(
        s.recall(&ab, 0, "ann", WINDOW, 2000).await,
        StoreError::Invalid(_)
    );
    assert_err!(
        s.recall(&dm_conv("ann", "cat"), 1, "ann", WINDOW, 2000)
            .await,
        StoreError::Invalid(_)
    );
    // Refused recalls changed nothing.
    assert_eq!(history(s, "bob", &ab, all()).await[0], orig);

    // The window's last millisecond still counts.
    let recalled = s
        .recall(&ab, 1, "ann", WINDOW, 1000 + WINDOW)
        .await
        .unwrap();
    let expected = StoredMessage {
        content: None,
        recalled: true,
        ..orig.clone()
    };
    assert_eq!(recalled, expected);
    for u in ["ann", "bob"] {
        let h = history(s, u, &ab, all()).await;
        assert_eq!(h[0], expected);
        assert_eq!(h[1].seq, 2);
        assert!(!h[1].recalled);
        assert_eq!(h[1].content.as_deref(), Some(text("r2").as_str()));
    }
    // Twice is fine.
    assert_eq!(
        s.recall(&ab, 1, "ann", WINDOW, 1000 + WINDOW)
            .await
            .unwrap(),
        expected
    );
    // Still the sender only.
    assert_err!(
        s.recall(&ab, 1, "bob", WINDOW, 1000 + WINDOW).await,
        StoreError::Forbidden(_)
    );

    // A recall is activity of the conversation.
    let l = convs(s, "bob").await;
    assert_eq!(l.convs[0].updated_at, 1000 + WINDOW);
    assert_eq!(l.convs[0].last.as_ref().map(|m| m.seq), Some(2));
    // Recalling the newest message shows in `last`.
    let r2 = s.recall(&ab, 2, "ann", WINDOW, 6000).await.unwrap();
    assert_eq!(
        (r2.seq, r2.content.as_deref(), r2.recalled),
        (2, None, true)
    );
    let l = convs(s, "bob").await;
    assert_eq!(l.convs[0].last, Some(r2));
    assert_eq!(l.convs[0].updated_at, 1000 + WINDOW);
}

pub async fn delete_for_user_hides_for_that_user_only(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    for i in 1..=4 {
        send(s, dm("ann", "bob", 100 + i, &format!("d{i}"))).await;
    }
    s.delete_for_user("ann", &ab, &[2, 3]).await.unwrap();
    assert_eq!(history_seqs(s, "ann", &ab, all()).await, vec![1, 4]);
    assert_eq!(history_seqs(s, "bob", &ab, all()).await, vec![1, 2, 3, 4]);

    // One missing seq: nothing hidden.
    assert_err!(
        s.delete_for_user("ann", &ab, &[1, 99]).await,
        StoreError::Invalid(_)
    );
    assert_err!(
        s.delete_for_user("bob", &ab, &[0]).await,
        StoreError::Invalid(_)
    );
    assert_eq!(history_seqs(s, "ann", &ab, all()).await, vec![1, 4]);
    assert_eq!(history_seqs(s, "bob", &ab, all()).await, vec![1, 2, 3, 4]);

    // Deleting the newest message changes `last` for that user only.
    s.delete_for_user("ann", &ab, &[4]).await.unwrap();
    assert_eq!(
        convs(s, "ann").await.convs[0].last.as_ref().map(|m| m.seq),
        Some(1)
    );
    assert_eq!(
        convs(s, "bob").await.convs[0].last.as_ref().map(|m| m.seq),
        Some(4)
    );
    // Pages skip hidden messages.
    assert_eq!(
        history_seqs(s, "ann", &ab, page(None, None, 1)).await,
        vec![1]
    );
    assert_eq!(
        history_seqs(s, "ann", &ab, page(None, Some(1), 10)).await,
        Vec::<u64>::new()
    );
    // Hiding is not deleting.
    assert_eq!(s.max_seq(&ab).await.unwrap(), 4);
    let m = s
        .message(&ab, 2)
        .await
        .unwrap()
        .expect("message 2 is stored");
    assert_eq!((m.seq, m.from.as_str()), (2, "ann"));
    assert!(s.message(&ab, 5).await.unwrap().is_none());
    assert!(s.message(&ab, 0).await.unwrap().is_none());
    assert!(s.message(&ab, u64::MAX).await.unwrap().is_none());
}

// ----- conversation list -----

pub async fn conversations_order_since_limit(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    let ac = dm_conv("ann", "cat");
    let ad = dm_conv("ann", "dan");
    send(s, dm("bob", "ann", 100, "b1")).await;
    send(s, dm("cat", "ann", 200, "c1")).await;
    send(s, dm("dan", "ann", 300, "d1")).await;
    send(s, dm("bob", "ann", 400, "b2")).await;

    let l = convs(s, "ann").await;
    assert_eq!(conv_ids(&l), vec![ab.as_str(), ad.as_str(), ac.as_str()]);
    assert_eq!(l.total_unread, 4);
    let first = &l.convs[0];
    assert_eq!(first.peer.as_deref(), Some("bob"));
    assert_eq!(first.group, None);
    assert_eq!(
        (
            first.max_seq,
            first.read_seq,
            first.unread,
            first.updated_at
        ),
        (2, 0, 2, 400)
    );
    let last = first.last.as_ref().unwrap();
    assert_eq!(
        (last.seq, last.from.as_str(), last.content.as_deref()),
        (2, "bob", Some(text("b2").as_str()))
    );
    assert_eq!(l.convs[1].peer.as_deref(), Some("dan"));
    assert_eq!(l.convs[1].updated_at, 300);
    assert_eq!(l.convs[2].peer.as_deref(), Some("cat"));
    assert_eq!(l.convs[2].updated_at, 200);

    // `since` is exclusive; total_unread ignores the filter.
    let l = s.conversations("ann", 250, 100).await.unwrap();
    assert_eq!(
        (conv_ids(&l), l.total_unread),
        (vec![ab.as_str(), ad.as_str()], 4)
    );
    let l = s.conversations("ann", 300, 100).await.unwrap();
    assert_eq!((conv_ids(&l), l.total_unread), (vec![ab.as_str()], 4));
    let l = s.conversations("ann", 400, 100).await.unwrap();
    assert_eq!((conv_ids(&l), l.total_unread), (vec![], 4));
    // `limit` keeps the newest.
    let l = s.conversations("ann", 0, 2).await.unwrap();
    assert_eq!(
        (conv_ids(&l), l.total_unread),
        (vec![ab.as_str(), ad.as_str()], 4)
    );
    let l = s.conversations("ann", 250, 1).await.unwrap();
    assert_eq!((conv_ids(&l), l.total_unread), (vec![ab.as_str()], 4));

    // Reading is activity for the reader only.
    s.mark_read("ann", &ac, 1, 500).await.unwrap();
    let l = convs(s, "ann").await;
    assert_eq!(conv_ids(&l), vec![ac.as_str(), ab.as_str(), ad.as_str()]);
    assert_eq!(
        (l.convs[0].updated_at, l.convs[0].unread, l.total_unread),
        (500, 0, 3)
    );
    let l = convs(s, "cat").await;
    assert_eq!(conv_ids(&l), vec![ac.as_str()]);
    assert_eq!(l.convs[0].peer.as_deref(), Some("ann"));
    assert_eq!(
        (
            l.convs[0].updated_at,
            l.convs[0].read_seq,
            l.convs[0].unread
        ),
        (200, 1, 0)
    );

    // A user with no conversations.
    let l = convs(s, "zed").await;
    assert_eq!((l.convs.len(), l.total_unread), (0, 0));
}

// ----- history pages -----

pub async fn history_pages(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    for i in 1..=10 {
        send(s, dm("ann", "bob", 100 + i, &format!("h{i}"))).await;
    }
    let h = |before, after, limit| history_seqs(s, "bob", &ab, page(before, after, limit));
    assert_eq!(h(None, None, 100).await, (1..=10).collect::<Vec<u64>>());
    // Newest `limit`, ascending.
    assert_eq!(h(None, None, 3).await, vec![8, 9, 10]);
    // `before_seq` is exclusive.
    assert_eq!(h(Some(5), None, 100).await, vec![1, 2, 3, 4]);
    assert_eq!(h(Some(5), None, 2).await, vec![3, 4]);
    assert_eq!(h(Some(1), None, 100).await, Vec::<u64>::new());
    assert_eq!(h(Some(11), None, 2).await, vec![9, 10]);
    // `after_seq` is exclusive and takes the oldest `limit` above it.
    assert_eq!(h(None, Some(7), 100).await, vec![8, 9, 10]);
    assert_eq!(h(None, Some(2), 3).await, vec![3, 4, 5]);
    assert_eq!(h(None, Some(10), 100).await, Vec::<u64>::new());
    assert_eq!(h(None, Some(0), 2).await, vec![1, 2]);
    // Both bounds.
    assert_eq!(h(Some(6), Some(2), 100).await, vec![3, 4, 5]);
    assert_eq!(h(Some(6), Some(2), 2).await, vec![3, 4]);
    assert_eq!(h(Some(3), Some(2), 100).await, Vec::<u64>::new());
    // Bounds beyond any seq (up to u64::MAX) are plain numbers too.
    assert_eq!(h(Some(u64::MAX), None, 2).await, vec![9, 10]);
    assert_eq!(h(Some(1 << 63), None, 2).await, vec![9, 10]);
    assert_eq!(h(Some(u64::MAX), Some(8), 100).await, vec![9, 10]);
    assert_eq!(h(None, Some(u64::MAX), 100).await, Vec::<u64>::new());
    assert_eq!(h(None, Some(1 << 63), 100).await, Vec::<u64>::new());
    // Both users see the same.
    assert_eq!(
        history(s, "ann", &ab, page(Some(3), None, 10)).await,
        history(s, "bob", &ab, page(Some(3), None, 10)).await
    );
}

// ----- groups -----

pub async fn group_create_join_and_refusals(s: &dyn Store) {
    let g = group_conv("team");
    assert_eq!(s.get_group("team").await.unwrap(), None);
    let created = send(s, create("team", "ann", 100)).await;
    assert_eq!(
        (created.seq, created.group.as_deref(), created.kind.as_str()),
        (1, Some("team"), "system")
    );
    assert_eq!(
        s.get_group("team").await.unwrap(),
        Some(GroupRecord {
            gid: "team".into(),
            name: "team name".into(),
            owner: "ann".into(),
            members: vec!["ann".into()],
            created_at: 100,
        })
    );
    assert_eq!(send(s, join("team", "ann", "bob", 110)).await.seq, 2);
    assert_eq!(send(s, join("team", "ann", "cat", 120)).await.seq, 3);
    let rec = s.get_group("team").await.unwrap().unwrap();
    assert_eq!(rec.members, vec!["ann", "bob", "cat"]);
    assert_eq!(rec.owner, "ann");

    // Not a member: refused, nothing stored.
    assert_eq!(
        append_one(s, gmsg("team", "dan", 130, "d1")).await,
        Appended::Refused(Refusal::NotMember)
    );
    assert_eq!(
        append_one(s, gmsg("nope", "ann", 130, "n1")).await,
        Appended::Refused(Refusal::NoSuchGroup)
    );
    assert_eq!(
        append_one(s, join("nope", "ann", "bob", 130)).await,
        Appended::Refused(Refusal::NoSuchGroup)
    );
    assert_eq!(s.max_seq(&g).await.unwrap(), 3);
    assert_eq!(s.max_seq(&group_conv("nope")).await.unwrap(), 0);
    assert_eq!(s.get_group("nope").await.unwrap(), None);
    // A refused message's client_msg_id stays unused.
    let m = append_one(s, gmsg("team", "bob", 140, "d1")).await;
    assert!(matches!(&m, Appended::New(m) if m.seq == 4), "{m:?}");

    // A refusal inside a batch leaves the rest of the batch alone.
    let out = append(
        s,
        vec![
            gmsg("team", "cat", 150, "c1"),
            gmsg("team", "dan", 151, "d2"),
            gmsg("team", "ann", 152, "a1"),
        ],
    )
    .await;
    assert_eq!(out[1], Appended::Refused(Refusal::NotMember));
    assert_eq!(
        out.iter()
            .map(|a| a.message().map(|m| m.seq))
            .collect::<Vec<_>>(),
        vec![Some(5), None, Some(6)]
    );

    assert_err!(s.history("dan", &g, all()).await, StoreError::NotMember);
    assert_eq!(
        history_seqs(s, "ann", &g, all()).await,
        vec![1, 2, 3, 4, 5, 6]
    );
    // ann's own sends put her at 6; bob sent 4 after joining at 2; cat
    // sent 5 after joining at 3.
    assert_eq!(
        s.read_positions(&g).await.unwrap(),
        vec![
            ("ann".to_owned(), 6),
            ("bob".to_owned(), 4),
            ("cat".to_owned(), 5)
        ]
    );
}

pub async fn group_unread_starts_at_join(s: &dyn Store) {
    let g = group_conv("team");
    send(s, create("team", "ann", 100)).await;
    send(s, gmsg("team", "ann", 110, "a1")).await;
    send(s, gmsg("team", "ann", 120, "a2")).await;
    assert_eq!(send(s, join("team", "ann", "bob", 130)).await.seq, 4);
    send(s, gmsg("team", "ann", 140, "a3")).await;

    // bob did not see 1..3; his join message and later ones are unread.
    let l = convs(s, "bob").await;
    assert_eq!(conv_ids(&l), vec![g.as_str()]);
    let c = &l.convs[0];
    assert_eq!(
        (c.peer.as_deref(), c.group.as_deref()),
        (None, Some("team"))
    );
    assert_eq!(
        (c.max_seq, c.read_seq, c.unread, c.updated_at),
        (5, 3, 2, 140)
    );
    assert_eq!(
        c.last.as_ref().map(|m| (m.seq, m.from.as_str())),
        Some((5, "ann"))
    );
    assert_eq!(l.total_unread, 2);
    let l = convs(s, "ann").await;
    assert_eq!(
        (l.convs[0].read_seq, l.convs[0].unread, l.total_unread),
        (5, 0, 0)
    );
    assert_eq!(
        s.read_positions(&g).await.unwrap(),
        vec![("ann".to_owned(), 5), ("bob".to_owned(), 3)]
    );

    assert_eq!(
        s.mark_read("bob", &g, 5, 200).await.unwrap(),
        ReadOutcome {
            advanced: true,
            read_seq: 5
        }
    );
    assert_eq!(convs(s, "bob").await.total_unread, 0);
    assert_eq!(
        s.read_positions(&g).await.unwrap(),
        vec![("ann".to_owned(), 5), ("bob".to_owned(), 5)]
    );
}

pub async fn group_leave_bounds_view(s: &dyn Store) {
    let g = group_conv("team");
    send(s, diffused(create("team", "ann", 100))).await;
    send(s, diffused(join("team", "ann", "bob", 110))).await;
    send(s, diffused(join("team", "ann", "cat", 120))).await;
    send(s, diffused(gmsg("team", "bob", 130, "b1"))).await;
    assert_eq!(
        send(s, diffused(leave("team", "ann", "cat", 140)))
            .await
            .seq,
        5
    );
    send(s, diffused(gmsg("team", "ann", 150, "a1"))).await;
    send(s, diffused(gmsg("team", "bob", 160, "b2"))).await;

    let rec = s.get_group("team").await.unwrap().unwrap();
    assert_eq!(
        (rec.owner.as_str(), rec.members),
        ("ann", vec!["ann".to_owned(), "bob".to_owned()])
    );
    assert_eq!(
        s.read_positions(&g).await.unwrap(),
        vec![("ann".to_owned(), 6), ("bob".to_owned(), 7)]
    );

    // Write diffusion: members but the sender; a joiner gets their join
    // message, a removed member their removal message and nothing after.
    assert_eq!(queue_seqs(s, "ann", &g).await, vec![4, 7]);
    assert_eq!(queue_seqs(s, "bob", &g).await, vec![2, 3, 5, 6]);
    assert_eq!(queue_seqs(s, "cat", &g).await, vec![3, 4, 5]);

    // cat's view ends at the removal message.
    assert_eq!(history_seqs(s, "cat", &g, all()).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(
        history_seqs(s, "cat", &g, page(None, Some(3), 10)).await,
        vec![4, 5]
    );
    assert_eq!(
        history_seqs(s, "cat", &g, page(None, None, 2)).await,
        vec![4, 5]
    );
    assert_eq!(
        history_seqs(s, "cat", &g, page(Some(7), None, 10)).await,
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        history_seqs(s, "bob", &g, all()).await,
        vec![1, 2, 3, 4, 5, 6, 7]
    );
    let l = convs(s, "cat").await;
    let c = &l.convs[0];
    assert_eq!(
        (c.max_seq, c.read_seq, c.unread, c.updated_at),
        (5, 2, 3, 140)
    );
    assert_eq!(c.last.as_ref().map(|m| m.seq), Some(5));
    assert_eq!(l.total_unread, 3);

    // No longer a member.
    assert_eq!(
        append_one(s, gmsg("team", "cat", 170, "c1")).await,
        Appended::Refused(Refusal::NotMember)
    );
    assert_eq!(s.max_seq(&g).await.unwrap(), 7);
    // Reading past the end stops at the removal.
    assert_eq!(
        s.mark_read("cat", &g, 7, 200).await.unwrap(),
        ReadOutcome {
            advanced: true,
            read_seq: 5
        }
    );
    assert_eq!(convs(s, "cat").await.total_unread, 0);
}

pub async fn group_diffusion_threshold(s: &dyn Store) {
    let g = group_conv("team");
    let up_to = |m: NewMessage, n: usize| NewMessage {
        inbox_members_up_to: n,
        ..m
    };
    send(s, up_to(create("team", "ann", 100), 3)).await;
    send(s, up_to(join("team", "ann", "bob", 110), 3)).await;
    send(s, up_to(join("team", "ann", "cat", 120), 3)).await;
    // 3 members, at most 3: write diffusion.
    send(s, up_to(gmsg("team", "ann", 130, "a1"), 3)).await;
    // 3 members, at most 2: read diffusion, nobody queued.
    send(s, up_to(gmsg("team", "ann", 140, "a2"), 2)).await;
    send(s, up_to(gmsg("team", "bob", 150, "b1"), 0)).await;
    assert_eq!(queue_seqs(s, "bob", &g).await, vec![2, 3, 4]);
    assert_eq!(queue_seqs(s, "cat", &g).await, vec![3, 4]);
    assert_eq!(queue_seqs(s, "ann", &g).await, Vec::<u64>::new());
    // Read diffusion still counts as unread.
    assert_eq!(convs(s, "cat").await.total_unread, 4);
}

pub async fn group_owner_transfer(s: &dyn Store) {
    let g = group_conv("team");
    send(s, create("team", "ann", 100)).await;
    send(s, join("team", "ann", "bob", 110)).await;
    send(s, join("team", "ann", "cat", 120)).await;
    let members = |r: GroupRecord| (r.owner, r.members);
    let strs = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();

    // The owner leaves: the longest-standing member takes over.
    send(s, leave("team", "ann", "ann", 130)).await;
    assert_eq!(
        members(s.get_group("team").await.unwrap().unwrap()),
        ("bob".into(), strs(&["bob", "cat"]))
    );
    assert_eq!(
        append_one(s, gmsg("team", "ann", 135, "a0")).await,
        Appended::Refused(Refusal::NotMember)
    );

    // Re-added, ann is the newest member.
    send(s, join("team", "bob", "ann", 140)).await;
    assert_eq!(
        members(s.get_group("team").await.unwrap().unwrap()),
        ("bob".into(), strs(&["bob", "cat", "ann"]))
    );
    assert_eq!(send(s, gmsg("team", "ann", 150, "a1")).await.seq, 6);

    send(s, leave("team", "bob", "bob", 160)).await;
    assert_eq!(
        members(s.get_group("team").await.unwrap().unwrap()),
        ("cat".into(), strs(&["cat", "ann"]))
    );

    // A member other than the owner leaving keeps the owner.
    assert_eq!(send(s, leave("team", "cat", "ann", 170)).await.seq, 8);
    assert_eq!(
        members(s.get_group("team").await.unwrap().unwrap()),
        ("cat".into(), strs(&["cat"]))
    );
    assert_eq!(
        s.read_positions(&g).await.unwrap(),
        vec![("cat".to_owned(), 8)]
    );
    // ann's view now ends at her second removal.
    send(s, gmsg("team", "cat", 180, "c1")).await;
    assert_eq!(
        history_seqs(s, "ann", &g, all()).await,
        (1..=8).collect::<Vec<u64>>()
    );
    assert_eq!(
        history_seqs(s, "cat", &g, all()).await,
        (1..=9).collect::<Vec<u64>>()
    );
}

pub async fn group_version_follows_changes(s: &dyn Store) {
    assert_eq!(s.group_version("vg").await.unwrap(), None);
    send(s, create("vg", "ann", 100)).await;
    assert_eq!(s.group_version("vg").await.unwrap(), Some(1));
    send(s, join("vg", "ann", "bob", 101)).await;
    send(s, gmsg("vg", "ann", 102, "v1")).await;
    assert_eq!(s.group_version("vg").await.unwrap(), Some(2));
    send(s, leave("vg", "ann", "bob", 103)).await;
    send(s, gmsg("vg", "ann", 104, "v2")).await;
    assert_eq!(s.group_version("vg").await.unwrap(), Some(4));
    // A refused message changes nothing.
    let refused = append_one(s, gmsg("vg", "bob", 105, "v3")).await;
    assert_eq!(refused, Appended::Refused(Refusal::NotMember));
    assert_eq!(s.group_version("vg").await.unwrap(), Some(4));
}

// ----- durability -----

/// Writes data; the caller then drops the store and reopens it for
/// [`reopen_after`].
pub async fn reopen_before(s: &dyn Store) {
    s.create_user(user("ann", 10)).await.unwrap();
    for i in 1..=3 {
        send(s, dm("ann", "bob", 100 + i, &format!("p{i}"))).await;
    }
    send(s, create("team", "ann", 200)).await;
    send(s, join("team", "ann", "bob", 210)).await;
    s.mark_read("bob", &dm_conv("ann", "bob"), 2, 300)
        .await
        .unwrap();
}

pub async fn reopen_after(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    assert_eq!(s.get_user("ann").await.unwrap(), Some(user("ann", 10)));
    assert_eq!(s.max_seq(&ab).await.unwrap(), 3);
    let h = history(s, "bob", &ab, all()).await;
    assert_eq!(seqs(&h), vec![1, 2, 3]);
    assert_eq!(h[2].content.as_deref(), Some(text("p3").as_str()));
    assert_eq!(queue_seqs(s, "bob", &ab).await, vec![1, 2, 3]);
    let l = convs(s, "bob").await;
    let c = l.convs.iter().find(|c| c.conv == ab).unwrap();
    assert_eq!((c.read_seq, c.unread), (2, 1));
    let rec = s.get_group("team").await.unwrap().unwrap();
    assert_eq!(
        (rec.owner.as_str(), rec.members),
        ("ann", vec!["ann".to_owned(), "bob".to_owned()])
    );

    // Deduplication and seq allocation carry on.
    let dup = append_one(s, dm("ann", "bob", 400, "p1")).await;
    assert!(
        matches!(&dup, Appended::Duplicate(m) if m.seq == 1 && m.ts == 101),
        "{dup:?}"
    );
    assert_eq!(send(s, dm("bob", "ann", 401, "p4")).await.seq, 4);
    assert_eq!(send(s, gmsg("team", "bob", 402, "g1")).await.seq, 3);
}

// ----- users and friends -----

pub async fn users_and_friends(s: &dyn Store) {
    s.health().await.unwrap();
    for (i, u) in ["ann", "bob", "cat", "dan"].into_iter().enumerate() {
        s.create_user(user(u, i as i64)).await.unwrap();
    }
    let other = UserRecord {
        name: "someone else".into(),
        ..user("ann", 99)
    };
    assert_err!(s.create_user(other).await, StoreError::Conflict);
    assert_eq!(s.get_user("ann").await.unwrap(), Some(user("ann", 0)));
    assert_eq!(s.get_user("nobody").await.unwrap(), None);

    let lists = |friends: &[&str], incoming: &[&str], outgoing: &[&str]| {
        let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect();
        FriendLists {
            friends: v(friends),
            incoming: v(incoming),
            outgoing: v(outgoing),
        }
    };
    assert_eq!(s.friends("ann").await.unwrap(), FriendLists::default());

    assert_eq!(
        s.friend_request("ann", "bob", 100).await.unwrap(),
        FriendStatus::Requested
    );
    assert_eq!(
        s.friend_request("ann", "bob", 101).await.unwrap(),
        FriendStatus::Requested
    );
    assert_eq!(s.friends("ann").await.unwrap(), lists(&[], &[], &["bob"]));
    assert_eq!(s.friends("bob").await.unwrap(), lists(&[], &["ann"], &[]));

    // Asking back accepts.
    assert_eq!(
        s.friend_request("bob", "ann", 102).await.unwrap(),
        FriendStatus::Friends
    );
    assert_eq!(s.friends("ann").await.unwrap(), lists(&["bob"], &[], &[]));
    assert_eq!(s.friends("bob").await.unwrap(), lists(&["ann"], &[], &[]));
    assert_eq!(
        s.friend_request("ann", "bob", 103).await.unwrap(),
        FriendStatus::Friends
    );
    assert_eq!(
        s.friend_request("bob", "ann", 103).await.unwrap(),
        FriendStatus::Friends
    );

    // Sorted lists.
    s.friend_request("ann", "dan", 104).await.unwrap();
    s.friend_request("ann", "cat", 105).await.unwrap();
    s.friend_request("dan", "bob", 106).await.unwrap();
    s.friend_request("cat", "bob", 107).await.unwrap();
    assert_eq!(
        s.friends("ann").await.unwrap(),
        lists(&["bob"], &[], &["cat", "dan"])
    );
    assert_eq!(
        s.friends("bob").await.unwrap(),
        lists(&["ann"], &["cat", "dan"], &[])
    );
    assert_eq!(
        s.friend_request("cat", "ann", 108).await.unwrap(),
        FriendStatus::Friends
    );
    assert_eq!(
        s.friends("ann").await.unwrap(),
        lists(&["bob", "cat"], &[], &["dan"])
    );

    // Deleting ends the friendship both ways; idempotent.
    s.friend_delete("bob", "ann").await.unwrap();
    assert_eq!(
        s.friends("ann").await.unwrap(),
        lists(&["cat"], &[], &["dan"])
    );
    assert_eq!(
        s.friends("bob").await.unwrap(),
        lists(&[], &["cat", "dan"], &[])
    );
    s.friend_delete("ann", "bob").await.unwrap();
    assert_eq!(
        s.friends("bob").await.unwrap(),
        lists(&[], &["cat", "dan"], &[])
    );
    // ...and drops requests either way.
    s.friend_delete("dan", "ann").await.unwrap();
    assert_eq!(s.friends("ann").await.unwrap(), lists(&["cat"], &[], &[]));
    assert_eq!(s.friends("dan").await.unwrap(), lists(&[], &[], &["bob"]));
    s.friend_delete("bob", "dan").await.unwrap();
    assert_eq!(s.friends("dan").await.unwrap(), FriendLists::default());
    assert_eq!(s.friends("bob").await.unwrap(), lists(&[], &["cat"], &[]));
    // After a delete, a request starts over.
    assert_eq!(
        s.friend_request("bob", "ann", 200).await.unwrap(),
        FriendStatus::Requested
    );
}

// ----- message ids -----

/// An id with the generator's layout (`tern_core::ids`).
fn id_of(ms: u64, node: u64, seq: u64) -> u64 {
    (ms << 22) | (node << 12) | seq
}

/// `msg_id` is unique: a batch that repeats a stored id fails as a whole
/// and stores nothing.
pub async fn msg_id_is_unique(s: &dyn Store) {
    let ab = dm_conv("ann", "bob");
    let first = send(s, dm("ann", "bob", 100, "u1")).await;
    let mut again = dm("bob", "ann", 101, "u2");
    again.msg_id = first.msg_id;
    let r = s.append_messages(vec![again]).await;
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
    assert_eq!(s.max_seq(&ab).await.unwrap(), 1);
    // The store goes on.
    assert_eq!(send(s, dm("bob", "ann", 102, "u3")).await.seq, 2);
}

/// `max_msg_id(node)` is the highest stored id with that node's bits.
pub async fn max_msg_id_per_node(s: &dyn Store) {
    assert_eq!(s.max_msg_id(3).await.unwrap(), 0);
    let ids = [
        id_of(5_000, 3, 0),
        id_of(9_000, 5, 7),
        id_of(7_000, 3, 4095),
        id_of(6_000, 3, 2),
        id_of(8_000, 1023, 1),
    ];
    for (i, id) in ids.iter().enumerate() {
        let mut m = dm("ann", "bob", 100 + i as i64, &format!("n{i}"));
        m.msg_id = *id;
        send(s, m).await;
    }
    assert_eq!(s.max_msg_id(3).await.unwrap(), id_of(7_000, 3, 4095));
    assert_eq!(s.max_msg_id(5).await.unwrap(), id_of(9_000, 5, 7));
    assert_eq!(s.max_msg_id(1023).await.unwrap(), id_of(8_000, 1023, 1));
    assert_eq!(s.max_msg_id(4).await.unwrap(), 0);
}

// ----- membership units -----

/// A group's creation with its first members, and members added, are one
/// unit each: all stored, or (when a user to add does not exist, the group
/// exists already, or is missing) nothing at all.
pub async fn group_units_are_all_or_nothing(s: &dyn Store) {
    for u in ["ann", "bob", "cat", "dan"] {
        s.create_user(user(u, 1)).await.unwrap();
    }
    let g = group_conv("unit");
    // A missing member: nothing of the creation is stored.
    let r = s
        .append_unit(vec![
            create("unit", "ann", 100),
            join("unit", "ann", "bob", 100),
            join("unit", "ann", "ghost", 100),
        ])
        .await;
    assert!(matches!(r, Err(StoreError::NoSuchUser)), "{r:?}");
    assert_eq!(s.get_group("unit").await.unwrap(), None);
    assert_eq!(s.group_version("unit").await.unwrap(), None);
    assert_eq!(s.max_seq(&g).await.unwrap(), 0);
    for u in ["ann", "bob"] {
        assert!(convs(s, u).await.convs.is_empty(), "{u} has a conversation");
        assert_eq!(queue(s, u).await, (vec![], false));
    }

    let made = s
        .append_unit(vec![
            diffused(create("unit", "ann", 110)),
            diffused(join("unit", "ann", "bob", 110)),
            diffused(join("unit", "ann", "cat", 110)),
        ])
        .await
        .unwrap();
    assert_eq!(made.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let rec = s.get_group("unit").await.unwrap().unwrap();
    assert_eq!(rec.members, ["ann", "bob", "cat"]);
    assert_eq!(s.group_version("unit").await.unwrap(), Some(3));
    // Each member's queue starts at their own join.
    assert_eq!(queue_seqs(s, "cat", &g).await, vec![3]);

    // Created again: refused, nothing changes.
    let r = s.append_unit(vec![create("unit", "bob", 120)]).await;
    assert!(matches!(r, Err(StoreError::Conflict)), "{r:?}");
    // Adding with one unknown user: none of them is added.
    let r = s
        .append_unit(vec![
            diffused(join("unit", "bob", "dan", 130)),
            diffused(join("unit", "bob", "nobody", 130)),
        ])
        .await;
    assert!(matches!(r, Err(StoreError::NoSuchUser)), "{r:?}");
    assert_eq!(s.max_seq(&g).await.unwrap(), 3);
    assert_eq!(
        s.get_group("unit").await.unwrap().unwrap().members,
        ["ann", "bob", "cat"]
    );
    assert!(convs(s, "dan").await.convs.is_empty());
    // A missing group: refused.
    let r = s.append_unit(vec![join("none", "bob", "dan", 140)]).await;
    assert!(matches!(r, Err(StoreError::NoSuchGroup)), "{r:?}");
    assert_eq!(s.get_group("none").await.unwrap(), None);

    // A unit beside ordinary messages in the same moment: both stored.
    let (unit, plain) = tokio::join!(
        s.append_unit(vec![diffused(join("unit", "bob", "dan", 150))]),
        s.append_messages(vec![dm("ann", "bob", 150, "beside")])
    );
    assert_eq!(unit.unwrap()[0].seq, 4);
    assert!(matches!(plain.unwrap()[0], Appended::New(_)));
    assert_eq!(
        s.get_group("unit").await.unwrap().unwrap().members,
        ["ann", "bob", "cat", "dan"]
    );
}

// ----- offline queue across many conversations -----

/// The cap counts the whole queue across many conversations: the newest
/// `cap` in arrival order, seq order within each conversation, truncated
/// once.
pub async fn offline_cap_across_many_conversations(s: &dyn Store) {
    let convs_n = 20;
    let per_conv = 30;
    let cap = 100u32;
    // Interleaved: round r sends one message in every conversation.
    for r in 0..per_conv {
        let batch = (0..convs_n)
            .map(|c| dm(&format!("s{c:02}"), "zed", 1000 + r, &format!("r{r}c{c}")))
            .collect();
        append(s, batch).await;
    }
    let b = s.offline_fetch("zed", cap).await.unwrap();
    assert!(b.truncated);
    assert_eq!(b.msgs.len(), cap as usize);
    assert!(b.msgs.windows(2).all(|w| w[0].msg_id < w[1].msg_id));
    // The newest five rounds of every conversation.
    for m in &b.msgs {
        assert!(m.seq > per_conv as u64 - 5, "{} {}", m.conv, m.seq);
    }
    let again = s.offline_fetch("zed", cap).await.unwrap();
    assert!(!again.truncated);
    assert_eq!(
        again
            .msgs
            .iter()
            .map(|m| (&m.conv, m.seq))
            .collect::<Vec<_>>(),
        b.msgs.iter().map(|m| (&m.conv, m.seq)).collect::<Vec<_>>()
    );
}

/// `group_count` counts current memberships only, and
/// `outgoing_request_count` unanswered requests only.
pub async fn per_user_counts(s: &dyn Store) {
    for (i, u) in ["ann", "bob", "cat", "dan"].into_iter().enumerate() {
        s.create_user(user(u, i as i64)).await.unwrap();
    }
    assert_eq!(s.group_count("ann").await.unwrap(), 0);
    send(s, diffused(create("g1", "ann", 100))).await;
    send(s, diffused(join("g1", "ann", "bob", 110))).await;
    send(s, diffused(create("g2", "bob", 120))).await;
    send(s, diffused(join("g2", "bob", "ann", 130))).await;
    // A DM conversation is not a group.
    send(s, dm("ann", "cat", 140, "hi")).await;
    assert_eq!(s.group_count("ann").await.unwrap(), 2);
    assert_eq!(s.group_count("bob").await.unwrap(), 2);
    assert_eq!(s.group_count("cat").await.unwrap(), 0);
    // A former member no longer counts; coming back counts again.
    send(s, diffused(leave("g2", "ann", "ann", 150))).await;
    assert_eq!(s.group_count("ann").await.unwrap(), 1);
    assert_eq!(s.group_count("bob").await.unwrap(), 2);
    send(s, diffused(join("g2", "bob", "ann", 160))).await;
    assert_eq!(s.group_count("ann").await.unwrap(), 2);

    assert_eq!(s.outgoing_request_count("ann").await.unwrap(), 0);
    s.friend_request("ann", "bob", 200).await.unwrap();
    s.friend_request("ann", "cat", 201).await.unwrap();
    s.friend_request("ann", "cat", 202).await.unwrap();
    s.friend_request("dan", "ann", 203).await.unwrap();
    assert_eq!(s.outgoing_request_count("ann").await.unwrap(), 2);
    assert_eq!(s.outgoing_request_count("bob").await.unwrap(), 0);
    assert_eq!(s.outgoing_request_count("dan").await.unwrap(), 1);
    // Accepted: no longer outstanding on either side.
    s.friend_request("bob", "ann", 204).await.unwrap();
    assert_eq!(s.outgoing_request_count("ann").await.unwrap(), 1);
    assert_eq!(s.outgoing_request_count("bob").await.unwrap(), 0);
    s.friend_delete("cat", "ann").await.unwrap();
    assert_eq!(s.outgoing_request_count("ann").await.unwrap(), 0);
}
