//! Moving envelopes between nodes, kept apart from durable storage:
//! [`Bus`] and the in-process [`LocalBus`], what a node does with what
//! arrives ([`Inbound`]), the envelope and its wire form
//! (`envelope.rs`), and forwarding a group send to the node that owns its
//! conversation (`forward.rs`), a capability a bus may offer.
//!
//! Embedded mode runs one node on [`LocalBus`]; cluster mode implements
//! the same traits on NATS JetStream (`tern-cluster`). Who is online where
//! is `crate::presence`; `crate::fanout` decides what goes where; the bus
//! only moves envelopes, and every node registers an [`Inbound`] handler
//! at start that feeds its own hub.

mod envelope;
mod forward;

pub use envelope::{pack, Envelope};
pub use forward::{owner_of, Forward, ForwardAnswer, ForwardHandler, Forwarding, NoResponder};

use async_trait::async_trait;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A node's number, unique among the live nodes of a cluster. It is also
/// the node part of the message ids the node stamps.
pub type NodeId = u16;

/// A failure of the bus or of presence: the backing service is down or
/// overloaded. The caller answers `unavailable`.
#[derive(Debug, thiserror::Error)]
pub enum PlumbingError {
    #[error("{0} is unavailable")]
    Unavailable(
        &'static str,
        #[source] Box<dyn std::error::Error + Send + Sync>,
    ),
    #[error("{0} queue is full")]
    Full(&'static str),
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
}

impl PlumbingError {
    pub fn unavailable(
        what: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> PlumbingError {
        PlumbingError::Unavailable(what, Box::new(e))
    }
}

pub type PlumbingResult<T> = Result<T, PlumbingError>;

/// What a node does with the envelopes other nodes send it.
pub trait Inbound: Send + Sync + 'static {
    /// Never blocks (pushes go onto bounded queues).
    fn receive(&self, env: Envelope);
}

/// Moves envelopes between nodes.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Starts delivering to `inbound` every envelope addressed to `node`.
    /// Call once, at start.
    async fn start(&self, node: NodeId, inbound: Arc<dyn Inbound>) -> PlumbingResult<()>;
    /// Queues an envelope for each of the nodes `to` without waiting
    /// (encoded once). Envelopes one node publishes to another arrive in
    /// publish order; a networked bus retries until the broker has stored
    /// the envelope, and redelivers what the receiving node did not
    /// confirm (at least once).
    fn publish(&self, to: &[NodeId], env: &Envelope) -> PlumbingResult<()>;
    /// Answers when the bus is connected and working.
    async fn health(&self) -> PlumbingResult<()>;
    /// The largest message the bus carries, in encoded bytes: senders
    /// [`pack`] what they publish to fit.
    fn max_message_bytes(&self) -> usize {
        usize::MAX
    }
    /// Forwarding group sends to the node that owns their conversation,
    /// when this bus offers it; without it every node appends the sends
    /// it receives itself.
    fn forwarding(&self) -> Option<&dyn Forwarding> {
        None
    }
}

/// The in-process bus: nodes of one process, each with its inbound
/// handler. Embedded mode is one node on it; tests run several.
#[derive(Default, Clone)]
pub struct LocalBus {
    nodes: Arc<RwLock<HashMap<NodeId, Arc<dyn Inbound>>>>,
    owners: Arc<RwLock<HashMap<NodeId, Arc<dyn ForwardHandler>>>>,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBus")
            .field("nodes", &self.nodes.read().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LocalBus {
    pub fn new() -> LocalBus {
        LocalBus::default()
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn start(&self, node: NodeId, inbound: Arc<dyn Inbound>) -> PlumbingResult<()> {
        self.nodes.write().insert(node, inbound);
        Ok(())
    }

    fn publish(&self, to: &[NodeId], env: &Envelope) -> PlumbingResult<()> {
        let nodes = self.nodes.read();
        for n in to {
            if let Some(i) = nodes.get(n) {
                i.receive(env.clone());
            }
        }
        Ok(())
    }

    async fn health(&self) -> PlumbingResult<()> {
        Ok(())
    }

    fn forwarding(&self) -> Option<&dyn Forwarding> {
        Some(self)
    }
}

#[async_trait]
impl Forwarding for LocalBus {
    async fn serve_forwards(
        &self,
        node: NodeId,
        handler: Arc<dyn ForwardHandler>,
    ) -> PlumbingResult<()> {
        self.owners.write().insert(node, handler);
        Ok(())
    }

    async fn forward(
        &self,
        to: NodeId,
        req: &Forward,
        timeout: Duration,
    ) -> PlumbingResult<ForwardAnswer> {
        let handler = self.owners.read().get(&to).cloned();
        let Some(handler) = handler else {
            return Err(PlumbingError::unavailable("bus", NoResponder(to)));
        };
        tokio::time::timeout(timeout, handler.handle(req.clone()))
            .await
            .map_err(|e| PlumbingError::unavailable("bus", e))
    }
}
