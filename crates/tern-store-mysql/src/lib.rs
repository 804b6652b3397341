//! Tern's cluster store on MySQL 8 / MariaDB 10.11+ (InnoDB), shared by
//! every node.
//!
//! Schema (`schema.rs`): InnoDB tables in utf8mb4 with the binary
//! collation, so ids compare by bytes (but for trailing spaces, which
//! `utf8mb4_bin` pads: ids have none, and `client_msg_id`, which may, is
//! VARBINARY). Each table leads with its shard
//! key: the conversation for `convs`, `messages`, `chat_groups` and
//! `group_members` (the group's conversation); the user for `users`,
//! `friends`, `friend_requests`, `user_convs` (read, delivered and queue
//! positions) and `hidden`. Migrations run at start-up, idempotently,
//! under `GET_LOCK('tern_migrate', 30)`.
//!
//! Seqs and dedup across nodes: an append batch is one READ COMMITTED
//! transaction. It first locks the counter rows (`convs`) of all its
//! conversations in sorted order (`SELECT .. FOR UPDATE`; missing rows are
//! created with `INSERT .. ON DUPLICATE KEY UPDATE` and locked the same
//! way), held until commit: seqs are allocated under that lock, gap-free,
//! and group gates (membership) are checked under it too, since every
//! membership change is a message of the group's conversation. The batch
//! then writes with a few multi-row statements. Dedup is a UNIQUE index on
//! `(from_user, client_msg_id)`: a concurrent duplicate from another node
//! fails the insert with a duplicate-key error.
//!
//! Retry rule: a transaction that fails with a deadlock (1213), a lock
//! wait timeout (1205) or a duplicate key (1062) is rolled back and run
//! again from the start (a few times, with a short growing pause); the
//! retry of a concurrent duplicate finds the original and answers
//! `Appended::Duplicate`. Nothing else is retried.

mod ops;
mod revocations;
mod schema;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::MySqlConnection;
use tern_core::store::{
    AckMark, Appended, ConvList, FriendLists, FriendStatus, GroupRecord, HistoryQuery, NewMessage,
    OfflineBatch, ReadOutcome, Store, StoreError, StoreResult, StoredMessage, UserRecord,
};

use ops::be;

#[derive(Debug, Clone)]
pub struct MySqlOptions {
    /// Most connections the pool keeps open.
    pub max_connections: u32,
}

impl Default for MySqlOptions {
    fn default() -> Self {
        MySqlOptions {
            max_connections: 16,
        }
    }
}

/// How long a call waits for a connection before it fails: a server that
/// is down makes calls fail fast.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts of a transaction that keeps failing with a retryable error.
const MAX_ATTEMPTS: u32 = 8;

pub struct MySqlStore {
    pool: MySqlPool,
    max_connections: u32,
}

impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL or the connect options: they hold the password.
        f.debug_struct("MySqlStore")
            .field("max_connections", &self.max_connections)
            .field("open_connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

/// Whether running the transaction again may succeed.
fn retryable(e: &StoreError) -> bool {
    let StoreError::Backend(b) = e else {
        return false;
    };
    b.downcast_ref::<sqlx::Error>()
        .and_then(ops::error_number)
        .is_some_and(|n| matches!(n, ops::DEADLOCK | ops::LOCK_WAIT_TIMEOUT | ops::DUP_ENTRY))
}

/// A growing pause with jitter, so that two transactions that deadlocked
/// do not meet again at once.
async fn backoff(attempt: u32) {
    let base = 2u64 << attempt.min(6);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) % base.max(1));
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

/// Runs `$body` (an expression using `$c: &mut MySqlConnection`, giving a
/// future of `StoreResult<T>`) in a transaction, committed when it
/// succeeds, retried per the crate docs.
macro_rules! in_tx {
    ($store:expr, |$c:ident| $body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result: StoreResult<_> = async {
                let mut tx = $store.pool.begin().await.map_err(be)?;
                let out = {
                    let $c: &mut MySqlConnection = &mut tx;
                    $body.await
                };
                match out {
                    Ok(v) => {
                        tx.commit().await.map_err(be)?;
                        Ok(v)
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            }
            .await;
            match result {
                Err(e) if attempt < MAX_ATTEMPTS && retryable(&e) => {
                    tracing::debug!(attempt, error = ?e, "retrying a transaction");
                    backoff(attempt).await;
                }
                r => break r,
            }
        }
    }};
}

/// Runs `$body` on a pooled connection without a transaction (reads, and
/// single-statement writes), retried like [`in_tx`].
macro_rules! on_conn {
    ($store:expr, |$c:ident| $body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result: StoreResult<_> = async {
                let mut conn = $store.pool.acquire().await.map_err(be)?;
                let $c: &mut MySqlConnection = &mut conn;
                $body.await
            }
            .await;
            match result {
                Err(e) if attempt < MAX_ATTEMPTS && retryable(&e) => {
                    backoff(attempt).await;
                }
                r => break r,
            }
        }
    }};
}

