//! Cluster plumbing, kept apart from durable storage: the bus that carries
//! pushes to whichever node holds a user's connections, and presence.
//! Embedded mode uses the in-process implementations below; cluster mode
//! implements the same traits on NATS and Redis.

use crate::hub::{Hub, Push};
use async_trait::async_trait;
use std::sync::Arc;

/// Carries a push to every connection of its users, on any node.
pub trait Bus: Send + Sync + 'static {
    /// Never blocks. Pushes published by one caller arrive in the order
    /// they were published.
    fn publish(&self, push: Push);
}

/// Who is online, cluster-wide.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// One answer per user, in order.
    async fn online(&self, users: &[&str]) -> Vec<bool>;
    /// A device of `user` connected; true when it is the user's first.
    async fn connected(&self, user: &str) -> bool;
    /// A device of `user` went away; true when it was the user's last.
    async fn disconnected(&self, user: &str) -> bool;
}

/// The in-process bus: delivers straight into this node's hub.
#[derive(Debug, Clone)]
pub struct LocalBus {
    hub: Arc<Hub>,
}

impl LocalBus {
    pub fn new(hub: Arc<Hub>) -> LocalBus {
        LocalBus { hub }
    }
}

impl Bus for LocalBus {
    fn publish(&self, push: Push) {
        let n = self.hub.deliver(&push);
        metrics::counter!("tern_deliveries_total").increment(n as u64);
    }
}

/// In-process presence: counts devices per user.
#[derive(Debug, Default)]
pub struct LocalPresence {
    devices: dashmap::DashMap<String, u32>,
}

impl LocalPresence {
    pub fn new() -> LocalPresence {
        LocalPresence::default()
    }
}

#[async_trait]
impl Presence for LocalPresence {
    async fn online(&self, users: &[&str]) -> Vec<bool> {
        users
            .iter()
            .map(|u| self.devices.get(*u).is_some_and(|n| *n > 0))
            .collect()
    }

    async fn connected(&self, user: &str) -> bool {
        let mut n = self.devices.entry(user.to_owned()).or_insert(0);
        *n += 1;
        *n == 1
    }

    async fn disconnected(&self, user: &str) -> bool {
        let mut last = false;
        self.devices.remove_if_mut(user, |_, n| {
            *n = n.saturating_sub(1);
            last = *n == 0;
            last
        });
        last
    }
}
