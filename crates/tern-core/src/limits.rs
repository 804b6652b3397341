//! Rate limits behind a small seam: a [`Limiter`] keeps one token bucket
//! per key (failed logins of a user, registrations of an address, sends of
//! a user, ...). One node uses [`LocalLimiter`] (memory); a cluster shares
//! its buckets in Redis (`tern_cluster::RedisLimiter`), so a limit reached
//! through one node holds on every node.
//!
//! The bucket is GCRA (the "generic cell rate algorithm"): per key it keeps
//! one number, the theoretical arrival time `tat` of the next token. A hit
//! is allowed when `tat + interval - burst * interval <= now`, and then
//! moves `tat` to `max(tat, now) + interval`. A key whose `tat` lies in the
//! past holds a full bucket, the same as a key never seen, so state can be
//! dropped as soon as `tat` passes: memory is bounded by the keys active
//! within the last `burst * interval`.

use crate::bus::PlumbingResult;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// A bucket's shape: up to `burst` hits at once, then one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub burst: u32,
    pub interval: Duration,
}

impl Rule {
    /// `count` hits per `window`, all of them at once if need be.
    pub fn per_window(count: u32, window: Duration) -> Rule {
        let count = count.max(1);
        Rule {
            burst: count,
            interval: window / count,
        }
    }

    /// `rate` hits per second on average, bursts up to `burst`.
    pub fn per_second(rate: u32, burst: u32) -> Rule {
        Rule {
            burst: burst.max(1),
            interval: Duration::from_secs(1) / rate.max(1),
        }
    }

    fn interval_us(&self) -> u64 {
        (self.interval.as_micros() as u64).max(1)
    }

    /// How long a full bucket takes to refill: the longest a key lives.
    pub fn span(&self) -> Duration {
        self.interval * self.burst
    }
}

/// A limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// When refused: how long until one hit is allowed again.
    pub retry_after: Duration,
}

impl Decision {
    pub const ALLOW: Decision = Decision {
        allowed: true,
        retry_after: Duration::ZERO,
    };

    pub fn refuse(retry_after: Duration) -> Decision {
        Decision {
            allowed: false,
            retry_after,
        }
    }

    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// Token buckets by key. Keys are opaque strings; callers put the rule's
/// name in them (`login:user:alice`), so one key always has one rule.
#[async_trait]
pub trait Limiter: Send + Sync + 'static {
    /// Takes one token of `key` if there is one.
    async fn hit(&self, key: &str, rule: Rule) -> PlumbingResult<Decision>;
    /// Whether a hit would be allowed now, taking nothing. With [`hit`]
    /// afterwards this counts only some events (failed logins): check
    /// first, then record a hit when the event turned out to count.
    ///
    /// [`hit`]: Limiter::hit
    async fn check(&self, key: &str, rule: Rule) -> PlumbingResult<Decision>;
    /// Gives back one token an allowed [`hit`](Limiter::hit) took (never
    /// more than the bucket holds). Counting only some events without a
    /// race: hit first, so that concurrent attempts cannot all pass a
    /// check together, then give the token back when the event turned out
    /// not to count (a login that succeeded).
    async fn refund(&self, key: &str, rule: Rule) -> PlumbingResult<()>;
    async fn health(&self) -> PlumbingResult<()>;
}

/// GCRA on a key's `tat` (µs on the caller's clock); returns the decision
/// and, when a token is taken, the new `tat`.
pub fn gcra(tat: Option<u64>, now: u64, rule: Rule, take: bool) -> (Decision, Option<u64>) {
    let interval = rule.interval_us();
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(interval * u64::from(rule.burst));
    if now < allow_at {
        return (
            Decision::refuse(Duration::from_micros(allow_at - now)),
            None,
        );
    }
    (Decision::ALLOW, take.then_some(new_tat))
}

/// Buckets in this process's memory.
pub struct LocalLimiter {
    shards: Box<[Mutex<Shard>]>,
    start: Instant,
}

#[derive(Default)]
struct Shard {
    tat: HashMap<String, u64>,
    /// The shard is swept of expired keys when it grows past this.
    sweep_at: usize,
}

const SHARDS: usize = 16;
const MIN_SWEEP: usize = 1024;

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter::new()
    }
}

