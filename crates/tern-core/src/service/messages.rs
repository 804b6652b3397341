//! Messages: sending, forwarding to a group's owner, history, gap fill, recall and delete.

use super::{group_message, Actor, Core, SendOk, HISTORY_DEFAULT, HISTORY_MAX, LIST_MAX};
use crate::bus::{Forward, ForwardAnswer, ForwardHandler};
use crate::error::{CoreError, CoreResult};
use crate::frame::encode;
use crate::groups::GroupView;
use crate::now_ms;
use crate::pipeline::{Pipeline, PushPlan};
use crate::push::{Outbound, Push};
use crate::roles::Standing;
use crate::store::{
    Appended, Extras, HistoryQuery, NewMessage, StoreError, StoredMessage, MENTION_ALL,
};
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::frames::check_kind_content;
use tern_proto::ids::{is_valid_name, is_valid_token};
use tern_proto::wire::{tag, Recalled};
use tern_proto::{request, ConvId, ErrorCode};

impl Core {
    /// `send` (PROTOCOL.md 2.2): the core checks every field's value.
    pub async fn send(&self, actor: Actor<'_>, req: &request::Send<'_>) -> CoreResult<SendOk> {
        if req.at.is_some() {
            return Err(CoreError::invalid(
                "a send with at is kept by Core::schedule",
            ));
        }
        let ok = self.send_checked(actor, req).await?;
        // 5.2: the new message is stored; the indexer takes it from here.
        self.indexer.wake();
        // 5.6: and the webhook runner its `message.created` jobs.
        self.wake_jobs();
        Ok(ok)
    }

    async fn send_checked(&self, actor: Actor<'_>, req: &request::Send<'_>) -> CoreResult<SendOk> {
        let cmid = &*req.client_msg_id;
        if !is_valid_token(cmid) {
            return Err(CoreError::invalid("client_msg_id must be 1-64 characters"));
        }
        let kind = &*req.kind;
        let content = req.content;
        check_kind_content(kind, content).map_err(CoreError::invalid)?;
        if content.get().len() > self.cfg.content_bytes {
            return Err(CoreError::new(
                ErrorCode::ContentTooLarge,
                format!("content is over {} bytes", self.cfg.content_bytes),
            ));
        }
        // 5.5: a media named in the content is the sender's; its details
        // are filled in.
        let filled = self.fill_media(actor.user, kind, content).await?;
        let content = filled.as_deref().unwrap_or(content.get());
        let to = match (req.to.as_deref(), req.group.as_deref()) {
            (Some(to), None) => to,
            (None, Some(gid)) => return self.send_group(actor, gid, req, content).await,
            _ => {
                return Err(CoreError::invalid(
                    "exactly one of to and group is required",
                ))
            }
        };
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
        let conv = ConvId::dm(actor.user, to).to_string();
        let reply_to = self.check_reply_to(&conv, req.reply_to).await?;
        let mut participants = vec![actor.user.to_owned()];
        if to != actor.user {
            participants.push(to.to_owned());
        }
        let mut msg = NewMessage {
            msg_id: 0,
            conv,
            from: actor.user.to_owned(),
            to: Some(to.to_owned()),
            group: None,
            kind: kind.to_owned(),
            content: content.to_owned(),
            ts: 0,
            client_msg_id: Some(cmid.to_owned()),
            participants: participants.clone(),
            inbox_members_up_to: 0,
            change: None,
            extras: Extras {
                reply_to,
                ..Default::default()
            },
        };
        // 5.6: on this request only, before anything is queued.
        self.before_send(&mut msg).await?;
        let plan = PushPlan::Users {
            users: participants.iter().map(|u| Arc::from(u.as_str())).collect(),
            except: except_of(actor),
        };
        send_ok(self.pipeline.append(msg, plan).await?)
    }

