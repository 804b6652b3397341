//! The sections that bound the server: `[limits]`, `[delivery]`,
//! `[rooms]`, `[groups]` and the `[rate]` limits.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest text frame; bigger ones close the connection with 1009.
    pub frame_bytes: usize,
    /// Largest `content` (its JSON encoding) of a message.
    pub content_bytes: usize,
    /// Sustained client frames per second per connection; also each
    /// user's rate of HTTP sends.
    pub frame_rate: u32,
    /// Burst of client frames above the rate.
    pub frame_burst: u32,
    /// Seconds over the frame rate before the connection is closed (4008).
    pub rate_close_secs: u64,
    /// Frames queued to one connection before it counts as a slow reader
    /// and is closed (4008).
    pub outbound_queue: usize,
    /// Pushed messages awaiting an ack on one connection before it counts as
    /// a slow reader.
    pub max_unacked: usize,
    /// Bytes of pushed messages awaiting an ack on one connection before
    /// the server stops writing to it: a window, so a client that stops
    /// reading costs at most this much writing before its queue fills
    /// and it is closed as a slow reader. Acks reopen it. 0 (the
    /// default): no window.
    pub unacked_bytes: usize,
    /// While that window is full, one frame still goes out this often (ms):
    /// a client that acks only when a frame arrives gets one and acks.
    pub unacked_probe_ms: u64,
    /// Seconds without any frame before a connection is closed.
    pub idle_timeout_secs: u64,
    /// Seconds a new connection has to authenticate.
    pub auth_timeout_secs: u64,
    /// Password hashes (logins, registrations) computed at once, each with
    /// its argon2 work memory (`auth.argon2_m_cost_kib`); 0: one per CPU
    /// core.
    pub hash_concurrency: usize,
    /// Logins and registrations waiting for a hash beyond those; more at
    /// once are answered 503 `unavailable` with `Retry-After`.
    pub hash_queue: usize,
    /// Room and large-group frames to one device within this many ms are
    /// merged into one `batch` frame.
    pub storm_window_ms: u64,
    /// Least time between two socket writes of queued frames to one
    /// connection: what is queued meanwhile leaves in one write. A
    /// connection quiet for longer writes at once; 0 writes on every
    /// wake-up.
    pub write_interval_ms: u64,
    /// A connection whose pushes have awaited an ack for this long (ms)
    /// with no ack in between is lagging: its queue is written on a timer
    /// (`lagging_interval_ms`) rather than on every push, so that under a
    /// fan-out the readers that keep up are written first. An ack ends it.
    /// 0: never lagging.
    pub lagging_after_ms: u64,
    /// How often (ms) a lagging connection's queue is written, on average:
    /// each wait is drawn at random, the first up to it, later ones between
    /// half and one and a half of it.
    pub lagging_interval_ms: u64,
    /// Bytes of pushes written since the last pong and awaiting an ack
    /// past which a lagging connection is not written until it answers a
    /// WebSocket ping: a reader that stopped costs this much copying into
    /// its socket, not its whole kernel send buffer, before its queue
    /// fills and it is closed, while one that reads but does not ack
    /// answers the ping and gets the next window's worth (`unacked_bytes`,
    /// if set, still applies: only an ack opens that one). 0: none.
    pub lagging_window_bytes: usize,
    /// A connection that reads nothing for this long (ms) while frames
    /// wait for it is cut with 4008: its socket took no byte of a write,
    /// or, lagging with its window full and more queued, it answered none
    /// of its pings. Its messages stay queued and in history.
    pub stall_timeout_ms: u64,
    /// How long (s) the close frame of a connection cut with 4008 may wait
    /// for room in its socket, and the socket then for the client's close:
    /// a reader that stopped and reads again within it finds everything
    /// written to it, then the 4008.
    pub close_linger_secs: u64,
    // 5.4 and blocks
    /// Most users one user may block (`forbidden` beyond).
    pub blocks_max: usize,
    // 5.1
    /// How long (s) after sending its sender may edit a message.
    pub edit_window_secs: u64,
    /// Most distinct emojis one message may carry (one more: `invalid`).
    pub reaction_emoji_max: usize,
    /// Most users listed per emoji in history (the count is exact).
    pub reaction_users_listed: u32,
    // 5.3 profiles, conversation settings, sessions
    /// Longest avatar (media) id in a profile, in bytes (`invalid`
    /// beyond).
    pub avatar_bytes: usize,
    /// A session's `last_seen` is written at most this often (s) per
    /// node, not on every request.
    pub session_seen_secs: u64,
    /// Most sessions `GET /v1/sessions` lists (the newest).
    pub sessions_listed: usize,
    // 5.2 search
    /// Largest `limit` of a search (the default is 20).
    pub search_limit_max: u32,
    /// Longest search `q`, in bytes (`invalid` beyond).
    pub search_query_bytes: usize,
    /// How often (ms) the search indexer looks for new messages besides
    /// the wake-up each send gives it; bounds how long a message forwarded
    /// from another node or written by a group change waits to be found.
    pub search_poll_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Most room messages one device gets from one room per second; the
    /// excess is dropped.
    pub deliver_rate: u32,
    /// Most `room_send` frames one device may send to one room per second.
    pub send_rate: u32,
    /// Most rooms one connection may be in at once.
    pub max_joined: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// Groups up to this many members keep a per-member inbox (offline
    /// queue, tracked pushes); larger groups store each message once.
    pub write_limit: usize,
    /// Most members a group may have.
    pub max_size: usize,
    /// Most groups one user may be a member of; creating a group or adding
    /// a user who is in this many is refused (403 `forbidden`).
    pub max_per_user: usize,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            write_limit: 500,
            max_size: 100_000,
            max_per_user: 1000,
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            deliver_rate: 50,
            send_rate: 50,
            max_joined: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// A push not acknowledged within this time is pushed again.
    pub ack_timeout_ms: u64,
    /// How many times a push is repeated.
    pub redeliveries: u32,
    /// Offline queue cap per user (newest kept).
    pub offline_cap: usize,
    /// How long after sending a message its sender may recall it.
    pub recall_window_secs: u64,
    /// Most messages written in one storage transaction.
    pub batch_max: usize,
    /// Storage transactions of sends in flight at once per node
    /// (conversations are spread over them, each keeps one). 0: 1 for the
    /// embedded store (one writer), 4 for a SQL server.
    pub commit_lanes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            frame_bytes: 64 * 1024,
            content_bytes: 16384,
            frame_rate: 200,
            frame_burst: 400,
            rate_close_secs: 5,
            outbound_queue: 4096,
            max_unacked: 8192,
            unacked_bytes: 0,
            unacked_probe_ms: 100,
            idle_timeout_secs: 90,
            auth_timeout_secs: 10,
            hash_concurrency: 0,
            hash_queue: 128,
            storm_window_ms: 100,
            write_interval_ms: 5,
            lagging_after_ms: 200,
            lagging_interval_ms: 100,
            lagging_window_bytes: 64 * 1024,
            stall_timeout_ms: 5_000,
            close_linger_secs: 60,
            blocks_max: 1000,
            edit_window_secs: 172_800,
            reaction_emoji_max: 20,
            reaction_users_listed: 50,
            avatar_bytes: 128,
            session_seen_secs: 300,
            sessions_listed: 100,
            search_limit_max: 100,
            search_query_bytes: 256,
            search_poll_ms: 200,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            ack_timeout_ms: 10_000,
            redeliveries: 3,
            offline_cap: 1000,
            recall_window_secs: 120,
            batch_max: 1024,
            commit_lanes: 0,
        }
    }
}