impl LocalLimiter {
    pub fn new() -> LocalLimiter {
        LocalLimiter {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        tat: HashMap::new(),
                        sweep_at: MIN_SWEEP,
                    })
                })
                .collect(),
            start: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        // Offset by a day, so that "no earlier hit" (tat = now) never
        // underflows a subtraction near the start.
        self.start.elapsed().as_micros() as u64 + 86_400_000_000
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(key);
        &self.shards[h as usize % SHARDS]
    }

    /// [`Limiter::hit`] (`take`) or [`Limiter::check`], without awaiting.
    pub fn decide(&self, key: &str, rule: Rule, take: bool) -> Decision {
        let now = self.now_us();
        let mut shard = self.shard(key).lock();
        let (d, new_tat) = gcra(shard.tat.get(key).copied(), now, rule, take);
        if let Some(t) = new_tat {
            match shard.tat.get_mut(key) {
                Some(v) => *v = t,
                None => {
                    shard.tat.insert(key.to_owned(), t);
                    if shard.tat.len() >= shard.sweep_at {
                        // A key whose tat has passed holds a full bucket:
                        // dropping it changes no answer. Sweeping when the
                        // shard has doubled keeps the cost per hit constant.
                        shard.tat.retain(|_, t| *t > now);
                        shard.sweep_at = (shard.tat.len() * 2).max(MIN_SWEEP);
                    }
                }
            }
        }
        d
    }

    /// [`Limiter::refund`], without awaiting.
    pub fn give_back(&self, key: &str, rule: Rule) {
        let now = self.now_us();
        let mut shard = self.shard(key).lock();
        if let Some(t) = shard.tat.get_mut(key) {
            let back = t.saturating_sub(rule.interval_us());
            if back <= now {
                shard.tat.remove(key);
            } else {
                *t = back;
            }
        }
    }

    /// Keys currently held (for tests of the memory bound).
    pub fn keys(&self) -> usize {
        self.shards.iter().map(|s| s.lock().tat.len()).sum()
    }
}

#[async_trait]
impl Limiter for LocalLimiter {
    async fn hit(&self, key: &str, rule: Rule) -> PlumbingResult<Decision> {
        Ok(self.decide(key, rule, true))
    }

    async fn check(&self, key: &str, rule: Rule) -> PlumbingResult<Decision> {
        Ok(self.decide(key, rule, false))
    }

    async fn refund(&self, key: &str, rule: Rule) -> PlumbingResult<()> {
        self.give_back(key, rule);
        Ok(())
    }

    async fn health(&self) -> PlumbingResult<()> {
        Ok(())
    }
}

/// A shared limiter (Redis, in a cluster) that falls back to this node's
/// own buckets while the shared one does not answer: requests are served,
/// and limits hold per node instead of cluster-wide until it answers again.
/// After a failure the shared limiter is left alone for
/// [`FallbackLimiter::PAUSE`], so that a backend that hangs costs one
/// timeout, not one per request.
pub struct FallbackLimiter {
    shared: std::sync::Arc<dyn Limiter>,
    local: LocalLimiter,
    /// While set and in the future, the node-local buckets answer.
    paused_until: Mutex<Option<Instant>>,
}

impl FallbackLimiter {
    pub const PAUSE: Duration = Duration::from_secs(1);

    pub fn new(shared: std::sync::Arc<dyn Limiter>) -> FallbackLimiter {
        FallbackLimiter {
            shared,
            local: LocalLimiter::new(),
            paused_until: Mutex::new(None),
        }
    }

    fn shared_usable(&self) -> bool {
        let mut p = self.paused_until.lock();
        match *p {
            Some(t) if Instant::now() < t => false,
            Some(_) => {
                *p = None;
                tracing::info!("rate limits: trying the shared limiter again");
                true
            }
            None => true,
        }
    }

    fn failed(&self, e: &crate::bus::PlumbingError) {
        let mut p = self.paused_until.lock();
        if p.is_none() {
            tracing::warn!(error = %e, "rate limits: the shared limiter does not answer; this node's own buckets count meanwhile");
        }
        *p = Some(Instant::now() + Self::PAUSE);
        metrics::counter!("tern_limiter_fallbacks_total").increment(1);
    }
}

#[async_trait]
impl Limiter for FallbackLimiter {
    async fn hit(&self, key: &str, rule: Rule) -> PlumbingResult<Decision> {
        if self.shared_usable() {
            match self.shared.hit(key, rule).await {
                Ok(d) => return Ok(d),
                Err(e) => self.failed(&e),
            }
        }
        self.local.hit(key, rule).await
    }

    async fn check(&self, key: &str, rule: Rule) -> PlumbingResult<Decision> {
        if self.shared_usable() {
            match self.shared.check(key, rule).await {
                Ok(d) => return Ok(d),
                Err(e) => self.failed(&e),
            }
        }
        self.local.check(key, rule).await
    }

