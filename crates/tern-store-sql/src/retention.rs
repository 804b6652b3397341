//! 5.6 retention and account erase, written once for both servers.
//!
//! Expiry takes one conversation per transaction: it reads the oldest
//! `budget` messages, and removes the prefix up to the newest of them
//! older than the cutoff (so a clock that stepped back never leaves a
//! hole in what is kept), with its reactions, search documents and
//! deletions-for-me; then moves every read and queue position in the
//! conversation past it. Two nodes expiring the same conversation at once
//! both delete the same rows (the second finds none) and both move the
//! positions to the same place: harmless. Erase is one transaction of
//! statements that are each idempotent.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use tern_core::store::{
    media_like, media_named, ExpireRound, StoreResult, DELETED_USER_KIND, ERASED_PASSWORD_HASH,
};

use crate::common::be;
use crate::dialect::{Conn, Dialect, RowOf};
use crate::shared::{render, Sql};

/// A static statement rendered for dialect `$d`.
macro_rules! stmt {
    ($d:ty, $text:expr) => {{
        static SQL: Sql = Sql::new($text);
        SQL.of::<$d>()
    }};
}

/// Statements of erase whose every placeholder is the user.
const ERASE: &[&str] = &[
    "DELETE FROM blocks WHERE user_id = ? OR blocked = ?",
    "DELETE FROM conv_settings WHERE user_id = ?",
    "DELETE FROM sessions WHERE user_id = ?",
    "DELETE FROM scheduled WHERE user_id = ?",
    "DELETE FROM push_devices WHERE user_id = ?",
    "DELETE FROM reactions WHERE user_id = ?",
    "DELETE FROM hidden WHERE user_id = ?",
    // Out of the index while the rows still say whose they are.
    "DELETE FROM search_docs WHERE (conv, seq) IN \
     (SELECT conv, seq FROM messages WHERE from_user = ? AND kind <> 'system')",
    "UPDATE user_convs SET inbox_seq = COALESCE( \
     (SELECT GREATEST(user_convs.inbox_seq, cv.max_seq) FROM convs cv WHERE cv.conv = user_convs.conv), \
     inbox_seq) WHERE user_id = ?",
];

#[async_trait]
pub trait Retention: Dialect {
    async fn set_retention(c: &mut Conn<Self>, conv: &str, days: u32, now: i64) -> StoreResult<()>;
    async fn retention(c: &mut Conn<Self>, conv: &str) -> StoreResult<u32>;
    async fn retentions(c: &mut Conn<Self>, user: &str) -> StoreResult<Vec<(String, u32)>>;
    /// The conversations a round looks at, with their retention in days.
    async fn round_convs(c: &mut Conn<Self>, q: &ExpireRound) -> StoreResult<Vec<(String, u32)>>;
    /// Expires one conversation's prefix; `(messages, media)` released.
    async fn expire_conv(
        c: &mut Conn<Self>,
        conv: &str,
        cutoff: i64,
        budget: u32,
    ) -> StoreResult<(u64, u64)>;
    async fn erase_user(c: &mut Conn<Self>, user: &str) -> StoreResult<()>;
}