/// Abuse limits (PROTOCOL.md 3: answered 429 `rate_limited` with
/// `Retry-After`). "Address" is the peer's IP address (an IPv6 address
/// counts by its /64). In cluster mode the login, registration, send and
/// friend-request buckets live in Redis, shared by every node; upgrades
/// and connections are counted per node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// Failed logins of one user within `login_user_window_secs`; then its
    /// logins are refused until the window lets one more through.
    pub login_user_failures: u32,
    pub login_user_window_secs: u64,
    /// Failed logins from one address within `login_addr_window_secs`;
    /// then every login from it is refused for a while. Correct logins do
    /// not count.
    pub login_addr_failures: u32,
    pub login_addr_window_secs: u64,
    /// Registrations per second from one address, and their burst.
    pub register_rate: u32,
    pub register_burst: u32,
    /// Friend requests (`PUT /v1/friends/{user}`) per hour of one user,
    /// and their burst.
    pub friend_requests_per_hour: u32,
    pub friend_requests_burst: u32,
    /// Unanswered friend requests one user may have sent; asking one more
    /// user is refused (403 `forbidden`: a count, not a rate), accepting a
    /// request is not.
    pub friend_requests_outstanding: usize,
    /// WebSocket upgrades this node admits per second, and their burst;
    /// the excess is answered 503 `unavailable` with `Retry-After`, so a
    /// reconnect storm is spread out instead of stalling the node.
    pub upgrade_rate: u32,
    pub upgrade_burst: u32,
    /// Open WebSocket connections of one user on one node.
    pub connections_per_user: usize,
    /// Open WebSocket connections on one node.
    pub connections: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            login_user_failures: 10,
            login_user_window_secs: 300,
            login_addr_failures: 100,
            login_addr_window_secs: 60,
            register_rate: 5,
            register_burst: 300,
            friend_requests_per_hour: 100,
            friend_requests_burst: 100,
            friend_requests_outstanding: 1000,
            upgrade_rate: 1000,
            upgrade_burst: 2000,
            connections_per_user: 32,
            connections: 200_000,
        }
    }
}
