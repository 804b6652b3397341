//! Appends: gap-free seqs in input order, deduplication by
//! `client_msg_id` across and within batches, unique message ids.

use super::*;

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