    async fn send_group(
        &self,
        actor: Actor<'_>,
        gid: &str,
        req: &request::Send<'_>,
        content: &str,
    ) -> CoreResult<SendOk> {
        let (cmid, kind) = (&*req.client_msg_id, &*req.kind);
        let view = self.group_view(gid).await?;
        let Some(standing) = view.standing(actor.user) else {
            return Err(CoreError::new(
                ErrorCode::NotMember,
                "not a member of this group",
            ));
        };
        let mentions = match check_mentions(&view, standing, req.mentions.as_deref()) {
            Ok(m) => m,
            Err(_) => {
                // Asked again of the current view (in a cluster this
                // node's may predate a join or a promotion).
                let view = self.current_group_view(gid).await?;
                let standing = view.standing(actor.user).ok_or_else(|| {
                    CoreError::new(ErrorCode::NotMember, "not a member of this group")
                })?;
                check_mentions(&view, standing, req.mentions.as_deref())?
            }
        };
        if crate::roles::may_send(&view.roles.state, standing, now_ms()).is_err() {
            // Refused by this node's view: asked again of the current one
            // (in a cluster the view may predate an unmute); the store
            // applies the same rule as it appends in any case.
            let view = self.current_group_view(gid).await?;
            let standing = view.standing(actor.user).ok_or_else(|| {
                CoreError::new(ErrorCode::NotMember, "not a member of this group")
            })?;
            crate::roles::may_send(&view.roles.state, standing, now_ms())
                .map_err(super::moderation::refused)?;
        }
        let mut msg = group_message(
            self.cfg.write_limit,
            gid,
            actor.user,
            kind,
            content.to_owned(),
            Some(cmid),
            None,
        );
        msg.extras = Extras {
            reply_to: self.check_reply_to(&msg.conv, req.reply_to).await?,
            mentions,
            ..Default::default()
        };
        // 5.6: on this request only, before it is forwarded or queued.
        self.before_send(&mut msg).await?;
        let started = now_ms();
        let owner = self.owner(&msg.conv);
        if let Some(owner) = owner {
            if let Some(answer) = self.forward_to_owner(owner, actor, &msg).await {
                return answer;
            }
        }
        let plan = PushPlan::Group {
            gid: gid.into(),
            except: except_of(actor),
        };
        let mut ok = send_ok(self.pipeline.append(msg, plan).await?)?;
        if ok.duplicate && owner.is_some() && ok.ts >= started {
            // The forward that failed or timed out was stored by the owner
            // during this very request after all: this send is not a retry
            // of an earlier one (that would be stored before it began).
            ok.duplicate = false;
        }
        Ok(ok)
    }

    /// The owning node of `conv` when it is another node and group sends
    /// are forwarded (a cluster whose bus forwards).
    fn owner(&self, conv: &str) -> Option<u16> {
        self.cfg.forward_timeout?;
        self.fanout.owner(conv)
    }

    /// Hands a group send to the conversation's owner and returns its
    /// answer; `None` when this node is to append it after all: the owner
    /// could not be reached, did not answer in time, or found its store
    /// unavailable. (What the owner stored meanwhile is then answered from
    /// dedup by `client_msg_id`, never stored twice.)
    async fn forward_to_owner(
        &self,
        owner: u16,
        actor: Actor<'_>,
        msg: &NewMessage,
    ) -> Option<CoreResult<SendOk>> {
        let timeout = self.cfg.forward_timeout?;
        let req = Forward {
            gid: msg.group.clone()?,
            from: msg.from.clone(),
            device: actor.device.map(str::to_owned),
            client_msg_id: msg.client_msg_id.clone()?,
            kind: msg.kind.clone(),
            content: msg.content.clone(),
            reply_to: msg.extras.reply_to,
            mentions: msg.extras.mentions.clone(),
        };
        let fallback = |why: &dyn std::fmt::Display| {
            metrics::counter!("tern_forwards_total", "result" => "local").increment(1);
            tracing::debug!(owner, reason = %why, "forward failed; appending here");
            None
        };
        match self.fanout.forward(owner, &req, timeout).await {
            Ok(ForwardAnswer::Ok {
                msg_id,
                conv,
                seq,
                ts,
                duplicate,
            }) => {
                metrics::counter!("tern_forwards_total", "result" => "ok").increment(1);
                Some(Ok(SendOk {
                    msg_id,
                    conv,
                    seq,
                    ts,
                    duplicate,
                }))
            }
            Ok(ForwardAnswer::Err { code, message }) => match ErrorCode::parse(&code) {
                Some(c) if c != ErrorCode::Unavailable => {
                    metrics::counter!("tern_forwards_total", "result" => "refused").increment(1);
                    Some(Err(CoreError::new(c, message)))
                }
                _ => fallback(&code),
            },
            Err(e) => fallback(&e),
        }
    }

    /// 5.1: `reply_to` must name an existing seq of `conv` (seqs have
    /// no gaps: 1 to the newest).
    pub(super) async fn check_reply_to(
        &self,
        conv: &str,
        reply_to: Option<u64>,
    ) -> CoreResult<Option<u64>> {
        let Some(seq) = reply_to else {
            return Ok(None);
        };
        if seq == 0 || seq > self.store.max_seq(conv).await? {
            return Err(CoreError::invalid(format!("no message with seq {seq}")));
        }
        Ok(Some(seq))
    }

