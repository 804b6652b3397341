//! 5.6 integrations: `[[webhooks]]` and `[hooks]` (the before-send hook,
//! webhook delivery).

use serde::{Deserialize, Serialize};

/// One `[[webhooks]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed (http:// or https://).
    pub url: String,
    /// Signs each body (`Tern-Signature`); at least 32 bytes.
    pub secret: String,
    /// The events it receives; empty or missing: every event.
    #[serde(default)]
    pub events: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    pub before_send: BeforeSendHookConfig,
    pub delivery: WebhookDeliveryConfig,
}

/// What applies when the before-send hook fails.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Allow,
    Reject,
}

/// `[hooks.before_send]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BeforeSendHookConfig {
    /// Empty: no hook.
    pub url: String,
    /// The longest wait for its answer.
    pub timeout_ms: u64,
    /// On timeout, error, a bad answer, or too many calls at once.
    pub on_error: OnError,
    /// Most calls waiting on the hook at once on one node; beyond,
    /// `on_error` applies at once.
    pub concurrency: usize,
}

impl Default for BeforeSendHookConfig {
    fn default() -> Self {
        BeforeSendHookConfig {
            url: String::new(),
            timeout_ms: 500,
            on_error: OnError::Allow,
            concurrency: 256,
        }
    }
}

/// `[hooks.delivery]`: how webhook events are delivered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookDeliveryConfig {
    /// One POST's deadline.
    pub timeout_ms: u64,
    /// POSTs in flight at once per node.
    pub concurrency: usize,
    /// The delay after a first failure; it doubles with each failure...
    pub retry_base_ms: u64,
    /// ...up to this.
    pub retry_max_ms: u64,
    /// An event still failing after this long is given up (at least a day).
    pub max_age_secs: u64,
    /// How often each node looks for due events besides its wake-ups.
    pub poll_ms: u64,
    /// How long a node holds an event it took (more than two deadlines).
    pub lease_ms: u64,
}

impl Default for WebhookDeliveryConfig {
    fn default() -> Self {
        WebhookDeliveryConfig {
            timeout_ms: 10_000,
            concurrency: 16,
            retry_base_ms: 1000,
            retry_max_ms: 600_000,
            max_age_secs: 86_400,
            poll_ms: 1000,
            lease_ms: 60_000,
        }
    }
}

/// Shortest webhook secret.
pub const WEBHOOK_SECRET_MIN_BYTES: usize = 32;

fn http_url(u: &str) -> bool {
    reqwest::Url::parse(u)
        .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host_str().is_some())
}

/// Checks the `[[webhooks]]` and `[hooks]` settings.
pub fn validate(webhooks: &[WebhookConfig], hooks: &HooksConfig) -> Result<(), String> {
    for w in webhooks {
        if !http_url(&w.url) {
            return Err(format!("webhooks.url {:?} is not an http(s) URL", w.url));
        }
        if w.secret.len() < WEBHOOK_SECRET_MIN_BYTES {
            return Err("webhooks.secret must be at least 32 bytes".into());
        }
        if let Some(e) = w
            .events
            .iter()
            .find(|e| !tern_core::integrations::EVENTS.contains(&e.as_str()))
        {
            return Err(format!("webhooks.events: unknown event {e:?}"));
        }
    }
    if webhooks
        .iter()
        .enumerate()
        .any(|(i, w)| webhooks[..i].iter().any(|o| o.url == w.url))
    {
        return Err("webhooks: each url once".into());
    }
    let b = &hooks.before_send;
    if !b.url.is_empty() && !http_url(&b.url) {
        return Err("hooks.before_send.url must be empty or an http(s) URL".into());
    }
    if b.timeout_ms == 0 || b.timeout_ms > 60_000 {
        return Err("hooks.before_send.timeout_ms must be 1 to 60000".into());
    }
    if b.concurrency == 0 || b.concurrency > 100_000 {
        return Err("hooks.before_send.concurrency must be 1 to 100000".into());
    }
    let d = &hooks.delivery;
    if d.timeout_ms == 0 || d.timeout_ms > 300_000 {
        return Err("hooks.delivery.timeout_ms must be 1 to 300000".into());
    }
    if d.concurrency == 0 || d.concurrency > 1024 {
        return Err("hooks.delivery.concurrency must be 1 to 1024".into());
    }
    if d.retry_base_ms == 0 || d.retry_max_ms < d.retry_base_ms || d.retry_max_ms > 86_400_000 {
        return Err(
            "hooks.delivery.retry_base_ms must be > 0 and retry_max_ms between it and 86400000"
                .into(),
        );
    }
    if d.max_age_secs < 86_400 {
        return Err("hooks.delivery.max_age_secs must be at least 86400 (a day)".into());
    }
    if d.poll_ms == 0 || d.poll_ms > 60_000 {
        return Err("hooks.delivery.poll_ms must be 1 to 60000".into());
    }
    if d.lease_ms <= 2 * d.timeout_ms || d.lease_ms > 3_600_000 {
        return Err(
            "hooks.delivery.lease_ms must be above twice timeout_ms and at most 3600000".into(),
        );
    }
    Ok(())
}
