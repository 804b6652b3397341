//! 5.1: editing a message, reactions, and the reactions a history page
//! carries. (Replies and mentions are part of `send`, in `messages.rs`.)

use super::Core;
use crate::error::{CoreError, CoreResult};
use crate::frame::encode;
use crate::now_ms;
use crate::push::{Outbound, Push};
use crate::store::StoredMessage;
use serde_json::value::RawValue;
use std::borrow::Cow;
use tern_proto::frames::check_kind_content;
use tern_proto::wire::{tag, Edited, RawJson, ReactionPush};
use tern_proto::{ConvId, ErrorCode};

/// Longest emoji (bytes).
pub const EMOJI_MAX_BYTES: usize = 32;

impl Core {
    /// `edit`: the sender's new content for message `seq`, within the
    /// edit window; its kind stays. Every participant's online devices
    /// get `edited`. Returns `edited_at`.
    pub async fn edit(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        content: &RawValue,
    ) -> CoreResult<i64> {
        let id = self.access(user, conv, false).await?.id;
        if content.get().len() > self.cfg.content_bytes {
            return Err(CoreError::new(
                ErrorCode::ContentTooLarge,
                format!("content is over {} bytes", self.cfg.content_bytes),
            ));
        }
        self.check_open(&id).await?;
        let Some(m) = self.store.message(conv, seq).await? else {
            return Err(CoreError::invalid(format!("no message with seq {seq}")));
        };
        // The kind stays: the new content must suit it.
        check_kind_content(&m.kind, content).map_err(CoreError::invalid)?;
        let m = self
            .store
            .edit(
                conv,
                seq,
                user,
                content.get(),
                self.cfg.edit_window_ms,
                now_ms(),
            )
            .await?;
        let edited_at = m.edited_at.unwrap_or_default();
        let frame = encode(&Edited {
            ty: tag::Edited,
            conv: Cow::Borrowed(conv),
            seq,
            msg_id: m.msg_id,
            by: Cow::Borrowed(user),
            content: RawJson::borrowed(content),
            edited_at,
        });
        let users = self.audience(&id).await;
        self.fanout.push(Push {
            users,
            except: None,
            out: Outbound::Frame(frame),
            inactive: None,
        });
        // 5.6: after its commit, before the answer.
        self.emit_message("message.edited", &m).await;
        Ok(edited_at)
    }

    /// `react`: adds (`on`) or takes back the caller's `emoji` on message
    /// `seq`. Participants' online devices get `reaction` when something
    /// changed. Taking back a reaction that is not there: `not_found`.
    pub async fn react(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        emoji: &str,
        on: bool,
    ) -> CoreResult<()> {
        if emoji.is_empty() || emoji.len() > EMOJI_MAX_BYTES {
            return Err(CoreError::invalid(format!(
                "emoji must be 1-{EMOJI_MAX_BYTES} bytes"
            )));
        }
        let id = self.access(user, conv, false).await?.id;
        self.check_open(&id).await?;
        let changed = self
            .store
            .react(
                conv,
                seq,
                user,
                emoji,
                on,
                self.cfg.reaction_emoji_max,
                now_ms(),
            )
            .await?;
        if !changed {
            if on {
                return Ok(());
            }
            return Err(CoreError::new(ErrorCode::NotFound, "no such reaction"));
        }
        let frame = encode(&ReactionPush {
            ty: tag::Reaction,
            conv: Cow::Borrowed(conv),
            seq,
            user: Cow::Borrowed(user),
            emoji: Cow::Borrowed(emoji),
            on,
        });
        let users = self.audience(&id).await;
        self.fanout.push(Push {
            users,
            except: None,
            out: Outbound::Frame(frame),
            inactive: None,
        });
        Ok(())
    }

    /// Nothing changes in a dissolved group (PROTOCOL.md 5.6b).
    async fn check_open(&self, id: &ConvId) -> CoreResult<()> {
        if let ConvId::Group(gid) = id {
            if self.current_group_view(gid).await?.roles.state.dissolved {
                return Err(CoreError::new(
                    ErrorCode::Forbidden,
                    "the group is dissolved",
                ));
            }
        }
        Ok(())
    }

    /// Fills in the reactions of a history page (ascending seqs).
    pub(super) async fn attach_reactions(
        &self,
        conv: &str,
        msgs: &mut [StoredMessage],
    ) -> CoreResult<()> {
        let (Some(first), Some(last)) = (msgs.first(), msgs.last()) else {
            return Ok(());
        };
        let all = self
            .store
            .reactions(conv, first.seq, last.seq, self.cfg.reaction_users_listed)
            .await?;
        let mut all = all.into_iter().peekable();
        for m in msgs.iter_mut() {
            while let Some(r) = all.next_if(|r| r.seq <= m.seq) {
                if r.seq == m.seq {
                    m.reactions.push(r);
                }
            }
        }
        Ok(())
    }
}
