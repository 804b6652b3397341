//! Outages: private Redis and NATS servers (started here, on free ports)
//! are stopped and started again under a presence and a bus. Skipped when
//! the server binaries are not installed.

mod common;

use common::conformance::start_all;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tern_cluster::{BusOptions, NatsBus, PresenceOptions, RedisPresence};
use tern_core::bus::{Bus, Envelope};
use tern_core::presence::{NodeSet, Route, Routes};

struct Server {
    child: Child,
}

impl Server {
    fn start(cmd: &str, args: &[String]) -> Option<Server> {
        match Command::new(cmd)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => Some(Server { child }),
            Err(e) => {
                eprintln!("skipping: cannot run {cmd}: {e}");
                None
            }
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn until<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects once the freshly started server listens.
async fn retry_connect<T, E, F, Fut>(mut f: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "private server not up: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn redis_server(port: u16) -> Option<Server> {
    let args = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(String::from);
    Server::start("redis-server", &args)
}

#[tokio::test]
async fn presence_fails_fast_and_recovers_across_a_redis_restart() {
    let port = free_port();
    let Some(server) = redis_server(port) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let opts = PresenceOptions {
        heartbeat_ms: 200,
        expiry_ms: 3000,
        ..PresenceOptions::default()
    };
    let p = retry_connect(|| RedisPresence::connect(&url, opts.clone())).await;
    let route = Route {
        node: p.node(),
        conn: 1,
        session: 0,
    };
    p.connected("ann", "phone", route).await.unwrap();
    server.stop();

    let start = Instant::now();
    assert!(p.online(&["ann"]).await.is_err());
    assert!(p.health().await.is_err());
    assert!(p.connected("bob", "phone", route).await.is_err());
    let took = start.elapsed();
    assert!(took < Duration::from_secs(8), "three calls took {took:?}");
    let start = Instant::now();
    assert!(p.health().await.is_err());
    assert!(start.elapsed() < Duration::from_secs(3));
    // The node goes on living in the view it had.
    assert!(p.live_nodes().contains(&p.node()));

    let _server = redis_server(port);
    until(Duration::from_secs(15), "presence back", || async {
        p.health().await.is_ok()
    })
    .await;
    // The restarted Redis lost everything; the heartbeat takes the lease
    // back and new routes count again.
    until(Duration::from_secs(10), "routes count again", || async {
        p.connected("ann", "phone", route).await.is_ok()
            && p.online(&["ann"]).await.ok() == Some(vec![true])
    })
    .await;
}

#[tokio::test]
async fn bus_retries_across_a_nats_restart() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let port = free_port();
    let dir = std::env::temp_dir().join(common::unique("tern-nats-"));
    let args = [
        "-js",
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-sd",
        &dir.to_string_lossy(),
    ]
    .map(String::from);
    let Some(server) = Server::start("nats-server", &args) else {
        return;
    };
    let url = format!("nats://127.0.0.1:{port}");
    let opts = BusOptions {
        ack_wait_ms: 500,
        ..BusOptions::default()
    };
    let buses = [
        retry_connect(|| NatsBus::connect(&url, opts.clone())).await,
        retry_connect(|| NatsBus::connect(&url, opts.clone())).await,
    ];
    let nodes: Vec<(&dyn Bus, u16)> = vec![(&buses[0], 1), (&buses[1], 2)];
    let got = start_all(&nodes).await;
    let env = |i: usize| Envelope::GroupChanged {
        gid: format!("g{i}").into(),
    };
    for i in 0..10 {
        buses[0].publish(&[2], &env(i)).unwrap();
    }
    got[1].wait_for(10, Duration::from_secs(10)).await;
    server.stop();

    let start = Instant::now();
    assert!(buses[0].health().await.is_err());
    assert!(start.elapsed() < Duration::from_secs(3));
    // Queued while NATS is down, published once it is back.
    for i in 10..30 {
        buses[0].publish(&[2], &env(i)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _server = Server::start("nats-server", &args);
    let want: BTreeSet<String> = (0..30).map(|i| format!("g{i}")).collect();
    got[1].wait_for_set(&want, Duration::from_secs(30)).await;
    until(Duration::from_secs(10), "bus healthy", || async {
        buses[0].health().await.is_ok()
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Redis Cluster of three masters, each with a replica, on free ports
/// (`redis-cli --cluster create`), with a short node timeout so that a
/// replica takes over from a dead master within seconds.
struct RedisCluster {
    ports: Vec<u16>,
    servers: Vec<Option<Server>>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    async fn start() -> Option<RedisCluster> {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
        let mut servers = Vec::new();
        for p in &ports {
            let args = [
                "--port",
                &p.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "1000",
                // Replicas copy their master at once, and may take over
                // whatever the age of their copy.
                "--repl-diskless-sync-delay",
                "0",
                "--cluster-replica-validity-factor",
                "0",
                "--cluster-config-file",
                &format!("nodes-{p}.conf"),
                "--dir",
                &dir.path().to_string_lossy(),
            ]
            .map(String::from);
            servers.push(Some(Server::start("redis-server", &args)?));
        }
        for p in &ports {
            let url = format!("redis://127.0.0.1:{p}");
            retry_connect(|| async {
                redis::Client::open(url.as_str())?
                    .get_multiplexed_async_connection()
                    .await
            })
            .await;
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for p in &ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = RedisCluster {
            ports,
            servers,
            _dir: dir,
        };
        until(
            Duration::from_secs(20),
            "the Redis Cluster is ok",
            || async { c.info(0).await.contains("cluster_state:ok") },
        )
        .await;
        for i in 0..c.ports.len() {
            until(Duration::from_secs(20), "every replica in sync", || async {
                let info = match c.cmd(i, &["INFO", "replication"]).await {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                    redis::Value::VerbatimString { text, .. } => text,
                    _ => String::new(),
                };
                info.contains("role:master") || info.contains("master_link_status:up")
            })
            .await;
        }
        Some(c)
    }

    fn url(&self) -> String {
        self.ports[..3]
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn cmd(&self, i: usize, args: &[&str]) -> redis::Value {
        let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{}", self.ports[i])) else {
            return redis::Value::Nil;
        };
        let Ok(mut con) = client.get_multiplexed_async_connection().await else {
            return redis::Value::Nil;
        };
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut con).await.unwrap_or(redis::Value::Nil)
    }

    async fn info(&self, i: usize) -> String {
        match self.cmd(i, &["CLUSTER", "INFO"]).await {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::VerbatimString { text, .. } => text,
            _ => String::new(),
        }
    }

    /// The index of the master serving `key`'s slot, asked of server `from`.
    async fn master_of(&self, from: usize, key: &str) -> usize {
        let slot = match self.cmd(from, &["CLUSTER", "KEYSLOT", key]).await {
            redis::Value::Int(s) => s,
            other => panic!("keyslot: {other:?}"),
        };
        let nodes = match self.cmd(from, &["CLUSTER", "NODES"]).await {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::VerbatimString { text, .. } => text,
            other => panic!("nodes: {other:?}"),
        };
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if !f.get(2).is_some_and(|flags| flags.contains("master"))
                || f.get(7) != Some(&"connected")
            {
                continue;
            }
            for range in &f[8..] {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                let (Ok(lo), Ok(hi)) = (lo.parse::<i64>(), hi.parse::<i64>()) else {
                    continue;
                };
                if (lo..=hi).contains(&slot) {
                    let port: u16 = f[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                    return self.ports.iter().position(|p| *p == port).unwrap();
                }
            }
        }
        panic!("no master for slot {slot}: {nodes}");
    }
}

/// Presence on a Redis Cluster: the same checks as on one server (every
/// key of a script in one slot, by the hash tag), and a master killed
/// with its replica taking over: routes written before are still there
/// and calls work again within seconds.
#[tokio::test]
async fn presence_on_a_redis_cluster_survives_a_master_failover() {
    let Some(mut rc) = RedisCluster::start().await else {
        return;
    };
    let url = rc.url();
    let opts = PresenceOptions {
        prefix: "tc".into(),
        heartbeat_ms: 200,
        expiry_ms: 5000,
        ..PresenceOptions::default()
    };
    let mut nodes: Vec<Box<dyn tern_core::Presence>> = Vec::new();
    for _ in 0..3 {
        nodes.push(Box::new(
            retry_connect(|| RedisPresence::connect(&url, opts.clone())).await,
        ));
    }
    let refs: Vec<&dyn tern_core::Presence> = nodes.iter().map(|p| &**p).collect();
    common::conformance::live_nodes_include_all(&refs).await;
    common::conformance::routes_and_online_across_nodes(&refs[..2]).await;
    common::conformance::same_device_replaces(&refs[..2]).await;
    common::conformance::rooms_per_node(&refs).await;
    // The keys live under the hash tag, all in one slot.
    let master = rc.master_of(3, "{tc}:nodes").await;
    let p = &nodes[0];
    let route = Route {
        node: p.node(),
        conn: 99,
        session: 0,
    };
    p.connected("zed", "phone", route).await.unwrap();
    // Let the replica copy it, then kill its master.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rc.servers[master].take().unwrap().stop();
    let start = Instant::now();
    until(
        Duration::from_secs(20),
        "presence answers after the failover",
        || async { matches!(p.online(&["zed"]).await.as_deref(), Ok([true])) },
    )
    .await;
    eprintln!(
        "presence answered again {:?} after the master was killed",
        start.elapsed()
    );
}
