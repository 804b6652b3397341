//! The cluster tests' harness: a cluster of `tern serve` nodes on a fresh
//! schema (or database) of the machine's PostgreSQL (or MariaDB) with the
//! machine's Redis and NATS or the test's own (`OwnRedis`, `OwnNats`), a
//! TCP `Proxy` that cuts or stalls the path to a backend, and helpers on a
//! node. Shared by `cluster.rs` and `partitions.rs`.

#![allow(dead_code)]

pub mod postgres;
pub mod traffic;

use crate::common::Client;
use crate::support::{serve_cmd, Tern};
use serde_json::{json, Value};
use std::time::Duration;

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sql {
    Postgres,
    MySql,
}

pub fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// `host:port` of a URL like `scheme://user@host:port/db`.
pub fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

pub fn random_hex() -> String {
    let n: u64 = rand_u64();
    format!("{n:016x}")
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// Whether every service the cluster needs answers; `None` skips the test
/// (outside CI).
pub async fn services(sql: Sql) -> Option<()> {
    let store = match sql {
        Sql::Postgres => env_or("TERN_TEST_POSTGRES_URL", PG_URL),
        Sql::MySql => env_or("TERN_TEST_MYSQL_URL", MYSQL_URL),
    };
    for (what, url) in [
        ("the SQL store", store),
        ("Redis", env_or("TERN_TEST_REDIS_URL", REDIS_URL)),
        ("NATS", env_or("TERN_TEST_NATS_URL", NATS_URL)),
    ] {
        let addr = host_port(&url);
        let up = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !up {
            if std::env::var_os("CI").is_some() {
                panic!("{what} is not reachable at {addr} (CI must run the cluster tests)");
            }
            eprintln!("skipping: {what} not reachable at {addr}");
            return None;
        }
    }
    Some(())
}

/// A fresh schema (PostgreSQL) or database (MySQL), dropped at the end.
pub struct Db {
    pub sql: Sql,
    pub name: String,
    pub admin_url: String,
    pub url: String,
}

impl Db {
    pub async fn create(sql: Sql) -> Db {
        let name = format!("tern_c_{}", random_hex());
        match sql {
            Sql::Postgres => {
                use sqlx::Connection;
                let admin_url = env_or("TERN_TEST_POSTGRES_URL", PG_URL);
                let mut c = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
                    .execute(&mut c)
                    .await
                    .unwrap();
                let sep = if admin_url.contains('?') { '&' } else { '?' };
                let url = format!("{admin_url}{sep}options=-c%20search_path%3D{name}");
                Db {
                    sql,
                    name,
                    admin_url,
                    url,
                }
            }
            Sql::MySql => {
                use sqlx::Connection;
                let admin_url = env_or("TERN_TEST_MYSQL_URL", MYSQL_URL);
                let mut c = sqlx::MySqlConnection::connect(&admin_url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut c)
                    .await
                    .unwrap();
                let base = admin_url.rsplit_once('/').unwrap().0;
                let url = format!("{base}/{name}");
                Db {
                    sql,
                    name,
                    admin_url,
                    url,
                }
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let (sql, name, url) = (self.sql, self.name.clone(), self.admin_url.clone());
        // Drop runs outside async: a thread with its own small runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                match sql {
                    Sql::Postgres => {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                            let q = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                            let _ = sqlx::query(sqlx::AssertSqlSafe(q)).execute(&mut c).await;
                        }
                    }
                    Sql::MySql => {
                        if let Ok(mut c) = sqlx::MySqlConnection::connect(&url).await {
                            let q = format!("DROP DATABASE IF EXISTS {name}");
                            let _ = sqlx::query(sqlx::AssertSqlSafe(q)).execute(&mut c).await;
                        }
                    }
                }
            });
        })
        .join();
    }
}

/// A cluster under test: its name, store and nodes.
pub struct Cluster {
    pub name: String,
    pub db: Db,
    pub data: tempfile::TempDir,
    /// Extra `TERN_*` settings every node gets.
    pub env: Vec<(String, String)>,
    pub nodes: Vec<Tern>,
}

/// Stops the nodes, then removes the cluster's Redis keys and JetStream
/// stream, so runs leave nothing behind on the shared services.
impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                // The killed nodes' last heartbeats must not land after this.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(client) = redis::Client::open(env_or("TERN_TEST_REDIS_URL", REDIS_URL)) {
                    if let Ok(mut con) = client.get_multiplexed_async_connection().await {
                        let keys: Vec<String> = redis::cmd("KEYS")
                            .arg(format!("{name}:*"))
                            .query_async(&mut con)
                            .await
                            .unwrap_or_default();
                        if !keys.is_empty() {
                            let _: Result<(), _> =
                                redis::cmd("DEL").arg(keys).query_async(&mut con).await;
                        }
                    }
                }
                if let Ok(nc) = async_nats::connect(env_or("TERN_TEST_NATS_URL", NATS_URL)).await {
                    let js = async_nats::jetstream::new(nc);
                    let _ = js.delete_stream(name.to_uppercase()).await;
                }
            });
        })
        .join();
    }
}

