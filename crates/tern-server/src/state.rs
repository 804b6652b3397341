//! The state every handler and session shares ([`App`]), and the counts
//! that shutdown waits on. Built by `app.rs`; read by `http/`,
//! `dispatch.rs` and `ws/`.

use crate::config::Config;
use crate::metrics::Hot;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tern_core::Core;
use tokio::sync::{watch, Notify};

/// Shared by every handler and session.
pub struct App {
    pub core: Core,
    pub cfg: Config,
    pub hot: Hot,
    pub prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Flips to true when shutdown starts: sessions stop reading.
    pub stopping: watch::Receiver<bool>,
    /// Sessions still reading frames / sessions not yet finished.
    pub readers: Counter,
    pub sessions: Counter,
    /// Rate limits and connection counts.
    pub guard: crate::guard::Guard,
    /// 5.5: where media bytes are kept.
    pub blobs: std::sync::Arc<dyn tern_core::media::Blobs>,
    /// 5.5: thumbnails being made at once (`media.thumb_concurrency`).
    pub thumbs: tokio::sync::Semaphore,
    /// 5.5: the VAPID public key, when Web Push is configured.
    pub webpush_key: Option<String>,
}

/// A count that can be awaited down to zero.
#[derive(Default)]
pub struct Counter {
    n: AtomicUsize,
    zero: Notify,
}

impl Counter {
    pub fn enter(&self) {
        self.n.fetch_add(1, Ordering::AcqRel);
    }

    pub fn leave(&self) {
        if self.n.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.zero.notify_waiters();
        }
    }

    /// The current count.
    pub fn get(&self) -> usize {
        self.n.load(Ordering::Acquire)
    }

    /// Waits until the count is zero, for at most `limit`; false if it
    /// was not by then.
    pub async fn wait_zero(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let notified = self.zero.notified();
                if self.n.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

/// 5.6: the scheduler holds the state and reaches the core through it.
impl AsRef<Core> for App {
    fn as_ref(&self) -> &Core {
        &self.core
    }
}
