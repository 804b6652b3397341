//! The IM logic behind both the WebSocket and the HTTP API: who may do
//! what, which users a message reaches, and what each action pushes.
//!
//! [`Core`] and its start-up live here, with the checks several domains
//! share; each domain is one file with its own `impl Core` block.

mod accounts;
mod friends;
mod groups;
mod live;
mod messages;
mod reading;
// 5.4 and blocks
mod blocks;
mod moderation;
// 5.1
mod edits;
// 5.3 profiles, conversation settings, sessions
mod settings;
// 5.2
mod search;
// 5.5 media
mod media;
// 5.6 scheduled messages
mod scheduled;
// 5.6 account data
mod account;
// 5.6 integrations
mod hooks;
// 5.5 offline push registrations
mod push;
// 5.6 retention and account erase
mod retention;

pub use crate::frame::encode;
pub use account::{Export, EXPORT_CONVS_MAX};
pub use accounts::{register_bot, register_user, BOT_PASSWORD_HASH};
pub use moderation::GroupUpdate;
pub use push::{PushTarget, PUSH_ENDPOINT_MAX, PUSH_KEY_MAX, PUSH_TOKEN_MAX};
pub use retention::RETENTION_DAYS_MAX;
pub use scheduled::{DueOutcome, ScheduledOk, SCHEDULE_HORIZON_MS};
pub use settings::{SessionInfo, UserView, NAME_MAX_CHARS};

use crate::acks::Acks;
use crate::auth::Auth;
use crate::bus::{Bus, PlumbingError};
use crate::error::{CoreError, CoreResult};
use crate::fanout::{Fanout, NodeInbound};
use crate::groups::{GroupView, Groups};
use crate::hub::Hub;
use crate::keeper::Keeper;
use crate::order::Orderer;
use crate::pipeline::{Pipeline, Publisher};
use crate::presence::Presence;
use crate::revoked::Revoked;
use crate::rooms::{RoomConfig, Rooms};
use crate::store::{HistoryQuery, MemberChange, NewMessage, Store, StoreError};
use crate::views::{MemberViews, OwnViews, SharedViews};
use messages::Owner;
use std::sync::Arc;
use tern_proto::ids::is_valid_name;
use tern_proto::{ConvId, ErrorCode};

/// Limits and timings the logic enforces.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub node_id: u16,
    pub content_bytes: usize,
    pub offline_cap: usize,
    pub recall_window_ms: i64,
    pub batch_max: usize,
    pub rooms: RoomConfig,
    /// Groups up to this many members are write-diffused (per-member
    /// inbox, tracked pushes); larger ones are read-diffused.
    pub write_limit: usize,
    /// Most members a group may have.
    pub max_group_size: usize,
    /// Most groups one user may be a member of: creating a group or adding
    /// a user at this many is refused (`forbidden`).
    pub max_groups_per_user: usize,
    /// Most unanswered friend requests one user may have sent: asking one
    /// more user is refused (`forbidden`); accepting is not.
    pub max_outgoing_requests: usize,
    /// Append pipelines committing concurrently (conversations are spread
    /// over them; each conversation keeps one).
    pub commit_lanes: usize,
    /// Cluster mode: pushes are routed to other nodes through the bus
    /// (queue of this many pushes); `None` for one node (embedded).
    pub cluster_queue: Option<usize>,
    /// Cluster mode: a group send received by a node that does not own
    /// the conversation ([`owner_of`](crate::bus::owner_of) the live
    /// nodes) goes to the owner, which appends it; without its answer
    /// within this time the node appends it itself. `None`: every node
    /// appends what it receives.
    pub forward_timeout: Option<std::time::Duration>,
    /// 5.4 and blocks: most users one user may block.
    pub max_blocks: usize,
    /// 5.1: how long after sending its sender may edit a message.
    pub edit_window_ms: i64,
    /// 5.1: most distinct emojis one message may carry.
    pub reaction_emoji_max: usize,
    /// 5.1: most users listed per emoji in history.
    pub reaction_users_listed: u32,
    /// 5.3: longest avatar (media) id, in bytes.
    pub avatar_bytes: usize,
    /// 5.3: a session's `last_seen` is written at most this often (ms)
    /// per node.
    pub session_seen_ms: i64,
    /// 5.3: most sessions `GET /v1/sessions` lists (the newest).
    pub sessions_listed: usize,
    /// 5.2 search: the largest `limit`, the longest `q` (bytes), and how
    /// often the indexer looks for new messages besides its wake-ups.
    pub search_limit_max: u32,
    pub search_query_bytes: usize,
    pub search_poll: std::time::Duration,
    /// 5.6 scheduled messages: most pending per user (`invalid` beyond),
    /// and how often the scheduler looks for due ones besides waking at
    /// the next due time it knows (another node's may come sooner).
    pub scheduled_max: u32,
    pub scheduled_poll: std::time::Duration,
    /// 5.6: webhooks and the before-send hook (none by default).
    pub integrations: crate::integrations::Integrations,
}

