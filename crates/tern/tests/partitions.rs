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

#[path = "../../tern-server/tests/it/common.rs"]
#[allow(dead_code)]
mod common;
mod cluster_harness;
mod support;

use cluster_harness::*;
use common::{dm, Client};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::Tern;
use tokio::sync::{mpsc, oneshot};

/// What is cut between node A and the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    Redis,
    Nats,
    /// Both: the other nodes only (the store stays reachable).
    Peers,
}

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

/// An acknowledged message: its conversation and seq, who sent it, when
/// its `ok` came.
#[derive(Clone)]
struct Acked {
    conv: String,
    seq: u64,
    cmid: String,
    from: String,
    at: Instant,
}

/// What one receiving connection got: per `(conv, seq)`, when first and
/// how many times.
#[derive(Default)]
struct Seen {
    got: HashMap<(String, u64), (Instant, u32)>,
}

/// One user's main connection, in a task of its own that reads (and acks)
/// every push all the time and sends when told to.
struct Peer {
    user: String,
    seen: Arc<Mutex<Seen>>,
    cmds: mpsc::Sender<(usize, Duration, oneshot::Sender<()>)>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Client, usize)>,
}

/// Sending: `to` a user, or to the group.
#[derive(Clone)]
struct Targets {
    to: String,
    group: String,
}

fn peer(
    mut c: Client,
    user: String,
    targets: Targets,
    acked: Arc<Mutex<Vec<Acked>>>,
) -> Peer {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::channel::<(usize, Duration, oneshot::Sender<()>)>(4);
    let (seen2, stop2, user2) = (seen.clone(), stop.clone(), user.clone());
    let task = tokio::spawn(async move {
        let mut sent = 0usize;
        let mut errors = 0usize;
        loop {
            read(&mut c, &seen2, Duration::from_millis(20)).await;
            if stop2.load(Ordering::Acquire) {
                return (c, errors);
            }
            let Ok((n, pace, done)) = rx.try_recv() else {
                continue;
            };
            for _ in 0..n {
                sent += 1;
                let cmid = format!("{user2}-{sent}");
                let (field, to, conv) = if sent % 2 == 0 {
                    ("group", &targets.group, format!("group:{}", targets.group))
                } else {
                    ("to", &targets.to, dm(&user2, &targets.to))
                };
                // A send that fails is retried with its client_msg_id
                // until it is acknowledged.
                loop {
                    let r = c
                        .request(json!({"type": "send", field: to, "client_msg_id": cmid,
                            "kind": "text", "content": cmid}))
                        .await;
                    if r["type"] == "ok" {
                        assert_eq!(r["conv"].as_str(), Some(conv.as_str()), "{r}");
                        acked.lock().unwrap().push(Acked {
                            conv: conv.clone(),
                            seq: r["seq"].as_u64().unwrap(),
                            cmid: cmid.clone(),
                            from: user2.clone(),
                            at: Instant::now(),
                        });
                        break;
                    }
                    assert_eq!(r["code"], "unavailable", "send {cmid}: {r}");
                    errors += 1;
                    read(&mut c, &seen2, Duration::from_millis(200)).await;
                }
                read(&mut c, &seen2, pace).await;
            }
            let _ = done.send(());
        }
    });
    Peer {
        user,
        seen,
        cmds: tx,
        stop,
        task,
    }
}

/// Reads for `d` (at least one wait): records and acks every `msg` push.
async fn read(c: &mut Client, seen: &Mutex<Seen>, d: Duration) {
    let until = tokio::time::Instant::now() + d;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let Some(f) = c.next_within(left).await else {
            if c.closed().is_some() {
                panic!("a receiver's connection was closed: {:?}", c.closed());
            }
            return;
        };
        if f["type"] != "msg" {
            continue;
        }
        let m = &f["msg"];
        let (conv, seq) = (m["conv"].as_str().unwrap(), m["seq"].as_u64().unwrap());
        seen.lock().unwrap()
            .got
            .entry((conv.to_owned(), seq))
            .or_insert((Instant::now(), 0))
            .1 += 1;
        c.send(json!({"type": "ack", "conv": conv, "seq": seq}))
            .await;
    }
}

/// Every peer sends `n` messages, `pace` apart; returns once all are
/// acknowledged.
async fn send_all(peers: &[Peer], n: usize, pace: Duration) {
    let mut waits = Vec::new();
    for p in peers {
        let (tx, rx) = oneshot::channel();
        p.cmds.send((n, pace, tx)).await.unwrap();
        waits.push(rx);
    }
    for w in waits {
        w.await.expect("a peer's task ended");
    }
}

