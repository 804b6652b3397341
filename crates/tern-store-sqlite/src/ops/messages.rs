//! Appends: seqs, deduplication by `client_msg_id`, the offline queue
//! entries and positions they write, and membership units.

use super::groups::{add_member, group_exists, group_gate, member_count_up_to, remove_member};
use super::{be, message_from_row, user_conv, MSG_COLS};
use rusqlite::{params, Connection, OptionalExtension};
use tern_core::rules;
use tern_core::store::{
    self, Appended, MemberChange, NewMessage, StoreError, StoreResult, StoredMessage,
};

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
        "INSERT INTO messages (conv, seq, msg_id, from_user, to_user, group_id, kind, content, ts, client_msg_id, inboxed, \
             reply_to, mentions) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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
        inboxed,
        m.extras.reply_to.map(|s| s as i64),
        store::mentions_text(&m.extras.mentions),
    ])
    .map_err(be)?;
    let useq = stored.seq;
    super::edits::mark_mentions(c, m, useq)?;
    // 5.6: the message's jobs commit with it.
    if !m.extras.jobs.is_empty() {
        super::jobs::enqueue_jobs(c, &m.extras.jobs)?;
    }

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
    if let (Some(gid), Some(change)) = (&m.group, &m.change) {
        super::moderation::apply_change(c, gid, change)?;
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
            Some(_) => {
                return Err(StoreError::Invalid(
                    "a unit holds membership changes of a group only",
                ))
            }
        }
        if m.client_msg_id.is_some() {
            return Err(StoreError::Invalid(
                "a unit holds membership changes of a group only",
            ));
        }
        if !creates && !group_exists(c, gid)? {
            return Err(StoreError::NoSuchGroup);
        }
        if !creates && super::moderation::dissolved(c, gid)? {
            return Err(StoreError::Forbidden("the group is dissolved"));
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
