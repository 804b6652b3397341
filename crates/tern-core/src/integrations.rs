//! PROTOCOL 5.6: webhooks and the before-send hook, as the core sees
//! them. The core decides which events go to which webhook (durable jobs,
//! [`crate::jobs`]) and what a before-send answer does; the HTTP calls
//! themselves are the server's ([`WebhookPoster`], [`BeforeSend`]): the
//! core knows no HTTP client.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::jobs::{JobHandler, JobPolicy};
use crate::store::{Job, NewJob, Store};

/// The job kind of webhook deliveries.
pub const WEBHOOK_JOB: &str = "webhook";

/// Every event a webhook may receive.
pub const EVENTS: [&str; 6] = [
    MESSAGE_CREATED,
    "message.edited",
    "message.recalled",
    "member.joined",
    "member.left",
    "user.created",
];
pub const MESSAGE_CREATED: &str = "message.created";

/// One configured webhook.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    /// The events it receives; empty: every event.
    pub events: Vec<String>,
}

impl WebhookTarget {
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }

    /// A short stable name of the URL for job keys (FNV-1a, 64 bits).
    fn tag(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.url.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// Sends one webhook body (the server signs it). `Ok` on a 2xx answer.
#[async_trait]
pub trait WebhookPoster: Send + Sync + 'static {
    async fn post(&self, url: &str, body: Bytes) -> Result<(), String>;
}

/// Calls the before-send hook with a body; the answer's body on a 2xx
/// answer. The core bounds the wait and reads the answer.
#[async_trait]
pub trait BeforeSend: Send + Sync + 'static {
    async fn call(&self, body: Bytes) -> Result<Bytes, String>;
}

/// The before-send hook and what applies when it fails.
#[derive(Clone)]
pub struct BeforeSendConfig {
    pub hook: Arc<dyn BeforeSend>,
    pub timeout: Duration,
    /// On timeout, error, a bad answer or too many calls at once: reject
    /// (`true`) or allow.
    pub reject_on_error: bool,
    /// Most calls waiting on the hook at once on this node.
    pub concurrency: usize,
}

/// The 5.6 integrations a core runs; the default has none.
#[derive(Clone, Default)]
pub struct Integrations {
    pub webhooks: Vec<WebhookTarget>,
    /// Required when `webhooks` is not empty.
    pub poster: Option<Arc<dyn WebhookPoster>>,
    pub delivery: Option<JobPolicy>,
    pub before_send: Option<BeforeSendConfig>,
    /// 5.5 offline push; `None`: off (no push jobs are written).
    pub push: Option<crate::notifications::PushConfig>,
}

impl std::fmt::Debug for Integrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integrations")
            .field("webhooks", &self.webhooks)
            .field("delivery", &self.delivery)
            .field("before_send", &self.before_send.is_some())
            .field("push", &self.push)
            .finish()
    }
}

impl Integrations {
    /// Whether a webhook wants `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.webhooks.iter().any(|w| w.wants(event))
    }
}

/// The jobs of one event: one per webhook that wants it, each keyed by
/// the event's id and the webhook, each holding the event (its `data`
/// given, or for `message.created` the message's id, read at delivery).
pub fn event_jobs(
    webhooks: &[WebhookTarget],
    event: &str,
    id: &str,
    ts: i64,
    data: Value,
) -> Vec<NewJob> {
    webhooks
        .iter()
        .filter(|w| w.wants(event))
        .map(|w| NewJob {
            kind: WEBHOOK_JOB.to_owned(),
            key: format!("{id}@{}", w.tag()),
            payload: json!({"url": w.url, "event": event, "id": id, "ts": ts, "data": data})
                .to_string(),
            created_at: ts,
            due_at: ts,
        })
        .collect()
}

/// The id of the `message.created` event of a message.
pub fn created_id(msg_id: u64) -> String {
    format!("{MESSAGE_CREATED}-{msg_id}")
}

/// A fresh event id: the event's name and 32 random hex digits.
pub fn new_event_id(event: &str) -> String {
    format!("{event}-{:032x}", rand::random::<u128>())
}

/// The jobs of a message's `message.created` event (its data is read from
/// the store when delivered: the message as history shows it then).
pub fn created_jobs(webhooks: &[WebhookTarget], msg_id: u64, ts: i64) -> Vec<NewJob> {
    event_jobs(
        webhooks,
        MESSAGE_CREATED,
        &created_id(msg_id),
        ts,
        json!({"msg_id": msg_id}),
    )
}

#[derive(Deserialize)]
struct Payload {
    url: String,
    event: String,
    id: String,
    ts: i64,
    data: Value,
}

/// Delivers webhook jobs: builds the body `{"event","id","ts","data"}` and
/// hands it to the poster.
pub struct WebhookJobs {
    pub store: Arc<dyn Store>,
    pub poster: Arc<dyn WebhookPoster>,
    /// The URLs configured now: a job for a webhook since removed is
    /// dropped.
    pub urls: Vec<String>,
}

#[async_trait]
impl JobHandler for WebhookJobs {
    async fn run(&self, job: &Job) -> Result<(), String> {
        let p: Payload = match serde_json::from_str(&job.payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(key = %job.key, error = %e, "unreadable webhook job dropped");
                return Ok(());
            }
        };
        if !self.urls.contains(&p.url) {
            tracing::info!(url = %p.url, "webhook no longer configured: event dropped");
            return Ok(());
        }
        let data = if p.event == MESSAGE_CREATED {
            let Some(msg_id) = p.data.get("msg_id").and_then(Value::as_u64) else {
                return Ok(());
            };
            match self.store.message_by_id(msg_id).await {
                Ok(Some(m)) => {
                    serde_json::to_value(crate::frame::msg_view(&m)).map_err(|e| e.to_string())?
                }
                Ok(None) => {
                    tracing::warn!(msg_id, "message of a webhook event is gone: dropped");
                    return Ok(());
                }
                Err(e) => return Err(format!("store: {e}")),
            }
        } else {
            p.data
        };
        let body = json!({"event": p.event, "id": p.id, "ts": p.ts, "data": data});
        let body = Bytes::from(serde_json::to_vec(&body).map_err(|e| e.to_string())?);
        let result = self.poster.post(&p.url, body).await;
        metrics::counter!(
            "tern_webhook_deliveries_total",
            "result" => if result.is_ok() { "ok" } else { "failed" }
        )
        .increment(1);
        result
    }
}

/// What the before-send hook decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Reject(String),
    /// The new content (JSON text).
    Rewrite(String),
}

/// Reads a hook's answer; `None` when it is not one of the three.
pub fn read_verdict(body: &[u8]) -> Option<Verdict> {
    #[derive(Deserialize)]
    struct Answer {
        action: String,
        reason: Option<String>,
        content: Option<Box<serde_json::value::RawValue>>,
    }
    let a: Answer = serde_json::from_slice(body).ok()?;
    match a.action.as_str() {
        "allow" => Some(Verdict::Allow),
        "reject" => Some(Verdict::Reject(a.reason.unwrap_or_default())),
        "rewrite" => Some(Verdict::Rewrite(a.content?.get().to_owned())),
        _ => None,
    }
}