impl MySqlStore {
    /// Connects, runs schema migrations (idempotent, one node at a time
    /// under `GET_LOCK('tern_migrate', 30)`) and returns the store.
    pub async fn connect(url: &str, opts: MySqlOptions) -> Result<MySqlStore, StoreError> {
        let connect = MySqlConnectOptions::from_str(url)
            .map_err(be)?
            .charset("utf8mb4")
            .collation("utf8mb4_bin");
        let max_connections = opts.max_connections.max(1);
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(300))
            .after_connect(|c, _| {
                Box::pin(async move {
                    // Every statement sees what other nodes committed, and
                    // no gap locks: see the crate docs.
                    sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .execute(&mut *c)
                        .await?;
                    sqlx::query("SET SESSION innodb_lock_wait_timeout = 10")
                        .execute(&mut *c)
                        .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(connect);
        {
            let mut conn = pool.acquire().await.map_err(be)?;
            schema::migrate(&mut conn).await?;
            revocations::init(&mut conn).await?;
        }
        Ok(MySqlStore {
            pool,
            max_connections,
        })
    }
}

#[async_trait]
impl Store for MySqlStore {
    async fn create_user(&self, user: UserRecord) -> StoreResult<()> {
        on_conn!(self, |c| ops::create_user(c, &user))
    }

    async fn get_user(&self, user: &str) -> StoreResult<Option<UserRecord>> {
        on_conn!(self, |c| ops::get_user(c, user))
    }

    async fn friend_request(&self, from: &str, to: &str, now: i64) -> StoreResult<FriendStatus> {
        in_tx!(self, |c| ops::friend_request(c, from, to, now))
    }

    async fn friend_delete(&self, a: &str, b: &str) -> StoreResult<()> {
        in_tx!(self, |c| ops::friend_delete(c, a, b))
    }

    async fn friends(&self, user: &str) -> StoreResult<FriendLists> {
        on_conn!(self, |c| ops::friends(c, user))
    }

    async fn append_messages(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<Appended>> {
        in_tx!(self, |c| ops::append_messages(c, &batch))
    }

    async fn append_unit(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<StoredMessage>> {
        in_tx!(self, |c| ops::append_unit(c, &batch))
    }

    async fn max_msg_id(&self, node: u16) -> StoreResult<u64> {
        on_conn!(self, |c| ops::max_msg_id(c, node))
    }

    async fn max_seq(&self, conv: &str) -> StoreResult<u64> {
        on_conn!(self, |c| ops::max_seq(c, conv))
    }

    async fn message(&self, conv: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        on_conn!(self, |c| ops::message(c, conv, seq))
    }

    async fn history(
        &self,
        user: &str,
        conv: &str,
        q: HistoryQuery,
    ) -> StoreResult<Vec<StoredMessage>> {
        on_conn!(self, |c| ops::history(c, user, conv, q))
    }

    async fn ack(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        receipt_for: Option<&str>,
    ) -> StoreResult<Option<u64>> {
        let mark = [AckMark {
            user: user.to_owned(),
            conv: conv.to_owned(),
            seq,
            receipt_for: receipt_for.map(str::to_owned),
        }];
        let out = in_tx!(self, |c| ops::ack_many(c, &mark))?;
        Ok(out.into_iter().next().flatten())
    }

    async fn ack_many(&self, acks: Vec<AckMark>) -> StoreResult<Vec<Option<u64>>> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        in_tx!(self, |c| ops::ack_many(c, &acks))
    }

    async fn mark_read(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        now: i64,
    ) -> StoreResult<ReadOutcome> {
        in_tx!(self, |c| ops::mark_read(c, user, conv, seq, now))
    }

    async fn recall(
        &self,
        conv: &str,
        seq: u64,
        by: &str,
        window_ms: i64,
        now: i64,
    ) -> StoreResult<StoredMessage> {
        in_tx!(self, |c| ops::recall(c, conv, seq, by, window_ms, now))
    }

    async fn delete_for_user(&self, user: &str, conv: &str, seqs: &[u64]) -> StoreResult<()> {
        in_tx!(self, |c| ops::delete_for_user(c, user, conv, seqs))
    }

    async fn conversations(&self, user: &str, since: i64, limit: u32) -> StoreResult<ConvList> {
        on_conn!(self, |c| ops::conversations(c, user, since, limit))
    }

    async fn offline_fetch(&self, user: &str, cap: u32) -> StoreResult<OfflineBatch> {
        // Reads, then one statement that only moves queue positions
        // forward: no transaction needed.
        on_conn!(self, |c| ops::offline_fetch(c, user, cap))
    }

    async fn get_group(&self, gid: &str) -> StoreResult<Option<GroupRecord>> {
        on_conn!(self, |c| ops::get_group(c, gid))
    }

    async fn group_version(&self, gid: &str) -> StoreResult<Option<u64>> {
        on_conn!(self, |c| ops::group_version(c, gid))
    }

    async fn read_positions(&self, conv: &str) -> StoreResult<Vec<(String, u64)>> {
        on_conn!(self, |c| ops::read_positions(c, conv))
    }

    async fn health(&self) -> StoreResult<()> {
        let _: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&self.pool)
            .await
            .map_err(be)?;
        Ok(())
    }
    // ----- revoked session tokens -----

    async fn revoke_token(&self, jti: &str, expires_at: i64, now: i64) -> StoreResult<()> {
        in_tx!(self, |c| revocations::revoke(c, jti, expires_at, now))
    }

    async fn revoked_tokens(&self, now: i64) -> StoreResult<Vec<(String, i64)>> {
        on_conn!(self, |c| revocations::list(c, now))
    }

    // ----- per-user counts (limits) -----

    async fn group_count(&self, user: &str) -> StoreResult<u64> {
        on_conn!(self, |c| ops::group_count(c, user))
    }

    async fn outgoing_request_count(&self, user: &str) -> StoreResult<u64> {
        on_conn!(self, |c| ops::outgoing_request_count(c, user))
    }
}
