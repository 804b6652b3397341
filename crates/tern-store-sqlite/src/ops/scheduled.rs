//! 5.6 scheduled messages: one row per pending send. The one writer
//! thread makes each claim atomic; the lease keeps the row from being
//! claimed again while its send runs.

use super::be;
use rusqlite::{params, Connection, Row};
use tern_core::store::{mentions_column, mentions_of_column, Scheduled, StoreError, StoreResult};

const COLS: &str = "id, user, conv, peer, at, kind, content, client_msg_id, reply_to, \
                    mentions, created_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Scheduled> {
    Ok(Scheduled {
        id: r.get(0)?,
        user: r.get(1)?,
        conv: r.get(2)?,
        peer: r.get(3)?,
        at: r.get(4)?,
        kind: r.get(5)?,
        content: r.get(6)?,
        client_msg_id: r.get(7)?,
        reply_to: r.get::<_, i64>(8)? as u64,
        mentions: mentions_of_column(&r.get::<_, String>(9)?),
        created_at: r.get(10)?,
    })
}

pub fn schedule(c: &Connection, s: &Scheduled, max: u32) -> StoreResult<()> {
    let pending: i64 = c
        .prepare_cached("SELECT count(*) FROM scheduled WHERE user = ?1")
        .map_err(be)?
        .query_row([&s.user], |r| r.get(0))
        .map_err(be)?;
    if pending >= i64::from(max) {
        return Err(StoreError::Forbidden("too many scheduled messages"));
    }
    let n = c
        .prepare_cached(&format!(
            "INSERT INTO scheduled ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (id) DO NOTHING"
        ))
        .map_err(be)?
        .execute(params![
            s.id,
            s.user,
            s.conv,
            s.peer,
            s.at,
            s.kind,
            s.content,
            s.client_msg_id,
            s.reply_to as i64,
            mentions_column(&s.mentions),
            s.created_at,
        ])
        .map_err(be)?;
    if n == 0 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

pub fn scheduled(c: &Connection, user: &str) -> StoreResult<Vec<Scheduled>> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM scheduled WHERE user = ?1 ORDER BY at, id"
    ))
    .map_err(be)?
    .query_map([user], row)
    .map_err(be)?
    .collect::<rusqlite::Result<_>>()
    .map_err(be)
}

pub fn unschedule(c: &Connection, user: &str, id: &str) -> StoreResult<bool> {
    let n = c
        .prepare_cached("DELETE FROM scheduled WHERE id = ?1 AND user = ?2")
        .map_err(be)?
        .execute([id, user])
        .map_err(be)?;
    Ok(n > 0)
}

pub fn claim_scheduled(
    c: &Connection,
    now: i64,
    lease_until: i64,
    max: u32,
) -> StoreResult<Vec<Scheduled>> {
    let due: Vec<Scheduled> = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM scheduled WHERE at <= ?1 AND lease_until <= ?1 \
             ORDER BY at, id LIMIT ?2"
        ))
        .map_err(be)?
        .query_map(params![now, max], row)
        .map_err(be)?
        .collect::<rusqlite::Result<_>>()
        .map_err(be)?;
    let mut lease = c
        .prepare_cached("UPDATE scheduled SET lease_until = ?2 WHERE id = ?1")
        .map_err(be)?;
    for s in &due {
        lease.execute(params![s.id, lease_until]).map_err(be)?;
    }
    Ok(due)
}

pub fn next_scheduled(c: &Connection) -> StoreResult<Option<i64>> {
    c.prepare_cached("SELECT min(max(at, lease_until)) FROM scheduled")
        .map_err(be)?
        .query_row([], |r| r.get(0))
        .map_err(be)
}
