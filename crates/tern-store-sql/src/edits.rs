//! 5.1, written once for both servers: a message's reply and mentions
//! (stored after the append's own statements, in its transaction), the
//! mention positions they move, edits, and reactions. Who may edit and
//! how many emojis a message takes: `tern_core::rules`.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};
use tern_core::store::{
    group_reactions, mentions_text, NewMessage, ReactionSummary, StoreResult, MENTION_ALL,
};

use crate::common::{be, sql_seq};
use crate::dialect::{Conn, Dialect, RowOf};
use crate::shared::Sql;

/// A static statement rendered for dialect `$d`.
macro_rules! stmt {
    ($d:ty, $text:expr) => {{
        static SQL: Sql = Sql::new($text);
        SQL.of::<$d>()
    }};
}

#[async_trait]
pub trait Edits: Dialect {
    /// Stores the reply and mentions of message `seq` (just appended) and
    /// moves the mention position of each member it names (every current
    /// member but the sender, for `@all`).
    async fn store_extras(c: &mut Conn<Self>, m: &NewMessage, seq: u64) -> StoreResult<()>;
    /// Sets the content and edit time of a message, and the
    /// conversation's activity (never back).
    async fn set_content(
        c: &mut Conn<Self>,
        conv: &str,
        seq: u64,
        content: &str,
        at: i64,
        now: i64,
    ) -> StoreResult<()>;
    /// The distinct emojis of a message's reactions, and whether `user`
    /// reacted with `emoji`.
    async fn emojis(
        c: &mut Conn<Self>,
        conv: &str,
        seq: u64,
        user: &str,
        emoji: &str,
    ) -> StoreResult<(Vec<String>, bool)>;
    async fn add_reaction(
        c: &mut Conn<Self>,
        conv: &str,
        seq: u64,
        emoji: &str,
        user: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// Whether there was such a reaction.
    async fn drop_reaction(
        c: &mut Conn<Self>,
        conv: &str,
        seq: u64,
        emoji: &str,
        user: &str,
    ) -> StoreResult<bool>;
    async fn reactions(
        c: &mut Conn<Self>,
        conv: &str,
        from: u64,
        to: u64,
        users_listed: u32,
    ) -> StoreResult<Vec<ReactionSummary>>;
}

#[async_trait]
impl<D> Edits for D
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> i64: Encode<'q, D::DB>,
    for<'q> Option<i64>: Encode<'q, D::DB>,
    for<'q> Option<String>: Encode<'q, D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    String: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    async fn store_extras(c: &mut Conn<D>, m: &NewMessage, seq: u64) -> StoreResult<()> {
        let x = &m.extras;
        if x.reply_to.is_none() && x.mentions.is_empty() {
            return Ok(());
        }
        let seq = sql_seq(seq);
        sqlx::query(stmt!(
            D,
            "UPDATE messages SET reply_to = ?, mentions = ? WHERE conv = ? AND seq = ?"
        ))
        .bind(x.reply_to.map(sql_seq))
        .bind(mentions_text(&x.mentions))
        .bind(m.conv.as_str())
        .bind(seq)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        if x.mentions.is_empty() || m.group.is_none() {
            return Ok(());
        }
        if x.mentions.iter().any(|u| u == MENTION_ALL) {
            sqlx::query(stmt!(
                D,
                "UPDATE user_convs SET mention_seq = GREATEST(mention_seq, ?) \
                 WHERE conv = ? AND until_seq IS NULL AND user_id <> ?"
            ))
            .bind(seq)
            .bind(m.conv.as_str())
            .bind(m.from.as_str())
            .execute(&mut *c)
            .await
            .map_err(be)?;
            return Ok(());
        }
        for u in x.mentions.iter().filter(|u| **u != m.from) {
            sqlx::query(stmt!(
                D,
                "UPDATE user_convs SET mention_seq = GREATEST(mention_seq, ?) \
                 WHERE user_id = ? AND conv = ? AND until_seq IS NULL"
            ))
            .bind(seq)
            .bind(u.as_str())
            .bind(m.conv.as_str())
            .execute(&mut *c)
            .await
            .map_err(be)?;
        }
        Ok(())
    }

