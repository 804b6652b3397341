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

/// 5.3: every token of a user issued before `before_ms` is revoked.
const USERS_TABLE: &str = r#"CREATE TABLE IF NOT EXISTS revoked_users (
    user_id    VARCHAR(64) NOT NULL,
    before_ms  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#;

pub async fn init(c: &mut MySqlConnection) -> StoreResult<()> {
    sqlx::query(TABLE).execute(&mut *c).await.map_err(be)?;
    sqlx::query(USERS_TABLE)
        .execute(&mut *c)
        .await
        .map_err(be)?;
    Ok(())
}
