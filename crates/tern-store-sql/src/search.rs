//! 5.2 search on both servers, each on its own full-text engine
//! (`postgres/search.rs`: a `tsvector` under a GIN index; `mysql/search.rs`:
//! InnoDB FULLTEXT in boolean mode), over `tern_core::search`'s encoded
//! terms, kept in `search_docs` by `(conv, seq)`.
//!
//! Which messages wait to be indexed is each message's mark `indexed`,
//! not a position: on a shared server, transactions commit out of id
//! order, so a position could pass a message committed late. A node's
//! indexer takes the oldest unmarked messages with `FOR UPDATE SKIP
//! LOCKED`, writes their terms and marks them in one transaction: nodes
//! indexing at once take different messages, and a message is indexed
//! once. The mark's default is set when a message is stored: the append
//! itself writes nothing more.

use async_trait::async_trait;
use tern_core::search::SearchQuery;
use tern_core::store::{StoreResult, StoredMessage};

use crate::dialect::{Conn, Dialect};

#[async_trait]
pub trait SearchIndex: Dialect {
    /// `Store::index_pending`, in the caller's transaction.
    async fn index_pending(c: &mut Conn<Self>, max: u32) -> StoreResult<u32>;
    /// `Store::reindex_message`, in the caller's transaction.
    async fn reindex_message(c: &mut Conn<Self>, conv: &str, seq: u64) -> StoreResult<()>;
    /// `Store::search`.
    async fn search(
        c: &mut Conn<Self>,
        user: &str,
        q: &SearchQuery,
    ) -> StoreResult<Vec<StoredMessage>>;
}