    async fn set_content(
        c: &mut Conn<D>,
        conv: &str,
        seq: u64,
        content: &str,
        at: i64,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(stmt!(
            D,
            "UPDATE messages SET content = ?, edited_at = ? WHERE conv = ? AND seq = ?"
        ))
        .bind(content)
        .bind(at)
        .bind(conv)
        .bind(sql_seq(seq))
        .execute(&mut *c)
        .await
        .map_err(be)?;
        sqlx::query(stmt!(
            D,
            "UPDATE convs SET updated_at = GREATEST(updated_at, ?) WHERE conv = ?"
        ))
        .bind(now)
        .bind(conv)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn emojis(
        c: &mut Conn<D>,
        conv: &str,
        seq: u64,
        user: &str,
        emoji: &str,
    ) -> StoreResult<(Vec<String>, bool)> {
        let rows = sqlx::query(stmt!(
            D,
            "SELECT DISTINCT emoji FROM reactions WHERE conv = ? AND seq = ?"
        ))
        .bind(conv)
        .bind(sql_seq(seq))
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let used = rows
            .iter()
            .map(|r| D::client_msg_id_at(r, 0).map(Option::unwrap_or_default))
            .collect::<Result<Vec<String>, _>>()
            .map_err(be)?;
        let mine: i64 = sqlx::query_scalar(stmt!(
            D,
            "SELECT COUNT(*) FROM reactions WHERE conv = ? AND seq = ? AND emoji = ? AND user_id = ?"
        ))
        .bind(conv)
        .bind(sql_seq(seq))
        .bind(emoji)
        .bind(user)
        .fetch_one(&mut *c)
        .await
        .map_err(be)?;
        let mine = mine > 0;
        Ok((used, mine))
    }

    async fn add_reaction(
        c: &mut Conn<D>,
        conv: &str,
        seq: u64,
        emoji: &str,
        user: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(stmt!(
            D,
            "INSERT INTO reactions (conv, seq, emoji, user_id, ts) VALUES (?, ?, ?, ?, ?)"
        ))
        .bind(conv)
        .bind(sql_seq(seq))
        .bind(emoji)
        .bind(user)
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn drop_reaction(
        c: &mut Conn<D>,
        conv: &str,
        seq: u64,
        emoji: &str,
        user: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(stmt!(
            D,
            "DELETE FROM reactions WHERE conv = ? AND seq = ? AND emoji = ? AND user_id = ?"
        ))
        .bind(conv)
        .bind(sql_seq(seq))
        .bind(emoji)
        .bind(user)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn reactions(
        c: &mut Conn<D>,
        conv: &str,
        from: u64,
        to: u64,
        users_listed: u32,
    ) -> StoreResult<Vec<ReactionSummary>> {
        let rows = sqlx::query(stmt!(
            D,
            "SELECT seq, emoji, user_id, cnt FROM ( \
                 SELECT seq, emoji, user_id, \
                        COUNT(*) OVER (PARTITION BY seq, emoji) AS cnt, \
                        MIN(ts) OVER (PARTITION BY seq, emoji) AS first_ts, \
                        ROW_NUMBER() OVER (PARTITION BY seq, emoji ORDER BY ts, user_id) AS rn \
                 FROM reactions WHERE conv = ? AND seq >= ? AND seq <= ?) t \
             WHERE rn <= ? ORDER BY seq, first_ts, emoji, rn"
        ))
        .bind(conv)
        .bind(sql_seq(from))
        .bind(sql_seq(to))
        .bind(i64::from(users_listed))
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let seq: i64 = r.try_get(0).map_err(be)?;
            let emoji = D::client_msg_id_at(r, 1).map_err(be)?.unwrap_or_default();
            let user: String = r.try_get(2).map_err(be)?;
            let count: i64 = r.try_get(3).map_err(be)?;
            out.push((seq.max(0) as u64, emoji, user, count.max(0) as u64));
        }
        Ok(group_reactions(out))
    }
}
