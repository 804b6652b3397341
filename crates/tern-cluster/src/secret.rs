//! The token secret a cluster kept in Redis (`{prefix}:secret`) before
//! the signing keys moved to the shared store. It is read once, at the
//! first start of a node against a store that holds no key yet, so that
//! tokens issued before the upgrade stay valid; Redis is never asked for
//! it again, and it is never written.

use redis::AsyncCommands;
use tern_core::PlumbingError;

/// The secret Redis still holds, if it does.
pub async fn former_secret(
    redis_url: &str,
    prefix: &str,
) -> Result<Option<Vec<u8>>, PlumbingError> {
    if redis_url.contains(',') {
        // A Redis Cluster: no secret was ever kept there.
        return Ok(None);
    }
    let unavailable = |e| PlumbingError::unavailable("redis", e);
    let client = redis::Client::open(redis_url).map_err(unavailable)?;
    let mut con = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| PlumbingError::unavailable("redis", Timeout))?
    .map_err(unavailable)?;
    let secret: Option<String> = con
        .get(format!("{prefix}:secret"))
        .await
        .map_err(unavailable)?;
    match secret {
        Some(s) if s.len() < 32 => Err(PlumbingError::Malformed(
            "cluster secret in Redis is too short",
        )),
        other => Ok(other.map(String::into_bytes)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("timed out")]
struct Timeout;
