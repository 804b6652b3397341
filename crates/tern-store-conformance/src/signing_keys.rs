//! Checks of the token signing keys (`Store::signing_keys`,
//! `Store::add_signing_key`, `Store::ensure_signing_key`).

use std::sync::Arc;
use tern_core::store::{SigningKey, Store, FIRST_KID};

fn key(kid: &str, secret: &str, created_at: i64) -> SigningKey {
    SigningKey {
        kid: kid.into(),
        secret: secret.as_bytes().to_vec(),
        created_at,
    }
}

/// Keys are listed oldest first whatever order they were added in; a kid
/// is stored once (adding it again changes nothing); secrets come back
/// byte for byte.
pub async fn signing_keys_in_order(store: &dyn Store) {
    assert!(store.signing_keys().await.unwrap().is_empty());
    let a = key("1", "first-secret-first-secret-first-secret", 100);
    let b = key("2", "second-secret-second-secret-second-secr", 200);
    let c = key("3", "third-secret-third-secret-third-secret-", 300);
    assert!(store.add_signing_key(&a).await.unwrap());
    assert!(store.add_signing_key(&c).await.unwrap());
    assert!(store.add_signing_key(&b).await.unwrap());
    let again = key("2", "another-secret-another-secret-another-s", 400);
    assert!(!store.add_signing_key(&again).await.unwrap());
    assert_eq!(
        store.signing_keys().await.unwrap(),
        vec![a.clone(), b.clone(), c.clone()]
    );
    // With keys there, the first key is not made again.
    let keys = store.ensure_signing_key(b"unused", 500).await.unwrap();
    assert_eq!(keys, vec![a, b, c]);
    // Any bytes are kept as they are.
    let raw = SigningKey {
        kid: "raw".into(),
        secret: (0..=255u8).collect(),
        created_at: 600,
    };
    assert!(store.add_signing_key(&raw).await.unwrap());
    assert_eq!(store.signing_keys().await.unwrap().last(), Some(&raw));
}

/// Eight concurrent first starts against an empty store (through the
/// given handles, round robin), each offering its own secret: one key is
/// stored, and every caller gets that one back.
pub async fn first_signing_key_once(stores: Vec<Arc<dyn Store>>) {
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = stores[t % stores.len()].clone();
            tokio::spawn(async move {
                let secret = format!("secret-of-starter-{t}-0123456789abcdef");
                store
                    .ensure_signing_key(secret.as_bytes(), 1_000 + t as i64)
                    .await
                    .expect("ensure_signing_key")
            })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.expect("task"));
    }
    let first = &seen[0];
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].kid, FIRST_KID);
    assert!(seen.iter().all(|keys| keys == first), "{seen:?}");
    assert_eq!(&stores[0].signing_keys().await.unwrap(), first);
}

/// Written before a reopen (or through another handle), read after.
pub async fn signing_keys_before_reopen(store: &dyn Store) {
    store
        .ensure_signing_key(b"kept-secret-kept-secret-kept-secret", 10)
        .await
        .unwrap();
    assert!(store
        .add_signing_key(&key("2", "rotated-secret-rotated-secret-rotated", 20))
        .await
        .unwrap());
}

pub async fn signing_keys_after_reopen(store: &dyn Store) {
    assert_eq!(
        store.signing_keys().await.unwrap(),
        vec![
            key(FIRST_KID, "kept-secret-kept-secret-kept-secret", 10),
            key("2", "rotated-secret-rotated-secret-rotated", 20),
        ]
    );
}
