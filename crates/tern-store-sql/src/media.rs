//! 5.5 media, written once for both servers: the uploads' metadata, the
//! reference mark and the sweep. The mark is one `UPDATE` of the row; the
//! sweep takes its rows `FOR UPDATE` and deletes them in one transaction:
//! a mark waits for a sweep holding its row (and then finds it gone), a
//! sweep waiting for a mark then sees the row referenced and leaves it.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use tern_core::store::{MediaRecord, StoreError, StoreResult};

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
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
    String,
    i64,
    bool,
);

fn record(r: Row) -> MediaRecord {
    let (id, owner, size, mime, sha256, w, h, filename, created_at, referenced) = r;
    MediaRecord {
        id,
        owner,
        size: size as u64,
        mime,
        sha256,
        w: w.map(|v| v as u32),
        h: h.map(|v| v as u32),
        filename,
        created_at,
        referenced,
    }
}

#[async_trait]
pub trait Media: Dialect {
    async fn media_add(c: &mut Conn<Self>, m: &MediaRecord) -> StoreResult<()>;
    async fn media_get(c: &mut Conn<Self>, id: &str) -> StoreResult<Option<MediaRecord>>;
    async fn media_reference(
        c: &mut Conn<Self>,
        id: &str,
        owner: &str,
    ) -> StoreResult<Option<MediaRecord>>;
    async fn media_sweep(
        c: &mut Conn<Self>,
        created_before: i64,
        max: u32,
    ) -> StoreResult<Vec<MediaRecord>>;
}

#[async_trait]
impl<D> Media for D
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> i64: Encode<'q, D::DB>,
    for<'q> Option<i64>: Encode<'q, D::DB>,
    for<'q> bool: Encode<'q, D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    String: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    bool: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    async fn media_add(c: &mut Conn<D>, m: &MediaRecord) -> StoreResult<()> {
        let found: Option<i64> =
            sqlx::query_scalar(stmt!(D, "SELECT size FROM media WHERE id = ?"))
                .bind(m.id.as_str())
                .fetch_optional(&mut *c)
                .await
                .map_err(be)?;
        if found.is_some() {
            return Err(StoreError::Conflict);
        }
        sqlx::query(stmt!(
            D,
            "INSERT INTO media (id, owner, size, mime, sha256, w, h, filename, created_at, referenced) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(m.id.as_str())
        .bind(m.owner.as_str())
        .bind(m.size as i64)
        .bind(m.mime.as_str())
        .bind(m.sha256.as_str())
        .bind(m.w.map(i64::from))
        .bind(m.h.map(i64::from))
        .bind(m.filename.as_str())
        .bind(m.created_at)
        .bind(m.referenced)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn media_get(c: &mut Conn<D>, id: &str) -> StoreResult<Option<MediaRecord>> {
        let row: Option<Row> = sqlx::query_as(stmt!(
            D,
            "SELECT id, owner, size, mime, sha256, w, h, filename, created_at, referenced \
             FROM media WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *c)
        .await
        .map_err(be)?;
        Ok(row.map(record))
    }

    async fn media_reference(
        c: &mut Conn<D>,
        id: &str,
        owner: &str,
    ) -> StoreResult<Option<MediaRecord>> {
        sqlx::query(stmt!(
            D,
            "UPDATE media SET referenced = ? WHERE id = ? AND owner = ?"
        ))
        .bind(true)
        .bind(id)
        .bind(owner)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(D::media_get(c, id).await?.filter(|m| m.owner == owner))
    }

    async fn media_sweep(
        c: &mut Conn<D>,
        created_before: i64,
        max: u32,
    ) -> StoreResult<Vec<MediaRecord>> {
        let rows: Vec<Row> = sqlx::query_as(stmt!(
            D,
            "SELECT id, owner, size, mime, sha256, w, h, filename, created_at, referenced \
             FROM media WHERE referenced = ? AND created_at < ? \
             ORDER BY created_at LIMIT ? FOR UPDATE SKIP LOCKED"
        ))
        .bind(false)
        .bind(created_before)
        .bind(i64::from(max))
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let mut gone = Vec::with_capacity(rows.len());
        for r in rows {
            let m = record(r);
            let done = sqlx::query(stmt!(
                D,
                "DELETE FROM media WHERE id = ? AND referenced = ?"
            ))
            .bind(m.id.as_str())
            .bind(false)
            .execute(&mut *c)
            .await
            .map_err(be)?;
            if D::rows_affected(&done) > 0 {
                gone.push(m);
            }
        }
        Ok(gone)
    }
}
