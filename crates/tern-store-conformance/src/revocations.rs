//! Checks of the revoked-token records (`Store::revoke_token`,
//! `Store::revoked_tokens`).

use tern_core::store::Store;

fn sorted(mut v: Vec<(String, i64)>) -> Vec<(String, i64)> {
    v.sort();
    v
}

/// A revocation is listed until its token expires; revoking again is
/// harmless and never shortens the record; expired records go away.
pub async fn revoked_tokens_until_expiry(store: &dyn Store) {
    let a = "0123456789abcdef0123456789abcdef";
    let b = "fedcba9876543210fedcba9876543210";
    assert!(store.revoked_tokens(0).await.unwrap().is_empty());
    store.revoke_token(a, 2_000, 1_000).await.unwrap();
    store.revoke_token(b, 5_000, 1_000).await.unwrap();
    store.revoke_token(a, 1_500, 1_000).await.unwrap();
    assert_eq!(
        sorted(store.revoked_tokens(1_000).await.unwrap()),
        vec![(a.to_owned(), 2_000), (b.to_owned(), 5_000)]
    );
    // Expired at 2_000: no longer listed.
    assert_eq!(
        store.revoked_tokens(2_000).await.unwrap(),
        vec![(b.to_owned(), 5_000)]
    );
    // A later revocation drops the expired record for good.
    let c = "00000000000000000000000000000001";
    store.revoke_token(c, 9_000, 3_000).await.unwrap();
    assert_eq!(
        sorted(store.revoked_tokens(0).await.unwrap()),
        vec![(c.to_owned(), 9_000), (b.to_owned(), 5_000)]
    );
}

/// Written through one handle, seen through another (a restarted node, or
/// another node of the cluster).
pub async fn revoked_tokens_seen_by_other_handle(first: &dyn Store, second: &dyn Store) {
    let a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    first.revoke_token(a, i64::MAX - 1, 0).await.unwrap();
    assert!(second
        .revoked_tokens(1)
        .await
        .unwrap()
        .contains(&(a.to_owned(), i64::MAX - 1)));
}

/// 5.3: a user's revocation of every older token is listed until it
/// expires; for each field the later value wins; expired records go.
pub async fn revoked_users_until_expiry(store: &dyn Store) {
    let sorted = |mut v: Vec<(String, i64, i64)>| {
        v.sort();
        v
    };
    assert!(store.revoked_users(0).await.unwrap().is_empty());
    store
        .revoke_user_tokens("ann", 1_000, 2_000, 1_000)
        .await
        .unwrap();
    store
        .revoke_user_tokens("bob", 1_100, 5_000, 1_100)
        .await
        .unwrap();
    // An older call arriving late moves nothing back.
    store
        .revoke_user_tokens("ann", 900, 1_500, 1_100)
        .await
        .unwrap();
    assert_eq!(
        sorted(store.revoked_users(1_100).await.unwrap()),
        vec![("ann".into(), 1_000, 2_000), ("bob".into(), 1_100, 5_000)]
    );
    store
        .revoke_user_tokens("bob", 1_200, 6_000, 1_200)
        .await
        .unwrap();
    assert_eq!(
        store.revoked_users(2_000).await.unwrap(),
        vec![("bob".into(), 1_200, 6_000)]
    );
    // A user id of the longest form fits.
    let long = "u".repeat(64);
    store
        .revoke_user_tokens(&long, 3_000, 9_000, 3_000)
        .await
        .unwrap();
    assert_eq!(
        sorted(store.revoked_users(0).await.unwrap()),
        vec![("bob".into(), 1_200, 6_000), (long, 3_000, 9_000)]
    );
}
