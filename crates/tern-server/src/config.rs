//! Server configuration: defaults, then a TOML file, then `TERN_*`
//! environment variables (nested keys joined by `__`, e.g.
//! `TERN_LIMITS__FRAME_BYTES=131072`), then command-line flags. Validated
//! once at start-up.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP/WebSocket listener binds.
    pub listen: SocketAddr,
    /// Directory of the embedded store and the generated token secret.
    pub data_dir: PathBuf,
    /// Node number (0-1023), part of every message id this node makes.
    pub node_id: u16,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub delivery: DeliveryConfig,
    pub rooms: RoomsConfig,
    pub groups: GroupsConfig,
    pub store: StoreConfig,
    pub cluster: ClusterConfig,
    pub rate: RateConfig,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub log: LogConfig,
}

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
    /// Redis: presence, device routes, live nodes, room membership.
    pub redis_url: String,
    /// NATS with JetStream: pushes between nodes.
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

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Token signing secret. Empty: generated once into `data_dir/secret.key`.
    pub secret: String,
    /// Lifetime of a session token.
    pub token_ttl_secs: u64,
    /// argon2id memory cost in KiB (OWASP: 19456).
    pub argon2_m_cost_kib: u32,
    /// argon2id iterations (OWASP: 2).
    pub argon2_t_cost: u32,
    /// Test suites only: lets the argon2 parameters go below the floor
    /// ([`ARGON2_MIN_M_COST_KIB`], [`ARGON2_MIN_T_COST`]) so that tests
    /// registering thousands of users stay fast. No configuration file or
    /// `TERN_*` variable can set it: in-process tests set the field, and
    /// `tern serve` sets it only when [`WEAK_HASHING_ENV`] is `1`, with a
    /// loud warning.
    #[serde(skip)]
    pub weak_hashing_for_tests: bool,
}

