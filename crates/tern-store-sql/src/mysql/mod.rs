//! The MySQL 8 / MariaDB 10.11+ (InnoDB) dialect, shared by every node.
//!
//! Schema (`schema.rs`): InnoDB tables in utf8mb4 with the binary
//! collation, so ids compare by bytes (but for trailing spaces, which
//! `utf8mb4_bin` pads: ids have none, and `client_msg_id`, which may, is
//! VARBINARY). Each table leads with its shard key: the conversation for
//! `convs`, `messages`, `chat_groups` and `group_members` (the group's
//! conversation); the user for `users`, `friends`, `friend_requests`,
//! `user_convs` (read, delivered and queue positions) and `hidden`.
//! Migrations run at start-up, idempotently, under
//! `GET_LOCK('tern_migrate', 30)`.
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
//! fails the insert with a duplicate-key error, retried. Retryable:
//! deadlocks (1213), lock wait timeouts (1205), duplicate keys (1062).

mod ops;
mod revocations;
mod schema;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{MySql, MySqlConnection};
use tern_core::offline::QueueSpan;
use tern_core::store::{
    AckMark, Appended, FriendLists, FriendStatus, GroupRecord, NewMessage, StoreResult,
    StoredMessage, UserRecord,
};

use crate::common::{be, ConvRow, PageFetch};
use crate::{Dialect, SqlStore, ACQUIRE_TIMEOUT};

use ops::{error_number, DEADLOCK, DUP_ENTRY, LOCK_WAIT_TIMEOUT};

/// The MySQL dialect of [`SqlStore`].
#[derive(Debug)]
pub enum MySqlDialect {}

/// The store on MySQL or MariaDB.
pub type MySqlStore = SqlStore<MySqlDialect>;

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

