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
