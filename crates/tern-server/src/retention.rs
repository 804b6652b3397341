//! 5.6 retention: the node's sweep of expired messages. Every
//! `retention.sweep_secs` it walks every conversation in rounds of at
//! most `retention.sweep_convs` conversations and `retention.sweep_batch`
//! messages (each a bounded store call), until a round reaches the last
//! conversation. Every node runs it: the store's expiry is idempotent, so
//! two nodes sweeping at once remove each message once and move the same
//! positions to the same place. The media the expired messages named are
//! then unreferenced, and the media sweep removes them after its grace.

use crate::state::App;
use std::sync::Arc;
use std::time::Duration;
use tern_core::store::ExpireRound;

/// Rounds of one sweep, at most: a bound on a sweep that other nodes keep
/// feeding (the next sweep goes on from the start).
const ROUNDS_MAX: u32 = 100_000;

/// The node's sweep task; ends when the node stops.
pub(crate) async fn sweep(app: Arc<App>) {
    let mut stopping = app.stopping.clone();
    let every = Duration::from_secs(app.cfg.retention.sweep_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopping.changed() => return,
        }
        if *stopping.borrow() {
            return;
        }
        sweep_once(&app).await;
    }
}

/// One sweep over every conversation.
pub(crate) async fn sweep_once(app: &App) {
    let cfg = &app.cfg.retention;
    let mut after = String::new();
    let (mut messages, mut media) = (0u64, 0u64);
    for _ in 0..ROUNDS_MAX {
        let round = ExpireRound {
            default_days: cfg.default_days,
            now: tern_core::now_ms(),
            after,
            max_convs: cfg.sweep_convs,
            max_msgs: cfg.sweep_batch,
        };
        match app.core.expire_round(&round).await {
            Ok(done) => {
                messages += done.messages;
                media += done.media;
                ::metrics::counter!("tern_retention_expired_total").increment(done.messages);
                match done.next {
                    Some(next) => after = next,
                    None => break,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "retention sweep failed");
                break;
            }
        }
        // Other work goes first between rounds.
        tokio::task::yield_now().await;
    }
    if messages > 0 {
        tracing::info!(messages, media, "expired messages removed");
    }
}