    async fn refund(&self, key: &str, rule: Rule) -> PlumbingResult<()> {
        if self.shared_usable() {
            match self.shared.refund(key, rule).await {
                Ok(()) => return Ok(()),
                Err(e) => self.failed(&e),
            }
        }
        self.local.refund(key, rule).await
    }

    async fn health(&self) -> PlumbingResult<()> {
        self.shared.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_one_per_interval() {
        let l = LocalLimiter::new();
        let rule = Rule::per_window(3, Duration::from_secs(3));
        for _ in 0..3 {
            assert!(l.hit("k", rule).await.unwrap().allowed);
        }
        let d = l.hit("k", rule).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_secs(1));
        assert_eq!(d.retry_after_secs(), 1);
        // Other keys are untouched.
        assert!(l.hit("other", rule).await.unwrap().allowed);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!l.check("k", rule).await.unwrap().allowed);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(l.check("k", rule).await.unwrap().allowed);
        assert!(l.hit("k", rule).await.unwrap().allowed);
        assert!(!l.hit("k", rule).await.unwrap().allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn check_takes_nothing() {
        let l = LocalLimiter::new();
        let rule = Rule::per_window(2, Duration::from_secs(60));
        for _ in 0..10 {
            assert!(l.check("k", rule).await.unwrap().allowed);
        }
        assert_eq!(l.keys(), 0, "a check stores nothing");
        assert!(l.hit("k", rule).await.unwrap().allowed);
        assert!(l.hit("k", rule).await.unwrap().allowed);
        assert!(!l.check("k", rule).await.unwrap().allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_evicted() {
        let l = LocalLimiter::new();
        let rule = Rule::per_second(10, 10);
        for i in 0..50_000 {
            l.hit(&format!("k{i}"), rule).await.unwrap();
        }
        let before = l.keys();
        assert!(before > 0);
        // Past every key's refill time, new keys sweep the old away.
        tokio::time::advance(rule.span() + Duration::from_secs(1)).await;
        for i in 0..50_000 {
            l.hit(&format!("n{i}"), rule).await.unwrap();
        }
        assert!(
            l.keys() <= 50_000 + SHARDS * MIN_SWEEP,
            "{} keys held after the first 50,000 expired",
            l.keys()
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(
            Decision::refuse(Duration::from_millis(1)).retry_after_secs(),
            1
        );
        assert_eq!(
            Decision::refuse(Duration::from_millis(2001)).retry_after_secs(),
            3
        );
        assert_eq!(
            Rule::per_second(5, 300).interval,
            Duration::from_millis(200)
        );
        assert_eq!(
            Rule::per_window(10, Duration::from_secs(300)).interval,
            Duration::from_secs(30)
        );
    }

    /// A shared limiter whose backend is down until told otherwise.
    struct Flaky {
        down: std::sync::atomic::AtomicBool,
        calls: std::sync::atomic::AtomicUsize,
        inner: LocalLimiter,
    }

    #[async_trait]
    impl Limiter for Flaky {
        async fn hit(&self, key: &str, rule: Rule) -> PlumbingResult<Decision> {
            use std::sync::atomic::Ordering::SeqCst;
            self.calls.fetch_add(1, SeqCst);
            if self.down.load(SeqCst) {
                return Err(crate::bus::PlumbingError::Full("limiter"));
            }
            self.inner.hit(key, rule).await
        }
        async fn check(&self, key: &str, rule: Rule) -> PlumbingResult<Decision> {
            self.inner.check(key, rule).await
        }
        async fn refund(&self, key: &str, rule: Rule) -> PlumbingResult<()> {
            self.inner.refund(key, rule).await
        }
        async fn health(&self) -> PlumbingResult<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_limiter_that_is_down_gives_way_to_local_buckets() {
        use std::sync::atomic::Ordering::SeqCst;
        let shared = std::sync::Arc::new(Flaky {
            down: true.into(),
            calls: 0.into(),
            inner: LocalLimiter::new(),
        });
        let l = FallbackLimiter::new(shared.clone());
        let rule = Rule::per_window(2, Duration::from_secs(60));
        // Served, and still limited: by this node's own bucket.
        assert!(l.hit("k", rule).await.unwrap().allowed);
        assert!(l.hit("k", rule).await.unwrap().allowed);
        assert!(!l.hit("k", rule).await.unwrap().allowed);
        // One failed call, then the shared limiter is left alone.
        assert_eq!(shared.calls.load(SeqCst), 1);
        shared.down.store(false, SeqCst);
        tokio::time::advance(FallbackLimiter::PAUSE).await;
        // Back to the shared buckets (fresh: nothing was taken there).
        assert!(l.hit("k", rule).await.unwrap().allowed);
        assert_eq!(shared.calls.load(SeqCst), 2);
    }
}
