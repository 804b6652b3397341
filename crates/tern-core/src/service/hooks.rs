//! 5.6 integrations in the core: the before-send hook on the sender's own
//! request, and the events after their commit (webhook jobs; the
//! `message.created` ones are written by the append pipeline in the
//! message's own transaction).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tern_proto::frames::check_kind_content;
use tern_proto::ErrorCode;
use tokio::sync::Semaphore;

use super::Core;
use crate::error::{CoreError, CoreResult};
use crate::integrations::{event_jobs, new_event_id, read_verdict, Integrations, Verdict};
use crate::jobs::JobRunner;
use crate::notifications::{PushJobs, PUSH_JOB};
use crate::now_ms;
use crate::presence::Presence;
use crate::store::{NewMessage, Store, StoredMessage};

/// This node's integrations: the before-send hook's slots, the webhook
/// runner and the offline push runner (5.5).
pub(crate) struct Hooks {
    pub cfg: Integrations,
    slots: Semaphore,
    pub runner: Option<JobRunner>,
    pub push: Option<JobRunner>,
}

impl Hooks {
    pub fn start(
        cfg: Integrations,
        store: &Arc<dyn Store>,
        presence: &Arc<dyn Presence>,
        write_limit: usize,
    ) -> Hooks {
        let runner = match (&cfg.poster, &cfg.delivery) {
            (Some(poster), Some(policy)) if !cfg.webhooks.is_empty() => Some(JobRunner::start(
                store.clone(),
                crate::integrations::WEBHOOK_JOB,
                Arc::new(crate::integrations::WebhookJobs {
                    store: store.clone(),
                    poster: poster.clone(),
                    urls: cfg.webhooks.iter().map(|w| w.url.clone()).collect(),
                }),
                policy.clone(),
            )),
            _ => None,
        };
        let push = cfg.push.as_ref().map(|p| {
            JobRunner::start(
                store.clone(),
                PUSH_JOB,
                Arc::new(PushJobs {
                    store: store.clone(),
                    presence: presence.clone(),
                    cfg: p.clone(),
                    write_limit,
                }),
                p.delivery.clone(),
            )
        });
        let slots = Semaphore::new(cfg.before_send.as_ref().map_or(0, |b| b.concurrency));
        Hooks {
            cfg,
            slots,
            runner,
            push,
        }
    }
}

impl Core {
    /// The before-send hook's decision about a message about to be stored
    /// (nothing without a hook): `rejected`, or its content rewritten and
    /// checked like any content. Only this request waits, at most the
    /// hook's deadline; when that many calls wait already, the configured
    /// default applies at once.
    pub(super) async fn before_send(&self, msg: &mut NewMessage) -> CoreResult<()> {
        let Some(h) = &self.hooks.cfg.before_send else {
            return Ok(());
        };
        let verdict = match self.hooks.slots.try_acquire() {
            Err(_) => {
                metrics::counter!("tern_before_send_total", "result" => "busy").increment(1);
                None
            }
            Ok(_slot) => {
                let body = hook_body(msg);
                match tokio::time::timeout(h.timeout, h.hook.call(body)).await {
                    Ok(Ok(answer)) => {
                        let v = read_verdict(&answer);
                        if v.is_none() {
                            metrics::counter!("tern_before_send_total", "result" => "bad_answer")
                                .increment(1);
                            tracing::warn!("before-send hook answered something else");
                        }
                        v
                    }
                    Ok(Err(e)) => {
                        metrics::counter!("tern_before_send_total", "result" => "error")
                            .increment(1);
                        tracing::warn!(error = %e, "before-send hook failed");
                        None
                    }
                    Err(_) => {
                        metrics::counter!("tern_before_send_total", "result" => "timeout")
                            .increment(1);
                        tracing::warn!("before-send hook timed out");
                        None
                    }
                }
            }
        };
        let verdict = match verdict {
            Some(v) => {
                metrics::counter!("tern_before_send_total", "result" => "answered").increment(1);
                v
            }
            None if h.reject_on_error => {
                return Err(CoreError::new(
                    ErrorCode::Rejected,
                    "the message could not be checked",
                ))
            }
            None => Verdict::Allow,
        };
        match verdict {
            Verdict::Allow => Ok(()),
            Verdict::Reject(reason) => Err(CoreError::new(ErrorCode::Rejected, reason)),
            Verdict::Rewrite(content) => {
                let raw = serde_json::value::RawValue::from_string(content)
                    .map_err(|_| CoreError::invalid("the rewritten content is not JSON"))?;
                check_kind_content(&msg.kind, &raw).map_err(|e| {
                    CoreError::invalid(format!("the rewritten content is refused: {e}"))
                })?;
                if raw.get().len() > self.cfg.content_bytes {
                    return Err(CoreError::new(
                        ErrorCode::ContentTooLarge,
                        format!("rewritten content is over {} bytes", self.cfg.content_bytes),
                    ));
                }
                msg.content = raw.get().to_owned();
                Ok(())
            }
        }
    }

