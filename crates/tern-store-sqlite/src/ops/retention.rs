//! 5.6 retention (a conversation's own retention, the expiry of old
//! messages) and account erase.
//!
//! Expiry removes a prefix of each conversation: every message up to the
//! newest one older than the cutoff, among the oldest `budget` still kept
//! (so a clock that stepped back never leaves a hole in what is kept).
//! Rowids of removed messages may be the newest of the table: the
//! indexer's position then comes down to the newest kept rowid, since
//! SQLite gives the next message the rowid after it.

use super::be;
use rusqlite::{params, Connection, OptionalExtension};
use tern_core::store::{
    media_like, media_named, ExpireRound, Expired, StoreResult, DELETED_USER_KIND,
    ERASED_PASSWORD_HASH,
};

pub fn set_retention(c: &Connection, conv: &str, days: u32, now: i64) -> StoreResult<()> {
    if days == 0 {
        c.prepare_cached("DELETE FROM conv_retention WHERE conv = ?1")
            .map_err(be)?
            .execute([conv])
            .map_err(be)?;
    } else {
        c.prepare_cached(
            "INSERT INTO conv_retention (conv, days, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (conv) DO UPDATE SET days = excluded.days, updated_at = excluded.updated_at",
        )
        .map_err(be)?
        .execute(params![conv, days, now])
        .map_err(be)?;
    }
    Ok(())
}

pub fn retention(c: &Connection, conv: &str) -> StoreResult<u32> {
    c.prepare_cached("SELECT days FROM conv_retention WHERE conv = ?1")
        .map_err(be)?
        .query_row([conv], |r| r.get(0))
        .optional()
        .map(Option::unwrap_or_default)
        .map_err(be)
}

pub fn retentions(c: &Connection, user: &str) -> StoreResult<Vec<(String, u32)>> {
    let mut st = c
        .prepare_cached(
            "SELECT r.conv, r.days FROM user_convs uc JOIN conv_retention r ON r.conv = uc.conv \
             WHERE uc.user = ?1",
        )
        .map_err(be)?;
    let rows = st
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(be)?;
    rows.collect::<Result<_, _>>().map_err(be)
}

