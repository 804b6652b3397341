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
//!
//! [`Fanout`] is the one place that knows whether other nodes exist: the
//! rest of the core makes the same calls in both modes (group deliveries,
//! room membership, revocations, forwards to a conversation's owner), and
//! one node answers them from its hub alone.

use crate::bus::{
    owner_of, Bus, Envelope, Forward, ForwardAnswer, Inbound, NodeId, PlumbingError, PlumbingResult,
};
use crate::groups::Groups;
use crate::hub::{Audience, Hub};
use crate::order::{hub_deliver, Orderer};
use crate::presence::Presence;
use crate::push::{Outbound, Push};
use crate::revoked::Revoked;
use crate::rooms::Rooms;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
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
        orderer: Orderer,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        queue: usize,
    ) -> Fanout {
        let node = presence.node();
        let (tx, rx) = mpsc::channel(queue);
        tokio::spawn(route_loop(node, orderer, bus.clone(), presence.clone(), rx));
        Fanout {
            node,
            hub,
            cluster: Some(Cluster { tx, bus, presence }),
        }
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Whether a connection may see a conversation's pushes skip a seq
    /// (lost or late on the way from another node) and is to fill the gap
    /// from the store. One node's pushes never skip: they reach the hub in
    /// seq order, and a connection that cannot take one is closed.
    pub fn pushes_may_skip(&self) -> bool {
        self.cluster.is_some()
    }

    /// The backends the fan-out depends on besides the store, with their
    /// state: none for one node.
    pub async fn health(&self) -> Vec<(&'static str, PlumbingResult<()>)> {
        let Some(c) = &self.cluster else {
            return Vec::new();
        };
        let (presence, bus) = tokio::join!(c.presence.health(), c.bus.health());
        vec![("redis", presence), ("bus", bus)]
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

    /// Delivers to an audience (a group's members) on every node. One node
    /// walks the smaller side of the members and its own online users (see
    /// [`Hub::deliver_audience`]), with no copy of the member list; a
    /// cluster node routes a push naming every member.
    pub fn deliver_group(
        &self,
        audience: &dyn Audience,
        except: Option<(Arc<str>, Arc<str>)>,
        out: Outbound,
        inactive: Option<Outbound>,
    ) {
        if self.cluster.is_some() {
            let mut users = Vec::with_capacity(audience.len());
            audience.for_each_user(&mut |u| users.push(u.clone()));
            self.push(Push {
                users,
                except,
                out,
                inactive,
            });
        } else {
            let n = self
                .hub
                .deliver_audience(audience, &except, &out, &inactive);
            metrics::counter!("tern_deliveries_total").increment(n as u64);
        }
    }

    /// The node that appends a conversation's messages when it is another
    /// one: only in a cluster whose bus forwards.
    pub fn owner(&self, conv: &str) -> Option<NodeId> {
        let c = self.cluster.as_ref()?;
        c.bus.forwarding()?;
        let owner = owner_of(conv, &c.presence.live_nodes())?;
        (owner != self.node).then_some(owner)
    }

    /// Hands `req` to node `to` and waits for its answer, at most
    /// `timeout` (see [`crate::bus::Forwarding::forward`]).
    pub async fn forward(
        &self,
        to: NodeId,
        req: &Forward,
        timeout: Duration,
    ) -> PlumbingResult<ForwardAnswer> {
        match self.cluster.as_ref().and_then(|c| c.bus.forwarding()) {
            Some(f) => f.forward(to, req, timeout).await,
            None => Err(PlumbingError::unavailable(
                "bus",
                crate::bus::NoResponder(to),
            )),
        }
    }

    /// Tells the other nodes that a token was revoked: the live nodes as
    /// last seen, and (looked up now) every node holding a connection of
    /// the user, so that a node that joined since the last heartbeat still
    /// closes the token's sockets.
    pub async fn revoked(&self, user: &str, session: u128, expires_at: i64) {
        let user: Arc<str> = user.into();
        let env = Envelope::Revoked {
            user: user.clone(),
            session,
            expires_at,
        };
        self.to_live_and_user_nodes(user, env).await;
    }

    /// Sends `env` to the live nodes as last seen and to every node
    /// holding a connection of `user` (looked up now).
    async fn to_live_and_user_nodes(&self, user: Arc<str>, env: Envelope) {
        let Some(c) = &self.cluster else {
            return;
        };
        let mut nodes = c.presence.live_nodes();
        match c.presence.nodes_of(std::slice::from_ref(&user)).await {
            Ok(found) => nodes.extend(found.into_iter().flatten()),
            Err(e) => tracing::warn!(error = %e, "revocation: cannot look up the user's nodes"),
        }
        nodes.sort_unstable();
        nodes.dedup();
        self.to_nodes(&nodes, &env);
    }

    /// Tells the other nodes that `user`'s tokens issued before `before`
    /// are revoked (until `until`), as [`Fanout::revoked`] does for one.
    pub async fn revoked_before(&self, user: &str, before: i64, until: i64) {
        let user: Arc<str> = user.into();
        let env = Envelope::RevokedBefore {
            user: user.clone(),
            before,
            until,
        };
        self.to_live_and_user_nodes(user, env).await;
    }

    /// This node now has members of live room `room`: other nodes are to
    /// send it the room's frames.
    pub async fn room_joined(&self, room: &str) -> PlumbingResult<()> {
        match &self.cluster {
            Some(c) => c.presence.room_joined(room).await,
            None => Ok(()),
        }
    }

    /// This node has no member of `room` left.
    pub async fn room_left(&self, room: &str) -> PlumbingResult<()> {
        match &self.cluster {
            Some(c) => c.presence.room_left(room).await,
            None => Ok(()),
        }
    }

    /// Sends a room frame, already delivered to this node's members, once
    /// to each other node with members; each fans it out locally.
    pub async fn room_frame(&self, room: &str, frame: bytes::Bytes) -> PlumbingResult<()> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let nodes = c.presence.room_nodes(room).await?;
        self.to_nodes(
            &nodes,
            &Envelope::Room {
                room: room.into(),
                frame,
            },
        );
        Ok(())
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
    orderer: Orderer,
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
        // Everything for one node in this batch travels as one bus message
        // (or several, when too large for one), in the order the pushes
        // were made.
        let mut per_node: BTreeMap<NodeId, Vec<Envelope>> = BTreeMap::new();
        for p in batch.drain(..) {
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
                    // Remote envelopes name their own users: the push
                    // itself moves on to this node's devices, uncopied.
                    orderer.deliver(p);
                }
                _ => {
                    let env = Envelope::Push(p.clone());
                    for nd in &others {
                        per_node.entry(*nd).or_default().push(env.clone());
                    }
                    orderer.deliver(p);
                }
            }
        }
        // In as few bus messages as the bus's size limit allows.
        let limit = bus.max_message_bytes();
        for (nd, envs) in per_node {
            for env in crate::bus::pack(envs, limit) {
                publish(&*bus, &[nd], &env);
            }
        }
    }
}

