//! Tern's cluster store on PostgreSQL: several nodes share one database.
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
//! conversation, not yet committed) into a unique violation.
//!
//! Retry rule: a write transaction that fails with a serialization failure
//! (40001), a deadlock (40P01) or a unique violation (23505) is rolled back
//! and run again from the start, a few times; the retry of a concurrent
//! duplicate then finds the original and answers `Appended::Duplicate`.
//! So is one whose `BEGIN` failed on a broken pooled connection. Nothing
//! else is retried (a commit whose answer was lost may have committed).
//! `Ok` means committed (`synchronous_commit` on: durable).
//!
//! Outage: taking a connection waits at most 3 s, so calls fail fast with
//! `StoreError::Backend` while PostgreSQL is down; the pool drops broken
//! connections and opens new ones once it is back.

mod ops;
mod revocations;
mod schema;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use tern_core::store::{
    AckMark, Appended, ConvList, FriendLists, FriendStatus, GroupRecord, HistoryQuery, NewMessage,
    OfflineBatch, ReadOutcome, Store, StoreError, StoreResult, StoredMessage, UserRecord,
};

use ops::be;

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

/// How long a call waits for a connection before it fails: when
/// PostgreSQL is down, calls fail fast; the pool reconnects by itself.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection idle for longer than this is pinged before it is used.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);

/// Attempts of a transaction that keeps failing with a retryable error.
const MAX_ATTEMPTS: u32 = 8;

pub struct PgStore {
    pool: PgPool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's options hold the password: left out.
        f.debug_struct("PgStore")
            .field("connections", &self.pool.size())
            .field(
                "max_connections",
                &self.pool.options().get_max_connections(),
            )
            .finish_non_exhaustive()
    }
}

/// `BEGIN` failed: nothing of the transaction ran.
#[derive(Debug)]
struct BeginFailed(sqlx::Error);

impl std::fmt::Display for BeginFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not begin a transaction: {}", self.0)
    }
}

impl std::error::Error for BeginFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether a failed transaction may succeed when run again: serialization
/// failures, deadlocks, unique violations (a concurrent duplicate), and a
/// pooled connection found broken at `BEGIN` (the server went away while it
/// sat idle; nothing ran, and the retry takes another connection).
fn retryable(e: &StoreError) -> bool {
    let StoreError::Backend(inner) = e else {
        return false;
    };
    if let Some(BeginFailed(e)) = inner.downcast_ref::<BeginFailed>() {
        return matches!(e, sqlx::Error::Io(_));
    }
    let Some(sqlx::Error::Database(db)) = inner.downcast_ref::<sqlx::Error>() else {
        return false;
    };
    matches!(db.code().as_deref(), Some("40001" | "40P01" | "23505"))
}

/// A short pause before attempt `attempt + 1`, growing, with jitter so
/// that two transactions that collided do not collide again.
async fn backoff(attempt: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = u64::from(nanos % 1000);
    let base = 1000 * u64::from(attempt.min(6));
    tokio::time::sleep(Duration::from_micros(base + jitter * u64::from(attempt))).await;
}

/// Runs `$body` (an expression using the connection `$c`) in a
/// transaction; commits; retries the whole transaction on retryable errors.
macro_rules! in_tx {
    ($pool:expr, |$c:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result: StoreResult<_> = async {
                let mut tx = $pool
                    .begin()
                    .await
                    .map_err(|e| StoreError::backend(BeginFailed(e)))?;
                let out = {
                    let $c: &mut PgConnection = &mut tx;
                    $body.await?
                };
                tx.commit().await.map_err(be)?;
                Ok(out)
            }
            .await;
            match result {
                Err(e) if attempt < MAX_ATTEMPTS && retryable(&e) => {
                    tracing::debug!(attempt, error = ?e, "retrying a transaction");
                    backoff(attempt).await;
                }
                other => break other,
            }
        }
    }};
}

/// Runs `$body` on a pool connection without a transaction (reads, and
/// writes of a single statement); retries on retryable errors.
macro_rules! on_conn {
    ($pool:expr, |$c:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result: StoreResult<_> = async {
                let mut conn = $pool.acquire().await.map_err(be)?;
                let $c: &mut PgConnection = &mut conn;
                $body.await
            }
            .await;
            match result {
                Err(e) if attempt < MAX_ATTEMPTS && retryable(&e) => {
                    tracing::debug!(attempt, error = ?e, "retrying a statement");
                    backoff(attempt).await;
                }
                other => break other,
            }
        }
    }};
}

impl PgStore {
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
        Ok(PgStore { pool })
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_user(&self, user: UserRecord) -> StoreResult<()> {
        on_conn!(self.pool, |c| ops::create_user(c, &user))
    }

    async fn get_user(&self, user: &str) -> StoreResult<Option<UserRecord>> {
        on_conn!(self.pool, |c| ops::get_user(c, user))
    }

    async fn friend_request(&self, from: &str, to: &str, now: i64) -> StoreResult<FriendStatus> {
        in_tx!(self.pool, |c| ops::friend_request(c, from, to, now))
    }

    async fn friend_delete(&self, a: &str, b: &str) -> StoreResult<()> {
        in_tx!(self.pool, |c| ops::friend_delete(c, a, b))
    }

