//! The keys that sign session tokens (`signing_keys`, schema version 4).

use rusqlite::{params, Connection};
use tern_core::store::{SigningKey, StoreError, StoreResult};

pub fn list(c: &Connection) -> StoreResult<Vec<SigningKey>> {
    let mut st = c
        .prepare_cached("SELECT kid, secret, created_at FROM signing_keys ORDER BY created_at, kid")
        .map_err(StoreError::backend)?;
    let rows = st
        .query_map([], |r| {
            Ok(SigningKey {
                kid: r.get(0)?,
                secret: r.get(1)?,
                created_at: r.get(2)?,
            })
        })
        .map_err(StoreError::backend)?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(StoreError::backend)
}

pub fn add(c: &Connection, key: &SigningKey) -> StoreResult<bool> {
    let n = c
        .execute(
            "INSERT INTO signing_keys (kid, secret, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (kid) DO NOTHING",
            params![key.kid, key.secret, key.created_at],
        )
        .map_err(StoreError::backend)?;
    Ok(n == 1)
}
