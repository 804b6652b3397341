//! Users and friends, and the per-user counts.

use super::*;

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