/// Reads a connection that is not a peer (so pings are answered) until it
/// is closed or `stop`; returns it with its close code.
fn watch(mut c: Client, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(Client, Option<u16>)> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Acquire) && c.closed().is_none() {
            let _ = c.next_within(Duration::from_millis(100)).await;
        }
        let code = c.closed();
        (c, code)
    })
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
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut peers = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let client = connect(c.node(i), &tokens[i], "d").await;
        let targets = Targets {
            to: users[(i + 1) % 3].to_owned(),
            group: gid.clone(),
        };
        peers.push(peer(client, (*u).to_owned(), targets, acked.clone()));
    }
    // ua's other devices on A: the phone will move to B without closing
    // here; the tablet will close here, then connect to B.
    let stop_watch = Arc::new(AtomicBool::new(false));
    let phone_a = watch(connect(c.node(0), &tokens[0], "phone").await, stop_watch.clone());
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
    send_all(&peers, form.per_phase, pace).await;
    let before = acked.lock().unwrap().len();

    // The cut.
    let (ra, na) = &relays[0];
    if cut != Cut::Nats {
        ra.cut();
    }
    if cut != Cut::Redis {
        na.cut();
    }
    let cut_at = Instant::now();
    let during_pace = form.cut / form.per_phase as u32;
    let sending = {
        let mut waits = Vec::new();
        for p in &peers {
            let (tx, rx) = oneshot::channel();
            p.cmds.send((form.per_phase, during_pace, tx)).await.unwrap();
            waits.push(rx);
        }
        waits
    };
    // Past the presence expiry: the other nodes count A dead (Redis cut).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    tablet_a.close().await;
    let phone_b = watch(connect(c.node(1), &tokens[0], "phone").await, stop_watch.clone());
    let tablet_b = watch(connect(c.node(1), &tokens[0], "tablet").await, stop_watch.clone());
    tokio::time::sleep(form.cut.saturating_sub(cut_at.elapsed())).await;
    ra.restore();
    na.restore();
    let healed = Instant::now();
    for w in sending {
        w.await.expect("a peer's task ended");
    }
    let during = acked.lock().unwrap().len() - before;
    send_all(&peers, form.per_phase, pace).await;
    let sent = 3 * 3 * form.per_phase;
    let all: Vec<Acked> = acked.lock().unwrap().clone();
    assert_eq!(all.len(), sent, "every send acknowledged (retried until then)");

    // Every receiver got every message, live or by catch-up.
    let expected = |p: &Peer| -> Vec<&Acked> {
        all.iter()
            .filter(|a| {
                a.from != p.user
                    && (a.conv.starts_with("group:") || a.conv == dm(&a.from, &p.user))
            })
            .collect()
    };
    let bound = Duration::from_secs(if form.long { 60 } else { 20 });
    let deadline = Instant::now() + bound;
    for p in &peers {
        let want = expected(p);
        loop {
            let missing: Vec<String> = {
                let seen = p.seen.lock().unwrap();
                want.iter()
                    .filter(|a| !seen.got.contains_key(&(a.conv.clone(), a.seq)))
                    .map(|a| format!("{} {}#{}", a.cmid, a.conv, a.seq))
                    .collect()
            };
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} is missing {} of {} messages after {bound:?}: {missing:?}",
                p.user,
                missing.len(),
                want.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
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
            r.len() == 3
                && r.iter()
                    .all(|(d, v)| want.get(d) == Some(&route_node(v)))
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
    let mut convs: Vec<String> = all.iter().map(|a| a.conv.clone()).collect();
    convs.sort();
    convs.dedup();
    let mut in_history = 0;
    for conv in &convs {
        // Read by a member: the sender of its first message.
        let from = &all.iter().find(|a| &a.conv == conv).unwrap().from;
        let i = users.iter().position(|u| u == from).unwrap();
        let h = full_history(c.node(2), &tokens[i], conv).await;
        let mut by_cmid: HashMap<&str, Vec<u64>> = HashMap::new();
        for m in &h {
            if let Some(cmid) = m["client_msg_id"].as_str() {
                by_cmid
                    .entry(cmid)
                    .or_default()
                    .push(m["seq"].as_u64().unwrap());
            }
        }
        for a in all.iter().filter(|a| &a.conv == conv) {
            assert_eq!(
                by_cmid.get(a.cmid.as_str()),
                Some(&vec![a.seq]),
                "{} in {conv}: once, at its seq",
                a.cmid
            );
            in_history += 1;
        }
    }

    // The counts.
    let (mut live, mut caught_up, mut dups, mut delivered) = (0, 0, 0, 0);
    for p in &peers {
        let seen = p.seen.lock().unwrap();
        for a in expected(p) {
            let (at, n) = seen.got[&(a.conv.clone(), a.seq)];
            delivered += 1;
            dups += n - 1;
            if at.saturating_duration_since(a.at) < Duration::from_secs(1) {
                live += 1;
            } else {
                caught_up += 1;
            }
        }
    }
    let mut errors = 0;
    for p in peers {
        p.stop.store(true, Ordering::Release);
        let (client, e) = p.task.await.unwrap();
        errors += e;
        client.close().await;
    }
    eprintln!(
        "partition {cut:?}: cut {:?}; sent {sent}, acknowledged {} ({during} during the cut, \
         {errors} attempts answered unavailable and retried), in history {in_history}; \
         delivered {delivered} ({live} live, {caught_up} by catch-up), duplicates {dups}; \
         all delivered {:.1} s after the heal",
        form.cut,
        all.len(),
        recovered.as_secs_f64()
    );
    assert_eq!(in_history, sent);
    assert_eq!(dups, 0, "no receiver got a message twice");
}
