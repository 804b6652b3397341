//! The presence conformance checks against `LocalPresence` (siblings
//! sharing one state) and `RedisPresence` (several nodes on one random key
//! prefix).

mod common;

use common::conformance as c;
use std::time::Duration;
use tern_cluster::{PresenceOptions, RedisPresence};
use tern_core::presence::{NodeSet, Presence, Routes};
use tern_core::LocalPresence;

fn local(n: usize) -> Vec<Box<dyn Presence>> {
    let first = LocalPresence::new(1);
    let mut out: Vec<Box<dyn Presence>> = Vec::new();
    for i in 1..n {
        out.push(Box::new(first.sibling(1 + i as u16)));
    }
    out.insert(0, Box::new(first));
    out
}

fn opts(prefix: &str) -> PresenceOptions {
    PresenceOptions {
        prefix: prefix.to_owned(),
        heartbeat_ms: 200,
        expiry_ms: 1500,
        node_id: None,
    }
}

/// `n` nodes on a fresh prefix, or None when Redis is down (see
/// `common::unreachable`).
async fn redis(n: usize) -> Option<(Vec<Box<dyn Presence>>, String)> {
    let url = common::redis_url();
    let prefix = common::unique("terntest:");
    let mut out: Vec<Box<dyn Presence>> = Vec::new();
    for _ in 0..n {
        match RedisPresence::connect(&url, opts(&prefix)).await {
            Ok(p) => out.push(Box::new(p)),
            Err(e) => {
                common::unreachable("Redis", &url, e);
                return None;
            }
        }
    }
    Some((out, prefix))
}

/// Deletes the keys of a test's prefix.
async fn cleanup(prefix: &str) {
    let Ok(client) = redis::Client::open(common::redis_url()) else {
        return;
    };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut con)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut con).await;
    }
}

fn refs(v: &[Box<dyn Presence>]) -> Vec<&dyn Presence> {
    v.iter().map(|p| &**p).collect()
}

macro_rules! checks {
    ($($name:ident: $nodes:expr),* $(,)?) => {
        mod local {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let p = local($nodes);
                    c::$name(&refs(&p)).await;
                }
            )*
        }
        mod redis_presence {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let Some((p, prefix)) = redis($nodes).await else { return };
                    c::live_nodes_include_all(&refs(&p)).await;
                    c::$name(&refs(&p)).await;
                    drop(p);
                    cleanup(&prefix).await;
                }
            )*
        }
    };
}

checks! {
    live_nodes_include_all: 3,
    routes_and_online_across_nodes: 2,
    same_device_replaces: 2,
    devices_with_sessions: 2,
    stale_disconnect_keeps_newer_route: 2,
    restore_keeps_route_elsewhere: 2,
    nodes_of_order_and_dedup: 3,
    rooms_per_node: 3,
}

#[tokio::test]
async fn redis_dropped_node_expires() {
    let Some((mut p, prefix)) = redis(2).await else {
        return;
    };
    let dying = p.remove(1);
    let took = c::dropped_node_expires(&*p[0], dying).await;
    eprintln!("a dropped node stopped counting after {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    drop(p);
    cleanup(&prefix).await;
}

/// A fixed node id is refused while another instance holds it, and a
/// reused id does not bring back the routes of its previous holder.
#[tokio::test]
async fn redis_fixed_and_reused_ids() {
    let url = common::redis_url();
    let prefix = common::unique("terntest:");
    let fixed = PresenceOptions {
        node_id: Some(77),
        expiry_ms: 600,
        heartbeat_ms: 100,
        ..opts(&prefix)
    };
    let first = match RedisPresence::connect(&url, fixed.clone()).await {
        Ok(p) => p,
        Err(e) => return common::unreachable("Redis", &url, e),
    };
    assert_eq!(first.node(), 77);
    first
        .connected(
            "old",
            "phone",
            tern_core::Route {
                node: 77,
                conn: 1,
                session: 0,
            },
        )
        .await
        .unwrap();
    // Held: the second instance waits out the expiry, then gives up.
    assert!(RedisPresence::connect(&url, fixed.clone()).await.is_err());
    drop(first);
    // Free once the lease expired; the old route stays dead.
    let second = RedisPresence::connect(&url, fixed).await.unwrap();
    assert_eq!(second.node(), 77);
    assert_eq!(second.online(&["old"]).await.unwrap(), [false]);
    let c = second
        .connected(
            "old",
            "laptop",
            tern_core::Route {
                node: 77,
                conn: 1,
                session: 0,
            },
        )
        .await
        .unwrap();
    assert!(c.first);
    second.leave().await.unwrap();
    assert_eq!(second.online(&["old"]).await.unwrap(), [false]);
    drop(second);
    cleanup(&prefix).await;
}

#[tokio::test]
async fn redis_unreachable_fails_fast() {
    let opts = PresenceOptions::default();
    let start = std::time::Instant::now();
    let r = RedisPresence::connect("redis://127.0.0.1:1", opts).await;
    assert!(r.is_err());
    assert!(start.elapsed() < Duration::from_secs(5));
}