/// The shortest accepted `auth.secret` (HS256 wants at least the hash
/// size).
pub const SECRET_MIN_BYTES: usize = 32;
/// The longest token lifetime (366 days): `auth.token_ttl_secs` and
/// `tern token --ttl`.
pub const TOKEN_TTL_MAX_SECS: u64 = 366 * 24 * 3600;
/// The argon2id floor: OWASP's minimum configuration (19 MiB, 2 passes).
pub const ARGON2_MIN_M_COST_KIB: u32 = 19456;
pub const ARGON2_MIN_T_COST: u32 = 2;
/// Set to `1`, lets `tern serve` run with argon2 parameters below the
/// floor (the binary's own test suites and bench scripts). Not a `TERN_*`
/// variable on purpose: no deployment setting reaches it by accident.
pub const WEAK_HASHING_ENV: &str = "INSECURE_TERN_TEST_WEAK_HASHING";

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("argon2_m_cost_kib", &self.argon2_m_cost_kib)
            .field("argon2_t_cost", &self.argon2_t_cost)
            .field("weak_hashing_for_tests", &self.weak_hashing_for_tests)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest text frame; bigger ones close the connection with 1009.
    pub frame_bytes: usize,
    /// Largest `content` (its JSON encoding) of a message.
    pub content_bytes: usize,
    /// Sustained client frames per second per connection; also each
    /// user's rate of HTTP sends.
    pub frame_rate: u32,
    /// Burst of client frames above the rate.
    pub frame_burst: u32,
    /// Seconds over the frame rate before the connection is closed (4008).
    pub rate_close_secs: u64,
    /// Frames queued to one connection before it counts as a slow reader
    /// and is closed (4008).
    pub outbound_queue: usize,
    /// Pushed messages awaiting an ack on one connection before it counts as
    /// a slow reader.
    pub max_unacked: usize,
    /// Bytes of pushed messages awaiting an ack on one connection before
    /// the server stops writing to it: a window, so a client that stops
    /// reading costs at most this much writing before its queue fills
    /// and it is closed as a slow reader. Acks reopen it. 0 (the
    /// default): no window.
    pub unacked_bytes: usize,
    /// While that window is full, one frame still goes out this often (ms):
    /// a client that acks only when a frame arrives gets one and acks.
    pub unacked_probe_ms: u64,
    /// Seconds without any frame before a connection is closed.
    pub idle_timeout_secs: u64,
    /// Seconds a new connection has to authenticate.
    pub auth_timeout_secs: u64,
    /// Password hashes (logins, registrations) computed at once, each with
    /// its argon2 work memory (`auth.argon2_m_cost_kib`); 0: one per CPU
    /// core.
    pub hash_concurrency: usize,
    /// Logins and registrations waiting for a hash beyond those; more at
    /// once are answered 503 `unavailable` with `Retry-After`.
    pub hash_queue: usize,
    /// Room and large-group frames to one device within this many ms are
    /// merged into one `batch` frame.
    pub storm_window_ms: u64,
    /// Least time between two socket writes of queued frames to one
    /// connection: what is queued meanwhile leaves in one write. A
    /// connection quiet for longer writes at once; 0 writes on every
    /// wake-up.
    pub write_interval_ms: u64,
    /// A connection whose pushes have awaited an ack for this long (ms)
    /// with no ack in between is lagging: its queue is written on a timer
    /// (`lagging_interval_ms`) rather than on every push, so that under a
    /// fan-out the readers that keep up are written first. An ack ends it.
    /// 0: never lagging.
    pub lagging_after_ms: u64,
    /// How often (ms) a lagging connection's queue is written, on average:
    /// each wait is drawn at random, the first up to it, later ones between
    /// half and one and a half of it.
    pub lagging_interval_ms: u64,
    /// Bytes of pushes written since the last pong and awaiting an ack
    /// past which a lagging connection is not written until it answers a
    /// WebSocket ping: a reader that stopped costs this much copying into
    /// its socket, not its whole kernel send buffer, before its queue
    /// fills and it is closed, while one that reads but does not ack
    /// answers the ping and gets the next window's worth (`unacked_bytes`,
    /// if set, still applies: only an ack opens that one). 0: none.
    pub lagging_window_bytes: usize,
    /// A connection that reads nothing for this long (ms) while frames
    /// wait for it is cut with 4008: its socket took no byte of a write,
    /// or, lagging with its window full and more queued, it answered none
    /// of its pings. Its messages stay queued and in history.
    pub stall_timeout_ms: u64,
    /// How long (s) the close frame of a connection cut with 4008 may wait
    /// for room in its socket, and the socket then for the client's close:
    /// a reader that stopped and reads again within it finds everything
    /// written to it, then the 4008.
    pub close_linger_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Most room messages one device gets from one room per second; the
    /// excess is dropped.
    pub deliver_rate: u32,
    /// Most `room_send` frames one device may send to one room per second.
    pub send_rate: u32,
    /// Most rooms one connection may be in at once.
    pub max_joined: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// Groups up to this many members keep a per-member inbox (offline
    /// queue, tracked pushes); larger groups store each message once.
    pub write_limit: usize,
    /// Most members a group may have.
    pub max_size: usize,
    /// Most groups one user may be a member of; creating a group or adding
    /// a user who is in this many is refused (403 `forbidden`).
    pub max_per_user: usize,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            write_limit: 500,
            max_size: 100_000,
            max_per_user: 1000,
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            deliver_rate: 50,
            send_rate: 50,
            max_joined: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// A push not acknowledged within this time is pushed again.
    pub ack_timeout_ms: u64,
    /// How many times a push is repeated.
    pub redeliveries: u32,
    /// Offline queue cap per user (newest kept).
    pub offline_cap: usize,
    /// How long after sending a message its sender may recall it.
    pub recall_window_secs: u64,
    /// Most messages written in one storage transaction.
    pub batch_max: usize,
    /// Storage transactions of sends in flight at once per node
    /// (conversations are spread over them, each keeps one). 0: 1 for the
    /// embedded store (one writer), 4 for a SQL server.
    pub commit_lanes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./tern-data"),
            node_id: 0,
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            delivery: DeliveryConfig::default(),
            rooms: RoomsConfig::default(),
            groups: GroupsConfig::default(),
            store: StoreConfig::default(),
            cluster: ClusterConfig::default(),
            rate: RateConfig::default(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            secret: String::new(),
            token_ttl_secs: 7 * 24 * 3600,
            argon2_m_cost_kib: ARGON2_MIN_M_COST_KIB,
            argon2_t_cost: ARGON2_MIN_T_COST,
            weak_hashing_for_tests: false,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            frame_bytes: 64 * 1024,
            content_bytes: 16384,
            frame_rate: 200,
            frame_burst: 400,
            rate_close_secs: 5,
            outbound_queue: 4096,
            max_unacked: 8192,
            unacked_bytes: 0,
            unacked_probe_ms: 100,
            idle_timeout_secs: 90,
            auth_timeout_secs: 10,
            hash_concurrency: 0,
            hash_queue: 128,
            storm_window_ms: 100,
            write_interval_ms: 5,
            lagging_after_ms: 200,
            lagging_interval_ms: 100,
            lagging_window_bytes: 64 * 1024,
            stall_timeout_ms: 5_000,
            close_linger_secs: 60,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            ack_timeout_ms: 10_000,
            redeliveries: 3,
            offline_cap: 1000,
            recall_window_secs: 120,
            batch_max: 1024,
            commit_lanes: 0,
        }
    }
}

