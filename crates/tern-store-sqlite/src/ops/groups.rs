//! Groups: membership rows, the gate every group message passes, and
//! what the core reads of a group.

use super::{be, sql_seq, strings};
use rusqlite::{params, Connection, OptionalExtension};
use tern_core::rules;
use tern_core::store::{GroupRecord, MemberChange, NewMessage, Refusal, StoreResult};

pub(super) fn is_member(c: &Connection, gid: &str, user: &str) -> StoreResult<bool> {
    c.prepare_cached("SELECT 1 FROM group_members WHERE gid = ?1 AND user = ?2")
        .map_err(be)?
        .exists([gid, user])
        .map_err(be)
}

pub(super) fn group_exists(c: &Connection, gid: &str) -> StoreResult<bool> {
    c.prepare_cached("SELECT 1 FROM groups WHERE gid = ?1")
        .map_err(be)?
        .exists([gid])
        .map_err(be)
}

/// The group's member count, counted only up to `limit` (a larger group
/// answers `limit`): what decides write diffusion costs the limit, not the
/// group's size, for every message of a large group.
pub(super) fn member_count_up_to(c: &Connection, gid: &str, limit: u64) -> StoreResult<u64> {
    c.prepare_cached("SELECT count(*) FROM (SELECT 1 FROM group_members WHERE gid = ?1 LIMIT ?2)")
        .map_err(be)?
        .query_row(params![gid, sql_seq(limit)], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(be)
}

pub(super) fn members(c: &Connection, gid: &str) -> StoreResult<Vec<String>> {
    strings(
        c,
        "SELECT user FROM group_members WHERE gid = ?1 ORDER BY join_order",
        gid,
    )
}

/// Adds `user` to group `gid` (conversation `conv`) at message `seq`.
pub(super) fn add_member(
    c: &Connection,
    gid: &str,
    conv: &str,
    user: &str,
    seq: u64,
) -> StoreResult<()> {
    if is_member(c, gid, user)? {
        return Ok(());
    }
    c.prepare_cached(
        "INSERT INTO group_members (gid, user, join_order) \
         SELECT ?1, ?2, next_order FROM groups WHERE gid = ?1",
    )
    .map_err(be)?
    .execute([gid, user])
    .map_err(be)?;
    c.prepare_cached("UPDATE groups SET next_order = next_order + 1 WHERE gid = ?1")
        .map_err(be)?
        .execute([gid])
        .map_err(be)?;
    // A new member's unread count and offline queue start at their own
    // join message; a returning member keeps what they had read, and their
    // queue resumes at the join (what came while they were away was never
    // theirs).
    let start = seq.saturating_sub(1) as i64;
    c.prepare_cached(
        "INSERT INTO user_convs (user, conv, group_id, read_seq, delivered_seq, inbox_seq) VALUES (?1, ?2, ?3, ?4, ?4, ?4) \
         ON CONFLICT (user, conv) DO UPDATE SET until_seq = NULL, until_ts = NULL, \
             read_seq = max(read_seq, excluded.read_seq), delivered_seq = max(delivered_seq, excluded.delivered_seq), \
             inbox_seq = max(inbox_seq, excluded.inbox_seq)",
    )
    .map_err(be)?
    .execute(params![user, conv, gid, start])
    .map_err(be)?;
    Ok(())
}

/// Removes `user` from group `gid` after message `seq` (at `ts`).
pub(super) fn remove_member(
    c: &Connection,
    gid: &str,
    conv: &str,
    user: &str,
    seq: u64,
    ts: i64,
) -> StoreResult<()> {
    let n = c
        .prepare_cached("DELETE FROM group_members WHERE gid = ?1 AND user = ?2")
        .map_err(be)?
        .execute([gid, user])
        .map_err(be)?;
    if n == 0 {
        return Ok(());
    }
    c.prepare_cached(
        "UPDATE user_convs SET until_seq = ?3, until_ts = ?4 WHERE user = ?1 AND conv = ?2",
    )
    .map_err(be)?
    .execute(params![user, conv, seq as i64, ts])
    .map_err(be)?;
    let (owner, first): (String, Option<String>) = c
        .prepare_cached(
            "SELECT owner, (SELECT user FROM group_members WHERE gid = ?1 \
                            ORDER BY join_order LIMIT 1) \
             FROM groups WHERE gid = ?1",
        )
        .map_err(be)?
        .query_row([gid], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(be)?;
    if let Some(next) = rules::next_owner(&owner, user, first.as_deref()) {
        c.prepare_cached("UPDATE groups SET owner = ?2 WHERE gid = ?1")
            .map_err(be)?
            .execute([gid, next])
            .map_err(be)?;
    }
    Ok(())
}

/// Checks a group message before it gets a seq: `Some(refusal)` when it
/// must not be stored. Creates the group for `MemberChange::Create`.
pub(super) fn group_gate(
    c: &Connection,
    m: &NewMessage,
    gid: &str,
    now: i64,
) -> StoreResult<Option<Refusal>> {
    let exists = group_exists(c, gid)?;
    let member = m.change.is_none() && exists && is_member(c, gid, &m.from)?;
    if let Err(refusal) = rules::gate(m.change.as_ref(), exists, member)? {
        return Ok(Some(refusal));
    }
    if let Some(refusal) = super::moderation::role_gate(c, m, gid)? {
        return Ok(Some(refusal));
    }
    if let Some(MemberChange::Create { name }) = &m.change {
        c.prepare_cached("INSERT INTO groups (gid, name, owner, created_at, next_order) VALUES (?1, ?2, ?3, ?4, 0)")
            .map_err(be)?
            .execute(params![gid, name, m.from, now])
            .map_err(be)?;
    }
    Ok(None)
}

// ----- groups -----

pub fn get_group(c: &Connection, gid: &str) -> StoreResult<Option<GroupRecord>> {
    let head = c
        .prepare_cached("SELECT name, owner, created_at FROM groups WHERE gid = ?1")
        .map_err(be)?
        .query_row([gid], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()
        .map_err(be)?;
    let Some((name, owner, created_at)) = head else {
        return Ok(None);
    };
    let mut rec = GroupRecord {
        gid: gid.to_owned(),
        name,
        owner,
        members: members(c, gid)?,
        created_at,
        ..GroupRecord::default()
    };
    super::moderation::fill_roles(c, &mut rec)?;
    Ok(Some(rec))
}

/// Only membership changes are `system` messages, so the newest of them is
/// the version. Embedded mode has one node and never asks on a hot path.
pub fn group_version(c: &Connection, gid: &str) -> StoreResult<Option<u64>> {
    let conv = format!("group:{gid}");
    c.prepare_cached("SELECT max(seq) FROM messages WHERE conv = ?1 AND kind = 'system'")
        .map_err(be)?
        .query_row([conv], |r| r.get::<_, Option<i64>>(0))
        .map(|v| v.map(|v| v as u64))
        .map_err(be)
}

pub fn read_positions(c: &Connection, conv: &str) -> StoreResult<Vec<(String, u64)>> {
    let Some(gid) = conv.strip_prefix("group:") else {
        return Ok(Vec::new());
    };
    let mut st = c
        .prepare_cached(
            "SELECT gm.user, coalesce(uc.read_seq, 0) FROM group_members gm \
             LEFT JOIN user_convs uc ON uc.user = gm.user AND uc.conv = ?2 \
             WHERE gm.gid = ?1 ORDER BY gm.join_order",
        )
        .map_err(be)?;
    let rows = st
        .query_map([gid, conv], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .map_err(be)?;
    rows.collect::<Result<_, _>>().map_err(be)
}
