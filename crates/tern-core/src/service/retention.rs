//! 5.6 retention (who may set a conversation's, one bounded round of
//! expiry) and account erase (`DELETE /v1/users/me`).
//!
//! Erase runs in steps that can each run again, so a call cut short
//! (a crash, a lost store) is finished by the next one, made with the
//! same password: every token is revoked first (sockets close with 4001
//! on every node), then the user leaves each group it is in (the owner's
//! place passes as for any owner who leaves; a group with no other
//! member is dissolved), then the store erases the account's data in one
//! transaction (from then on the password no longer matches), and the
//! tokens issued meanwhile are revoked too.

use super::accounts::pool_error;
use super::Core;
use crate::error::{CoreError, CoreResult};
use crate::store::{ExpireRound, Expired};
use tern_proto::{ConvId, ErrorCode};

/// Longest retention a conversation may set, in days (ten years).
pub const RETENTION_DAYS_MAX: u32 = 3650;

/// Most conversations [`Core::erase_account`] walks through to leave
/// groups.
const ERASE_CONVS_MAX: u32 = 100_000;

impl Core {
    /// Either party of a 1:1 conversation; the owner or an admin of a
    /// group (a current member).
    pub(super) async fn may_set_retention(&self, user: &str, id: &ConvId) -> CoreResult<()> {
        let ConvId::Group(gid) = id else {
            return Ok(());
        };
        let view = self.current_group_view(gid).await?;
        if view.can_moderate(user) {
            Ok(())
        } else {
            Err(CoreError::new(
                ErrorCode::Forbidden,
                "only the owner and admins set a group's retention",
            ))
        }
    }

    /// One bounded round of expiry ([`crate::store::Store::expire_messages`]).
    pub async fn expire_round(&self, round: &ExpireRound) -> CoreResult<Expired> {
        Ok(self.store.expire_messages(round).await?)
    }

    /// `DELETE /v1/users/me`: erases `user`'s account (see the module
    /// docs). A wrong password: `bad_credentials`; a bot, which has no
    /// password: `forbidden`.
    pub async fn erase_account(&self, user: &str, password: &str) -> CoreResult<()> {
        let bad = || CoreError::new(ErrorCode::BadCredentials, "wrong password");
        if password.len() > 1024 {
            return Err(bad());
        }
        let rec = self
            .store
            .get_user(user)
            .await?
            .filter(|r| !r.is_erased())
            .ok_or_else(bad)?;
        if rec.bot {
            return Err(CoreError::new(
                ErrorCode::Forbidden,
                "a bot has no password: it cannot erase itself",
            ));
        }
        let ok = self
            .auth
            .check(password, Some(rec.password_hash))
            .await
            .map_err(pool_error)?;
        if !ok {
            return Err(bad());
        }
        self.revoke_all_sessions(user).await?;
        self.leave_every_group(user).await?;
        self.store.erase_user(user).await?;
        self.known_users.remove(user);
        // A login between the first revocation and the erase.
        self.revoke_all_sessions(user).await?;
        tracing::info!(%user, "account erased");
        Ok(())
    }

    /// Leaves each group `user` is a current member of; a group whose only
    /// member it is gets dissolved instead (nobody would be left to own
    /// it). Dissolved groups change no more: their member lists keep it.
    async fn leave_every_group(&self, user: &str) -> CoreResult<()> {
        let list = self.store.conversations(user, 0, ERASE_CONVS_MAX).await?;
        for gid in list.convs.iter().filter_map(|c| c.group.as_deref()) {
            let Some(g) = self.store.get_group(gid).await? else {
                continue;
            };
            if g.dissolved || !g.members.iter().any(|m| m == user) {
                continue;
            }
            if g.members.len() == 1 && g.owner == user {
                self.dissolve_group(user, gid).await?;
            } else {
                self.remove_member(user, gid, user).await?;
            }
        }
        Ok(())
    }
}
