//! Where the publisher gets a group's members for a push (its
//! [`GroupView`]), in the two ways a node can know them:
//! - [`OwnViews`]: the only node. Its cache is the truth: each membership
//!   change is applied to the cached view in place as its message is
//!   pushed.
//! - [`SharedViews`]: a cluster node. Other nodes change memberships too,
//!   so the cached view is used only while its version is the store's,
//!   membership changes reload it, and each change is announced to the
//!   other nodes (which drop their cached view).
//!
//! `Core::start` picks one along with the fan-out.

use crate::bus::Envelope;
use crate::fanout::Fanout;
use crate::groups::{GroupView, Groups};
use crate::store::{MemberChange, Store, StoreError};
use async_trait::async_trait;
use std::sync::Arc;

#[async_trait]
pub trait MemberViews: Send + Sync {
    /// The members to push a message of `from` to, as of (at least) that
    /// message, which carries `change`.
    async fn view(
        &self,
        gid: &str,
        from: &str,
        change: Option<&MemberChange>,
    ) -> Option<Arc<GroupView>>;

    /// The members as of the end of a unit (messages stored at once, each
    /// `(from, change)`): every message of the unit goes to them.
    async fn unit_view(
        &self,
        gid: &str,
        msgs: &[(&str, Option<&MemberChange>)],
    ) -> Option<Arc<GroupView>>;

    /// A message carrying `change` was pushed (outside a unit).
    fn pushed(&self, gid: &str, change: &MemberChange);

    /// A unit's messages were pushed to its [`MemberViews::unit_view`].
    fn unit_pushed(&self, gid: &str);

    // 5.4 and blocks
    /// The view as of now, for a decision a stale view would get wrong
    /// (changes of roles, refusing a send); `None` when this answer has
    /// none (the caller then loads the group itself).
    async fn latest(&self, gid: &str) -> Option<Arc<GroupView>>;
}

/// The only node's views: see the module comment.
pub struct OwnViews {
    pub store: Arc<dyn Store>,
    pub groups: Arc<Groups>,
}

#[async_trait]
impl MemberViews for OwnViews {
    async fn view(
        &self,
        gid: &str,
        from: &str,
        change: Option<&MemberChange>,
    ) -> Option<Arc<GroupView>> {
        if self.groups.get(gid).is_none() && !matches!(change, Some(MemberChange::Create { .. })) {
            match self.store.get_group(gid).await {
                Ok(Some(rec)) => {
                    self.groups.insert(GroupView::from_record(&rec));
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, gid, "cannot load group for push");
                    return None;
                }
            }
        }
        self.groups.before_push(gid, from, change)
    }

    async fn unit_view(
        &self,
        gid: &str,
        msgs: &[(&str, Option<&MemberChange>)],
    ) -> Option<Arc<GroupView>> {
        let mut view = None;
        for (from, change) in msgs {
            view = self.view(gid, from, *change).await;
        }
        view
    }

    fn pushed(&self, gid: &str, change: &MemberChange) {
        self.groups.after_push(gid, Some(change));
    }

    fn unit_pushed(&self, _gid: &str) {}

    /// The cache is the truth on the only node.
    async fn latest(&self, gid: &str) -> Option<Arc<GroupView>> {
        self.groups.get(gid)
    }
}

/// A cluster node's views: see the module comment.
pub struct SharedViews {
    pub store: Arc<dyn Store>,
    pub groups: Arc<Groups>,
    pub fanout: Arc<Fanout>,
}

impl SharedViews {
    /// The view as of (at least) now: the cached one while its version is
    /// the store's and no change is being pushed, else loaded again (the
    /// store has applied the change by now).
    async fn current(&self, gid: &str, change: Option<&MemberChange>) -> Option<Arc<GroupView>> {
        let cached = self.groups.get(gid);
        if let (Some(v), None) = (&cached, change) {
            match self.store.group_version(gid).await {
                Ok(Some(ver)) if ver == v.version => return cached,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, gid, "cannot check group version");
                    return cached;
                }
            }
        }
        let loaded = async {
            let version = self.store.group_version(gid).await?;
            let rec = self.store.get_group(gid).await?;
            Ok::<_, StoreError>(rec.map(|r| (r, version.unwrap_or(0))))
        };
        match loaded.await {
            Ok(Some((rec, version))) => {
                let mut view = GroupView::from_record(&rec);
                view.version = version;
                Some(self.groups.insert(view))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, gid, "cannot load group for push");
                cached
            }
        }
    }

    fn announce(&self, gid: &str) {
        self.fanout
            .to_others(&Envelope::GroupChanged { gid: gid.into() });
    }
}

#[async_trait]
impl MemberViews for SharedViews {
    async fn view(
        &self,
        gid: &str,
        _from: &str,
        change: Option<&MemberChange>,
    ) -> Option<Arc<GroupView>> {
        self.current(gid, change).await
    }

    async fn unit_view(
        &self,
        gid: &str,
        msgs: &[(&str, Option<&MemberChange>)],
    ) -> Option<Arc<GroupView>> {
        let last = msgs.last().and_then(|(_, c)| *c);
        self.current(gid, last).await
    }

    fn pushed(&self, gid: &str, _change: &MemberChange) {
        self.announce(gid);
    }

    fn unit_pushed(&self, gid: &str) {
        self.announce(gid);
    }

    /// The cached view while its version is the store's, else loaded.
    async fn latest(&self, gid: &str) -> Option<Arc<GroupView>> {
        self.current(gid, None).await
    }
}
