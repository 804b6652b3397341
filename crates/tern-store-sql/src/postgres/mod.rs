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

mod ops;
mod revocations;
mod schema;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, Postgres};
use tern_core::offline::QueueSpan;
use tern_core::store::{
    AckMark, Appended, FriendLists, FriendStatus, GroupRecord, NewMessage, StoreResult,
    StoredMessage, UserRecord,
};

use crate::common::{be, ConvRow, PageFetch};
use crate::{Dialect, SqlStore, ACQUIRE_TIMEOUT};

/// The PostgreSQL dialect of [`SqlStore`].
#[derive(Debug)]
pub enum Pg {}

/// The store on PostgreSQL.
pub type PgStore = SqlStore<Pg>;

#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections the pool opens.
    pub max_connections: u32,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
        }
    }
}

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

#[async_trait]
impl Dialect for Pg {
    type DB = Postgres;
    const NAME: &'static str = "postgres";

    fn retryable(e: &sqlx::Error) -> bool {
        let sqlx::Error::Database(db) = e else {
            return false;
        };
        matches!(db.code().as_deref(), Some("40001" | "40P01" | "23505"))
    }

    fn backoff(attempt: u32, jitter: u32) -> Duration {
        let jitter = u64::from(jitter % 1000);
        let base = 1000 * u64::from(attempt.min(6));
        Duration::from_micros(base + jitter * u64::from(attempt))
    }

    async fn create_user(c: &mut PgConnection, u: &UserRecord) -> StoreResult<()> {
        ops::create_user(c, u).await
    }
    async fn get_user(c: &mut PgConnection, user: &str) -> StoreResult<Option<UserRecord>> {
        ops::get_user(c, user).await
    }
    async fn count_users(c: &mut PgConnection, users: &[String]) -> StoreResult<u64> {
        ops::count_users(c, users).await
    }
    async fn friend_request(
        c: &mut PgConnection,
        from: &str,
        to: &str,
        now: i64,
    ) -> StoreResult<FriendStatus> {
        ops::friend_request(c, from, to, now).await
    }
    async fn friend_delete(c: &mut PgConnection, a: &str, b: &str) -> StoreResult<()> {
        ops::friend_delete(c, a, b).await
    }
    async fn friends(c: &mut PgConnection, user: &str) -> StoreResult<FriendLists> {
        ops::friends(c, user).await
    }
    async fn outgoing_request_count(c: &mut PgConnection, user: &str) -> StoreResult<u64> {
        ops::outgoing_request_count(c, user).await
    }
    async fn append_messages(
        c: &mut PgConnection,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<Appended>> {
        ops::append_messages(c, batch).await
    }
    async fn max_msg_id(c: &mut PgConnection, node: u16) -> StoreResult<u64> {
        ops::max_msg_id(c, node).await
    }
    async fn max_seq(c: &mut PgConnection, conv: &str) -> StoreResult<u64> {
        ops::max_seq(c, conv).await
    }
    async fn message(
        c: &mut PgConnection,
        conv: &str,
        seq: u64,
        lock: bool,
    ) -> StoreResult<Option<StoredMessage>> {
        ops::message(c, conv, seq, lock).await
    }
    async fn clear(c: &mut PgConnection, conv: &str, seq: u64, now: i64) -> StoreResult<()> {
        ops::clear(c, conv, seq, now).await
    }
    async fn page(
        c: &mut PgConnection,
        user: &str,
        conv: &str,
        lo: i64,
        hi: i64,
        limit: u32,
        newest: bool,
    ) -> StoreResult<Vec<StoredMessage>> {
        ops::page(c, user, conv, lo, hi, limit, newest).await
    }
    async fn count_messages(c: &mut PgConnection, conv: &str, seqs: &[i64]) -> StoreResult<u64> {
        ops::count_messages(c, conv, seqs).await
    }
    async fn hide(c: &mut PgConnection, user: &str, conv: &str, seqs: &[i64]) -> StoreResult<()> {
        ops::hide(c, user, conv, seqs).await
    }
    async fn read_position(
        c: &mut PgConnection,
        user: &str,
        conv: &str,
        lock: bool,
    ) -> StoreResult<Option<(u64, Option<u64>)>> {
        ops::read_position(c, user, conv, lock).await
    }
    async fn set_read(
        c: &mut PgConnection,
        user: &str,
        conv: &str,
        seq: u64,
        now: i64,
    ) -> StoreResult<()> {
        ops::set_read(c, user, conv, seq, now).await
    }
    async fn ack_queue_only(
        c: &mut PgConnection,
        marks: &[(String, String, i64)],
    ) -> StoreResult<()> {
        ops::ack_queue_only(c, marks).await
    }
    async fn ack_many(c: &mut PgConnection, acks: &[AckMark]) -> StoreResult<Vec<Option<u64>>> {
        ops::ack_many(c, acks).await
    }
    async fn conv_rows(c: &mut PgConnection, user: &str) -> StoreResult<Vec<ConvRow>> {
        ops::conv_rows(c, user).await
    }
    async fn last_messages(
        c: &mut PgConnection,
        user: &str,
        convs: &[(String, u64)],
    ) -> StoreResult<Vec<Option<StoredMessage>>> {
        ops::last_messages(c, user, convs).await
    }
    async fn queue_spans(c: &mut PgConnection, user: &str) -> StoreResult<Vec<QueueSpan>> {
        ops::queue_spans(c, user).await
    }
    async fn queue_pages(
        c: &mut PgConnection,
        user: &str,
        fetches: &[PageFetch],
    ) -> StoreResult<Vec<Vec<StoredMessage>>> {
        ops::queue_pages(c, user, fetches).await
    }
    async fn move_queues(
        c: &mut PgConnection,
        user: &str,
        moves: &[(String, u64)],
    ) -> StoreResult<()> {
        ops::move_queues(c, user, moves).await
    }
    async fn get_group(c: &mut PgConnection, gid: &str) -> StoreResult<Option<GroupRecord>> {
        ops::get_group(c, gid).await
    }
    async fn group_version(c: &mut PgConnection, gid: &str) -> StoreResult<Option<u64>> {
        ops::group_version(c, gid).await
    }
    async fn read_positions(
        c: &mut PgConnection,
        gid: &str,
        conv: &str,
    ) -> StoreResult<Vec<(String, u64)>> {
        ops::read_positions(c, gid, conv).await
    }
    async fn group_count(c: &mut PgConnection, user: &str) -> StoreResult<u64> {
        ops::group_count(c, user).await
    }
    async fn revoke_token(
        c: &mut PgConnection,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        revocations::revoke(c, jti, expires_at, now).await
    }
    async fn revoked_tokens(c: &mut PgConnection, now: i64) -> StoreResult<Vec<(String, i64)>> {
        revocations::list(c, now).await
    }
}
