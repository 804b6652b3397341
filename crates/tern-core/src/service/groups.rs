//! Groups: creation, membership changes and the member's view.

use super::{group_message, Core, LIST_MAX};
use crate::error::{CoreError, CoreResult};
use crate::groups::GroupView;
use crate::pipeline::PushPlan;
use crate::store::{MemberChange, StoredMessage};
use std::sync::Arc;
use tern_proto::ErrorCode;

impl Core {
    /// Creates a group owned by `owner` with `members` (the owner need not
    /// be listed). Writes `group_created` and one `member_joined` per listed
    /// member, in order, in one transaction (all or nothing).
    pub async fn create_group(
        &self,
        owner: &str,
        name: &str,
        members: &[&str],
    ) -> CoreResult<Arc<GroupView>> {
        if name.is_empty() || name.chars().count() > 128 {
            return Err(CoreError::invalid("name must be 1-128 characters"));
        }
        let members = self.new_members(members, None).await?;
        if members.len() + 1 > self.cfg.max_group_size {
            return Err(CoreError::invalid(format!(
                "a group has at most {} members",
                self.cfg.max_group_size
            )));
        }
        self.check_group_cap(std::iter::once(owner).chain(members.iter().copied()))
            .await?;
        let gid = new_group_id();
        let mut jobs = Vec::with_capacity(members.len() + 1);
        let created = system_content("group_created", owner);
        let change = Some(MemberChange::Create {
            name: name.to_owned(),
        });
        jobs.push((
            group_message(
                self.cfg.write_limit,
                &gid,
                owner,
                "system",
                created,
                None,
                change,
            ),
            self.group_plan(&gid),
        ));
        for m in members.iter().filter(|m| **m != owner) {
            let change = Some(MemberChange::Join((*m).to_owned()));
            let content = system_content("member_joined", m);
            jobs.push((
                group_message(
                    self.cfg.write_limit,
                    &gid,
                    owner,
                    "system",
                    content,
                    None,
                    change,
                ),
                self.group_plan(&gid),
            ));
        }
        let stored = self.pipeline.append_unit(jobs).await?;
        self.emit_joins(&gid, owner, &stored).await;
        self.group_view(&gid).await
    }

    /// 5.6: `member.joined` for each member a unit added (the owner of a
    /// new group included).
    async fn emit_joins(&self, gid: &str, by: &str, stored: &[StoredMessage]) {
        for m in stored {
            if let Some(user) =
                serde_json::from_str::<serde_json::Value>(m.content.as_deref().unwrap_or("{}"))
                    .ok()
                    .and_then(|c| c.get("user").and_then(|u| u.as_str()).map(str::to_owned))
            {
                self.emit_member("member.joined", gid, &user, by, m.seq)
                    .await;
            }
        }
    }

    fn group_plan(&self, gid: &str) -> PushPlan {
        PushPlan::Group {
            gid: gid.into(),
            except: None,
        }
    }

    /// Validates a list of users to add: at most 1000, all existing,
    /// duplicates and current members dropped.
    async fn new_members<'a>(
        &self,
        users: &[&'a str],
        view: Option<&GroupView>,
    ) -> CoreResult<Vec<&'a str>> {
        if users.len() > LIST_MAX {
            return Err(CoreError::invalid("at most 1000 users per call"));
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            if !seen.insert(*u) || view.is_some_and(|v| v.is_member(u)) {
                continue;
            }
            self.require_user(u).await?;
            out.push(*u);
        }
        Ok(out)
    }

    /// Refuses (`forbidden`) when any of `users` is already in the most
    /// groups one user may be in. Checked before the unit is written, so
    /// concurrent calls may each pass and overshoot the cap by the calls in
    /// flight: it bounds what one user's membership costs, not an exact quota.
    async fn check_group_cap<'a>(&self, users: impl Iterator<Item = &'a str>) -> CoreResult<()> {
        let cap = self.cfg.max_groups_per_user as u64;
        for u in users {
            if self.store.group_count(u).await? >= cap {
                return Err(CoreError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "{u} is in {cap} groups, the most one user may be in (groups.max_per_user)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The group, for one of its members (as of now: see
    /// `current_group_view`).
    pub async fn group(&self, user: &str, gid: &str) -> CoreResult<Arc<GroupView>> {
        let view = self.current_group_view(gid).await?;
        if !view.is_member(user) {
            return Err(CoreError::new(
                ErrorCode::NotMember,
                "not a member of this group",
            ));
        }
        Ok(view)
    }

    /// Any member may add users; each gets a `member_joined` message. The
    /// call's additions commit in one transaction (all or nothing).
    pub async fn add_members(
        &self,
        actor: &str,
        gid: &str,
        users: &[&str],
    ) -> CoreResult<Arc<GroupView>> {
        let view = self.group(actor, gid).await?;
        if view.roles.state.dissolved {
            return Err(CoreError::new(
                ErrorCode::Forbidden,
                "the group is dissolved",
            ));
        }
        let users = self.new_members(users, Some(&view)).await?;
        if view.size() + users.len() > self.cfg.max_group_size {
            return Err(CoreError::invalid(format!(
                "a group has at most {} members",
                self.cfg.max_group_size
            )));
        }
        self.check_group_cap(users.iter().copied()).await?;
        let jobs = users
            .iter()
            .map(|u| {
                let change = Some(MemberChange::Join((*u).to_owned()));
                let content = system_content("member_joined", u);
                (
                    group_message(
                        self.cfg.write_limit,
                        gid,
                        actor,
                        "system",
                        content,
                        None,
                        change,
                    ),
                    self.group_plan(gid),
                )
            })
            .collect();
        let stored = self.pipeline.append_unit(jobs).await?;
        self.emit_joins(gid, actor, &stored).await;
        self.group_view(gid).await
    }

    /// The owner and admins remove members of a lower rank
    /// (`member_removed`, `crate::roles`); anyone removes themself
    /// (`member_left`). Nothing changes in a dissolved group.
    pub async fn remove_member(&self, actor: &str, gid: &str, user: &str) -> CoreResult<()> {
        let view = self.group(actor, gid).await?;
        if view.roles.state.dissolved {
            return Err(CoreError::new(
                ErrorCode::Forbidden,
                "the group is dissolved",
            ));
        }
        let event = if actor == user {
            "member_left"
        } else if view.can_moderate(actor) {
            "member_removed"
        } else {
            return Err(CoreError::new(
                ErrorCode::Forbidden,
                "only the owner and admins remove other members",
            ));
        };
        if !view.is_member(user) {
            return Err(CoreError::new(
                ErrorCode::NoSuchUser,
                "not a member of this group",
            ));
        }
        let change = MemberChange::Leave(user.to_owned());
        let content = serde_json::json!({"event": event, "user": user});
        let seq = self.write_change_seq(actor, &view, change, content).await?;
        self.emit_member("member.left", gid, user, actor, seq).await;
        Ok(())
    }
}

/// `{"event":...,"user":...}`, the content of membership messages.
fn system_content(event: &str, user: &str) -> String {
    serde_json::json!({"event": event, "user": user}).to_string()
}

/// 12 characters of [a-z0-9]: about 62 bits, unique enough not to collide.
fn new_group_id() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}
