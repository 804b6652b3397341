//! 5.6 scheduled messages: a `send` with `at` is checked as a send now,
//! kept by the store until its time, then sent through [`Core::send`]
//! by the node's scheduler ([`crate::scheduler`]), so every rule of a
//! send applies again at that moment.

use super::messages::check_mentions;
use super::{Actor, Core, SendOk};
use crate::error::{CoreError, CoreResult};
use crate::now_ms;
use crate::store::{Scheduled, StoreError};
use serde_json::value::RawValue;
use std::borrow::Cow;
use tern_proto::frames::check_kind_content;
use tern_proto::ids::{is_valid_name, is_valid_token};
use tern_proto::{request, ConvId, ErrorCode};

/// How far ahead a message may be scheduled: a year (ms).
pub const SCHEDULE_HORIZON_MS: i64 = 365 * 24 * 3600 * 1000;

/// The answer to a scheduled `send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledOk {
    pub id: String,
    pub conv: String,
    pub at: i64,
    pub client_msg_id: String,
}

/// What became of one due scheduled message.
#[derive(Debug)]
pub enum DueOutcome {
    /// Sent (or found sent before: deduplicated by its `client_msg_id`).
    Sent(SendOk),
    /// Refused by the rules of a send at its time (the sender left the
    /// group, was blocked, ...): nothing sent, the message dropped.
    Refused(CoreError),
    /// The store could not take it now: kept, tried again once its lease
    /// ends.
    Later(CoreError),
}

impl Core {
    /// `send` with `at`: checks the send as it would be checked now, and
    /// keeps it until `at`.
    pub async fn schedule(
        &self,
        actor: Actor<'_>,
        req: &request::Send<'_>,
    ) -> CoreResult<ScheduledOk> {
        let now = now_ms();
        let at = req.at.unwrap_or(0);
        if at <= now || at > now + SCHEDULE_HORIZON_MS {
            return Err(CoreError::invalid(
                "at must be a future time (ms) within a year",
            ));
        }
        let cmid = match &*req.client_msg_id {
            "" => format!("s{:032x}", rand::random::<u128>()),
            c if is_valid_token(c) => c.to_owned(),
            _ => return Err(CoreError::invalid("client_msg_id must be 1-64 characters")),
        };
        let kind = &*req.kind;
        check_kind_content(kind, req.content).map_err(CoreError::invalid)?;
        if req.content.get().len() > self.cfg.content_bytes {
            return Err(CoreError::new(
                ErrorCode::ContentTooLarge,
                format!("content is over {} bytes", self.cfg.content_bytes),
            ));
        }
        let (conv, peer, mentions) = match (req.to.as_deref(), req.group.as_deref()) {
            (Some(to), None) => {
                if !is_valid_name(to) {
                    return Err(CoreError::new(
                        ErrorCode::NoSuchUser,
                        format!("no such user {to:?}"),
                    ));
                }
                if req.mentions.as_ref().is_some_and(|m| !m.is_empty()) {
                    return Err(CoreError::invalid("mentions are for group messages"));
                }
                self.require_user(to).await?;
                self.check_not_blocked(to, actor.user).await?;
                (ConvId::dm(actor.user, to).to_string(), to, Vec::new())
            }
            (None, Some(gid)) => {
                let view = self.current_group_view(gid).await?;
                let standing = view.standing(actor.user).ok_or_else(|| {
                    CoreError::new(ErrorCode::NotMember, "not a member of this group")
                })?;
                let mentions = check_mentions(&view, standing, req.mentions.as_deref())?;
                crate::roles::may_send(&view.roles.state, standing, now)
                    .map_err(super::moderation::refused)?;
                (format!("group:{gid}"), gid, mentions)
            }
            _ => {
                return Err(CoreError::invalid(
                    "exactly one of to and group is required",
                ))
            }
        };
        let reply_to = self.check_reply_to(&conv, req.reply_to).await?;
        let rec = Scheduled {
            id: format!("{:032x}", rand::random::<u128>()),
            user: actor.user.to_owned(),
            conv,
            peer: peer.to_owned(),
            at,
            kind: kind.to_owned(),
            content: req.content.get().to_owned(),
            client_msg_id: cmid,
            reply_to: reply_to.unwrap_or(0),
            mentions,
            created_at: now,
        };
        match self.store.schedule(&rec, self.cfg.scheduled_max).await {
            Ok(()) => {}
            Err(StoreError::Forbidden(_)) => {
                return Err(CoreError::invalid(format!(
                    "at most {} scheduled messages may be pending",
                    self.cfg.scheduled_max
                )))
            }
            Err(e) => return Err(e.into()),
        }
        self.sched_wake.notify_one();
        Ok(ScheduledOk {
            id: rec.id,
            conv: rec.conv,
            at,
            client_msg_id: rec.client_msg_id,
        })
    }

