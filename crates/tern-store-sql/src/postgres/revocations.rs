//! Revoked session tokens: one row per token, kept until the token would
//! have expired anyway. Shard key: jti (a reference table would do too:
//! it stays small). The table stands apart from the versioned schema
//! (created if missing at every start), so it needs no migration step.

use crate::common::be;
use sqlx::PgConnection;
use tern_core::store::StoreResult;

const TABLE: &str = r#"
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_tokens_expiry ON revoked_tokens (expires_at);
"#;

pub async fn init(c: &mut PgConnection) -> StoreResult<()> {
    // Nodes starting at once take turns (the same lock as migrations).
    use sqlx::Connection;
    let mut tx = c.begin().await.map_err(be)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(super::schema::MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(be)?;
    sqlx::raw_sql(TABLE).execute(&mut *tx).await.map_err(be)?;
    tx.commit().await.map_err(be)?;
    Ok(())
}

pub async fn revoke(c: &mut PgConnection, jti: &str, expires_at: i64, now: i64) -> StoreResult<()> {
    sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(be)?;
    sqlx::query(
        "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) \
         ON CONFLICT (jti) DO UPDATE SET expires_at = \
         GREATEST(revoked_tokens.expires_at, EXCLUDED.expires_at)",
    )
    .bind(jti)
    .bind(expires_at)
    .execute(&mut *c)
    .await
    .map_err(be)?;
    Ok(())
}

pub async fn list(c: &mut PgConnection, now: i64) -> StoreResult<Vec<(String, i64)>> {
    sqlx::query_as("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1")
        .bind(now)
        .fetch_all(&mut *c)
        .await
        .map_err(be)
}
