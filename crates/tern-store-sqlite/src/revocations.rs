//! Revoked session tokens: one row per token, kept until the token would
//! have expired anyway. The table stands apart from the versioned schema
//! (created if missing at every open), so it needs no migration step.

use rusqlite::{params, Connection};
use tern_core::store::{StoreError, StoreResult};

const TABLE: &str = r#"
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS revoked_tokens_expiry ON revoked_tokens (expires_at);
CREATE TABLE IF NOT EXISTS revoked_users (
    user_id    TEXT PRIMARY KEY,
    before_ms  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
"#;

pub fn init(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(TABLE)
}

pub fn revoke(c: &Connection, jti: &str, expires_at: i64, now: i64) -> StoreResult<()> {
    c.execute(
        "DELETE FROM revoked_tokens WHERE expires_at <= ?1",
        params![now],
    )
    .map_err(StoreError::backend)?;
    c.execute(
        "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2) \
         ON CONFLICT (jti) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)",
        params![jti, expires_at],
    )
    .map_err(StoreError::backend)?;
    Ok(())
}

pub fn list(c: &Connection, now: i64) -> StoreResult<Vec<(String, i64)>> {
    let mut st = c
        .prepare_cached("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > ?1")
        .map_err(StoreError::backend)?;
    let rows = st
        .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(StoreError::backend)?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(StoreError::backend)
}

/// Every token of `user` issued before `before` is revoked.
pub fn revoke_user(
    c: &Connection,
    user: &str,
    before: i64,
    expires_at: i64,
    now: i64,
) -> StoreResult<()> {
    c.execute(
        "DELETE FROM revoked_users WHERE expires_at <= ?1",
        params![now],
    )
    .map_err(StoreError::backend)?;
    c.execute(
        "INSERT INTO revoked_users (user_id, before_ms, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (user_id) DO UPDATE SET before_ms = MAX(before_ms, excluded.before_ms), \
         expires_at = MAX(expires_at, excluded.expires_at)",
        params![user, before, expires_at],
    )
    .map_err(StoreError::backend)?;
    Ok(())
}

pub fn list_users(c: &Connection, now: i64) -> StoreResult<Vec<(String, i64, i64)>> {
    let mut st = c
        .prepare_cached(
            "SELECT user_id, before_ms, expires_at FROM revoked_users WHERE expires_at > ?1",
        )
        .map_err(StoreError::backend)?;
    let rows = st
        .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(StoreError::backend)?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(StoreError::backend)
}
