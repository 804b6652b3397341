//! Blocks (PROTOCOL.md 5.3): one user blocks another. Enforced on every
//! path that reaches the blocker: a blocked user's 1:1 sends and friend
//! requests are refused (`blocked`, nothing stored), its typing is not
//! delivered, and neither sees the other's presence (the presence query,
//! the friend list, user info, presence pushes). Groups are unaffected.

use super::Core;
use crate::error::{CoreError, CoreResult};
use crate::now_ms;
use tern_proto::ErrorCode;

impl Core {
    /// `PUT /v1/blocks/{user}`: at most `max_blocks` users blocked
    /// (`forbidden` beyond). Blocking again is harmless; blocking does not
    /// end a friendship.
    pub async fn block(&self, user: &str, other: &str) -> CoreResult<()> {
        if user == other {
            return Err(CoreError::invalid("cannot block oneself"));
        }
        self.require_user(other).await?;
        let mine = self.store.blocks(user).await?;
        if !mine.blocked.iter().any(|b| b == other) && mine.blocked.len() >= self.cfg.max_blocks {
            return Err(CoreError::new(
                ErrorCode::Forbidden,
                format!(
                    "{} users are blocked, the most one user may block (limits.blocks_max)",
                    self.cfg.max_blocks
                ),
            ));
        }
        Ok(self.store.block(user, other, now_ms()).await?)
    }

    /// `DELETE /v1/blocks/{user}`; idempotent.
    pub async fn unblock(&self, user: &str, other: &str) -> CoreResult<()> {
        self.require_user(other).await?;
        Ok(self.store.unblock(user, other).await?)
    }

    /// `GET /v1/blocks`: whom `user` blocked, sorted.
    pub async fn blocked(&self, user: &str) -> CoreResult<Vec<String>> {
        Ok(self.store.blocks(user).await?.blocked)
    }

    /// `blocked` when `to` blocks `from`.
    pub(super) async fn check_not_blocked(&self, to: &str, from: &str) -> CoreResult<()> {
        if to != from && self.store.is_blocked(to, from).await? {
            return Err(CoreError::new(
                ErrorCode::Blocked,
                format!("{to} has blocked you"),
            ));
        }
        Ok(())
    }

    /// Users among `users` in a block with `user` either way (whose
    /// presence the other does not see), as flags in order.
    pub(super) async fn hidden_presence(
        &self,
        user: &str,
        users: &[&str],
    ) -> CoreResult<Vec<bool>> {
        let b = self.store.blocks(user).await?;
        if b.blocked.is_empty() && b.blocked_by.is_empty() {
            return Ok(vec![false; users.len()]);
        }
        let hit = |u: &str| {
            b.blocked.binary_search_by(|x| x.as_str().cmp(u)).is_ok()
                || b.blocked_by.binary_search_by(|x| x.as_str().cmp(u)).is_ok()
        };
        Ok(users.iter().map(|u| hit(u)).collect())
    }

    /// [`Core::presence`] as `viewer` sees it: users in a block with the
    /// viewer show offline.
    pub async fn presence_for(&self, viewer: &str, users: &[&str]) -> CoreResult<Vec<bool>> {
        let online = self.presence(users).await?;
        let hidden = self.hidden_presence(viewer, users).await?;
        Ok(online
            .into_iter()
            .zip(hidden)
            .map(|(on, h)| on && !h)
            .collect())
    }

    /// [`Core::user_info`] as `viewer` sees it (presence hidden across a
    /// block).
    pub async fn user_info_for(
        &self,
        viewer: &str,
        user: &str,
    ) -> CoreResult<(String, String, bool)> {
        let (id, name, online) = self.user_info(user).await?;
        let hidden = self.hidden_presence(viewer, &[user]).await?[0];
        Ok((id, name, online && !hidden))
    }
}
