//! The store's operations as plain functions on a connection. Write
//! operations run inside the writer's transaction (see `lib.rs`); reads on
//! a read-only connection.

use rusqlite::{params, Connection, OptionalExtension, Row};
use tern_core::offline::{OfflineMerge, QueueSpan};
use tern_core::rules;
use tern_core::store::{
    Appended, ConvList, ConvSummary, FriendLists, FriendStatus, GroupRecord, HistoryQuery,
    MemberChange, NewMessage, OfflineBatch, ReadOutcome, Refusal, StoreError, StoreResult,
    StoredMessage, UserRecord,
};

fn be(e: rusqlite::Error) -> StoreError {
    StoreError::backend(e)
}

/// A seq bound given by a caller, as SQLite's signed integer. Stored seqs
/// never exceed `i64::MAX`, so clamping keeps every comparison's meaning
/// (a plain `as` cast would turn `u64::MAX` into -1).
fn sql_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Columns read by [`message_from_row`], in order.
const MSG_COLS: &str =
    "m.msg_id, m.conv, m.seq, m.from_user, m.to_user, m.group_id, m.kind, m.content, m.ts, \
                        m.client_msg_id, m.recalled";

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        msg_id: r.get::<_, i64>(0)? as u64,
        conv: r.get(1)?,
        seq: r.get::<_, i64>(2)? as u64,
        from: r.get(3)?,
        to: r.get(4)?,
        group: r.get(5)?,
        kind: r.get(6)?,
        content: r.get(7)?,
        ts: r.get(8)?,
        client_msg_id: r.get(9)?,
        recalled: r.get::<_, i64>(10)? != 0,
    })
}

pub fn message(c: &Connection, conv: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
    if seq > i64::MAX as u64 {
        return Ok(None);
    }
    let sql = format!("SELECT {MSG_COLS} FROM messages m WHERE m.conv = ?1 AND m.seq = ?2");
    c.prepare_cached(&sql)
        .map_err(be)?
        .query_row(params![conv, seq as i64], message_from_row)
        .optional()
        .map_err(be)
}

// ----- users and friends -----

