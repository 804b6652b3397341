//! The one place a command runs: [`execute`] takes a typed
//! [`Request`] of an authenticated caller, calls the core and returns its
//! [`Answer`]. The WebSocket loop writes the answer as an `ok` frame that
//! carries the request's `id`; the HTTP handlers of the same commands
//! write it as their JSON body. Adding a command: its type in
//! `tern_proto::request`, a core method, one arm here (and a route in
//! `http/` if it has one). HTTP-only commands (friends, groups, users,
//! ending a session) come only from their routes.

use crate::pending::Pending;
use crate::state::App;
use crate::views::{group_answer, history_answer, send_answer, sync_answer};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use std::borrow::Cow;
use std::sync::Arc;
use tern_core::groups::GroupView;
use tern_core::service::encode;
use tern_core::service::{SessionInfo, UserView};
use tern_core::store::{ConvList, ConvSettings, FriendLists, FriendStatus, StoredMessage};
use tern_core::{Actor, Conn, CoreError, SendOk};
use tern_proto::request::Request;
use tern_proto::wire::{
    BlocksList, ConvSettingsAnswer, EditAnswer, Empty, FriendAnswer, FriendEntry, FriendState,
    FriendsList, GroupAnswer, HistoryAnswer, OkFrame, Pong, PresenceAnswer, ReadAnswer,
    ReadStatusAnswer, SearchAnswer, SendAnswer, SessionView, SessionsList, SyncAnswer, UserInfo,
};

/// What a WebSocket caller brings besides its identity: the connection,
/// its pushes awaiting an ack, the rooms it is in.
pub(crate) struct Socket<'a> {
    pub conn: &'a Arc<Conn>,
    pub pending: &'a Mutex<Pending>,
    pub rooms: &'a Mutex<Vec<String>>,
}

/// A command's answer.
pub(crate) enum Answer {
    Pong,
    Empty,
    Sent(SendOk),
    Read(u64),
    /// The list, and the caller's settings that differ from the defaults
    /// (sorted by conv).
    Sync(ConvList, Vec<ConvSettings>),
    History(Vec<StoredMessage>),
    Presence(Vec<(String, bool)>),
    ReadStatus {
        conv: String,
        seq: u64,
        read: Vec<String>,
        unread: Vec<String>,
    },
    User(UserView),
    Friend(FriendStatus),
    /// Friends with their presence, and the pending requests.
    Friends(Vec<(String, bool)>, FriendLists),
    /// A group; `with_size` where the API gives its size (not on creation).
    Group {
        view: Arc<GroupView>,
        with_size: bool,
    },
    // 5.4 and blocks
    /// Whom the caller blocked.
    Blocked(Vec<String>),
    // 5.1
    Edited {
        conv: String,
        seq: u64,
        edited_at: i64,
    },
    // 5.3
    ConvSettings(ConvSettings),
    Sessions(Vec<SessionInfo>),
    // 5.2
    /// Search hits, newest first.
    Hits(Vec<StoredMessage>),
    // 5.6
    /// A send with `at`, kept until then.
    Scheduled(tern_core::service::ScheduledOk),
}

