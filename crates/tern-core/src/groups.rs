//! This node's cache of group membership, used to route pushes. It is
//! changed only by the publisher, in commit order, as it publishes each
//! membership `system` message: a member added gets the message that adds
//! them, a member removed gets the one that removes them and nothing after.

use crate::store::{GroupRecord, MemberChange};
use dashmap::DashMap;
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct GroupView {
    pub gid: Arc<str>,
    pub name: Arc<str>,
    pub owner: Arc<str>,
    /// Longest-standing first.
    pub members: Arc<[Arc<str>]>,
    set: HashSet<Arc<str>>,
    /// The store's membership version this view matches (the seq of the
    /// newest membership change), 0 when not known. Cluster nodes compare
    /// it with the store's to notice changes made by other nodes.
    pub version: u64,
}

impl GroupView {
    pub fn from_record(r: &GroupRecord) -> GroupView {
        let members: Vec<Arc<str>> = r.members.iter().map(|m| Arc::from(m.as_str())).collect();
        GroupView {
            gid: r.gid.as_str().into(),
            name: r.name.as_str().into(),
            owner: r.owner.as_str().into(),
            set: members.iter().cloned().collect(),
            members: members.into(),
            version: 0,
        }
    }

    pub fn is_member(&self, user: &str) -> bool {
        self.set.contains(user)
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    fn with_members(&self, members: Vec<Arc<str>>, owner: Arc<str>) -> GroupView {
        GroupView {
            gid: self.gid.clone(),
            name: self.name.clone(),
            owner,
            set: members.iter().cloned().collect(),
            members: members.into(),
            version: 0,
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
                })))
            }
            Some(MemberChange::Join(user)) => {
                let view = self.get(gid)?;
                if view.is_member(user) {
                    return Some(view);
                }
                let mut members = view.members.to_vec();
                members.push(user.as_str().into());
                Some(self.insert(view.with_members(members, view.owner.clone())))
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
        let members: Vec<Arc<str>> = view
            .members
            .iter()
            .filter(|m| ***m != **user)
            .cloned()
            .collect();
        let owner = if *view.owner == **user {
            members
                .first()
                .cloned()
                .unwrap_or_else(|| view.owner.clone())
        } else {
            view.owner.clone()
        };
        self.insert(view.with_members(members, owner));
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
}
