//! 5.5 offline push registrations, written once for both servers: one
//! row per user and device (shard key: user_id).

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};
use tern_core::store::{PushRegistration, StoreError, StoreResult};

use crate::common::be;
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
pub trait Push: Dialect {
    /// In the caller's transaction: the count and the write.
    async fn push_register(c: &mut Conn<Self>, reg: &PushRegistration, max: u32)
        -> StoreResult<()>;
    async fn push_unregister(c: &mut Conn<Self>, user: &str, device: &str) -> StoreResult<bool>;
    async fn push_unregister_session(
        c: &mut Conn<Self>,
        user: &str,
        session: Option<&str>,
    ) -> StoreResult<u64>;
    async fn push_registrations(
        c: &mut Conn<Self>,
        user: &str,
    ) -> StoreResult<Vec<PushRegistration>>;
}

#[async_trait]
impl<D> Push for D
where
    D: Shared,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> i64: Encode<'q, D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    String: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    async fn push_register(c: &mut Conn<D>, reg: &PushRegistration, max: u32) -> StoreResult<()> {
        let (all, known): (i64, i64) = {
            let all: i64 = sqlx::query_scalar(stmt!(
                D,
                "SELECT COUNT(*) FROM push_devices WHERE user_id = ?"
            ))
            .bind(reg.user.as_str())
            .fetch_one(&mut *c)
            .await
            .map_err(be)?;
            let known: i64 = sqlx::query_scalar(stmt!(
                D,
                "SELECT COUNT(*) FROM push_devices WHERE user_id = ? AND device = ?"
            ))
            .bind(reg.user.as_str())
            .bind(reg.device.as_str())
            .fetch_one(&mut *c)
            .await
            .map_err(be)?;
            (all, known)
        };
        if known == 0 && all >= i64::from(max) {
            return Err(StoreError::Forbidden("too many push registrations"));
        }
        sqlx::query(D::UPSERT_PUSH_DEVICE)
            .bind(reg.user.as_str())
            .bind(reg.device.as_str())
            .bind(reg.provider.as_str())
            .bind(reg.token.as_str())
            .bind(reg.endpoint.as_str())
            .bind(reg.p256dh.as_str())
            .bind(reg.auth.as_str())
            .bind(reg.session.as_str())
            .bind(reg.updated_at)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        Ok(())
    }

    async fn push_unregister(c: &mut Conn<D>, user: &str, device: &str) -> StoreResult<bool> {
        let r = sqlx::query(stmt!(
            D,
            "DELETE FROM push_devices WHERE user_id = ? AND device = ?"
        ))
        .bind(user)
        .bind(device)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(D::rows_affected(&r) > 0)
    }

    async fn push_unregister_session(
        c: &mut Conn<D>,
        user: &str,
        session: Option<&str>,
    ) -> StoreResult<u64> {
        let r = match session {
            Some(s) => {
                sqlx::query(stmt!(
                    D,
                    "DELETE FROM push_devices WHERE user_id = ? AND session = ?"
                ))
                .bind(user)
                .bind(s)
                .execute(&mut *c)
                .await
            }
            None => {
                sqlx::query(stmt!(D, "DELETE FROM push_devices WHERE user_id = ?"))
                    .bind(user)
                    .execute(&mut *c)
                    .await
            }
        }
        .map_err(be)?;
        Ok(D::rows_affected(&r))
    }

    async fn push_registrations(c: &mut Conn<D>, user: &str) -> StoreResult<Vec<PushRegistration>> {
        let rows = sqlx::query(stmt!(
            D,
            "SELECT user_id, device, provider, token, endpoint, p256dh, auth, session, \
             updated_at FROM push_devices WHERE user_id = ? ORDER BY device"
        ))
        .bind(user)
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        rows.iter()
            .map(|r| {
                Ok(PushRegistration {
                    user: r.try_get(0)?,
                    device: r.try_get(1)?,
                    provider: r.try_get(2)?,
                    token: r.try_get(3)?,
                    endpoint: r.try_get(4)?,
                    p256dh: r.try_get(5)?,
                    auth: r.try_get(6)?,
                    session: r.try_get(7)?,
                    updated_at: r.try_get(8)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(be)
    }
}
