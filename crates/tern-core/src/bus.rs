//! Cluster plumbing, kept apart from durable storage: the bus that carries
//! envelopes between nodes, and presence (which node holds which device,
//! and which nodes are alive).
//!
//! Embedded mode runs one node with the in-process implementations below;
//! cluster mode implements the same traits on NATS JetStream and Redis
//! (`tern-cluster`). `tern_core::fanout` decides what goes where; the
//! bus only moves envelopes, and every node registers an [`Inbound`]
//! handler at start that feeds its own hub.

use crate::hub::{Outbound, Push};
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
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

/// Everything that crosses nodes. Frames travel as the exact bytes clients
/// get (encoded once by the node that made them).
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// A push for the receiving node's devices of `users`.
    Push(Push),
    /// Close connection `conn` of `user` with `code` (the same device
    /// logged in on another node: 4009).
    Kick {
        user: Arc<str>,
        conn: u64,
        code: u16,
    },
    /// A live-room frame for the receiving node's members of `room`.
    Room { room: Arc<str>, frame: Bytes },
    /// A group's membership changed: drop cached member lists.
    GroupChanged { gid: Arc<str> },
    /// Several envelopes for one node, handled in order (a node routes
    /// pushes in batches: one bus message per node and batch).
    Batch(Vec<Envelope>),
    /// The token with id `session` of `user` was revoked: refuse it from
    /// now on and close its connections with 4001.
    Revoked {
        user: Arc<str>,
        session: u128,
        expires_at: i64,
    },
}

