//! Wiring: builds the store, bus, presence and core from the config, and
//! runs the listener until shutdown.

use crate::config::Config;
use crate::metrics::{prometheus, Hot};
use crate::state::{App, Counter};
use anyhow::Context;
use std::future::Future;

use std::sync::Arc;
use std::time::Duration;
use tern_core::rooms::RoomConfig;
use tern_core::{Core, CoreConfig, Hub};
use tokio::sync::watch;

/// How often a node reads the token signing keys again.
const KEY_REFRESH: Duration = Duration::from_secs(60);

impl App {
    async fn build(cfg: Config, stopping: watch::Receiver<bool>) -> anyhow::Result<Arc<App>> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
        let backends = crate::backends::open(&cfg).await?;
        let blobs = crate::backends::open_blobs(&cfg)?;
        let cfg_thumbs = cfg.media.thumb_concurrency;
        let keys = crate::backends::token_keys(&cfg, &*backends.store).await?;
        let auth = keys
            .auth(
                &cfg.auth,
                cfg.auth.token_ttl_secs,
                Some(backends.store.clone()),
            )
            .context("auth settings")?
            .with_hash_pool(cfg.limits.hash_concurrency, cfg.limits.hash_queue);
        // A key added by `tern secret rotate` signs here within this time
        // (a token naming it is accepted at once).
        auth.refresh_every(KEY_REFRESH);
        let guard = crate::guard::Guard::new(&cfg, backends.limiter.clone());
        // 5.5: the push providers, and the key Web Push subscribes with.
        let providers = crate::push::providers(&cfg)?;
        let webpush_key = providers.webpush_public_key().map(str::to_owned);
        let mut integrations = crate::integrations::from_config(&cfg);
        integrations.push = crate::push::core_config(&cfg, &providers);
        let hub = Arc::new(Hub::new());
        let core = Core::start(
            backends.store,
            backends.bus,
            backends.presence,
            hub,
            auth,
            CoreConfig {
                node_id: cfg.node_id,
                content_bytes: cfg.limits.content_bytes,
                offline_cap: cfg.delivery.offline_cap,
                recall_window_ms: (cfg.delivery.recall_window_secs * 1000) as i64,
                batch_max: cfg.delivery.batch_max,
                commit_lanes: match cfg.delivery.commit_lanes {
                    0 if cfg.store.url.is_empty() => 1,
                    0 => 4,
                    n => n,
                },
                rooms: RoomConfig {
                    deliver_rate: cfg.rooms.deliver_rate,
                    send_rate: cfg.rooms.send_rate,
                    max_joined: cfg.rooms.max_joined,
                },
                write_limit: cfg.groups.write_limit,
                max_group_size: cfg.groups.max_size,
                max_groups_per_user: cfg.groups.max_per_user,
                max_outgoing_requests: cfg.rate.friend_requests_outstanding,
                cluster_queue: backends.cluster.then_some(cfg.cluster.fanout_queue),
                forward_timeout: (cfg.cluster.forward_timeout_ms > 0)
                    .then(|| std::time::Duration::from_millis(cfg.cluster.forward_timeout_ms)),
                max_blocks: cfg.limits.blocks_max,
                edit_window_ms: (cfg.limits.edit_window_secs * 1000) as i64,
                reaction_emoji_max: cfg.limits.reaction_emoji_max,
                reaction_users_listed: cfg.limits.reaction_users_listed,
                avatar_bytes: cfg.limits.avatar_bytes,
                session_seen_ms: (cfg.limits.session_seen_secs * 1000) as i64,
                sessions_listed: cfg.limits.sessions_listed,
                search_limit_max: cfg.limits.search_limit_max,
                search_query_bytes: cfg.limits.search_query_bytes,
                search_poll: std::time::Duration::from_millis(cfg.limits.search_poll_ms),
                scheduled_max: cfg.scheduled.max_per_user,
                scheduled_poll: std::time::Duration::from_millis(cfg.scheduled.poll_ms),
                integrations,
            },
        )
        .await
        .context("starting the bus")?;
        let revoked = core
            .load_revoked()
            .await
            .map_err(|e| anyhow::anyhow!("loading revoked tokens: {}", e.message))?;
        tracing::debug!(revoked, "revoked tokens loaded");
        tracing::info!(
            node = core.node(),
            cluster = cfg.cluster.enabled(),
            "node started"
        );
        let prometheus = prometheus();
        Hot::describe();
        let scheduled_poll = std::time::Duration::from_millis(cfg.scheduled.poll_ms);
        let app = Arc::new(App {
            core,
            cfg,
            hot: Hot::new(),
            prometheus,
            stopping,
            readers: Counter::default(),
            sessions: Counter::default(),
            guard,
            blobs,
            thumbs: tokio::sync::Semaphore::new(cfg_thumbs),
            webpush_key,
        });
        // 5.6: sends scheduled messages at their time.
        tern_core::scheduler::start(&app, scheduled_poll);
        Ok(app)
    }
}

