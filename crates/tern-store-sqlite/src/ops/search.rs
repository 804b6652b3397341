//! 5.2 search on FTS5: `search_fts` holds each indexed message's encoded
//! terms (`tern_core::search`) under the message's rowid, without a copy
//! of the text (contentless, deletable rows); `search_cursor` the newest
//! rowid indexed. The writer thread assigns rowids in commit order, so
//! everything at or below the cursor is indexed.

use super::{be, message_from_row, MSG_COLS};
use rusqlite::{params, Connection, OptionalExtension};
use tern_core::search::{index_message, Part, SearchQuery, Terms};
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

fn insert(c: &Connection, rowid: i64, kind: &str, content: Option<&str>) -> StoreResult<()> {
    let terms = index_message(kind, content);
    if !terms.is_empty() {
        c.prepare_cached("INSERT INTO search_fts (rowid, terms) VALUES (?1, ?2)")
            .map_err(be)?
            .execute(params![rowid, terms])
            .map_err(be)?;
    }
    Ok(())
}

pub fn index_pending(c: &Connection, max: u32) -> StoreResult<u32> {
    let from = cursor(c)?;
    let rows: Vec<(i64, String, Option<String>)> = {
        let mut st = c
            .prepare_cached(
                "SELECT rowid, kind, content FROM messages WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            )
            .map_err(be)?;
        let rows = st
            .query_map(params![from, max], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(be)?;
        rows.collect::<Result<_, _>>().map_err(be)?
    };
    let Some(last) = rows.last().map(|r| r.0) else {
        return Ok(0);
    };
    for (rowid, kind, content) in &rows {
        insert(c, *rowid, kind, content.as_deref())?;
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
    insert(c, rowid, &kind, content.as_deref())
}

pub fn search(c: &Connection, user: &str, q: &SearchQuery) -> StoreResult<Vec<StoredMessage>> {
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
            params![user, fts_query(&q.terms), q.conv, q.before_ts, q.limit],
            message_from_row,
        )
        .map_err(be)?;
    rows.collect::<Result<_, _>>().map_err(be)
}
