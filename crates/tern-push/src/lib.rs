//! Offline push providers (PROTOCOL 5.5): how one notification reaches one
//! registered device through its provider. Who gets a push, when, and how
//! often is decided elsewhere (the core's push rule and the durable job
//! queue); this crate only speaks the providers' protocols:
//!
//! - `fcm`: Firebase Cloud Messaging HTTP v1, with an OAuth 2.0 access token
//!   obtained from a service account's signed JWT (RS256);
//! - `apns`: Apple Push Notification service over HTTP/2 with a token-based
//!   (ES256) provider JWT;
//! - `webpush`: RFC 8030 Web Push with RFC 8291 payload encryption and
//!   RFC 8292 VAPID;
//! - `webhook`: a signed POST of the notification as JSON (the generic
//!   provider), signed like Tern's webhooks (`sign`).
//!
//! Every provider's endpoint is configurable, so tests run each against a
//! local server that speaks its protocol.

mod apns;
mod fcm;
pub mod sign;
mod webhook;
mod webpush;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use apns::{Apns, ApnsConfig};
pub use fcm::{Fcm, FcmConfig};
pub use webhook::{Webhook, WebhookConfig};
pub use webpush::{WebPush, WebPushConfig};

/// How long a provider call may take before it counts as failed (and is
/// retried by the caller).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The providers a device may register with (`"provider"` of
/// `PUT /v1/push/{device}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Fcm,
    Apns,
    Webpush,
    Webhook,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Fcm => "fcm",
            ProviderKind::Apns => "apns",
            ProviderKind::Webpush => "webpush",
            ProviderKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<ProviderKind> {
        Some(match s {
            "fcm" => ProviderKind::Fcm,
            "apns" => ProviderKind::Apns,
            "webpush" => ProviderKind::Webpush,
            "webhook" => ProviderKind::Webhook,
            _ => return None,
        })
    }
}

/// A Web Push subscription's keys, as the browser's `PushSubscription`
/// gives them (base64url).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebPushKeys {
    pub p256dh: String,
    pub auth: String,
}

impl WebPushKeys {
    /// The browser's public key and auth secret.
    pub fn decode(&self) -> Result<(p256::PublicKey, web_push_native::Auth), String> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let public = URL_SAFE_NO_PAD
            .decode(self.p256dh.trim_end_matches('='))
            .ok()
            .and_then(|b| p256::PublicKey::from_sec1_bytes(&b).ok())
            .ok_or("webpush keys.p256dh is not a P-256 public key (base64url)")?;
        let auth = URL_SAFE_NO_PAD
            .decode(self.auth.trim_end_matches('='))
            .ok()
            .filter(|b| b.len() == 16)
            .ok_or("webpush keys.auth is not 16 bytes (base64url)")?;
        let mut secret = web_push_native::Auth::default();
        secret.copy_from_slice(&auth);
        Ok((public, secret))
    }
}

/// One device's registration: where its provider delivers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub user: String,
    pub device: String,
    pub provider: ProviderKind,
    /// FCM registration token, APNs device token, or the generic
    /// provider's opaque token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Web Push: the subscription's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Web Push: the subscription's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<WebPushKeys>,
}

impl Device {
    /// Whether the registration names what its provider needs; checked
    /// when a device registers.
    pub fn check(&self) -> Result<(), String> {
        let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        match self.provider {
            ProviderKind::Fcm | ProviderKind::Apns | ProviderKind::Webhook if !has(&self.token) => {
                Err(format!("{} needs a token", self.provider.as_str()))
            }
            ProviderKind::Webpush => {
                let endpoint = self.endpoint.as_deref().unwrap_or("");
                let uri: http::Uri = endpoint
                    .parse()
                    .map_err(|_| "webpush needs an endpoint URL".to_owned())?;
                if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
                    return Err("webpush needs an endpoint URL".into());
                }
                let keys = self.keys.as_ref().ok_or("webpush needs keys")?;
                keys.decode().map(|_| ())
            }
            _ => Ok(()),
        }
    }
}

/// What one push says. `title` and `preview` are made by the caller (the
/// sender's name, the message text unless previews are off).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub conv: String,
    pub seq: u64,
    pub from: String,
    pub title: String,
    pub preview: Option<String>,
    /// The user's `total_unread`.
    pub badge: u64,
}

impl Notification {
    /// The text shown: the preview, or a neutral line when previews are off.
    pub fn body(&self) -> &str {
        self.preview.as_deref().unwrap_or("New message")
    }

    /// A short collapse key for the conversation, for providers that bound
    /// it (APNs 64 bytes, Web Push `Topic` 32 base64url characters): the
    /// first 24 bytes of the conversation id's SHA-256, base64url.
    pub fn collapse_key(&self) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.conv.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..24])
    }
}

