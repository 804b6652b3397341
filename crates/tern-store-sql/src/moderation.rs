//! 5.4 and blocks, written once for both servers: the role rule every
//! group message passes (`tern_core::roles`, from rows read in the
//! append's transaction, which holds the group conversation's counter
//! lock that every change of roles takes too), the changes of roles and
//! settings, a group's roles as read, and blocks.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use tern_core::roles::{self, GroupState, Role, Standing};
use tern_core::store::{Blocks, GroupRecord, MemberChange, NewMessage, Refusal, StoreResult};

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
pub trait Moderation: Dialect {
    /// [`roles::admit`] for a message to an existing group that passed the
    /// group gate: `Some(refusal)` when the roles refuse it.
    async fn role_gate(
        c: &mut Conn<Self>,
        m: &NewMessage,
        gid: &str,
    ) -> StoreResult<Option<Refusal>>;
    /// Writes a change of roles or settings (after its message).
    async fn apply_change(c: &mut Conn<Self>, gid: &str, change: &MemberChange) -> StoreResult<()>;
    /// Adds the roles and settings to a group record read without them.
    async fn fill_roles(c: &mut Conn<Self>, rec: &mut GroupRecord) -> StoreResult<()>;
    async fn block(c: &mut Conn<Self>, blocker: &str, blocked: &str, now: i64) -> StoreResult<()>;
    async fn unblock(c: &mut Conn<Self>, blocker: &str, blocked: &str) -> StoreResult<()>;
    async fn blocks(c: &mut Conn<Self>, user: &str) -> StoreResult<Blocks>;
    async fn is_blocked(c: &mut Conn<Self>, blocker: &str, blocked: &str) -> StoreResult<bool>;
}

/// The group's owner and settings, and `user`'s standing in it (`None`
/// for a non-member), in one statement; `None` when the group does not
/// exist.
#[allow(clippy::type_complexity)]
async fn group_state<D>(
    c: &mut Conn<D>,
    gid: &str,
    user: &str,
) -> StoreResult<Option<(String, GroupState, Option<Standing>)>>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    String: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    bool: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    let sql = stmt!(
        D,
        "SELECT g.{owner}, g.muted_all, g.dissolved, m.admin, m.muted_until \
         FROM {groups} g LEFT JOIN group_members m ON m.gid = g.gid AND m.user_id = ? \
         WHERE g.gid = ?"
    );
    let row: Option<(String, bool, bool, Option<bool>, Option<i64>)> = sqlx::query_as(sql)
        .bind(user)
        .bind(gid)
        .fetch_optional(&mut *c)
        .await
        .map_err(be)?;
    Ok(
        row.map(|(owner, muted_all, dissolved, admin, muted_until)| {
            let standing = admin.map(|a| Standing {
                role: Role::of(&owner, user, a),
                muted_until,
            });
            let state = GroupState {
                muted_all,
                dissolved,
            };
            (owner, state, standing)
        }),
    )
}

/// A current member's standing; `None` for a non-member.
async fn standing<D>(
    c: &mut Conn<D>,
    gid: &str,
    owner: &str,
    user: &str,
) -> StoreResult<Option<Standing>>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    bool: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    let sql = stmt!(
        D,
        "SELECT admin, muted_until FROM group_members WHERE gid = ? AND user_id = ?"
    );
    let row: Option<(bool, Option<i64>)> = sqlx::query_as(sql)
        .bind(gid)
        .bind(user)
        .fetch_optional(&mut *c)
        .await
        .map_err(be)?;
    Ok(row.map(|(admin, muted_until)| Standing {
        role: Role::of(owner, user, admin),
        muted_until,
    }))
}

