//! The abuse limits of the gateway (config `[rate]`, PROTOCOL.md 3): which
//! bucket each request draws from, and the connection counts. The buckets
//! themselves sit behind `tern_core::Limiter`: in Redis for a cluster (a
//! limit reached through one node holds on all), in memory for one node.
//! Upgrade admission and connection counts protect this node's own
//! resources, so they are always local.

use crate::config::Config;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tern_core::{Decision, Limiter, LocalLimiter, Rule};
use tern_proto::wire::ErrorBody;
use tern_proto::ErrorCode;

/// A refusal, ready to send: 429 `rate_limited` (or 503 `unavailable`)
/// with `Retry-After`, or 503 when the limiter's backend is down.
pub struct Refused(Box<Response>);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl Refused {
    pub fn new(code: ErrorCode, message: &str, retry_after_secs: Option<u64>) -> Refused {
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = (status, Json(ErrorBody::new(code, message))).into_response();
        if let Some(s) = retry_after_secs {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        Refused(Box::new(r))
    }

    fn limited(d: Decision, message: &str) -> Refused {
        metrics::counter!("tern_http_rate_limited_total").increment(1);
        Refused::new(ErrorCode::RateLimited, message, Some(d.retry_after_secs()))
    }

    fn down(e: tern_core::PlumbingError) -> Refused {
        tracing::error!(error = %e, "rate limiter unavailable");
        Refused::new(
            ErrorCode::Unavailable,
            "service unavailable, try again",
            Some(1),
        )
    }
}

struct Rules {
    login_user: Rule,
    login_addr: Rule,
    register: Rule,
    send: Rule,
    friend: Rule,
    upgrade: Rule,
}

pub struct Guard {
    limiter: Arc<dyn Limiter>,
    /// Upgrade admission: this node's own pace.
    local: LocalLimiter,
    rules: Rules,
    per_user_max: usize,
    total_max: usize,
    total: Arc<AtomicUsize>,
    per_user: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    /// Login attempts being checked, by bucket key.
    in_flight: Mutex<HashMap<String, Arc<InFlight>>>,
}

/// The key of an address: an IPv4 address as it is, an IPv6 address by its
/// /64 (one host usually holds a whole /64, so counting single IPv6
/// addresses would let it pick a fresh one per try).
pub fn addr_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl Guard {
    pub fn new(cfg: &Config, limiter: Arc<dyn Limiter>) -> Guard {
        let r = &cfg.rate;
        let secs = Duration::from_secs;
        Guard {
            limiter,
            local: LocalLimiter::new(),
            rules: Rules {
                login_user: Rule::per_window(r.login_user_failures, secs(r.login_user_window_secs)),
                login_addr: Rule::per_window(r.login_addr_failures, secs(r.login_addr_window_secs)),
                register: Rule::per_second(r.register_rate, r.register_burst),
                send: Rule::per_second(cfg.limits.frame_rate, cfg.limits.frame_burst),
                friend: Rule {
                    burst: r.friend_requests_burst.max(1),
                    interval: secs(3600) / r.friend_requests_per_hour.max(1),
                },
                upgrade: Rule::per_second(r.upgrade_rate, r.upgrade_burst),
            },
            per_user_max: r.connections_per_user,
            total_max: r.connections,
            total: Arc::new(AtomicUsize::new(0)),
            per_user: Default::default(),
            in_flight: Default::default(),
        }
    }

    /// Before checking a password: takes one failure from the address's
    /// and the user's buckets, so that guesses checked at the same moment
    /// cannot pass the limit together. When a bucket is used up while
    /// other attempts of the same key are still being checked on this
    /// node, the attempt waits for them instead of being refused: a
    /// correct login gives its tokens back ([`LoginTicket::succeeded`]),
    /// so concurrent correct logins all go through, in turns of the
    /// bucket's size, and only failures ever count. Refused (429) when a
    /// bucket is used up with nothing of it in flight here.
    pub async fn login_attempt(&self, user: &str, ip: IpAddr) -> Result<LoginTicket<'_>, Refused> {
        let keys = self.login_keys(user, ip);
        loop {
            // Registered before the attempt, so that an attempt finishing
            // in between still wakes this one.
            let flights: Vec<Arc<InFlight>> = {
                let mut map = self.in_flight.lock();
                keys.iter()
                    .map(|(k, _)| map.entry(k.clone()).or_default().clone())
                    .collect()
            };
            let held = flights.clone();
            let waits: Vec<_> = held.iter().map(|f| f.done.notified()).collect();
            let mut waits: Vec<_> = waits.into_iter().map(Box::pin).collect();
            for w in &mut waits {
                w.as_mut().enable();
            }
            match self.take_all(&keys).await {
                Ok(()) => {
                    for f in &flights {
                        f.count.fetch_add(1, Ordering::AcqRel);
                    }
                    return Ok(LoginTicket {
                        guard: self,
                        keys,
                        flights,
                        done: false,
                    });
                }
                Err(Err(e)) => return Err(Refused::down(e)),
                Err(Ok(d)) => {
                    let busy: Vec<_> = waits
                        .into_iter()
                        .zip(&held)
                        .filter(|(_, f)| f.count.load(Ordering::Acquire) > 0)
                        .map(|(w, _)| w)
                        .collect();
                    if busy.is_empty() {
                        drop(busy);
                        drop(held);
                        drop(flights);
                        self.forget_idle(&keys);
                        return Err(Refused::limited(
                            d,
                            "too many failed logins, try again later",
                        ));
                    }
                    // Any of them finishing may have given tokens back.
                    futures_util::future::select_all(busy).await;
                }
            }
        }
    }

