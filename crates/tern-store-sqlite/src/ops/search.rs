//! 5.2 search on FTS5: `search_fts` holds each indexed message's encoded
//! terms (`tern_core::search`) and its conversation's term
//! (`conv_term`, since schema version 10) under the message's rowid,
//! without a copy of the text (contentless, deletable rows);
//! `search_cursor` the newest rowid indexed. The writer thread assigns
//! rowids in commit order, so everything at or below the cursor is
//! indexed.
//!
//! When the words match more documents than the user's conversations
//! hold, a query names those conversations (an OR of their terms, in
//! chunks of [`CONVS_PER_QUERY`]): FTS5 then yields only the matches in
//! them, not a common word's matches in every user's. Either way the
//! join with `user_convs` applies every access rule.

use super::{be, message_from_row, MSG_COLS};
use rusqlite::{params, Connection, OptionalExtension};
use tern_core::search::{conv_term, index_message, Part, SearchQuery, Terms};
use tern_core::store::{StoreResult, StoredMessage};

/// FTS5 query syntax of `t`: every part (AND), a prefix as `term*`, a
/// phrase quoted. Encoded terms are plain ASCII words: nothing to escape.
fn fts_query(t: &Terms) -> String {
    t.parts
        .iter()
        .map(|p| match p {
            Part::Term(w) => w.clone(),
            Part::Prefix(w) => format!("{w}*"),
            Part::Phrase(ws) => format!("\"{}\"", ws.join(" ")),
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn cursor(c: &Connection) -> StoreResult<i64> {
    c.prepare_cached("SELECT last_rowid FROM search_cursor WHERE id = 1")
        .map_err(be)?
        .query_row([], |r| r.get(0))
        .optional()
        .map_err(be)
        .map(|v| v.unwrap_or(0))
}

/// Conversations one FTS5 query names at most; a user in more is asked
/// in several queries whose hits are merged.
pub const CONVS_PER_QUERY: usize = 64;

fn insert(
    c: &Connection,
    rowid: i64,
    conv: &str,
    kind: &str,
    content: Option<&str>,
) -> StoreResult<()> {
    let mut terms = index_message(kind, content);
    if !terms.is_empty() {
        terms.push(' ');
        terms.push_str(&conv_term(conv));
        c.prepare_cached("INSERT INTO search_fts (rowid, terms) VALUES (?1, ?2)")
            .map_err(be)?
            .execute(params![rowid, terms])
            .map_err(be)?;
    }
    Ok(())
}

pub fn index_pending(c: &Connection, max: u32) -> StoreResult<u32> {
    let from = cursor(c)?;
    let rows: Vec<(i64, String, String, Option<String>)> = {
        let mut st = c
            .prepare_cached(
                "SELECT rowid, conv, kind, content FROM messages WHERE rowid > ?1 \
                 ORDER BY rowid LIMIT ?2",
            )
            .map_err(be)?;
        let rows = st
            .query_map(params![from, max], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(be)?;
        rows.collect::<Result<_, _>>().map_err(be)?
    };
    let Some(last) = rows.last().map(|r| r.0) else {
        return Ok(0);
    };
    for (rowid, conv, kind, content) in &rows {
        insert(c, *rowid, conv, kind, content.as_deref())?;
    }
    c.prepare_cached("UPDATE search_cursor SET last_rowid = ?1 WHERE id = 1")
        .map_err(be)?
        .execute([last])
        .map_err(be)?;
    Ok(rows.len() as u32)
}

pub fn reindex_message(c: &Connection, conv: &str, seq: u64) -> StoreResult<()> {
    let row: Option<(i64, String, Option<String>)> = c
        .prepare_cached("SELECT rowid, kind, content FROM messages WHERE conv = ?1 AND seq = ?2")
        .map_err(be)?
        .query_row(params![conv, seq as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .map_err(be)?;
    let Some((rowid, kind, content)) = row else {
        return Ok(());
    };
    // Above the cursor the indexer has yet to take it, as it is now.
    if rowid > cursor(c)? {
        return Ok(());
    }
    c.prepare_cached("DELETE FROM search_fts WHERE rowid = ?1")
        .map_err(be)?
        .execute([rowid])
        .map_err(be)?;
    insert(c, rowid, conv, &kind, content.as_deref())
}

/// The hits of `fts` (words and conversations) that `user` may read, by
/// time, newest first.
fn hits(c: &Connection, user: &str, fts: &str, q: &SearchQuery) -> StoreResult<Vec<StoredMessage>> {
    let sql = format!(
        "SELECT {MSG_COLS} FROM search_fts \
         JOIN messages m ON m.rowid = search_fts.rowid \
         JOIN user_convs uc ON uc.user = ?1 AND uc.conv = m.conv \
         WHERE search_fts MATCH ?2 AND m.recalled = 0 \
           AND (uc.until_seq IS NULL OR m.seq <= uc.until_seq) \
           AND (?3 IS NULL OR m.conv = ?3) AND (?4 IS NULL OR m.ts < ?4) \
           AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user = ?1 AND h.conv = m.conv AND h.seq = m.seq) \
         ORDER BY m.ts DESC, m.msg_id DESC LIMIT ?5"
    );
    let mut st = c.prepare_cached(&sql).map_err(be)?;
    let rows = st
        .query_map(
            params![user, fts, q.conv, q.before_ts, q.limit],
            message_from_row,
        )
        .map_err(be)?;
    rows.collect::<Result<_, _>>().map_err(be)
}

/// Messages of the conversations `user` may search (of `conv` alone when
/// given), counted by seq: at least the documents a query naming those
/// conversations walks.
fn visible(c: &Connection, user: &str, conv: Option<&str>) -> StoreResult<i64> {
    c.prepare_cached(
        "SELECT coalesce(sum(min(cv.max_seq, coalesce(uc.until_seq, cv.max_seq))), 0) \
         FROM user_convs uc JOIN convs cv ON cv.conv = uc.conv \
         WHERE uc.user = ?1 AND (?2 IS NULL OR uc.conv = ?2)",
    )
    .map_err(be)?
    .query_row(params![user, conv], |r| r.get(0))
    .map_err(be)
}

/// Whether `words` match fewer than `cap` documents.
fn fewer_than(c: &Connection, words: &str, cap: i64) -> StoreResult<bool> {
    let n: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM (SELECT rowid FROM search_fts WHERE search_fts MATCH ?1 LIMIT ?2)",
        )
        .map_err(be)?
        .query_row(params![words, cap], |r| r.get(0))
        .map_err(be)?;
    Ok(n < cap)
}

/// Two plans give the same hits: the words alone (FTS5 walks every
/// user's matches), or the words and the user's conversations (FTS5 walks
/// about the user's messages). The cheaper walk wins: counting the
/// words' matches up to the user's message count costs the smaller of
/// the two.
pub fn search(c: &Connection, user: &str, q: &SearchQuery) -> StoreResult<Vec<StoredMessage>> {
    // One snapshot for every query.
    let tx = c.unchecked_transaction().map_err(be)?;
    let words = fts_query(&q.terms);
    let visible = visible(&tx, user, q.conv.as_deref())?;
    if visible == 0 {
        return Ok(Vec::new());
    }
    if fewer_than(&tx, &words, visible)? {
        return hits(&tx, user, &words, q);
    }
    let convs: Vec<String> = match &q.conv {
        Some(conv) => vec![conv.clone()],
        None => {
            let mut st = tx
                .prepare_cached("SELECT conv FROM user_convs WHERE user = ?1")
                .map_err(be)?;
            let rows = st.query_map([user], |r| r.get(0)).map_err(be)?;
            rows.collect::<Result<_, _>>().map_err(be)?
        }
    };
    let mut out = Vec::new();
    for chunk in convs.chunks(CONVS_PER_QUERY) {
        let names: Vec<String> = chunk.iter().map(|c| conv_term(c)).collect();
        let fts = format!("({words}) AND ({})", names.join(" OR "));
        out.extend(hits(&tx, user, &fts, q)?);
    }
    if convs.len() > CONVS_PER_QUERY {
        out.sort_by_key(|m| std::cmp::Reverse((m.ts, m.msg_id)));
        out.truncate(q.limit as usize);
    }
    Ok(out)
}