#[async_trait]
impl<D> Moderation for D
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'q> i64: Encode<'q, D::DB>,
    i64: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    String: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    bool: Type<D::DB> + for<'r> Decode<'r, D::DB>,
    usize: ColumnIndex<RowOf<D>>,
{
    async fn role_gate(c: &mut Conn<D>, m: &NewMessage, gid: &str) -> StoreResult<Option<Refusal>> {
        if matches!(m.change, Some(MemberChange::Create { .. })) {
            return Ok(None);
        }
        let Some((owner, state, sender)) = group_state::<D>(c, gid, &m.from).await? else {
            return Ok(None);
        };
        let target = match m.change.as_ref().and_then(MemberChange::target) {
            Some(t) => standing::<D>(c, gid, &owner, t).await?,
            None => None,
        };
        Ok(roles::admit(&state, m.change.as_ref(), &m.from, sender, target, m.ts).err())
    }

    async fn apply_change(c: &mut Conn<D>, gid: &str, change: &MemberChange) -> StoreResult<()> {
        let flag = |on: bool| i64::from(on);
        let q = match change {
            MemberChange::Admin { user, on } => sqlx::query(stmt!(
                D,
                "UPDATE group_members SET admin = (? <> 0) WHERE gid = ? AND user_id = ?"
            ))
            .bind(flag(*on))
            .bind(gid)
            .bind(user.as_str()),
            MemberChange::Mute {
                user,
                until: Some(t),
            } => sqlx::query(stmt!(
                D,
                "UPDATE group_members SET muted_until = ? WHERE gid = ? AND user_id = ?"
            ))
            .bind(*t)
            .bind(gid)
            .bind(user.as_str()),
            MemberChange::Mute { user, until: None } => sqlx::query(stmt!(
                D,
                "UPDATE group_members SET muted_until = NULL WHERE gid = ? AND user_id = ?"
            ))
            .bind(gid)
            .bind(user.as_str()),
            MemberChange::Rename(name) => {
                sqlx::query(stmt!(D, "UPDATE {groups} SET name = ? WHERE gid = ?"))
                    .bind(name.as_str())
                    .bind(gid)
            }
            MemberChange::Announce(text) => sqlx::query(stmt!(
                D,
                "UPDATE {groups} SET announcement = ? WHERE gid = ?"
            ))
            .bind(text.as_str())
            .bind(gid),
            MemberChange::MutedAll(on) => sqlx::query(stmt!(
                D,
                "UPDATE {groups} SET muted_all = (? <> 0) WHERE gid = ?"
            ))
            .bind(flag(*on))
            .bind(gid),
            MemberChange::Dissolve => sqlx::query(stmt!(
                D,
                "UPDATE {groups} SET dissolved = TRUE WHERE gid = ?"
            ))
            .bind(gid),
            MemberChange::Create { .. } | MemberChange::Join(_) | MemberChange::Leave(_) => {
                return Ok(())
            }
        };
        q.execute(&mut *c).await.map_err(be)?;
        Ok(())
    }

    async fn fill_roles(c: &mut Conn<D>, rec: &mut GroupRecord) -> StoreResult<()> {
        // One statement: the settings on every row, and the members with a
        // role or a mute (none: one row without a member).
        let sql = stmt!(
            D,
            "SELECT COALESCE(g.announcement, ''), g.muted_all, g.dissolved, \
                    m.user_id, m.admin, m.muted_until \
             FROM {groups} g LEFT JOIN group_members m ON m.gid = g.gid \
                 AND (m.admin OR m.muted_until IS NOT NULL) \
             WHERE g.gid = ? ORDER BY m.join_order"
        );
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            String,
            bool,
            bool,
            Option<String>,
            Option<bool>,
            Option<i64>,
        )> = sqlx::query_as(sql)
            .bind(rec.gid.as_str())
            .fetch_all(&mut *c)
            .await
            .map_err(be)?;
        for (announcement, muted_all, dissolved, user, admin, until) in rows {
            rec.announcement = announcement;
            rec.muted_all = muted_all;
            rec.dissolved = dissolved;
            let Some(user) = user else { continue };
            if admin == Some(true) {
                rec.admins.push(user.clone());
            }
            if let Some(t) = until {
                rec.mutes.push((user, t));
            }
        }
        Ok(())
    }

    async fn block(c: &mut Conn<D>, blocker: &str, blocked: &str, now: i64) -> StoreResult<()> {
        sqlx::query(D::INSERT_BLOCK)
            .bind(blocker)
            .bind(blocked)
            .bind(now)
            .execute(&mut *c)
            .await
            .map_err(be)?;
        Ok(())
    }

    async fn unblock(c: &mut Conn<D>, blocker: &str, blocked: &str) -> StoreResult<()> {
        sqlx::query(stmt!(
            D,
            "DELETE FROM blocks WHERE user_id = ? AND blocked = ?"
        ))
        .bind(blocker)
        .bind(blocked)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn blocks(c: &mut Conn<D>, user: &str) -> StoreResult<Blocks> {
        let mut blocked: Vec<String> =
            sqlx::query_scalar(stmt!(D, "SELECT blocked FROM blocks WHERE user_id = ?"))
                .bind(user)
                .fetch_all(&mut *c)
                .await
                .map_err(be)?;
        let mut blocked_by: Vec<String> =
            sqlx::query_scalar(stmt!(D, "SELECT user_id FROM blocks WHERE blocked = ?"))
                .bind(user)
                .fetch_all(&mut *c)
                .await
                .map_err(be)?;
        // Sorted here: the servers' collations may differ.
        blocked.sort_unstable();
        blocked_by.sort_unstable();
        Ok(Blocks {
            blocked,
            blocked_by,
        })
    }

    async fn is_blocked(c: &mut Conn<D>, blocker: &str, blocked: &str) -> StoreResult<bool> {
        let row = sqlx::query(stmt!(
            D,
            "SELECT 1 FROM blocks WHERE user_id = ? AND blocked = ?"
        ))
        .bind(blocker)
        .bind(blocked)
        .fetch_optional(&mut *c)
        .await
        .map_err(be)?;
        Ok(row.is_some())
    }
}
