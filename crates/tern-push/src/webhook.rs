//! The generic provider (`"provider":"webhook"`): a signed POST of
//! `{"user","device","token","conv","seq","from","preview"?,"badge"}` to
//! `push.webhook.url` (PROTOCOL 5.7). 2xx is done; 410 means the receiver
//! no longer knows the device (its registration is removed); 429, 5xx and
//! transport errors are retried by the caller.

use serde::{Deserialize, Serialize};

use crate::{sign, Device, Notification, Provider, ProviderKind, PushError};

/// `[push.webhook]`.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// At least 32 bytes; signs each POST like webhooks (`Tern-Signature`).
    pub secret: String,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

pub struct Webhook {
    url: reqwest::Url,
    secret: Vec<u8>,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(config: &WebhookConfig) -> Result<Webhook, String> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| format!("push.webhook.url: {e}"))?;
        if config.secret.len() < 32 {
            return Err("push.webhook.secret must be at least 32 bytes".into());
        }
        Ok(Webhook {
            url,
            secret: config.secret.as_bytes().to_vec(),
            http: crate::http_client(reqwest::Client::builder())?,
        })
    }
}

#[derive(Serialize)]
struct Body<'a> {
    user: &'a str,
    device: &'a str,
    token: Option<&'a str>,
    conv: &'a str,
    seq: u64,
    from: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    preview: Option<&'a str>,
    badge: u64,
}

#[async_trait::async_trait]
impl Provider for Webhook {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Webhook
    }

    async fn send(&self, device: &Device, note: &Notification) -> Result<(), PushError> {
        let body = serde_json::to_vec(&Body {
            user: &device.user,
            device: &device.device,
            token: device.token.as_deref(),
            conv: &note.conv,
            seq: note.seq,
            from: &note.from,
            preview: note.preview.as_deref(),
            badge: note.badge,
        })
        .map_err(|e| PushError::Refused(e.to_string()))?;
        let signature = sign::header_value(&self.secret, crate::now_secs(), &body);
        let resp = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(sign::HEADER, signature)
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
        Err(PushError::from_status(status, &headers, &text, &[410]))
    }
}
