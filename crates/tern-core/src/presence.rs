//! Who is online where, cluster-wide, in three parts that one backend
//! provides together: the node set ([`NodeSet`]: this node, the live ones),
//! device routes ([`Routes`]: which node holds which device) and live
//! rooms' nodes ([`RoomNodes`]). [`Presence`] is all three.
//!
//! Embedded mode uses the in-process [`LocalPresence`]; cluster mode the
//! same traits on Redis (`tern-cluster`).

use crate::bus::{NodeId, PlumbingResult};
use async_trait::async_trait;
use parking_lot::RwLock;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::watch;

/// A device's connection, as presence knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub node: NodeId,
    /// The connection's number on its node.
    pub conn: u64,
    /// The id of the token it authenticated with (0: none, or not known:
    /// a route written by a node that does not record it).
    pub session: u128,
}

/// What [`Routes::connected`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// The live connection of the same user and device that this one
    /// replaces (it is to be closed with 4009).
    pub replaced: Option<Route>,
    /// Whether the user had no other live device before.
    pub first: bool,
}

/// The nodes of the cluster. A node that stops its heartbeat stops
/// counting within [`NodeSet::expiry_ms`], and its routes and room
/// entries with it.
#[async_trait]
pub trait NodeSet: Send + Sync + 'static {
    /// This node's number.
    fn node(&self) -> NodeId;
    /// How long a dead node's routes still count, at most.
    fn expiry_ms(&self) -> u64;
    /// The live nodes, this one included (a snapshot that may be a few
    /// seconds old).
    fn live_nodes(&self) -> Vec<NodeId>;
    /// Answers when the backing service is reachable.
    async fn health(&self) -> PlumbingResult<()>;
    /// Changes each time this node's entries may have been lost from the
    /// backing service: its lease had to be taken back (Redis restarted
    /// without its data, failed over to an empty replica, or counted the
    /// node dead while it could not reach it). The node then writes its
    /// routes and rooms again ([`Routes::restore`]).
    fn losses(&self) -> watch::Receiver<u64>;
}

/// Device routes: which connection, on which node, each device of a user
/// is.
#[async_trait]
pub trait Routes: Send + Sync + 'static {
    /// Records `route` as `user`'s `device`.
    async fn connected(&self, user: &str, device: &str, route: Route) -> PlumbingResult<Connected>;
    /// Removes `user`'s `device` if it still is `route`; true when the user
    /// has no live device left.
    async fn disconnected(&self, user: &str, device: &str, route: Route) -> PlumbingResult<bool>;
    /// One answer per user, in order.
    async fn online(&self, users: &[&str]) -> PlumbingResult<Vec<bool>>;
    /// Per user, in order: the live nodes holding a device of theirs.
    async fn nodes_of(&self, users: &[Arc<str>]) -> PlumbingResult<Vec<Vec<NodeId>>>;
    /// `user`'s live devices and their routes, on every node, sorted by
    /// device (5.3: the devices of each session).
    async fn devices(&self, user: &str) -> PlumbingResult<Vec<(String, Route)>>;
    /// Writes routes of this node's connections, `(user, device, route)`,
    /// after a loss: what the node holds is the truth for its own
    /// connections, but not for a device that connected to another node
    /// meanwhile (this node was cut off from presence, so nobody closed
    /// its connection here). A route is written only where the device has
    /// none, one of this node's, or one of a node no longer live. Returns
    /// the indices in `routes` not written because the device's route
    /// names another live node: those connections here are stale and are
    /// to be closed with 4009. Announces nothing.
    async fn restore(&self, routes: &[(Arc<str>, Arc<str>, Route)]) -> PlumbingResult<Vec<usize>>;
}

/// The nodes with members of each live room.
#[async_trait]
pub trait RoomNodes: Send + Sync + 'static {
    /// This node now has members of live room `room` / has none left.
    async fn room_joined(&self, room: &str) -> PlumbingResult<()>;
    async fn room_left(&self, room: &str) -> PlumbingResult<()>;
    /// The live nodes with members of `room`.
    async fn room_nodes(&self, room: &str) -> PlumbingResult<Vec<NodeId>>;
}

/// All three parts, as one backend provides them.
pub trait Presence: NodeSet + Routes + RoomNodes {}

impl<T: NodeSet + Routes + RoomNodes> Presence for T {}

/// In-process presence, shared by the nodes of one process (one in
/// embedded mode). Nodes never die here, so nothing expires.
#[derive(Debug, Clone)]
pub struct LocalPresence {
    node: NodeId,
    state: Arc<RwLock<LocalState>>,
    /// Never sent on: nothing is lost in process.
    losses: Arc<watch::Sender<u64>>,
}

