//! What one SQL server supplies to [`crate::SqlStore`]: its driver, the
//! errors worth a retry, and the statements of each operation, as plain
//! functions on a connection (inside the caller's transaction where the
//! store opened one). The flow around them (transactions, retries, the
//! checks and rules between statements) is the store's, written once.

use std::time::Duration;

use async_trait::async_trait;
use tern_core::offline::QueueSpan;
use tern_core::store::{
    AckMark, Appended, FriendLists, FriendStatus, GroupRecord, NewMessage, StoreResult,
    StoredMessage, UserRecord,
};

use crate::common::{ConvRow, PageFetch};

/// A connection of dialect `D`.
pub type Conn<D> = <<D as Dialect>::DB as sqlx::Database>::Connection;

#[async_trait]
pub trait Dialect: Send + Sync + 'static {
    type DB: sqlx::Database;
    /// For `Debug` output.
    const NAME: &'static str;

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
    async fn get_user(c: &mut Conn<Self>, user: &str) -> StoreResult<Option<UserRecord>>;
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
    async fn max_msg_id(c: &mut Conn<Self>, node: u16) -> StoreResult<u64>;
    async fn max_seq(c: &mut Conn<Self>, conv: &str) -> StoreResult<u64>;
    /// Message `seq` (at most `i64::MAX`) of `conv`; with `lock`, its row
    /// stays locked until the transaction ends.
    async fn message(
        c: &mut Conn<Self>,
        conv: &str,
        seq: u64,
        lock: bool,
    ) -> StoreResult<Option<StoredMessage>>;
    /// Clears the content of message `seq` of `conv`, marks it recalled,
    /// and moves the conversation's activity to `now` (never back).
    async fn clear(c: &mut Conn<Self>, conv: &str, seq: u64, now: i64) -> StoreResult<()>;
    /// Messages of `conv` with `lo < seq <= hi` that `user` did not
    /// delete: the lowest `limit` of them ascending, or with `newest`, the
    /// highest `limit` descending.
    async fn page(
        c: &mut Conn<Self>,
        user: &str,
        conv: &str,
        lo: i64,
        hi: i64,
        limit: u32,
        newest: bool,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// How many of `seqs` (sorted, distinct) exist in `conv`.
    async fn count_messages(c: &mut Conn<Self>, conv: &str, seqs: &[i64]) -> StoreResult<u64>;
    /// Hides `seqs` of `conv` from `user`'s history (again is harmless).
    async fn hide(c: &mut Conn<Self>, user: &str, conv: &str, seqs: &[i64]) -> StoreResult<()>;

    // ----- positions -----

    /// `user`'s read position and end (a former member's last seq) in
    /// `conv`; `None` when the user has no row there. With `lock`, the row
    /// stays locked until the transaction ends.
    async fn read_position(
        c: &mut Conn<Self>,
        user: &str,
        conv: &str,
        lock: bool,
    ) -> StoreResult<Option<(u64, Option<u64>)>>;
    /// Sets the read position (moving the delivered one along).
    async fn set_read(
        c: &mut Conn<Self>,
        user: &str,
        conv: &str,
        seq: u64,
        now: i64,
    ) -> StoreResult<()>;
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

    /// Every conversation of `user`.
    async fn conv_rows(c: &mut Conn<Self>, user: &str) -> StoreResult<Vec<ConvRow>>;
    /// For each `(conv, upper)`, the newest message at or below `upper`
    /// that `user` did not delete; in input order.
    async fn last_messages(
        c: &mut Conn<Self>,
        user: &str,
        convs: &[(String, u64)],
    ) -> StoreResult<Vec<Option<StoredMessage>>>;
    /// The user's conversations with something above the queue position.
    async fn queue_spans(c: &mut Conn<Self>, user: &str) -> StoreResult<Vec<QueueSpan>>;
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

    // ----- groups -----

    async fn get_group(c: &mut Conn<Self>, gid: &str) -> StoreResult<Option<GroupRecord>>;
    async fn group_version(c: &mut Conn<Self>, gid: &str) -> StoreResult<Option<u64>>;
    /// Read positions of the current members of group `gid` (conversation
    /// `conv`), longest-standing first.
    async fn read_positions(
        c: &mut Conn<Self>,
        gid: &str,
        conv: &str,
    ) -> StoreResult<Vec<(String, u64)>>;
    async fn group_count(c: &mut Conn<Self>, user: &str) -> StoreResult<u64>;

    // ----- revoked session tokens -----

    async fn revoke_token(
        c: &mut Conn<Self>,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()>;
    async fn revoked_tokens(c: &mut Conn<Self>, now: i64) -> StoreResult<Vec<(String, i64)>>;
}
