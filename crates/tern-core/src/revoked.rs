//! Revoked session tokens (`DELETE /v1/sessions`). The store keeps a
//! durable record of each until the token expires; every node keeps the
//! ids in memory (loaded at start, then told of new ones over the bus), so
//! checking a token costs no store round trip.
//!
//! 5.3 `DELETE /v1/sessions?all=true` also revokes, per user, every token
//! issued before a time: tokens no session record names (issued before
//! sessions were recorded, or whose record failed) are refused too.

use dashmap::DashMap;
use std::sync::atomic::{AtomicI64, Ordering};

/// How often, at most, expired ids are swept out (ms).
const SWEEP_EVERY_MS: i64 = 60_000;

#[derive(Debug, Default)]
pub struct Revoked {
    /// Token id -> when the token expires (ms).
    ids: DashMap<u128, i64>,
    /// User -> (tokens issued before this are revoked (ms), until when
    /// the record is kept (ms)).
    users: DashMap<String, (i64, i64)>,
    last_sweep: AtomicI64,
}

/// How long a user's "revoked before" record is kept: the longest token
/// lifetime (`tern token --ttl` and `auth.token_ttl_secs` stop at 366
/// days), after which every token it names has expired anyway.
pub const USER_REVOCATION_KEEP_MS: i64 = 366 * 24 * 3600 * 1000;

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
            self.users.retain(|_, (_, until)| *until > now);
        }
    }

    /// Records that `user`'s tokens issued before `before` are revoked,
    /// until `until` (the later time of two records wins).
    pub fn insert_user(&self, user: &str, before: i64, until: i64, now: i64) {
        if until <= now {
            return;
        }
        let mut e = self.users.entry(user.to_owned()).or_insert((before, until));
        e.0 = e.0.max(before);
        e.1 = e.1.max(until);
    }

    pub fn contains(&self, id: u128) -> bool {
        self.ids.contains_key(&id)
    }

    /// Whether the token `id` of `user`, issued at `issued_at`, is
    /// revoked: by its id, or as one of the user's older tokens.
    pub fn refuses(&self, user: &str, id: u128, issued_at: i64) -> bool {
        self.contains(id)
            || self
                .users
                .get(user)
                .is_some_and(|e| issued_at < e.value().0)
    }

    /// Before when `user`'s tokens are revoked, if they are.
    pub fn user_before(&self, user: &str) -> Option<i64> {
        self.users.get(user).map(|e| e.value().0)
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

    #[test]
    fn a_user_revocation_refuses_older_tokens_only() {
        let r = Revoked::default();
        r.insert_user("ann", 5_000, 10_000, 1_000);
        assert!(r.refuses("ann", 7, 4_000));
        assert!(!r.refuses("ann", 7, 5_000));
        assert!(!r.refuses("bob", 7, 4_000));
        // An older record arriving late moves nothing back.
        r.insert_user("ann", 3_000, 9_000, 1_000);
        assert_eq!(r.user_before("ann"), Some(5_000));
        // Kept until its time, then swept.
        r.insert(9, 200_000, 10_000 + SWEEP_EVERY_MS);
        assert_eq!(r.user_before("ann"), None);
    }
}
