//! 5.5 offline push: `[push]` (PROTOCOL 5.7), with one table per provider
//! (`[push.webhook]`, `[push.fcm]`, `[push.apns]`, `[push.webpush]`, as
//! `tern_push` reads them) and how pushes are delivered.

use serde::{Deserialize, Serialize};
use tern_push::{ApnsConfig, FcmConfig, ProvidersConfig, WebPushConfig, WebhookConfig};

/// `[push]`. Push is on when at least one provider is configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// The message text in the notification (`false`: a neutral line).
    pub preview: bool,
    /// Most devices one user may register.
    pub max_devices: u32,
    /// Pushes in flight at once per node.
    pub concurrency: usize,
    /// The delay after a push's first failure; it doubles with each
    /// failure...
    pub retry_base_ms: u64,
    /// ...up to this.
    pub retry_max_ms: u64,
    /// A push still failing after this long is given up (a late
    /// notification is worth little).
    pub max_age_secs: u64,
    /// How often each node looks for due pushes besides its wake-ups.
    pub poll_ms: u64,
    /// How long a node holds a push it took (more than two provider
    /// deadlines).
    pub lease_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fcm: Option<FcmConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apns: Option<ApnsConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webpush: Option<WebPushConfig>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            preview: true,
            max_devices: 20,
            concurrency: 64,
            retry_base_ms: 1_000,
            retry_max_ms: 60_000,
            max_age_secs: 3_600,
            poll_ms: 1_000,
            lease_ms: 60_000,
            webhook: None,
            fcm: None,
            apns: None,
            webpush: None,
        }
    }
}

impl PushConfig {
    /// The providers' tables, as `tern_push` builds them.
    pub fn providers(&self) -> ProvidersConfig {
        ProvidersConfig {
            webhook: self.webhook.clone(),
            fcm: self.fcm.clone(),
            apns: self.apns.clone(),
            webpush: self.webpush.clone(),
        }
    }

    /// Whether any provider is configured.
    pub fn enabled(&self) -> bool {
        self.webhook.is_some()
            || self.fcm.is_some()
            || self.apns.is_some()
            || self.webpush.is_some()
    }

    pub fn check(&self) -> Result<(), String> {
        if !(1..=1000).contains(&self.max_devices) {
            return Err("push.max_devices must be 1-1000".into());
        }
        if !(1..=10_000).contains(&self.concurrency) {
            return Err("push.concurrency must be 1-10000".into());
        }
        if self.retry_base_ms < 10 || self.retry_max_ms < self.retry_base_ms {
            return Err("push.retry_base_ms must be >= 10 and push.retry_max_ms >= it".into());
        }
        if !(10..=7 * 86_400).contains(&self.max_age_secs) {
            return Err("push.max_age_secs must be 10 to 604800 (a week)".into());
        }
        if !(10..=60_000).contains(&self.poll_ms) {
            return Err("push.poll_ms must be 10-60000".into());
        }
        // One run is a few store calls and one provider call bounded by
        // tern_push::CALL_TIMEOUT: the lease outlives two of them.
        let min_lease = 2 * tern_push::CALL_TIMEOUT.as_millis() as u64;
        if self.lease_ms <= min_lease {
            return Err(format!(
                "push.lease_ms must be more than {min_lease} (two provider deadlines)"
            ));
        }
        // Each provider's own checks (URLs, keys, secrets) run when they
        // are built at start-up.
        tern_push::Providers::from_config(&self.providers()).map(|_| ())
    }
}
