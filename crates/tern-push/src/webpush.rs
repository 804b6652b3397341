//! Web Push: RFC 8030 delivery to the subscription's endpoint, the payload
//! encrypted for the browser (RFC 8291, `aes128gcm`), the server identified
//! by VAPID (RFC 8292: an ES256 JWT with `aud` the endpoint's origin, and
//! the server's public key, in `Authorization: vapid t=.., k=..`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::pkcs8::EncodePrivateKey as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Device, Notification, Provider, ProviderKind, PushError};

/// How long a push service keeps an undelivered push (`TTL`, seconds).
const TTL_SECS: u64 = 24 * 3600;
/// The longest preview put in a payload: push services take about 4 KB.
const PREVIEW_MAX_CHARS: usize = 1000;

/// `[push.webpush]`.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebPushConfig {
    /// The VAPID private key: 32 bytes, base64url (as `web-push
    /// generate-vapid-keys` prints it).
    pub vapid_key: String,
    /// A contact for the push services: `mailto:` or an `https:` URL.
    pub subject: String,
}

impl std::fmt::Debug for WebPushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPushConfig")
            .field("vapid_key", &"<redacted>")
            .field("subject", &self.subject)
            .finish()
    }
}

pub struct WebPush {
    key: jsonwebtoken::EncodingKey,
    /// The VAPID public key, uncompressed point, base64url: browsers
    /// subscribe with it (`applicationServerKey`).
    public_key: String,
    subject: String,
    http: reqwest::Client,
}

impl WebPush {
    pub fn new(config: &WebPushConfig) -> Result<WebPush, String> {
        let raw = URL_SAFE_NO_PAD
            .decode(config.vapid_key.trim().trim_end_matches('='))
            .map_err(|_| "push.webpush.vapid_key is not base64url")?;
        let secret = p256::SecretKey::from_slice(&raw)
            .map_err(|_| "push.webpush.vapid_key is not a P-256 private key (32 bytes)")?;
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| format!("push.webpush.vapid_key: {e}"))?;
        let key = jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes());
        let public_key = URL_SAFE_NO_PAD.encode(
            p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &secret.public_key(),
                false,
            )
            .as_bytes(),
        );
        if !(config.subject.starts_with("mailto:") || config.subject.starts_with("https://")) {
            return Err("push.webpush.subject must be a mailto: or https: URL".into());
        }
        Ok(WebPush {
            key,
            public_key,
            subject: config.subject.clone(),
            http: crate::http_client(reqwest::Client::builder())?,
        })
    }

    /// The VAPID public key browsers subscribe with (base64url).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    fn vapid(&self, endpoint: &reqwest::Url) -> Result<String, PushError> {
        #[derive(Serialize)]
        struct Claims<'a> {
            aud: String,
            exp: u64,
            sub: &'a str,
        }
        let claims = Claims {
            aud: endpoint.origin().ascii_serialization(),
            exp: crate::now_secs() + 12 * 3600,
            sub: &self.subject,
        };
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &self.key,
        )
        .map_err(|e| PushError::Refused(format!("vapid: {e}")))?;
        Ok(format!("vapid t={jwt}, k={}", self.public_key))
    }

    fn payload(note: &Notification) -> Vec<u8> {
        let body: String = note.body().chars().take(PREVIEW_MAX_CHARS).collect();
        serde_json::to_vec(&json!({
            "title": note.title,
            "body": body,
            "conv": note.conv,
            "seq": note.seq,
            "from": note.from,
            "badge": note.badge,
        }))
        .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Provider for WebPush {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Webpush
    }

    async fn send(&self, device: &Device, note: &Notification) -> Result<(), PushError> {
        let endpoint = device
            .endpoint
            .as_deref()
            .and_then(|e| reqwest::Url::parse(e).ok())
            .ok_or_else(|| PushError::Gone("no endpoint".into()))?;
        let keys = device
            .keys
            .as_ref()
            .ok_or_else(|| PushError::Gone("no keys".into()))?;
        let (public, auth) = keys.decode().map_err(PushError::Gone)?;
        let body = web_push_native::encrypt(WebPush::payload(note), &public, &auth)
            .map_err(|e| PushError::Refused(format!("encrypt: {e}")))?;
        let resp = self
            .http
            .post(endpoint.clone())
            .header("TTL", TTL_SECS)
            .header("Urgency", "high")
            .header("Topic", note.collapse_key())
            .header(reqwest::header::CONTENT_ENCODING, "aes128gcm")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::AUTHORIZATION, self.vapid(&endpoint)?)
            .body(body)
            .send()
            .await
            .map_err(crate::transport)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Err(PushError::from_status(status, &headers, &text, &[404, 410]))
    }
}
