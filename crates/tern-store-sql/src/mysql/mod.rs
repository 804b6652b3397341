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

mod append;
mod ops;
mod revocations;
mod schema;
// 5.2
mod search;

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use tern_core::store::StoreResult;

use crate::common::be;
use crate::{SqlStore, ACQUIRE_TIMEOUT};

/// The MySQL dialect of [`SqlStore`].
#[derive(Debug)]
pub enum MySqlDialect {}

/// The store on MySQL or MariaDB.
pub type MySqlStore = SqlStore<MySqlDialect>;

/// Pool settings of the MySQL store.
pub type MySqlOptions = crate::PoolOptions;

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