#[derive(Debug, Default)]
struct LocalState {
    /// user -> device -> route
    routes: HashMap<String, HashMap<String, Route>>,
    rooms: HashMap<String, BTreeSet<NodeId>>,
    nodes: BTreeSet<NodeId>,
}

impl LocalPresence {
    pub fn new(node: NodeId) -> LocalPresence {
        let state = Arc::new(RwLock::new(LocalState::default()));
        state.write().nodes.insert(node);
        LocalPresence {
            node,
            state,
            losses: Arc::new(watch::channel(0).0),
        }
    }

    /// Another node sharing this one's state (tests of several nodes in
    /// one process).
    pub fn sibling(&self, node: NodeId) -> LocalPresence {
        self.state.write().nodes.insert(node);
        LocalPresence {
            node,
            state: self.state.clone(),
            losses: self.losses.clone(),
        }
    }
}

#[async_trait]
impl NodeSet for LocalPresence {
    fn node(&self) -> NodeId {
        self.node
    }

    fn expiry_ms(&self) -> u64 {
        0
    }

    fn live_nodes(&self) -> Vec<NodeId> {
        self.state.read().nodes.iter().copied().collect()
    }

    async fn health(&self) -> PlumbingResult<()> {
        Ok(())
    }

    fn losses(&self) -> watch::Receiver<u64> {
        self.losses.subscribe()
    }
}

#[async_trait]
impl Routes for LocalPresence {
    async fn connected(&self, user: &str, device: &str, route: Route) -> PlumbingResult<Connected> {
        let mut s = self.state.write();
        let devices = s.routes.entry(user.to_owned()).or_default();
        let first = devices.is_empty();
        let replaced = devices.insert(device.to_owned(), route);
        Ok(Connected { replaced, first })
    }

    async fn disconnected(&self, user: &str, device: &str, route: Route) -> PlumbingResult<bool> {
        let mut s = self.state.write();
        let Some(devices) = s.routes.get_mut(user) else {
            return Ok(false);
        };
        if devices.get(device) != Some(&route) {
            return Ok(false);
        }
        devices.remove(device);
        let last = devices.is_empty();
        if last {
            s.routes.remove(user);
        }
        Ok(last)
    }

    async fn online(&self, users: &[&str]) -> PlumbingResult<Vec<bool>> {
        let s = self.state.read();
        Ok(users.iter().map(|u| s.routes.contains_key(*u)).collect())
    }

    async fn devices(&self, user: &str) -> PlumbingResult<Vec<(String, Route)>> {
        let s = self.state.read();
        let mut out: Vec<(String, Route)> = s
            .routes
            .get(user)
            .map(|d| d.iter().map(|(k, r)| (k.clone(), *r)).collect())
            .unwrap_or_default();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn nodes_of(&self, users: &[Arc<str>]) -> PlumbingResult<Vec<Vec<NodeId>>> {
        let s = self.state.read();
        Ok(users
            .iter()
            .map(|u| {
                let mut nodes: Vec<NodeId> = s
                    .routes
                    .get(&**u)
                    .map(|d| d.values().map(|r| r.node).collect())
                    .unwrap_or_default();
                nodes.sort_unstable();
                nodes.dedup();
                nodes
            })
            .collect())
    }

    async fn restore(&self, routes: &[(Arc<str>, Arc<str>, Route)]) -> PlumbingResult<Vec<usize>> {
        let mut s = self.state.write();
        let mut elsewhere = Vec::new();
        for (i, (user, device, route)) in routes.iter().enumerate() {
            let devices = s.routes.entry(user.to_string()).or_default();
            match devices.get(&**device) {
                // Nodes of one process never die: another node's route is live.
                Some(cur) if cur.node != route.node => elsewhere.push(i),
                _ => {
                    devices.insert(device.to_string(), *route);
                }
            }
        }
        Ok(elsewhere)
    }
}

#[async_trait]
impl RoomNodes for LocalPresence {
    async fn room_joined(&self, room: &str) -> PlumbingResult<()> {
        self.state
            .write()
            .rooms
            .entry(room.to_owned())
            .or_default()
            .insert(self.node);
        Ok(())
    }

    async fn room_left(&self, room: &str) -> PlumbingResult<()> {
        let mut s = self.state.write();
        if let Some(nodes) = s.rooms.get_mut(room) {
            nodes.remove(&self.node);
            if nodes.is_empty() {
                s.rooms.remove(room);
            }
        }
        Ok(())
    }

    async fn room_nodes(&self, room: &str) -> PlumbingResult<Vec<NodeId>> {
        Ok(self
            .state
            .read()
            .rooms
            .get(room)
            .map(|n| n.iter().copied().collect())
            .unwrap_or_default())
    }
}
