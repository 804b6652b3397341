//! The token secret of a cluster whose configuration names none: the
//! first node to start makes one and stores it in Redis, every other node
//! reads it, so a token issued by any node is accepted by all.
//!
//! Redis must keep it (persistence on, as for any deployment that should
//! survive a Redis restart without logging everyone out); a deployment
//! that cannot promise that sets `auth.secret` on every node instead.

use redis::AsyncCommands;
use tern_core::PlumbingError;

/// Returns the cluster's secret (64 hex characters), creating it once.
pub async fn shared_secret(redis_url: &str, prefix: &str) -> Result<Vec<u8>, PlumbingError> {
    let unavailable = |e| PlumbingError::unavailable("redis", e);
    let client = redis::Client::open(redis_url).map_err(unavailable)?;
    let mut con = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| PlumbingError::unavailable("redis", Timeout))?
    .map_err(unavailable)?;
    let key = format!("{prefix}:secret");
    let fresh: [u8; 32] = rand::random();
    let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    // SET NX: of nodes starting together, exactly one secret wins.
    let _: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(&hex)
        .arg("NX")
        .query_async(&mut con)
        .await
        .map_err(unavailable)?;
    let secret: String = con.get(&key).await.map_err(unavailable)?;
    if secret.len() < 32 {
        return Err(PlumbingError::Malformed(
            "cluster secret in Redis is too short",
        ));
    }
    Ok(secret.into_bytes())
}

#[derive(Debug, thiserror::Error)]
#[error("timed out")]
struct Timeout;
