//! Firebase Cloud Messaging, HTTP v1: `POST
//! {endpoint}/v1/projects/{project_id}/messages:send` with an OAuth 2.0
//! access token. The token comes from the service account: a JWT signed
//! with its RS256 key (`iss` its email, `scope` firebase.messaging, `aud`
//! its `token_uri`) exchanged at `token_uri` for an access token, kept
//! until a minute before it expires.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Device, Notification, Provider, ProviderKind, PushError};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const DEFAULT_ENDPOINT: &str = "https://fcm.googleapis.com";

/// `[push.fcm]`.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The FCM API's base URL.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// The service account key: the JSON file's path, or its contents.
    pub credentials: String,
}

impl std::fmt::Debug for FcmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmConfig")
            .field("endpoint", &self.endpoint)
            .field("credentials", &"<redacted>")
            .finish()
    }
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_owned()
}

/// The parts of a service-account key file used here.
#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key: String,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_owned()
}

pub struct Fcm {
    send_url: reqwest::Url,
    token_uri: String,
    client_email: String,
    key: jsonwebtoken::EncodingKey,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "default_expires_in")]
    expires_in: u64,
}

fn default_expires_in() -> u64 {
    3600
}

impl Fcm {
    pub fn new(config: &FcmConfig) -> Result<Fcm, String> {
        let text = crate::inline_or_file(
            &config.credentials,
            config.credentials.trim_start().starts_with('{'),
            "push.fcm.credentials",
        )?;
        let account: ServiceAccount = serde_json::from_str(&text)
            .map_err(|e| format!("push.fcm.credentials: not a service account key: {e}"))?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| format!("push.fcm.credentials: private_key: {e}"))?;
        let base = config.endpoint.trim_end_matches('/');
        let send_url = reqwest::Url::parse(&format!(
            "{base}/v1/projects/{}/messages:send",
            account.project_id
        ))
        .map_err(|e| format!("push.fcm.endpoint: {e}"))?;
        Ok(Fcm {
            send_url,
            token_uri: account.token_uri,
            client_email: account.client_email,
            key,
            http: crate::http_client(reqwest::Client::builder())?,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The current access token, fetched anew when none is held, it
    /// expires within a minute, or `stale` is the one just refused.
    async fn access_token(&self, stale: Option<&str>) -> Result<String, PushError> {
        let mut held = self.token.lock().await;
        if let Some((token, until)) = held.as_ref() {
            let fresh = *until > Instant::now() + Duration::from_secs(60);
            if fresh && stale != Some(token.as_str()) {
                return Ok(token.clone());
            }
        }
        let iat = crate::now_secs();
        let claims = Assertion {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + 3600,
        };
        let assertion = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| PushError::Refused(format!("fcm assertion: {e}")))?;
        let resp = self
            .http
            .post(&self.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(crate::transport)?;
        let status = resp.status();
        if !status.is_success() {
            let headers = resp.headers().clone();
            let text = resp.text().await.unwrap_or_default();
            // A refused service account is a configuration problem; the
            // caller retries it like any other failure of the provider.
            return Err(match PushError::from_status(status, &headers, &text, &[]) {
                PushError::Refused(r) => PushError::retry(format!("fcm token: {r}")),
                e => e,
            });
        }
        let answer: TokenAnswer = resp
            .json()
            .await
            .map_err(|e| PushError::retry(format!("fcm token answer: {e}")))?;
        let until = Instant::now() + Duration::from_secs(answer.expires_in);
        *held = Some((answer.access_token.clone(), until));
        Ok(answer.access_token)
    }

    fn message(device: &Device, note: &Notification) -> serde_json::Value {
        let token = device.token.as_deref().unwrap_or_default();
        json!({
            "message": {
                "token": token,
                "notification": { "title": note.title, "body": note.body() },
                "data": {
                    "conv": note.conv,
                    "seq": note.seq.to_string(),
                    "from": note.from,
                    "badge": note.badge.to_string(),
                },
                "android": {
                    "collapse_key": note.collapse_key(),
                    "notification": { "tag": note.collapse_key(), "notification_count": note.badge },
                },
                "apns": {
                    "headers": { "apns-collapse-id": note.collapse_key() },
                    "payload": { "aps": { "badge": note.badge } },
                },
            }
        })
    }
}

/// FCM's error body: `{"error":{"code","status","details":[{"errorCode"}]}}`.
fn unregistered(body: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    let err = &v["error"];
    err["status"] == "NOT_FOUND"
        || err["details"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x["errorCode"] == "UNREGISTERED"))
}

#[async_trait::async_trait]
impl Provider for Fcm {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Fcm
    }

    async fn send(&self, device: &Device, note: &Notification) -> Result<(), PushError> {
        let body = Fcm::message(device, note);
        let mut token = self.access_token(None).await?;
        for attempt in 0..2 {
            let resp = self
                .http
                .post(self.send_url.clone())
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .map_err(crate::transport)?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let headers = resp.headers().clone();
            let text = resp.text().await.unwrap_or_default();
            if status.as_u16() == 401 && attempt == 0 {
                // The access token was revoked or expired early.
                token = self.access_token(Some(&token)).await?;
                continue;
            }
            if unregistered(&text) {
                return Err(PushError::Gone(format!("{status}: {text}")));
            }
            return Err(PushError::from_status(status, &headers, &text, &[]));
        }
        Err(PushError::retry("fcm: access token refused twice"))
    }
}