/// Largest `limit` of a history page.
pub const HISTORY_MAX: u32 = 500;
pub const HISTORY_DEFAULT: u32 = 50;
/// Largest `limit` of a conversation list.
pub const SYNC_MAX: u32 = 1000;
pub const SYNC_DEFAULT: u32 = 200;
/// Most users in one presence query and seqs in one delete.
pub const LIST_MAX: usize = 1000;

/// The answer to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOk {
    pub msg_id: u64,
    pub conv: String,
    pub seq: u64,
    pub ts: i64,
    pub duplicate: bool,
}

/// The sending side of a request: the user and, over WebSocket, the device.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub user: &'a str,
    pub device: Option<&'a str>,
    /// The id of the session (token) the request came with; 0: none.
    pub session: u128,
}

pub struct Core {
    store: Arc<dyn Store>,
    /// Kept for the node's life (dropping a networked bus stops it).
    _bus: Arc<dyn Bus>,
    fanout: Arc<Fanout>,
    presence: Arc<dyn Presence>,
    hub: Arc<Hub>,
    auth: Auth,
    pipeline: Pipeline,
    acks: Arc<Acks>,
    rooms: Arc<Rooms>,
    groups: Arc<Groups>,
    /// This node's group views as the publisher keeps them (5.4: for
    /// decisions that need the current roles).
    views: Arc<dyn MemberViews>,
    revoked: Arc<Revoked>,
    /// Writes this node's routes and rooms back into presence after a loss.
    keeper: Arc<Keeper>,
    cfg: CoreConfig,
    /// Users known to exist (users are never deleted), to spare a lookup
    /// per send.
    known_users: dashmap::DashSet<String>,
    /// 5.3: when this node last recorded each session's use (ms).
    seen: dashmap::DashMap<u128, i64>,
    seen_sweep: std::sync::atomic::AtomicI64,
    /// 5.2: indexes stored messages for search, off the send path.
    indexer: crate::indexer::Indexer,
    /// 5.6: wakes the scheduler ([`crate::scheduler`]) when a message is
    /// scheduled.
    sched_wake: Arc<tokio::sync::Notify>,
    /// 5.6: the before-send hook and the webhook runner.
    hooks: hooks::Hooks,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Starts the append pipeline and, in cluster mode, the routing task
    /// and the bus's inbound side; call from within a tokio runtime. The
    /// node's number is the presence's (it also stamps message ids).
    pub async fn start(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        hub: Arc<Hub>,
        auth: Auth,
        mut cfg: CoreConfig,
    ) -> Result<Core, PlumbingError> {
        cfg.node_id = presence.node();
        let groups = Arc::new(Groups::default());
        let rooms = Arc::new(Rooms::new(cfg.rooms.clone()));
        let revoked = Arc::new(Revoked::default());
        let orderer = cfg
            .cluster_queue
            .map(|queue| Orderer::start(hub.clone(), queue));
        let fanout = Arc::new(match (cfg.cluster_queue, &orderer) {
            (Some(queue), Some(o)) => {
                Fanout::cluster(hub.clone(), o.clone(), bus.clone(), presence.clone(), queue)
            }
            _ => Fanout::single(cfg.node_id, hub.clone()),
        });
        bus.start(
            cfg.node_id,
            Arc::new(NodeInbound {
                hub: hub.clone(),
                orderer,
                groups: groups.clone(),
                rooms: rooms.clone(),
                revoked: revoked.clone(),
            }),
        )
        .await?;
        let views: Arc<dyn MemberViews> = match cfg.cluster_queue {
            Some(_) => Arc::new(SharedViews {
                store: store.clone(),
                groups: groups.clone(),
                fanout: fanout.clone(),
            }),
            None => Arc::new(OwnViews {
                store: store.clone(),
                groups: groups.clone(),
            }),
        };
        let publisher = Publisher {
            fanout: fanout.clone(),
            store: store.clone(),
            views: views.clone(),
            groups: groups.clone(),
            write_limit: cfg.write_limit,
        };
        // Ids continue above the newest this node number ever stored, even
        // if the clock stepped back while the node was down.
        let id_floor = store
            .max_msg_id(cfg.node_id)
            .await
            .map_err(|e| PlumbingError::unavailable("store", e))?;
        let pipeline = Pipeline::start(
            publisher,
            cfg.node_id,
            id_floor,
            cfg.batch_max,
            cfg.commit_lanes,
            cfg.integrations.webhooks.clone(),
            cfg.integrations.push.is_some(),
        );
        let forwarding = bus.forwarding().filter(|_| cfg.forward_timeout.is_some());
        if let (Some(f), Some(_)) = (forwarding, cfg.cluster_queue) {
            f.serve_forwards(
                cfg.node_id,
                Arc::new(Owner {
                    pipeline: pipeline.clone(),
                    write_limit: cfg.write_limit,
                }),
            )
            .await?;
        }
        let acks = Acks::start(store.clone(), fanout.clone());
        let keeper = Keeper::start(hub.clone(), rooms.clone(), presence.clone());
        let indexer = crate::indexer::Indexer::start(store.clone(), cfg.search_poll);
        let hooks =
            hooks::Hooks::start(cfg.integrations.clone(), &store, &presence, cfg.write_limit);
        Ok(Core {
            store,
            _bus: bus,
            fanout,
            presence,
            hub,
            auth,
            pipeline,
            acks,
            rooms,
            groups,
            views,
            revoked,
            keeper,
            cfg,
            known_users: Default::default(),
            seen: Default::default(),
            seen_sweep: Default::default(),
            indexer,
            sched_wake: Default::default(),
            hooks,
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// How long after a node stops its heartbeat the others stop counting
    /// it (and after its start, by when every live node counts it).
    pub fn presence_expiry(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.presence.expiry_ms())
    }

    /// Each backend's state: the store, then what the fan-out uses
    /// besides (none for one node).
    pub async fn health(&self) -> Health {
        let (store, plumbing) = tokio::join!(self.store.health(), self.fanout.health());
        Health {
            store: store.map_err(|e| e.to_string()),
            plumbing: plumbing
                .into_iter()
                .map(|(name, r)| (name, r.map_err(|e| e.to_string())))
                .collect(),
        }
    }

    /// This node's number.
    pub fn node(&self) -> u16 {
        self.fanout.node()
    }

    /// Whether a connection may see a conversation's pushes skip a seq and
    /// is to fill the gap from the store ([`Fanout::pushes_may_skip`]).
    pub fn pushes_may_skip(&self) -> bool {
        self.fanout.pushes_may_skip()
    }

    async fn require_user(&self, user: &str) -> CoreResult<()> {
        if self.user_exists(user).await? {
            Ok(())
        } else {
            Err(CoreError::new(
                ErrorCode::NoSuchUser,
                format!("no such user {user:?}"),
            ))
        }
    }

    /// The group's membership, from this node's cache or the store.
    async fn group_view(&self, gid: &str) -> CoreResult<Arc<GroupView>> {
        if let Some(v) = self.groups.get(gid) {
            return Ok(v);
        }
        let no_such = || CoreError::new(ErrorCode::NoSuchGroup, "no such group");
        if !is_valid_name(gid) {
            return Err(no_such());
        }
        let rec = self.store.get_group(gid).await?.ok_or_else(no_such)?;
        Ok(self.groups.insert(GroupView::from_record(&rec)))
    }

    /// Checks that `user` may use `conv`, before anything is read or
    /// written. `former_ok`: a former group member may still read (the
    /// store then bounds what they see); someone who never was in the
    /// group may not, and learns nothing about it.
    async fn access(&self, user: &str, conv: &str, former_ok: bool) -> CoreResult<Access> {
        let id = ConvId::parse(conv)
            .ok_or_else(|| CoreError::invalid("conv is not a conversation id"))?;
        let not_member = || CoreError::new(ErrorCode::NotMember, "not in this conversation");
        match &id {
            ConvId::Dm { .. } if id.peer_of(user).is_some() => Ok(Access {
                id,
                former_up_to: None,
            }),
            ConvId::Dm { .. } => Err(not_member()),
            ConvId::Group(gid) => {
                let view = self.group_view(gid).await?;
                if view.is_member(user) {
                    return Ok(Access {
                        id,
                        former_up_to: None,
                    });
                }
                if !former_ok {
                    return Err(not_member());
                }
                // Not a member now: the store tells a former member (who
                // sees the group up to their removal) from someone who
                // never was in it. Its newest message the user can see
                // bounds what they may mark read or delete.
                let newest = HistoryQuery {
                    before_seq: None,
                    after_seq: None,
                    limit: 1,
                };
                match self.store.history(user, conv, newest).await {
                    Ok(msgs) => Ok(Access {
                        id,
                        former_up_to: Some(msgs.last().map_or(0, |m| m.seq)),
                    }),
                    Err(StoreError::NotMember) => Err(not_member()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Everyone in a conversation now.
    async fn audience(&self, id: &ConvId) -> Vec<Arc<str>> {
        match id {
            ConvId::Dm { a, b } if a == b => vec![Arc::from(a.as_str())],
            ConvId::Dm { a, b } => vec![Arc::from(a.as_str()), Arc::from(b.as_str())],
            ConvId::Group(gid) => self
                .group_view(gid)
                .await
                .map(|v| v.members.to_vec())
                .unwrap_or_default(),
        }
    }
}

/// Who may use a conversation, as [`Core::access`] found.
struct Access {
    id: ConvId,
    /// A former group member: the newest seq they can still see.
    former_up_to: Option<u64>,
}

/// What [`Core::health`] found, per backend.
#[derive(Debug)]
pub struct Health {
    pub store: Result<(), String>,
    /// The other backends by name (`redis`, `bus`).
    pub plumbing: Vec<(&'static str, Result<(), String>)>,
}

impl Health {
    pub fn ok(&self) -> bool {
        self.store.is_ok() && self.plumbing.iter().all(|(_, r)| r.is_ok())
    }
}

/// A message to group `gid`; while the group has at most `write_limit`
/// members it enters their offline queues.
fn group_message(
    write_limit: usize,
    gid: &str,
    from: &str,
    kind: &str,
    content: String,
    cmid: Option<&str>,
    change: Option<MemberChange>,
) -> NewMessage {
    NewMessage {
        msg_id: 0,
        conv: ConvId::group(gid).to_string(),
        from: from.to_owned(),
        to: None,
        group: Some(gid.to_owned()),
        kind: kind.to_owned(),
        content,
        ts: 0,
        client_msg_id: cmid.map(str::to_owned),
        participants: Vec::new(),
        inbox_members_up_to: write_limit,
        change,
        extras: Default::default(),
    }
}
