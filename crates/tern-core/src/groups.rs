//! This node's cache of group membership, used to route pushes. It is
//! changed only by the publisher, in commit order, as it publishes each
//! membership `system` message: a member added gets the message that adds
//! them, a member removed gets the one that removes them and nothing after.

use crate::roles::{GroupState, Role, Standing};
use crate::store::{GroupRecord, MemberChange};
use dashmap::DashMap;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

/// Members per chunk of a [`MemberList`].
const CHUNK: usize = 1024;
/// Shards of a [`MemberSet`].
const SHARDS: usize = 64;

/// A member list, longest-standing first, in shared chunks: a new view
/// that adds or removes one member copies one chunk (and the chunk
/// pointers), not the list, and every older view keeps its own.
#[derive(Debug, Clone, Default)]
pub struct MemberList {
    chunks: Vec<Arc<Vec<Arc<str>>>>,
    len: usize,
}

impl MemberList {
    fn from_vec(all: Vec<Arc<str>>) -> MemberList {
        let len = all.len();
        let chunks = all.chunks(CHUNK).map(|c| Arc::new(c.to_vec())).collect();
        MemberList { chunks, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    pub fn first(&self) -> Option<&Arc<str>> {
        self.iter().next()
    }

    /// A copy of the list (costs the whole list: for small groups or
    /// answers that need it).
    pub fn to_vec(&self) -> Vec<Arc<str>> {
        self.iter().cloned().collect()
    }

    fn push(&mut self, user: Arc<str>) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(user),
            _ => self.chunks.push(Arc::new(vec![user])),
        }
        self.len += 1;
    }

    fn remove(&mut self, user: &str) {
        let Some(ci) = self
            .chunks
            .iter()
            .position(|c| c.iter().any(|m| &**m == user))
        else {
            return;
        };
        let chunk = Arc::make_mut(&mut self.chunks[ci]);
        chunk.retain(|m| &**m != user);
        if chunk.is_empty() {
            self.chunks.remove(ci);
        }
        self.len -= 1;
    }
}

/// A member set in shared shards: adding or removing one member copies one
/// shard.
#[derive(Debug, Clone)]
struct MemberSet {
    shards: Vec<Arc<HashSet<Arc<str>>>>,
    hasher: RandomState,
}

impl MemberSet {
    fn new<'a>(members: impl Iterator<Item = &'a Arc<str>>) -> MemberSet {
        let hasher = RandomState::new();
        let mut shards = vec![HashSet::new(); SHARDS];
        for m in members {
            shards[(hasher.hash_one(&**m) as usize) % SHARDS].insert(m.clone());
        }
        MemberSet {
            shards: shards.into_iter().map(Arc::new).collect(),
            hasher,
        }
    }

    fn shard(&self, user: &str) -> usize {
        (self.hasher.hash_one(user) as usize) % SHARDS
    }

    fn contains(&self, user: &str) -> bool {
        self.shards[self.shard(user)].contains(user)
    }

    fn insert(&mut self, user: Arc<str>) {
        let i = self.shard(&user);
        Arc::make_mut(&mut self.shards[i]).insert(user);
    }

    fn remove(&mut self, user: &str) {
        let i = self.shard(user);
        Arc::make_mut(&mut self.shards[i]).remove(user);
    }
}

#[derive(Debug, Clone)]
pub struct GroupView {
    pub gid: Arc<str>,
    pub name: Arc<str>,
    pub owner: Arc<str>,
    /// Longest-standing first.
    pub members: MemberList,
    set: MemberSet,
    /// The store's membership version this view matches (the seq of the
    /// newest membership change), 0 when not known. Cluster nodes compare
    /// it with the store's to notice changes made by other nodes.
    pub version: u64,
    /// 5.4: admins, mutes and settings (shared between views until one of
    /// them changes).
    pub roles: Arc<ViewRoles>,
}

/// A view's roles and settings (PROTOCOL.md 5.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewRoles {
    /// Admins other than the owner, longest-standing first.
    pub admins: Vec<Arc<str>>,
    /// Members' mutes (until, ms), ended ones included until lifted.
    pub mutes: Vec<(Arc<str>, i64)>,
    pub announcement: Arc<str>,
    pub state: GroupState,
}

impl ViewRoles {
    fn from_record(r: &GroupRecord) -> ViewRoles {
        ViewRoles {
            admins: r
                .admins
                .iter()
                .filter(|a| **a != r.owner && r.members.contains(a))
                .map(|a| Arc::from(a.as_str()))
                .collect(),
            mutes: r
                .mutes
                .iter()
                .map(|(u, t)| (Arc::from(u.as_str()), *t))
                .collect(),
            announcement: r.announcement.as_str().into(),
            state: GroupState {
                muted_all: r.muted_all,
                dissolved: r.dissolved,
            },
        }
    }

