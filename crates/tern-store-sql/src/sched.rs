//! 5.6 scheduled messages, written once for both servers: one row per
//! pending send. A claim reads the due rows, then takes each with a
//! compare-and-set of its lease (`lease_until` still ended): of nodes
//! claiming at once, one changes the row, the others change nothing and
//! leave it.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use tern_core::store::{mentions_column, mentions_of_column, Scheduled, StoreError, StoreResult};

use crate::common::be;
use crate::dialect::{Conn, Dialect, RowOf};
use crate::shared::Sql;

/// A static statement rendered for dialect `$d`.
macro_rules! stmt {
    ($d:ty, $text:expr) => {{
        static SQL: Sql = Sql::new($text);
        SQL.of::<$d>()
    }};
}

type Row = (
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    i64,
    String,
    i64,
);

fn record(r: Row) -> Scheduled {
    Scheduled {
        id: r.0,
        user: r.1,
        conv: r.2,
        peer: r.3,
        at: r.4,
        kind: r.5,
        content: r.6,
        client_msg_id: r.7,
        reply_to: r.8.max(0) as u64,
        mentions: mentions_of_column(&r.9),
        created_at: r.10,
    }
}

#[async_trait]
pub trait Sched: Dialect {
    async fn schedule(c: &mut Conn<Self>, s: &Scheduled, max: u32) -> StoreResult<()>;
    async fn scheduled(c: &mut Conn<Self>, user: &str) -> StoreResult<Vec<Scheduled>>;
    async fn unschedule(c: &mut Conn<Self>, user: &str, id: &str) -> StoreResult<bool>;
    async fn claim_scheduled(
        c: &mut Conn<Self>,
        now: i64,
        lease_until: i64,
        max: u32,
    ) -> StoreResult<Vec<Scheduled>>;
    async fn next_scheduled(c: &mut Conn<Self>) -> StoreResult<Option<i64>>;
}

#[async_trait]
impl<D> Sched for D
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> i64: Encode<'q, D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    Option<i64>: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    String: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    async fn schedule(c: &mut Conn<D>, s: &Scheduled, max: u32) -> StoreResult<()> {
        let pending: i64 =
            sqlx::query_scalar(stmt!(D, "SELECT COUNT(*) FROM scheduled WHERE user_id = ?"))
                .bind(s.user.as_str())
                .fetch_one(&mut *c)
                .await
                .map_err(be)?;
        if pending >= i64::from(max) {
            return Err(StoreError::Forbidden("too many scheduled messages"));
        }
        sqlx::query(stmt!(
            D,
            "INSERT INTO scheduled (id, user_id, conv, peer, at_ms, kind, content, \
             client_msg_id, reply_to, mentions, created_at, lease_until) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"
        ))
        .bind(s.id.as_str())
        .bind(s.user.as_str())
        .bind(s.conv.as_str())
        .bind(s.peer.as_str())
        .bind(s.at)
        .bind(s.kind.as_str())
        .bind(s.content.as_str())
        .bind(s.client_msg_id.as_str())
        .bind(i64::try_from(s.reply_to).unwrap_or(i64::MAX))
        .bind(mentions_column(&s.mentions).as_str())
        .bind(s.created_at)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn scheduled(c: &mut Conn<D>, user: &str) -> StoreResult<Vec<Scheduled>> {
        let rows: Vec<Row> = sqlx::query_as(stmt!(
            D,
            "SELECT id, user_id, conv, peer, at_ms, kind, content, client_msg_id, reply_to, \
             mentions, created_at FROM scheduled WHERE user_id = ?"
        ))
        .bind(user)
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let mut out: Vec<Scheduled> = rows.into_iter().map(record).collect();
        // Byte order of ids, whatever the database's collation.
        out.sort_unstable_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn unschedule(c: &mut Conn<D>, user: &str, id: &str) -> StoreResult<bool> {
        let done = sqlx::query(stmt!(
            D,
            "DELETE FROM scheduled WHERE id = ? AND user_id = ?"
        ))
        .bind(id)
        .bind(user)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn claim_scheduled(
        c: &mut Conn<D>,
        now: i64,
        lease_until: i64,
        max: u32,
    ) -> StoreResult<Vec<Scheduled>> {
        let rows: Vec<Row> = sqlx::query_as(stmt!(
            D,
            "SELECT id, user_id, conv, peer, at_ms, kind, content, client_msg_id, reply_to, \
             mentions, created_at FROM scheduled WHERE at_ms <= ? AND lease_until <= ? \
             ORDER BY at_ms LIMIT ?"
        ))
        .bind(now)
        .bind(now)
        .bind(i64::from(max))
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let done = sqlx::query(stmt!(
                D,
                "UPDATE scheduled SET lease_until = ? WHERE id = ? AND lease_until <= ?"
            ))
            .bind(lease_until)
            .bind(r.0.as_str())
            .bind(now)
            .execute(&mut *c)
            .await
            .map_err(be)?;
            if D::rows_affected(&done) > 0 {
                out.push(record(r));
            }
        }
        Ok(out)
    }

    async fn next_scheduled(c: &mut Conn<D>) -> StoreResult<Option<i64>> {
        sqlx::query_scalar(stmt!(
            D,
            "SELECT MIN(GREATEST(at_ms, lease_until)) FROM scheduled"
        ))
        .fetch_one(&mut *c)
        .await
        .map_err(be)
    }
}
