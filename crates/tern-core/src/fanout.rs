//! Fan-out: where each push goes.
//!
//! One node (embedded mode) delivers every push straight into its hub. In
//! a cluster, pushes go through one routing task per node, in the order
//! they were made, so that what one node sends another arrives in that
//! order:
//! - the node's own devices get the push from the hub at once;
//! - for a small audience (at most [`ROUTED_MAX`] users: 1:1 messages,
//!   receipts, typing, presence of a few friends) presence says which
//!   nodes hold their devices, looked up once for a whole batch of
//!   pushes, and each such node gets an envelope naming only its users;
//! - a larger audience (group messages) goes to every live node, each of
//!   which delivers to whichever of the users it holds: one envelope per
//!   node instead of one lookup per member.
//!
//! The receiving side is [`NodeInbound`]: it feeds the same hub, rooms and
//! group cache that local calls use.

use crate::bus::{Bus, Envelope, Inbound, NodeId, Presence};
use crate::groups::Groups;
use crate::hub::{Hub, Push};
use crate::rooms::Rooms;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Largest audience whose nodes are looked up; larger ones go to every
/// live node.
pub const ROUTED_MAX: usize = 16;
/// Pushes routed together (one presence lookup).
const ROUTE_BATCH: usize = 256;

pub struct Fanout {
    node: NodeId,
    hub: Arc<Hub>,
    cluster: Option<Cluster>,
}

struct Cluster {
    tx: mpsc::Sender<Push>,
    bus: Arc<dyn Bus>,
    presence: Arc<dyn Presence>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("node", &self.node)
            .field("cluster", &self.cluster.is_some())
            .finish()
    }
}

impl Fanout {
    /// One node: every push goes straight to the hub.
    pub fn single(node: NodeId, hub: Arc<Hub>) -> Fanout {
        Fanout {
            node,
            hub,
            cluster: None,
        }
    }

    /// A cluster node: starts the routing task (queue of `queue` pushes).
    pub fn cluster(
        hub: Arc<Hub>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        queue: usize,
    ) -> Fanout {
        let node = presence.node();
        let (tx, rx) = mpsc::channel(queue);
        tokio::spawn(route_loop(
            node,
            hub.clone(),
            bus.clone(),
            presence.clone(),
            rx,
        ));
        Fanout {
            node,
            hub,
            cluster: Some(Cluster { tx, bus, presence }),
        }
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Delivers a push to every device of its users, on every node. Never
    /// waits. A push that finds the routing queue full is dropped and
    /// counted: message pushes are then caught up from the offline queue
    /// and by gap fill, never lost from storage.
    pub fn push(&self, push: Push) {
        let Some(c) = &self.cluster else {
            let n = self.hub.deliver(&push);
            metrics::counter!("tern_deliveries_total").increment(n as u64);
            return;
        };
        if c.tx.try_send(push).is_err() {
            metrics::counter!("tern_fanout_dropped_total").increment(1);
            tracing::warn!("fan-out queue full: push dropped");
        }
    }

    /// Sends an envelope to one other node (kicks).
    pub fn to_node(&self, node: NodeId, env: &Envelope) {
        if let Some(c) = &self.cluster {
            if let Err(e) = c.bus.publish(&[node], env) {
                tracing::warn!(error = %e, node, "bus publish failed");
            }
        }
    }

    /// Sends an envelope to every other live node (membership changes).
    pub fn to_others(&self, env: &Envelope) {
        if let Some(c) = &self.cluster {
            let others: Vec<NodeId> = c
                .presence
                .live_nodes()
                .into_iter()
                .filter(|n| *n != self.node)
                .collect();
            publish(&*c.bus, &others, env);
        }
    }

    /// Sends an envelope to the listed nodes but this one.
    pub fn to_nodes(&self, nodes: &[NodeId], env: &Envelope) {
        if let Some(c) = &self.cluster {
            let others: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != self.node).collect();
            publish(&*c.bus, &others, env);
        }
    }
}

