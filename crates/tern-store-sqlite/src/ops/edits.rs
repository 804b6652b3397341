//! 5.1: edits, reactions, and the mention positions an append moves.
//! Who may edit and how many emojis a message takes: `tern_core::rules`.

use super::{be, message, sql_seq};
use rusqlite::{params, Connection};
use tern_core::rules;
use tern_core::store::{
    group_reactions, NewMessage, ReactionSummary, StoreError, StoreResult, StoredMessage,
    MENTION_ALL,
};

fn no_message() -> StoreError {
    StoreError::Invalid("no message with this seq in the conversation")
}

/// Moves the mention position of each member `m` names (every current
/// member but the sender, for `@all`) to `seq`.
pub(super) fn mark_mentions(c: &Connection, m: &NewMessage, seq: u64) -> StoreResult<()> {
    let mentions = &m.extras.mentions;
    if mentions.is_empty() || m.group.is_none() {
        return Ok(());
    }
    if mentions.iter().any(|u| u == MENTION_ALL) {
        c.prepare_cached(
            "UPDATE user_convs SET mention_seq = max(mention_seq, ?2) \
             WHERE conv = ?1 AND until_seq IS NULL AND user <> ?3",
        )
        .map_err(be)?
        .execute(params![m.conv, seq as i64, m.from])
        .map_err(be)?;
        return Ok(());
    }
    let mut st = c
        .prepare_cached(
            "UPDATE user_convs SET mention_seq = max(mention_seq, ?3) \
             WHERE user = ?1 AND conv = ?2 AND until_seq IS NULL",
        )
        .map_err(be)?;
    for u in mentions.iter().filter(|u| **u != m.from) {
        st.execute(params![u, m.conv, seq as i64]).map_err(be)?;
    }
    Ok(())
}

pub fn edit(
    c: &Connection,
    conv: &str,
    seq: u64,
    by: &str,
    content: &str,
    window_ms: i64,
    now: i64,
) -> StoreResult<StoredMessage> {
    let Some(mut m) = message(c, conv, seq)? else {
        return Err(no_message());
    };
    rules::may_edit(&m, by, window_ms, now)?;
    // Never earlier than the send, and strictly later than an earlier
    // edit: clients keep the newest.
    let at = now.max(m.ts).max(m.edited_at.map_or(i64::MIN, |e| e + 1));
    c.prepare_cached(
        "UPDATE messages SET content = ?3, edited_at = ?4 WHERE conv = ?1 AND seq = ?2",
    )
    .map_err(be)?
    .execute(params![conv, seq as i64, content, at])
    .map_err(be)?;
    c.prepare_cached("UPDATE convs SET updated_at = max(updated_at, ?2) WHERE conv = ?1")
        .map_err(be)?
        .execute(params![conv, now])
        .map_err(be)?;
    // The search index follows the new content in the same transaction.
    super::reindex_message(c, conv, seq)?;
    m.content = Some(content.to_owned());
    m.edited_at = Some(at);
    Ok(m)
}

#[allow(clippy::too_many_arguments)]
pub fn react(
    c: &Connection,
    conv: &str,
    seq: u64,
    user: &str,
    emoji: &str,
    on: bool,
    max_emoji: usize,
    now: i64,
) -> StoreResult<bool> {
    let Some(m) = message(c, conv, seq)? else {
        return Err(no_message());
    };
    let seq = seq as i64;
    if !on {
        let n = c
            .prepare_cached(
                "DELETE FROM reactions WHERE conv = ?1 AND seq = ?2 AND emoji = ?3 AND user = ?4",
            )
            .map_err(be)?
            .execute(params![conv, seq, emoji, user])
            .map_err(be)?;
        return Ok(n > 0);
    }
    let used: Vec<String> = {
        let mut st = c
            .prepare_cached("SELECT DISTINCT emoji FROM reactions WHERE conv = ?1 AND seq = ?2")
            .map_err(be)?;
        let rows = st.query_map(params![conv, seq], |r| r.get(0)).map_err(be)?;
        rows.collect::<Result<_, _>>().map_err(be)?
    };
    rules::may_react(&m, &used, emoji, max_emoji)?;
    let n = c
        .prepare_cached(
            "INSERT INTO reactions (conv, seq, emoji, user, ts) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT DO NOTHING",
        )
        .map_err(be)?
        .execute(params![conv, seq, emoji, user, now])
        .map_err(be)?;
    Ok(n > 0)
}

pub fn reactions(
    c: &Connection,
    conv: &str,
    from: u64,
    to: u64,
    users_listed: u32,
) -> StoreResult<Vec<ReactionSummary>> {
    let mut st = c
        .prepare_cached(
            "SELECT seq, emoji, user, cnt FROM ( \
                 SELECT seq, emoji, user, \
                        count(*) OVER (PARTITION BY seq, emoji) AS cnt, \
                        min(ts) OVER (PARTITION BY seq, emoji) AS first, \
                        row_number() OVER (PARTITION BY seq, emoji ORDER BY ts, user) AS rn \
                 FROM reactions WHERE conv = ?1 AND seq >= ?2 AND seq <= ?3) \
             WHERE rn <= ?4 ORDER BY seq, first, emoji, rn",
        )
        .map_err(be)?;
    let rows = st
        .query_map(
            params![conv, sql_seq(from), sql_seq(to), i64::from(users_listed)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)? as u64,
                ))
            },
        )
        .map_err(be)?;
    let rows: Vec<_> = rows.collect::<Result<_, _>>().map_err(be)?;
    Ok(group_reactions(rows))
}