/// The envelope's header on the wire; frames follow it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Header {
    Push {
        users: Vec<Arc<str>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<(Arc<str>, Arc<str>)>,
        out: OutHead,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inactive: Option<OutHead>,
    },
    Kick {
        user: Arc<str>,
        conn: u64,
        code: u16,
    },
    Room {
        room: Arc<str>,
        len: usize,
    },
    GroupChanged {
        gid: Arc<str>,
    },
    /// The encoded envelopes follow, these many bytes each.
    Batch {
        lens: Vec<usize>,
    },
    Revoked {
        user: Arc<str>,
        /// The token id as 32 hex digits.
        session: String,
        expires_at: i64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum OutHead {
    Frame {
        len: usize,
    },
    Batched {
        len: usize,
    },
    Msg {
        conv: Arc<str>,
        seq: u64,
        len: usize,
    },
}

impl OutHead {
    fn of(o: &Outbound) -> OutHead {
        match o {
            Outbound::Frame(f) => OutHead::Frame { len: f.len() },
            Outbound::Batched(f) => OutHead::Batched { len: f.len() },
            Outbound::Msg { conv, seq, frame } => OutHead::Msg {
                conv: conv.clone(),
                seq: *seq,
                len: frame.len(),
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            OutHead::Frame { len } | OutHead::Batched { len } | OutHead::Msg { len, .. } => *len,
        }
    }

    fn with(self, frame: Bytes) -> Outbound {
        match self {
            OutHead::Frame { .. } => Outbound::Frame(frame),
            OutHead::Batched { .. } => Outbound::Batched(frame),
            OutHead::Msg { conv, seq, .. } => Outbound::Msg { conv, seq, frame },
        }
    }
}

fn encode_batch(all: &[Envelope]) -> Bytes {
    let parts: Vec<Bytes> = all.iter().map(Envelope::encode).collect();
    let header = Header::Batch {
        lens: parts.iter().map(Bytes::len).collect(),
    };
    let body: usize = parts.iter().map(Bytes::len).sum();
    let mut buf = BytesMut::with_capacity(body + 16 + 8 * parts.len());
    let _ = serde_json::to_writer((&mut buf).writer(), &header);
    buf.put_u8(b'\n');
    for p in parts {
        buf.extend_from_slice(&p);
    }
    buf.freeze()
}

/// Room for a header's keys, tags, numbers and line end.
const HEADER_BOUND: usize = 128;
/// The most digits a length takes.
const USIZE_DIGITS: usize = 20;

/// The length of `s` as a JSON string: quotes, and escapes where serde_json
/// writes them.
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

fn out_len_bound(o: &Outbound) -> usize {
    let conv = match o {
        Outbound::Msg { conv, .. } => json_str_len(conv) + USIZE_DIGITS,
        _ => 0,
    };
    HEADER_BOUND + conv + frame_of(o).len()
}

/// Packs the envelopes for one node into bus messages of at most `limit`
/// encoded bytes each, keeping their order: consecutive envelopes share a
/// [`Envelope::Batch`] while it fits, and a push whose audience alone is
/// too large is split by users into consecutive pushes of the same frames
/// (each user is named in exactly one, so every device keeps its order).
/// An envelope that cannot be split and is still too large (a frame larger
/// than `limit`) is returned as it is, for the bus to refuse.
pub fn pack(envs: Vec<Envelope>, limit: usize) -> Vec<Envelope> {
    let mut out = Vec::new();
    let mut cur: Vec<Envelope> = Vec::new();
    let mut cur_len = HEADER_BOUND;
    let flush = |cur: &mut Vec<Envelope>, out: &mut Vec<Envelope>| match cur.len() {
        0 => {}
        1 => out.extend(cur.pop()),
        _ => out.push(Envelope::Batch(std::mem::take(cur))),
    };
    for env in envs.into_iter().flat_map(|e| split_push(e, limit)) {
        let len = env.wire_len_bound() + USIZE_DIGITS + 1;
        if !cur.is_empty() && cur_len + len > limit {
            flush(&mut cur, &mut out);
            cur_len = HEADER_BOUND;
        }
        cur_len += len;
        cur.push(env);
    }
    flush(&mut cur, &mut out);
    out
}

/// A push too large for `limit` as consecutive pushes naming fewer users,
/// each small enough to travel in a batch of its own.
fn split_push(env: Envelope, limit: usize) -> Vec<Envelope> {
    let budget = limit.saturating_sub(2 * HEADER_BOUND + USIZE_DIGITS + 1);
    if env.wire_len_bound() <= budget {
        return vec![env];
    }
    let Envelope::Push(p) = env else {
        return vec![env];
    };
    let fixed = Envelope::Push(Push {
        users: Vec::new(),
        except: p.except.clone(),
        out: p.out.clone(),
        inactive: p.inactive.clone(),
    })
    .wire_len_bound();
    let part = |users: Vec<Arc<str>>| {
        Envelope::Push(Push {
            users,
            except: p.except.clone(),
            out: p.out.clone(),
            inactive: p.inactive.clone(),
        })
    };
    let mut parts = Vec::new();
    let mut users: Vec<Arc<str>> = Vec::new();
    let mut len = fixed;
    for u in &p.users {
        let add = json_str_len(u) + 1;
        if !users.is_empty() && len + add > budget {
            parts.push(part(std::mem::take(&mut users)));
            len = fixed;
        }
        len += add;
        users.push(u.clone());
    }
    if !users.is_empty() || parts.is_empty() {
        parts.push(part(users));
    }
    parts
}

fn frame_of(o: &Outbound) -> &Bytes {
    match o {
        Outbound::Frame(f) | Outbound::Batched(f) | Outbound::Msg { frame: f, .. } => f,
    }
}

impl Envelope {
    /// Wire form: one line of JSON header, then the frames' bytes back to
    /// back (their lengths are in the header). Frames are copied, never
    /// escaped or re-encoded.
    pub fn encode(&self) -> Bytes {
        let (header, frames): (Header, [Option<&Bytes>; 2]) = match self {
            Envelope::Push(p) => (
                Header::Push {
                    users: p.users.clone(),
                    except: p.except.clone(),
                    out: OutHead::of(&p.out),
                    inactive: p.inactive.as_ref().map(OutHead::of),
                },
                [Some(frame_of(&p.out)), p.inactive.as_ref().map(frame_of)],
            ),
            Envelope::Kick { user, conn, code } => (
                Header::Kick {
                    user: user.clone(),
                    conn: *conn,
                    code: *code,
                },
                [None, None],
            ),
            Envelope::Room { room, frame } => (
                Header::Room {
                    room: room.clone(),
                    len: frame.len(),
                },
                [Some(frame), None],
            ),
            Envelope::GroupChanged { gid } => {
                (Header::GroupChanged { gid: gid.clone() }, [None, None])
            }
            Envelope::Batch(all) => return encode_batch(all),
            Envelope::Revoked {
                user,
                session,
                expires_at,
            } => (
                Header::Revoked {
                    user: user.clone(),
                    session: format!("{session:032x}"),
                    expires_at: *expires_at,
                },
                [None, None],
            ),
        };
        let body: usize = frames.iter().flatten().map(|f| f.len()).sum();
        let mut buf = BytesMut::with_capacity(body + 128);
        // Serializing a plain struct of strings and numbers cannot fail.
        let _ = serde_json::to_writer((&mut buf).writer(), &header);
        buf.put_u8(b'\n');
        for f in frames.into_iter().flatten() {
            buf.extend_from_slice(f);
        }
        buf.freeze()
    }

    /// An upper bound of [`Envelope::encode`]'s length, computed without
    /// encoding.
    pub fn wire_len_bound(&self) -> usize {
        match self {
            Envelope::Push(p) => {
                let users: usize = p.users.iter().map(|u| json_str_len(u) + 1).sum();
                let except = p
                    .except
                    .as_ref()
                    .map_or(0, |(u, d)| json_str_len(u) + json_str_len(d) + 16);
                let inactive = p.inactive.as_ref().map_or(0, out_len_bound);
                HEADER_BOUND + users + except + out_len_bound(&p.out) + inactive
            }
            Envelope::Kick { user, .. } => HEADER_BOUND + json_str_len(user),
            Envelope::Room { room, frame } => HEADER_BOUND + json_str_len(room) + frame.len(),
            Envelope::GroupChanged { gid } => HEADER_BOUND + json_str_len(gid),
            Envelope::Batch(all) => {
                HEADER_BOUND
                    + all
                        .iter()
                        .map(|e| e.wire_len_bound() + USIZE_DIGITS + 1)
                        .sum::<usize>()
            }
            Envelope::Revoked { user, .. } => HEADER_BOUND + json_str_len(user) + 34,
        }
    }

    pub fn decode(wire: &Bytes) -> PlumbingResult<Envelope> {
        let nl = wire
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(PlumbingError::Malformed("no header"))?;
        let header: Header = serde_json::from_slice(&wire[..nl])
            .map_err(|_| PlumbingError::Malformed("bad header"))?;
        let mut at = nl + 1;
        let mut take = |len: usize| -> PlumbingResult<Bytes> {
            let end = at
                .checked_add(len)
                .filter(|e| *e <= wire.len())
                .ok_or(PlumbingError::Malformed("frame past the end"))?;
            let f = wire.slice(at..end);
            at = end;
            Ok(f)
        };
        Ok(match header {
            Header::Push {
                users,
                except,
                out,
                inactive,
            } => {
                let f = take(out.len())?;
                let out = out.with(f);
                let inactive = match inactive {
                    Some(h) => {
                        let f = take(h.len())?;
                        Some(h.with(f))
                    }
                    None => None,
                };
                Envelope::Push(Push {
                    users,
                    except,
                    out,
                    inactive,
                })
            }
            Header::Kick { user, conn, code } => Envelope::Kick { user, conn, code },
            Header::Room { room, len } => Envelope::Room {
                room,
                frame: take(len)?,
            },
            Header::GroupChanged { gid } => Envelope::GroupChanged { gid },
            Header::Revoked {
                user,
                session,
                expires_at,
            } => Envelope::Revoked {
                user,
                session: u128::from_str_radix(&session, 16)
                    .map_err(|_| PlumbingError::Malformed("bad token id"))?,
                expires_at,
            },
            Header::Batch { lens } => {
                let mut all = Vec::with_capacity(lens.len());
                for len in lens {
                    let part = take(len)?;
                    if part.starts_with(b"{\"t\":\"batch\"") {
                        return Err(PlumbingError::Malformed("nested batch"));
                    }
                    all.push(Envelope::decode(&part)?);
                }
                Envelope::Batch(all)
            }
        })
    }
}

/// A group send handed by the node that received it to the conversation's
/// owning node ([`owner_of`]), which appends it through its own pipeline:
/// everything the owner needs to store and push it. `content` is the raw
/// JSON the client sent (already checked by the forwarding node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub gid: String,
    pub from: String,
    /// The sending device, which gets no push of its own message.
    pub device: Option<String>,
    pub client_msg_id: String,
    pub kind: String,
    pub content: String,
}

/// The owner's answer to a [`Forward`]: the stored (or original) message,
/// or the error the sender is to get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub enum ForwardAnswer {
    Ok {
        msg_id: u64,
        conv: String,
        seq: u64,
        ts: i64,
        duplicate: bool,
    },
    Err {
        /// A PROTOCOL.md error code (`not_member`, `unavailable`, ...).
        code: String,
        message: String,
    },
}