impl SqlStore<MySqlDialect> {
    /// Connects, runs schema migrations (idempotent, one node at a time
    /// under `GET_LOCK('tern_migrate', 30)`) and returns the store.
    pub async fn connect(url: &str, opts: MySqlOptions) -> StoreResult<MySqlStore> {
        let connect = MySqlConnectOptions::from_str(url)
            .map_err(be)?
            .charset("utf8mb4")
            .collation("utf8mb4_bin");
        let pool = MySqlPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(300))
            .after_connect(|c, _| {
                Box::pin(async move {
                    // Every statement sees what other nodes committed, and
                    // no gap locks: see the module docs.
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
        Ok(SqlStore::with_pool(pool))
    }
}

#[async_trait]
impl Dialect for MySqlDialect {
    type DB = MySql;
    const NAME: &'static str = "mysql";

    fn retryable(e: &sqlx::Error) -> bool {
        error_number(e).is_some_and(|n| matches!(n, DEADLOCK | LOCK_WAIT_TIMEOUT | DUP_ENTRY))
    }

    fn backoff(attempt: u32, jitter: u32) -> Duration {
        let base = 2u64 << attempt.min(6);
        Duration::from_millis(base + u64::from(jitter) % base.max(1))
    }

    async fn create_user(c: &mut MySqlConnection, u: &UserRecord) -> StoreResult<()> {
        ops::create_user(c, u).await
    }
    async fn get_user(c: &mut MySqlConnection, user: &str) -> StoreResult<Option<UserRecord>> {
        ops::get_user(c, user).await
    }
    async fn count_users(c: &mut MySqlConnection, users: &[String]) -> StoreResult<u64> {
        ops::count_users(c, users).await
    }
    async fn friend_request(
        c: &mut MySqlConnection,
        from: &str,
        to: &str,
        now: i64,
    ) -> StoreResult<FriendStatus> {
        ops::friend_request(c, from, to, now).await
    }
    async fn friend_delete(c: &mut MySqlConnection, a: &str, b: &str) -> StoreResult<()> {
        ops::friend_delete(c, a, b).await
    }
    async fn friends(c: &mut MySqlConnection, user: &str) -> StoreResult<FriendLists> {
        ops::friends(c, user).await
    }
    async fn outgoing_request_count(c: &mut MySqlConnection, user: &str) -> StoreResult<u64> {
        ops::outgoing_request_count(c, user).await
    }
    async fn append_messages(
        c: &mut MySqlConnection,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<Appended>> {
        ops::append_messages(c, batch).await
    }
    async fn max_msg_id(c: &mut MySqlConnection, node: u16) -> StoreResult<u64> {
        ops::max_msg_id(c, node).await
    }
    async fn max_seq(c: &mut MySqlConnection, conv: &str) -> StoreResult<u64> {
        ops::max_seq(c, conv).await
    }
    async fn message(
        c: &mut MySqlConnection,
        conv: &str,
        seq: u64,
        lock: bool,
    ) -> StoreResult<Option<StoredMessage>> {
        ops::message(c, conv, seq, lock).await
    }
    async fn clear(c: &mut MySqlConnection, conv: &str, seq: u64, now: i64) -> StoreResult<()> {
        ops::clear(c, conv, seq, now).await
    }
    async fn page(
        c: &mut MySqlConnection,
        user: &str,
        conv: &str,
        lo: i64,
        hi: i64,
        limit: u32,
        newest: bool,
    ) -> StoreResult<Vec<StoredMessage>> {
        ops::page(c, user, conv, lo, hi, limit, newest).await
    }
    async fn count_messages(c: &mut MySqlConnection, conv: &str, seqs: &[i64]) -> StoreResult<u64> {
        ops::count_messages(c, conv, seqs).await
    }
    async fn hide(
        c: &mut MySqlConnection,
        user: &str,
        conv: &str,
        seqs: &[i64],
    ) -> StoreResult<()> {
        ops::hide(c, user, conv, seqs).await
    }
    async fn read_position(
        c: &mut MySqlConnection,
        user: &str,
        conv: &str,
        lock: bool,
    ) -> StoreResult<Option<(u64, Option<u64>)>> {
        ops::read_position(c, user, conv, lock).await
    }
    async fn set_read(
        c: &mut MySqlConnection,
        user: &str,
        conv: &str,
        seq: u64,
        now: i64,
    ) -> StoreResult<()> {
        ops::set_read(c, user, conv, seq, now).await
    }
    async fn ack_queue_only(
        c: &mut MySqlConnection,
        marks: &[(String, String, i64)],
    ) -> StoreResult<()> {
        ops::ack_queue_only(c, marks).await
    }
    async fn ack_many(c: &mut MySqlConnection, acks: &[AckMark]) -> StoreResult<Vec<Option<u64>>> {
        ops::ack_many(c, acks).await
    }
    async fn conv_rows(c: &mut MySqlConnection, user: &str) -> StoreResult<Vec<ConvRow>> {
        ops::conv_rows(c, user).await
    }
    async fn last_messages(
        c: &mut MySqlConnection,
        user: &str,
        convs: &[(String, u64)],
    ) -> StoreResult<Vec<Option<StoredMessage>>> {
        ops::last_messages(c, user, convs).await
    }
    async fn queue_spans(c: &mut MySqlConnection, user: &str) -> StoreResult<Vec<QueueSpan>> {
        ops::queue_spans(c, user).await
    }
    async fn queue_pages(
        c: &mut MySqlConnection,
        user: &str,
        fetches: &[PageFetch],
    ) -> StoreResult<Vec<Vec<StoredMessage>>> {
        ops::queue_pages(c, user, fetches).await
    }
    async fn move_queues(
        c: &mut MySqlConnection,
        user: &str,
        moves: &[(String, u64)],
    ) -> StoreResult<()> {
        ops::move_queues(c, user, moves).await
    }
    async fn get_group(c: &mut MySqlConnection, gid: &str) -> StoreResult<Option<GroupRecord>> {
        ops::get_group(c, gid).await
    }
    async fn group_version(c: &mut MySqlConnection, gid: &str) -> StoreResult<Option<u64>> {
        ops::group_version(c, gid).await
    }
    async fn read_positions(
        c: &mut MySqlConnection,
        gid: &str,
        conv: &str,
    ) -> StoreResult<Vec<(String, u64)>> {
        ops::read_positions(c, gid, conv).await
    }
    async fn group_count(c: &mut MySqlConnection, user: &str) -> StoreResult<u64> {
        ops::group_count(c, user).await
    }
    async fn revoke_token(
        c: &mut MySqlConnection,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        revocations::revoke(c, jti, expires_at, now).await
    }
    async fn revoked_tokens(c: &mut MySqlConnection, now: i64) -> StoreResult<Vec<(String, i64)>> {
        revocations::list(c, now).await
    }
}
