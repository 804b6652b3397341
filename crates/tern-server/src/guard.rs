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
        }
    }

    /// Before checking a password: refused (429) while the address's or
    /// the user's failures are used up; takes nothing, so correct logins,
    /// however many at once, are never counted. A wrong password is
    /// counted after its check with [`login_failed`](Guard::login_failed).
    /// Guesses checked at the same moment can pass together: at most as
    /// many as the hashing pool runs and queues (`limits.hash_concurrency`
    /// + `limits.hash_queue`), and each still counts when it fails.
    pub async fn login_allowed(&self, user: &str, ip: IpAddr) -> Result<(), Refused> {
        for (key, rule) in self.login_keys(user, ip) {
            let d = self
                .limiter
                .check(&key, rule)
                .await
                .map_err(Refused::down)?;
            if !d.allowed {
                return Err(Refused::limited(
                    d,
                    "too many failed logins, try again later",
                ));
            }
        }
        Ok(())
    }

    /// A wrong password (or unknown user): one failure for the address
    /// and for the user.
    pub async fn login_failed(&self, user: &str, ip: IpAddr) {
        for (key, rule) in self.login_keys(user, ip) {
            if let Err(e) = self.limiter.hit(&key, rule).await {
                tracing::warn!(error = %e, "cannot count a failed login");
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
