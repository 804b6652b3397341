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
use tern_core::search::{SearchQuery, Terms};
use tern_core::store::{StoreResult, StoredMessage};

use crate::dialect::{Conn, Dialect};
use crate::shared::Shared;

#[async_trait]
pub trait SearchIndex: Dialect {
    /// Writes (or replaces) the terms of these messages `(conv, seq, kind,
    /// content)` and marks them indexed, in the caller's transaction.
    async fn write_docs(
        c: &mut Conn<Self>,
        rows: &[(String, i64, String, Option<String>)],
    ) -> StoreResult<()>;
    /// The engine's query text for `t` (bound where `SEARCH_MATCH` has
    /// its placeholder).
    fn matching(t: &Terms) -> String;
}

/// `Store::index_pending`, in the caller's transaction.
pub async fn index_pending<D: SearchIndex + Shared>(c: &mut Conn<D>, max: u32) -> StoreResult<u32> {
    let rows = D::pending_docs(c, max).await?;
    D::write_docs(c, &rows).await?;
    Ok(rows.len() as u32)
}

/// `Store::reindex_message`, in the caller's transaction: the message's
/// row locked, its old terms dropped, its terms as stored now written (an
/// edit calls it in its own transaction). Nothing for no such message.
pub async fn reindex<D: SearchIndex + Shared>(
    c: &mut Conn<D>,
    conv: &str,
    seq: u64,
) -> StoreResult<()> {
    let Ok(at) = i64::try_from(seq) else {
        return Ok(());
    };
    let Some(m) = D::message(c, conv, seq, true).await? else {
        return Ok(());
    };
    D::drop_doc(c, conv, seq).await?;
    D::write_docs(c, &[(m.conv, at, m.kind, m.content)]).await
}

/// `Store::search`.
pub async fn search<D: SearchIndex + Shared>(
    c: &mut Conn<D>,
    user: &str,
    q: &SearchQuery,
) -> StoreResult<Vec<StoredMessage>> {
    D::search(c, user, D::matching(&q.terms), q).await
}
