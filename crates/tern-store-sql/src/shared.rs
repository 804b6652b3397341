//! The statements PostgreSQL and MySQL agree on, written once for both:
//! [`Shared`] is implemented for every [`Dialect`] whose driver binds and
//! decodes the plain column types these statements use.
//!
//! Statement text is written with `?` placeholders, in bind order, and
//! `{groups}` / `{owner}` for the two names the schemas spell differently
//! (and `{match}`, the full-text condition of each engine);
//! [`Sql`] renders it for a dialect once (PostgreSQL numbers the
//! placeholders: `$1`, `$2`, ...) and keeps the result for every later call.
//! The row mappers are here too ([`Shared::message_at`]); the two columns
//! the drivers decode differently go through the dialect's hooks.
//!
//! One concern, the statements written once, whatever its length: a
//! statement moves here when both servers accept it as written.

use std::sync::OnceLock;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};
use tern_core::offline::QueueSpan;
use tern_core::rules;
use tern_core::search::SearchQuery;
use tern_core::store::{GroupRecord, SigningKey, StoreResult, StoredMessage, UserRecord};

use crate::common::{be, msg_cols, sql_seq, ConvRow};
use crate::dialect::{Conn, Dialect, RowOf};

/// One statement's text and its rendering for each dialect.
pub struct Sql {
    text: &'static str,
    rendered: [OnceLock<String>; 2],
}

