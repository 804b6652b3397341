//! Group roles and moderation (PROTOCOL.md 5.4): settings, admins, mutes,
//! dissolving. Each change is a `system` message carrying its
//! [`MemberChange`], written in the same transaction as the change itself
//! (so it is ordered with the group's other events and moves the group's
//! version, which makes every node reload its view). Who may do what is
//! [`crate::roles`]: asked here first, then again by the store as it
//! writes.

use super::{group_message, Core};
use crate::error::{CoreError, CoreResult};
use crate::groups::GroupView;
use crate::now_ms;
use crate::pipeline::PushPlan;
use crate::roles::{self, Role};
use crate::store::{Appended, MemberChange, Refusal, StoreError};
use std::sync::Arc;
use tern_proto::ErrorCode;

/// What `PATCH /v1/groups/{group}` asks to change.
#[derive(Debug, Clone, Default)]
pub struct GroupUpdate<'a> {
    pub name: Option<&'a str>,
    pub announcement: Option<&'a str>,
    pub muted_all: Option<bool>,
}

/// The refusal of a role rule as the client sees it.
pub(super) fn refused(r: Refusal) -> CoreError {
    StoreError::from(r).into()
}

fn forbidden(message: &'static str) -> CoreError {
    CoreError::new(ErrorCode::Forbidden, message)
}

impl Core {
    /// The group as of now, for decisions a stale view would get wrong:
    /// changes of roles, recalls by rank, refusals of sends. One node's
    /// cache is the truth; a cluster node's cached view is used only while
    /// its version is the store's (another node may have changed members
    /// or roles an instant ago), else loaded again (`views.rs`).
    pub(super) async fn current_group_view(&self, gid: &str) -> CoreResult<Arc<GroupView>> {
        if !tern_proto::ids::is_valid_name(gid) {
            return Err(CoreError::new(ErrorCode::NoSuchGroup, "no such group"));
        }
        match self.views.latest(gid).await {
            Some(v) => Ok(v),
            None => self.group_view(gid).await,
        }
    }

    /// The group for a change by `actor`: `actor` must be a member with at
    /// least rank `need`, and the group not dissolved.
    async fn for_change(&self, actor: &str, gid: &str, need: Role) -> CoreResult<Arc<GroupView>> {
        let view = self.group(actor, gid).await?;
        if view.roles.state.dissolved {
            return Err(forbidden("the group is dissolved"));
        }
        let role = view.standing(actor).map_or(Role::Member, |s| s.role);
        if role < need {
            return Err(forbidden(match need {
                Role::Owner => "only the owner may do this",
                _ => "only the owner and admins may do this",
            }));
        }
        Ok(view)
    }

    /// Writes one change of roles or settings by `actor` after checking it
    /// against the role rules with this node's view.
    pub(super) async fn write_change(
        &self,
        actor: &str,
        view: &GroupView,
        change: MemberChange,
        content: serde_json::Value,
    ) -> CoreResult<()> {
        self.write_change_seq(actor, view, change, content)
            .await
            .map(|_| ())
    }

    /// [`Core::write_change`], answering the change's seq.
    pub(super) async fn write_change_seq(
        &self,
        actor: &str,
        view: &GroupView,
        change: MemberChange,
        content: serde_json::Value,
    ) -> CoreResult<u64> {
        let target = change.target().and_then(|t| view.standing(t));
        roles::admit(
            &view.roles.state,
            Some(&change),
            actor,
            view.standing(actor),
            target,
            now_ms(),
        )
        .map_err(refused)?;
        let gid = &*view.gid;
        let msg = group_message(
            self.cfg.write_limit,
            gid,
            actor,
            "system",
            content.to_string(),
            None,
            Some(change),
        );
        let plan = PushPlan::Group {
            gid: gid.into(),
            except: None,
        };
        match self.pipeline.append(msg, plan).await? {
            Appended::Refused(r) => Err(refused(r)),
            a => Ok(a.message().map_or(0, |m| m.seq)),
        }
    }

    /// A member of the group named as the target of a change.
    fn require_member(view: &GroupView, user: &str) -> CoreResult<()> {
        if view.is_member(user) {
            Ok(())
        } else {
            Err(CoreError::new(
                ErrorCode::NoSuchUser,
                "not a member of this group",
            ))
        }
    }