/// Abuse limits (PROTOCOL.md 3: answered 429 `rate_limited` with
/// `Retry-After`). "Address" is the peer's IP address (an IPv6 address
/// counts by its /64). In cluster mode the login, registration, send and
/// friend-request buckets live in Redis, shared by every node; upgrades
/// and connections are counted per node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// Failed logins of one user within `login_user_window_secs`; then its
    /// logins are refused until the window lets one more through.
    pub login_user_failures: u32,
    pub login_user_window_secs: u64,
    /// Failed logins from one address within `login_addr_window_secs`;
    /// then every login from it is refused for a while. Correct logins do
    /// not count.
    pub login_addr_failures: u32,
    pub login_addr_window_secs: u64,
    /// Registrations per second from one address, and their burst.
    pub register_rate: u32,
    pub register_burst: u32,
    /// Friend requests (`PUT /v1/friends/{user}`) per hour of one user,
    /// and their burst.
    pub friend_requests_per_hour: u32,
    pub friend_requests_burst: u32,
    /// Unanswered friend requests one user may have sent; asking one more
    /// user is refused (403 `forbidden`: a count, not a rate), accepting a
    /// request is not.
    pub friend_requests_outstanding: usize,
    /// WebSocket upgrades this node admits per second, and their burst;
    /// the excess is answered 503 `unavailable` with `Retry-After`, so a
    /// reconnect storm is spread out instead of stalling the node.
    pub upgrade_rate: u32,
    pub upgrade_burst: u32,
    /// Open WebSocket connections of one user on one node.
    pub connections_per_user: usize,
    /// Open WebSocket connections on one node.
    pub connections: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            login_user_failures: 10,
            login_user_window_secs: 300,
            login_addr_failures: 100,
            login_addr_window_secs: 60,
            register_rate: 5,
            register_burst: 300,
            friend_requests_per_hour: 100,
            friend_requests_burst: 100,
            friend_requests_outstanding: 1000,
            upgrade_rate: 1000,
            upgrade_burst: 2000,
            connections_per_user: 32,
            connections: 200_000,
        }
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
    /// once upgraded, are not cut by it).
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            body_bytes: 2 * 1024 * 1024,
            send_buffer_bytes: 256 * 1024,
            unsent_bytes: 0,
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then the TOML file (if any), then `TERN_*` variables.
    pub fn load(file: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        use figment::providers::{Env, Format, Serialized, Toml};
        let mut fig = figment::Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            fig = fig.merge(Toml::file_exact(file));
        }
        fig = fig.merge(Env::prefixed("TERN_").split("__"));
        let mut cfg: Config = fig.extract().map_err(Box::new)?;
        // The binary warns about it once its log is set up (which needs
        // this configuration first).
        if std::env::var_os(WEAK_HASHING_ENV).is_some_and(|v| v == "1") {
            cfg.auth.weak_hashing_for_tests = true;
        }
        Ok(cfg)
    }

    /// Checks every bound once, at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        let l = &self.limits;
        let d = &self.delivery;
        if self.node_id > 1023 {
            return bad("node_id must be at most 1023");
        }
        if l.frame_bytes < 1024 {
            return bad("limits.frame_bytes must be at least 1024");
        }
        if l.content_bytes == 0 || l.content_bytes > l.frame_bytes {
            return bad("limits.content_bytes must be between 1 and limits.frame_bytes");
        }
        if l.frame_rate == 0 || l.frame_burst < l.frame_rate {
            return bad("limits.frame_rate must be > 0 and limits.frame_burst >= frame_rate");
        }
        if l.outbound_queue < 16 || l.max_unacked < 16 {
            return bad("limits.outbound_queue and limits.max_unacked must be at least 16");
        }
        if l.unacked_bytes != 0 && l.unacked_bytes < l.frame_bytes {
            return bad("limits.unacked_bytes must be 0 or at least limits.frame_bytes");
        }
        if l.lagging_window_bytes != 0 && l.lagging_window_bytes < l.frame_bytes {
            return bad("limits.lagging_window_bytes must be 0 or at least limits.frame_bytes");
        }
        if l.unacked_probe_ms == 0 {
            return bad("limits.unacked_probe_ms must be > 0");
        }
        if l.idle_timeout_secs == 0 || l.auth_timeout_secs == 0 {
            return bad("limits.idle_timeout_secs and auth_timeout_secs must be > 0");
        }
        if d.ack_timeout_ms < 10 {
            return bad("delivery.ack_timeout_ms must be at least 10");
        }
        if d.commit_lanes > 64 {
            return bad("delivery.commit_lanes must be at most 64");
        }
        if d.offline_cap == 0 || d.batch_max == 0 {
            return bad("delivery.offline_cap and delivery.batch_max must be > 0");
        }
        if self.rooms.deliver_rate == 0 || self.rooms.send_rate == 0 || self.rooms.max_joined == 0 {
            return bad("rooms.deliver_rate, rooms.send_rate and rooms.max_joined must be > 0");
        }
        if self.groups.max_size < 2 || self.groups.write_limit > self.groups.max_size {
            return bad("groups.max_size must be >= 2 and groups.write_limit <= groups.max_size");
        }
        if self.groups.max_per_user == 0 {
            return bad("groups.max_per_user must be > 0");
        }
        if l.storm_window_ms > 10_000 {
            return bad("limits.storm_window_ms must be at most 10000");
        }
        if l.write_interval_ms > 1000 {
            return bad("limits.write_interval_ms must be at most 1000");
        }
        if l.lagging_after_ms > 3_600_000 {
            return bad("limits.lagging_after_ms must be at most 3600000");
        }
        if l.lagging_interval_ms == 0 || l.lagging_interval_ms > 10_000 {
            return bad("limits.lagging_interval_ms must be 1 to 10000");
        }
        if l.stall_timeout_ms < 100 || l.stall_timeout_ms > 3_600_000 {
            return bad("limits.stall_timeout_ms must be 100 to 3600000");
        }
        if l.close_linger_secs == 0 || l.close_linger_secs > 3600 {
            return bad("limits.close_linger_secs must be 1 to 3600");
        }
        let r = &self.rate;
        if [
            r.login_user_failures,
            r.login_addr_failures,
            r.register_rate,
            r.register_burst,
            r.friend_requests_per_hour,
            r.friend_requests_burst,
            r.upgrade_rate,
            r.upgrade_burst,
        ]
        .contains(&0)
            || r.login_user_window_secs == 0
            || r.login_addr_window_secs == 0
            || r.connections_per_user == 0
            || r.connections == 0
            || r.friend_requests_outstanding == 0
        {
            return bad("every rate.* setting must be > 0");
        }
        if r.upgrade_rate > 1_000_000 || r.register_rate > 1_000_000 {
            return bad("rate.upgrade_rate and rate.register_rate must be at most 1000000");
        }
        let h = &self.http;
        if h.header_timeout_secs == 0 || h.request_timeout_secs == 0 {
            return bad("http.header_timeout_secs and http.request_timeout_secs must be > 0");
        }
        if h.body_bytes < l.frame_bytes {
            return bad("http.body_bytes must be at least limits.frame_bytes");
        }
        if h.send_buffer_bytes != 0 && h.send_buffer_bytes < l.frame_bytes {
            return bad("http.send_buffer_bytes must be 0 or at least limits.frame_bytes");
        }
        if h.unsent_bytes > u32::MAX as usize {
            return bad("http.unsent_bytes must be at most 4294967295");
        }
        let t = &self.tls;
        if t.enabled() && (t.cert.as_os_str().is_empty() || t.key.as_os_str().is_empty()) {
            return bad("tls needs both tls.cert and tls.key (or neither)");
        }
        let url = &self.store.url;
        if !(url.is_empty()
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("mysql://")
            || url.starts_with("mariadb://"))
        {
            return bad("store.url must be empty (embedded) or a postgres:// or mysql:// URL");
        }
        if self.store.max_connections == 0 {
            return bad("store.max_connections must be > 0");
        }
        let c = &self.cluster;
        if c.enabled() {
            if c.redis_url.is_empty() || c.nats_url.is_empty() {
                return bad("cluster mode needs both cluster.redis_url and cluster.nats_url");
            }
            if url.is_empty() {
                return bad(
                    "cluster mode needs a shared store: set store.url (or TERN_STORE__URL)",
                );
            }
            if c.name.is_empty() || !tern_proto::ids::is_valid_name(&c.name) || c.name.contains('.')
            {
                return bad("cluster.name must be 1-64 characters of A-Z a-z 0-9 _ -");
            }
            if c.heartbeat_ms < 100 || c.expiry_ms < 3 * c.heartbeat_ms || c.expiry_ms > 30_000 {
                return bad("cluster.heartbeat_ms must be >= 100 and cluster.expiry_ms between 3 heartbeats and 30000");
            }
            if c.drop_inbound_percent > 100 {
                return bad("cluster.drop_inbound_percent must be at most 100");
            }
            if c.fanout_queue < 16 || c.ack_wait_ms < 100 {
                return bad("cluster.fanout_queue must be >= 16 and cluster.ack_wait_ms >= 100");
            }
            if c.forward_timeout_ms > 60_000 {
                return bad("cluster.forward_timeout_ms must be at most 60000 (0: no forwarding)");
            }
        }
        let a = &self.auth;
        if !a.secret.is_empty() && a.secret.len() < SECRET_MIN_BYTES {
            return bad("auth.secret must be at least 32 bytes (or empty: generated)");
        }
        if a.token_ttl_secs == 0 || a.token_ttl_secs > TOKEN_TTL_MAX_SECS {
            return bad("auth.token_ttl_secs must be 1 to 31622400 (366 days)");
        }
        if a.weak_hashing_for_tests {
            if a.argon2_m_cost_kib < 8 || a.argon2_t_cost == 0 {
                return bad("auth.argon2_m_cost_kib must be >= 8 and argon2_t_cost >= 1");
            }
        } else if a.argon2_m_cost_kib < ARGON2_MIN_M_COST_KIB || a.argon2_t_cost < ARGON2_MIN_T_COST
        {
            return bad(
                "auth.argon2_m_cost_kib must be >= 19456 and auth.argon2_t_cost >= 2 (OWASP minimum)",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tern.example.toml");

    fn example() -> String {
        std::fs::read_to_string(EXAMPLE_PATH).expect("read tern.example.toml")
    }

    #[test]
    fn example_file_is_the_defaults_and_validates() {
        let cfg: Config = toml::from_str(&example()).expect("tern.example.toml parses as Config");
        assert_eq!(
            cfg,
            Config::default(),
            "tern.example.toml must hold exactly the defaults"
        );
        cfg.validate().expect("the defaults validate");
    }

    /// `serde(default)` would hide a setting missing from the example, so
    /// compare the key sets too: every setting is spelled out, nothing extra.
    #[test]
    fn example_file_lists_every_setting() {
        let file: toml::Table = toml::from_str(&example()).expect("tern.example.toml is TOML");
        let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
        fn keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
            for (k, v) in t {
                match v {
                    toml::Value::Table(sub) => keys(sub, &format!("{prefix}{k}."), out),
                    _ => out.push(format!("{prefix}{k}")),
                }
            }
        }
        let (mut want, mut got) = (Vec::new(), Vec::new());
        keys(&defaults, "", &mut want);
        keys(&file, "", &mut got);
        want.sort();
        got.sort();
        assert_eq!(got, want, "settings in tern.example.toml vs Config");
        assert_eq!(
            file, defaults,
            "values in tern.example.toml vs Config::default()"
        );
    }

    /// Each setting in the example has its own comment line right above it.
    #[test]
    fn example_file_comments_every_setting() {
        let text = example();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, l) in lines.iter().enumerate() {
            if l.is_empty() || l.starts_with('#') || l.starts_with('[') {
                continue;
            }
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "tern.example.toml line {}: `{l}` has no comment line above it",
                i + 1
            );
        }
    }

    #[test]
    fn defaults_validate_and_bad_values_do_not() {
        Config::default().validate().expect("defaults validate");
        let invalid = |tweak: fn(&mut Config), needle: &str| {
            let mut c = Config::default();
            tweak(&mut c);
            match c.validate() {
                Err(ConfigError::Invalid(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("expected an error naming {needle}, got {other:?}"),
            }
        };
        invalid(|c| c.limits.frame_bytes = 10, "frame_bytes");
        invalid(
            |c| c.limits.content_bytes = c.limits.frame_bytes + 1,
            "content_bytes",
        );
        invalid(|c| c.limits.write_interval_ms = 1001, "write_interval_ms");
        invalid(
            |c| c.limits.lagging_after_ms = 3_600_001,
            "limits.lagging_after_ms",
        );
        invalid(
            |c| c.limits.lagging_interval_ms = 0,
            "limits.lagging_interval_ms",
        );
        invalid(|c| c.node_id = 1024, "node_id");
        invalid(|c| c.rate.login_user_failures = 0, "rate.");
        invalid(|c| c.rate.connections = 0, "rate.");
        invalid(
            |c| c.http.header_timeout_secs = 0,
            "http.header_timeout_secs",
        );
        invalid(|c| c.http.body_bytes = 100, "http.body_bytes");
        invalid(
            |c| c.http.send_buffer_bytes = 4096,
            "http.send_buffer_bytes",
        );
        invalid(|c| c.http.unsent_bytes = 1 << 32, "http.unsent_bytes");
        invalid(|c| c.limits.unacked_bytes = 1000, "limits.unacked_bytes");
        invalid(
            |c| c.limits.stall_timeout_ms = 99,
            "limits.stall_timeout_ms",
        );
        invalid(
            |c| c.limits.close_linger_secs = 0,
            "limits.close_linger_secs",
        );
        invalid(
            |c| c.limits.lagging_window_bytes = 1000,
            "limits.lagging_window_bytes",
        );
        invalid(|c| c.limits.unacked_probe_ms = 0, "limits.unacked_probe_ms");
        invalid(|c| c.tls.cert = "cert.pem".into(), "tls.key");
        invalid(|c| c.auth.secret = "x".repeat(31), "auth.secret");
        invalid(|c| c.auth.token_ttl_secs = 0, "token_ttl_secs");
        invalid(|c| c.auth.argon2_m_cost_kib = 19455, "argon2_m_cost_kib");
        invalid(|c| c.auth.argon2_t_cost = 1, "argon2_t_cost");
        // A 32-byte secret is fine.
        let mut c = Config::default();
        c.auth.secret = "x".repeat(32);
        c.validate().expect("a 32-byte secret validates");
        // Below the floor only with the test-only switch, which no file
        // can set.
        let mut c = Config::default();
        c.auth.argon2_m_cost_kib = 8;
        c.auth.argon2_t_cost = 1;
        assert!(c.validate().is_err());
        c.auth.weak_hashing_for_tests = true;
        c.validate()
            .expect("the test-only switch allows cheap hashing");
        let from_file: Config =
            toml::from_str("[auth]\nargon2_m_cost_kib = 8\nargon2_t_cost = 1\n").unwrap();
        assert!(!from_file.auth.weak_hashing_for_tests);
        assert!(from_file.validate().is_err());
        assert!(toml::from_str::<Config>("[auth]\nweak_hashing_for_tests = true").is_err());
    }

    #[test]
    fn log_format_from_file_and_name() {
        let c: Config = toml::from_str("[log]\nformat = \"json\"").unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(toml::from_str::<Config>("[log]\nformat = \"xml\"").is_err());
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert!("JSON".parse::<LogFormat>().is_err());
    }

    /// The cluster configurations in `deploy/` take the store URL from the
    /// environment and validate once it is there.
    #[test]
    fn deploy_configs_validate_with_a_store_url() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for (file, url) in [
            (
                "deploy/cluster.toml",
                "postgres://tern:pw@127.0.0.1:5432/tern",
            ),
            (
                "deploy/cluster-mysql.toml",
                "mysql://tern:pw@127.0.0.1:3306/tern",
            ),
        ] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let mut c: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(c.cluster.enabled(), "{file} is a cluster node");
            assert_eq!(
                c.store.url, "",
                "{file}: the URL comes from TERN_STORE__URL"
            );
            let err = c.validate().expect_err("no store URL").to_string();
            assert!(err.contains("TERN_STORE__URL"), "{file}: {err}");
            c.store.url = url.to_owned();
            c.validate().unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }

    /// What `deploy/compose.yaml` mounts and builds from is in the
    /// repository, and it sets every variable the node needs.
    #[test]
    fn compose_file_refers_to_files_that_exist() {
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let text = std::fs::read_to_string(deploy.join("compose.yaml")).unwrap();
        let mut mounts = 0;
        for line in text.lines().map(str::trim) {
            if let Some(m) = line.strip_prefix("- ./") {
                let file = m.split(':').next().unwrap();
                assert!(deploy.join(file).is_file(), "compose.yaml mounts {file}");
                mounts += 1;
            }
            if let Some(f) = line.strip_prefix("dockerfile: ") {
                assert!(
                    deploy.join("..").join(f).is_file(),
                    "compose.yaml builds {f}"
                );
            }
        }
        assert!(mounts >= 2, "cluster.toml and nginx.conf are mounted");
        assert!(
            deploy.join("../.dockerignore").is_file(),
            "the build context skips target/"
        );
        for var in [
            "TERN_STORE__URL",
            "TERN_CLUSTER__REDIS_URL",
            "TERN_CLUSTER__NATS_URL",
        ] {
            assert!(text.contains(var), "compose.yaml sets {var}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Config>("lisen = \"127.0.0.1:1\"").is_err());
        assert!(toml::from_str::<Config>("[limits]\nframe_byte = 4096").is_err());
    }
}
