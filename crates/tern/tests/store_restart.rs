//! The store's PostgreSQL stopped hard and started again under sends: a
//! server of the test's own (`initdb`, `pg_ctl`, `fsync=on`), two `tern
//! serve` nodes on it with a `redis-server` and a `nats-server` of the
//! test's own. `pg_ctl stop -m immediate` during sends, then `pg_ctl
//! start`: sends meanwhile are answered `unavailable` within the request
//! timeout (none hangs), every socket stays open, the nodes recover by
//! themselves (a retry with the same `client_msg_id` is acknowledged once
//! the server is back), every acknowledged message is in history once,
//! and every receiver got every acknowledged message.
//!
//! Long form: `TERN_PG_RESTART_LONG=1` (more messages, a longer stop); its
//! counts are in docs/RELIABILITY.md.

mod cluster_harness;
#[path = "../../tern-server/tests/it/common.rs"]
#[allow(dead_code)]
mod common;
mod support;

use cluster_harness::postgres::OwnPostgres;
use cluster_harness::traffic::Traffic;
use cluster_harness::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_stopped_and_started_under_sends() {
    let long = std::env::var_os("TERN_PG_RESTART_LONG").is_some();
    let (per_phase, outage) = if long {
        (150, Duration::from_secs(20))
    } else {
        (8, Duration::from_secs(4))
    };
    let Some(redis) = OwnRedis::start().await else {
        return;
    };
    let Some(nats) = OwnNats::start(1).await else {
        return;
    };
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let env = [
        ("TERN_STORE__URL", pg.url.as_str()),
        ("TERN_CLUSTER__REDIS_URL", redis.url.as_str()),
        ("TERN_CLUSTER__NATS_URL", nats.urls[0].as_str()),
        ("TERN_HTTP__REQUEST_TIMEOUT_SECS", "3"),
    ];
    let Some(mut c) = Cluster::start(Sql::Postgres, 2, &env).await else {
        return;
    };
    let users = ["ua", "ub", "uc"];
    let mut tokens = HashMap::new();
    let mut clients = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let t = c.node(i).user(u).await;
        clients.push(((*u).to_owned(), connect(c.node(i), &t, "d").await));
        tokens.insert((*u).to_owned(), t);
    }
    let gid = new_group(c.node(0), &tokens["ua"], &["ub", "uc"]).await;
    let traffic = Traffic::start(clients, &gid);
    let pace = Duration::from_millis(30);
    traffic.send(per_phase, pace).await;

    let sending = traffic.begin(per_phase, outage / per_phase as u32).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.stop_immediate();
    let stopped = Instant::now();
    // Both nodes say they cannot store; they stay up.
    for i in 0..2 {
        let node = c.node(i);
        eventually(
            Duration::from_secs(10),
            "healthz 503 while stopped",
            || async { healthz(node).await.0 == 503 },
        )
        .await;
        let (st, live) = node.get("/livez", "").await;
        assert_eq!(st, 200, "{live}");
    }
    tokio::time::sleep(outage.saturating_sub(stopped.elapsed())).await;
    pg.start_again();
    let started = Instant::now();
    for w in sending {
        w.await.expect("a peer's task ended");
    }
    for i in 0..2 {
        let node = c.node(i);
        eventually(
            Duration::from_secs(20),
            "healthz 200 after the start",
            || async { healthz(node).await.0 == 200 },
        )
        .await;
    }
    traffic.send(per_phase, pace).await;
    let sent = 3 * 3 * per_phase;
    assert_eq!(traffic.acked().len(), sent);
    traffic.all_delivered(Duration::from_secs(30)).await;
    let recovered = started.elapsed();
    let counts = traffic.finish(c.node(1), &tokens).await;
    eprintln!(
        "postgresql stopped {:.1} s: sent {sent}, {}; all delivered {:.1} s after the start",
        outage.as_secs_f64(),
        counts.line(),
        recovered.as_secs_f64()
    );
    assert!(
        counts.unavailable > 0,
        "sends during the stop were answered unavailable"
    );
    assert_eq!(counts.in_history, sent);
    assert_eq!(counts.duplicates, 0);
    c.nodes.clear();
}
