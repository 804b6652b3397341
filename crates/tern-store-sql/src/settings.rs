//! 5.3 profiles, conversation settings and sessions, written once for
//! both servers. Each change reads the row and writes it back inside the
//! store's transaction; two first writes at once make one of them fail
//! on the primary key, and the store runs that transaction again.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use tern_core::store::{ConvSettings, Profile, SessionRecord, StoreResult};

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

#[async_trait]
pub trait Settings: Dialect {
    async fn profile(c: &mut Conn<Self>, user: &str) -> StoreResult<Option<Profile>>;
    async fn set_profile(
        c: &mut Conn<Self>,
        user: &str,
        name: Option<&str>,
        avatar: Option<&str>,
    ) -> StoreResult<Option<Profile>>;
    async fn set_conv_settings(
        c: &mut Conn<Self>,
        user: &str,
        conv: &str,
        muted_until: Option<i64>,
        pinned: Option<bool>,
    ) -> StoreResult<ConvSettings>;
    /// Sorted by conv by the caller.
    async fn conv_settings(c: &mut Conn<Self>, user: &str) -> StoreResult<Vec<ConvSettings>>;
    async fn touch_session(c: &mut Conn<Self>, s: &SessionRecord) -> StoreResult<()>;
    async fn sessions(c: &mut Conn<Self>, user: &str, now: i64) -> StoreResult<Vec<SessionRecord>>;
    async fn delete_session(c: &mut Conn<Self>, session: &str) -> StoreResult<()>;
}

#[async_trait]
impl<D> Settings for D
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> i64: Encode<'q, D::DB>,
    for<'q> bool: Encode<'q, D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    String: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    bool: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    async fn profile(c: &mut Conn<D>, user: &str) -> StoreResult<Option<Profile>> {
        let row: Option<(String, String, bool)> = sqlx::query_as(stmt!(
            D,
            "SELECT name, avatar, bot FROM users WHERE user_id = ?"
        ))
        .bind(user)
        .fetch_optional(&mut *c)
        .await
        .map_err(be)?;
        Ok(row.map(|(name, avatar, bot)| Profile {
            name,
            avatar: (!avatar.is_empty()).then_some(avatar),
            bot,
        }))
    }

    async fn set_profile(
        c: &mut Conn<D>,
        user: &str,
        name: Option<&str>,
        avatar: Option<&str>,
    ) -> StoreResult<Option<Profile>> {
        let Some(mut p) = Self::profile(c, user).await? else {
            return Ok(None);
        };
        if let Some(n) = name {
            p.name = n.to_owned();
        }
        if let Some(a) = avatar {
            p.avatar = (!a.is_empty()).then(|| a.to_owned());
        }
        sqlx::query(stmt!(
            D,
            "UPDATE users SET name = ?, avatar = ? WHERE user_id = ?"
        ))
        .bind(p.name.as_str())
        .bind(p.avatar.as_deref().unwrap_or(""))
        .bind(user)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(Some(p))
    }

    async fn set_conv_settings(
        c: &mut Conn<D>,
        user: &str,
        conv: &str,
        muted_until: Option<i64>,
        pinned: Option<bool>,
    ) -> StoreResult<ConvSettings> {
        let row: Option<(i64, bool)> = sqlx::query_as(stmt!(
            D,
            "SELECT muted_until, pinned FROM conv_settings WHERE user_id = ? AND conv = ? FOR UPDATE"
        ))
        .bind(user)
        .bind(conv)
        .fetch_optional(&mut *c)
        .await
        .map_err(be)?;
        let existed = row.is_some();
        let (m, p) = row.unwrap_or_default();
        let s = ConvSettings {
            conv: conv.to_owned(),
            muted_until: muted_until.unwrap_or(m),
            pinned: pinned.unwrap_or(p),
            retention_days: 0,
        };
        if s.is_default() {
            if existed {
                sqlx::query(stmt!(
                    D,
                    "DELETE FROM conv_settings WHERE user_id = ? AND conv = ?"
                ))
                .bind(user)
                .bind(conv)
                .execute(&mut *c)
                .await
                .map_err(be)?;
            }
        } else if existed {
            sqlx::query(stmt!(
                D,
                "UPDATE conv_settings SET muted_until = ?, pinned = ? WHERE user_id = ? AND conv = ?"
            ))
            .bind(s.muted_until)
            .bind(s.pinned)
            .bind(user)
            .bind(conv)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        } else {
            sqlx::query(stmt!(
                D,
                "INSERT INTO conv_settings (user_id, conv, muted_until, pinned) VALUES (?, ?, ?, ?)"
            ))
            .bind(user)
            .bind(conv)
            .bind(s.muted_until)
            .bind(s.pinned)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        }
        Ok(s)
    }

    async fn conv_settings(c: &mut Conn<D>, user: &str) -> StoreResult<Vec<ConvSettings>> {
        let rows: Vec<(String, i64, bool)> = sqlx::query_as(stmt!(
            D,
            "SELECT conv, muted_until, pinned FROM conv_settings WHERE user_id = ?"
        ))
        .bind(user)
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        Ok(rows
            .into_iter()
            .map(|(conv, muted_until, pinned)| ConvSettings {
                conv,
                muted_until,
                pinned,
                retention_days: 0,
            })
            .collect())
    }

    async fn touch_session(c: &mut Conn<D>, s: &SessionRecord) -> StoreResult<()> {
        let done = sqlx::query(stmt!(
            D,
            "UPDATE sessions SET last_seen = GREATEST(last_seen, ?) WHERE session = ?"
        ))
        .bind(s.last_seen)
        .bind(s.session.as_str())
        .execute(&mut *c)
        .await
        .map_err(be)?;
        if D::rows_affected(&done) > 0 {
            return Ok(());
        }
        // MySQL counts a row left as it was as unchanged: the row may
        // exist with a later last_seen.
        let found: Option<i64> =
            sqlx::query_scalar(stmt!(D, "SELECT last_seen FROM sessions WHERE session = ?"))
                .bind(s.session.as_str())
                .fetch_optional(&mut *c)
                .await
                .map_err(be)?;
        if found.is_some() {
            return Ok(());
        }
        sqlx::query(stmt!(
            D,
            "DELETE FROM sessions WHERE user_id = ? AND expires_at <= ?"
        ))
        .bind(s.user.as_str())
        .bind(s.last_seen)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        sqlx::query(stmt!(
            D,
            "INSERT INTO sessions (session, user_id, created_at, expires_at, last_seen) \
             VALUES (?, ?, ?, ?, ?)"
        ))
        .bind(s.session.as_str())
        .bind(s.user.as_str())
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.last_seen)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn sessions(c: &mut Conn<D>, user: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(stmt!(
            D,
            "SELECT session, user_id, created_at, expires_at, last_seen FROM sessions \
             WHERE user_id = ? AND expires_at > ?"
        ))
        .bind(user)
        .bind(now)
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let mut out: Vec<SessionRecord> = rows
            .into_iter()
            .map(
                |(session, user, created_at, expires_at, last_seen)| SessionRecord {
                    session,
                    user,
                    created_at,
                    expires_at,
                    last_seen,
                },
            )
            .collect();
        // Sorted here: the servers' collations may differ.
        out.sort_unstable_by(|a, b| (a.created_at, &a.session).cmp(&(b.created_at, &b.session)));
        Ok(out)
    }

    async fn delete_session(c: &mut Conn<D>, session: &str) -> StoreResult<()> {
        sqlx::query(stmt!(D, "DELETE FROM sessions WHERE session = ?"))
            .bind(session)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        Ok(())
    }
}