    /// Enqueues an event for the webhooks that want it, after the change
    /// it tells of was committed (a crash between the two loses it: see
    /// docs/design/integrations.md).
    pub(super) async fn emit(&self, event: &str, data: Value) {
        if !self.hooks.cfg.wants(event) {
            return;
        }
        let jobs = event_jobs(
            &self.hooks.cfg.webhooks,
            event,
            &new_event_id(event),
            now_ms(),
            data,
        );
        match self.store.enqueue_jobs(&jobs).await {
            Ok(()) => self.wake_jobs(),
            Err(e) => {
                metrics::counter!("tern_webhook_enqueue_failures_total").increment(1);
                tracing::error!(event, error = %e, "webhook event not enqueued");
            }
        }
    }

    /// A message event (`message.edited`, `message.recalled`): the message
    /// as history shows it.
    pub(super) async fn emit_message(&self, event: &str, m: &StoredMessage) {
        if !self.hooks.cfg.wants(event) {
            return;
        }
        let data = serde_json::to_value(crate::frame::msg_view(m)).unwrap_or(Value::Null);
        self.emit(event, data).await;
    }

    /// A membership event (`member.joined`, `member.left`).
    pub(super) async fn emit_member(&self, event: &str, gid: &str, user: &str, by: &str, seq: u64) {
        if !self.hooks.cfg.wants(event) {
            return;
        }
        self.emit(
            event,
            json!({"group": gid, "conv": format!("group:{gid}"), "user": user, "by": by, "seq": seq}),
        )
        .await;
    }

    /// Webhook or push jobs were enqueued.
    pub(super) fn wake_jobs(&self) {
        if let Some(r) = &self.hooks.runner {
            r.wake();
        }
        if let Some(r) = &self.hooks.push {
            r.wake();
        }
    }

    /// Stops this node's job runners (at shutdown), waiting up to `bound`
    /// for deliveries in hand.
    pub async fn stop_jobs(&self, bound: Duration) {
        let end = tokio::time::Instant::now() + bound;
        for r in [&self.hooks.runner, &self.hooks.push].into_iter().flatten() {
            r.shutdown(end.saturating_duration_since(tokio::time::Instant::now()))
                .await;
        }
    }
}

/// What the before-send hook is sent (docs/PROTOCOL-NOTES.md).
fn hook_body(m: &NewMessage) -> bytes::Bytes {
    let content: Value = serde_json::from_str(&m.content).unwrap_or(Value::Null);
    let mut body = json!({
        "from": m.from,
        "conv": m.conv,
        "kind": m.kind,
        "content": content,
        "client_msg_id": m.client_msg_id,
    });
    if let Some(to) = &m.to {
        body["to"] = json!(to);
    }
    if let Some(g) = &m.group {
        body["group"] = json!(g);
    }
    if let Some(r) = m.extras.reply_to {
        body["reply_to"] = json!(r);
    }
    if !m.extras.mentions.is_empty() {
        body["mentions"] = json!(m.extras.mentions);
    }
    bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}
