//! Users and friends, and the per-user counts that limits ask for.

use super::{be, strings};
use rusqlite::{params, Connection, OptionalExtension};
use tern_core::store::{FriendLists, FriendStatus, StoreError, StoreResult, UserRecord};

// ----- users and friends -----

pub fn create_user(c: &Connection, u: &UserRecord) -> StoreResult<()> {
    let n = c
        .prepare_cached(
            "INSERT INTO users (user, name, password_hash, created_at, bot) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (user) DO NOTHING",
        )
        .map_err(be)?
        .execute(params![u.user, u.name, u.password_hash, u.created_at, u.bot])
        .map_err(be)?;
    if n == 0 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

pub fn get_user(c: &Connection, user: &str) -> StoreResult<Option<UserRecord>> {
    c.prepare_cached("SELECT user, name, password_hash, created_at, bot FROM users WHERE user = ?1")
        .map_err(be)?
        .query_row([user], |r| {
            Ok(UserRecord {
                user: r.get(0)?,
                name: r.get(1)?,
                password_hash: r.get(2)?,
                created_at: r.get(3)?,
                bot: r.get(4)?,
            })
        })
        .optional()
        .map_err(be)
}

fn are_friends(c: &Connection, a: &str, b: &str) -> StoreResult<bool> {
    c.prepare_cached("SELECT 1 FROM friends WHERE user = ?1 AND friend = ?2")
        .map_err(be)?
        .exists([a, b])
        .map_err(be)
}

pub fn friend_request(c: &Connection, from: &str, to: &str, now: i64) -> StoreResult<FriendStatus> {
    if are_friends(c, from, to)? {
        return Ok(FriendStatus::Friends);
    }
    let answered = c
        .prepare_cached("DELETE FROM friend_requests WHERE from_user = ?1 AND to_user = ?2")
        .map_err(be)?
        .execute([to, from])
        .map_err(be)?;
    if answered > 0 {
        let mut ins = c
            .prepare_cached(
                "INSERT OR IGNORE INTO friends (user, friend, since) VALUES (?1, ?2, ?3)",
            )
            .map_err(be)?;
        ins.execute(params![from, to, now]).map_err(be)?;
        ins.execute(params![to, from, now]).map_err(be)?;
        return Ok(FriendStatus::Friends);
    }
    c.prepare_cached("INSERT OR IGNORE INTO friend_requests (from_user, to_user, created_at) VALUES (?1, ?2, ?3)")
        .map_err(be)?
        .execute(params![from, to, now])
        .map_err(be)?;
    Ok(FriendStatus::Requested)
}

pub fn friend_delete(c: &Connection, a: &str, b: &str) -> StoreResult<()> {
    c.prepare_cached(
        "DELETE FROM friends WHERE (user = ?1 AND friend = ?2) OR (user = ?2 AND friend = ?1)",
    )
    .map_err(be)?
    .execute([a, b])
    .map_err(be)?;
    c.prepare_cached(
        "DELETE FROM friend_requests WHERE (from_user = ?1 AND to_user = ?2) OR (from_user = ?2 AND to_user = ?1)",
    )
    .map_err(be)?
    .execute([a, b])
    .map_err(be)?;
    Ok(())
}

pub fn friends(c: &Connection, user: &str) -> StoreResult<FriendLists> {
    Ok(FriendLists {
        friends: strings(
            c,
            "SELECT friend FROM friends WHERE user = ?1 ORDER BY friend",
            user,
        )?,
        incoming: strings(
            c,
            "SELECT from_user FROM friend_requests WHERE to_user = ?1 ORDER BY from_user",
            user,
        )?,
        outgoing: strings(
            c,
            "SELECT to_user FROM friend_requests WHERE from_user = ?1 ORDER BY to_user",
            user,
        )?,
    })
}

// ----- per-user counts (limits) -----

/// Current group memberships of `user`: the user's group conversations
/// (primary key prefix) whose group still lists the user.
pub fn group_count(c: &Connection, user: &str) -> StoreResult<u64> {
    c.prepare_cached(
        "SELECT count(*) FROM user_convs uc \
         JOIN group_members gm ON gm.gid = uc.group_id AND gm.user = uc.user \
         JOIN groups g ON g.gid = uc.group_id AND g.dissolved = 0 \
         WHERE uc.user = ?1 AND uc.group_id IS NOT NULL",
    )
    .map_err(be)?
    .query_row([user], |r| r.get::<_, i64>(0))
    .map(|n| n.max(0) as u64)
    .map_err(be)
}

/// Unanswered requests `user` sent (primary key prefix).
pub fn outgoing_request_count(c: &Connection, user: &str) -> StoreResult<u64> {
    c.prepare_cached("SELECT count(*) FROM friend_requests WHERE from_user = ?1")
        .map_err(be)?
        .query_row([user], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
        .map_err(be)
}
