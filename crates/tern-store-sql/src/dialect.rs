//! What one SQL server supplies to [`crate::SqlStore`]: its driver, the
//! errors worth a retry, how it spells statements (placeholders, two
//! names, the columns its driver decodes its own way), and the statements
//! of each operation the servers do not agree on, as plain functions on a
//! connection (inside the caller's transaction where the store opened
//! one). The statements they agree on are written once, in
//! [`crate::shared`]; the flow around them (transactions, retries, the
//! checks and rules between statements) is the store's, written once.

use std::time::Duration;

use async_trait::async_trait;
use tern_core::store::{
    AckMark, Appended, FriendLists, FriendStatus, NewMessage, StoreResult, StoredMessage,
    UserRecord,
};

use crate::common::PageFetch;

/// A connection of dialect `D`.
pub type Conn<D> = <<D as Dialect>::DB as sqlx::Database>::Connection;
/// A result row of dialect `D`.
pub type RowOf<D> = <<D as Dialect>::DB as sqlx::Database>::Row;

#[async_trait]
pub trait Dialect: Send + Sync + 'static {
    type DB: sqlx::Database;
    /// For `Debug` output.
    const NAME: &'static str;
    /// Which of [`crate::shared::Sql`]'s renderings is this dialect's (0
    /// or 1, one per dialect).
    const SLOT: usize;
    /// Whether placeholders are numbered (`$1`) rather than `?`.
    const NUMBERED: bool;
    /// The table of groups and its owner column.
    const GROUPS: &'static str;
    const OWNER: &'static str;
    /// 5.2: the condition that a search document `d` matches the one bound
    /// query text (the engine's own syntax, see `search.rs`).
    const SEARCH_MATCH: &'static str;
    /// Records a revoked token (binds: jti, expires_at), keeping the later
    /// expiry of two.
    const UPSERT_REVOKED: &'static str;
    /// Records that a user's older tokens are revoked (binds: user_id,
    /// before_ms, expires_at), keeping the later value of each field.
    const UPSERT_REVOKED_USER: &'static str;
    /// Stores a signing key (binds: kid, secret, created_at) unless its
    /// kid exists; changes one row when it stored it.
    const INSERT_SIGNING_KEY: &'static str;
    // 5.4 and blocks
    /// Records a block (binds: user_id, blocked, created_at) unless it
    /// exists.
    const INSERT_BLOCK: &'static str;
    // 5.6
    /// Stores a job (binds: kind, job_key, payload, created_at, due_at)
    /// unless its key exists.
    const INSERT_JOB: &'static str;
    /// Stores a job (binds: kind, job_key, payload, created_at, due_at),
    /// or gives a stored key the new payload.
    const PUT_JOB: &'static str;
    // 5.5
    /// Stores a push registration (binds: user_id, device, provider,
    /// token, endpoint, p256dh, auth, session, updated_at), replacing the
    /// one of the same user and device.
    const UPSERT_PUSH_DEVICE: &'static str;
    /// 5.6 account erase: the statements that remove every friendship
    /// and friend request of a user, each with `?` placeholders all bound
    /// to the user.
    const ERASE_FRIENDS: &'static [&'static str];
    /// 5.6 retention: whether a message of a user (bind: user) has content
    /// like a pattern (bind: pattern), through an index on the sender.
    const SENT_LIKE: &'static str;
    /// 5.6 retention: records a conversation's retention (binds: conv,
    /// days, updated_at), replacing one set before.
    const UPSERT_RETENTION: &'static str;

    /// `messages.msg_id` at column `i`.
    fn msg_id_at(r: &RowOf<Self>, i: usize) -> Result<u64, sqlx::Error>;
    /// `messages.client_msg_id` at column `i`.
    fn client_msg_id_at(r: &RowOf<Self>, i: usize) -> Result<Option<String>, sqlx::Error>;
    /// A boolean expression's value at column `i`.
    fn flag_at(r: &RowOf<Self>, i: usize) -> Result<bool, sqlx::Error>;
    /// How many rows a statement changed.
    fn rows_affected(r: &<Self::DB as sqlx::Database>::QueryResult) -> u64;

    /// Whether a statement that failed with `e` may succeed when its
    /// transaction runs again (serialization failures, deadlocks, lock
    /// wait timeouts, unique violations).
    fn retryable(e: &sqlx::Error) -> bool;

    /// The pause before attempt `attempt + 1` of a transaction, growing;
    /// `jitter` is a random number to spread it with.
    fn backoff(attempt: u32, jitter: u32) -> Duration;

    // ----- users and friends -----

    /// `Conflict` if the user exists.
    async fn create_user(c: &mut Conn<Self>, u: &UserRecord) -> StoreResult<()>;
    /// How many of `users` (sorted, distinct) exist.
    async fn count_users(c: &mut Conn<Self>, users: &[String]) -> StoreResult<u64>;
    async fn friend_request(
        c: &mut Conn<Self>,
        from: &str,
        to: &str,
        now: i64,
    ) -> StoreResult<FriendStatus>;
    async fn friend_delete(c: &mut Conn<Self>, a: &str, b: &str) -> StoreResult<()>;
    /// The lists in any order (the store sorts them).
    async fn friends(c: &mut Conn<Self>, user: &str) -> StoreResult<FriendLists>;
    async fn outgoing_request_count(c: &mut Conn<Self>, user: &str) -> StoreResult<u64>;

    // ----- messages -----

    /// `Store::append_messages`, in the caller's transaction.
    async fn append_messages(
        c: &mut Conn<Self>,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<Appended>>;
    /// How many of `seqs` (sorted, distinct) exist in `conv`.
    async fn count_messages(c: &mut Conn<Self>, conv: &str, seqs: &[i64]) -> StoreResult<u64>;
    /// Hides `seqs` of `conv` from `user`'s history (again is harmless).
    async fn hide(c: &mut Conn<Self>, user: &str, conv: &str, seqs: &[i64]) -> StoreResult<()>;

    // ----- positions -----

    /// Moves queue positions to `(user, conv, seq)` (sorted, one per
    /// pair), clamped to the conversation's max seq and a former member's
    /// end, never back; without a transaction, so in statements that are
    /// each safe alone.
    async fn ack_queue_only(c: &mut Conn<Self>, marks: &[(String, String, i64)])
        -> StoreResult<()>;
    /// `Store::ack_many` for acks with receipts, in the caller's
    /// transaction.
    async fn ack_many(c: &mut Conn<Self>, acks: &[AckMark]) -> StoreResult<Vec<Option<u64>>>;

    // ----- conversation lists and offline queues -----

    /// For each `(conv, upper)`, the newest message at or below `upper`
    /// that `user` did not delete; in input order.
    async fn last_messages(
        c: &mut Conn<Self>,
        user: &str,
        convs: &[(String, u64)],
    ) -> StoreResult<Vec<Option<StoredMessage>>>;
    /// For each fetch, queued messages of its span (any order); in input
    /// order.
    async fn queue_pages(
        c: &mut Conn<Self>,
        user: &str,
        fetches: &[PageFetch],
    ) -> StoreResult<Vec<Vec<StoredMessage>>>;
    /// Moves `user`'s queue positions forward to `(conv, seq)`.
    async fn move_queues(
        c: &mut Conn<Self>,
        user: &str,
        moves: &[(String, u64)],
    ) -> StoreResult<()>;
}
