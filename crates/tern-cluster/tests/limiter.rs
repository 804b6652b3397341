//! The limiter conformance checks against `LocalLimiter` (one instance,
//! as every handle of one node shares it) and `RedisLimiter` (three nodes
//! on one random key prefix).

mod common;

use common::conformance as c;
use tern_cluster::RedisLimiter;
use tern_core::limits::Limiter;
use tern_core::LocalLimiter;

async fn redis(n: usize) -> Option<(Vec<RedisLimiter>, String)> {
    let url = common::redis_url();
    let prefix = common::unique("terntest:");
    let mut out = Vec::new();
    for _ in 0..n {
        match RedisLimiter::connect(&url, &prefix).await {
            Ok(l) => out.push(l),
            Err(e) => {
                common::unreachable("Redis", &url, e);
                return None;
            }
        }
    }
    Some((out, prefix))
}

/// The keys left under a prefix.
async fn keys(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut con)
        .await
        .unwrap()
}

#[tokio::test]
async fn local_limiter_conforms() {
    let l = LocalLimiter::new();
    c::limiter_buckets(&[&l, &l], "t").await;
    c::limiter_is_atomic(&[&l], "t").await;
}

#[tokio::test]
async fn redis_limiter_conforms_and_leaves_nothing_behind() {
    let Some((ls, prefix)) = redis(3).await else {
        return;
    };
    let nodes: Vec<&dyn Limiter> = ls.iter().map(|l| l as &dyn Limiter).collect();
    c::limiter_buckets(&nodes, "t").await;
    c::limiter_is_atomic(&nodes, "t").await;
    // Every bucket carries a TTL of its refill time.
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let left = keys(&prefix).await;
    assert!(!left.is_empty(), "buckets are in Redis under {prefix}");
    for k in &left {
        assert!(k.starts_with(&format!("{prefix}:rl:")), "{k}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 600_000, "{k} has TTL {ttl} ms");
        let _: () = redis::cmd("DEL")
            .arg(k)
            .query_async(&mut con)
            .await
            .unwrap();
    }
}