    /// These roles once `user` is no longer a member (or is the owner).
    fn without(&self, user: &str) -> ViewRoles {
        let mut r = self.clone();
        r.admins.retain(|a| &**a != user);
        r.mutes.retain(|(m, _)| &**m != user);
        r
    }
}

impl GroupView {
    pub fn from_record(r: &GroupRecord) -> GroupView {
        let members: Vec<Arc<str>> = r.members.iter().map(|m| Arc::from(m.as_str())).collect();
        GroupView {
            gid: r.gid.as_str().into(),
            name: r.name.as_str().into(),
            owner: r.owner.as_str().into(),
            set: MemberSet::new(members.iter()),
            members: MemberList::from_vec(members),
            version: 0,
            roles: Arc::new(ViewRoles::from_record(r)),
        }
    }

    pub fn is_member(&self, user: &str) -> bool {
        self.set.contains(user)
    }

    /// `user`'s standing ([`crate::roles`]); `None` when not a member.
    pub fn standing(&self, user: &str) -> Option<Standing> {
        if !self.is_member(user) {
            return None;
        }
        let admin = self.roles.admins.iter().any(|a| &**a == user);
        Some(Standing {
            role: Role::of(&self.owner, user, admin),
            muted_until: self
                .roles
                .mutes
                .iter()
                .find(|(m, _)| &**m == user)
                .map(|(_, t)| *t),
        })
    }

    /// Owner or admin: see [`crate::roles::can_moderate`].
    pub fn can_moderate(&self, user: &str) -> bool {
        self.standing(user).is_some_and(|s| s.role.moderates())
    }

    /// This view with a change of roles or settings applied (5.4).
    fn with_roles_change(&self, change: &MemberChange) -> GroupView {
        let mut v = self.clone();
        v.version = 0;
        let mut r = (*v.roles).clone();
        match change {
            MemberChange::Admin { user, on } => {
                r.admins.retain(|a| **a != **user);
                if *on && v.is_member(user) && *v.owner != **user {
                    r.admins.push(user.as_str().into());
                }
            }
            MemberChange::Mute { user, until } => {
                r.mutes.retain(|(m, _)| **m != **user);
                if let Some(t) = until {
                    r.mutes.push((user.as_str().into(), *t));
                }
            }
            MemberChange::Rename(name) => v.name = name.as_str().into(),
            MemberChange::Announce(text) => r.announcement = text.as_str().into(),
            MemberChange::MutedAll(on) => r.state.muted_all = *on,
            MemberChange::Dissolve => r.state.dissolved = true,
            MemberChange::Create { .. } | MemberChange::Join(_) | MemberChange::Leave(_) => {}
        }
        v.roles = Arc::new(r);
        v
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// This view with `user` added last (copying one chunk and one shard).
    fn with_member(&self, user: Arc<str>) -> GroupView {
        let mut v = self.clone();
        v.version = 0;
        if !v.set.contains(&user) {
            v.set.insert(user.clone());
            v.members.push(user);
        }
        v
    }

    /// This view without `user`; a leaving owner hands over to the
    /// longest-standing remaining member.
    fn without_member(&self, user: &str) -> GroupView {
        let mut v = self.clone();
        v.version = 0;
        if v.set.contains(user) {
            v.set.remove(user);
            v.members.remove(user);
        }
        if *v.owner == *user {
            if let Some(first) = v.members.first() {
                v.owner = first.clone();
            }
        }
        let owner = v.owner.clone();
        v.roles = Arc::new(v.roles.without(user).without(&owner));
        v
    }
}

impl crate::hub::Audience for GroupView {
    fn len(&self) -> usize {
        self.size()
    }

    fn contains(&self, user: &str) -> bool {
        self.is_member(user)
    }

    fn for_each_user(&self, f: &mut dyn FnMut(&Arc<str>)) {
        for m in self.members.iter() {
            f(m);
        }
    }
}

#[derive(Debug, Default)]
pub struct Groups {
    map: DashMap<Arc<str>, Arc<GroupView>>,
}

impl Groups {
    pub fn get(&self, gid: &str) -> Option<Arc<GroupView>> {
        self.map.get(gid).map(|v| v.clone())
    }

    /// Drops the cached view (another node changed the membership).
    pub fn forget(&self, gid: &str) {
        self.map.remove(gid);
    }

    pub fn insert(&self, view: GroupView) -> Arc<GroupView> {
        let view = Arc::new(view);
        self.map.insert(view.gid.clone(), view.clone());
        view
    }

