//! Network partitions of one node of a three-node cluster, against real
//! processes: a `redis-server` and a `nats-server` of the test's own, the
//! machine's PostgreSQL for the store, and a TCP relay (`Proxy`) between
//! each node and each of Redis and NATS. Cutting a relay closes its open
//! connections and refuses new ones, until it is healed.
//!
//! Three cuts of node A: from Redis only, from NATS only, and from the
//! other nodes only. Tern nodes talk to each other only through Redis
//! (presence, routes) and NATS (pushes, forwards, kicks); so a node cut
//! off from the other nodes is one whose relays to both Redis and NATS
//! are cut while the store stays reachable.
//!
//! Each test keeps a client of each user connected on its node and sends
//! 1:1 and group messages from all three before, during and after the
//! cut. During the cut, a device of A's user moves to node B (its
//! connection on A stays open, as a phone that lost its network would
//! leave it), and another device of hers disconnects from A and connects
//! to B. After the heal it checks: every acknowledged message is in
//! history exactly once; every receiver that stayed connected got every
//! message, live or by the server-side catch-up, within a bound; tokens
//! are accepted on every node; no two nodes hold the same device (A's
//! stale connection is closed with 4009, the routes name B).
//!
//! Long form: `TERN_PARTITION_LONG=1` (more messages, a longer cut); the
//! counts it prints are in docs/RELIABILITY.md.

mod cluster_harness;
#[path = "../../tern-server/tests/it/common.rs"]
#[allow(dead_code)]
mod common;
mod support;

use cluster_harness::traffic::{watch, Traffic};
use cluster_harness::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::Tern;

/// What is cut between node A and the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    Redis,
    Nats,
    /// Both: the other nodes only (the store stays reachable).
    Peers,
}

/// Messages the users on B and C each send at once during the cut (half
/// to the group).
const BURST: usize = 80;

/// How much traffic, how long a cut.
struct Form {
    /// Messages each user sends in each of the three phases.
    per_phase: usize,
    /// How long the cut lasts (longer than the presence expiry, 1.5 s, so
    /// the other nodes count A dead meanwhile).
    cut: Duration,
    long: bool,
}

impl Form {
    fn from_env() -> Form {
        if std::env::var_os("TERN_PARTITION_LONG").is_some() {
            Form {
                per_phase: 150,
                cut: Duration::from_secs(20),
                long: true,
            }
        } else {
            Form {
                per_phase: 8,
                cut: Duration::from_secs(3),
                long: false,
            }
        }
    }
}

async fn redis_routes(url: &str, key: &str) -> HashMap<String, String> {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut con)
        .await
        .unwrap()
}

/// The node number a route value `node:conn:gen` names.
fn route_node(v: &str) -> u64 {
    v.split(':').next().unwrap().parse().unwrap()
}