/// What a node does with the forwards other nodes send it.
#[async_trait]
pub trait ForwardHandler: Send + Sync + 'static {
    /// Answers once the message is stored (or refused).
    async fn handle(&self, req: Forward) -> ForwardAnswer;
}

/// The owning node of a conversation's appends among `nodes`, by
/// rendezvous hashing: every node that sees the same set picks the same
/// owner, and a node joining or leaving moves only the conversations it
/// takes or held. `None` when `nodes` is empty. The hash is fixed (FNV-1a
/// then a 64-bit finalizer), so nodes of different builds agree.
pub fn owner_of(conv: &str, nodes: &[NodeId]) -> Option<NodeId> {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in conv.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    nodes
        .iter()
        .copied()
        .max_by_key(|n| (mix(h ^ mix(u64::from(*n) + 1)), *n))
}

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
    /// Starts answering the forwards addressed to `node` with `handler`
    /// (each in a task of its own, so that they batch in the pipeline).
    /// Call once, at start.
    async fn serve_forwards(
        &self,
        node: NodeId,
        handler: Arc<dyn ForwardHandler>,
    ) -> PlumbingResult<()>;
    /// Sends `req` to node `to` and waits for its answer, at most
    /// `timeout`. An error when no node `to` serves forwards or no answer
    /// came in time: the request may then have been carried out or not.
    async fn forward(
        &self,
        to: NodeId,
        req: &Forward,
        timeout: Duration,
    ) -> PlumbingResult<ForwardAnswer>;
    /// Answers when the bus is connected and working.
    async fn health(&self) -> PlumbingResult<()>;
    /// The largest message the bus carries, in encoded bytes: senders
    /// [`pack`] what they publish to fit.
    fn max_message_bytes(&self) -> usize {
        usize::MAX
    }
}

