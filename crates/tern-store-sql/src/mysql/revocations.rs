//! Revoked session tokens: one row per token, kept until the token would
//! have expired anyway. Shard key: jti. The table stands apart from the
//! versioned schema (created if missing at every start), so it needs no
//! migration step.

use crate::common::be;
use sqlx::MySqlConnection;
use tern_core::store::StoreResult;

const TABLE: &str = r#"CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti        VARCHAR(64) NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (jti),
    KEY revoked_tokens_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#;

pub async fn init(c: &mut MySqlConnection) -> StoreResult<()> {
    sqlx::query(TABLE).execute(&mut *c).await.map_err(be)?;
    Ok(())
}
