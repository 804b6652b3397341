//! The sections for what the server talks to: its listener and TLS, the
//! store, the cluster services, and its log.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How `tern` writes its log (to standard error).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people (coloured only on a terminal) or `json`, one
    /// object per line, for log shippers. `--log-format` overrides it.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format {s:?}: use text or json")),
        }
    }
}

/// Where messages, users and groups live.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Empty: the embedded SQLite store under `data_dir`. `postgres://...`
    /// or `mysql://...`: a shared SQL database (cluster mode).
    pub url: String,
    /// Connections each node keeps to a SQL database.
    pub max_connections: u32,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Cluster plumbing. Both URLs empty: one node, presence and fan-out in
/// memory. Both set: this node joins the cluster that shares these
/// services (and the SQL store).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Redis: presence, device routes, live nodes, room membership. One
    /// server, or a Redis Cluster's seed nodes, comma separated.
    pub redis_url: String,
    /// NATS with JetStream: pushes between nodes. One server, or a NATS
    /// cluster's servers, comma separated.
    pub nats_url: String,
    /// Names this cluster's Redis keys, JetStream stream and subjects, so
    /// that several clusters can share the services.
    pub name: String,
    /// How often a node renews its liveness in Redis.
    pub heartbeat_ms: u64,
    /// A node that stops renewing counts as dead after this long: its
    /// routes and presence no longer count.
    pub expiry_ms: u64,
    /// Pushes waiting for routing on one node; more are dropped (and
    /// caught up from the offline queue).
    pub fanout_queue: usize,
    /// A push another node did not confirm within this time is delivered
    /// to it again.
    pub ack_wait_ms: u64,
    /// Copies of the JetStream stream that carries pushes between nodes
    /// (1-5): 3 on a three-server NATS cluster, so that losing a server
    /// loses no push in flight.
    pub stream_replicas: usize,
    /// Fault injection for tests: this share (0-100) of the pushes arriving
    /// from other nodes is dropped unconfirmed, as a broken link would.
    pub drop_inbound_percent: u8,
    /// A group send received by a node that does not own the conversation
    /// goes to the owning node (one per conversation among the live
    /// nodes), which appends it; without its answer within this time the
    /// receiving node appends it itself. 0: every node appends what it
    /// receives.
    pub forward_timeout_ms: u64,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("nats_url", &redact_url(&self.nats_url))
            .field("name", &self.name)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("expiry_ms", &self.expiry_ms)
            .field("fanout_queue", &self.fanout_queue)
            .field("ack_wait_ms", &self.ack_wait_ms)
            .field("stream_replicas", &self.stream_replicas)
            .field("drop_inbound_percent", &self.drop_inbound_percent)
            .field("forward_timeout_ms", &self.forward_timeout_ms)
            .finish()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            max_connections: 16,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            nats_url: String::new(),
            name: "tern".into(),
            heartbeat_ms: 3000,
            expiry_ms: 15_000,
            fanout_queue: 65_536,
            ack_wait_ms: 2000,
            stream_replicas: 1,
            drop_inbound_percent: 0,
            forward_timeout_ms: 2000,
        }
    }
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty() || !self.nats_url.is_empty()
    }
}

/// A URL with its password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    if url.contains(',') {
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Seconds a connection has to send a complete request head, counted
    /// from its opening or from the previous answer: it is also how long
    /// an idle keep-alive connection is kept.
    pub header_timeout_secs: u64,
    /// Seconds to read a request's body and answer it (WebSocket sessions,
    /// once upgraded, are not cut by it; each request over a WebSocket
    /// not answered within it gets `unavailable`).
    pub request_timeout_secs: u64,
    /// Largest request body; bigger ones are answered 413.
    pub body_bytes: usize,
    /// Kernel send buffer of each accepted socket (SO_SNDBUF), in bytes;
    /// 0 leaves the kernel's autotuning (up to 4 MiB per socket on Linux).
    /// A reader that stops reading is cut off once this buffer and its
    /// outbound queue are full: with autotuning, 1,000 such readers make
    /// the server copy gigabytes into the kernel first, and everyone's
    /// latency pays for it (docs/RELIABILITY.md, slow consumers).
    pub send_buffer_bytes: usize,
    /// Most bytes a socket may hold unsent in the kernel (TCP_NOTSENT_LOWAT,
    /// Linux); 0 leaves it unbounded. Unlike the send buffer it does not
    /// limit data in flight, so a reading client keeps its throughput,
    /// while a client that stops reading pins at most about this much
    /// before writes to it wait and its outbound queue fills.
    pub unsent_bytes: usize,
    /// Seconds a graceful shutdown (SIGTERM) waits, at most, for
    /// connections to finish the frame in hand and to close; an idle node
    /// stops at once.
    pub shutdown_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            body_bytes: 2 * 1024 * 1024,
            send_buffer_bytes: 256 * 1024,
            unsent_bytes: 0,
            shutdown_timeout_secs: 10,
        }
    }
}

/// TLS on the listener (HTTPS and wss://). Both empty: plain TCP.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty() || !self.key.as_os_str().is_empty()
    }
}