/// A device's connection, as presence knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub node: NodeId,
    /// The connection's number on its node.
    pub conn: u64,
}

/// What [`Presence::connected`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// The live connection of the same user and device that this one
    /// replaces (it is to be closed with 4009).
    pub replaced: Option<Route>,
    /// Whether the user had no other live device before.
    pub first: bool,
}

/// Who is online where, cluster-wide. Routes of a node that stops its
/// heartbeat stop counting within [`Presence::expiry_ms`].
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// This node's number.
    fn node(&self) -> NodeId;
    /// How long a dead node's routes still count, at most.
    fn expiry_ms(&self) -> u64;
    /// Records `route` as `user`'s `device`.
    async fn connected(&self, user: &str, device: &str, route: Route) -> PlumbingResult<Connected>;
    /// Removes `user`'s `device` if it still is `route`; true when the user
    /// has no live device left.
    async fn disconnected(&self, user: &str, device: &str, route: Route) -> PlumbingResult<bool>;
    /// One answer per user, in order.
    async fn online(&self, users: &[&str]) -> PlumbingResult<Vec<bool>>;
    /// Per user, in order: the live nodes holding a device of theirs.
    async fn nodes_of(&self, users: &[Arc<str>]) -> PlumbingResult<Vec<Vec<NodeId>>>;
    /// The live nodes, this one included (a snapshot that may be a few
    /// seconds old).
    fn live_nodes(&self) -> Vec<NodeId>;
    /// This node now has members of live room `room` / has none left.
    async fn room_joined(&self, room: &str) -> PlumbingResult<()>;
    async fn room_left(&self, room: &str) -> PlumbingResult<()>;
    /// The live nodes with members of `room`.
    async fn room_nodes(&self, room: &str) -> PlumbingResult<Vec<NodeId>>;
    /// Answers when the backing service is reachable.
    async fn health(&self) -> PlumbingResult<()>;
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

    async fn health(&self) -> PlumbingResult<()> {
        Ok(())
    }
}

