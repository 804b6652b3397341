//! 5.6: the HTTP side of webhooks and the before-send hook (the core
//! decides what is sent and what an answer does: `tern_core::integrations`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tern_core::integrations::{
    BeforeSend, BeforeSendConfig, Integrations, WebhookPoster, WebhookTarget,
};
use tern_core::jobs::JobPolicy;

use crate::config::{Config, OnError};

/// The `Tern-Signature` header's value for `body` sent at `t` (Unix
/// seconds): `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tern/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// POSTs signed webhook bodies.
struct HttpWebhooks {
    client: reqwest::Client,
    secrets: HashMap<String, Vec<u8>>,
}

#[async_trait]
impl WebhookPoster for HttpWebhooks {
    async fn post(&self, url: &str, body: Bytes) -> Result<(), String> {
        let secret = self.secrets.get(url).ok_or("webhook not configured")?;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let sig = signature(secret, t, &body);
        let answer = self
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .header("Tern-Signature", sig)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
}

/// The largest before-send answer read.
const ANSWER_MAX: usize = 1 << 20;

/// Calls the before-send hook.
struct HttpBeforeSend {
    client: reqwest::Client,
    url: String,
}

#[async_trait]
impl BeforeSend for HttpBeforeSend {
    async fn call(&self, body: Bytes) -> Result<Bytes, String> {
        let mut answer = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !answer.status().is_success() {
            return Err(format!("HTTP {}", answer.status().as_u16()));
        }
        let mut out = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(|e| e.to_string())? {
            if out.len() + chunk.len() > ANSWER_MAX {
                return Err("answer too large".into());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }
}

/// The core's integrations as `cfg` configures them.
pub fn from_config(cfg: &Config) -> Integrations {
    let d = &cfg.hooks.delivery;
    let webhooks: Vec<WebhookTarget> = cfg
        .webhooks
        .iter()
        .map(|w| WebhookTarget {
            url: w.url.clone(),
            events: w.events.clone(),
        })
        .collect();
    let poster: Option<Arc<dyn WebhookPoster>> = (!webhooks.is_empty()).then(|| {
        Arc::new(HttpWebhooks {
            client: client(Duration::from_millis(d.timeout_ms)),
            secrets: cfg
                .webhooks
                .iter()
                .map(|w| (w.url.clone(), w.secret.as_bytes().to_vec()))
                .collect(),
        }) as Arc<dyn WebhookPoster>
    });
    let b = &cfg.hooks.before_send;
    let before_send = (!b.url.is_empty()).then(|| {
        let timeout = Duration::from_millis(b.timeout_ms);
        BeforeSendConfig {
            hook: Arc::new(HttpBeforeSend {
                client: client(timeout),
                url: b.url.clone(),
            }),
            timeout,
            reject_on_error: b.on_error == OnError::Reject,
            concurrency: b.concurrency,
        }
    });
    Integrations {
        webhooks,
        poster,
        delivery: Some(JobPolicy {
            concurrency: d.concurrency,
            lease: Duration::from_millis(d.lease_ms),
            poll: Duration::from_millis(d.poll_ms),
            retry_base: Duration::from_millis(d.retry_base_ms),
            retry_max: Duration::from_millis(d.retry_max_ms),
            max_age: Duration::from_secs(d.max_age_secs),
        }),
        before_send,
        // Set by the caller from `[push]` (`crate::push`).
        push: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_of_t_dot_body() {
        // HMAC-SHA256("key", "1.{}"), as Python's hmac module computes it.
        let s = super::signature(b"key", 1, b"{}");
        assert_eq!(
            s,
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
        assert_ne!(s, super::signature(b"key", 2, b"{}"));
        assert_ne!(s, super::signature(b"other", 1, b"{}"));
    }
}