    /// `PATCH /v1/groups/{group}`: owner or admins. Each field that changes
    /// writes its event (`group_renamed`, `announcement_changed`,
    /// `muted_all_changed`), in that order; the fields are all checked
    /// before any is written. Answers the group as it is then.
    pub async fn update_group(
        &self,
        actor: &str,
        gid: &str,
        up: &GroupUpdate<'_>,
    ) -> CoreResult<Arc<GroupView>> {
        let view = self.for_change(actor, gid, Role::Admin).await?;
        if let Some(name) = up.name {
            if name.is_empty() || name.chars().count() > 128 {
                return Err(CoreError::invalid("name must be 1-128 characters"));
            }
        }
        if let Some(text) = up.announcement {
            if text.len() > self.cfg.content_bytes {
                return Err(CoreError::new(
                    ErrorCode::ContentTooLarge,
                    format!("announcement is over {} bytes", self.cfg.content_bytes),
                ));
            }
        }
        let mut changes = Vec::new();
        if let Some(name) = up.name.filter(|n| *n != &*view.name) {
            changes.push((
                MemberChange::Rename(name.to_owned()),
                serde_json::json!({"event": "group_renamed", "user": actor, "name": name}),
            ));
        }
        if let Some(text) = up.announcement.filter(|t| *t != &*view.roles.announcement) {
            changes.push((
                MemberChange::Announce(text.to_owned()),
                serde_json::json!({"event": "announcement_changed", "user": actor, "announcement": text}),
            ));
        }
        if let Some(on) = up.muted_all.filter(|on| *on != view.roles.state.muted_all) {
            changes.push((
                MemberChange::MutedAll(on),
                serde_json::json!({"event": "muted_all_changed", "user": actor, "muted_all": on}),
            ));
        }
        for (change, content) in changes {
            let view = self.current_group_view(gid).await?;
            self.write_change(actor, &view, change, content).await?;
        }
        self.current_group_view(gid).await
    }

    /// `PUT` (`on`) / `DELETE /v1/groups/{group}/admins/{user}`: the owner
    /// only. Making an admin of an admin, or a plain member of a plain
    /// member, writes nothing.
    pub async fn set_admin(&self, actor: &str, gid: &str, user: &str, on: bool) -> CoreResult<()> {
        let view = self.for_change(actor, gid, Role::Owner).await?;
        Self::require_member(&view, user)?;
        let is_admin = view.roles.admins.iter().any(|a| &**a == user);
        if is_admin == on && user != actor {
            return Ok(());
        }
        let event = if on { "admin_added" } else { "admin_removed" };
        let change = MemberChange::Admin {
            user: user.to_owned(),
            on,
        };
        let content = serde_json::json!({"event": event, "user": user});
        self.write_change(actor, &view, change, content).await
    }

    /// `PUT /v1/groups/{group}/mutes/{user}` (`until`: a time after now,
    /// ms) / `DELETE ...` (`None`): owner or admins, on a rank below their
    /// own. Lifting a mute that is not there writes nothing.
    pub async fn set_mute(
        &self,
        actor: &str,
        gid: &str,
        user: &str,
        until: Option<i64>,
    ) -> CoreResult<()> {
        let view = self.for_change(actor, gid, Role::Admin).await?;
        Self::require_member(&view, user)?;
        let content = match until {
            Some(t) if t <= now_ms() => {
                return Err(CoreError::invalid("until must be a time after now (ms)"))
            }
            Some(t) => serde_json::json!({"event": "member_muted", "user": user, "until": t}),
            None => {
                let muted = view.roles.mutes.iter().any(|(m, _)| &**m == user);
                let outranks = view
                    .standing(actor)
                    .zip(view.standing(user))
                    .is_some_and(|(a, t)| a.role.outranks(t.role));
                if !muted && outranks {
                    return Ok(());
                }
                serde_json::json!({"event": "member_unmuted", "user": user})
            }
        };
        let change = MemberChange::Mute {
            user: user.to_owned(),
            until,
        };
        self.write_change(actor, &view, change, content).await
    }

    /// `DELETE /v1/groups/{group}`: the owner dissolves the group
    /// (`group_dissolved`). Its members keep it, readable; nothing is
    /// written to it again.
    pub async fn dissolve_group(&self, actor: &str, gid: &str) -> CoreResult<()> {
        let view = self.for_change(actor, gid, Role::Owner).await?;
        let content = serde_json::json!({"event": "group_dissolved", "user": actor});
        self.write_change(actor, &view, MemberChange::Dissolve, content)
            .await
    }
}