/// Why a push did not go out.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The provider says this registration is no longer valid: remove it.
    #[error("registration no longer valid: {0}")]
    Gone(String),
    /// Worth trying again later (network, timeout, 429, 5xx); `after` is
    /// the provider's `Retry-After` when it gave one.
    #[error("temporary failure: {reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Will not succeed as is (the request was refused, or this provider
    /// is not configured): do not retry.
    #[error("push refused: {0}")]
    Refused(String),
}

impl PushError {
    fn retry(reason: impl std::fmt::Display) -> PushError {
        PushError::Retry {
            reason: reason.to_string(),
            after: None,
        }
    }

    /// Sorts an HTTP answer that is not a success: 429 and 5xx are
    /// temporary (with `Retry-After` when given), `gone` statuses mean the
    /// registration is dead, the rest is refused.
    fn from_status(
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &str,
        gone: &[u16],
    ) -> PushError {
        let reason = format!("{status}: {}", body.chars().take(300).collect::<String>());
        if gone.contains(&status.as_u16()) {
            PushError::Gone(reason)
        } else if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
            PushError::Retry {
                reason,
                after: retry_after(headers),
            }
        } else {
            PushError::Refused(reason)
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by these
/// providers).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

fn transport(e: reqwest::Error) -> PushError {
    PushError::retry(format!("transport: {e}"))
}

/// One provider's protocol.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Sends `note` to `device` (whose `provider` is this one).
    async fn send(&self, device: &Device, note: &Notification) -> Result<(), PushError>;
}

/// The `[push]` configuration's providers (PROTOCOL 5.7); each is optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    #[serde(default)]
    pub fcm: Option<FcmConfig>,
    #[serde(default)]
    pub apns: Option<ApnsConfig>,
    #[serde(default)]
    pub webpush: Option<WebPushConfig>,
}

/// The configured providers, by kind.
#[derive(Clone, Default)]
pub struct Providers {
    by_kind: HashMap<ProviderKind, Arc<dyn Provider>>,
    /// The VAPID public key, when Web Push is configured.
    webpush_key: Option<String>,
}

impl Providers {
    /// Builds every configured provider; an error names the provider and
    /// what is wrong with its configuration (checked at start-up).
    pub fn from_config(config: &ProvidersConfig) -> Result<Providers, String> {
        let mut p = Providers::default();
        if let Some(c) = &config.webhook {
            p.add(Arc::new(Webhook::new(c)?));
        }
        if let Some(c) = &config.fcm {
            p.add(Arc::new(Fcm::new(c)?));
        }
        if let Some(c) = &config.apns {
            p.add(Arc::new(Apns::new(c)?));
        }
        if let Some(c) = &config.webpush {
            let w = WebPush::new(c)?;
            p.webpush_key = Some(w.public_key().to_owned());
            p.add(Arc::new(w));
        }
        Ok(p)
    }

    pub fn add(&mut self, provider: Arc<dyn Provider>) {
        self.by_kind.insert(provider.kind(), provider);
    }

    pub fn get(&self, kind: ProviderKind) -> Option<&Arc<dyn Provider>> {
        self.by_kind.get(&kind)
    }

    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }

    /// The configured kinds, in a fixed order.
    pub fn kinds(&self) -> Vec<ProviderKind> {
        [
            ProviderKind::Fcm,
            ProviderKind::Apns,
            ProviderKind::Webpush,
            ProviderKind::Webhook,
        ]
        .into_iter()
        .filter(|k| self.by_kind.contains_key(k))
        .collect()
    }

    /// The VAPID public key browsers subscribe with (base64url, an
    /// uncompressed P-256 point), when Web Push is configured.
    pub fn webpush_public_key(&self) -> Option<&str> {
        self.webpush_key.as_deref()
    }

    /// Sends through `device`'s provider; `Refused` when that provider is
    /// not configured on this server.
    pub async fn send(&self, device: &Device, note: &Notification) -> Result<(), PushError> {
        match self.get(device.provider) {
            Some(p) => p.send(device, note).await,
            None => Err(PushError::Refused(format!(
                "provider {} is not configured",
                device.provider.as_str()
            ))),
        }
    }
}

/// A configuration value that is either the thing itself or a path to a
/// file holding it (`looks_inline` tells which).
fn inline_or_file(value: &str, looks_inline: bool, what: &str) -> Result<String, String> {
    if looks_inline {
        Ok(value.to_owned())
    } else {
        std::fs::read_to_string(value).map_err(|e| format!("{what}: cannot read {value}: {e}"))
    }
}

/// The HTTP client every provider starts from: rustls, bounded time.
fn http_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, String> {
    builder
        .timeout(CALL_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("http client: {e}"))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
