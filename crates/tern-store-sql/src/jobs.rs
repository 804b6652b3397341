//! 5.6 durable jobs, written once for both servers. Claims take due rows
//! with `FOR UPDATE SKIP LOCKED` inside the store's transaction, so two
//! nodes claiming at once never take the same job; the claim is a time
//! (`claimed_until`), so a node that dies leaves its jobs to the others
//! once it ends.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};
use tern_core::store::{Job, NewJob, StoreResult, StoredMessage};

use crate::common::{be, msg_cols};
use crate::dialect::{Conn, Dialect, RowOf};
use crate::shared::{Shared, Sql};

/// A static statement rendered for dialect `$d`.
macro_rules! stmt {
    ($d:ty, $text:expr) => {{
        static SQL: Sql = Sql::new($text);
        SQL.of::<$d>()
    }};
}

#[async_trait]
pub trait Jobs: Dialect {
    /// Stores each job unless its key is stored ([`Dialect::INSERT_JOB`]).
    async fn enqueue_jobs(c: &mut Conn<Self>, jobs: &[NewJob]) -> StoreResult<()>;
    /// In the caller's transaction.
    async fn claim_jobs(
        c: &mut Conn<Self>,
        kind: &str,
        now: i64,
        lease_ms: i64,
        max: u32,
    ) -> StoreResult<Vec<Job>>;
    async fn finish_job(c: &mut Conn<Self>, id: i64) -> StoreResult<()>;
    /// Stores each job, or gives a stored key the new payload
    /// ([`Dialect::PUT_JOB`]).
    async fn put_jobs(c: &mut Conn<Self>, jobs: &[NewJob]) -> StoreResult<()>;
    async fn complete_job(
        c: &mut Conn<Self>,
        id: i64,
        payload: &str,
        now: i64,
    ) -> StoreResult<bool>;
    async fn retry_job(
        c: &mut Conn<Self>,
        id: i64,
        due_at: i64,
        attempts: u32,
        last_error: &str,
    ) -> StoreResult<()>;
    async fn count_jobs(c: &mut Conn<Self>, kind: &str) -> StoreResult<u64>;
    async fn message_by_id(c: &mut Conn<Self>, msg_id: u64) -> StoreResult<Option<StoredMessage>>;
}

#[async_trait]
impl<D> Jobs for D
where
    D: Shared,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> i64: Encode<'q, D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    String: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    Option<String>: for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    async fn enqueue_jobs(c: &mut Conn<D>, jobs: &[NewJob]) -> StoreResult<()> {
        for j in jobs {
            sqlx::query(D::INSERT_JOB)
                .bind(j.kind.as_str())
                .bind(j.key.as_str())
                .bind(j.payload.as_str())
                .bind(j.created_at)
                .bind(j.due_at)
                .execute(&mut *c)
                .await
                .map_err(be)?;
        }
        Ok(())
    }

    async fn claim_jobs(
        c: &mut Conn<D>,
        kind: &str,
        now: i64,
        lease_ms: i64,
        max: u32,
    ) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query(stmt!(
            D,
            "SELECT id, kind, job_key, payload, created_at, due_at, attempts, last_error \
             FROM jobs WHERE kind = ? AND due_at <= ? AND claimed_until <= ? \
             ORDER BY due_at, id LIMIT ? FOR UPDATE SKIP LOCKED"
        ))
        .bind(kind)
        .bind(now)
        .bind(now)
        .bind(i64::from(max))
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let jobs = rows
            .iter()
            .map(|r| {
                Ok(Job {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    key: r.try_get(2)?,
                    payload: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                    due_at: r.try_get(5)?,
                    attempts: r.try_get::<i64, _>(6)?.clamp(0, u32::MAX as i64) as u32,
                    last_error: r.try_get(7)?,
                })
            })
            .collect::<Result<Vec<Job>, sqlx::Error>>()
            .map_err(be)?;
        for j in &jobs {
            sqlx::query(stmt!(D, "UPDATE jobs SET claimed_until = ? WHERE id = ?"))
                .bind(now.saturating_add(lease_ms))
                .bind(j.id)
                .execute(&mut *c)
                .await
                .map_err(be)?;
        }
        Ok(jobs)
    }

    async fn finish_job(c: &mut Conn<D>, id: i64) -> StoreResult<()> {
        sqlx::query(stmt!(D, "DELETE FROM jobs WHERE id = ?"))
            .bind(id)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        Ok(())
    }

    async fn put_jobs(c: &mut Conn<D>, jobs: &[NewJob]) -> StoreResult<()> {
        for j in jobs {
            sqlx::query(D::PUT_JOB)
                .bind(j.kind.as_str())
                .bind(j.key.as_str())
                .bind(j.payload.as_str())
                .bind(j.created_at)
                .bind(j.due_at)
                .execute(&mut *c)
                .await
                .map_err(be)?;
        }
        Ok(())
    }

    async fn complete_job(c: &mut Conn<D>, id: i64, payload: &str, now: i64) -> StoreResult<bool> {
        let done = sqlx::query(stmt!(D, "DELETE FROM jobs WHERE id = ? AND payload = ?"))
            .bind(id)
            .bind(payload)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        if D::rows_affected(&done) > 0 {
            return Ok(true);
        }
        sqlx::query(stmt!(
            D,
            "UPDATE jobs SET claimed_until = 0, due_at = LEAST(due_at, ?), attempts = 0 \
             WHERE id = ?"
        ))
        .bind(now)
        .bind(id)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(false)
    }

    async fn retry_job(
        c: &mut Conn<D>,
        id: i64,
        due_at: i64,
        attempts: u32,
        last_error: &str,
    ) -> StoreResult<()> {
        sqlx::query(stmt!(
            D,
            "UPDATE jobs SET due_at = ?, attempts = ?, last_error = ?, claimed_until = 0 \
             WHERE id = ?"
        ))
        .bind(due_at)
        .bind(i64::from(attempts))
        .bind(last_error)
        .bind(id)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn count_jobs(c: &mut Conn<D>, kind: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(stmt!(D, "SELECT COUNT(*) FROM jobs WHERE kind = ?"))
            .bind(kind)
            .fetch_one(&mut *c)
            .await
            .map_err(be)?;
        Ok(n.max(0) as u64)
    }

    async fn message_by_id(c: &mut Conn<D>, msg_id: u64) -> StoreResult<Option<StoredMessage>> {
        let Ok(id) = i64::try_from(msg_id) else {
            return Ok(None);
        };
        let row = sqlx::query(stmt!(
            D,
            concat!(
                "SELECT ",
                msg_cols!(),
                " FROM messages m WHERE m.msg_id = ?"
            )
        ))
        .bind(id)
        .fetch_optional(&mut *c)
        .await
        .map_err(be)?;
        row.map(|r| D::message_at(&r, 0)).transpose().map_err(be)
    }
}