    /// `GET /v1/scheduled`: the caller's pending scheduled messages.
    pub async fn scheduled(&self, user: &str) -> CoreResult<Vec<Scheduled>> {
        Ok(self.store.scheduled(user).await?)
    }

    /// `DELETE /v1/scheduled/{id}`: `not_found` for an unknown id or
    /// another user's.
    pub async fn cancel_scheduled(&self, user: &str, id: &str) -> CoreResult<()> {
        if self.store.unschedule(user, id).await? {
            Ok(())
        } else {
            Err(CoreError::new(
                ErrorCode::NotFound,
                "no such scheduled message",
            ))
        }
    }

    /// The store, for the scheduler's claims.
    pub(crate) fn scheduled_store(&self) -> &std::sync::Arc<dyn crate::store::Store> {
        &self.store
    }

    /// Wakes the scheduler's wait (a message was scheduled).
    pub(crate) fn scheduled_wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.sched_wake.clone()
    }

    /// Sends one due scheduled message as its sender, through `send`.
    /// The row is removed after the send committed (or was refused), so
    /// a crash in between sends it again, and dedup by its
    /// `client_msg_id` makes that a no-op.
    pub async fn send_due(&self, s: &Scheduled) -> DueOutcome {
        let content = match RawValue::from_string(s.content.clone()) {
            Ok(c) => c,
            Err(_) => {
                return self
                    .finish_due(s, DueOutcome::Refused(CoreError::invalid("stored content")))
                    .await
            }
        };
        let (to, group) = if s.conv.starts_with("group:") {
            (None, Some(Cow::Borrowed(s.peer.as_str())))
        } else {
            (Some(Cow::Borrowed(s.peer.as_str())), None)
        };
        let req = request::Send {
            to,
            group,
            client_msg_id: Cow::Borrowed(&s.client_msg_id),
            kind: Cow::Borrowed(&s.kind),
            content: &content,
            reply_to: (s.reply_to > 0).then_some(s.reply_to),
            mentions: (!s.mentions.is_empty()).then(|| {
                s.mentions
                    .iter()
                    .map(|m| Cow::Borrowed(m.as_str()))
                    .collect()
            }),
            at: None,
        };
        let actor = Actor {
            user: &s.user,
            device: None,
            session: 0,
        };
        let outcome = match self.send(actor, &req).await {
            Ok(ok) => DueOutcome::Sent(ok),
            Err(e) if matches!(e.code, ErrorCode::Unavailable | ErrorCode::Timeout) => {
                DueOutcome::Later(e)
            }
            Err(e) => DueOutcome::Refused(e),
        };
        self.finish_due(s, outcome).await
    }

    async fn finish_due(&self, s: &Scheduled, outcome: DueOutcome) -> DueOutcome {
        match &outcome {
            DueOutcome::Later(e) => {
                tracing::warn!(id = %s.id, error = %e.message, "scheduled message not sent yet");
                return outcome;
            }
            DueOutcome::Refused(e) => tracing::info!(
                id = %s.id,
                user = %s.user,
                conv = %s.conv,
                code = e.code.as_str(),
                reason = %e.message,
                "scheduled message refused at its time; dropped"
            ),
            DueOutcome::Sent(ok) => tracing::debug!(
                id = %s.id,
                seq = ok.seq,
                duplicate = ok.duplicate,
                "scheduled message sent"
            ),
        }
        if let Err(e) = self.store.unschedule(&s.user, &s.id).await {
            // Sent again after its lease ends; dedup makes that a no-op.
            tracing::warn!(id = %s.id, error = %e, "could not remove a sent scheduled message");
        }
        outcome
    }
}
