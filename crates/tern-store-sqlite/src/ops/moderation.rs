//! 5.4 and blocks: the role rule every group message passes
//! (`tern_core::roles`, from the rows read in the writer's transaction),
//! the changes of roles and settings, a group's roles as read, and blocks.

use super::be;
use rusqlite::{params, Connection, OptionalExtension};
use tern_core::roles::{self, GroupState, Role, Standing};
use tern_core::store::{Blocks, GroupRecord, MemberChange, NewMessage, Refusal, StoreResult};

/// The group's owner and settings, and `user`'s standing in it (`None`
/// for a non-member), in one statement; `None` when the group does not
/// exist.
#[allow(clippy::type_complexity)]
fn group_state(
    c: &Connection,
    gid: &str,
    user: &str,
) -> StoreResult<Option<(String, GroupState, Option<Standing>)>> {
    c.prepare_cached(
        "SELECT g.owner, g.muted_all, g.dissolved, m.admin, m.muted_until \
         FROM groups g LEFT JOIN group_members m ON m.gid = g.gid AND m.user = ?2 \
         WHERE g.gid = ?1",
    )
    .map_err(be)?
    .query_row([gid, user], |r| {
        let owner: String = r.get(0)?;
        let muted_until: Option<i64> = r.get(4)?;
        let standing = r.get::<_, Option<i64>>(3)?.map(|admin| Standing {
            role: Role::of(&owner, user, admin != 0),
            muted_until,
        });
        let state = GroupState {
            muted_all: r.get::<_, i64>(1)? != 0,
            dissolved: r.get::<_, i64>(2)? != 0,
        };
        Ok((owner, state, standing))
    })
    .optional()
    .map_err(be)
}

/// A current member's standing; `None` for a non-member.
fn standing(c: &Connection, gid: &str, owner: &str, user: &str) -> StoreResult<Option<Standing>> {
    c.prepare_cached("SELECT admin, muted_until FROM group_members WHERE gid = ?1 AND user = ?2")
        .map_err(be)?
        .query_row([gid, user], |r| {
            Ok(Standing {
                role: Role::of(owner, user, r.get::<_, i64>(0)? != 0),
                muted_until: r.get(1)?,
            })
        })
        .optional()
        .map_err(be)
}

/// Whether the group is dissolved (false when it does not exist).
pub(super) fn dissolved(c: &Connection, gid: &str) -> StoreResult<bool> {
    Ok(group_state(c, gid, "")?.is_some_and(|(_, s, _)| s.dissolved))
}

/// [`roles::admit`] for a message to an existing group that passed the
/// group gate: `Some(refusal)` when the roles refuse it.
pub(super) fn role_gate(c: &Connection, m: &NewMessage, gid: &str) -> StoreResult<Option<Refusal>> {
    if matches!(m.change, Some(MemberChange::Create { .. })) {
        return Ok(None);
    }
    let Some((owner, state, sender)) = group_state(c, gid, &m.from)? else {
        return Ok(None);
    };
    let target = match m.change.as_ref().and_then(MemberChange::target) {
        Some(t) => standing(c, gid, &owner, t)?,
        None => None,
    };
    Ok(roles::admit(&state, m.change.as_ref(), &m.from, sender, target, m.ts).err())
}

/// Writes a change of roles or settings (after its message).
pub(super) fn apply_change(c: &Connection, gid: &str, change: &MemberChange) -> StoreResult<()> {
    let n = match change {
        MemberChange::Admin { user, on } => c
            .prepare_cached("UPDATE group_members SET admin = ?3 WHERE gid = ?1 AND user = ?2")
            .map_err(be)?
            .execute(params![gid, user, i64::from(*on)]),
        MemberChange::Mute { user, until } => c
            .prepare_cached(
                "UPDATE group_members SET muted_until = ?3 WHERE gid = ?1 AND user = ?2",
            )
            .map_err(be)?
            .execute(params![gid, user, until]),
        MemberChange::Rename(name) => c
            .prepare_cached("UPDATE groups SET name = ?2 WHERE gid = ?1")
            .map_err(be)?
            .execute(params![gid, name]),
        MemberChange::Announce(text) => c
            .prepare_cached("UPDATE groups SET announcement = ?2 WHERE gid = ?1")
            .map_err(be)?
            .execute(params![gid, text]),
        MemberChange::MutedAll(on) => c
            .prepare_cached("UPDATE groups SET muted_all = ?2 WHERE gid = ?1")
            .map_err(be)?
            .execute(params![gid, i64::from(*on)]),
        MemberChange::Dissolve => c
            .prepare_cached("UPDATE groups SET dissolved = 1 WHERE gid = ?1")
            .map_err(be)?
            .execute(params![gid]),
        MemberChange::Create { .. } | MemberChange::Join(_) | MemberChange::Leave(_) => Ok(0),
    };
    n.map(|_| ()).map_err(be)
}

/// Adds the roles and settings to a group record read without them.
pub(super) fn fill_roles(c: &Connection, rec: &mut GroupRecord) -> StoreResult<()> {
    let (announcement, muted_all, dissolved) = c
        .prepare_cached("SELECT announcement, muted_all, dissolved FROM groups WHERE gid = ?1")
        .map_err(be)?
        .query_row([&rec.gid], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? != 0,
                r.get::<_, i64>(2)? != 0,
            ))
        })
        .map_err(be)?;
    rec.announcement = announcement;
    rec.muted_all = muted_all;
    rec.dissolved = dissolved;
    let mut st = c
        .prepare_cached(
            "SELECT user, admin, muted_until FROM group_members \
             WHERE gid = ?1 AND (admin <> 0 OR muted_until IS NOT NULL) ORDER BY join_order",
        )
        .map_err(be)?;
    let rows = st
        .query_map([&rec.gid], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? != 0,
                r.get::<_, Option<i64>>(2)?,
            ))
        })
        .map_err(be)?;
    for row in rows {
        let (user, admin, until) = row.map_err(be)?;
        if admin {
            rec.admins.push(user.clone());
        }
        if let Some(t) = until {
            rec.mutes.push((user, t));
        }
    }
    Ok(())
}

// ----- blocks -----

pub fn block(c: &Connection, blocker: &str, blocked: &str, now: i64) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO blocks (user, blocked, created_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (user, blocked) DO NOTHING",
    )
    .map_err(be)?
    .execute(params![blocker, blocked, now])
    .map(|_| ())
    .map_err(be)
}

pub fn unblock(c: &Connection, blocker: &str, blocked: &str) -> StoreResult<()> {
    c.prepare_cached("DELETE FROM blocks WHERE user = ?1 AND blocked = ?2")
        .map_err(be)?
        .execute([blocker, blocked])
        .map(|_| ())
        .map_err(be)
}

pub fn blocks(c: &Connection, user: &str) -> StoreResult<Blocks> {
    Ok(Blocks {
        blocked: super::strings(
            c,
            "SELECT blocked FROM blocks WHERE user = ?1 ORDER BY blocked",
            user,
        )?,
        blocked_by: super::strings(
            c,
            "SELECT user FROM blocks WHERE blocked = ?1 ORDER BY user",
            user,
        )?,
    })
}

pub fn is_blocked(c: &Connection, blocker: &str, blocked: &str) -> StoreResult<bool> {
    c.prepare_cached("SELECT 1 FROM blocks WHERE user = ?1 AND blocked = ?2")
        .map_err(be)?
        .exists([blocker, blocked])
        .map_err(be)
}
