//! Helpers the PostgreSQL and MySQL test files share.

use tern_core::store::{HistoryQuery, Store};

/// The seqs of the newest 1,000 messages of `conv` that `user` sees, in
/// order.
pub async fn history_seqs(store: &dyn Store, user: &str, conv: &str) -> Vec<u64> {
    let q = HistoryQuery {
        before_seq: None,
        after_seq: None,
        limit: 1000,
    };
    let h = store.history(user, conv, q).await.unwrap();
    h.iter().map(|m| m.seq).collect()
}

/// The schema version an upgrade ends at: it also made the signing keys'
/// table (3), the groups' roles and blocks (4), 5.1's columns (5),
/// profiles, settings and sessions (6), the search index (7), bots and
/// durable jobs (8), scheduled messages (9), media (10), push registrations
/// (11) and conversation
/// retention (12).
pub const UPGRADED_VERSION: i64 = 12;

/// After an upgrade: the schema is at [`UPGRADED_VERSION`] and the new
/// signing keys' table is empty.
pub async fn assert_upgraded(store: &dyn Store, version: i64) {
    assert_eq!(version, UPGRADED_VERSION);
    assert!(store.signing_keys().await.unwrap().is_empty());
}

/// After the upgrade of a database whose messages `dm:a:b` 1 and 2 had
/// msg ids 500 and 900 and whose `dm:a:b` 3 and `dm:a:c` 1 repeated 500:
/// the first two keep theirs, the repeats got new distinct ids above 900.
pub async fn assert_msg_ids_made_unique(store: &dyn Store) {
    let id = |conv: &'static str, seq: u64| async move {
        store.message(conv, seq).await.unwrap().unwrap().msg_id
    };
    assert_eq!(id("dm:a:b", 1).await, 500);
    assert_eq!(id("dm:a:b", 2).await, 900);
    let (x, y) = (id("dm:a:b", 3).await, id("dm:a:c", 1).await);
    assert!(x > 900 && y > 900 && x != y, "{x} {y}");
}

/// After the upgrade from version 3 of a database holding group `old`
/// (owner ann, member bob): the group starts open and plain, then takes an
/// admin, and blocks work.
pub async fn assert_groups_upgraded(store: &dyn Store) {
    use tern_core::store::MemberChange;
    use tern_store_conformance::{join, send};
    let rec = store.get_group("old").await.unwrap().unwrap();
    assert_eq!((rec.owner.as_str(), rec.members.len()), ("ann", 2));
    assert!(rec.admins.is_empty() && rec.mutes.is_empty() && !rec.muted_all && !rec.dissolved);
    let mut m = join("old", "ann", "x", 3);
    m.change = Some(MemberChange::Admin {
        user: "bob".into(),
        on: true,
    });
    send(store, m).await;
    assert_eq!(
        store.get_group("old").await.unwrap().unwrap().admins,
        ["bob"]
    );
    store.block("ann", "bob", 4).await.unwrap();
    assert!(store.is_blocked("ann", "bob").await.unwrap());
}