#[async_trait]
impl<D> Retention for D
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> String: Encode<'q, D::DB>,
    for<'q> i64: Encode<'q, D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    String: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    async fn set_retention(c: &mut Conn<D>, conv: &str, days: u32, now: i64) -> StoreResult<()> {
        if days == 0 {
            sqlx::query(stmt!(D, "DELETE FROM conv_retention WHERE conv = ?"))
                .bind(conv)
                .execute(&mut *c)
                .await
                .map_err(be)?;
        } else {
            sqlx::query(D::UPSERT_RETENTION)
                .bind(conv)
                .bind(i64::from(days))
                .bind(now)
                .execute(&mut *c)
                .await
                .map_err(be)?;
        }
        Ok(())
    }

    async fn retention(c: &mut Conn<D>, conv: &str) -> StoreResult<u32> {
        let days: Option<i64> =
            sqlx::query_scalar(stmt!(D, "SELECT days FROM conv_retention WHERE conv = ?"))
                .bind(conv)
                .fetch_optional(&mut *c)
                .await
                .map_err(be)?;
        Ok(days.unwrap_or(0) as u32)
    }

    async fn retentions(c: &mut Conn<D>, user: &str) -> StoreResult<Vec<(String, u32)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(stmt!(
            D,
            "SELECT r.conv, r.days FROM user_convs uc JOIN conv_retention r ON r.conv = uc.conv \
             WHERE uc.user_id = ?"
        ))
        .bind(user)
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        Ok(rows.into_iter().map(|(c, d)| (c, d as u32)).collect())
    }

    async fn round_convs(c: &mut Conn<D>, q: &ExpireRound) -> StoreResult<Vec<(String, u32)>> {
        let rows: Vec<(String, i64)> = if q.default_days == 0 {
            // Only conversations with their own retention expire anything.
            sqlx::query_as(stmt!(
                D,
                "SELECT conv, days FROM conv_retention WHERE conv > ? ORDER BY conv LIMIT ?"
            ))
            .bind(q.after.as_str())
            .bind(i64::from(q.max_convs))
            .fetch_all(&mut *c)
            .await
        } else {
            sqlx::query_as(stmt!(
                D,
                "SELECT cv.conv, COALESCE(r.days, ?) FROM convs cv \
                 LEFT JOIN conv_retention r ON r.conv = cv.conv \
                 WHERE cv.conv > ? ORDER BY cv.conv LIMIT ?"
            ))
            .bind(i64::from(q.default_days))
            .bind(q.after.as_str())
            .bind(i64::from(q.max_convs))
            .fetch_all(&mut *c)
            .await
        }
        .map_err(be)?;
        Ok(rows.into_iter().map(|(c, d)| (c, d as u32)).collect())
    }

    async fn expire_conv(
        c: &mut Conn<D>,
        conv: &str,
        cutoff: i64,
        budget: u32,
    ) -> StoreResult<(u64, u64)> {
        type Row = (i64, i64, String, String, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(stmt!(
            D,
            "SELECT seq, ts, from_user, kind, content FROM messages \
             WHERE conv = ? ORDER BY seq LIMIT ?"
        ))
        .bind(conv)
        .bind(i64::from(budget))
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let Some(last) = rows.iter().rposition(|r| r.1 < cutoff) else {
            return Ok((0, 0));
        };
        let gone = &rows[..=last];
        let upto = gone[last].0;
        let deleted = sqlx::query(stmt!(D, "DELETE FROM messages WHERE conv = ? AND seq <= ?"))
            .bind(conv)
            .bind(upto)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        let deleted = D::rows_affected(&deleted);
        for sql in [
            stmt!(D, "DELETE FROM reactions WHERE conv = ? AND seq <= ?"),
            stmt!(D, "DELETE FROM hidden WHERE conv = ? AND seq <= ?"),
            stmt!(D, "DELETE FROM search_docs WHERE conv = ? AND seq <= ?"),
        ] {
            sqlx::query(sql)
                .bind(conv)
                .bind(upto)
                .execute(&mut *c)
                .await
                .map_err(be)?;
        }
        // Unread counts what is kept: every position moves past the
        // prefix (a former member's no further than its removal).
        sqlx::query(stmt!(
            D,
            "UPDATE user_convs SET \
             read_seq = GREATEST(read_seq, LEAST(?, COALESCE(until_seq, ?))), \
             inbox_seq = GREATEST(inbox_seq, LEAST(?, COALESCE(until_seq, ?))) \
             WHERE conv = ?"
        ))
        .bind(upto)
        .bind(upto)
        .bind(upto)
        .bind(upto)
        .bind(conv)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        let mut media = 0;
        if deleted > 0 {
            for r in gone {
                if let Some(id) = media_named(&r.3, r.4.as_deref()) {
                    media += release_media::<D>(c, &id, &r.2).await?;
                }
            }
        }
        Ok((deleted, media))
    }

    async fn erase_user(c: &mut Conn<D>, user: &str) -> StoreResult<()> {
        let statements = D::ERASE_FRIENDS
            .iter()
            .chain(ERASE)
            .map(|s| (render::<D>(s), s.matches('?').count()));
        for (sql, binds) in statements {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for _ in 0..binds {
                q = q.bind(user);
            }
            q.execute(&mut *c).await.map_err(be)?;
        }
        sqlx::query(stmt!(
            D,
            "UPDATE messages SET kind = ?, content = NULL, mentions = NULL \
             WHERE from_user = ? AND kind <> 'system'"
        ))
        .bind(DELETED_USER_KIND)
        .bind(user)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        sqlx::query(stmt!(
            D,
            "UPDATE media SET referenced = (1 = 0) WHERE owner = ?"
        ))
        .bind(user)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        sqlx::query(stmt!(
            D,
            "UPDATE users SET name = '', avatar = '', password_hash = ? WHERE user_id = ?"
        ))
        .bind(ERASED_PASSWORD_HASH)
        .bind(user)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }
}

/// Marks media `id` of `owner` unreferenced unless a kept message of the
/// owner or the owner's avatar names it; 1 when it did.
async fn release_media<D>(c: &mut Conn<D>, id: &str, owner: &str) -> StoreResult<u64>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> String: Encode<'q, D::DB>,
    String: Type<D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    let sent = sqlx::query(sqlx::AssertSqlSafe(render::<D>(D::SENT_LIKE)))
        .bind(owner)
        .bind(media_like(id))
        .fetch_optional(&mut *c)
        .await
        .map_err(be)?;
    let avatar = sqlx::query(stmt!(
        D,
        "SELECT 1 FROM users WHERE user_id = ? AND avatar = ?"
    ))
    .bind(owner)
    .bind(id)
    .fetch_optional(&mut *c)
    .await
    .map_err(be)?;
    if sent.is_some() || avatar.is_some() {
        return Ok(0);
    }
    let done = sqlx::query(stmt!(
        D,
        "UPDATE media SET referenced = (1 = 0) WHERE id = ? AND owner = ?"
    ))
    .bind(id)
    .bind(owner)
    .execute(&mut *c)
    .await
    .map_err(be)?;
    Ok(D::rows_affected(&done))
}
