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
