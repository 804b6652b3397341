//! Cluster plumbing: [`tern_core::bus::Presence`] on Redis
//! ([`RedisPresence`], [`PresenceOptions`]) and [`tern_core::bus::Bus`] on
//! NATS JetStream ([`NatsBus`], [`BusOptions`]), re-exported here.
//! The checks that these and the in-process implementations
//! (`LocalPresence`, `LocalBus`) all pass live with the tests
//! (`tests/common/conformance.rs`).
//!
//! # Redis keys (`{p}` = [`PresenceOptions::prefix`], default `tern`)
//!
//! On a Redis Cluster (`redis_url` lists several seed nodes, comma
//! separated) `{p}` is written as a hash tag, `{tern}`, so that the keys
//! of every script lie in one slot (`redis_con.rs`); scripts run by hash,
//! or by text where a master (a promoted replica) does not know them yet.
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `{p}:node:{id}` | string, `PX expiry_ms` | the lease on node id `id` (0..1024): a random token of the instance holding it |
//! | `{p}:nodes` | sorted set | node id -> time of its last heartbeat (ms, Redis clock) |
//! | `{p}:gen` | hash | node id -> generation, incremented each time an instance takes the id |
//! | `{p}:r:{user}` | hash | device -> `node:conn:gen`, the device's route |
//! | `{p}:room:{room}` | set | `node:gen` of each node with members in the live room |
//! | `{p}:rl:{key}` | string, `PX` refill time | a rate limit's bucket ([`RedisLimiter`]): its theoretical arrival time, µs |
//!
//! A node takes a free id with `SET NX PX` and renews the lease every
//! `heartbeat_ms` (a script that renews only while the token is still its
//! own, then `ZADD`s the beat). Route values and room members carry the
//! generation of the id, so that an id reused after its holder died does
//! not bring the dead holder's routes back. A route value is written with
//! the generation of the node that records it: record a route through the
//! presence of the node that holds the connection.
//!
//! **Expiry.** A route or room member counts while its node's last beat
//! is less than `expiry_ms` old (by the Redis clock) and its generation is
//! the id's current one. A node whose heartbeats stop therefore stops
//! counting for `online`, `nodes_of`, `room_nodes` and the
//! `connected`/`disconnected` flags within `expiry_ms`, and drops out of
//! the others' `live_nodes` snapshot within `expiry_ms + heartbeat_ms`.
//! Dead routes are deleted lazily (when the user's routes are next
//! written); dead room members stay in the set but do not count.
//! `RedisPresence::leave` drops the node at once (graceful shutdown).
//!
//! Every call is bounded by about 2 s and answers
//! `PlumbingError::Unavailable("redis", ..)` while Redis is down; the
//! connection manager reconnects by itself and the heartbeat keeps
//! retrying (a lease that expired meanwhile is taken back if no other
//! instance took the id; if one did, the loss is logged as an error).
//!
//! # NATS subjects and stream (`{s}` = [`BusOptions::subject_prefix`],
//! default `tern.node`)
//!
//! One JetStream stream ([`BusOptions::stream`], default `TERN`) on
//! subjects `{s}.*`, memory storage, `max_age_ms`, discard old, created by
//! whichever node comes first. `{s}.{node}` holds the envelopes addressed
//! to node `node` ([`tern_core::Envelope::encode`] wire form, one message
//! per destination node, with a `Nats-Msg-Id` header for deduplication of
//! retried publishes). Each node reads its subject through its own
//! ephemeral pull consumer (explicit ack, `ack_wait_ms`, removed by the
//! server 30 s after its node stops pulling), starting at new messages:
//! an id taken over by a new instance does not replay the old one's
//! envelopes.
//!
//! **Delivery.** At least once: `publish` queues without waiting (bounded
//! by [`BusOptions::queue`]; `PlumbingError::Full("bus")` when full), a
//! background task publishes in queue order with a window of acks in
//! flight and retries, in order and with backoff, whatever the broker did
//! not acknowledge (while NATS is down, or after a broker restart, which
//! recreates the stream); the receiver acks after handing the envelope to
//! its [`tern_core::bus::Inbound`], and the broker redelivers what was not
//! acked within `ack_wait_ms`. Envelopes from one node to another arrive
//! in publish order unless one is redelivered (a lost delivery or a
//! failed publish retried: then a later one may come first, and one may
//! come twice). Malformed envelopes are logged and acked.
//!
//! **Forwards** (`Bus::forward`, `Bus::serve_forwards`) are core NATS
//! request/reply, outside the stream: node `n` subscribes to
//! `{s}.fwd.{n}` (two tokens after the prefix, so the stream's `{s}.*`
//! does not capture it); the request is a JSON `Forward`, the answer a
//! JSON `ForwardAnswer`. At most once: a request to a node without a
//! subscription fails at once (no responders), one without an answer
//! within its timeout fails then, and the caller decides what to do (the
//! node appends the send itself; dedup by `client_msg_id` keeps a message
//! the owner stored meanwhile from being stored twice).

pub mod bus;
mod limiter;
pub mod presence;
mod redis_con;
mod secret;

pub use bus::{BusOptions, NatsBus};
pub use limiter::RedisLimiter;
pub use presence::{PresenceOptions, RedisPresence};
pub use secret::former_secret;