    pub async fn history(
        &self,
        user: &str,
        conv: &str,
        before_seq: Option<u64>,
        after_seq: Option<u64>,
        limit: Option<u64>,
    ) -> CoreResult<Vec<StoredMessage>> {
        self.access(user, conv, true).await?;
        let limit = match limit {
            None => HISTORY_DEFAULT,
            Some(l) if (1..=u64::from(HISTORY_MAX)).contains(&l) => l as u32,
            Some(_) => return Err(CoreError::invalid("limit must be 1-500")),
        };
        let mut msgs = self
            .store
            .history(
                user,
                conv,
                HistoryQuery {
                    before_seq,
                    after_seq,
                    limit,
                },
            )
            .await?;
        self.attach_reactions(conv, &mut msgs).await?;
        Ok(msgs)
    }

    /// Messages of `conv` strictly between `after` and `before` that `user`
    /// can see and did not send (a device's own sends are answered, not
    /// pushed), for a device whose pushes skipped them (a node that was
    /// cut off from the others, for one). Read in pages of at most
    /// `HISTORY_MAX`, the oldest first, up to `delivery.offline_cap`
    /// messages, the bound of what a reconnecting device is pushed: past
    /// it, or when the store does not answer a page within 2 s, the fill
    /// stops there (in seq order) and the client fills the rest from
    /// history itself (PROTOCOL.md 2.3).
    pub async fn gap_fill(
        &self,
        user: &str,
        conv: &str,
        after: u64,
        before: u64,
    ) -> Vec<StoredMessage> {
        metrics::counter!("tern_gap_fills_total").increment(1);
        let mut out = Vec::new();
        let mut from = after;
        let mut read = 0usize;
        while from + 1 < before && read < self.cfg.offline_cap {
            let left = (before - from - 1).min((self.cfg.offline_cap - read) as u64);
            let q = HistoryQuery {
                before_seq: Some(before),
                after_seq: Some(from),
                limit: u32::try_from(left).unwrap_or(HISTORY_MAX).min(HISTORY_MAX),
            };
            let page = match tokio::time::timeout(
                std::time::Duration::from_secs(2),
                self.store.history(user, conv, q),
            )
            .await
            {
                Ok(Ok(msgs)) => msgs,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, conv, "gap fill failed");
                    break;
                }
                Err(_) => break,
            };
            let Some(last) = page.last() else {
                break;
            };
            from = last.seq;
            read += page.len();
            out.extend(page.into_iter().filter(|m| m.from != user));
        }
        out
    }

    pub async fn recall(&self, user: &str, conv: &str, seq: u64) -> CoreResult<()> {
        let id = self.access(user, conv, false).await?.id;
        // 5.4: owner and admins recall any lower-ranked member's message
        // (and their own) at any age; nothing changes in a dissolved group.
        let (by, window) = match &id {
            ConvId::Group(gid) => self.recall_rights(gid, conv, seq, user).await?,
            ConvId::Dm { .. } => (user.to_owned(), self.cfg.recall_window_ms),
        };
        let m = self.store.recall(conv, seq, &by, window, now_ms()).await?;
        let frame = encode(&Recalled {
            ty: tag::Recalled,
            conv: Cow::Borrowed(conv),
            seq,
            msg_id: m.msg_id,
            by: Cow::Borrowed(user),
        });
        let users = self.audience(&id).await;
        self.fanout.push(Push {
            users,
            except: None,
            out: Outbound::Frame(frame),
            inactive: None,
        });
        // 5.6: after its commit, before the answer.
        self.emit_message("message.recalled", &m).await;
        Ok(())
    }

    /// Whom a group recall is made as, and its window: the sender's own
    /// recall, or a moderator's ([`crate::roles::may_recall_any`]), made
    /// as the sender with no window.
    async fn recall_rights(
        &self,
        gid: &str,
        conv: &str,
        seq: u64,
        user: &str,
    ) -> CoreResult<(String, i64)> {
        let view = self.current_group_view(gid).await?;
        if view.roles.state.dissolved {
            return Err(CoreError::new(
                ErrorCode::Forbidden,
                "the group is dissolved",
            ));
        }
        let own = (user.to_owned(), self.cfg.recall_window_ms);
        let Some(actor) = view.standing(user).filter(|s| s.role.moderates()) else {
            return Ok(own);
        };
        let Some(m) = self.store.message(conv, seq).await? else {
            return Ok(own);
        };
        if m.from == user || crate::roles::may_recall_any(Some(actor), view.standing(&m.from)) {
            return Ok((m.from, i64::MAX));
        }
        Ok(own)
    }

    pub async fn delete(&self, user: &str, conv: &str, seqs: &[u64]) -> CoreResult<()> {
        let access = self.access(user, conv, true).await?;
        if seqs.is_empty() || seqs.len() > LIST_MAX {
            return Err(CoreError::invalid("seqs must hold 1-1000 seqs"));
        }
        if let Some(up_to) = access.former_up_to {
            if let Some(seq) = seqs.iter().find(|s| **s > up_to) {
                return Err(CoreError::invalid(format!("no message with seq {seq}")));
            }
        }
        Ok(self.store.delete_for_user(user, conv, seqs).await?)
    }
}