/// The conversations a round looks at, with their retention in days.
fn round_convs(c: &Connection, q: &ExpireRound) -> StoreResult<Vec<(String, u32)>> {
    let sql = if q.default_days == 0 {
        // Only conversations with their own retention expire anything.
        "SELECT conv, days FROM conv_retention WHERE conv > ?1 AND ?2 = 0 \
         ORDER BY conv LIMIT ?3"
    } else {
        "SELECT cv.conv, coalesce(r.days, ?2) FROM convs cv \
         LEFT JOIN conv_retention r ON r.conv = cv.conv \
         WHERE cv.conv > ?1 ORDER BY cv.conv LIMIT ?3"
    };
    let mut st = c.prepare_cached(sql).map_err(be)?;
    let rows = st
        .query_map(params![q.after, q.default_days, q.max_convs], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(be)?;
    rows.collect::<Result<_, _>>().map_err(be)
}

pub fn expire_messages(c: &Connection, q: &ExpireRound) -> StoreResult<Expired> {
    let convs = round_convs(c, q)?;
    let mut out = Expired {
        next: (convs.len() as u32 >= q.max_convs)
            .then(|| convs.last().map(|(conv, _)| conv.clone()))
            .flatten(),
        ..Expired::default()
    };
    let mut budget = q.max_msgs;
    let mut prev = q.after.clone();
    for (conv, days) in convs {
        let Some(cutoff) = q.cutoff(days) else {
            prev = conv;
            continue;
        };
        if budget == 0 {
            // Not looked at: the next round starts here.
            out.next = Some(prev);
            break;
        }
        let (n, media) = expire_conv(c, &conv, cutoff, budget)?;
        out.messages += n;
        out.media += media;
        budget -= n as u32;
        if budget == 0 {
            // There may be more: the next round looks at it again.
            out.next = Some(prev);
            break;
        }
        prev = conv;
    }
    if out.messages > 0 {
        c.prepare_cached(
            "UPDATE search_cursor SET last_rowid = \
             min(last_rowid, coalesce((SELECT max(rowid) FROM messages), 0)) WHERE id = 1",
        )
        .map_err(be)?
        .execute([])
        .map_err(be)?;
    }
    Ok(out)
}

/// Expires one conversation's prefix; `(messages, media)` released.
fn expire_conv(c: &Connection, conv: &str, cutoff: i64, budget: u32) -> StoreResult<(u64, u64)> {
    type Row = (i64, i64, i64, String, String, Option<String>);
    let rows: Vec<Row> = {
        let mut st = c
            .prepare_cached(
                "SELECT rowid, seq, ts, from_user, kind, content FROM messages \
                 WHERE conv = ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(be)?;
        let it = st
            .query_map(params![conv, budget], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(be)?;
        it.collect::<Result<_, _>>().map_err(be)?
    };
    let Some(last) = rows.iter().rposition(|r| r.2 < cutoff) else {
        return Ok((0, 0));
    };
    let gone = &rows[..=last];
    let upto = gone[last].1;
    let mut fts = c
        .prepare_cached("DELETE FROM search_fts WHERE rowid = ?1")
        .map_err(be)?;
    for r in gone {
        fts.execute([r.0]).map_err(be)?;
    }
    for sql in [
        "DELETE FROM messages WHERE conv = ?1 AND seq <= ?2",
        "DELETE FROM reactions WHERE conv = ?1 AND seq <= ?2",
        "DELETE FROM hidden WHERE conv = ?1 AND seq <= ?2",
        // Unread counts what is kept: every position moves past the
        // prefix (a former member's no further than its removal).
        "UPDATE user_convs SET read_seq = max(read_seq, min(?2, coalesce(until_seq, ?2))), \
                inbox_seq = max(inbox_seq, min(?2, coalesce(until_seq, ?2))) \
         WHERE conv = ?1",
    ] {
        c.prepare_cached(sql)
            .map_err(be)?
            .execute(params![conv, upto])
            .map_err(be)?;
    }
    let mut media = 0;
    for r in gone {
        if let Some(id) = media_named(&r.4, r.5.as_deref()) {
            media += release_media(c, &id, &r.3)?;
        }
    }
    Ok((gone.len() as u64, media))
}

/// Marks media `id` of `owner` unreferenced unless a kept message of the
/// owner or the owner's avatar names it; 1 when it did.
fn release_media(c: &Connection, id: &str, owner: &str) -> StoreResult<u64> {
    let named: bool = c
        .prepare_cached(
            "SELECT 1 FROM messages WHERE from_user = ?1 AND client_msg_id IS NOT NULL \
             AND content LIKE ?2 \
             UNION ALL SELECT 1 FROM users WHERE user = ?1 AND avatar = ?3 LIMIT 1",
        )
        .map_err(be)?
        .exists(params![owner, media_like(id), id])
        .map_err(be)?;
    if named {
        return Ok(0);
    }
    c.prepare_cached("UPDATE media SET referenced = 0 WHERE id = ?1 AND owner = ?2")
        .map_err(be)?
        .execute([id, owner])
        .map(|n| n as u64)
        .map_err(be)
}

pub fn erase_user(c: &Connection, user: &str) -> StoreResult<()> {
    // Out of the index first, while the rows still say whose they are.
    c.prepare_cached(
        "DELETE FROM search_fts WHERE rowid IN \
         (SELECT rowid FROM messages WHERE from_user = ?1 AND kind <> 'system')",
    )
    .map_err(be)?
    .execute([user])
    .map_err(be)?;
    for sql in [
        "DELETE FROM friends WHERE user = ?1 OR friend = ?1",
        "DELETE FROM friend_requests WHERE from_user = ?1 OR to_user = ?1",
        "DELETE FROM blocks WHERE user = ?1 OR blocked = ?1",
        "DELETE FROM conv_settings WHERE user = ?1",
        "DELETE FROM sessions WHERE user = ?1",
        "DELETE FROM scheduled WHERE user = ?1",
        "DELETE FROM push_devices WHERE user = ?1",
        "DELETE FROM reactions WHERE user = ?1",
        "DELETE FROM hidden WHERE user = ?1",
        "UPDATE messages SET kind = ?2, content = NULL, mentions = NULL \
         WHERE from_user = ?1 AND kind <> 'system'",
        "UPDATE user_convs SET inbox_seq = coalesce( \
         (SELECT max(user_convs.inbox_seq, cv.max_seq) FROM convs cv WHERE cv.conv = user_convs.conv), \
         inbox_seq) WHERE user = ?1",
        "UPDATE media SET referenced = 0 WHERE owner = ?1",
    ] {
        let mut st = c.prepare_cached(sql).map_err(be)?;
        if st.parameter_count() == 2 {
            st.execute(params![user, DELETED_USER_KIND]).map_err(be)?;
        } else {
            st.execute([user]).map_err(be)?;
        }
    }
    c.prepare_cached("UPDATE users SET name = '', avatar = '', password_hash = ?2 WHERE user = ?1")
        .map_err(be)?
        .execute([user, ERASED_PASSWORD_HASH])
        .map_err(be)?;
    Ok(())
}