    /// Takes a token of every key, or none: `Ok(Err)` when the limiter is
    /// down, `Err(Ok(decision))` when a bucket is used up.
    async fn take_all(
        &self,
        keys: &[(String, Rule)],
    ) -> Result<(), Result<Decision, tern_core::PlumbingError>> {
        for (i, (key, rule)) in keys.iter().enumerate() {
            let d = match self.limiter.hit(key, *rule).await {
                Ok(d) => d,
                Err(e) => {
                    self.give_back(&keys[..i]).await;
                    return Err(Err(e));
                }
            };
            if !d.allowed {
                self.give_back(&keys[..i]).await;
                return Err(Ok(d));
            }
        }
        Ok(())
    }

    async fn give_back(&self, keys: &[(String, Rule)]) {
        for (key, rule) in keys {
            if let Err(e) = self.limiter.refund(key, *rule).await {
                tracing::warn!(error = %e, "cannot give back a login token");
            }
        }
    }

    /// Drops the in-flight entries of `keys` that nothing uses.
    fn forget_idle(&self, keys: &[(String, Rule)]) {
        let mut map = self.in_flight.lock();
        for (k, _) in keys {
            if map
                .get(k)
                .is_some_and(|f| Arc::strong_count(f) == 1 && f.count.load(Ordering::Acquire) == 0)
            {
                map.remove(k);
            }
        }
    }

    /// The address's bucket, then the user's (a name that is no valid user
    /// id has none: no such user exists, and the address counts it).
    fn login_keys(&self, user: &str, ip: IpAddr) -> Vec<(String, Rule)> {
        let mut keys = vec![(
            format!("login:addr:{}", addr_key(ip)),
            self.rules.login_addr,
        )];
        if tern_proto::ids::is_valid_name(user) {
            keys.push((format!("login:user:{user}"), self.rules.login_user));
        }
        keys
    }

    async fn take(&self, key: String, rule: Rule, message: &str) -> Result<(), Refused> {
        let d = self.limiter.hit(&key, rule).await.map_err(Refused::down)?;
        if d.allowed {
            Ok(())
        } else {
            Err(Refused::limited(d, message))
        }
    }

    pub async fn register(&self, ip: IpAddr) -> Result<(), Refused> {
        let key = format!("register:{}", addr_key(ip));
        self.take(
            key,
            self.rules.register,
            "too many registrations from this address",
        )
        .await
    }

    /// An HTTP send, under the same per-user rate as WebSocket frames.
    pub async fn send(&self, user: &str) -> Result<(), Refused> {
        let key = format!("send:{user}");
        self.take(key, self.rules.send, "too many messages").await
    }

    pub async fn friend_request(&self, user: &str) -> Result<(), Refused> {
        let key = format!("friend:{user}");
        self.take(key, self.rules.friend, "too many friend requests")
            .await
    }

    /// Admits one WebSocket upgrade at the configured pace and takes a
    /// slot of the node's connection limit.
    pub fn admit_upgrade(&self) -> Result<Slot, Refused> {
        let d = self.local.decide("upgrade", self.rules.upgrade, true);
        if !d.allowed {
            metrics::counter!("tern_upgrades_refused_total").increment(1);
            return Err(Refused::new(
                ErrorCode::Unavailable,
                "too many connections opening at once, retry later",
                Some(d.retry_after_secs()),
            ));
        }
        let n = self.total.fetch_add(1, Ordering::AcqRel);
        let slot = Slot {
            total: self.total.clone(),
            user: None,
        };
        if n >= self.total_max {
            metrics::counter!("tern_upgrades_refused_total").increment(1);
            return Err(Refused::new(
                ErrorCode::Unavailable,
                "this server holds as many connections as it may",
                Some(5),
            ));
        }
        Ok(slot)
    }

