//! Presence in Redis: node leases, device routes, room membership per node.
//! The key layout is described in the crate docs.

use crate::redis_con::{Lua, RedisCon};
use async_trait::async_trait;
use parking_lot::RwLock;
use redis::{FromRedisValue, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tern_core::bus::{PlumbingError, PlumbingResult};
use tern_core::presence::{Connected, NodeSet, RoomNodes, Route, Routes};
use tern_core::NodeId;
use tokio::sync::watch;

mod scripts;
use scripts::{ALLOCATE, CONNECTED, DISCONNECTED, HEARTBEAT, LEAVE, LIVE_FN, NOW_MS, RESTORE};

/// Node ids are allocated in `0..NODE_IDS` (the node part of message ids).
pub const NODE_IDS: u16 = 1024;

/// Bound on every Redis call, so callers fail fast while Redis is down.
const CALL_TIMEOUT: Duration = Duration::from_millis(2000);
/// The outer bound, a little above the client's own timeouts so that its
/// error (which says more) usually wins.
const OUTER_TIMEOUT: Duration = Duration::from_millis(2500);

#[derive(Debug, Clone)]
pub struct PresenceOptions {
    /// Prefix of every key. For Redis Cluster use a hash tag (`{tern}`) so
    /// that the scripts' keys share a slot.
    pub prefix: String,
    pub heartbeat_ms: u64,
    /// How long after its last heartbeat a node still counts as live.
    pub expiry_ms: u64,
    /// A fixed node id; `None` allocates a free one.
    pub node_id: Option<u16>,
}

impl Default for PresenceOptions {
    fn default() -> Self {
        PresenceOptions {
            prefix: "tern".into(),
            heartbeat_ms: 3000,
            expiry_ms: 15000,
            node_id: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> PlumbingError {
    PlumbingError::unavailable("redis", e)
}

fn bad_reply(what: &str) -> PlumbingError {
    unavailable(Msg(format!("unexpected reply to {what}")))
}

/// Runs one Redis call under [`OUTER_TIMEOUT`].
async fn call<T>(f: impl Future<Output = redis::RedisResult<T>>) -> PlumbingResult<T> {
    match tokio::time::timeout(OUTER_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(e) => Err(unavailable(e)),
    }
}

/// Routes written back per round trip.
const RESTORE_CHUNK: usize = 1000;

struct Scripts {
    connected: Lua,
    disconnected: Lua,
    restore: Lua,
    heartbeat: Lua,
    leave: Lua,
}

/// Presence kept in Redis; see the crate docs. Dropping it stops the
/// heartbeat, so the node drops out of the others' view within expiry.
pub struct RedisPresence {
    inner: Arc<Inner>,
}

struct Inner {
    con: RedisCon,
    prefix: String,
    node: NodeId,
    gen: u64,
    token: String,
    expiry_ms: u64,
    scripts: Scripts,
    nodes_key: String,
    gen_key: String,
    lease_key: String,
    /// The live nodes as of the last heartbeat.
    live: RwLock<Vec<NodeId>>,
    /// Counts the heartbeats that had to take the lease back.
    losses: watch::Sender<u64>,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("prefix", &self.inner.prefix)
            .field("node", &self.inner.node)
            .field("gen", &self.inner.gen)
            .finish()
    }
}

/// Connects, takes a node id and starts the heartbeat.
pub async fn connect(url: &str, opts: PresenceOptions) -> PlumbingResult<RedisPresence> {
    RedisPresence::connect(url, opts).await
}

impl RedisPresence {
    pub async fn connect(url: &str, opts: PresenceOptions) -> PlumbingResult<RedisPresence> {
        if opts.heartbeat_ms == 0 || opts.expiry_ms <= opts.heartbeat_ms {
            return Err(unavailable(Msg(format!(
                "presence expiry ({} ms) must exceed the heartbeat ({} ms)",
                opts.expiry_ms, opts.heartbeat_ms
            ))));
        }
        if let Some(id) = opts.node_id {
            if id >= NODE_IDS {
                return Err(unavailable(Msg(format!(
                    "node id {id} is out of range 0..{NODE_IDS}"
                ))));
            }
        }
        let con = RedisCon::open(url, CALL_TIMEOUT).await?;
        let prefix = con.key_prefix(&opts.prefix);
        let token = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let nodes_key = format!("{prefix}:nodes");
        let gen_key = format!("{prefix}:gen");
        let (node, gen) = allocate(&con, &opts, &prefix, &token, &nodes_key, &gen_key).await?;
        let inner = Arc::new(Inner {
            con,
            lease_key: format!("{prefix}:node:{node}"),
            prefix,
            node,
            gen,
            token,
            expiry_ms: opts.expiry_ms,
            scripts: Scripts {
                connected: Lua::new(&format!("{NOW_MS}{LIVE_FN}{CONNECTED}")),
                disconnected: Lua::new(&format!("{NOW_MS}{LIVE_FN}{DISCONNECTED}")),
                restore: Lua::new(&format!("{NOW_MS}{LIVE_FN}{RESTORE}")),
                heartbeat: Lua::new(&format!("{NOW_MS}{HEARTBEAT}")),
                leave: Lua::new(LEAVE),
            },
            nodes_key,
            gen_key,
            live: RwLock::new(vec![node]),
            losses: watch::channel(0).0,
        });
        // The first beat fills the live-node snapshot before anyone asks.
        if let Err(e) = inner.beat().await {
            tracing::warn!(error = %e, "first presence heartbeat failed");
        }
        tokio::spawn(heartbeat_loop(
            Arc::downgrade(&inner),
            Duration::from_millis(opts.heartbeat_ms),
        ));
        tracing::info!(node, gen, prefix = %inner.prefix, "presence: node id taken");
        Ok(RedisPresence { inner })
    }

    /// Leaves the cluster now instead of after expiry (graceful shutdown):
    /// drops the lease and the node's heartbeat entry. Routes left behind
    /// stop counting at once.
    pub async fn leave(&self) -> PlumbingResult<()> {
        let i = &self.inner;
        let mut con = i.con.clone();
        let mut inv = i.scripts.leave.prepare_invoke();
        inv.key(&i.lease_key)
            .key(&i.nodes_key)
            .arg(&i.token)
            .arg(i.node);
        call(inv.invoke_async::<i64>(&mut con)).await?;
        Ok(())
    }

    /// The generation of this node's id (see the crate docs).
    pub fn generation(&self) -> u64 {
        self.inner.gen
    }
}

async fn allocate(
    con: &RedisCon,
    opts: &PresenceOptions,
    prefix: &str,
    token: &str,
    nodes_key: &str,
    gen_key: &str,
) -> PlumbingResult<(NodeId, u64)> {
    let script = Lua::new(&format!("{NOW_MS}{ALLOCATE}"));
    let (start, fixed) = match opts.node_id {
        Some(id) => (id, true),
        None => (rand::random::<u16>() % NODE_IDS, false),
    };
    // A fixed id may still be held by this node's previous instance (a
    // restart): wait for that lease to expire.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(opts.expiry_ms);
    loop {
        let mut con = con.clone();
        let mut inv = script.prepare_invoke();
        inv.key(nodes_key)
            .key(gen_key)
            .arg(prefix)
            .arg(token)
            .arg(opts.expiry_ms)
            .arg(start)
            .arg(if fixed { "1" } else { "0" });
        let (id, gen): (i64, u64) = call(inv.invoke_async(&mut con)).await?;
        if id >= 0 {
            return Ok((id as NodeId, gen));
        }
        if !fixed || tokio::time::Instant::now() >= deadline {
            return Err(unavailable(Msg(if fixed {
                format!("node id {start} is held by another instance")
            } else {
                "no free node id".to_owned()
            })));
        }
        tokio::time::sleep(Duration::from_millis(opts.heartbeat_ms)).await;
    }
}

async fn heartbeat_loop(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(i) = inner.upgrade() else {
            return;
        };
        if let Err(e) = i.beat().await {
            // Keep beating: Redis may come back before the lease expires.
            tracing::warn!(error = %e, node = i.node, "presence heartbeat failed");
        }
    }
}

impl Inner {
    async fn beat(&self) -> PlumbingResult<()> {
        let mut con = self.con.clone();
        let mut inv = self.scripts.heartbeat.prepare_invoke();
        inv.key(&self.lease_key)
            .key(&self.nodes_key)
            .key(&self.gen_key)
            .arg(&self.token)
            .arg(self.expiry_ms)
            .arg(self.node)
            .arg(self.gen);
        let reply: Vec<i64> = call(inv.invoke_async(&mut con)).await?;
        match reply.first() {
            Some(1) | Some(2) => {
                if reply[0] == 2 {
                    tracing::warn!(node = self.node, "presence lease had expired; taken back");
                    self.losses.send_modify(|n| *n += 1);
                }
                let mut live: Vec<NodeId> = reply[1..]
                    .iter()
                    .filter_map(|n| NodeId::try_from(*n).ok())
                    .collect();
                live.push(self.node);
                live.sort_unstable();
                live.dedup();
                *self.live.write() = live;
                Ok(())
            }
            Some(-1) => {
                // Another instance holds our id: message ids may collide
                // and our routes no longer count. Nothing to fix here.
                tracing::error!(
                    node = self.node,
                    prefix = %self.prefix,
                    "presence lease LOST: another instance holds this node id"
                );
                Err(unavailable(Msg(format!(
                    "node id {} lease lost",
                    self.node
                ))))
            }
            _ => Err(bad_reply("heartbeat")),
        }
    }

    fn route_key(&self, user: &str) -> String {
        format!("{}:r:{user}", self.prefix)
    }

    /// Per device of `user`: its route value and its session (see
    /// `scripts::CONNECTED`).
    fn sessions_key(&self, user: &str) -> String {
        format!("{}:rs:{user}", self.prefix)
    }

    fn room_key(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }

    fn value(&self, route: Route) -> String {
        format!("{}:{}:{}", route.node, route.conn, self.gen)
    }

    /// The live nodes and their generations, read in the same round trip
    /// as the data they filter: the first three replies of `pipe`.
    fn live_cmds(&self, pipe: &mut redis::Pipeline) {
        pipe.cmd("TIME")
            .cmd("ZRANGE")
            .arg(&self.nodes_key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .cmd("HGETALL")
            .arg(&self.gen_key);
    }
}

/// Which node generations are live, from `TIME`, `ZRANGE .. WITHSCORES`
/// and `HGETALL` replies.
struct LiveSet(HashMap<NodeId, u64>);

impl LiveSet {
    fn parse(replies: &mut std::vec::IntoIter<Value>, expiry_ms: u64) -> PlumbingResult<LiveSet> {
        let mut next = |what: &str| replies.next().ok_or_else(|| bad_reply(what));
        let (secs, micros): (u64, u64) =
            FromRedisValue::from_redis_value(next("TIME")?).map_err(unavailable)?;
        let now = secs * 1000 + micros / 1000;
        let beats: Vec<String> =
            FromRedisValue::from_redis_value(next("ZRANGE")?).map_err(unavailable)?;
        let gens: HashMap<String, u64> =
            FromRedisValue::from_redis_value(next("HGETALL")?).map_err(unavailable)?;
        let mut live = HashMap::new();
        for pair in beats.chunks_exact(2) {
            let Ok(score) = pair[1].parse::<f64>() else {
                continue;
            };
            if score > now.saturating_sub(expiry_ms) as f64 {
                if let (Ok(node), Some(g)) = (pair[0].parse::<NodeId>(), gens.get(&pair[0])) {
                    live.insert(node, *g);
                }
            }
        }
        Ok(LiveSet(live))
    }

    /// The node of a live `node:conn:gen` route value.
    fn route_node(&self, value: &str) -> Option<NodeId> {
        let mut parts = value.split(':');
        let node = parts.next()?;
        let _conn = parts.next()?;
        self.member_node(node, parts.next()?)
    }

    /// The node of a live (`node`, `gen`) pair.
    fn member_node(&self, node: &str, gen: &str) -> Option<NodeId> {
        let node: NodeId = node.parse().ok()?;
        let gen: u64 = gen.parse().ok()?;
        (self.0.get(&node) == Some(&gen)).then_some(node)
    }
}

/// The route of a `node:conn:gen` value; its session is not in it (0).
fn parse_route(v: &str) -> Option<Route> {
    let mut parts = v.split(':');
    Some(Route {
        node: parts.next()?.parse().ok()?,
        conn: parts.next()?.parse().ok()?,
        session: 0,
    })
}

impl RedisPresence {
    /// Per user, the live nodes of their routes (sorted, deduplicated).
    async fn live_route_nodes<S: AsRef<str>>(
        &self,
        users: &[S],
    ) -> PlumbingResult<Vec<Vec<NodeId>>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let i = &self.inner;
        let mut pipe = redis::pipe();
        i.live_cmds(&mut pipe);
        for u in users {
            pipe.cmd("HVALS").arg(i.route_key(u.as_ref()));
        }
        let mut con = i.con.clone();
        let replies: Vec<Value> = call(pipe.query_async(&mut con)).await?;
        let mut replies = replies.into_iter();
        let live = LiveSet::parse(&mut replies, i.expiry_ms)?;
        let mut out = Vec::with_capacity(users.len());
        for _ in users {
            let values: Vec<String> =
                FromRedisValue::from_redis_value(replies.next().ok_or_else(|| bad_reply("HVALS"))?)
                    .map_err(unavailable)?;
            let mut nodes: Vec<NodeId> = values.iter().filter_map(|v| live.route_node(v)).collect();
            nodes.sort_unstable();
            nodes.dedup();
            out.push(nodes);
        }
        Ok(out)
    }

    async fn route_script(
        &self,
        script: &Lua,
        user: &str,
        device: &str,
        route: Route,
    ) -> PlumbingResult<Value> {
        let i = &self.inner;
        let mut con = i.con.clone();
        let mut inv = script.prepare_invoke();
        inv.key(i.route_key(user))
            .key(&i.nodes_key)
            .key(&i.gen_key)
            .key(i.sessions_key(user))
            .arg(device)
            .arg(i.value(route))
            .arg(i.expiry_ms)
            .arg(format!("{:032x}", route.session));
        call(inv.invoke_async(&mut con)).await
    }
}

#[async_trait]
impl NodeSet for RedisPresence {
    fn node(&self) -> NodeId {
        self.inner.node
    }

    fn expiry_ms(&self) -> u64 {
        self.inner.expiry_ms
    }

    fn live_nodes(&self) -> Vec<NodeId> {
        self.inner.live.read().clone()
    }

    async fn health(&self) -> PlumbingResult<()> {
        let mut con = self.inner.con.clone();
        let pong: String = call(redis::cmd("PING").query_async(&mut con)).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(bad_reply("PING"))
        }
    }

    fn losses(&self) -> watch::Receiver<u64> {
        self.inner.losses.subscribe()
    }
}

#[async_trait]
impl Routes for RedisPresence {
    async fn connected(&self, user: &str, device: &str, route: Route) -> PlumbingResult<Connected> {
        let reply = self
            .route_script(&self.inner.scripts.connected, user, device, route)
            .await?;
        let (first, replaced): (i64, String) =
            FromRedisValue::from_redis_value(reply).map_err(unavailable)?;
        Ok(Connected {
            replaced: if replaced.is_empty() {
                None
            } else {
                Some(parse_route(&replaced).ok_or_else(|| bad_reply("connected"))?)
            },
            first: first == 1,
        })
    }

    async fn disconnected(&self, user: &str, device: &str, route: Route) -> PlumbingResult<bool> {
        let reply = self
            .route_script(&self.inner.scripts.disconnected, user, device, route)
            .await?;
        let last: i64 = FromRedisValue::from_redis_value(reply).map_err(unavailable)?;
        Ok(last == 1)
    }

    async fn online(&self, users: &[&str]) -> PlumbingResult<Vec<bool>> {
        Ok(self
            .live_route_nodes(users)
            .await?
            .into_iter()
            .map(|n| !n.is_empty())
            .collect())
    }

    async fn nodes_of(&self, users: &[Arc<str>]) -> PlumbingResult<Vec<Vec<NodeId>>> {
        self.live_route_nodes(users).await
    }

    async fn devices(&self, user: &str) -> PlumbingResult<Vec<(String, Route)>> {
        let i = &self.inner;
        let mut pipe = redis::pipe();
        i.live_cmds(&mut pipe);
        pipe.cmd("HGETALL")
            .arg(i.route_key(user))
            .cmd("HGETALL")
            .arg(i.sessions_key(user));
        let mut con = i.con.clone();
        let replies: Vec<Value> = call(pipe.query_async(&mut con)).await?;
        let mut replies = replies.into_iter();
        let live = LiveSet::parse(&mut replies, i.expiry_ms)?;
        let mut next = |what: &str| -> PlumbingResult<HashMap<String, String>> {
            FromRedisValue::from_redis_value(replies.next().ok_or_else(|| bad_reply(what))?)
                .map_err(unavailable)
        };
        let routes = next("HGETALL routes")?;
        let sessions = next("HGETALL sessions")?;
        let mut out: Vec<(String, Route)> = routes
            .into_iter()
            .filter(|(_, v)| live.route_node(v).is_some())
            .filter_map(|(device, v)| {
                let mut route = parse_route(&v)?;
                // The session recorded with this very route value, if any
                // (a route written by a node that records none has none).
                route.session = sessions
                    .get(&device)
                    .and_then(|s| s.strip_prefix(v.as_str())?.strip_prefix(' '))
                    .and_then(|hex| u128::from_str_radix(hex, 16).ok())
                    .unwrap_or(0);
                Some((device, route))
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn restore(&self, routes: &[(Arc<str>, Arc<str>, Route)]) -> PlumbingResult<Vec<usize>> {
        let i = &self.inner;
        let mut elsewhere = Vec::new();
        for (c, chunk) in routes.chunks(RESTORE_CHUNK).enumerate() {
            let mut inv = i.scripts.restore.prepare_invoke();
            inv.key(&i.lease_key).key(&i.nodes_key).key(&i.gen_key);
            for (user, _, _) in chunk {
                inv.key(i.route_key(user));
            }
            inv.arg(i.node).arg(0).arg(i.expiry_ms);
            for (_, device, route) in chunk {
                inv.arg(&**device).arg(i.value(*route));
            }
            let mut con = i.con.clone();
            let skipped: Vec<usize> = call(inv.invoke_async(&mut con)).await?;
            // The sessions of the routes written (see `scripts::CONNECTED`).
            let mut pipe = redis::pipe();
            let mut n = 0;
            for (k, (user, device, route)) in chunk.iter().enumerate() {
                if !skipped.contains(&k) {
                    n += 1;
                    let v = format!("{} {:032x}", i.value(*route), route.session);
                    pipe.cmd("HSET")
                        .arg(i.sessions_key(user))
                        .arg(&**device)
                        .arg(v)
                        .ignore();
                }
            }
            if n > 0 {
                call::<()>(pipe.query_async(&mut con)).await?;
            }
            elsewhere.extend(skipped.into_iter().map(|k| c * RESTORE_CHUNK + k));
        }
        Ok(elsewhere)
    }
}

#[async_trait]
impl RoomNodes for RedisPresence {
    async fn room_joined(&self, room: &str) -> PlumbingResult<()> {
        let i = &self.inner;
        let mut con = i.con.clone();
        let member = format!("{}:{}", i.node, i.gen);
        call(
            redis::cmd("SADD")
                .arg(i.room_key(room))
                .arg(member)
                .exec_async(&mut con),
        )
        .await
    }

    async fn room_left(&self, room: &str) -> PlumbingResult<()> {
        let i = &self.inner;
        let mut con = i.con.clone();
        let member = format!("{}:{}", i.node, i.gen);
        call(
            redis::cmd("SREM")
                .arg(i.room_key(room))
                .arg(member)
                .exec_async(&mut con),
        )
        .await
    }

    async fn room_nodes(&self, room: &str) -> PlumbingResult<Vec<NodeId>> {
        let i = &self.inner;
        let mut pipe = redis::pipe();
        i.live_cmds(&mut pipe);
        pipe.cmd("SMEMBERS").arg(i.room_key(room));
        let mut con = i.con.clone();
        let replies: Vec<Value> = call(pipe.query_async(&mut con)).await?;
        let mut replies = replies.into_iter();
        let live = LiveSet::parse(&mut replies, i.expiry_ms)?;
        let members: Vec<String> =
            FromRedisValue::from_redis_value(replies.next().ok_or_else(|| bad_reply("SMEMBERS"))?)
                .map_err(unavailable)?;
        let mut nodes: Vec<NodeId> = members
            .iter()
            .filter_map(|m| {
                let (n, g) = m.split_once(':')?;
                live.member_node(n, g)
            })
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        Ok(nodes)
    }
}
