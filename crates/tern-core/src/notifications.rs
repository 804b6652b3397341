//! PROTOCOL 5.5: offline push, as the core sees it. Which users get a push
//! of a message, when, and with what is decided here; the providers'
//! protocols are the server's ([`Pusher`]): the core knows no HTTP client.
//!
//! Two durable job steps, both of kind [`PUSH_JOB`] on one runner:
//!
//! 1. **message**: written in the message's own append transaction (one
//!    small row per message, only when push is configured). When it runs
//!    it picks the recipients: the other party of a 1:1 message, or the
//!    group's members (in a read-diffused group only those mentioned),
//!    never the sender; those with a device online anywhere are left out,
//!    and each registered device of the others gets a step 2 job.
//! 2. **device**: one per (user, device, conversation), keyed by the three,
//!    written with [`Store::put_jobs`]: while one is pending (queued or
//!    retrying) a newer message replaces its content instead of adding
//!    another (collapsed). When it runs it checks again (online, muted),
//!    reads the message, the sender's name and the user's `total_unread`
//!    (the badge), and calls the provider. `Gone` removes the
//!    registration; `Refused` drops the push; a temporary failure retries.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jobs::{JobHandler, JobPolicy};
use crate::presence::Presence;
use crate::store::{Job, NewJob, PushRegistration, Store, StoredMessage, MENTION_ALL};

/// The job kind of offline pushes.
pub const PUSH_JOB: &str = "push";

/// Most users in one presence query.
const ONLINE_CHUNK: usize = 1000;

/// The longest preview sent, in characters.
pub const PREVIEW_MAX_CHARS: usize = 200;

/// What one push says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushNote {
    pub conv: String,
    pub seq: u64,
    /// The sender's user id.
    pub from: String,
    /// The sender's display name.
    pub title: String,
    /// The message text; `None` when previews are off or the message has
    /// no text.
    pub preview: Option<String>,
    /// The user's `total_unread` when the push is sent.
    pub badge: u64,
}

/// Why a push did not go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushFailure {
    /// The provider no longer knows the device: its registration goes.
    Gone(String),
    /// Temporary: tried again later.
    Retry(String),
    /// Will not succeed: dropped.
    Refused(String),
}

/// Sends one push through the registration's provider (the server's).
#[async_trait]
pub trait Pusher: Send + Sync + 'static {
    async fn send(&self, reg: &PushRegistration, note: &PushNote) -> Result<(), PushFailure>;
}

/// Offline push as configured; push is off without one.
#[derive(Clone)]
pub struct PushConfig {
    pub pusher: Arc<dyn Pusher>,
    /// The providers this server has configured (`fcm`, `apns`,
    /// `webpush`, `webhook`): a device may register with these only.
    pub providers: Vec<String>,
    /// Whether the message text goes in the push.
    pub preview: bool,
    /// Most registered devices per user.
    pub max_devices: u32,
    pub delivery: JobPolicy,
}

impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConfig")
            .field("providers", &self.providers)
            .field("preview", &self.preview)
            .field("max_devices", &self.max_devices)
            .field("delivery", &self.delivery)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "lowercase")]
enum Payload {
    Message {
        msg_id: u64,
    },
    Device {
        user: String,
        device: String,
        conv: String,
        msg_id: u64,
        seq: u64,
    },
}

/// The step 1 job of a message, written with it.
pub fn message_job(msg_id: u64, ts: i64) -> NewJob {
    NewJob {
        kind: PUSH_JOB.to_owned(),
        key: format!("push.m-{msg_id}"),
        payload: serde_json::to_string(&Payload::Message { msg_id }).unwrap_or_default(),
        created_at: ts,
        due_at: ts,
    }
}

/// The step 2 job of one device and conversation: one key per (user,
/// device, conversation), so a pending one is replaced.
fn device_job(reg: &PushRegistration, m: &StoredMessage, now: i64) -> NewJob {
    NewJob {
        kind: PUSH_JOB.to_owned(),
        key: format!("push.d-{:032x}", fnv128(&[&reg.user, &reg.device, &m.conv])),
        payload: serde_json::to_string(&Payload::Device {
            user: reg.user.clone(),
            device: reg.device.clone(),
            conv: m.conv.clone(),
            msg_id: m.msg_id,
            seq: m.seq,
        })
        .unwrap_or_default(),
        created_at: now,
        due_at: now,
    }
}