/// 5.1: the mentions of a group send, checked against the sender's view
/// of the group: members only (each once), or `@all` alone, which only
/// the owner and admins may use ([`crate::roles`]).
pub(super) fn check_mentions(
    view: &GroupView,
    standing: Standing,
    mentions: Option<&[Cow<'_, str>]>,
) -> CoreResult<Vec<String>> {
    let Some(mentions) = mentions else {
        return Ok(Vec::new());
    };
    if mentions.len() > LIST_MAX {
        return Err(CoreError::invalid("mentions must hold at most 1000 users"));
    }
    if mentions.iter().any(|m| m == MENTION_ALL) {
        if mentions.len() != 1 {
            return Err(CoreError::invalid("@all stands alone in mentions"));
        }
        if !standing.role.moderates() {
            return Err(CoreError::new(
                ErrorCode::Forbidden,
                "only the owner and admins may mention @all",
            ));
        }
        return Ok(vec![MENTION_ALL.to_owned()]);
    }
    let mut out: Vec<String> = Vec::with_capacity(mentions.len());
    for m in mentions {
        if !view.is_member(m) {
            return Err(CoreError::invalid(format!("{m:?} is not a member")));
        }
        if !out.iter().any(|o| o == m) {
            out.push(m.to_string());
        }
    }
    Ok(out)
}

fn except_of(actor: Actor<'_>) -> Option<(Arc<str>, Arc<str>)> {
    actor.device.map(|d| (Arc::from(actor.user), Arc::from(d)))
}

fn send_ok(appended: Appended) -> CoreResult<SendOk> {
    let duplicate = matches!(appended, Appended::Duplicate(_));
    match appended {
        Appended::New(m) | Appended::Duplicate(m) => Ok(SendOk {
            msg_id: m.msg_id,
            conv: m.conv,
            seq: m.seq,
            ts: m.ts,
            duplicate,
        }),
        Appended::Refused(r) => Err(StoreError::from(r).into()),
    }
}

/// Appends the group sends other nodes forward to this one, the owner of
/// their conversation, through this node's pipeline. The sending node
/// checked the request and the sender's membership; the store checks
/// membership again as it appends.
pub(super) struct Owner {
    pub(super) pipeline: Pipeline,
    pub(super) write_limit: usize,
}

#[async_trait::async_trait]
impl ForwardHandler for Owner {
    async fn handle(&self, req: Forward) -> ForwardAnswer {
        metrics::counter!("tern_forwards_served_total").increment(1);
        let mut msg = group_message(
            self.write_limit,
            &req.gid,
            &req.from,
            &req.kind,
            req.content,
            Some(&req.client_msg_id),
            None,
        );
        msg.extras = Extras {
            reply_to: req.reply_to,
            mentions: req.mentions,
            ..Default::default()
        };
        let except = req
            .device
            .map(|d| (Arc::from(req.from.as_str()), Arc::from(d.as_str())));
        let plan = PushPlan::Group {
            gid: req.gid.as_str().into(),
            except,
        };
        match self.pipeline.append(msg, plan).await.and_then(send_ok) {
            Ok(ok) => ForwardAnswer::Ok {
                msg_id: ok.msg_id,
                conv: ok.conv,
                seq: ok.seq,
                ts: ok.ts,
                duplicate: ok.duplicate,
            },
            Err(e) => ForwardAnswer::Err {
                code: e.code.as_str().to_owned(),
                message: e.message.into_owned(),
            },
        }
    }
}