/// No node of this number serves forwards.
#[derive(Debug, thiserror::Error)]
#[error("node {0} does not serve forwards")]
pub struct NoResponder(pub NodeId);

/// In-process presence, shared by the nodes of one process (one in
/// embedded mode). Nodes never die here, so nothing expires.
#[derive(Debug, Clone, Default)]
pub struct LocalPresence {
    node: NodeId,
    state: Arc<RwLock<LocalState>>,
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
        let p = LocalPresence::default();
        p.state.write().nodes.insert(node);
        LocalPresence { node, ..p }
    }

    /// Another node sharing this one's state (tests of several nodes in
    /// one process).
    pub fn sibling(&self, node: NodeId) -> LocalPresence {
        self.state.write().nodes.insert(node);
        LocalPresence {
            node,
            state: self.state.clone(),
        }
    }
}

#[async_trait]
impl Presence for LocalPresence {
    fn node(&self) -> NodeId {
        self.node
    }

    fn expiry_ms(&self) -> u64 {
        0
    }

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

    fn live_nodes(&self) -> Vec<NodeId> {
        self.state.read().nodes.iter().copied().collect()
    }

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

    async fn health(&self) -> PlumbingResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(out: Outbound, inactive: Option<Outbound>) -> Envelope {
        Envelope::Push(Push {
            users: vec!["a".into(), "b".into()],
            except: Some(("a".into(), "phone".into())),
            out,
            inactive,
        })
    }

    #[test]
    fn envelopes_round_trip() {
        // A frame may hold newlines (raw client JSON in room content).
        let frame = Bytes::from_static(b"{\"type\":\"room_msg\",\"content\":{\n\"x\":1}}");
        let cases = [
            push(
                Outbound::Msg {
                    conv: "dm:a:b".into(),
                    seq: 7,
                    frame: frame.clone(),
                },
                None,
            ),
            push(
                Outbound::Batched(frame.clone()),
                Some(Outbound::Batched(Bytes::from_static(
                    b"{\"type\":\"notify\"}",
                ))),
            ),
            push(Outbound::Frame(Bytes::from_static(b"{}")), None),
            Envelope::Kick {
                user: "a".into(),
                conn: 42,
                code: 4009,
            },
            Envelope::Room {
                room: "r".into(),
                frame: frame.clone(),
            },
            Envelope::GroupChanged { gid: "g".into() },
            Envelope::Revoked {
                user: "a".into(),
                session: u128::MAX - 5,
                expires_at: 1_700_000_000_000,
            },
            Envelope::Batch(vec![
                Envelope::GroupChanged { gid: "g".into() },
                push(Outbound::Frame(frame.clone()), None),
            ]),
        ];
        for env in cases {
            let wire = env.encode();
            assert_eq!(Envelope::decode(&wire).unwrap(), env);
        }
    }

    /// Pushes of `n` frames, each to `members` users (some with names
    /// that JSON escapes).
    fn group_pushes(n: usize, members: usize, frame_len: usize) -> Vec<Envelope> {
        let users: Vec<Arc<str>> = (0..members)
            .map(|i| Arc::from(format!("member\"{i}\u{1}")))
            .collect();
        (0..n)
            .map(|seq| {
                let frame = Bytes::from(format!("{seq:>width$}", width = frame_len));
                Envelope::Push(Push {
                    users: users.clone(),
                    except: Some(("member\"0\u{1}".into(), "d\\".into())),
                    out: Outbound::Msg {
                        conv: "group:g".into(),
                        seq: seq as u64,
                        frame,
                    },
                    inactive: None,
                })
            })
            .collect()
    }

    /// Every push in `envs`, batches opened, as decoded from the wire.
    fn flatten(envs: &[Envelope]) -> Vec<Push> {
        let mut out = Vec::new();
        for e in envs {
            match Envelope::decode(&e.encode()).unwrap() {
                Envelope::Batch(all) => out.extend(flatten(&all)),
                Envelope::Push(p) => out.push(p),
                other => panic!("not a push: {other:?}"),
            }
        }
        out
    }

