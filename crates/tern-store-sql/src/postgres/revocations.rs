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
CREATE TABLE IF NOT EXISTS revoked_users (
    user_id    TEXT PRIMARY KEY,
    before_ms  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
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