impl Sql {
    pub const fn new(text: &'static str) -> Sql {
        Sql {
            text,
            rendered: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// The text for dialect `D`, rendered on first use.
    pub fn of<D: Dialect>(&'static self) -> &'static str {
        self.rendered[D::SLOT].get_or_init(|| render::<D>(self.text))
    }
}

/// `text` in dialect `D`: its names, and numbered placeholders where it
/// wants them. The statements hold no `?` but placeholders.
pub fn render<D: Dialect>(text: &str) -> String {
    let named = text
        .replace("{groups}", D::GROUPS)
        .replace("{owner}", D::OWNER)
        .replace("{match}", D::SEARCH_MATCH);
    if !D::NUMBERED {
        return named;
    }
    let mut out = String::with_capacity(named.len() + 16);
    let mut n = 0;
    for ch in named.chars() {
        if ch == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

/// A static statement rendered for dialect `$d`.
macro_rules! stmt {
    ($d:ty, $text:expr) => {{
        static SQL: Sql = Sql::new($text);
        SQL.of::<$d>()
    }};
}

/// The operations whose statements both servers accept as written.
#[async_trait]
pub trait Shared: Dialect {
    /// The message whose [`msg_cols!`] start at column `o`.
    fn message_at(r: &RowOf<Self>, o: usize) -> Result<StoredMessage, sqlx::Error>;
    /// [`Self::message_at`] of every row.
    fn messages_at(rows: &[RowOf<Self>], o: usize) -> StoreResult<Vec<StoredMessage>> {
        rows.iter()
            .map(|r| Self::message_at(r, o))
            .collect::<Result<_, _>>()
            .map_err(be)
    }

    async fn get_user(c: &mut Conn<Self>, user: &str) -> StoreResult<Option<UserRecord>>;
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
    /// Every conversation of `user`.
    async fn conv_rows(c: &mut Conn<Self>, user: &str) -> StoreResult<Vec<ConvRow>>;
    /// The user's conversations with something above the queue position.
    async fn queue_spans(c: &mut Conn<Self>, user: &str) -> StoreResult<Vec<QueueSpan>>;

    // ----- groups -----

    async fn get_group(c: &mut Conn<Self>, gid: &str) -> StoreResult<Option<GroupRecord>>;
    /// Kept in the group's row, moved by every stored `system` message of
    /// the group (only membership changes are), so nodes can ask cheaply.
    async fn group_version(c: &mut Conn<Self>, gid: &str) -> StoreResult<Option<u64>>;
    /// Read positions of the current members of group `gid` (conversation
    /// `conv`), longest-standing first.
    async fn read_positions(
        c: &mut Conn<Self>,
        gid: &str,
        conv: &str,
    ) -> StoreResult<Vec<(String, u64)>>;
    /// Current group memberships of `user`: the user's group conversations
    /// (primary key prefix) whose group still lists the user.
    async fn group_count(c: &mut Conn<Self>, user: &str) -> StoreResult<u64>;
    async fn is_member(c: &mut Conn<Self>, gid: &str, user: &str) -> StoreResult<bool>;
    /// The group's member count, counted only up to `limit` (a larger group
    /// answers `limit`): what decides write diffusion costs the limit, not
    /// the group's size, for every message of a large group.
    async fn member_count_up_to(c: &mut Conn<Self>, gid: &str, limit: u64) -> StoreResult<u64>;
    /// Removes `user` from group `gid`; whether they were a member.
    async fn drop_member(c: &mut Conn<Self>, gid: &str, user: &str) -> StoreResult<bool>;
    /// After `leaving` left group `gid`: hands ownership to the
    /// longest-standing remaining member if the owner left
    /// ([`rules::next_owner`]); the group's row is locked to decide.
    async fn hand_over(c: &mut Conn<Self>, gid: &str, leaving: &str) -> StoreResult<()>;

    // ----- revoked session tokens -----

    /// Drops expired revocations, then records `jti` until `expires_at`
    /// (the later of two expiries wins).
    async fn revoke_token(
        c: &mut Conn<Self>,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()>;
    async fn revoked_tokens(c: &mut Conn<Self>, now: i64) -> StoreResult<Vec<(String, i64)>>;
    /// Drops expired records, then records that `user`'s tokens issued
    /// before `before` are revoked until `expires_at` (per field, the
    /// later wins).
    async fn revoke_user_tokens(
        c: &mut Conn<Self>,
        user: &str,
        before: i64,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()>;
    async fn revoked_users(c: &mut Conn<Self>, now: i64) -> StoreResult<Vec<(String, i64, i64)>>;

    // ----- 5.2 search -----

    /// Drops the indexed terms of message `seq` of `conv`.
    async fn drop_doc(c: &mut Conn<Self>, conv: &str, seq: u64) -> StoreResult<()>;
    /// `user`'s hits for the engine's query text `matching` (5.2): in the
    /// conversations the user has a place in (a former member: up to the
    /// removal), neither recalled nor deleted by the user, newest first.
    async fn search(
        c: &mut Conn<Self>,
        user: &str,
        matching: String,
        q: &SearchQuery,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// Up to `max` messages not indexed yet, oldest first, as `(conv, seq,
    /// kind, content)`: locked, skipping those another node's indexer
    /// holds.
    async fn pending_docs(
        c: &mut Conn<Self>,
        max: u32,
    ) -> StoreResult<Vec<(String, i64, String, Option<String>)>>;

    // ----- token signing keys -----

    /// Every signing key, oldest first (`created_at`, then `kid`, sorted
    /// here: the servers' collations may differ).
    async fn signing_keys(c: &mut Conn<Self>) -> StoreResult<Vec<SigningKey>>;
    /// Stores `key` unless its kid exists; whether it stored it.
    async fn add_signing_key(c: &mut Conn<Self>, key: &SigningKey) -> StoreResult<bool>;
}

fn seq_of(v: i64) -> u64 {
    v.max(0) as u64
}

#[async_trait]
impl<D> Shared for D
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> i64: Encode<'q, D::DB>,
    for<'q> Option<&'q str>: Encode<'q, D::DB>,
    for<'q> Option<i64>: Encode<'q, D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    String: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    bool: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    for<'q> Vec<u8>: Encode<'q, D::DB>,
    Vec<u8>: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    fn message_at(r: &RowOf<D>, o: usize) -> Result<StoredMessage, sqlx::Error> {
        Ok(StoredMessage {
            msg_id: D::msg_id_at(r, o)?,
            conv: r.try_get(o + 1)?,
            seq: seq_of(r.try_get(o + 2)?),
            from: r.try_get(o + 3)?,
            to: r.try_get(o + 4)?,
            group: r.try_get(o + 5)?,
            kind: r.try_get(o + 6)?,
            content: r.try_get(o + 7)?,
            ts: r.try_get(o + 8)?,
            client_msg_id: D::client_msg_id_at(r, o + 9)?,
            recalled: r.try_get(o + 10)?,
            reply_to: r.try_get::<Option<i64>, _>(o + 11)?.map(seq_of),
            mentions: tern_core::store::mentions_of(
                r.try_get::<Option<String>, _>(o + 12)?.as_deref(),
            ),
            edited_at: r.try_get(o + 13)?,
            reactions: Vec::new(),
        })
    }

    async fn get_user(c: &mut Conn<D>, user: &str) -> StoreResult<Option<UserRecord>> {
        let sql = stmt!(
            D,
            "SELECT user_id, name, password_hash, created_at, bot FROM users WHERE user_id = ?"
        );
        let row = sqlx::query(sql)
            .bind(user)
            .fetch_optional(&mut *c)
            .await
            .map_err(be)?;
        row.map(|r| {
            Ok(UserRecord {
                user: r.try_get(0)?,
                name: r.try_get(1)?,
                password_hash: r.try_get(2)?,
                created_at: r.try_get(3)?,
                bot: Self::flag_at(&r, 4)?,
            })
        })
        .transpose()
        .map_err(be)
    }

    async fn max_msg_id(c: &mut Conn<D>, node: u16) -> StoreResult<u64> {
        // Walks the msg_id index down from the top to this node's newest id
        // (once, at start-up: rendered on each call).
        let sql = render::<D>(&format!(
            "SELECT msg_id FROM messages WHERE {} = ? ORDER BY msg_id DESC LIMIT 1",
            tern_core::ids::SQL_NODE_OF_MSG_ID
        ));
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(node))
            .fetch_optional(&mut *c)
            .await
            .map_err(be)?;
        row.map_or(Ok(0), |r| D::msg_id_at(&r, 0)).map_err(be)
    }

    async fn max_seq(c: &mut Conn<D>, conv: &str) -> StoreResult<u64> {
        let v: Option<i64> =
            sqlx::query_scalar(stmt!(D, "SELECT max_seq FROM convs WHERE conv = ?"))
                .bind(conv)
                .fetch_optional(&mut *c)
                .await
                .map_err(be)?;
        Ok(seq_of(v.unwrap_or(0)))
    }

    async fn message(
        c: &mut Conn<D>,
        conv: &str,
        seq: u64,
        lock: bool,
    ) -> StoreResult<Option<StoredMessage>> {
        let sql = if lock {
            stmt!(
                D,
                concat!(
                    "SELECT ",
                    msg_cols!(),
                    " FROM messages m WHERE m.conv = ? AND m.seq = ? FOR UPDATE"
                )
            )
        } else {
            stmt!(
                D,
                concat!(
                    "SELECT ",
                    msg_cols!(),
                    " FROM messages m WHERE m.conv = ? AND m.seq = ?"
                )
            )
        };
        let row = sqlx::query(sql)
            .bind(conv)
            .bind(sql_seq(seq))
            .fetch_optional(&mut *c)
            .await
            .map_err(be)?;
        row.map(|r| D::message_at(&r, 0)).transpose().map_err(be)
    }

    async fn clear(c: &mut Conn<D>, conv: &str, seq: u64, now: i64) -> StoreResult<()> {
        let sql = stmt!(
            D,
            "UPDATE messages SET content = NULL, recalled = TRUE WHERE conv = ? AND seq = ?"
        );
        sqlx::query(sql)
            .bind(conv)
            .bind(sql_seq(seq))
            .execute(&mut *c)
            .await
            .map_err(be)?;
        let sql = stmt!(
            D,
            "UPDATE convs SET updated_at = GREATEST(updated_at, ?) WHERE conv = ?"
        );
        sqlx::query(sql)
            .bind(now)
            .bind(conv)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        Ok(())
    }

    async fn page(
        c: &mut Conn<D>,
        user: &str,
        conv: &str,
        lo: i64,
        hi: i64,
        limit: u32,
        newest: bool,
    ) -> StoreResult<Vec<StoredMessage>> {
        macro_rules! page_sql {
            ($order:literal) => {
                concat!(
                    "SELECT ",
                    msg_cols!(),
                    " FROM messages m WHERE m.conv = ? AND m.seq > ? AND m.seq <= ? \
                     AND NOT EXISTS (SELECT 1 FROM hidden h \
                         WHERE h.user_id = ? AND h.conv = m.conv AND h.seq = m.seq) \
                     ORDER BY m.seq ",
                    $order,
                    " LIMIT ?"
                )
            };
        }
        let sql = if newest {
            stmt!(D, page_sql!("DESC"))
        } else {
            stmt!(D, page_sql!("ASC"))
        };
        let rows = sqlx::query(sql)
            .bind(conv)
            .bind(lo)
            .bind(hi)
            .bind(user)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await
            .map_err(be)?;
        D::messages_at(&rows, 0)
    }

    async fn read_position(
        c: &mut Conn<D>,
        user: &str,
        conv: &str,
        lock: bool,
    ) -> StoreResult<Option<(u64, Option<u64>)>> {
        let sql = if lock {
            stmt!(
                D,
                "SELECT read_seq, until_seq FROM user_convs WHERE user_id = ? AND conv = ? \
                 FOR UPDATE"
            )
        } else {
            stmt!(
                D,
                "SELECT read_seq, until_seq FROM user_convs WHERE user_id = ? AND conv = ?"
            )
        };
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(sql)
            .bind(user)
            .bind(conv)
            .fetch_optional(&mut *c)
            .await
            .map_err(be)?;
        Ok(row.map(|(r, u)| (seq_of(r), u.map(seq_of))))
    }

    async fn set_read(
        c: &mut Conn<D>,
        user: &str,
        conv: &str,
        seq: u64,
        now: i64,
    ) -> StoreResult<()> {
        let sql = stmt!(
            D,
            "UPDATE user_convs SET read_seq = ?, delivered_seq = GREATEST(delivered_seq, ?), \
                 read_updated_at = ? \
             WHERE user_id = ? AND conv = ?"
        );
        sqlx::query(sql)
            .bind(sql_seq(seq))
            .bind(sql_seq(seq))
            .bind(now)
            .bind(user)
            .bind(conv)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        Ok(())
    }

    async fn conv_rows(c: &mut Conn<D>, user: &str) -> StoreResult<Vec<ConvRow>> {
        let sql = stmt!(
            D,
            "SELECT uc.conv, uc.peer, uc.group_id, cv.max_seq, uc.read_seq, uc.until_seq, \
                    uc.until_ts, uc.read_updated_at, cv.updated_at, \
                    COALESCE(pc.delivered_seq, 0), COALESCE(pc.read_seq, 0), uc.mention_seq \
             FROM user_convs uc JOIN convs cv ON cv.conv = uc.conv \
             LEFT JOIN user_convs pc ON pc.user_id = uc.peer AND pc.conv = uc.conv AND uc.peer <> uc.user_id \
             WHERE uc.user_id = ?"
        );
        let rows = sqlx::query(sql)
            .bind(user)
            .fetch_all(&mut *c)
            .await
            .map_err(be)?;
        rows.iter()
            .map(|r| {
                Ok(ConvRow {
                    conv: r.try_get(0)?,
                    peer: r.try_get(1)?,
                    group: r.try_get(2)?,
                    max_seq: r.try_get(3)?,
                    read: r.try_get(4)?,
                    until: r.try_get(5)?,
                    until_ts: r.try_get(6)?,
                    read_at: r.try_get(7)?,
                    conv_at: r.try_get(8)?,
                    peer_delivered: r.try_get(9)?,
                    peer_read: r.try_get(10)?,
                    mention: r.try_get(11)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(be)
    }

    async fn queue_spans(c: &mut Conn<D>, user: &str) -> StoreResult<Vec<QueueSpan>> {
        let sql = stmt!(
            D,
            "SELECT uc.conv, uc.inbox_seq, LEAST(cv.max_seq, COALESCE(uc.until_seq, cv.max_seq)), \
                    COALESCE(uc.peer = uc.user_id, FALSE) \
             FROM user_convs uc JOIN convs cv ON cv.conv = uc.conv \
             WHERE uc.user_id = ? \
               AND uc.inbox_seq < LEAST(cv.max_seq, COALESCE(uc.until_seq, cv.max_seq))"
        );
        let rows = sqlx::query(sql)
            .bind(user)
            .fetch_all(&mut *c)
            .await
            .map_err(be)?;
        rows.iter()
            .map(|r| {
                Ok(QueueSpan {
                    conv: r.try_get(0)?,
                    from: seq_of(r.try_get(1)?),
                    to: seq_of(r.try_get(2)?),
                    own_too: D::flag_at(r, 3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(be)
    }

    async fn get_group(c: &mut Conn<D>, gid: &str) -> StoreResult<Option<GroupRecord>> {
        let sql = stmt!(
            D,
            "SELECT name, {owner}, created_at FROM {groups} WHERE gid = ?"
        );
        let head: Option<(String, String, i64)> = sqlx::query_as(sql)
            .bind(gid)
            .fetch_optional(&mut *c)
            .await
            .map_err(be)?;
        let Some((name, owner, created_at)) = head else {
            return Ok(None);
        };
        let sql = stmt!(
            D,
            "SELECT user_id FROM group_members WHERE gid = ? ORDER BY join_order"
        );
        let members: Vec<String> = sqlx::query_scalar(sql)
            .bind(gid)
            .fetch_all(&mut *c)
            .await
            .map_err(be)?;
        Ok(Some(GroupRecord {
            gid: gid.to_owned(),
            name,
            owner,
            members,
            created_at,
            ..GroupRecord::default()
        }))
    }

    async fn group_version(c: &mut Conn<D>, gid: &str) -> StoreResult<Option<u64>> {
        let v: Option<i64> =
            sqlx::query_scalar(stmt!(D, "SELECT version FROM {groups} WHERE gid = ?"))
                .bind(gid)
                .fetch_optional(&mut *c)
                .await
                .map_err(be)?;
        Ok(v.map(seq_of))
    }

    async fn read_positions(
        c: &mut Conn<D>,
        gid: &str,
        conv: &str,
    ) -> StoreResult<Vec<(String, u64)>> {
        let sql = stmt!(
            D,
            "SELECT gm.user_id, COALESCE(uc.read_seq, 0) FROM group_members gm \
             LEFT JOIN user_convs uc ON uc.user_id = gm.user_id AND uc.conv = ? \
             WHERE gm.gid = ? ORDER BY gm.join_order"
        );
        let rows: Vec<(String, i64)> = sqlx::query_as(sql)
            .bind(conv)
            .bind(gid)
            .fetch_all(&mut *c)
            .await
            .map_err(be)?;
        Ok(rows.into_iter().map(|(u, s)| (u, seq_of(s))).collect())
    }

    async fn group_count(c: &mut Conn<D>, user: &str) -> StoreResult<u64> {
        let sql = stmt!(
            D,
            "SELECT COUNT(*) FROM user_convs uc \
             JOIN group_members gm ON gm.gid = uc.group_id AND gm.user_id = uc.user_id \
             JOIN {groups} g ON g.gid = uc.group_id AND NOT g.dissolved \
             WHERE uc.user_id = ? AND uc.group_id IS NOT NULL"
        );
        let n: i64 = sqlx::query_scalar(sql)
            .bind(user)
            .fetch_one(&mut *c)
            .await
            .map_err(be)?;
        Ok(seq_of(n))
    }

    async fn is_member(c: &mut Conn<D>, gid: &str, user: &str) -> StoreResult<bool> {
        let sql = stmt!(
            D,
            "SELECT 1 FROM group_members WHERE gid = ? AND user_id = ?"
        );
        let row = sqlx::query(sql)
            .bind(gid)
            .bind(user)
            .fetch_optional(&mut *c)
            .await
            .map_err(be)?;
        Ok(row.is_some())
    }

    async fn member_count_up_to(c: &mut Conn<D>, gid: &str, limit: u64) -> StoreResult<u64> {
        let sql = stmt!(
            D,
            "SELECT COUNT(*) FROM (SELECT 1 FROM group_members WHERE gid = ? LIMIT ?) t"
        );
        let n: i64 = sqlx::query_scalar(sql)
            .bind(gid)
            .bind(sql_seq(limit))
            .fetch_one(&mut *c)
            .await
            .map_err(be)?;
        Ok(seq_of(n))
    }

    async fn drop_member(c: &mut Conn<D>, gid: &str, user: &str) -> StoreResult<bool> {
        let sql = stmt!(D, "DELETE FROM group_members WHERE gid = ? AND user_id = ?");
        let done = sqlx::query(sql)
            .bind(gid)
            .bind(user)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn hand_over(c: &mut Conn<D>, gid: &str, leaving: &str) -> StoreResult<()> {
        let sql = stmt!(
            D,
            "SELECT {owner}, (SELECT user_id FROM group_members WHERE gid = ? \
                              ORDER BY join_order LIMIT 1) \
             FROM {groups} WHERE gid = ? FOR UPDATE"
        );
        let row: Option<(String, Option<String>)> = sqlx::query_as(sql)
            .bind(gid)
            .bind(gid)
            .fetch_optional(&mut *c)
            .await
            .map_err(be)?;
        let Some((owner, first)) = row else {
            return Ok(());
        };
        if let Some(next) = rules::next_owner(&owner, leaving, first.as_deref()) {
            sqlx::query(stmt!(D, "UPDATE {groups} SET {owner} = ? WHERE gid = ?"))
                .bind(next)
                .bind(gid)
                .execute(&mut *c)
                .await
                .map_err(be)?;
        }
        Ok(())
    }

    async fn revoke_token(
        c: &mut Conn<D>,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(stmt!(D, "DELETE FROM revoked_tokens WHERE expires_at <= ?"))
            .bind(now)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        sqlx::query(D::UPSERT_REVOKED)
            .bind(jti)
            .bind(expires_at)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        Ok(())
    }

    async fn revoked_tokens(c: &mut Conn<D>, now: i64) -> StoreResult<Vec<(String, i64)>> {
        let sql = stmt!(
            D,
            "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > ?"
        );
        sqlx::query_as(sql)
            .bind(now)
            .fetch_all(&mut *c)
            .await
            .map_err(be)
    }

    async fn revoke_user_tokens(
        c: &mut Conn<D>,
        user: &str,
        before: i64,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(stmt!(D, "DELETE FROM revoked_users WHERE expires_at <= ?"))
            .bind(now)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        sqlx::query(D::UPSERT_REVOKED_USER)
            .bind(user)
            .bind(before)
            .bind(expires_at)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        Ok(())
    }

    async fn revoked_users(c: &mut Conn<D>, now: i64) -> StoreResult<Vec<(String, i64, i64)>> {
        let sql = stmt!(
            D,
            "SELECT user_id, before_ms, expires_at FROM revoked_users WHERE expires_at > ?"
        );
        sqlx::query_as(sql)
            .bind(now)
            .fetch_all(&mut *c)
            .await
            .map_err(be)
    }

    async fn drop_doc(c: &mut Conn<D>, conv: &str, seq: u64) -> StoreResult<()> {
        sqlx::query(stmt!(
            D,
            "DELETE FROM search_docs WHERE conv = ? AND seq = ?"
        ))
        .bind(conv)
        .bind(sql_seq(seq))
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn search(
        c: &mut Conn<D>,
        user: &str,
        matching: String,
        q: &SearchQuery,
    ) -> StoreResult<Vec<StoredMessage>> {
        // COALESCE: an absent conv or before_ts filters nothing, and each
        // placeholder takes its type from its column on both servers.
        let sql = stmt!(
            D,
            concat!(
                "SELECT ",
                msg_cols!(),
                " FROM search_docs d \
                 JOIN messages m ON m.conv = d.conv AND m.seq = d.seq \
                 JOIN user_convs uc ON uc.user_id = ? AND uc.conv = d.conv \
                 WHERE {match} AND NOT m.recalled \
                   AND (uc.until_seq IS NULL OR m.seq <= uc.until_seq) \
                   AND d.conv = COALESCE(?, d.conv) AND m.ts < COALESCE(?, m.ts + 1) \
                   AND NOT EXISTS (SELECT 1 FROM hidden h \
                       WHERE h.user_id = uc.user_id AND h.conv = m.conv AND h.seq = m.seq) \
                 ORDER BY m.ts DESC, m.msg_id DESC LIMIT ?"
            )
        );
        let rows = sqlx::query(sql)
            .bind(user)
            .bind(matching.as_str())
            .bind(q.conv.as_deref())
            .bind(q.before_ts)
            .bind(i64::from(q.limit))
            .fetch_all(&mut *c)
            .await
            .map_err(be)?;
        D::messages_at(&rows, 0)
    }

    async fn pending_docs(
        c: &mut Conn<D>,
        max: u32,
    ) -> StoreResult<Vec<(String, i64, String, Option<String>)>> {
        let sql = stmt!(
            D,
            "SELECT conv, seq, kind, content FROM messages WHERE indexed = FALSE \
             ORDER BY msg_id LIMIT ? FOR UPDATE SKIP LOCKED"
        );
        let rows = sqlx::query(sql)
            .bind(i64::from(max))
            .fetch_all(&mut *c)
            .await
            .map_err(be)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(be)
    }

    async fn signing_keys(c: &mut Conn<D>) -> StoreResult<Vec<SigningKey>> {
        let sql = stmt!(D, "SELECT kid, secret, created_at FROM signing_keys");
        let rows: Vec<(String, Vec<u8>, i64)> =
            sqlx::query_as(sql).fetch_all(&mut *c).await.map_err(be)?;
        let mut keys: Vec<SigningKey> = rows
            .into_iter()
            .map(|(kid, secret, created_at)| SigningKey {
                kid,
                secret,
                created_at,
            })
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        Ok(keys)
    }

    async fn add_signing_key(c: &mut Conn<D>, key: &SigningKey) -> StoreResult<bool> {
        let done = sqlx::query(D::INSERT_SIGNING_KEY)
            .bind(key.kid.as_str())
            .bind(key.secret.clone())
            .bind(key.created_at)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        Ok(D::rows_affected(&done) == 1)
    }
}
