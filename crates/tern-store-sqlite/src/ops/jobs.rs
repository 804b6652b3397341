//! 5.6 durable jobs (webhook deliveries), and the message a job names.
//! One writer: a claim is one `UPDATE ... RETURNING`, never taken twice.

use super::{be, message_from_row, MSG_COLS};
use rusqlite::{params, Connection, OptionalExtension};
use tern_core::store::{Job, NewJob, StoreResult, StoredMessage};

pub fn enqueue_jobs(c: &Connection, jobs: &[NewJob]) -> StoreResult<()> {
    let mut stmt = c
        .prepare_cached(
            "INSERT INTO jobs (kind, job_key, payload, created_at, due_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (job_key) DO NOTHING",
        )
        .map_err(be)?;
    for j in jobs {
        stmt.execute(params![j.kind, j.key, j.payload, j.created_at, j.due_at])
            .map_err(be)?;
    }
    Ok(())
}

/// Inserts jobs, or gives a stored key the new payload (its due time,
/// attempts and claim stay).
pub fn put_jobs(c: &Connection, jobs: &[NewJob]) -> StoreResult<()> {
    let mut stmt = c
        .prepare_cached(
            "INSERT INTO jobs (kind, job_key, payload, created_at, due_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (job_key) DO UPDATE SET payload = excluded.payload",
        )
        .map_err(be)?;
    for j in jobs {
        stmt.execute(params![j.kind, j.key, j.payload, j.created_at, j.due_at])
            .map_err(be)?;
    }
    Ok(())
}

pub fn complete_job(c: &Connection, id: i64, payload: &str, now: i64) -> StoreResult<bool> {
    let n = c
        .prepare_cached("DELETE FROM jobs WHERE id = ?1 AND payload = ?2")
        .map_err(be)?
        .execute(params![id, payload])
        .map_err(be)?;
    if n > 0 {
        return Ok(true);
    }
    c.prepare_cached(
        "UPDATE jobs SET claimed_until = 0, due_at = min(due_at, ?2), attempts = 0 WHERE id = ?1",
    )
    .map_err(be)?
    .execute(params![id, now])
    .map_err(be)?;
    Ok(false)
}

pub fn claim_jobs(
    c: &Connection,
    kind: &str,
    now: i64,
    lease_ms: i64,
    max: u32,
) -> StoreResult<Vec<Job>> {
    let mut jobs = c
        .prepare_cached(
            "UPDATE jobs SET claimed_until = ?3 WHERE id IN ( \
                 SELECT id FROM jobs WHERE kind = ?1 AND due_at <= ?2 AND claimed_until <= ?2 \
                 ORDER BY due_at, id LIMIT ?4) \
             RETURNING id, kind, job_key, payload, created_at, due_at, attempts, last_error",
        )
        .map_err(be)?
        .query_map(
            params![kind, now, now.saturating_add(lease_ms), max as i64],
            |r| {
                Ok(Job {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    key: r.get(2)?,
                    payload: r.get(3)?,
                    created_at: r.get(4)?,
                    due_at: r.get(5)?,
                    attempts: r.get::<_, i64>(6)?.clamp(0, u32::MAX as i64) as u32,
                    last_error: r.get(7)?,
                })
            },
        )
        .map_err(be)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(be)?;
    jobs.sort_by_key(|j| (j.due_at, j.id));
    Ok(jobs)
}

pub fn finish_job(c: &Connection, id: i64) -> StoreResult<()> {
    c.prepare_cached("DELETE FROM jobs WHERE id = ?1")
        .map_err(be)?
        .execute([id])
        .map_err(be)?;
    Ok(())
}

pub fn retry_job(
    c: &Connection,
    id: i64,
    due_at: i64,
    attempts: u32,
    last_error: &str,
) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE jobs SET due_at = ?2, attempts = ?3, last_error = ?4, claimed_until = 0 \
         WHERE id = ?1",
    )
    .map_err(be)?
    .execute(params![id, due_at, attempts as i64, last_error])
    .map_err(be)?;
    Ok(())
}

pub fn count_jobs(c: &Connection, kind: &str) -> StoreResult<u64> {
    let n: i64 = c
        .prepare_cached("SELECT count(*) FROM jobs WHERE kind = ?1")
        .map_err(be)?
        .query_row([kind], |r| r.get(0))
        .map_err(be)?;
    Ok(n.max(0) as u64)
}

pub fn message_by_id(c: &Connection, msg_id: u64) -> StoreResult<Option<StoredMessage>> {
    let Ok(id) = i64::try_from(msg_id) else {
        return Ok(None);
    };
    c.prepare_cached(&format!(
        "SELECT {MSG_COLS} FROM messages m WHERE m.msg_id = ?1"
    ))
    .map_err(be)?
    .query_row([id], message_from_row)
    .optional()
    .map_err(be)
}
