//! Opens the backends the configuration names: the embedded store with
//! in-process presence and bus (one node), or a shared SQL store with
//! Redis presence and the NATS bus (a cluster node).

use crate::config::Config;
use anyhow::Context;
use std::sync::Arc;
use tern_core::auth::{Auth, AuthError};
use tern_core::store::{SigningKey, Store};
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

/// The keys that sign session tokens.
pub enum TokenKeys {
    /// `auth.secret`: one fixed key, kid [`tern_core::auth::FIXED_KID`].
    Fixed(Vec<u8>),
    /// The keys the store keeps, oldest first (never empty).
    Stored(Vec<SigningKey>),
}

impl TokenKeys {
    /// An `Auth` that signs with the newest key; stored keys are read
    /// again from `store` when it says so ([`Auth::with_keys`]).
    pub fn auth(
        &self,
        a: &crate::config::AuthConfig,
        ttl_secs: u64,
        store: Option<Arc<dyn Store>>,
    ) -> Result<Auth, AuthError> {
        match self {
            TokenKeys::Fixed(secret) => {
                Auth::new(secret, ttl_secs, a.argon2_m_cost_kib, a.argon2_t_cost)
            }
            TokenKeys::Stored(keys) => {
                let newest = keys.last().ok_or(AuthError::NoKeys)?;
                Auth::new(
                    &newest.secret,
                    ttl_secs,
                    a.argon2_m_cost_kib,
                    a.argon2_t_cost,
                )?
                .with_keys(keys, store)
            }
        }
    }
}

/// The keys that sign session tokens: `auth.secret` when set; else those
/// the store keeps. The first node (or admin command) to find none stores
/// the first one: the secret of before when there is one (in a cluster,
/// the one Redis kept, if it still has it; else `data_dir/secret.key`),
/// so that tokens issued before keep working; else a new random one.
/// After that the store alone holds the keys. The server and the admin
/// commands (`tern token`, `tern secret`) both take them from here, so a
/// token either makes is accepted by the other.
pub async fn token_keys(cfg: &Config, store: &dyn Store) -> anyhow::Result<TokenKeys> {
    if !cfg.auth.secret.is_empty() {
        return Ok(TokenKeys::Fixed(cfg.auth.secret.as_bytes().to_vec()));
    }
    let keys = store
        .signing_keys()
        .await
        .context("reading the token signing keys")?;
    if !keys.is_empty() {
        return Ok(TokenKeys::Stored(keys));
    }
    let (secret, former) = match former_secret(cfg).await? {
        Some(s) => (s, true),
        None => (random_secret(), false),
    };
    let keys = store
        .ensure_signing_key(&secret, tern_core::now_ms())
        .await
        .context("storing the first token signing key")?;
    if keys.is_empty() {
        anyhow::bail!("the store kept no token signing key");
    }
    if keys.len() == 1 && keys[0].secret == secret {
        tracing::info!(
            kid = %keys[0].kid,
            former,
            "first token signing key stored"
        );
    }
    Ok(TokenKeys::Stored(keys))
}

/// 32 random bytes as 64 hex characters (the form secrets always had).
pub fn random_secret() -> Vec<u8> {
    let secret: [u8; 32] = rand::random();
    secret
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into_bytes()
}

/// The token secret of before the store kept the keys: in a cluster, the
/// one Redis holds under the cluster's prefix (if it still does); else
/// `data_dir/secret.key` (if it exists).
async fn former_secret(cfg: &Config) -> anyhow::Result<Option<Vec<u8>>> {
    let c = &cfg.cluster;
    if c.enabled() {
        return tern_cluster::former_secret(&c.redis_url, &c.name)
            .await
            .context("reading the cluster's former token secret from Redis");
    }
    let path = cfg.data_dir.join("secret.key");
    match std::fs::read(&path) {
        Ok(s) if s.len() >= 32 => Ok(Some(s)),
        Ok(_) => anyhow::bail!("{} is shorter than 32 bytes", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
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

/// 5.5: where media bytes go: the S3-compatible store `media.s3_bucket`
/// names, else files under `data_dir/media` (in a cluster, then, each
/// node serves only what was uploaded to it).
pub fn open_blobs(cfg: &Config) -> anyhow::Result<Arc<dyn tern_core::media::Blobs>> {
    let m = &cfg.media;
    if !m.s3_bucket.is_empty() {
        let blobs = tern_media::S3Blobs::new(&tern_media::S3Options {
            bucket: m.s3_bucket.clone(),
            endpoint: m.s3_endpoint.clone(),
            region: m.s3_region.clone(),
            access_key: m.s3_access_key.clone(),
            secret_key: m.s3_secret_key.clone(),
        })
        .context("media.s3_* settings")?;
        return Ok(Arc::new(blobs));
    }
    if cfg.cluster.enabled() {
        tracing::warn!(
            "cluster mode without media.s3_bucket: media are kept on the node they were uploaded to"
        );
    }
    let dir = cfg.data_dir.join("media");
    let blobs =
        tern_media::LocalBlobs::new(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(Arc::new(blobs))
}
