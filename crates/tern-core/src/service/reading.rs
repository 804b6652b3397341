//! Reading: acks, read marks and receipts, the conversation list, read status, offline queue.

use super::{Access, Actor, Core, SYNC_DEFAULT, SYNC_MAX};
use crate::error::{CoreError, CoreResult};
use crate::frame::encode;
use crate::now_ms;
use crate::push::{Outbound, Push};
use crate::store::{ConvList, OfflineBatch};
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::wire::{tag, Receipt};
use tern_proto::ConvId;

impl Core {
    /// A device holds `conv` up to `seq`.
    /// Records a cumulative ack. It is stored within [`crate::acks::FLUSH_EVERY`]
    /// (coalesced with other acks), and before this user's offline queue is
    /// next read; delivered receipts go out once it is stored.
    pub async fn ack(&self, user: &str, conv: &str, seq: u64) -> CoreResult<()> {
        let seq = match self.access(user, conv, true).await?.former_up_to {
            Some(up_to) => seq.min(up_to),
            None => seq,
        };
        metrics::counter!("tern_acks_total").increment(1);
        self.acks.record(user, conv, seq);
        Ok(())
    }

    /// Stores every ack still held in memory (graceful shutdown).
    pub async fn flush_acks(&self) {
        self.acks.flush_all().await;
    }

    pub async fn read(&self, actor: Actor<'_>, conv: &str, seq: u64) -> CoreResult<u64> {
        let Access { id, former_up_to } = self.access(actor.user, conv, true).await?;
        if seq == 0 {
            return Err(CoreError::invalid("no message with seq 0"));
        }
        // A former member's read stops at the last message they can see,
        // whatever seq they name: the answer tells nothing of later ones.
        let seq = match former_up_to {
            // Past it, only a seq that does not exist at all is refused
            // (PROTOCOL.md 2.4), as for a member.
            Some(up_to) if seq > up_to => {
                if seq > self.store.max_seq(conv).await? {
                    return Err(CoreError::invalid("no message with this seq"));
                }
                up_to
            }
            _ => seq,
        };
        let out = self
            .store
            .mark_read(actor.user, conv, seq, now_ms())
            .await?;
        if out.advanced {
            let frame = encode(&Receipt {
                ty: tag::Receipt,
                conv: Cow::Borrowed(conv),
                by: Cow::Borrowed(actor.user),
                delivered_seq: None,
                read_seq: Some(out.read_seq),
            });
            // 1:1: the peer and one's other devices; groups: one's other
            // devices (who read what in a group is asked with read_status).
            let users = match &id {
                ConvId::Dm { .. } => self.audience(&id).await,
                ConvId::Group(_) => vec![Arc::from(actor.user)],
            };
            self.fanout.push(Push {
                users,
                except: Some((actor.user.into(), actor.device.unwrap_or("").into())),
                out: Outbound::Frame(frame),
                inactive: None,
            });
        }
        Ok(out.read_seq)
    }

    pub async fn sync(
        &self,
        user: &str,
        since: Option<i64>,
        limit: Option<u64>,
    ) -> CoreResult<ConvList> {
        let limit = match limit {
            None => SYNC_DEFAULT,
            Some(l) if (1..=u64::from(SYNC_MAX)).contains(&l) => l as u32,
            Some(_) => return Err(CoreError::invalid("limit must be 1-1000")),
        };
        Ok(self
            .store
            .conversations(user, since.unwrap_or(0), limit)
            .await?)
    }

    /// Who of a group's current members has read message `seq` (write-
    /// diffused groups only). Returns `(read, unread)`, leaving out the
    /// message's sender.
    pub async fn read_status(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
    ) -> CoreResult<(Vec<String>, Vec<String>)> {
        let id = self.access(user, conv, false).await?.id;
        let ConvId::Group(gid) = &id else {
            return Err(CoreError::invalid(
                "read_status is for group conversations; 1:1 has read receipts",
            ));
        };
        let view = self.group_view(gid).await?;
        if view.size() > self.cfg.write_limit {
            return Err(CoreError::invalid(format!(
                "read status is kept for groups of at most {} members",
                self.cfg.write_limit
            )));
        }
        // Looked up as stored: whether the asker deleted it changes nothing.
        let sender = match self.store.message(conv, seq).await? {
            Some(m) => m.from,
            None => return Err(CoreError::invalid("no such seq in this conversation")),
        };
        let (mut read, mut unread) = (Vec::new(), Vec::new());
        for (member, pos) in self.store.read_positions(conv).await? {
            if member == sender {
                continue;
            }
            if pos >= seq {
                read.push(member);
            } else {
                unread.push(member);
            }
        }
        Ok((read, unread))
    }

    /// The user's queued offline messages.
    pub async fn offline(&self, user: &str) -> CoreResult<OfflineBatch> {
        self.acks.flush_user(user).await;
        let cap = u32::try_from(self.cfg.offline_cap).unwrap_or(u32::MAX);
        Ok(self.store.offline_fetch(user, cap).await?)
    }
}
