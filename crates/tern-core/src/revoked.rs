//! Revoked session tokens (`DELETE /v1/sessions`). The store keeps a
//! durable record of each until the token expires; every node keeps the
//! ids in memory (loaded at start, then told of new ones over the bus), so
//! checking a token costs no store round trip.

use dashmap::DashMap;
use std::sync::atomic::{AtomicI64, Ordering};

/// How often, at most, expired ids are swept out (ms).
const SWEEP_EVERY_MS: i64 = 60_000;

#[derive(Debug, Default)]
pub struct Revoked {
    /// Token id -> when the token expires (ms).
    ids: DashMap<u128, i64>,
    last_sweep: AtomicI64,
}

impl Revoked {
    /// Records a revoked token; drops ids of tokens expired by `now` (at
    /// most once a minute), so the set holds only what can still be used.
    pub fn insert(&self, id: u128, expires_at: i64, now: i64) {
        if expires_at > now {
            self.ids.insert(id, expires_at);
        }
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now - last >= SWEEP_EVERY_MS
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.ids.retain(|_, exp| *exp > now);
        }
    }

    pub fn contains(&self, id: u128) -> bool {
        self.ids.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_only_unexpired_ids() {
        let r = Revoked::default();
        r.insert(1, 1_000, 500);
        r.insert(2, 100, 500);
        assert!(r.contains(1) && !r.contains(2));
        // A minute later the sweep drops what expired meanwhile.
        r.insert(3, 200_000, 500 + SWEEP_EVERY_MS);
        assert!(!r.contains(1) && r.contains(3));
        assert_eq!(r.len(), 1);
    }
}
