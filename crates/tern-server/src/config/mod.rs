//! Server configuration: defaults, then a TOML file, then `TERN_*`
//! environment variables (nested keys joined by `__`, e.g.
//! `TERN_LIMITS__FRAME_BYTES=131072`), then command-line flags. Validated
//! once at start-up.
//!
//! This file holds [`Config`], its loading and its validation; the sections
//! are grouped in `io.rs` (listener, TLS, store, cluster, log), `auth.rs`
//! (tokens and password hashing) and `limits.rs` (every bound and rate).

mod auth;
mod io;
mod limits;
// 5.5
mod media;
// 5.5 offline push
mod push;
// 5.6 scheduled messages and account data
mod sched;
// 5.6 integrations
mod integrations;

pub use auth::*;
pub use integrations::*;
pub use io::*;
pub use limits::*;
pub use media::MediaConfig;
pub use push::PushConfig;
pub use sched::*;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP/WebSocket listener binds.
    pub listen: SocketAddr,
    /// Directory of the embedded store (and of the token secret of older
    /// versions, `secret.key`, carried into the store once).
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
    /// 5.5 media.
    pub media: MediaConfig,
    /// 5.5 offline push.
    pub push: PushConfig,
    // 5.6
    pub scheduled: ScheduledConfig,
    pub account: AccountConfig,
    pub retention: RetentionConfig,
    /// 5.6: `[[webhooks]]` (none by default).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
    /// 5.6: `[hooks]`.
    pub hooks: HooksConfig,
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
            media: MediaConfig::default(),
            push: PushConfig::default(),
            scheduled: ScheduledConfig::default(),
            account: AccountConfig::default(),
            retention: RetentionConfig::default(),
            webhooks: Vec::new(),
            hooks: HooksConfig::default(),
        }
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
        // 5.6
        self.scheduled
            .check()
            .map_err(|m| ConfigError::Invalid(m.to_owned()))?;
        self.account
            .check()
            .map_err(|m| ConfigError::Invalid(m.to_owned()))?;
        self.retention
            .check()
            .map_err(|m| ConfigError::Invalid(m.to_owned()))?;
        let l = &self.limits;
        let d = &self.delivery;
        self.media.check().map_err(ConfigError::Invalid)?;
        self.push.check().map_err(ConfigError::Invalid)?;
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
        if l.blocks_max == 0 || l.blocks_max > 100_000 {
            return bad("limits.blocks_max must be 1 to 100000");
        }
        if l.edit_window_secs > 31_536_000 {
            return bad("limits.edit_window_secs must be 0 to 31536000");
        }
        if l.reaction_emoji_max == 0 || l.reaction_emoji_max > 1000 {
            return bad("limits.reaction_emoji_max must be 1 to 1000");
        }
        if l.reaction_users_listed == 0 || l.reaction_users_listed > 1000 {
            return bad("limits.reaction_users_listed must be 1 to 1000");
        }
        if l.avatar_bytes < 16 || l.avatar_bytes > 1024 {
            return bad("limits.avatar_bytes must be 16 to 1024");
        }
        if l.session_seen_secs == 0 || l.session_seen_secs > 86_400 {
            return bad("limits.session_seen_secs must be 1 to 86400");
        }
        if l.sessions_listed == 0 || l.sessions_listed > 10_000 {
            return bad("limits.sessions_listed must be 1 to 10000");
        }
        if l.search_limit_max == 0 || l.search_limit_max > 1000 {
            return bad("limits.search_limit_max must be 1 to 1000");
        }
        if l.search_query_bytes == 0 || l.search_query_bytes > 4096 {
            return bad("limits.search_query_bytes must be 1 to 4096");
        }
        if l.search_poll_ms == 0 || l.search_poll_ms > 60_000 {
            return bad("limits.search_poll_ms must be 1 to 60000");
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
        if h.shutdown_timeout_secs == 0 || h.shutdown_timeout_secs > 3600 {
            return bad("http.shutdown_timeout_secs must be between 1 and 3600");
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
            if !(1..=5).contains(&c.stream_replicas) {
                return bad("cluster.stream_replicas must be 1-5");
            }
            if c.fanout_queue < 16 || c.ack_wait_ms < 100 {
                return bad("cluster.fanout_queue must be >= 16 and cluster.ack_wait_ms >= 100");
            }
            if c.forward_timeout_ms > 60_000 {
                return bad("cluster.forward_timeout_ms must be at most 60000 (0: no forwarding)");
            }
        }
        integrations::validate(&self.webhooks, &self.hooks).map_err(ConfigError::Invalid)?;
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

    /// 5.6: `[[webhooks]]` also comes from one variable
    /// (`TERN_WEBHOOKS='[{url="...",secret="...",events=[...]}]'`).
    #[test]
    fn webhooks_from_a_variable() {
        use figment::providers::{Env, Serialized};
        std::env::set_var(
            "TERN_HOOKTEST_WEBHOOKS",
            r#"[{url="http://127.0.0.1:9/e",secret="0123456789abcdef0123456789abcdef",events=["member.left"]}]"#,
        );
        let cfg: Config = figment::Figment::from(Serialized::defaults(Config::default()))
            .merge(Env::prefixed("TERN_HOOKTEST_").split("__"))
            .extract()
            .expect("webhooks from the variable");
        assert_eq!(cfg.webhooks.len(), 1);
        assert_eq!(cfg.webhooks[0].url, "http://127.0.0.1:9/e");
        assert_eq!(cfg.webhooks[0].events, ["member.left"]);
        cfg.validate().unwrap();
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
        invalid(
            |c| c.http.shutdown_timeout_secs = 0,
            "http.shutdown_timeout_secs",
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
        invalid(|c| c.limits.blocks_max = 0, "limits.blocks_max");
        invalid(|c| c.limits.avatar_bytes = 8, "limits.avatar_bytes");
        invalid(
            |c| c.limits.session_seen_secs = 0,
            "limits.session_seen_secs",
        );
        invalid(|c| c.limits.sessions_listed = 0, "limits.sessions_listed");
        invalid(
            |c| c.limits.edit_window_secs = 31_536_001,
            "limits.edit_window_secs",
        );
        invalid(
            |c| c.limits.reaction_emoji_max = 0,
            "limits.reaction_emoji_max",
        );
        invalid(
            |c| c.limits.reaction_users_listed = 0,
            "limits.reaction_users_listed",
        );
        invalid(|c| c.limits.search_limit_max = 0, "limits.search_limit_max");
        invalid(
            |c| c.limits.search_query_bytes = 0,
            "limits.search_query_bytes",
        );
        invalid(|c| c.limits.search_poll_ms = 0, "limits.search_poll_ms");
        // 5.6
        invalid(|c| c.scheduled.max_per_user = 0, "scheduled.max_per_user");
        invalid(|c| c.scheduled.poll_ms = 0, "scheduled.poll_ms");
        invalid(
            |c| c.account.export_max_messages = 0,
            "account.export_max_messages",
        );
        invalid(
            |c| c.retention.default_days = 3651,
            "retention.default_days",
        );
        invalid(|c| c.retention.sweep_secs = 0, "retention.sweep_secs");
        invalid(|c| c.retention.sweep_batch = 0, "retention.sweep_batch");
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
