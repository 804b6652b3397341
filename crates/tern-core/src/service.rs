//! The IM logic behind both the WebSocket and the HTTP API: who may do
//! what, which users a message reaches, and what each action pushes.

use crate::acks::Acks;
use crate::auth::{Auth, Session};
use crate::bus::{
    owner_of, Bus, Envelope, Forward, ForwardAnswer, ForwardHandler, PlumbingError, Presence, Route,
};
use crate::error::{CoreError, CoreResult};
use crate::fanout::{Fanout, NodeInbound, Orderer};
use crate::groups::{GroupView, Groups};
use crate::hub::{Conn, Hub, Outbound, Push, Registered};
use crate::now_ms;
use crate::pipeline::{Pipeline, Publisher, PushPlan};
use crate::revoked::Revoked;
use crate::rooms::{RoomConfig, Rooms};
use crate::store::{
    Appended, ConvList, FriendLists, FriendStatus, HistoryQuery, MemberChange, NewMessage,
    OfflineBatch, Store, StoreError, StoredMessage, UserRecord,
};
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::frames::check_kind_content;
use tern_proto::ids::{is_valid_name, is_valid_token};
use tern_proto::wire::{tag, PresencePush, RawJson, Recalled, Receipt, RoomMsg, Typing};
use tern_proto::{close, request, ConvId, ErrorCode};

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
    /// the conversation ([`owner_of`] the live nodes) goes to the owner,
    /// which appends it; without its answer within this time the node
    /// appends it itself. `None`: every node appends what it receives.
    pub forward_timeout: Option<std::time::Duration>,
}

/// Creates an account as `POST /v1/users` does: checks the user id,
/// password and display name, hashes the password with `auth`'s argon2
/// parameters (on a blocking thread) and stores the user. Also used by
/// the admin command line, which has a store but no running core.
pub async fn register_user(
    store: &dyn Store,
    auth: &Auth,
    user: &str,
    password: &str,
    name: Option<&str>,
) -> CoreResult<()> {
    if !is_valid_name(user) {
        return Err(CoreError::invalid(
            "user must be 1-64 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    if password.chars().count() < 8 {
        return Err(CoreError::invalid("password must be at least 8 characters"));
    }
    if password.len() > 1024 {
        return Err(CoreError::invalid("password must be at most 1024 bytes"));
    }
    let name = name.unwrap_or(user);
    if name.chars().count() > 128 {
        return Err(CoreError::invalid("name must be at most 128 characters"));
    }
    let hash = auth.hash(password).await.map_err(pool_error)?;
    let rec = UserRecord {
        user: user.to_owned(),
        name: name.to_owned(),
        password_hash: hash,
        created_at: now_ms(),
    };
    match store.create_user(rec).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict) => Err(CoreError::new(ErrorCode::UserExists, "user exists")),
        Err(e) => Err(e.into()),
    }
}

/// A hashing pool that is full is `unavailable` (503 with `Retry-After`:
/// waiting helps); PROTOCOL.md keeps 429 for failed logins.
fn pool_error(e: crate::hashpool::PoolError) -> CoreError {
    match e {
        crate::hashpool::PoolError::Busy(_) => {
            metrics::counter!("tern_hash_refused_total").increment(1);
            CoreError::new(
                ErrorCode::Unavailable,
                "too many logins and registrations at once, try again",
            )
        }
        crate::hashpool::PoolError::Failed => CoreError::unavailable(),
    }
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
}

