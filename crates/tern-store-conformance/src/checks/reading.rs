//! What a user reads: read positions and unread counts, recall and
//! delete, the conversation list, history pages.

use super::*;

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

/// The other party's delivered and read positions in the list (1:1 only):
/// acks move delivered, reads move both, neither goes back.
pub async fn peer_positions_in_the_list(s: &dyn Store) {
    let ab = dm_conv("pam", "pia");
    for i in 1..=3 {
        send(s, dm("pam", "pia", 100 + i, &format!("p{i}"))).await;
    }
    let peer = |l: &ConvList, conv: &str| {
        let c = l.convs.iter().find(|c| c.conv == conv).unwrap();
        (c.peer_delivered_seq, c.peer_read_seq)
    };
    assert_eq!(peer(&convs(s, "pam").await, &ab), (0, 0));
    s.ack("pia", &ab, 2, Some("pam")).await.unwrap();
    assert_eq!(peer(&convs(s, "pam").await, &ab), (2, 0));
    s.mark_read("pia", &ab, 1, 200).await.unwrap();
    assert_eq!(peer(&convs(s, "pam").await, &ab), (2, 1));
    s.mark_read("pia", &ab, 3, 210).await.unwrap();
    assert_eq!(peer(&convs(s, "pam").await, &ab), (3, 3));
    s.ack("pia", &ab, 1, Some("pam")).await.unwrap();
    assert_eq!(peer(&convs(s, "pam").await, &ab), (3, 3));
    // pia's side shows pam's positions: pam sent everything, so read it.
    assert_eq!(peer(&convs(s, "pia").await, &ab), (3, 3));

    // Notes to oneself and groups have no peer.
    let own = dm_conv("pam", "pam");
    send(s, dm("pam", "pam", 300, "self")).await;
    assert_eq!(peer(&convs(s, "pam").await, &own), (0, 0));
    send(s, create("gpp", "pam", 310)).await;
    assert_eq!(peer(&convs(s, "pam").await, &group_conv("gpp")), (0, 0));
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