/// An answer as its wire body: one value that both the `ok` frame (its
/// fields flattened in) and the HTTP body serialize.
#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Empty(Empty),
    Sent(SendAnswer<'a>),
    Read(ReadAnswer),
    Sync(SyncAnswer<'a>),
    History(HistoryAnswer<'a>),
    Presence(PresenceAnswer<'a>),
    ReadStatus(ReadStatusAnswer<'a>),
    User(UserInfo<'a>),
    Friend(FriendAnswer),
    Friends(FriendsList<'a>),
    Group(GroupAnswer<'a>),
    // 5.4 and blocks
    Blocks(BlocksList<'a>),
    // 5.1
    Edited(EditAnswer<'a>),
    // 5.3
    ConvSettings(ConvSettingsAnswer),
    Sessions(SessionsList<'a>),
    // 5.2
    Hits(SearchAnswer<'a>),
    // 5.6
    Scheduled(tern_proto::wire::ScheduledAnswer<'a>),
}

/// Borrowed user ids.
fn names(users: &[String]) -> Vec<Cow<'_, str>> {
    users.iter().map(|u| Cow::Borrowed(&**u)).collect()
}

impl Answer {
    fn body(&self) -> Body<'_> {
        match self {
            Answer::Pong | Answer::Empty => Body::Empty(Empty {}),
            Answer::Sent(s) => Body::Sent(send_answer(s)),
            Answer::Read(read_seq) => Body::Read(ReadAnswer {
                read_seq: *read_seq,
            }),
            Answer::Sync(list, settings) => Body::Sync(sync_answer(list, settings)),
            Answer::History(msgs) => Body::History(history_answer(msgs)),
            Answer::Presence(online) => Body::Presence(PresenceAnswer {
                online: online
                    .iter()
                    .map(|(u, on)| (Cow::Borrowed(&**u), *on))
                    .collect(),
            }),
            Answer::ReadStatus {
                conv,
                seq,
                read,
                unread,
            } => Body::ReadStatus(ReadStatusAnswer {
                conv: Cow::Borrowed(conv),
                seq: *seq,
                read: read.iter().map(|u| Cow::Borrowed(&**u)).collect(),
                unread: unread.iter().map(|u| Cow::Borrowed(&**u)).collect(),
            }),
            Answer::User(u) => Body::User(UserInfo {
                avatar: u.avatar.as_deref().map(Cow::Borrowed),
                name: Cow::Borrowed(&u.name),
                online: u.online,
                user: Cow::Borrowed(&u.user),
                bot: u.bot,
            }),
            Answer::Friend(status) => Body::Friend(FriendAnswer {
                status: match status {
                    FriendStatus::Requested => FriendState::Requested,
                    FriendStatus::Friends => FriendState::Friends,
                },
            }),
            Answer::Friends(friends, lists) => Body::Friends(FriendsList {
                friends: friends
                    .iter()
                    .map(|(user, online)| FriendEntry {
                        online: *online,
                        user: Cow::Borrowed(user),
                    })
                    .collect(),
                incoming: names(&lists.incoming),
                outgoing: names(&lists.outgoing),
            }),
            Answer::Group { view, with_size } => Body::Group(group_answer(view, *with_size)),
            Answer::Blocked(users) => Body::Blocks(BlocksList {
                blocked: names(users),
            }),
            Answer::Edited {
                conv,
                seq,
                edited_at,
            } => Body::Edited(EditAnswer {
                conv: Cow::Borrowed(conv),
                seq: *seq,
                edited_at: *edited_at,
            }),
            Answer::ConvSettings(c) => Body::ConvSettings(ConvSettingsAnswer {
                muted_until: c.muted_until,
                pinned: c.pinned,
                retention_days: c.retention_days,
            }),
            Answer::Sessions(list) => Body::Sessions(SessionsList {
                sessions: list
                    .iter()
                    .map(|s| SessionView {
                        created_at: s.record.created_at,
                        current: s.current,
                        devices: names(&s.devices),
                        expires_at: s.record.expires_at,
                        last_seen: s.record.last_seen,
                        session: Cow::Borrowed(&s.record.session),
                    })
                    .collect(),
            }),
            Answer::Hits(msgs) => Body::Hits(SearchAnswer {
                hits: msgs.iter().map(tern_core::msg_view).collect(),
            }),
            Answer::Scheduled(s) => Body::Scheduled(tern_proto::wire::ScheduledAnswer {
                scheduled: Cow::Borrowed(&s.id),
                conv: Cow::Borrowed(&s.conv),
                at: s.at,
                client_msg_id: Cow::Borrowed(&s.client_msg_id),
            }),
        }
    }

    /// The frame that answers a WebSocket request: `pong` always, any other
    /// answer as `ok` only to a request that carries an `id`.
    pub fn frame(&self, id: Option<&str>) -> Option<Bytes> {
        if let Answer::Pong = self {
            return Some(encode(&Pong::new(id)));
        }
        Some(encode(&OkFrame::new(Some(id?), self.body())))
    }

    /// The JSON body that answers the same command over HTTP.
    pub fn json(&self) -> Response {
        Json(self.body()).into_response()
    }

    /// The JSON body with another status than 200 (`201 Created`).
    pub fn json_with(&self, status: StatusCode) -> Response {
        (status, Json(self.body())).into_response()
    }
}

/// Runs `req` for `actor`. `socket` is the caller's connection when it
/// came over WebSocket; the commands that act on a connection (`ack`,
/// `state`, rooms) need one, and no HTTP route carries them.
pub(crate) async fn execute(
    app: &App,
    actor: Actor<'_>,
    socket: Option<&Socket<'_>>,
    req: Request<'_>,
) -> Result<Answer, CoreError> {
    let user = actor.user;
    let core = &app.core;
    let on_socket = || socket.ok_or_else(|| CoreError::invalid("only over WebSocket"));
    Ok(match req {
        Request::Ping => Answer::Pong,
        Request::Auth(_) => return Err(CoreError::invalid("already authenticated")),
        Request::Send(s) if s.at.is_some() => Answer::Scheduled(core.schedule(actor, &s).await?),
        Request::Send(s) => Answer::Sent(core.send(actor, &s).await?),
        Request::Ack(p) => {
            on_socket()?.pending.lock().ack(&p.conv, p.seq);
            core.ack(user, &p.conv, p.seq).await?;
            Answer::Empty
        }
        Request::Read(p) => Answer::Read(core.read(actor, &p.conv, p.seq).await?),
        Request::Sync(s) => {
            let (list, settings) =
                tokio::try_join!(core.sync(user, s.since, s.limit), core.conv_settings(user))?;
            Answer::Sync(list, settings)
        }
        Request::History(h) => Answer::History(
            core.history(user, &h.conv, h.before_seq, h.after_seq, h.limit)
                .await?,
        ),
        Request::Search(q) => Answer::Hits(
            core.search(user, &q.q, q.conv.as_deref(), q.limit, q.before_ts)
                .await?,
        ),
        Request::Recall(p) => {
            core.recall(user, &p.conv, p.seq).await?;
            Answer::Empty
        }
        Request::Delete(d) => {
            core.delete(user, &d.conv, &d.seqs).await?;
            Answer::Empty
        }
        Request::Presence(p) => {
            let names: Vec<&str> = p.users.iter().map(|u| &**u).collect();
            let flags = core.presence_for(user, &names).await?;
            Answer::Presence(names.into_iter().map(str::to_owned).zip(flags).collect())
        }
        Request::Typing(t) => {
            core.typing(user, &t.conv).await?;
            Answer::Empty
        }
        Request::State(s) => {
            on_socket()?.conn.set_active(s.active);
            Answer::Empty
        }
        Request::Join(r) => {
            let sock = on_socket()?;
            // Frames of a connection are handled one at a time, so the
            // list cannot change between these two steps.
            let joined = sock.rooms.lock().len();
            core.room_join(sock.conn, &r.room, joined).await?;
            let mut rooms = sock.rooms.lock();
            if !rooms.iter().any(|x| *x == *r.room) {
                rooms.push(r.room.into_owned());
            }
            Answer::Empty
        }
        Request::Leave(r) => {
            let sock = on_socket()?;
            core.room_leave(sock.conn, &r.room).await;
            sock.rooms.lock().retain(|x| *x != *r.room);
            Answer::Empty
        }
        Request::RoomSend(r) => {
            core.room_send(on_socket()?.conn, &r.room, r.content)
                .await?;
            Answer::Empty
        }
        Request::ReadStatus(p) => {
            let (read, unread) = core.read_status(user, &p.conv, p.seq).await?;
            Answer::ReadStatus {
                conv: p.conv.into_owned(),
                seq: p.seq,
                read,
                unread,
            }
        }
        Request::UserGet(u) => Answer::User(core.user_view(user, &u.user).await?),
        Request::SessionEnd(s) => {
            core.revoke(&core.session(&s.token).await?).await?;
            Answer::Empty
        }
        Request::Friends => {
            let (friends, lists) = core.friends(user).await?;
            Answer::Friends(friends, lists)
        }
        Request::FriendAdd(f) => Answer::Friend(core.friend_request(user, &f.user).await?),
        Request::FriendDelete(f) => {
            core.friend_delete(user, &f.user).await?;
            Answer::Empty
        }
        Request::GroupCreate(g) => {
            let members: Vec<&str> = g.members.iter().map(|m| &**m).collect();
            Answer::Group {
                view: core.create_group(user, &g.name, &members).await?,
                with_size: false,
            }
        }
        Request::GroupGet(g) => Answer::Group {
            view: core.group(user, &g.group).await?,
            with_size: true,
        },
        Request::MembersAdd(m) => {
            let users: Vec<&str> = m.users.iter().map(|u| &**u).collect();
            Answer::Group {
                view: core.add_members(user, &m.group, &users).await?,
                with_size: true,
            }
        }
        Request::MemberRemove(m) => {
            core.remove_member(user, &m.group, &m.user).await?;
            Answer::Empty
        }
        // 5.4 and blocks
        Request::GroupUpdate(g) => {
            let up = tern_core::service::GroupUpdate {
                name: g.name.as_deref(),
                announcement: g.announcement.as_deref(),
                muted_all: g.muted_all,
            };
            Answer::Group {
                view: core.update_group(user, &g.group, &up).await?,
                with_size: true,
            }
        }
        Request::GroupDissolve(g) => {
            core.dissolve_group(user, &g.group).await?;
            Answer::Empty
        }
        Request::AdminAdd(m) => {
            core.set_admin(user, &m.group, &m.user, true).await?;
            Answer::Empty
        }
        Request::AdminRemove(m) => {
            core.set_admin(user, &m.group, &m.user, false).await?;
            Answer::Empty
        }
        Request::MuteAdd(m) => {
            core.set_mute(user, &m.group, &m.user, Some(m.until))
                .await?;
            Answer::Empty
        }
        Request::MuteRemove(m) => {
            core.set_mute(user, &m.group, &m.user, None).await?;
            Answer::Empty
        }
        Request::Blocks => Answer::Blocked(core.blocked(user).await?),
        Request::BlockAdd(b) => {
            core.block(user, &b.user).await?;
            Answer::Empty
        }
        Request::BlockRemove(b) => {
            core.unblock(user, &b.user).await?;
            Answer::Empty
        }
        // 5.1
        Request::Edit(e) => {
            let edited_at = core.edit(user, &e.conv, e.seq, e.content).await?;
            Answer::Edited {
                conv: e.conv.into_owned(),
                seq: e.seq,
                edited_at,
            }
        }
        Request::React(r) => {
            core.react(user, &r.conv, r.seq, &r.emoji, r.on).await?;
            Answer::Empty
        }
        // 5.3
        Request::ProfileUpdate(p) => Answer::User(
            core.update_profile(user, p.name.as_deref(), p.avatar.as_deref())
                .await?,
        ),
        Request::ConvSettingsSet(c) => Answer::ConvSettings(
            core.set_conv_settings(user, &c.conv, c.muted_until, c.pinned, c.retention_days)
                .await?,
        ),
        // 5.6
        Request::AccountErase(a) => {
            core.erase_account(user, &a.password).await?;
            Answer::Empty
        }
        Request::Sessions => Answer::Sessions(core.sessions(user, actor.session).await?),
        Request::SessionRevoke(r) => {
            core.revoke_session(user, &r.session).await?;
            Answer::Empty
        }
        Request::SessionsRevokeAll => {
            core.revoke_all_sessions(user).await?;
            Answer::Empty
        }
    })
}