pub struct Core {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    fanout: Arc<Fanout>,
    presence: Arc<dyn Presence>,
    hub: Arc<Hub>,
    auth: Auth,
    pipeline: Pipeline,
    acks: Arc<Acks>,
    rooms: Arc<Rooms>,
    groups: Arc<Groups>,
    revoked: Arc<Revoked>,
    cfg: CoreConfig,
    /// Users known to exist (users are never deleted), to spare a lookup
    /// per send.
    known_users: dashmap::DashSet<String>,
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
        let publisher = Publisher {
            fanout: fanout.clone(),
            store: store.clone(),
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
        );
        if cfg.cluster_queue.is_some() && cfg.forward_timeout.is_some() {
            bus.serve_forwards(
                cfg.node_id,
                Arc::new(Owner {
                    pipeline: pipeline.clone(),
                    write_limit: cfg.write_limit,
                }),
            )
            .await?;
        }
        let acks = Acks::start(store.clone(), fanout.clone());
        Ok(Core {
            store,
            bus,
            fanout,
            presence,
            hub,
            auth,
            pipeline,
            acks,
            rooms,
            groups,
            revoked,
            cfg,
            known_users: Default::default(),
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    // ----- accounts -----

    pub async fn register(&self, user: &str, password: &str, name: Option<&str>) -> CoreResult<()> {
        register_user(&*self.store, &self.auth, user, password, name).await?;
        self.known_users.insert(user.to_owned());
        Ok(())
    }

    /// Checks a password; returns a token and its expiry (ms).
    pub async fn login(&self, user: &str, password: &str) -> CoreResult<(String, i64)> {
        let bad = || CoreError::new(ErrorCode::BadCredentials, "wrong user or password");
        if !is_valid_name(user) || password.len() > 1024 {
            return Err(bad());
        }
        let rec = self.store.get_user(user).await?;
        // An unknown user costs one hash too, so timing does not tell
        // which users exist.
        let ok = self
            .auth
            .check(password, rec.map(|r| r.password_hash))
            .await
            .map_err(pool_error)?;
        if !ok {
            return Err(bad());
        }
        self.auth.issue(user, now_ms()).map_err(|e| {
            tracing::error!(error = %e, "token signing failed");
            CoreError::unavailable()
        })
    }

    /// The user a token belongs to.
    pub async fn authenticate(&self, token: &str) -> CoreResult<String> {
        self.session(token).await.map(|s| s.user)
    }

    /// The session of a valid, unexpired, unrevoked token of a user that
    /// exists. A token signed with this server's secret for a user it does
    /// not know (a store reset with the secret kept, a token minted by
    /// hand) is refused. Users are never deleted, so a user once seen is
    /// remembered ([`user_exists`](Core::user_exists)): the store is asked
    /// once per user, not per call.
    pub async fn session(&self, token: &str) -> CoreResult<Session> {
        let refused =
            || CoreError::new(ErrorCode::Unauthenticated, "missing, bad or expired token");
        let session = self
            .auth
            .verify(token)
            .filter(|s| !self.revoked.contains(s.id))
            .ok_or_else(refused)?;
        if !self.user_exists(&session.user).await? {
            return Err(refused());
        }
        Ok(session)
    }

    /// Revokes a session's token everywhere: stored first (so that a node
    /// starting later knows it too), then refused on this node and its
    /// connections here closed with 4001, then every other live node is
    /// told to do the same.
    pub async fn revoke(&self, session: &Session) -> CoreResult<()> {
        let now = now_ms();
        self.store
            .revoke_token(&session.id_text(), session.expires_at, now)
            .await?;
        self.revoked.insert(session.id, session.expires_at, now);
        let closed = self.hub.kick_session(&session.user, session.id);
        tracing::debug!(user = %session.user, closed, "token revoked");
        if self.fanout.is_cluster() {
            // The live nodes as last seen, and (looked up now) every node
            // holding a connection of the user: a node that joined since
            // the last heartbeat still closes the token's sockets.
            let user: Arc<str> = session.user.as_str().into();
            let mut nodes = self.presence.live_nodes();
            match self.presence.nodes_of(std::slice::from_ref(&user)).await {
                Ok(found) => nodes.extend(found.into_iter().flatten()),
                Err(e) => tracing::warn!(error = %e, "revocation: cannot look up the user's nodes"),
            }
            nodes.sort_unstable();
            nodes.dedup();
            self.fanout.to_nodes(
                &nodes,
                &Envelope::Revoked {
                    user,
                    session: session.id,
                    expires_at: session.expires_at,
                },
            );
        }
        Ok(())
    }

    /// How long after a node stops its heartbeat the others stop counting
    /// it (and after its start, by when every live node counts it).
    pub fn presence_expiry(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.presence.expiry_ms())
    }

    /// Loads the revoked tokens that have not expired yet and closes this
    /// node's connections of any of them: at start, before requests are
    /// served, and in cluster mode once more when every other node counts
    /// this one as live (a revocation made in between was sent only to
    /// the nodes its node knew).
    pub async fn load_revoked(&self) -> CoreResult<usize> {
        let now = now_ms();
        for (jti, expires_at) in self.store.revoked_tokens(now).await? {
            match u128::from_str_radix(&jti, 16) {
                Ok(id) => self.revoked.insert(id, expires_at, now),
                Err(_) => tracing::warn!(jti, "ignoring a malformed revoked token id"),
            }
        }
        if !self.revoked.is_empty() {
            self.hub.kick_sessions(|id| self.revoked.contains(id));
        }
        Ok(self.revoked.len())
    }

    pub async fn user_exists(&self, user: &str) -> CoreResult<bool> {
        if self.known_users.contains(user) {
            return Ok(true);
        }
        if !is_valid_name(user) {
            return Ok(false);
        }
        let found = self.store.get_user(user).await?.is_some();
        if found {
            self.known_users.insert(user.to_owned());
        }
        Ok(found)
    }

    /// `(user, name, online)`.
    pub async fn user_info(&self, user: &str) -> CoreResult<(String, String, bool)> {
        let rec = if is_valid_name(user) {
            self.store.get_user(user).await?
        } else {
            None
        };
        let rec = rec.ok_or_else(|| CoreError::new(ErrorCode::NoSuchUser, "no such user"))?;
        let online = self
            .presence
            .online(&[user])
            .await?
            .first()
            .copied()
            .unwrap_or(false);
        Ok((rec.user, rec.name, online))
    }

    // ----- friends -----

    pub async fn friend_request(&self, user: &str, other: &str) -> CoreResult<FriendStatus> {
        if user == other {
            return Err(CoreError::invalid("cannot befriend oneself"));
        }
        self.require_user(other).await?;
        self.check_outgoing_cap(user, other).await?;
        Ok(self.store.friend_request(user, other, now_ms()).await?)
    }

    /// Refuses a request that would leave `user` with more unanswered
    /// requests than the cap. Accepting `other`'s request, or asking again,
    /// adds none, so it passes. The lists are read only at the cap.
    async fn check_outgoing_cap(&self, user: &str, other: &str) -> CoreResult<()> {
        let cap = self.cfg.max_outgoing_requests as u64;
        if self.store.outgoing_request_count(user).await? < cap {
            return Ok(());
        }
        let l = self.store.friends(user).await?;
        let known = |v: &[String]| v.iter().any(|u| u == other);
        if known(&l.incoming) || known(&l.outgoing) || known(&l.friends) {
            return Ok(());
        }
        Err(CoreError::new(
            ErrorCode::Forbidden,
            format!(
                "{cap} friend requests are unanswered, the most one user may have \
                 (rate.friend_requests_outstanding)"
            ),
        ))
    }

    pub async fn friend_delete(&self, user: &str, other: &str) -> CoreResult<()> {
        self.require_user(other).await?;
        Ok(self.store.friend_delete(user, other).await?)
    }

    /// The lists, with each friend's presence.
    pub async fn friends(&self, user: &str) -> CoreResult<(Vec<(String, bool)>, FriendLists)> {
        let lists = self.store.friends(user).await?;
        let names: Vec<&str> = lists.friends.iter().map(String::as_str).collect();
        let online = self.presence.online(&names).await?;
        let friends = lists.friends.iter().cloned().zip(online).collect();
        Ok((friends, lists))
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

    // ----- messages -----

    /// `send` (PROTOCOL.md 2.2): the core checks every field's value.
    pub async fn send(&self, actor: Actor<'_>, req: &request::Send<'_>) -> CoreResult<SendOk> {
        let cmid = &*req.client_msg_id;
        if !is_valid_token(cmid) {
            return Err(CoreError::invalid("client_msg_id must be 1-64 characters"));
        }
        let kind = &*req.kind;
        let content = req.content;
        check_kind_content(kind, content).map_err(CoreError::invalid)?;
        if content.get().len() > self.cfg.content_bytes {
            return Err(CoreError::new(
                ErrorCode::ContentTooLarge,
                format!("content is over {} bytes", self.cfg.content_bytes),
            ));
        }
        let to = match (req.to.as_deref(), req.group.as_deref()) {
            (Some(to), None) => to,
            (None, Some(gid)) => return self.send_group(actor, gid, cmid, kind, content).await,
            _ => {
                return Err(CoreError::invalid(
                    "exactly one of to and group is required",
                ))
            }
        };
        if !is_valid_name(to) {
            return Err(CoreError::new(
                ErrorCode::NoSuchUser,
                format!("no such user {to:?}"),
            ));
        }
        self.require_user(to).await?;
        let conv = ConvId::dm(actor.user, to).to_string();
        let mut participants = vec![actor.user.to_owned()];
        if to != actor.user {
            participants.push(to.to_owned());
        }
        let msg = NewMessage {
            msg_id: 0,
            conv,
            from: actor.user.to_owned(),
            to: Some(to.to_owned()),
            group: None,
            kind: kind.to_owned(),
            content: content.get().to_owned(),
            ts: 0,
            client_msg_id: Some(cmid.to_owned()),
            participants: participants.clone(),
            inbox_members_up_to: 0,
            change: None,
        };
        let plan = PushPlan::Users {
            users: participants.iter().map(|u| Arc::from(u.as_str())).collect(),
            except: except_of(actor),
        };
        send_ok(self.pipeline.append(msg, plan).await?)
    }

    async fn send_group(
        &self,
        actor: Actor<'_>,
        gid: &str,
        cmid: &str,
        kind: &str,
        content: &RawValue,
    ) -> CoreResult<SendOk> {
        let view = self.group_view(gid).await?;
        if !view.is_member(actor.user) {
            return Err(CoreError::new(
                ErrorCode::NotMember,
                "not a member of this group",
            ));
        }
        let msg = group_message(
            self.cfg.write_limit,
            gid,
            actor.user,
            kind,
            content.get().to_owned(),
            Some(cmid),
            None,
        );
        let started = now_ms();
        let owner = self.owner(&msg.conv);
        if let Some(owner) = owner {
            if let Some(answer) = self.forward_to_owner(owner, actor, &msg).await {
                return answer;
            }
        }
        let plan = PushPlan::Group {
            gid: gid.into(),
            except: except_of(actor),
        };
        let mut ok = send_ok(self.pipeline.append(msg, plan).await?)?;
        if ok.duplicate && owner.is_some() && ok.ts >= started {
            // The forward that failed or timed out was stored by the owner
            // during this very request after all: this send is not a retry
            // of an earlier one (that would be stored before it began).
            ok.duplicate = false;
        }
        Ok(ok)
    }

    /// The owning node of `conv` when it is another node and group sends
    /// are forwarded (cluster mode).
    fn owner(&self, conv: &str) -> Option<u16> {
        self.cfg.forward_timeout?;
        if !self.fanout.is_cluster() {
            return None;
        }
        let owner = owner_of(conv, &self.presence.live_nodes())?;
        (owner != self.cfg.node_id).then_some(owner)
    }

    /// Hands a group send to the conversation's owner and returns its
    /// answer; `None` when this node is to append it after all: the owner
    /// could not be reached, did not answer in time, or found its store
    /// unavailable. (What the owner stored meanwhile is then answered from
    /// dedup by `client_msg_id`, never stored twice.)
    async fn forward_to_owner(
        &self,
        owner: u16,
        actor: Actor<'_>,
        msg: &NewMessage,
    ) -> Option<CoreResult<SendOk>> {
        let timeout = self.cfg.forward_timeout?;
        let req = Forward {
            gid: msg.group.clone()?,
            from: msg.from.clone(),
            device: actor.device.map(str::to_owned),
            client_msg_id: msg.client_msg_id.clone()?,
            kind: msg.kind.clone(),
            content: msg.content.clone(),
        };
        let fallback = |why: &dyn std::fmt::Display| {
            metrics::counter!("tern_forwards_total", "result" => "local").increment(1);
            tracing::debug!(owner, reason = %why, "forward failed; appending here");
            None
        };
        match self.bus.forward(owner, &req, timeout).await {
            Ok(ForwardAnswer::Ok {
                msg_id,
                conv,
                seq,
                ts,
                duplicate,
            }) => {
                metrics::counter!("tern_forwards_total", "result" => "ok").increment(1);
                Some(Ok(SendOk {
                    msg_id,
                    conv,
                    seq,
                    ts,
                    duplicate,
                }))
            }
            Ok(ForwardAnswer::Err { code, message }) => match ErrorCode::parse(&code) {
                Some(c) if c != ErrorCode::Unavailable => {
                    metrics::counter!("tern_forwards_total", "result" => "refused").increment(1);
                    Some(Err(CoreError::new(c, message)))
                }
                _ => fallback(&code),
            },
            Err(e) => fallback(&e),
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

    /// A device holds `conv` up to `seq`.
    /// Records a cumulative ack. It is stored within [`crate::acks::FLUSH_EVERY`]
    /// (coalesced with other acks), and before this user's offline queue is
    /// next read; delivered receipts go out once it is stored.
    pub async fn ack(&self, user: &str, conv: &str, seq: u64) -> CoreResult<()> {
        let seq = match self.access(user, conv, true).await?.former_up_to {
            Some(up_to) => seq.min(up_to),
            None => seq,
        };
        metrics::counter!("tern_acks_total").increment(1);
        self.acks.record(user, conv, seq);
        Ok(())
    }

    /// Stores every ack still held in memory (graceful shutdown).
    pub async fn flush_acks(&self) {
        self.acks.flush_all().await;
    }

    pub async fn read(&self, actor: Actor<'_>, conv: &str, seq: u64) -> CoreResult<u64> {
        let Access { id, former_up_to } = self.access(actor.user, conv, true).await?;
        if seq == 0 {
            return Err(CoreError::invalid("no message with seq 0"));
        }
        // A former member's read stops at the last message they can see,
        // whatever seq they name: the answer tells nothing of later ones.
        let seq = match former_up_to {
            // Past it, only a seq that does not exist at all is refused
            // (PROTOCOL.md 2.4), as for a member.
            Some(up_to) if seq > up_to => {
                if seq > self.store.max_seq(conv).await? {
                    return Err(CoreError::invalid("no message with this seq"));
                }
                up_to
            }
            _ => seq,
        };
        let out = self
            .store
            .mark_read(actor.user, conv, seq, now_ms())
            .await?;
        if out.advanced {
            let frame = encode(&Receipt {
                ty: tag::Receipt,
                conv: Cow::Borrowed(conv),
                by: Cow::Borrowed(actor.user),
                delivered_seq: None,
                read_seq: Some(out.read_seq),
            });
            // 1:1: the peer and one's other devices; groups: one's other
            // devices (who read what in a group is asked with read_status).
            let users = match &id {
                ConvId::Dm { .. } => self.audience(&id).await,
                ConvId::Group(_) => vec![Arc::from(actor.user)],
            };
            self.fanout.push(Push {
                users,
                except: Some((actor.user.into(), actor.device.unwrap_or("").into())),
                out: Outbound::Frame(frame),
                inactive: None,
            });
        }
        Ok(out.read_seq)
    }

    pub async fn sync(
        &self,
        user: &str,
        since: Option<i64>,
        limit: Option<u64>,
    ) -> CoreResult<ConvList> {
        let limit = match limit {
            None => SYNC_DEFAULT,
            Some(l) if (1..=u64::from(SYNC_MAX)).contains(&l) => l as u32,
            Some(_) => return Err(CoreError::invalid("limit must be 1-1000")),
        };
        Ok(self
            .store
            .conversations(user, since.unwrap_or(0), limit)
            .await?)
    }

    pub async fn history(
        &self,
        user: &str,
        conv: &str,
        before_seq: Option<u64>,
        after_seq: Option<u64>,
        limit: Option<u64>,
    ) -> CoreResult<Vec<StoredMessage>> {
        self.access(user, conv, true).await?;
        let limit = match limit {
            None => HISTORY_DEFAULT,
            Some(l) if (1..=u64::from(HISTORY_MAX)).contains(&l) => l as u32,
            Some(_) => return Err(CoreError::invalid("limit must be 1-500")),
        };
        Ok(self
            .store
            .history(
                user,
                conv,
                HistoryQuery {
                    before_seq,
                    after_seq,
                    limit,
                },
            )
            .await?)
    }

    /// Messages of `conv` strictly between `after` and `before` that `user`
    /// can see and did not send (a device's own sends are answered, not
    /// pushed), for a device whose pushes skipped them. At most 100; empty
    /// when the store does not answer within 2 s (the client then fills
    /// the gap from history itself).
    pub async fn gap_fill(
        &self,
        user: &str,
        conv: &str,
        after: u64,
        before: u64,
    ) -> Vec<StoredMessage> {
        metrics::counter!("tern_gap_fills_total").increment(1);
        let q = HistoryQuery {
            before_seq: Some(before),
            after_seq: Some(after),
            limit: u32::try_from(before - after - 1).unwrap_or(100).min(100),
        };
        match tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.store.history(user, conv, q),
        )
        .await
        {
            Ok(Ok(msgs)) => msgs.into_iter().filter(|m| m.from != user).collect(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, conv, "gap fill failed");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    pub async fn recall(&self, user: &str, conv: &str, seq: u64) -> CoreResult<()> {
        let id = self.access(user, conv, false).await?.id;
        let m = self
            .store
            .recall(conv, seq, user, self.cfg.recall_window_ms, now_ms())
            .await?;
        let frame = encode(&Recalled {
            ty: tag::Recalled,
            conv: Cow::Borrowed(conv),
            seq,
            msg_id: m.msg_id,
            by: Cow::Borrowed(user),
        });
        let users = self.audience(&id).await;
        self.fanout.push(Push {
            users,
            except: None,
            out: Outbound::Frame(frame),
            inactive: None,
        });
        Ok(())
    }

    pub async fn delete(&self, user: &str, conv: &str, seqs: &[u64]) -> CoreResult<()> {
        let access = self.access(user, conv, true).await?;
        if seqs.is_empty() || seqs.len() > LIST_MAX {
            return Err(CoreError::invalid("seqs must hold 1-1000 seqs"));
        }
        if let Some(up_to) = access.former_up_to {
            if let Some(seq) = seqs.iter().find(|s| **s > up_to) {
                return Err(CoreError::invalid(format!("no message with seq {seq}")));
            }
        }
        Ok(self.store.delete_for_user(user, conv, seqs).await?)
    }

    pub async fn typing(&self, user: &str, conv: &str) -> CoreResult<()> {
        let id = self.access(user, conv, false).await?.id;
        let users: Vec<Arc<str>> = match &id {
            ConvId::Dm { .. } => self.audience(&id).await,
            ConvId::Group(gid) => {
                let view = self.group_view(gid).await?;
                // Typing in a read-diffused group would be a storm of its
                // own: checked before the member list is copied.
                if view.size() > self.cfg.write_limit {
                    return Ok(());
                }
                view.members.to_vec()
            }
        };
        let users: Vec<Arc<str>> = users.into_iter().filter(|u| &**u != user).collect();
        if !users.is_empty() {
            let frame = encode(&Typing {
                ty: tag::Typing,
                conv: Cow::Borrowed(conv),
                user: Cow::Borrowed(user),
            });
            self.fanout.push(Push {
                users,
                except: None,
                out: Outbound::Frame(frame),
                inactive: None,
            });
        }
        Ok(())
    }

    pub async fn presence(&self, users: &[&str]) -> CoreResult<Vec<bool>> {
        if users.len() > LIST_MAX {
            return Err(CoreError::invalid("at most 1000 users per presence query"));
        }
        Ok(self.presence.online(users).await?)
    }

    // ----- groups -----

    /// Creates a group owned by `owner` with `members` (the owner need not
    /// be listed). Writes `group_created` and one `member_joined` per listed
    /// member, in order, in one transaction (all or nothing).
    pub async fn create_group(
        &self,
        owner: &str,
        name: &str,
        members: &[&str],
    ) -> CoreResult<Arc<GroupView>> {
        if name.is_empty() || name.chars().count() > 128 {
            return Err(CoreError::invalid("name must be 1-128 characters"));
        }
        let members = self.new_members(members, None).await?;
        if members.len() + 1 > self.cfg.max_group_size {
            return Err(CoreError::invalid(format!(
                "a group has at most {} members",
                self.cfg.max_group_size
            )));
        }
        self.check_group_cap(std::iter::once(owner).chain(members.iter().copied()))
            .await?;
        let gid = new_group_id();
        let mut jobs = Vec::with_capacity(members.len() + 1);
        let created = system_content("group_created", owner);
        let change = Some(MemberChange::Create {
            name: name.to_owned(),
        });
        jobs.push((
            group_message(
                self.cfg.write_limit,
                &gid,
                owner,
                "system",
                created,
                None,
                change,
            ),
            self.group_plan(&gid),
        ));
        for m in members.iter().filter(|m| **m != owner) {
            let change = Some(MemberChange::Join((*m).to_owned()));
            let content = system_content("member_joined", m);
            jobs.push((
                group_message(
                    self.cfg.write_limit,
                    &gid,
                    owner,
                    "system",
                    content,
                    None,
                    change,
                ),
                self.group_plan(&gid),
            ));
        }
        self.pipeline.append_unit(jobs).await?;
        self.group_view(&gid).await
    }

    fn group_plan(&self, gid: &str) -> PushPlan {
        PushPlan::Group {
            gid: gid.into(),
            except: None,
        }
    }

    /// Validates a list of users to add: at most 1000, all existing,
    /// duplicates and current members dropped.
    async fn new_members<'a>(
        &self,
        users: &[&'a str],
        view: Option<&GroupView>,
    ) -> CoreResult<Vec<&'a str>> {
        if users.len() > LIST_MAX {
            return Err(CoreError::invalid("at most 1000 users per call"));
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            if !seen.insert(*u) || view.is_some_and(|v| v.is_member(u)) {
                continue;
            }
            self.require_user(u).await?;
            out.push(*u);
        }
        Ok(out)
    }

    /// Refuses (`forbidden`) when any of `users` is already in the most
    /// groups one user may be in. Checked before the unit is written, so
    /// concurrent calls may each pass and overshoot the cap by the calls in
    /// flight: it bounds what one user's membership costs, not an exact quota.
    async fn check_group_cap<'a>(&self, users: impl Iterator<Item = &'a str>) -> CoreResult<()> {
        let cap = self.cfg.max_groups_per_user as u64;
        for u in users {
            if self.store.group_count(u).await? >= cap {
                return Err(CoreError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "{u} is in {cap} groups, the most one user may be in (groups.max_per_user)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The group, for one of its members.
    pub async fn group(&self, user: &str, gid: &str) -> CoreResult<Arc<GroupView>> {
        let view = self.group_view(gid).await?;
        if !view.is_member(user) {
            return Err(CoreError::new(
                ErrorCode::NotMember,
                "not a member of this group",
            ));
        }
        Ok(view)
    }

    /// Any member may add users; each gets a `member_joined` message. The
    /// call's additions commit in one transaction (all or nothing).
    pub async fn add_members(
        &self,
        actor: &str,
        gid: &str,
        users: &[&str],
    ) -> CoreResult<Arc<GroupView>> {
        let view = self.group(actor, gid).await?;
        let users = self.new_members(users, Some(&view)).await?;
        if view.size() + users.len() > self.cfg.max_group_size {
            return Err(CoreError::invalid(format!(
                "a group has at most {} members",
                self.cfg.max_group_size
            )));
        }
        self.check_group_cap(users.iter().copied()).await?;
        let jobs = users
            .iter()
            .map(|u| {
                let change = Some(MemberChange::Join((*u).to_owned()));
                let content = system_content("member_joined", u);
                (
                    group_message(
                        self.cfg.write_limit,
                        gid,
                        actor,
                        "system",
                        content,
                        None,
                        change,
                    ),
                    self.group_plan(gid),
                )
            })
            .collect();
        self.pipeline.append_unit(jobs).await?;
        self.group_view(gid).await
    }

    /// The owner removes anyone (`member_removed`); anyone removes
    /// themself (`member_left`).
    pub async fn remove_member(&self, actor: &str, gid: &str, user: &str) -> CoreResult<()> {
        let view = self.group(actor, gid).await?;
        let event = if actor == user {
            "member_left"
        } else if *view.owner == *actor {
            "member_removed"
        } else {
            return Err(CoreError::new(
                ErrorCode::Forbidden,
                "only the owner removes other members",
            ));
        };
        if !view.is_member(user) {
            return Err(CoreError::new(
                ErrorCode::NoSuchUser,
                "not a member of this group",
            ));
        }
        let change = Some(MemberChange::Leave(user.to_owned()));
        let content = system_content(event, user);
        let msg = group_message(
            self.cfg.write_limit,
            gid,
            actor,
            "system",
            content,
            None,
            change,
        );
        self.pipeline.append(msg, self.group_plan(gid)).await?;
        Ok(())
    }

    /// Who of a group's current members has read message `seq` (write-
    /// diffused groups only). Returns `(read, unread)`, leaving out the
    /// message's sender.
    pub async fn read_status(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
    ) -> CoreResult<(Vec<String>, Vec<String>)> {
        let id = self.access(user, conv, false).await?.id;
        let ConvId::Group(gid) = &id else {
            return Err(CoreError::invalid(
                "read_status is for group conversations; 1:1 has read receipts",
            ));
        };
        let view = self.group_view(gid).await?;
        if view.size() > self.cfg.write_limit {
            return Err(CoreError::invalid(format!(
                "read status is kept for groups of at most {} members",
                self.cfg.write_limit
            )));
        }
        // Looked up as stored: whether the asker deleted it changes nothing.
        let sender = match self.store.message(conv, seq).await? {
            Some(m) => m.from,
            None => return Err(CoreError::invalid("no such seq in this conversation")),
        };
        let (mut read, mut unread) = (Vec::new(), Vec::new());
        for (member, pos) in self.store.read_positions(conv).await? {
            if member == sender {
                continue;
            }
            if pos >= seq {
                read.push(member);
            } else {
                unread.push(member);
            }
        }
        Ok((read, unread))
    }

    // ----- live rooms -----

    /// Joins `conn` to a live room; `joined` is how many it is in already.
    pub async fn room_join(&self, conn: &Arc<Conn>, room: &str, joined: usize) -> CoreResult<()> {
        if !is_valid_name(room) {
            return Err(CoreError::invalid(
                "room must be 1-64 characters of A-Z a-z 0-9 _ . -",
            ));
        }
        if self.rooms.join(room, conn, joined)? && self.fanout.is_cluster() {
            if let Err(e) = self.presence.room_joined(room).await {
                self.rooms.leave(room, conn.id);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Returns whether the connection was in the room.
    pub async fn room_leave(&self, conn: &Conn, room: &str) -> bool {
        let (was, emptied) = self.rooms.leave(room, conn.id);
        if emptied && self.fanout.is_cluster() {
            if let Err(e) = self.presence.room_left(room).await {
                // The room's entry names a node without members: other
                // nodes send it frames it drops, until it expires.
                tracing::warn!(error = %e, room, "cannot record leaving a room");
            }
        }
        was
    }

    /// Broadcasts to the room's other members; nothing is stored.
    pub async fn room_send(&self, conn: &Conn, room: &str, content: &RawValue) -> CoreResult<()> {
        if content.get().len() > self.cfg.content_bytes {
            return Err(CoreError::new(
                ErrorCode::ContentTooLarge,
                format!("content is over {} bytes", self.cfg.content_bytes),
            ));
        }
        let frame = encode(&RoomMsg {
            ty: tag::RoomMsg,
            room: Cow::Borrowed(room),
            from: Cow::Borrowed(&conn.user),
            content: RawJson::borrowed(content),
            ts: now_ms(),
        });
        self.rooms.broadcast(room, conn, frame.clone())?;
        if self.fanout.is_cluster() {
            // Once to each other node with members; each fans out locally
            // under the same per-device cap.
            let nodes = self.presence.room_nodes(room).await?;
            self.fanout.to_nodes(
                &nodes,
                &Envelope::Room {
                    room: room.into(),
                    frame,
                },
            );
        }
        Ok(())
    }

    // ----- connections -----

    /// Registers an authenticated connection: replaces the same device's
    /// older connection (4009), on this node or another, and tells online
    /// friends when this is the user's first device.
    pub async fn connect(&self, conn: Arc<Conn>) -> CoreResult<()> {
        let user = conn.user.clone();
        let route = Route {
            node: self.fanout.node(),
            conn: conn.id,
        };
        let found = self.presence.connected(&user, &conn.device, route).await;
        let Registered { replaced, .. } = self.hub.register(conn.clone());
        if let Some(old) = replaced {
            old.kick(close::REPLACED);
        }
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                self.hub.unregister(&conn);
                return Err(e.into());
            }
        };
        if let Some(old) = found.replaced {
            if old.node != route.node {
                self.fanout.to_node(
                    old.node,
                    &Envelope::Kick {
                        user: user.clone(),
                        conn: old.conn,
                        code: close::REPLACED,
                    },
                );
            }
        }
        if found.first {
            self.announce_presence(&user, true).await;
        }
        Ok(())
    }

    /// Unregisters a connection that has ended.
    pub async fn disconnect(&self, conn: &Conn) {
        self.hub.unregister(conn);
        let route = Route {
            node: self.fanout.node(),
            conn: conn.id,
        };
        match self
            .presence
            .disconnected(&conn.user, &conn.device, route)
            .await
        {
            Ok(true) => self.announce_presence(&conn.user, false).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "presence: cannot record a disconnect"),
        }
    }

    async fn announce_presence(&self, user: &str, online: bool) {
        let friends = match self.store.friends(user).await {
            Ok(l) => l.friends,
            Err(e) => {
                tracing::warn!(error = %e, "presence: cannot load friends");
                return;
            }
        };
        if friends.is_empty() {
            return;
        }
        let names: Vec<&str> = friends.iter().map(String::as_str).collect();
        let flags = match self.presence.online(&names).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "presence: cannot look up friends");
                return;
            }
        };
        let users: Vec<Arc<str>> = names
            .iter()
            .zip(flags)
            .filter(|(_, on)| *on)
            .map(|(u, _)| Arc::from(*u))
            .collect();
        if users.is_empty() {
            return;
        }
        let frame = encode(&PresencePush {
            ty: tag::Presence,
            user: Cow::Borrowed(user),
            online,
            ts: now_ms(),
        });
        self.fanout.push(Push {
            users,
            except: None,
            out: Outbound::Frame(frame),
            inactive: None,
        });
    }

    /// The user's queued offline messages.
    pub async fn offline(&self, user: &str) -> CoreResult<OfflineBatch> {
        self.acks.flush_user(user).await;
        let cap = u32::try_from(self.cfg.offline_cap).unwrap_or(u32::MAX);
        Ok(self.store.offline_fetch(user, cap).await?)
    }

    /// Each backend's state: the store, then the bus and presence.
    pub async fn health(&self) -> Health {
        let (store, bus, presence) = tokio::join!(
            self.store.health(),
            self.bus.health(),
            self.presence.health()
        );
        Health {
            store: store.map_err(|e| e.to_string()),
            bus: bus.map_err(|e| e.to_string()),
            presence: presence.map_err(|e| e.to_string()),
        }
    }

    /// This node's number.
    pub fn node(&self) -> u16 {
        self.fanout.node()
    }

    pub fn is_cluster(&self) -> bool {
        self.fanout.is_cluster()
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
    pub bus: Result<(), String>,
    pub presence: Result<(), String>,
}

impl Health {
    pub fn ok(&self) -> bool {
        self.store.is_ok() && self.bus.is_ok() && self.presence.is_ok()
    }
}

fn except_of(actor: Actor<'_>) -> Option<(Arc<str>, Arc<str>)> {
    actor.device.map(|d| (Arc::from(actor.user), Arc::from(d)))
}

fn send_ok(appended: Appended) -> CoreResult<SendOk> {
    let duplicate = matches!(appended, Appended::Duplicate(_));
    match appended {
        Appended::New(m) | Appended::Duplicate(m) => Ok(SendOk {
            msg_id: m.msg_id,
            conv: m.conv,
            seq: m.seq,
            ts: m.ts,
            duplicate,
        }),
        Appended::Refused(r) => Err(StoreError::from(r).into()),
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
    }
}

/// Appends the group sends other nodes forward to this one, the owner of
/// their conversation, through this node's pipeline. The sending node
/// checked the request and the sender's membership; the store checks
/// membership again as it appends.
struct Owner {
    pipeline: Pipeline,
    write_limit: usize,
}

#[async_trait::async_trait]
impl ForwardHandler for Owner {
    async fn handle(&self, req: Forward) -> ForwardAnswer {
        metrics::counter!("tern_forwards_served_total").increment(1);
        let msg = group_message(
            self.write_limit,
            &req.gid,
            &req.from,
            &req.kind,
            req.content,
            Some(&req.client_msg_id),
            None,
        );
        let except = req
            .device
            .map(|d| (Arc::from(req.from.as_str()), Arc::from(d.as_str())));
        let plan = PushPlan::Group {
            gid: req.gid.as_str().into(),
            except,
        };
        match self.pipeline.append(msg, plan).await.and_then(send_ok) {
            Ok(ok) => ForwardAnswer::Ok {
                msg_id: ok.msg_id,
                conv: ok.conv,
                seq: ok.seq,
                ts: ok.ts,
                duplicate: ok.duplicate,
            },
            Err(e) => ForwardAnswer::Err {
                code: e.code.as_str().to_owned(),
                message: e.message.into_owned(),
            },
        }
    }
}

/// `{"event":...,"user":...}`, the content of membership messages.
fn system_content(event: &str, user: &str) -> String {
    serde_json::json!({"event": event, "user": user}).to_string()
}

/// 12 characters of [a-z0-9]: about 62 bits, unique enough not to collide.
fn new_group_id() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Encodes a server frame. Serializing these plain structs cannot fail.
pub fn encode<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}
