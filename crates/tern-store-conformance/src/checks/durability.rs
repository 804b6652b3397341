//! Durability: what is written survives a reopen, and carries on.

use super::*;

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