/// Waits for `count` to reach zero until `deadline`, saying so in the log
/// when there is anything to wait for.
async fn wait_for(what: &str, count: &Counter, deadline: tokio::time::Instant) {
    let n = count.get();
    if n == 0 {
        return;
    }
    tracing::info!("waiting for {n} connections {what}");
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !count.wait_zero(left).await {
        tracing::warn!(
            left = count.get(),
            "shutdown bound reached; connections still {what}"
        );
    }
}

/// Serves HTTP and WebSocket on `listener` until `shutdown` resolves. Then
/// it stops accepting, lets every session finish the request it is
/// handling, waits for stored messages to be pushed, closes every
/// WebSocket with 1001 and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_ready(listener, config, shutdown, |_| {}).await
}

/// [`serve`], calling `ready` with the listening address once the store is
/// open and requests are about to be served.
pub async fn serve_ready(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    config.validate()?;
    let tls = crate::listener::tls_acceptor(&config.tls)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = App::build(config, stop_rx).await?;
    if !app.core.presence_expiry().is_zero() {
        // Once every other node counts this one as live, revocations can
        // no longer pass it by: load them again.
        let again = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep(again.core.presence_expiry()).await;
            if let Err(e) = again.core.load_revoked().await {
                tracing::warn!(error = %e.message, "cannot reload revoked tokens");
            }
        });
    }
    // 5.5: media nothing refers to go after the grace period.
    tokio::spawn(crate::http::media::sweep(app.clone()));
    // 5.6: messages older than their conversation's retention go.
    tokio::spawn(crate::retention::sweep(app.clone()));
    let router = crate::http::router(app.clone());
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(%addr, tls = tls.is_some(), "listening");
    ready(addr);
    let stop_app = app.clone();
    let http = app.cfg.http.clone();
    let bound = Duration::from_secs(http.shutdown_timeout_secs);
    let deadline = crate::listener::serve(listener, router, &http, tls, async move {
        shutdown.await;
        // Every wait below shares one bound: an idle node stops at once,
        // a busy one within `http.shutdown_timeout_secs`.
        let deadline = tokio::time::Instant::now() + bound;
        tracing::info!(
            connections = stop_app.sessions.get(),
            "shutting down: no new connections"
        );
        let _ = stop_tx.send(true);
        // Readers finish the frame in hand; their sends are then stored
        // and published. Only then are the writers told to close.
        wait_for("to finish the frame in hand", &stop_app.readers, deadline).await;
        stop_app.core.flush_acks().await;
        stop_app.core.hub().kick_all(tern_proto::close::GOING_AWAY);
        deadline
    })
    .await;
    wait_for("to take their close (1001)", &app.sessions, deadline).await;
    // 5.6: deliveries in hand finish within what is left of the bound;
    // the rest run again later (their claims end).
    app.core
        .stop_jobs(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await;
    tracing::info!("stopped");
    Ok(())
}
