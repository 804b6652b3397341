//! Apple Push Notification service: `POST {endpoint}/3/device/{token}`
//! over HTTP/2, authenticated by a provider token: a JWT signed with the
//! team's ES256 key (`kid` the key id, `iss` the team id, `iat`), made
//! anew every 30 minutes (Apple refuses tokens older than an hour and
//! asks that they are not renewed more often than every 20 minutes).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Device, Notification, Provider, ProviderKind, PushError};

const DEFAULT_ENDPOINT: &str = "https://api.push.apple.com";
const TOKEN_LIFE: Duration = Duration::from_secs(30 * 60);

/// `[push.apns]`.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// The `.p8` signing key: its PEM text, or the file's path.
    pub key: String,
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
}

impl std::fmt::Debug for ApnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("endpoint", &self.endpoint)
            .field("key", &"<redacted>")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .finish()
    }
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_owned()
}

pub struct Apns {
    base: String,
    key: jsonwebtoken::EncodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    http: reqwest::Client,
    token: parking_lot::Mutex<Option<(String, Instant)>>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

impl Apns {
    pub fn new(config: &ApnsConfig) -> Result<Apns, String> {
        let pem = crate::inline_or_file(
            &config.key,
            config.key.contains("-----BEGIN"),
            "push.apns.key",
        )?;
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| format!("push.apns.key: not an EC (P-256) key in PEM: {e}"))?;
        for (name, v) in [
            ("key_id", &config.key_id),
            ("team_id", &config.team_id),
            ("topic", &config.topic),
        ] {
            if v.is_empty() {
                return Err(format!("push.apns.{name} is empty"));
            }
        }
        let base = config.endpoint.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).map_err(|e| format!("push.apns.endpoint: {e}"))?;
        // APNs speaks only HTTP/2: negotiated by ALPN over TLS; a plain
        // `http://` endpoint (a local test server) gets it with prior
        // knowledge.
        let mut builder = reqwest::Client::builder();
        if url.scheme() == "http" {
            builder = builder.http2_prior_knowledge();
        }
        Ok(Apns {
            base,
            key,
            key_id: config.key_id.clone(),
            team_id: config.team_id.clone(),
            topic: config.topic.clone(),
            http: crate::http_client(builder)?,
            token: parking_lot::Mutex::new(None),
        })
    }

    /// The provider token, made anew when older than `TOKEN_LIFE` or when
    /// `stale` is the one APNs just refused.
    fn provider_token(&self, stale: Option<&str>) -> Result<String, PushError> {
        let mut held = self.token.lock();
        if let Some((token, made)) = held.as_ref() {
            if made.elapsed() < TOKEN_LIFE && stale != Some(token.as_str()) {
                return Ok(token.clone());
            }
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.team_id,
            iat: crate::now_secs(),
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| PushError::Refused(format!("apns token: {e}")))?;
        *held = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    fn payload(note: &Notification) -> serde_json::Value {
        json!({
            "aps": {
                "alert": { "title": note.title, "body": note.body() },
                "badge": note.badge,
                "sound": "default",
                "thread-id": note.conv,
            },
            "conv": note.conv,
            "seq": note.seq,
            "from": note.from,
        })
    }
}

/// APNs's error body: `{"reason": "..."}`.
fn reason(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Provider for Apns {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Apns
    }

    async fn send(&self, device: &Device, note: &Notification) -> Result<(), PushError> {
        let device_token = device.token.as_deref().unwrap_or_default();
        if device_token.is_empty() || !device_token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PushError::Gone("not an APNs device token".into()));
        }
        let url = format!("{}/3/device/{device_token}", self.base);
        let payload = serde_json::to_vec(&Apns::payload(note))
            .map_err(|e| PushError::Refused(e.to_string()))?;
        let mut token = self.provider_token(None)?;
        for attempt in 0..2 {
            let resp = self
                .http
                .post(&url)
                .header("authorization", format!("bearer {token}"))
                .header("apns-topic", &self.topic)
                .header("apns-push-type", "alert")
                .header("apns-priority", "10")
                .header("apns-collapse-id", note.collapse_key())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(payload.clone())
                .send()
                .await
                .map_err(crate::transport)?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let headers = resp.headers().clone();
            let text = resp.text().await.unwrap_or_default();
            let why = reason(&text);
            if status.as_u16() == 403 && why == "ExpiredProviderToken" && attempt == 0 {
                token = self.provider_token(Some(&token))?;
                continue;
            }
            if status.as_u16() == 410
                || matches!(
                    why.as_str(),
                    "BadDeviceToken" | "Unregistered" | "DeviceTokenNotForTopic"
                )
            {
                return Err(PushError::Gone(format!("{status}: {why}")));
            }
            return Err(PushError::from_status(status, &headers, &text, &[]));
        }
        Err(PushError::retry("apns: provider token refused twice"))
    }
}