    /// Applies the part of a change that precedes the message's push
    /// (create, join). Returns the view to push to.
    pub fn before_push(
        &self,
        gid: &str,
        from: &str,
        change: Option<&MemberChange>,
    ) -> Option<Arc<GroupView>> {
        match change {
            Some(MemberChange::Create { name }) => {
                Some(self.insert(GroupView::from_record(&GroupRecord {
                    gid: gid.to_owned(),
                    name: name.clone(),
                    owner: from.to_owned(),
                    members: vec![from.to_owned()],
                    created_at: 0,
                    ..GroupRecord::default()
                })))
            }
            Some(MemberChange::Join(user)) => {
                let view = self.get(gid)?;
                if view.is_member(user) {
                    return Some(view);
                }
                Some(self.insert(view.with_member(user.as_str().into())))
            }
            // 5.4 and blocks
            Some(
                c @ (MemberChange::Admin { .. }
                | MemberChange::Mute { .. }
                | MemberChange::Rename(_)
                | MemberChange::Announce(_)
                | MemberChange::MutedAll(_)
                | MemberChange::Dissolve),
            ) => {
                let view = self.get(gid)?;
                Some(self.insert(view.with_roles_change(c)))
            }
            _ => self.get(gid),
        }
    }

    /// Applies the part of a change that follows the push (leave).
    pub fn after_push(&self, gid: &str, change: Option<&MemberChange>) {
        let Some(MemberChange::Leave(user)) = change else {
            return;
        };
        let Some(view) = self.get(gid) else { return };
        self.insert(view.without_member(user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_in_order() {
        let g = Groups::default();
        let v = g
            .before_push(
                "g",
                "alice",
                Some(&MemberChange::Create { name: "n".into() }),
            )
            .unwrap();
        assert_eq!(v.size(), 1);
        let v = g
            .before_push("g", "alice", Some(&MemberChange::Join("bob".into())))
            .unwrap();
        assert!(v.is_member("bob"));
        g.before_push("g", "alice", Some(&MemberChange::Join("carol".into())));
        // The leaving owner is still pushed to, then removed; the
        // longest-standing member becomes owner.
        let v = g
            .before_push("g", "alice", Some(&MemberChange::Leave("alice".into())))
            .unwrap();
        assert!(v.is_member("alice"));
        g.after_push("g", Some(&MemberChange::Leave("alice".into())));
        let v = g.get("g").unwrap();
        assert!(!v.is_member("alice"));
        assert_eq!(&*v.owner, "bob");
        assert_eq!(
            v.members.iter().map(|m| &**m).collect::<Vec<_>>(),
            ["bob", "carol"]
        );
    }

    /// A large group grows and shrinks one member at a time; each view is
    /// a snapshot (older views keep their members), and each change copies
    /// one chunk and one shard, not the list.
    #[test]
    fn views_are_snapshots_sharing_storage() {
        let g = Groups::default();
        let members: Vec<String> = (0..5000).map(|i| format!("u{i}")).collect();
        g.insert(GroupView::from_record(&GroupRecord {
            gid: "big".into(),
            name: "n".into(),
            owner: "u0".into(),
            members: members.clone(),
            created_at: 0,
            ..GroupRecord::default()
        }));
        let before = g.get("big").unwrap();
        let after = g
            .before_push("big", "u0", Some(&MemberChange::Join("new".into())))
            .unwrap();
        assert!(!before.is_member("new") && after.is_member("new"));
        assert_eq!((before.size(), after.size()), (5000, 5001));
        assert_eq!(after.members.iter().last().map(|m| &**m), Some("new"));
        // Untouched chunks and shards are shared, not copied.
        let shared = before
            .members
            .chunks
            .iter()
            .zip(&after.members.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, before.members.chunks.len() - 1);
        let shared_shards = before
            .set
            .shards
            .iter()
            .zip(&after.set.shards)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared_shards, SHARDS - 1);

        g.after_push("big", Some(&MemberChange::Leave("u0".into())));
        g.after_push("big", Some(&MemberChange::Leave("u2000".into())));
        let v = g.get("big").unwrap();
        assert_eq!(&*v.owner, "u1");
        assert!(!v.is_member("u0") && !v.is_member("u2000") && v.is_member("u1"));
        assert_eq!(v.size(), 4999);
        assert_eq!(v.members.to_vec().len(), 4999);
        assert!(after.is_member("u2000"));
        let order: Vec<&str> = v.members.iter().map(|m| &**m).collect();
        assert_eq!(&order[..2], ["u1", "u2"]);
        assert_eq!(order[1998..2000], ["u1999", "u2001"]);
    }
}
