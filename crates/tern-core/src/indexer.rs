//! PROTOCOL 5.2: the node's background search indexer, off the send path.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::Store;

/// Messages one indexer call takes at most.
pub const INDEX_BATCH: u32 = 500;

/// The node's indexer: indexes what the store has not indexed yet, in
/// batches, whenever woken (after a send) and at least every `poll`.
/// Indexing never runs inside a send's transaction; a wake-up costs a
/// [`Notify`] permit.
pub struct Indexer {
    wake: Arc<Notify>,
}

impl Indexer {
    pub fn start(store: Arc<dyn Store>, poll: Duration) -> Indexer {
        let wake = Arc::new(Notify::new());
        let w = wake.clone();
        tokio::spawn(async move {
            loop {
                match store.index_pending(INDEX_BATCH).await {
                    // More may wait: go on at once.
                    Ok(n) if n >= INDEX_BATCH => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "search indexing failed"),
                }
                // Ends with the runtime; a dropped Core leaves it idle.
                if Arc::strong_count(&w) == 1 {
                    return;
                }
                let _ = tokio::time::timeout(poll, w.notified()).await;
            }
        });
        Indexer { wake }
    }

    /// New messages were stored.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}