fn publish(bus: &dyn Bus, to: &[NodeId], env: &Envelope) {
    if to.is_empty() {
        return;
    }
    if let Err(e) = bus.publish(to, env) {
        metrics::counter!("tern_bus_publish_errors_total").increment(1);
        tracing::warn!(error = %e, "bus publish failed");
    }
}

async fn route_loop(
    node: NodeId,
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    presence: Arc<dyn Presence>,
    mut rx: mpsc::Receiver<Push>,
) {
    let mut batch = Vec::with_capacity(ROUTE_BATCH);
    while rx.recv_many(&mut batch, ROUTE_BATCH).await > 0 {
        // One lookup for every small audience of the batch.
        let mut lookup: Vec<Arc<str>> = Vec::new();
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        for p in &batch {
            if p.users.len() <= ROUTED_MAX {
                for u in &p.users {
                    index.entry(u.clone()).or_insert_with(|| {
                        lookup.push(u.clone());
                        lookup.len() - 1
                    });
                }
            }
        }
        let routes = if lookup.is_empty() {
            Some(Vec::new())
        } else {
            match presence.nodes_of(&lookup).await {
                Ok(r) => Some(r),
                Err(e) => {
                    // Without routes, small audiences go everywhere too.
                    tracing::warn!(error = %e, "route lookup failed");
                    None
                }
            }
        };
        let others: Vec<NodeId> = presence
            .live_nodes()
            .into_iter()
            .filter(|n| *n != node)
            .collect();
        // Everything for one node in this batch travels as one bus message,
        // in the order the pushes were made.
        let mut per_node: BTreeMap<NodeId, Vec<Envelope>> = BTreeMap::new();
        for p in batch.drain(..) {
            let n = hub.deliver(&p);
            metrics::counter!("tern_deliveries_total").increment(n as u64);
            match &routes {
                Some(routes) if p.users.len() <= ROUTED_MAX => {
                    let mut per: BTreeMap<NodeId, Vec<Arc<str>>> = BTreeMap::new();
                    for u in &p.users {
                        for nd in &routes[index[u]] {
                            if *nd != node {
                                per.entry(*nd).or_default().push(u.clone());
                            }
                        }
                    }
                    for (nd, users) in per {
                        per_node.entry(nd).or_default().push(Envelope::Push(Push {
                            users,
                            except: p.except.clone(),
                            out: p.out.clone(),
                            inactive: p.inactive.clone(),
                        }));
                    }
                }
                _ => {
                    let env = Envelope::Push(p);
                    for nd in &others {
                        per_node.entry(*nd).or_default().push(env.clone());
                    }
                }
            }
        }
        for (nd, mut envs) in per_node {
            let env = if envs.len() == 1 {
                envs.remove(0)
            } else {
                Envelope::Batch(envs)
            };
            publish(&*bus, &[nd], &env);
        }
    }
}

/// What this node does with envelopes from other nodes.
pub struct NodeInbound {
    pub hub: Arc<Hub>,
    pub groups: Arc<Groups>,
    pub rooms: Arc<Rooms>,
}

impl Inbound for NodeInbound {
    fn receive(&self, env: Envelope) {
        match env {
            Envelope::Push(p) => {
                let n = self.hub.deliver(&p);
                metrics::counter!("tern_deliveries_total").increment(n as u64);
            }
            Envelope::Kick { user, conn, code } => {
                if let Some(c) = self.hub.devices(&user).into_iter().find(|c| c.id == conn) {
                    c.kick(code);
                }
            }
            Envelope::Room { room, frame } => {
                self.rooms.deliver(&room, None, frame);
            }
            Envelope::GroupChanged { gid } => self.groups.forget(&gid),
            Envelope::Batch(all) => {
                for env in all {
                    self.receive(env);
                }
            }
        }
    }
}