pub fn create_user(c: &Connection, u: &UserRecord) -> StoreResult<()> {
    let n = c
        .prepare_cached(
            "INSERT INTO users (user, name, password_hash, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (user) DO NOTHING",
        )
        .map_err(be)?
        .execute(params![u.user, u.name, u.password_hash, u.created_at])
        .map_err(be)?;
    if n == 0 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

pub fn get_user(c: &Connection, user: &str) -> StoreResult<Option<UserRecord>> {
    c.prepare_cached("SELECT user, name, password_hash, created_at FROM users WHERE user = ?1")
        .map_err(be)?
        .query_row([user], |r| {
            Ok(UserRecord {
                user: r.get(0)?,
                name: r.get(1)?,
                password_hash: r.get(2)?,
                created_at: r.get(3)?,
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

fn strings(c: &Connection, sql: &str, arg: &str) -> StoreResult<Vec<String>> {
    let mut st = c.prepare_cached(sql).map_err(be)?;
    let rows = st.query_map([arg], |r| r.get(0)).map_err(be)?;
    rows.collect::<Result<_, _>>().map_err(be)
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

// ----- messages -----

fn find_duplicate(c: &Connection, from: &str, cmid: &str) -> StoreResult<Option<StoredMessage>> {
    let sql = format!(
        "SELECT {MSG_COLS} FROM messages m WHERE m.from_user = ?1 AND m.client_msg_id = ?2"
    );
    c.prepare_cached(&sql)
        .map_err(be)?
        .query_row([from, cmid], message_from_row)
        .optional()
        .map_err(be)
}

pub fn max_msg_id(c: &Connection, node: u16) -> StoreResult<u64> {
    // Walks the msg_id index down from the top to this node's newest id.
    let sql = format!(
        "SELECT msg_id FROM messages WHERE {} = ?1 ORDER BY msg_id DESC LIMIT 1",
        tern_core::ids::SQL_NODE_OF_MSG_ID
    );
    let v: Option<i64> = c
        .prepare_cached(&sql)
        .map_err(be)?
        .query_row([i64::from(node)], |r| r.get(0))
        .optional()
        .map_err(be)?;
    Ok(v.unwrap_or(0) as u64)
}

pub fn max_seq(c: &Connection, conv: &str) -> StoreResult<u64> {
    let v: Option<i64> = c
        .prepare_cached("SELECT max_seq FROM convs WHERE conv = ?1")
        .map_err(be)?
        .query_row([conv], |r| r.get(0))
        .optional()
        .map_err(be)?;
    Ok(v.unwrap_or(0) as u64)
}

fn is_member(c: &Connection, gid: &str, user: &str) -> StoreResult<bool> {
    c.prepare_cached("SELECT 1 FROM group_members WHERE gid = ?1 AND user = ?2")
        .map_err(be)?
        .exists([gid, user])
        .map_err(be)
}

fn group_exists(c: &Connection, gid: &str) -> StoreResult<bool> {
    c.prepare_cached("SELECT 1 FROM groups WHERE gid = ?1")
        .map_err(be)?
        .exists([gid])
        .map_err(be)
}

/// The group's member count, counted only up to `limit` (a larger group
/// answers `limit`): what decides write diffusion costs the limit, not the
/// group's size, for every message of a large group.
fn member_count_up_to(c: &Connection, gid: &str, limit: u64) -> StoreResult<u64> {
    c.prepare_cached("SELECT count(*) FROM (SELECT 1 FROM group_members WHERE gid = ?1 LIMIT ?2)")
        .map_err(be)?
        .query_row(params![gid, sql_seq(limit)], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(be)
}

fn members(c: &Connection, gid: &str) -> StoreResult<Vec<String>> {
    strings(
        c,
        "SELECT user FROM group_members WHERE gid = ?1 ORDER BY join_order",
        gid,
    )
}

/// Adds `user` to group `gid` (conversation `conv`) at message `seq`.
fn add_member(c: &Connection, gid: &str, conv: &str, user: &str, seq: u64) -> StoreResult<()> {
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
fn remove_member(
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
fn group_gate(c: &Connection, m: &NewMessage, gid: &str, now: i64) -> StoreResult<Option<Refusal>> {
    let exists = group_exists(c, gid)?;
    let member = m.change.is_none() && exists && is_member(c, gid, &m.from)?;
    if let Err(refusal) = rules::gate(m.change.as_ref(), exists, member)? {
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

pub fn append_messages(c: &Connection, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
    batch.iter().map(|m| append_one(c, m)).collect()
}

fn append_one(c: &Connection, m: &NewMessage) -> StoreResult<Appended> {
    if let Some(cmid) = &m.client_msg_id {
        if let Some(orig) = find_duplicate(c, &m.from, cmid)? {
            return Ok(Appended::Duplicate(orig));
        }
    }
    if let Some(gid) = &m.group {
        if let Some(refusal) = group_gate(c, m, gid, m.ts)? {
            return Ok(Appended::Refused(refusal));
        }
    }
    let seq: i64 = c
        .prepare_cached(
            "INSERT INTO convs (conv, max_seq, updated_at) VALUES (?1, 1, ?2) \
             ON CONFLICT (conv) DO UPDATE SET max_seq = max_seq + 1, updated_at = max(updated_at, excluded.updated_at) \
             RETURNING max_seq",
        )
        .map_err(be)?
        .query_row(params![m.conv, m.ts], |r| r.get(0))
        .map_err(be)?;
    let stored = m.stored(seq as u64);
    // Joining first: a new member gets their own join message.
    if let Some(gid) = &m.group {
        if let Some(MemberChange::Create { .. }) = &m.change {
            add_member(c, gid, &m.conv, &m.from, stored.seq)?;
        }
        if let Some(MemberChange::Join(u)) = &m.change {
            add_member(c, gid, &m.conv, u, stored.seq)?;
        }
    }
    // Counting first spares loading a large (read-diffused) group's member
    // list for every message.
    let inboxed = match &m.group {
        None => true,
        Some(gid) => match rules::members_to_count(m.inbox_members_up_to) {
            Some(limit) => {
                rules::enters_queues(member_count_up_to(c, gid, limit)?, m.inbox_members_up_to)
            }
            None => false,
        },
    };
    c.prepare_cached(
        "INSERT INTO messages (conv, seq, msg_id, from_user, to_user, group_id, kind, content, ts, client_msg_id, inboxed) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .map_err(be)?
    .execute(params![
        m.conv,
        seq,
        m.msg_id as i64,
        m.from,
        m.to,
        m.group,
        m.kind,
        m.content,
        m.ts,
        m.client_msg_id,
        inboxed
    ])
    .map_err(be)?;
    let useq = stored.seq;

    // Conversation list entries; the sender has read their own message.
    for p in &m.participants {
        let peer = if m.group.is_some() {
            None
        } else if *p == m.from {
            m.to.as_deref()
        } else {
            Some(m.from.as_str())
        };
        c.prepare_cached(
            "INSERT INTO user_convs (user, conv, peer, group_id) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (user, conv) DO NOTHING",
        )
        .map_err(be)?
        .execute(params![p, m.conv, peer, m.group])
        .map_err(be)?;
    }

    // The sender has read their own message, and their queue position may
    // follow (`rules::own_message`).
    if let Some(mut p) = user_conv(c, &m.from, &m.conv)? {
        let follows = rules::queue_follows(&m.from, m.to.as_deref());
        if rules::own_message(&mut p, useq, m.ts, follows) {
            c.prepare_cached(
                "UPDATE user_convs SET read_seq = ?3, delivered_seq = ?4, read_updated_at = ?5, \
                     inbox_seq = ?6 WHERE user = ?1 AND conv = ?2",
            )
            .map_err(be)?
            .execute(params![
                m.from,
                m.conv,
                p.read as i64,
                p.delivered as i64,
                p.read_at,
                p.inbox as i64
            ])
            .map_err(be)?;
        }
    }
    if let (Some(gid), Some(MemberChange::Leave(u))) = (&m.group, &m.change) {
        remove_member(c, gid, &m.conv, u, useq, m.ts)?;
    }
    Ok(Appended::New(stored))
}

/// Checks a unit before anything is written (see `Store::append_unit`):
/// only membership changes, every user to add exists, the group exists
/// (or, for its creation, does not).
pub fn check_unit(c: &Connection, batch: &[NewMessage]) -> StoreResult<()> {
    let mut exists = c
        .prepare_cached("SELECT 1 FROM users WHERE user = ?1")
        .map_err(be)?;
    let mut creates = false;
    for m in batch {
        let Some(gid) = &m.group else {
            return Err(StoreError::Invalid(
                "a unit holds membership changes of a group only",
            ));
        };
        match &m.change {
            None => {
                return Err(StoreError::Invalid(
                    "a unit holds membership changes of a group only",
                ))
            }
            Some(MemberChange::Create { .. }) => {
                if group_exists(c, gid)? {
                    return Err(StoreError::Conflict);
                }
                creates = true;
            }
            Some(MemberChange::Join(u)) => {
                if !exists.exists([u]).map_err(be)? {
                    return Err(StoreError::NoSuchUser);
                }
            }
            Some(MemberChange::Leave(_)) => {}
        }
        if m.client_msg_id.is_some() {
            return Err(StoreError::Invalid(
                "a unit holds membership changes of a group only",
            ));
        }
        if !creates && !group_exists(c, gid)? {
            return Err(StoreError::NoSuchGroup);
        }
    }
    Ok(())
}

/// Writes a unit that [`check_unit`] accepted; fails only when SQLite does.
pub fn append_unit(c: &Connection, batch: &[NewMessage]) -> StoreResult<Vec<StoredMessage>> {
    batch
        .iter()
        .map(|m| match append_one(c, m)? {
            Appended::New(s) => Ok(s),
            Appended::Refused(r) => Err(r.into()),
            Appended::Duplicate(_) => Err(StoreError::Conflict),
        })
        .collect()
}

/// A user's row in a conversation.
fn user_conv(c: &Connection, user: &str, conv: &str) -> StoreResult<Option<rules::Positions>> {
    c.prepare_cached(
        "SELECT read_seq, delivered_seq, until_seq, inbox_seq, read_updated_at FROM user_convs \
         WHERE user = ?1 AND conv = ?2",
    )
    .map_err(be)?
    .query_row([user, conv], |r| {
        Ok(rules::Positions {
            read: r.get::<_, i64>(0)? as u64,
            delivered: r.get::<_, i64>(1)? as u64,
            until: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
            inbox: r.get::<_, i64>(3)? as u64,
            read_at: r.get(4)?,
        })
    })
    .optional()
    .map_err(be)
}

pub fn history(
    c: &Connection,
    user: &str,
    conv: &str,
    q: HistoryQuery,
) -> StoreResult<Vec<StoredMessage>> {
    let mut upper = i64::MAX;
    if conv.starts_with("group:") {
        match user_conv(c, user, conv)? {
            None => return Err(StoreError::NotMember),
            Some(rules::Positions {
                until: Some(until), ..
            }) => upper = until as i64,
            Some(_) => {}
        }
    }
    let limit = i64::from(q.limit);
    let hidden = "NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user = ?2 AND h.conv = m.conv AND h.seq = m.seq)";
    let (sql, lo, hi) = match q.after_seq {
        Some(after) => {
            let hi = q
                .before_seq
                .map_or(upper, |b| sql_seq(b.saturating_sub(1)).min(upper));
            (
                format!(
                    "SELECT {MSG_COLS} FROM messages m WHERE m.conv = ?1 AND m.seq > ?3 AND m.seq <= ?4 AND {hidden} \
                     ORDER BY m.seq ASC LIMIT ?5"
                ),
                sql_seq(after),
                hi,
            )
        }
        None => {
            let hi = q
                .before_seq
                .map_or(upper, |b| sql_seq(b.saturating_sub(1)).min(upper));
            (
                format!(
                    "SELECT {MSG_COLS} FROM messages m WHERE m.conv = ?1 AND m.seq > ?3 AND m.seq <= ?4 AND {hidden} \
                     ORDER BY m.seq DESC LIMIT ?5"
                ),
                0,
                hi,
            )
        }
    };
    let mut st = c.prepare_cached(&sql).map_err(be)?;
    let rows = st
        .query_map(params![conv, user, lo, hi, limit], message_from_row)
        .map_err(be)?;
    let mut msgs: Vec<StoredMessage> = rows.collect::<Result<_, _>>().map_err(be)?;
    if q.after_seq.is_none() {
        msgs.reverse();
    }
    Ok(msgs)
}

pub fn ack(
    c: &Connection,
    user: &str,
    conv: &str,
    seq: u64,
    receipt_for: Option<&str>,
) -> StoreResult<Option<u64>> {
    let Some(uc) = user_conv(c, user, conv)? else {
        return Ok(None);
    };
    let Some(mv) = rules::ack(&uc, max_seq(c, conv)?, seq, receipt_for.is_some()) else {
        return Ok(None);
    };
    c.prepare_cached(
        "UPDATE user_convs SET inbox_seq = max(inbox_seq, ?3), delivered_seq = ?4 \
         WHERE user = ?1 AND conv = ?2",
    )
    .map_err(be)?
    .execute(params![user, conv, mv.inbox as i64, mv.delivered as i64])
    .map_err(be)?;
    let (Some(peer), Some((from, top))) = (receipt_for, mv.receipt) else {
        return Ok(None);
    };
    let theirs = c
        .prepare_cached("SELECT 1 FROM messages WHERE conv = ?1 AND seq > ?2 AND seq <= ?3 AND from_user = ?4 LIMIT 1")
        .map_err(be)?
        .exists(params![conv, from as i64, top as i64, peer])
        .map_err(be)?;
    Ok(theirs.then_some(top))
}

pub fn mark_read(
    c: &Connection,
    user: &str,
    conv: &str,
    seq: u64,
    now: i64,
) -> StoreResult<ReadOutcome> {
    let max = max_seq(c, conv)?;
    if seq == 0 || seq > max {
        return Err(StoreError::Invalid(
            "no message with this seq in the conversation",
        ));
    }
    let Some(p) = user_conv(c, user, conv)? else {
        return Err(StoreError::NotMember);
    };
    let Some(target) = rules::read_to(&p, seq) else {
        return Ok(ReadOutcome {
            advanced: false,
            read_seq: p.read,
        });
    };
    c.prepare_cached(
        "UPDATE user_convs SET read_seq = ?3, delivered_seq = max(delivered_seq, ?3), read_updated_at = ?4 \
         WHERE user = ?1 AND conv = ?2",
    )
    .map_err(be)?
    .execute(params![user, conv, target as i64, now])
    .map_err(be)?;
    Ok(ReadOutcome {
        advanced: true,
        read_seq: target,
    })
}

pub fn recall(
    c: &Connection,
    conv: &str,
    seq: u64,
    by: &str,
    window_ms: i64,
    now: i64,
) -> StoreResult<StoredMessage> {
    let Some(mut m) = message(c, conv, seq)? else {
        return Err(StoreError::Invalid(
            "no message with this seq in the conversation",
        ));
    };
    if rules::may_recall(&m, by, window_ms, now)? == rules::Recall::AlreadyDone {
        return Ok(m);
    }
    c.prepare_cached(
        "UPDATE messages SET content = NULL, recalled = 1 WHERE conv = ?1 AND seq = ?2",
    )
    .map_err(be)?
    .execute(params![conv, seq as i64])
    .map_err(be)?;
    c.prepare_cached("UPDATE convs SET updated_at = max(updated_at, ?2) WHERE conv = ?1")
        .map_err(be)?
        .execute(params![conv, now])
        .map_err(be)?;
    m.content = None;
    m.recalled = true;
    Ok(m)
}

pub fn delete_for_user(c: &Connection, user: &str, conv: &str, seqs: &[u64]) -> StoreResult<()> {
    let mut exists = c
        .prepare_cached("SELECT 1 FROM messages WHERE conv = ?1 AND seq = ?2")
        .map_err(be)?;
    for &s in seqs {
        if s > i64::MAX as u64 || !exists.exists(params![conv, s as i64]).map_err(be)? {
            return Err(StoreError::Invalid(
                "no message with this seq in the conversation",
            ));
        }
    }
    let mut ins = c
        .prepare_cached("INSERT OR IGNORE INTO hidden (user, conv, seq) VALUES (?1, ?2, ?3)")
        .map_err(be)?;
    for &s in seqs {
        ins.execute(params![user, conv, s as i64]).map_err(be)?;
    }
    Ok(())
}

/// The newest message of `conv` at or below `upper` that `user` has not
/// deleted.
fn last_visible(
    c: &Connection,
    user: &str,
    conv: &str,
    upper: u64,
) -> StoreResult<Option<StoredMessage>> {
    let sql = format!(
        "SELECT {MSG_COLS} FROM messages m WHERE m.conv = ?1 AND m.seq <= ?3 \
         AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user = ?2 AND h.conv = m.conv AND h.seq = m.seq) \
         ORDER BY m.seq DESC LIMIT 1"
    );
    c.prepare_cached(&sql)
        .map_err(be)?
        .query_row(params![conv, user, upper as i64], message_from_row)
        .optional()
        .map_err(be)
}

pub fn conversations(c: &Connection, user: &str, since: i64, limit: u32) -> StoreResult<ConvList> {
    let mut st = c
        .prepare_cached(
            "SELECT uc.conv, uc.peer, uc.group_id, cv.max_seq, uc.read_seq, uc.until_seq, uc.until_ts, \
                    uc.read_updated_at, cv.updated_at \
             FROM user_convs uc JOIN convs cv ON cv.conv = uc.conv WHERE uc.user = ?1",
        )
        .map_err(be)?;
    let rows = st
        .query_map([user], |r| {
            let max: i64 = r.get(3)?;
            let read: i64 = r.get(4)?;
            let until: Option<i64> = r.get(5)?;
            let until_ts: Option<i64> = r.get(6)?;
            let read_at: i64 = r.get(7)?;
            let conv_at: i64 = r.get(8)?;
            let visible = until.map_or(max, |u| u.min(max)) as u64;
            let activity = until_ts.unwrap_or(conv_at);
            Ok(ConvSummary {
                conv: r.get(0)?,
                peer: r.get(1)?,
                group: r.get(2)?,
                max_seq: visible,
                read_seq: read as u64,
                unread: visible.saturating_sub(read as u64),
                last: None,
                updated_at: activity.max(read_at),
            })
        })
        .map_err(be)?;
    let all: Vec<ConvSummary> = rows.collect::<Result<_, _>>().map_err(be)?;
    let total_unread = all.iter().map(|s| s.unread).sum();
    let mut convs: Vec<ConvSummary> = all.into_iter().filter(|s| s.updated_at > since).collect();
    convs.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then_with(|| a.conv.cmp(&b.conv))
    });
    convs.truncate(limit as usize);
    for s in &mut convs {
        s.last = last_visible(c, user, &s.conv, s.max_seq)?;
    }
    Ok(ConvList {
        convs,
        total_unread,
    })
}

/// The offline fetch's read part, on a read connection (off the writer):
/// the newest `cap` queued messages, read through [`OfflineMerge`] so that
/// about `cap` rows are read whatever the queue holds. Returns the batch and
/// the queue positions to move ([`offline_moves`], on the writer).
pub fn offline_read(
    c: &Connection,
    user: &str,
    cap: u32,
) -> StoreResult<(OfflineBatch, Vec<(String, u64)>)> {
    // One snapshot for every page.
    let tx = c.unchecked_transaction().map_err(be)?;
    let spans: Vec<QueueSpan> = {
        let mut st = tx
            .prepare_cached(
                "SELECT uc.conv, uc.inbox_seq, min(cv.max_seq, coalesce(uc.until_seq, cv.max_seq)), \
                        coalesce(uc.peer = uc.user, 0) \
                 FROM user_convs uc JOIN convs cv ON cv.conv = uc.conv \
                 WHERE uc.user = ?1 AND uc.inbox_seq < min(cv.max_seq, coalesce(uc.until_seq, cv.max_seq))",
            )
            .map_err(be)?;
        let rows = st
            .query_map([user], |r| {
                Ok(QueueSpan {
                    conv: r.get(0)?,
                    from: r.get::<_, i64>(1)? as u64,
                    to: r.get::<_, i64>(2)? as u64,
                    own_too: r.get::<_, i64>(3)? != 0,
                })
            })
            .map_err(be)?;
        rows.collect::<Result<_, _>>().map_err(be)?
    };
    let sql = format!(
        "SELECT {MSG_COLS} FROM messages m WHERE m.conv = ?1 AND m.seq > ?2 AND m.seq < ?3 \
         AND m.inboxed = 1 AND (m.from_user <> ?4 OR ?5) ORDER BY m.seq DESC LIMIT ?6"
    );
    let mut st = tx.prepare_cached(&sql).map_err(be)?;
    let mut merge = OfflineMerge::new(spans, cap);
    loop {
        let fetches = merge.next_fetches();
        if fetches.is_empty() {
            break;
        }
        for f in fetches {
            let span = merge.span(f.span);
            let rows = st
                .query_map(
                    params![
                        span.conv,
                        sql_seq(span.from),
                        sql_seq(f.below),
                        user,
                        span.own_too,
                        i64::from(f.limit)
                    ],
                    message_from_row,
                )
                .map_err(be)?;
            let page: Vec<StoredMessage> = rows.collect::<Result<_, _>>().map_err(be)?;
            merge.feed(f, page);
        }
    }
    drop(st);
    tx.finish().map_err(be)?;
    Ok(merge.finish())
}

/// Moves queue positions forward (never back), as [`offline_read`] asked.
pub fn offline_moves(c: &Connection, user: &str, moves: &[(String, u64)]) -> StoreResult<()> {
    let mut up = c
        .prepare_cached(
            "UPDATE user_convs SET inbox_seq = max(inbox_seq, ?3) WHERE user = ?1 AND conv = ?2",
        )
        .map_err(be)?;
    for (conv, seq) in moves {
        up.execute(params![user, conv, sql_seq(*seq)]).map_err(be)?;
    }
    Ok(())
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
    Ok(Some(GroupRecord {
        gid: gid.to_owned(),
        name,
        owner,
        members: members(c, gid)?,
        created_at,
    }))
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

// ----- per-user counts (limits) -----

/// Current group memberships of `user`: the user's group conversations
/// (primary key prefix) whose group still lists the user.
pub fn group_count(c: &Connection, user: &str) -> StoreResult<u64> {
    c.prepare_cached(
        "SELECT count(*) FROM user_convs uc \
         JOIN group_members gm ON gm.gid = uc.group_id AND gm.user = uc.user \
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
