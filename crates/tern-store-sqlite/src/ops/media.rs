//! 5.5 media: the metadata of uploads, their reference mark and the
//! sweep of those nothing refers to. Each runs inside the writer's
//! transaction (one writer: a mark and a sweep never interleave).

use super::be;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tern_core::store::{MediaRecord, StoreError, StoreResult};

const COLUMNS: &str = "id, owner, size, mime, sha256, w, h, filename, created_at, referenced";

fn row(r: &Row<'_>) -> rusqlite::Result<MediaRecord> {
    Ok(MediaRecord {
        id: r.get(0)?,
        owner: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        mime: r.get(3)?,
        sha256: r.get(4)?,
        w: r.get::<_, Option<i64>>(5)?.map(|v| v as u32),
        h: r.get::<_, Option<i64>>(6)?.map(|v| v as u32),
        filename: r.get(7)?,
        created_at: r.get(8)?,
        referenced: r.get(9)?,
    })
}

pub fn media_add(c: &Connection, m: &MediaRecord) -> StoreResult<()> {
    let n = c
        .prepare_cached(
            "INSERT OR IGNORE INTO media (id, owner, size, mime, sha256, w, h, filename, created_at, referenced) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(be)?
        .execute(params![
            m.id,
            m.owner,
            m.size as i64,
            m.mime,
            m.sha256,
            m.w.map(i64::from),
            m.h.map(i64::from),
            m.filename,
            m.created_at,
            m.referenced
        ])
        .map_err(be)?;
    if n == 0 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

pub fn media_get(c: &Connection, id: &str) -> StoreResult<Option<MediaRecord>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM media WHERE id = ?1"))
        .map_err(be)?
        .query_row([id], row)
        .optional()
        .map_err(be)
}

pub fn media_reference(c: &Connection, id: &str, owner: &str) -> StoreResult<Option<MediaRecord>> {
    c.prepare_cached("UPDATE media SET referenced = 1 WHERE id = ?1 AND owner = ?2")
        .map_err(be)?
        .execute([id, owner])
        .map_err(be)?;
    Ok(media_get(c, id)?.filter(|m| m.owner == owner))
}

pub fn media_sweep(c: &Connection, created_before: i64, max: u32) -> StoreResult<Vec<MediaRecord>> {
    let gone: Vec<MediaRecord> = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM media WHERE referenced = 0 AND created_at < ?1 \
             ORDER BY created_at LIMIT ?2"
        ))
        .map_err(be)?
        .query_map(params![created_before, max], row)
        .map_err(be)?
        .collect::<Result<_, _>>()
        .map_err(be)?;
    let mut del = c
        .prepare_cached("DELETE FROM media WHERE id = ?1 AND referenced = 0")
        .map_err(be)?;
    for m in &gone {
        del.execute([&m.id]).map_err(be)?;
    }
    Ok(gone)
}