    #[test]
    fn wire_len_bound_is_an_upper_bound() {
        let mut all = group_pushes(3, 40, 100);
        all.push(Envelope::Batch(group_pushes(5, 7, 10)));
        all.push(Envelope::Room {
            room: "r\"\n".into(),
            frame: Bytes::from_static(b"{}"),
        });
        all.push(Envelope::Kick {
            user: "\u{7}".into(),
            conn: u64::MAX,
            code: 4009,
        });
        all.push(Envelope::Revoked {
            user: "a".into(),
            session: u128::MAX,
            expires_at: i64::MIN,
        });
        for env in &all {
            let len = env.encode().len();
            assert!(
                len <= env.wire_len_bound(),
                "{len} > {}",
                env.wire_len_bound()
            );
        }
    }

    #[test]
    fn packing_fits_the_limit_and_keeps_every_push_in_order() {
        let limit = 64 * 1024;
        // 300 pushes to a 500-member group: several batches; and one push
        // whose audience alone is over the limit: split by users.
        let mut envs = group_pushes(300, 500, 200);
        envs.extend(group_pushes(1, 20_000, 200));
        let want: Vec<Push> = envs
            .iter()
            .map(|e| match e {
                Envelope::Push(p) => p.clone(),
                _ => unreachable!(),
            })
            .collect();
        let packed = pack(envs, limit);
        assert!(packed.len() > 10, "{} messages", packed.len());
        for env in &packed {
            assert!(env.encode().len() <= limit, "{} bytes", env.encode().len());
        }
        // Consecutive parts of one push carry its frames and, together,
        // its users in order.
        let mut got: Vec<Push> = Vec::new();
        for p in flatten(&packed) {
            match got.last_mut() {
                Some(last) if last.out == p.out => last.users.extend(p.users),
                _ => got.push(p),
            }
        }
        assert_eq!(got, want);
        // Small envelopes stay one message.
        let small = group_pushes(2, 3, 10);
        assert_eq!(pack(small.clone(), limit), vec![Envelope::Batch(small)]);
        assert_eq!(pack(group_pushes(1, 3, 10), limit).len(), 1);
        assert!(pack(Vec::new(), limit).is_empty());
    }

    #[test]
    fn owners_agree_spread_and_move_little() {
        let all: Vec<NodeId> = vec![1, 4, 9];
        assert_eq!(owner_of("group:g", &[]), None);
        assert_eq!(owner_of("group:g", &[7]), Some(7));
        let mut owned = HashMap::<NodeId, usize>::new();
        for i in 0..300 {
            let conv = format!("group:g{i}");
            let owner = owner_of(&conv, &all).unwrap();
            // The order of the list does not matter.
            let mut rev = all.clone();
            rev.reverse();
            assert_eq!(owner_of(&conv, &rev), Some(owner));
            // A node leaving moves only what it owned.
            for gone in &all {
                let rest: Vec<NodeId> = all.iter().copied().filter(|n| n != gone).collect();
                let after = owner_of(&conv, &rest).unwrap();
                if *gone != owner {
                    assert_eq!(after, owner, "{conv}: node {gone} left");
                }
            }
            *owned.entry(owner).or_default() += 1;
        }
        for n in &all {
            let c = owned.get(n).copied().unwrap_or(0);
            assert!((50..=150).contains(&c), "node {n} owns {c} of 300");
        }
    }

    #[test]
    fn forward_answers_round_trip_as_json() {
        let cases = [
            ForwardAnswer::Ok {
                msg_id: u64::MAX,
                conv: "group:g".into(),
                seq: 9,
                ts: -1,
                duplicate: true,
            },
            ForwardAnswer::Err {
                code: "not_member".into(),
                message: "no".into(),
            },
        ];
        for a in cases {
            let wire = serde_json::to_vec(&a).unwrap();
            assert_eq!(serde_json::from_slice::<ForwardAnswer>(&wire).unwrap(), a);
        }
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        for bad in [
            &b""[..],
            b"{\"t\":\"push\"}",
            b"not json\n",
            b"{\"t\":\"room\",\"room\":\"r\",\"len\":99}\n{}",
            b"{\"t\":\"revoked\",\"user\":\"a\",\"session\":\"zz\",\"expires_at\":1}\n",
        ] {
            assert!(Envelope::decode(&Bytes::copy_from_slice(bad)).is_err());
        }
    }
}
