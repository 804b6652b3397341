//! The offline queue: order, the cap (per conversation and across many),
//! and what acks clear and report.

use super::*;

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