async fn node_id(node: &Tern) -> u64 {
    let (_, h) = healthz(node).await;
    h["node"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_only() {
    partition(Cut::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_only() {
    partition(Cut::Nats).await;
}

/// Cut off from the other nodes: from Redis and NATS, through which
/// alone nodes talk to each other; the store stays reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_other_nodes() {
    partition(Cut::Peers).await;
}

async fn partition(cut: Cut) {
    let form = Form::from_env();
    let Some(redis) = OwnRedis::start().await else {
        return;
    };
    let Some(nats) = OwnNats::start(1).await else {
        return;
    };
    let Some(mut c) = Cluster::start(Sql::Postgres, 0, &[]).await else {
        return;
    };
    let mut relays = Vec::new();
    for _ in 0..3 {
        let r = Proxy::start(&format!("127.0.0.1:{}", redis.port)).await;
        let n = Proxy::start(&host_port(&nats.urls[0])).await;
        let node = c
            .spawn(&[
                ("TERN_CLUSTER__REDIS_URL", &format!("redis://{}", r.addr)),
                ("TERN_CLUSTER__NATS_URL", &format!("nats://{}", n.addr)),
                ("TERN_HTTP__REQUEST_TIMEOUT_SECS", "5"),
            ])
            .await;
        c.nodes.push(node);
        relays.push((r, n));
    }
    let users = ["ua", "ub", "uc"];
    let mut tokens = Vec::new();
    for (i, u) in users.iter().enumerate() {
        tokens.push(c.node(i).user(u).await);
    }
    let gid = new_group(c.node(1), &tokens[1], &["ua", "uc"]).await;
    let mut clients = Vec::new();
    for (i, u) in users.iter().enumerate() {
        clients.push(((*u).to_owned(), connect(c.node(i), &tokens[i], "d").await));
    }
    let traffic = Traffic::start(clients, &gid);
    // ua's other devices on A: the phone will move to B without closing
    // here; the tablet will close here, then connect to B.
    let stop_watch = Arc::new(AtomicBool::new(false));
    let phone_a = watch(
        connect(c.node(0), &tokens[0], "phone").await,
        stop_watch.clone(),
    );
    let tablet_a = connect(c.node(0), &tokens[0], "tablet").await;
    let routes_key = format!("{}:r:ua", c.name);
    let node_a = node_id(c.node(0)).await;
    let node_b = node_id(c.node(1)).await;
    eventually(Duration::from_secs(10), "ua's routes written", || {
        let (url, key) = (redis.url.clone(), routes_key.clone());
        async move { redis_routes(&url, &key).await.len() == 3 }
    })
    .await;

    let pace = Duration::from_millis(30);
    traffic.send(form.per_phase, pace).await;

    // The cut.
    let (ra, na) = &relays[0];
    if cut != Cut::Nats {
        ra.cut();
    }
    if cut != Cut::Redis {
        na.cut();
    }
    let cut_at = Instant::now();
    let sending = traffic
        .begin(form.per_phase, form.cut / form.per_phase as u32)
        .await;
    // Past the presence expiry: the other nodes count A dead (Redis cut).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    tablet_a.close().await;
    let phone_b = watch(
        connect(c.node(1), &tokens[0], "phone").await,
        stop_watch.clone(),
    );
    let tablet_b = watch(
        connect(c.node(1), &tokens[0], "tablet").await,
        stop_watch.clone(),
    );
    // A burst from B and C while they count A dead (Redis cut): a gap of
    // more than one page (100) in the group for A's receivers. (With A
    // cut off from NATS only, A stays live for the others, and each
    // group send it does not own waits `cluster.forward_timeout_ms` for
    // the owner before A appends it itself: no burst there.)
    let burst = if cut == Cut::Nats { 0 } else { BURST };
    for w in traffic.begin_some(&[1, 2], burst, Duration::ZERO).await {
        w.await.expect("a peer's task ended");
    }
    tokio::time::sleep(form.cut.saturating_sub(cut_at.elapsed())).await;
    ra.restore();
    na.restore();
    let healed = Instant::now();
    for w in sending {
        w.await.expect("a peer's task ended");
    }
    traffic.send(form.per_phase, pace).await;
    let sent = 3 * 3 * form.per_phase + 2 * burst;
    assert_eq!(
        traffic.acked().len(),
        sent,
        "every send acknowledged (retried until then)"
    );

    // Every receiver got every message, live or by catch-up.
    let bound = Duration::from_secs(if form.long { 60 } else { 20 });
    traffic.all_delivered(bound).await;
    let recovered = healed.elapsed();

    // A's stale connection of the device that moved is closed with 4009;
    // the devices on B stay.
    let (_, code) = tokio::time::timeout(bound, phone_a)
        .await
        .expect("ua's phone on A closed after the heal")
        .unwrap();
    assert_eq!(code, Some(4009), "ua's phone on A: closed as replaced");
    // No two nodes hold a route for one device: the moved devices' routes
    // name B (a retried disconnect of the tablet on A did not delete B's),
    // the device that stayed names A.
    let want_routes = HashMap::from([
        ("d".to_owned(), node_a),
        ("phone".to_owned(), node_b),
        ("tablet".to_owned(), node_b),
    ]);
    eventually(Duration::from_secs(10), "ua's routes settle", || {
        let (url, key, want) = (redis.url.clone(), routes_key.clone(), want_routes.clone());
        async move {
            let r = redis_routes(&url, &key).await;
            r.len() == 3 && r.iter().all(|(d, v)| want.get(d) == Some(&route_node(v)))
        }
    })
    .await;
    // Still so a heartbeat and a keeper round later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = redis_routes(&redis.url, &routes_key).await;
    let named: HashMap<String, u64> = r.iter().map(|(d, v)| (d.clone(), route_node(v))).collect();
    assert_eq!(named, want_routes, "ua's routes after the heal");
    stop_watch.store(true, Ordering::Release);
    for w in [phone_b, tablet_b] {
        let (client, code) = w.await.unwrap();
        assert_eq!(code, None, "a device on B stays connected");
        client.close().await;
    }

    // Tokens are accepted on every node.
    for t in &tokens {
        for i in 0..3 {
            let (st, b) = c.node(i).get("/v1/conversations", t).await;
            assert_eq!(st, 200, "a token on node {i}: {b}");
        }
    }

    // Every acknowledged message in history, exactly once.
    let by_user: HashMap<String, String> = users
        .iter()
        .zip(&tokens)
        .map(|(u, t)| ((*u).to_owned(), t.clone()))
        .collect();
    let counts = traffic.finish(c.node(2), &by_user).await;
    eprintln!(
        "partition {cut:?}: cut {:?}; sent {sent}, {}; all delivered {:.1} s after the heal",
        form.cut,
        counts.line(),
        recovered.as_secs_f64()
    );
    assert_eq!(counts.in_history, sent);
    assert_eq!(counts.duplicates, 0, "no receiver got a message twice");
}
