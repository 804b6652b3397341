//! Opens the backends the configuration names: the embedded store with
//! in-process presence and bus (one node), or a shared SQL store with
//! Redis presence and the NATS bus (a cluster node).

use crate::config::Config;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use tern_core::store::Store;
use tern_core::{Bus, FallbackLimiter, Limiter, LocalBus, LocalLimiter, LocalPresence, Presence};
use tern_store_sqlite::{SqliteOptions, SqliteStore};

pub struct Backends {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn Presence>,
    /// Rate-limit buckets: in memory for one node, in Redis for a cluster.
    pub limiter: Arc<dyn Limiter>,
    /// Whether pushes cross nodes.
    pub cluster: bool,
}

pub async fn open(cfg: &Config) -> anyhow::Result<Backends> {
    let store = open_store(cfg).await?;
    let c = &cfg.cluster;
    if !c.enabled() {
        return Ok(Backends {
            store,
            bus: Arc::new(LocalBus::new()),
            presence: Arc::new(LocalPresence::new(cfg.node_id)),
            limiter: Arc::new(LocalLimiter::new()),
            cluster: false,
        });
    }
    let presence = tern_cluster::RedisPresence::connect(
        &c.redis_url,
        tern_cluster::PresenceOptions {
            prefix: c.name.clone(),
            heartbeat_ms: c.heartbeat_ms,
            expiry_ms: c.expiry_ms,
            node_id: None,
        },
    )
    .await
    .context("connecting to Redis")?;
    let bus = tern_cluster::NatsBus::connect(
        &c.nats_url,
        tern_cluster::BusOptions {
            stream: c.name.to_uppercase(),
            subject_prefix: format!("{}.node", c.name),
            ack_wait_ms: c.ack_wait_ms,
            replicas: c.stream_replicas,
            drop_inbound_percent: c.drop_inbound_percent,
            ..tern_cluster::BusOptions::default()
        },
    )
    .await
    .context("connecting to NATS")?;
    let limiter = tern_cluster::RedisLimiter::connect(&c.redis_url, &c.name)
        .await
        .context("connecting to Redis (rate limits)")?;
    Ok(Backends {
        store,
        bus: Arc::new(bus),
        presence: Arc::new(presence),
        // Sends and logins go on through a Redis outage, limited per node.
        limiter: Arc::new(FallbackLimiter::new(Arc::new(limiter))),
        cluster: true,
    })
}

/// The secret that signs session tokens: `auth.secret` when set; else,
/// in a cluster, the one every node shares through Redis (made by the
/// first node); else `data_dir/secret.key`, generated on first use. The
/// server and the admin commands (`tern token`) both take it from here,
/// so a token either makes is accepted by the other.
pub async fn token_secret(cfg: &Config) -> anyhow::Result<Vec<u8>> {
    if !cfg.auth.secret.is_empty() {
        return Ok(cfg.auth.secret.as_bytes().to_vec());
    }
    let c = &cfg.cluster;
    if c.enabled() {
        return tern_cluster::shared_secret(&c.redis_url, &c.name)
            .await
            .context("reading the cluster's token secret from Redis");
    }
    secret_file(cfg)
}

/// Whether the store the configuration names exists already: always for
/// a shared SQL store (its server holds it); for the embedded one, whether
/// its database file is in `data_dir`.
pub fn store_exists(cfg: &Config) -> bool {
    let url = &cfg.store.url;
    !url.is_empty() || cfg.data_dir.join(tern_store_sqlite::DB_FILE).is_file()
}

pub async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = &cfg.store.url;
    let max_connections = cfg.store.max_connections;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let opts = tern_store_sql::PgOptions { max_connections };
        let store = tern_store_sql::PgStore::connect(url, opts)
            .await
            .context("connecting to PostgreSQL")?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let url = url.replacen("mariadb://", "mysql://", 1);
        let opts = tern_store_sql::MySqlOptions { max_connections };
        let store = tern_store_sql::MySqlStore::connect(&url, opts)
            .await
            .context("connecting to MySQL")?;
        return Ok(Arc::new(store));
    }
    let dir = cfg.data_dir.clone();
    let store =
        tokio::task::spawn_blocking(move || SqliteStore::open(&dir, SqliteOptions::default()))
            .await
            .context("opening the store")?
            .context("opening the embedded store")?;
    Ok(Arc::new(store))
}

/// Reads the token secret from `data_dir/secret.key`, generating it there
/// on first start.
fn secret_file(cfg: &Config) -> anyhow::Result<Vec<u8>> {
    let path = cfg.data_dir.join("secret.key");
    match std::fs::read(&path) {
        Ok(s) if s.len() >= 32 => return Ok(s),
        Ok(_) => anyhow::bail!("{} is shorter than 32 bytes", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let secret: [u8; 32] = rand::random();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    match write_private(&path, hex.as_bytes()) {
        Ok(()) => Ok(hex.into_bytes()),
        // Another process (the server, an admin command) made it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&path)
            .ok()
            .filter(|s| s.len() >= 32)
            .with_context(|| format!("reading {} written by another process", path.display())),
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}
