//! 5.6: the node's scheduler. It claims due scheduled messages from the
//! store (a lease per row, so nodes sharing a store never send one row at
//! the same time) and sends each through [`Core::send_due`]: at least
//! once, made exactly once by dedup on the message's `client_msg_id`.

use std::sync::Arc;
use std::time::Duration;

use crate::now_ms;
use crate::service::Core;

/// How long a claim keeps other nodes off a row (ms): a node that died
/// after claiming leaves the row to the others after this.
pub const LEASE_MS: i64 = 30_000;
/// Rows one claim takes at most.
pub const CLAIM_BATCH: u32 = 100;

/// Starts the scheduler of the core `owner` holds (the core itself, or
/// the server state around it): it wakes at the next due time the store
/// knows, when a message is scheduled on this node, and at least every
/// `poll`. It ends when `owner` is dropped.
pub fn start<T: AsRef<Core> + Send + Sync + 'static>(owner: &Arc<T>, poll: Duration) {
    let weak = Arc::downgrade(owner);
    let wake = owner.as_ref().as_ref().scheduled_wake();
    tokio::spawn(async move {
        loop {
            let Some(owner) = weak.upgrade() else {
                return;
            };
            let wait = run_due((*owner).as_ref()).await.unwrap_or(poll).min(poll);
            drop(owner);
            let _ = tokio::time::timeout(wait, wake.notified()).await;
        }
    });
}

/// Sends what is due; how long until the next may be due (`None` when
/// the store could not say).
async fn run_due(core: &Core) -> Option<Duration> {
    let store = core.scheduled_store();
    loop {
        let now = now_ms();
        let due = match store
            .claim_scheduled(now, now + LEASE_MS, CLAIM_BATCH)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "claiming scheduled messages failed");
                return None;
            }
        };
        let n = due.len();
        for s in &due {
            core.send_due(s).await;
        }
        if (n as u32) < CLAIM_BATCH {
            break;
        }
    }
    match store.next_scheduled().await {
        Ok(Some(at)) => Some(Duration::from_millis((at - now_ms()).max(0) as u64)),
        // Nothing pending: a new one wakes us.
        Ok(None) => Some(Duration::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "reading the next scheduled time failed");
            None
        }
    }
}