    async fn friends(&self, user: &str) -> StoreResult<FriendLists> {
        on_conn!(self.pool, |c| ops::friends(c, user))
    }

    async fn append_messages(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<Appended>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        in_tx!(self.pool, |c| ops::append_messages(c, &batch))
    }

    async fn append_unit(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<StoredMessage>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        in_tx!(self.pool, |c| ops::append_unit(c, &batch))
    }

    async fn max_msg_id(&self, node: u16) -> StoreResult<u64> {
        on_conn!(self.pool, |c| ops::max_msg_id(c, node))
    }

    async fn max_seq(&self, conv: &str) -> StoreResult<u64> {
        on_conn!(self.pool, |c| ops::max_seq(c, conv))
    }

    async fn message(&self, conv: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        on_conn!(self.pool, |c| ops::message(c, conv, seq))
    }

    async fn history(
        &self,
        user: &str,
        conv: &str,
        q: HistoryQuery,
    ) -> StoreResult<Vec<StoredMessage>> {
        on_conn!(self.pool, |c| ops::history(c, user, conv, q))
    }

    async fn ack(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        receipt_for: Option<&str>,
    ) -> StoreResult<Option<u64>> {
        let acks = [AckMark {
            user: user.to_owned(),
            conv: conv.to_owned(),
            seq,
            receipt_for: receipt_for.map(str::to_owned),
        }];
        let out = in_tx!(self.pool, |c| ops::ack_many(c, &acks))?;
        Ok(out.into_iter().next().flatten())
    }

    async fn ack_many(&self, acks: Vec<AckMark>) -> StoreResult<Vec<Option<u64>>> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        // Acks without a receipt to compute (group conversations) only move
        // queue positions forward: one statement, so the rows are locked
        // for that statement alone and a send that moves one of them (the
        // sender's read position) never waits behind a whole flush.
        let (plain, receipts): (Vec<(usize, AckMark)>, Vec<(usize, AckMark)>) = acks
            .into_iter()
            .enumerate()
            .partition(|(_, a)| a.receipt_for.is_none());
        let mut out = vec![None; plain.len() + receipts.len()];
        if !plain.is_empty() {
            let marks: Vec<AckMark> = plain.into_iter().map(|(_, a)| a).collect();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut c = self.pool.acquire().await.map_err(StoreError::backend)?;
                match ops::ack_queue_only(&mut c, &marks).await {
                    Ok(()) => break,
                    Err(e) if attempt < 8 && retryable(&e) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        if !receipts.is_empty() {
            let (index, marks): (Vec<usize>, Vec<AckMark>) = receipts.into_iter().unzip();
            let got = in_tx!(self.pool, |c| ops::ack_many(c, &marks))?;
            for (i, r) in index.into_iter().zip(got) {
                out[i] = r;
            }
        }
        Ok(out)
    }

    async fn mark_read(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        now: i64,
    ) -> StoreResult<ReadOutcome> {
        in_tx!(self.pool, |c| ops::mark_read(c, user, conv, seq, now))
    }

    async fn recall(
        &self,
        conv: &str,
        seq: u64,
        by: &str,
        window_ms: i64,
        now: i64,
    ) -> StoreResult<StoredMessage> {
        in_tx!(self.pool, |c| ops::recall(c, conv, seq, by, window_ms, now))
    }

    async fn delete_for_user(&self, user: &str, conv: &str, seqs: &[u64]) -> StoreResult<()> {
        on_conn!(self.pool, |c| ops::delete_for_user(c, user, conv, seqs))
    }

    async fn conversations(&self, user: &str, since: i64, limit: u32) -> StoreResult<ConvList> {
        on_conn!(self.pool, |c| ops::conversations(c, user, since, limit))
    }

    async fn offline_fetch(&self, user: &str, cap: u32) -> StoreResult<OfflineBatch> {
        on_conn!(self.pool, |c| ops::offline_fetch(c, user, cap))
    }

    async fn get_group(&self, gid: &str) -> StoreResult<Option<GroupRecord>> {
        on_conn!(self.pool, |c| ops::get_group(c, gid))
    }

    async fn group_version(&self, gid: &str) -> StoreResult<Option<u64>> {
        on_conn!(self.pool, |c| ops::group_version(c, gid))
    }

    async fn read_positions(&self, conv: &str) -> StoreResult<Vec<(String, u64)>> {
        on_conn!(self.pool, |c| ops::read_positions(c, conv))
    }

    async fn health(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(be)?;
        Ok(())
    }
    // ----- revoked session tokens -----

    async fn revoke_token(&self, jti: &str, expires_at: i64, now: i64) -> StoreResult<()> {
        in_tx!(self.pool, |c| revocations::revoke(c, jti, expires_at, now))
    }

    async fn revoked_tokens(&self, now: i64) -> StoreResult<Vec<(String, i64)>> {
        on_conn!(self.pool, |c| revocations::list(c, now))
    }

    // ----- per-user counts (limits) -----

    async fn group_count(&self, user: &str) -> StoreResult<u64> {
        on_conn!(self.pool, |c| ops::group_count(c, user))
    }

    async fn outgoing_request_count(&self, user: &str) -> StoreResult<u64> {
        on_conn!(self.pool, |c| ops::outgoing_request_count(c, user))
    }
}