/// What this node does with envelopes from other nodes.
pub struct NodeInbound {
    pub hub: Arc<Hub>,
    /// Cluster mode: pushes go through the node's orderer.
    pub orderer: Option<Orderer>,
    pub groups: Arc<Groups>,
    pub rooms: Arc<Rooms>,
    pub revoked: Arc<Revoked>,
}

impl Inbound for NodeInbound {
    fn receive(&self, env: Envelope) {
        match env {
            Envelope::Push(p) => match &self.orderer {
                Some(o) => o.deliver(p),
                None => hub_deliver(&self.hub, &p),
            },
            Envelope::Kick { user, conn, code } => {
                if let Some(c) = self.hub.devices(&user).into_iter().find(|c| c.id == conn) {
                    c.kick(code);
                }
            }
            Envelope::Room { room, frame } => {
                self.rooms.deliver(&room, None, frame);
            }
            Envelope::GroupChanged { gid } => self.groups.forget(&gid),
            Envelope::Revoked {
                user,
                session,
                expires_at,
            } => {
                self.revoked.insert(session, expires_at, crate::now_ms());
                let closed = self.hub.kick_session(&user, session);
                tracing::debug!(%user, closed, "a token was revoked on another node");
            }
            Envelope::RevokedBefore {
                user,
                before,
                until,
            } => {
                self.revoked
                    .insert_user(&user, before, until, crate::now_ms());
                let closed = self.hub.kick_issued_before(&user, before);
                tracing::debug!(%user, closed, "older tokens were revoked on another node");
            }
            Envelope::Batch(all) => {
                for env in all {
                    self.receive(env);
                }
            }
        }
    }
}
