//! What users read and move: history pages, acks and read positions,
//! recall and delete, the conversation list, the offline queue.

use super::messages::max_seq;
use super::{be, message, message_from_row, sql_seq, user_conv, MSG_COLS};
use rusqlite::{params, Connection, OptionalExtension};
use tern_core::offline::{OfflineMerge, QueueSpan};
use tern_core::rules;
use tern_core::store::{
    ConvList, ConvSummary, HistoryQuery, OfflineBatch, ReadOutcome, StoreError, StoreResult,
    StoredMessage,
};

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
                    uc.read_updated_at, cv.updated_at, coalesce(pc.delivered_seq, 0), coalesce(pc.read_seq, 0), uc.mention_seq \
             FROM user_convs uc JOIN convs cv ON cv.conv = uc.conv \
             LEFT JOIN user_convs pc ON pc.user = uc.peer AND pc.conv = uc.conv AND uc.peer <> uc.user \
             WHERE uc.user = ?1",
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
            let peer_delivered: i64 = r.get(9)?;
            let peer_read: i64 = r.get(10)?;
            let mention: i64 = r.get(11)?;
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
                peer_delivered_seq: peer_delivered.max(peer_read) as u64,
                peer_read_seq: peer_read as u64,
                mention_seq: mention as u64,
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