    /// Counts a connection of `user` in its slot; false when the user
    /// holds as many as allowed (`replacing`: this device is among them,
    /// and its new connection replaces the old one, so it is not refused).
    pub fn connect_user(&self, slot: &mut Slot, user: &str, replacing: bool) -> bool {
        let mut map = self.per_user.lock();
        let n = map.entry(Arc::from(user)).or_default();
        if *n >= self.per_user_max && !replacing {
            return false;
        }
        *n += 1;
        slot.user = Some((self.per_user.clone(), Arc::from(user)));
        true
    }
}

/// Login attempts of one bucket key being checked on this node.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    done: tokio::sync::Notify,
}

/// A login attempt that holds one failure of each of its buckets while its
/// password is checked. Dropped without [`succeeded`](LoginTicket::succeeded)
/// (a wrong password, an attempt abandoned), the failures stay counted.
pub struct LoginTicket<'a> {
    guard: &'a Guard,
    keys: Vec<(String, Rule)>,
    flights: Vec<Arc<InFlight>>,
    done: bool,
}

impl LoginTicket<'_> {
    /// The attempt was not a failure (the password was right, or the
    /// store did not answer): its tokens go back.
    pub async fn succeeded(mut self) {
        self.guard.give_back(&self.keys).await;
        self.finish();
    }

    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        for f in &self.flights {
            f.count.fetch_sub(1, Ordering::AcqRel);
            f.done.notify_waiters();
        }
        self.flights.clear();
        self.guard.forget_idle(&self.keys);
    }
}

impl Drop for LoginTicket<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

type UserCounts = Arc<Mutex<HashMap<Arc<str>, usize>>>;

/// One connection's place in the node's counts, given back when dropped.
pub struct Slot {
    total: Arc<AtomicUsize>,
    user: Option<(UserCounts, Arc<str>)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        if let Some((map, user)) = self.user.take() {
            let mut map = map.lock();
            if let Some(n) = map.get_mut(&user) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&user);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_keys() {
        assert_eq!(addr_key("127.0.0.3".parse().unwrap()), "127.0.0.3");
        assert_eq!(
            addr_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            addr_key("2001:db8:1:2:ffff::1".parse().unwrap()),
            addr_key("2001:db8:1:2::9".parse().unwrap())
        );
        assert_eq!(addr_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
    }

    #[tokio::test]
    async fn correct_logins_wait_for_attempts_in_flight_and_failures_count() {
        let mut cfg = Config::default();
        cfg.rate.login_user_failures = 2;
        let g = Guard::new(&cfg, Arc::new(LocalLimiter::new()));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = g.login_attempt("ann", ip).await.ok().unwrap();
        let b = g.login_attempt("ann", ip).await.ok().unwrap();
        // A third waits for one of them instead of being refused.
        let third = g.login_attempt("ann", ip);
        tokio::pin!(third);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), third.as_mut())
                .await
                .is_err(),
            "waits while two are in flight"
        );
        a.succeeded().await;
        let c = third.await.ok().unwrap();
        c.succeeded().await;
        // Two failures use the bucket up; with nothing in flight, refused.
        drop(b);
        let d = g.login_attempt("ann", ip).await.ok().unwrap();
        drop(d);
        assert!(g.login_attempt("ann", ip).await.is_err());
        assert!(g.in_flight.lock().is_empty(), "nothing left behind");
    }

    #[test]
    fn slots_count_and_give_back() {
        let mut cfg = Config::default();
        cfg.rate.connections = 2;
        cfg.rate.connections_per_user = 1;
        let g = Guard::new(&cfg, Arc::new(LocalLimiter::new()));
        let mut a = g.admit_upgrade().ok().unwrap();
        let mut b = g.admit_upgrade().ok().unwrap();
        assert!(g.admit_upgrade().is_err(), "over the total");
        assert!(g.connect_user(&mut a, "ann", false));
        assert!(
            !g.connect_user(&mut b, "ann", false),
            "over the per-user cap"
        );
        assert!(
            g.connect_user(&mut b, "ann", true),
            "a replacement is let in"
        );
        drop(a);
        drop(b);
        assert!(g.per_user.lock().is_empty());
        let mut c = g.admit_upgrade().ok().unwrap();
        assert!(g.connect_user(&mut c, "ann", false));
    }
}