/// FNV-1a, 128 bits, of the parts (each followed by a 0 byte): a job key
/// of fixed length whatever the ids' lengths.
fn fnv128(parts: &[&str]) -> u128 {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= b as u128;
            h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
    }
    h
}

/// The text a push shows of a message: a text message's string, cut to
/// [`PREVIEW_MAX_CHARS`]; a media message's file name if it has one;
/// `None` otherwise.
pub fn preview_of(m: &StoredMessage) -> Option<String> {
    let content: Value = serde_json::from_str(m.content.as_deref()?).ok()?;
    let text = match (&*m.kind, &content) {
        ("text", Value::String(s)) => s.clone(),
        ("image", _) => "[image]".to_owned(),
        ("voice", _) => "[voice]".to_owned(),
        ("file", v) => match v.get("name").and_then(Value::as_str) {
            Some(n) => format!("[file] {n}"),
            None => "[file]".to_owned(),
        },
        _ => return None,
    };
    let mut out: String = text.chars().take(PREVIEW_MAX_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    Some(out)
}

/// Runs push jobs (both steps).
pub(crate) struct PushJobs {
    pub store: Arc<dyn Store>,
    pub presence: Arc<dyn Presence>,
    pub cfg: PushConfig,
    /// Groups above this many members are read-diffused: only mentioned
    /// members get a push.
    pub write_limit: usize,
}

#[async_trait]
impl JobHandler for PushJobs {
    async fn run(&self, job: &Job) -> Result<(), String> {
        match serde_json::from_str::<Payload>(&job.payload) {
            Ok(Payload::Message { msg_id }) => self.fan_out(msg_id).await,
            Ok(Payload::Device {
                user,
                device,
                conv,
                msg_id,
                seq,
            }) => self.deliver(&user, &device, &conv, msg_id, seq).await,
            Err(e) => {
                tracing::error!(key = %job.key, error = %e, "unreadable push job dropped");
                Ok(())
            }
        }
    }
}

impl PushJobs {
    /// Step 1: the devices that get a push of message `msg_id`.
    async fn fan_out(&self, msg_id: u64) -> Result<(), String> {
        let m = match self.store.message_by_id(msg_id).await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("store: {e}")),
        };
        if m.recalled || m.kind == "system" {
            return Ok(());
        }
        let mut users: Vec<String> = match (&m.to, &m.group) {
            (Some(to), _) => vec![to.clone()],
            (None, Some(gid)) => {
                let Some(g) = self
                    .store
                    .get_group(gid)
                    .await
                    .map_err(|e| format!("store: {e}"))?
                else {
                    return Ok(());
                };
                if g.members.len() > self.write_limit
                    && !m.mentions.iter().any(|u| u == MENTION_ALL)
                {
                    // Read-diffused: the mentioned members only.
                    g.members
                        .into_iter()
                        .filter(|u| m.mentions.contains(u))
                        .collect()
                } else {
                    g.members
                }
            }
            (None, None) => return Ok(()),
        };
        users.retain(|u| *u != m.from);
        if users.is_empty() {
            return Ok(());
        }
        let now = crate::now_ms();
        let mut jobs = Vec::new();
        for chunk in users.chunks(ONLINE_CHUNK) {
            let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let online = self
                .presence
                .online(&names)
                .await
                .map_err(|e| format!("presence: {e}"))?;
            for (user, on) in chunk.iter().zip(online) {
                if on {
                    continue;
                }
                let regs = self
                    .store
                    .push_registrations(user)
                    .await
                    .map_err(|e| format!("store: {e}"))?;
                jobs.extend(regs.iter().map(|r| device_job(r, &m, now)));
            }
        }
        if !jobs.is_empty() {
            self.store
                .put_jobs(&jobs)
                .await
                .map_err(|e| format!("store: {e}"))?;
        }
        Ok(())
    }

    /// Step 2: one push to one device, if it is still wanted.
    async fn deliver(
        &self,
        user: &str,
        device: &str,
        conv: &str,
        msg_id: u64,
        seq: u64,
    ) -> Result<(), String> {
        let store = |e: crate::store::StoreError| format!("store: {e}");
        let regs = self.store.push_registrations(user).await.map_err(store)?;
        let Some(reg) = regs.into_iter().find(|r| r.device == device) else {
            return Ok(());
        };
        let online = self
            .presence
            .online(&[user])
            .await
            .map_err(|e| format!("presence: {e}"))?;
        if online.first().copied().unwrap_or(false) {
            metrics::counter!("tern_push_total", "result" => "online").increment(1);
            return Ok(());
        }
        let now = crate::now_ms();
        let muted = self
            .store
            .conv_settings(user)
            .await
            .map_err(store)?
            .iter()
            .any(|s| s.conv == conv && s.muted_until > now);
        if muted {
            metrics::counter!("tern_push_total", "result" => "muted").increment(1);
            return Ok(());
        }
        let Some(m) = self.store.message_by_id(msg_id).await.map_err(store)? else {
            return Ok(());
        };
        if m.recalled {
            return Ok(());
        }
        let title = match self.store.profile(&m.from).await.map_err(store)? {
            Some(p) if !p.name.is_empty() => p.name,
            _ => m.from.clone(),
        };
        let badge = self
            .store
            .conversations(user, 0, 1)
            .await
            .map_err(store)?
            .total_unread;
        let note = PushNote {
            conv: conv.to_owned(),
            seq,
            from: m.from.clone(),
            title,
            preview: if self.cfg.preview {
                preview_of(&m)
            } else {
                None
            },
            badge,
        };
        match self.cfg.pusher.send(&reg, &note).await {
            Ok(()) => {
                metrics::counter!("tern_push_total", "result" => "sent").increment(1);
                Ok(())
            }
            Err(PushFailure::Gone(why)) => {
                metrics::counter!("tern_push_total", "result" => "gone").increment(1);
                tracing::info!(%user, %device, reason = %why, "push registration gone: removed");
                self.store
                    .push_unregister(user, device)
                    .await
                    .map_err(store)?;
                Ok(())
            }
            Err(PushFailure::Refused(why)) => {
                metrics::counter!("tern_push_total", "result" => "refused").increment(1);
                tracing::warn!(%user, %device, reason = %why, "push refused by its provider: dropped");
                Ok(())
            }
            Err(PushFailure::Retry(why)) => {
                metrics::counter!("tern_push_total", "result" => "failed").increment(1);
                Err(why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_keys_differ_by_each_part_and_fit_a_column() {
        let a = fnv128(&["ann", "phone", "dm:ann:bob"]);
        assert_ne!(a, fnv128(&["ann", "phone", "dm:ann:cat"]));
        assert_ne!(a, fnv128(&["ann", "tablet", "dm:ann:bob"]));
        // Parts are delimited: moving a byte across a boundary changes it.
        assert_ne!(fnv128(&["ab", "c"]), fnv128(&["a", "bc"]));
        assert_eq!(format!("push.d-{a:032x}").len(), 39);
    }

    #[test]
    fn previews_are_text_or_a_kind_and_bounded() {
        let mut m = StoredMessage {
            msg_id: 1,
            conv: "dm:a:b".into(),
            seq: 1,
            from: "a".into(),
            to: Some("b".into()),
            group: None,
            kind: "text".into(),
            content: Some("\"hello\"".into()),
            ts: 0,
            client_msg_id: None,
            recalled: false,
            reply_to: None,
            mentions: vec![],
            edited_at: None,
            reactions: vec![],
        };
        assert_eq!(preview_of(&m).as_deref(), Some("hello"));
        m.content = Some(serde_json::to_string(&"é".repeat(300)).unwrap());
        let p = preview_of(&m).unwrap();
        assert_eq!(p.chars().count(), PREVIEW_MAX_CHARS + 1);
        m.kind = "image".into();
        m.content = Some("{\"media\":\"x\"}".into());
        assert_eq!(preview_of(&m).as_deref(), Some("[image]"));
        m.kind = "custom".into();
        assert_eq!(preview_of(&m), None);
    }
}