impl Cluster {
    /// `n` nodes, or `None` when a service is missing (outside CI).
    pub async fn start(sql: Sql, n: usize, env: &[(&str, &str)]) -> Option<Cluster> {
        services(sql).await?;
        let mut c = Cluster {
            name: format!("t{}", random_hex()),
            db: Db::create(sql).await,
            data: tempfile::tempdir().unwrap(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            nodes: Vec::new(),
        };
        for _ in 0..n {
            let node = c.spawn(&[]).await;
            c.nodes.push(node);
        }
        Some(c)
    }

    /// Starts one more node process (not added to `nodes`).
    pub async fn spawn(&self, extra: &[(&str, &str)]) -> Tern {
        let i = rand_u64();
        let mut cmd = serve_cmd(&self.data.path().join(format!("node-{i:x}")));
        // Few connections per node: several clusters of several nodes run
        // at once against one PostgreSQL (100 connections by default).
        cmd.env("TERN_STORE__URL", &self.db.url)
            .env("TERN_STORE__MAX_CONNECTIONS", "4")
            .env(
                "TERN_CLUSTER__REDIS_URL",
                env_or("TERN_TEST_REDIS_URL", REDIS_URL),
            )
            .env(
                "TERN_CLUSTER__NATS_URL",
                env_or("TERN_TEST_NATS_URL", NATS_URL),
            )
            .env("TERN_CLUSTER__NAME", &self.name)
            .env("TERN_CLUSTER__HEARTBEAT_MS", "300")
            .env("TERN_CLUSTER__EXPIRY_MS", "1500")
            .env("TERN_CLUSTER__ACK_WAIT_MS", "500")
            .env("TERN_DELIVERY__ACK_TIMEOUT_MS", "60000");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Tern::spawn(cmd).await
    }

    pub fn node(&self, i: usize) -> &Tern {
        &self.nodes[i % self.nodes.len()]
    }
}

// ----- helpers on a node -----

/// An authenticated WebSocket on `node`; returns it with the offline batch.
pub async fn connect_offline(node: &Tern, token: &str, device: &str) -> (Client, Vec<Value>) {
    let mut c = Client::open(&format!("ws://{}/v1/ws", node.addr)).await;
    let ok = c
        .request(json!({"type": "auth", "token": token, "device": device}))
        .await;
    assert_eq!(ok["type"], "ok", "auth: {ok}");
    let mut msgs = Vec::new();
    loop {
        let f = c.next().await;
        match f["type"].as_str() {
            Some("msg") => msgs.push(f["msg"].clone()),
            Some("offline_done") => return (c, msgs),
            _ => panic!("unexpected frame before offline_done: {f}"),
        }
    }
}

pub async fn connect(node: &Tern, token: &str, device: &str) -> Client {
    connect_offline(node, token, device).await.0
}

pub async fn new_group(node: &Tern, token: &str, members: &[&str]) -> String {
    let (st, b) = node
        .call(
            reqwest::Method::POST,
            "/v1/groups",
            Some(token),
            Some(json!({"name": "team", "members": members})),
        )
        .await;
    assert_eq!(st, 201, "create group: {b}");
    b["group"].as_str().unwrap().to_owned()
}

pub async fn history(node: &Tern, token: &str, conv: &str) -> Value {
    let (st, b) = node
        .get(
            &format!("/v1/conversations/{conv}/messages?limit=500"),
            token,
        )
        .await;
    assert_eq!(st, 200, "history: {b}");
    b["msgs"].clone()
}

/// Waits (polling) until `f` holds, or panics after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !f().await {
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next `msg` push sent by `from`, skipping others.
pub async fn msg_from(c: &mut Client, from: &str) -> Value {
    loop {
        let m = c.next_msg().await;
        if m["from"] == from {
            return m;
        }
    }
}

pub async fn healthz(node: &Tern) -> (u16, Value) {
    node.call(reqwest::Method::GET, "/healthz", None, None)
        .await
}

/// The number of fields of a hash in the machine's Redis.
pub async fn redis_hlen(key: &str) -> usize {
    let client = redis::Client::open(env_or("TERN_TEST_REDIS_URL", REDIS_URL)).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("HLEN")
        .arg(key)
        .query_async(&mut con)
        .await
        .unwrap()
}

pub async fn is_online(node: &Tern, token: &str, user: &str) -> bool {
    let (st, b) = node.get(&format!("/v1/users/{user}"), token).await;
    assert_eq!(st, 200, "{b}");
    b["online"].as_bool().unwrap()
}

/// A counter from a node's `/metrics` (0 before it first counts).
pub async fn metric(node: &Tern, line_start: &str) -> u64 {
    let text = node
        .http
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Every message of `conv`, oldest first (history paged forward).
pub async fn full_history(node: &Tern, token: &str, conv: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all.last().map_or(0, |m| m["seq"].as_u64().unwrap());
        let (st, b) = node
            .get(
                &format!("/v1/conversations/{conv}/messages?after_seq={after}&limit=500"),
                token,
            )
            .await;
        assert_eq!(st, 200, "history: {b}");
        let page = b["msgs"].as_array().unwrap().clone();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// NATS servers of the test's own with JetStream, on free ports (clustered
/// when more than one). `None` when `nats-server` is not installed (outside CI).
pub struct OwnNats {
    pub urls: Vec<String>,
    pub children: Vec<Option<std::process::Child>>,
    pub _dir: tempfile::TempDir,
}

impl OwnNats {
    pub async fn start(n: usize) -> Option<OwnNats> {
        let free = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free(), free())).collect();
        let dir = tempfile::tempdir().unwrap();
        let name = format!("c{}", random_hex());
        let mut children = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let routes: Vec<String> = ports
                .iter()
                .filter(|(_, r)| r != route)
                .map(|(_, r)| format!("nats://127.0.0.1:{r}"))
                .collect();
            let mut cmd = std::process::Command::new("nats-server");
            cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js"])
                .args(["-sd", &dir.path().join(format!("n{i}")).to_string_lossy()])
                .args(["--server_name", &format!("n{i}")]);
            if n > 1 {
                cmd.args(["--cluster_name", &name])
                    .args(["--cluster", &format!("nats://127.0.0.1:{route}")])
                    .args(["--routes", &routes.join(",")]);
            }
            let child = cmd
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            match child {
                Ok(c) => children.push(Some(c)),
                Err(e) => {
                    assert!(std::env::var_os("CI").is_none(), "nats-server: {e}");
                    eprintln!("skipping: nats-server cannot start: {e}");
                    return None;
                }
            }
        }
        let urls: Vec<String> = ports
            .iter()
            .map(|(p, _)| format!("nats://127.0.0.1:{p}"))
            .collect();
        let nats = OwnNats {
            urls,
            children,
            _dir: dir,
        };
        // JetStream answers once the servers have elected a leader.
        let first = nats.urls[0].clone();
        eventually(
            Duration::from_secs(30),
            "the NATS cluster's JetStream",
            || {
                let url = first.clone();
                async move {
                    let Ok(nc) = async_nats::connect(url).await else {
                        return false;
                    };
                    // A stream in as many copies as servers (at most
                    // three) can be made.
                    let js = async_nats::jetstream::new(nc);
                    let made = js
                        .create_stream(async_nats::jetstream::stream::Config {
                            name: "READY".into(),
                            subjects: vec!["ready.probe".into()],
                            num_replicas: n.min(3),
                            storage: async_nats::jetstream::stream::StorageType::Memory,
                            ..Default::default()
                        })
                        .await;
                    made.is_ok() && js.delete_stream("READY").await.is_ok()
                }
            },
        )
        .await;
        Some(nats)
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// A Redis server of the test's own, on a free port, without persistence:
/// it may be flushed, stopped and started again. `None` when
/// `redis-server` is not installed (outside CI).
pub struct OwnRedis {
    pub url: String,
    pub port: u16,
    pub child: std::process::Child,
}

impl OwnRedis {
    pub async fn start() -> Option<OwnRedis> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "redis-server: {e}");
                eprintln!("skipping: redis-server cannot start: {e}");
                return None;
            }
        };
        let r = OwnRedis {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            child,
        };
        eventually(Duration::from_secs(10), "redis-server answers", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", r.port))
                .await
                .is_ok()
        })
        .await;
        Some(r)
    }

    pub async fn command(&self, cmd: &str) {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let () = redis::cmd(cmd).query_async(&mut con).await.unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards 127.0.0.1:port to a backend until cut: then every open
/// connection is closed and new ones are refused until restored. Stalled
/// instead, it forwards nothing and answers nothing (a network that drops
/// packets): connections stay open, new ones are accepted and left
/// hanging; restored, those are closed.
pub struct Proxy {
    pub addr: String,
    pub up: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    pub stalled: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Proxy {
    pub async fn start(backend: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, _) = tokio::sync::watch::channel(true);
        let up = std::sync::Arc::new(tx);
        let (tx, _) = tokio::sync::watch::channel(false);
        let stalled = std::sync::Arc::new(tx);
        let backend = backend.to_owned();
        let (up2, stalled2) = (up.clone(), stalled.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*up2.borrow() {
                    continue; // dropped: refused
                }
                let mut down = up2.subscribe();
                let mut stall = stalled2.subscribe();
                if *stall.borrow() {
                    // Accepted, never answered, closed once restored.
                    tokio::spawn(async move {
                        let _ = stall.wait_for(|s| !*s).await;
                        drop(inbound);
                    });
                    continue;
                }
                let backend = backend.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&backend).await else {
                        return;
                    };
                    let stalled = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                        _ = down.wait_for(|up| !*up) => false,
                        _ = stall.wait_for(|s| *s) => true,
                    };
                    if stalled {
                        let _ = stall.wait_for(|s| !*s).await;
                    }
                });
            }
        });
        Proxy { addr, up, stalled }
    }

    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.stalled.send_replace(false);
        self.up.send_replace(true);
    }
}
