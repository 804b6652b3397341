//! The PostgreSQL dialect: several nodes share one database.
//!
//! Schema (see `schema.rs`): every table leads with its shard key, the
//! conversation (`convs`, `messages`, `groups`, `group_members`) or the
//! user (`users`, `friends`, `client_ids`, `user_convs`, `hidden`). The
//! migration runs at connect, in one transaction under an advisory lock,
//! inside whatever `search_path` the URL gives.
//!
//! Seqs: an append first upserts the batch's `convs` rows in sorted order
//! (`INSERT .. ON CONFLICT DO UPDATE .. RETURNING max_seq`), which locks
//! them until commit; seqs are counted from there and written back before
//! commit, so they stay gap-free across connections and nodes, and the
//! sorted order keeps two batches from locking each other out. The user
//! rows (`user_convs`) an append may change are then locked in one pass,
//! sorted by (user, conversation), the order acks and offline fetches lock
//! them in, so these do not deadlock each other either. Dedup: the
//! `(from_user, client_msg_id)` lookup runs under those locks, and the
//! primary key of `client_ids` turns a concurrent duplicate (another
//! conversation, not yet committed) into a unique violation, retried.
//! Retryable: serialization failures (40001), deadlocks (40P01), unique
//! violations (23505).

mod append;
mod ops;
mod revocations;
mod schema;
// 5.2
mod search;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tern_core::store::StoreResult;

use crate::common::be;
use crate::{SqlStore, ACQUIRE_TIMEOUT};

/// The PostgreSQL dialect of [`SqlStore`].
#[derive(Debug)]
pub enum Pg {}

/// The store on PostgreSQL.
pub type PgStore = SqlStore<Pg>;

/// Pool settings of the PostgreSQL store.
pub type PgOptions = crate::PoolOptions;

/// A connection idle for longer than this is pinged before it is used.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);

impl SqlStore<Pg> {
    /// Connects, runs schema migrations (idempotent; nodes starting at once
    /// take turns under an advisory lock) and returns the store. Fails with
    /// `StoreError::Backend` within a few seconds when PostgreSQL is
    /// unreachable.
    pub async fn connect(url: &str, opts: PgOptions) -> StoreResult<PgStore> {
        let options = PgConnectOptions::from_str(url).map_err(be)?;
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // The pool pings every connection it takes back; pinging again
            // before each use would cost every call a round trip. A
            // connection that sat idle for a while is checked first.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > IDLE_CHECK_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await
            .map_err(be)?;
        {
            let mut conn = pool.acquire().await.map_err(be)?;
            schema::migrate(&mut conn).await?;
            revocations::init(&mut conn).await?;
        }
        Ok(SqlStore::with_pool(pool))
    }
}
