//! One type per client command (PROTOCOL.md 2 and 3). The server turns a
//! decoded frame into a [`Request`], each command with its required fields
//! as plain types (a missing one is an `invalid` error that names it);
//! clients build the same types and write them with [`Request::into_frame`]
//! or [`Request::to_json`]. HTTP routes that carry the same command build
//! the same type from their path, query and body; [`Request::http`] is the
//! call a client makes for it.
//!
//! Some commands are HTTP-only: [`UserGet`], [`SessionEnd`],
//! [`Request::Friends`], [`FriendAdd`], [`FriendDelete`], [`GroupCreate`],
//! [`GroupGet`], [`MembersAdd`] and [`MemberRemove`]. They have no frame
//! type ([`Request::ty`] is `None`), so [`Request::parse`] never yields
//! them: a WebSocket frame naming one is an unknown type like any other.
//!
//! One concern, whatever its length: the request types and their parsing
//! from a frame; the HTTP call of each is in `http.rs`.

use crate::frames::{ClientFrame, Decoded, FrameType};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

mod http;

pub use http::{percent, HttpCall};

/// `auth`: the first frame of a connection without `?token=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth<'a> {
    pub token: Cow<'a, str>,
    pub device: Option<Cow<'a, str>>,
}

/// `send` (and `POST /v1/messages`): exactly one of `to` and `group`, which
/// the core checks along with the other rules of a message.
#[derive(Debug, Clone)]
pub struct Send<'a> {
    pub to: Option<Cow<'a, str>>,
    pub group: Option<Cow<'a, str>>,
    pub client_msg_id: Cow<'a, str>,
    pub kind: Cow<'a, str>,
    pub content: &'a RawValue,
    /// 5.1: the seq of the message this one answers, in the same
    /// conversation.
    pub reply_to: Option<u64>,
    /// 5.1, groups only: members named, or `["@all"]`.
    pub mentions: Option<Vec<Cow<'a, str>>>,
    /// 5.6: send at this time (ms) rather than now. A scheduled send may
    /// leave out `client_msg_id` (then it is `""` here, and the server
    /// makes one up).
    pub at: Option<i64>,
}

/// `edit` (5.1, and `PATCH /v1/conversations/{conv}/messages/{seq}`): the
/// new content of one of the caller's messages.
#[derive(Debug, Clone)]
pub struct Edit<'a> {
    pub conv: Cow<'a, str>,
    pub seq: u64,
    pub content: &'a RawValue,
}

/// `react` (5.1, and `PUT`/`DELETE
/// /v1/conversations/{conv}/messages/{seq}/reactions/{emoji}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct React<'a> {
    pub conv: Cow<'a, str>,
    pub seq: u64,
    pub emoji: Cow<'a, str>,
    pub on: bool,
}

/// A position in a conversation: `ack`, `read`, `recall`, `read_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvSeq<'a> {
    pub conv: Cow<'a, str>,
    pub seq: u64,
}

/// `sync` (and `GET /v1/conversations`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sync {
    pub since: Option<i64>,
    pub limit: Option<u64>,
}

/// `history` (and `GET /v1/conversations/{conv}/messages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History<'a> {
    pub conv: Cow<'a, str>,
    pub before_seq: Option<u64>,
    pub after_seq: Option<u64>,
    pub limit: Option<u64>,
}

/// `search` (and `GET /v1/search`), 5.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search<'a> {
    pub q: Cow<'a, str>,
    pub conv: Option<Cow<'a, str>>,
    pub limit: Option<u64>,
    pub before_ts: Option<i64>,
}

/// `delete`: hides messages from the caller's own history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete<'a> {
    pub conv: Cow<'a, str>,
    pub seqs: Vec<u64>,
}

/// `presence`: which of `users` are online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence<'a> {
    pub users: Vec<Cow<'a, str>>,
}

/// `typing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typing<'a> {
    pub conv: Cow<'a, str>,
}

/// `state`: foreground or background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub active: bool,
}

/// `join` and `leave` of a live room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room<'a> {
    pub room: Cow<'a, str>,
}

/// `room_send`: any JSON value, `null` included.
#[derive(Debug, Clone)]
pub struct RoomSend<'a> {
    pub room: Cow<'a, str>,
    pub content: &'a RawValue,
}

/// `GET /v1/users/{user}` (HTTP-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserGet<'a> {
    pub user: Cow<'a, str>,
}

/// `DELETE /v1/sessions` (HTTP-only): revokes `token` everywhere. Over
/// HTTP it is the bearer token of the call itself.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionEnd<'a> {
    pub token: Cow<'a, str>,
}

impl fmt::Debug for SessionEnd<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("SessionEnd")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// `PUT /v1/friends/{user}` (HTTP-only): asks, or accepts an incoming
/// request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendAdd<'a> {
    pub user: Cow<'a, str>,
}

/// `DELETE /v1/friends/{user}` (HTTP-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendDelete<'a> {
    pub user: Cow<'a, str>,
}

/// `POST /v1/groups` (HTTP-only); the fields are its body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupCreate<'a> {
    pub name: Cow<'a, str>,
    /// User ids besides the caller.
    pub members: Vec<Cow<'a, str>>,
}

/// `GET /v1/groups/{group}` (HTTP-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupGet<'a> {
    pub group: Cow<'a, str>,
}

/// `POST /v1/groups/{group}/members` (HTTP-only); `users` is its body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MembersAdd<'a> {
    #[serde(skip)]
    pub group: Cow<'a, str>,
    pub users: Vec<Cow<'a, str>>,
}

/// `DELETE /v1/groups/{group}/members/{user}` (HTTP-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRemove<'a> {
    pub group: Cow<'a, str>,
    pub user: Cow<'a, str>,
}

// 5.4 and blocks

/// `PATCH /v1/groups/{group}` (HTTP-only); the other fields are its body,
/// each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupUpdate<'a> {
    #[serde(skip)]
    pub group: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcement: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muted_all: Option<bool>,
}

/// A group and one of its members: `PUT`/`DELETE
/// /v1/groups/{group}/admins/{user}`, `DELETE .../mutes/{user}`
/// (HTTP-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember<'a> {
    pub group: Cow<'a, str>,
    pub user: Cow<'a, str>,
}

/// `PUT /v1/groups/{group}/mutes/{user}` (HTTP-only); `until` (ms) is its
/// body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MuteAdd<'a> {
    #[serde(skip)]
    pub group: Cow<'a, str>,
    #[serde(skip)]
    pub user: Cow<'a, str>,
    pub until: i64,
}

/// `DELETE /v1/groups/{group}` (HTTP-only): the owner dissolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDissolve<'a> {
    pub group: Cow<'a, str>,
}

/// `PUT`/`DELETE /v1/blocks/{user}` (HTTP-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block<'a> {
    pub user: Cow<'a, str>,
}

// 5.3 profiles, conversation settings, sessions

/// `PATCH /v1/users/me` (HTTP-only); the fields are its body, each
/// optional (`avatar` `""` clears it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProfileUpdate<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<Cow<'a, str>>,
}

/// `PUT /v1/conversations/{conv}/settings` (HTTP-only); the other fields
/// are its body, each optional (`muted_until` 0 unmutes).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConvSettingsSet<'a> {
    #[serde(skip)]
    pub conv: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<bool>,
    /// 5.6: the conversation's retention in days (shared by its
    /// members); 0 clears it (the body may also say `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// 5.6 `DELETE /v1/users/me` (HTTP-only): erases the caller's account.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountErase<'a> {
    pub password: Cow<'a, str>,
}

impl std::fmt::Debug for AccountErase<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is never printed.
        f.debug_struct("AccountErase").finish_non_exhaustive()
    }
}

/// `DELETE /v1/sessions/{session}` (HTTP-only): revokes one of the
/// caller's sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRevoke<'a> {
    pub session: Cow<'a, str>,
}

/// Every command a client may send: over WebSocket (those with a frame
/// type) or over HTTP.
#[derive(Debug, Clone)]
pub enum Request<'a> {
    Auth(Auth<'a>),
    Ping,
    Send(Send<'a>),
    Ack(ConvSeq<'a>),
    Read(ConvSeq<'a>),
    Sync(Sync),
    History(History<'a>),
    Recall(ConvSeq<'a>),
    Delete(Delete<'a>),
    Presence(Presence<'a>),
    Typing(Typing<'a>),
    State(State),
    Join(Room<'a>),
    Leave(Room<'a>),
    RoomSend(RoomSend<'a>),
    ReadStatus(ConvSeq<'a>),
    UserGet(UserGet<'a>),
    SessionEnd(SessionEnd<'a>),
    Friends,
    FriendAdd(FriendAdd<'a>),
    FriendDelete(FriendDelete<'a>),
    GroupCreate(GroupCreate<'a>),
    GroupGet(GroupGet<'a>),
    MembersAdd(MembersAdd<'a>),
    MemberRemove(MemberRemove<'a>),
    // 5.4 and blocks
    GroupUpdate(GroupUpdate<'a>),
    GroupDissolve(GroupDissolve<'a>),
    AdminAdd(GroupMember<'a>),
    AdminRemove(GroupMember<'a>),
    MuteAdd(MuteAdd<'a>),
    MuteRemove(GroupMember<'a>),
    Blocks,
    BlockAdd(Block<'a>),
    BlockRemove(Block<'a>),
    // 5.1
    Edit(Edit<'a>),
    React(React<'a>),
    // 5.3 profiles, conversation settings, sessions
    ProfileUpdate(ProfileUpdate<'a>),
    ConvSettingsSet(ConvSettingsSet<'a>),
    /// `GET /v1/sessions` (HTTP-only).
    Sessions,
    SessionRevoke(SessionRevoke<'a>),
    /// `DELETE /v1/sessions?all=true` (HTTP-only): every session of the
    /// caller.
    SessionsRevokeAll,
    // 5.2
    Search(Search<'a>),
    // 5.6
    AccountErase(AccountErase<'a>),
}

/// A required field that a request lacks: `invalid`, "`field` is required".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing(pub &'static str);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is required", self.0)
    }
}

impl std::error::Error for Missing {}

fn need<T>(v: Option<T>, field: &'static str) -> Result<T, Missing> {
    v.ok_or(Missing(field))
}

/// 5.6: the `client_msg_id` of a send; a scheduled one (`at` given)
/// without it gets `""`, which the server replaces with one of its own.
pub fn scheduled_cmid(cmid: Option<Cow<'_, str>>, at: Option<i64>) -> Option<Cow<'_, str>> {
    match (cmid, at) {
        (None, Some(_)) => Some(Cow::Borrowed("")),
        (c, _) => c,
    }
}

impl<'a> Send<'a> {
    /// A `send` from its optional parts, checked in the order a client
    /// reads the errors: the deduplication key, the kind, the content.
    pub fn from_parts(
        to: Option<Cow<'a, str>>,
        group: Option<Cow<'a, str>>,
        client_msg_id: Option<Cow<'a, str>>,
        kind: Option<Cow<'a, str>>,
        content: Option<&'a RawValue>,
    ) -> Result<Self, Missing> {
        Ok(Send {
            client_msg_id: need(client_msg_id, "client_msg_id")?,
            kind: need(kind, "kind")?,
            content: need(content, "content")?,
            to,
            group,
            reply_to: None,
            mentions: None,
            at: None,
        })
    }
}

impl<'a> Request<'a> {
    /// The request of a decoded frame.
    pub fn parse(d: Decoded<'a>) -> Result<Self, Missing> {
        let f = d.frame;
        let conv_seq = |conv: Option<Cow<'a, str>>, seq| {
            Ok(ConvSeq {
                conv: need(conv, "conv")?,
                seq: need(seq, "seq")?,
            })
        };
        Ok(match d.ty {
            FrameType::Auth => Request::Auth(Auth {
                token: need(f.token, "token")?,
                device: f.device,
            }),
            FrameType::Ping => Request::Ping,
            FrameType::Send => Request::Send(Send {
                reply_to: f.reply_to,
                mentions: f.mentions,
                at: f.at,
                ..Send::from_parts(
                    f.to,
                    f.group,
                    scheduled_cmid(f.client_msg_id, f.at),
                    f.kind,
                    f.content,
                )?
            }),
            FrameType::Ack => Request::Ack(conv_seq(f.conv, f.seq)?),
            FrameType::Read => Request::Read(conv_seq(f.conv, f.seq)?),
            FrameType::Sync => Request::Sync(Sync {
                since: f.since,
                limit: f.limit,
            }),
            FrameType::History => Request::History(History {
                conv: need(f.conv, "conv")?,
                before_seq: f.before_seq,
                after_seq: f.after_seq,
                limit: f.limit,
            }),
            FrameType::Recall => Request::Recall(conv_seq(f.conv, f.seq)?),
            FrameType::Delete => Request::Delete(Delete {
                conv: need(f.conv, "conv")?,
                seqs: need(f.seqs, "seqs")?,
            }),
            FrameType::Presence => Request::Presence(Presence {
                users: need(f.users, "users")?,
            }),
            FrameType::Typing => Request::Typing(Typing {
                conv: need(f.conv, "conv")?,
            }),
            FrameType::State => Request::State(State {
                active: need(f.active, "active")?,
            }),
            FrameType::Join => Request::Join(Room {
                room: need(f.room, "room")?,
            }),
            FrameType::Leave => Request::Leave(Room {
                room: need(f.room, "room")?,
            }),
            FrameType::RoomSend => Request::RoomSend(RoomSend {
                room: need(f.room, "room")?,
                content: need(f.content, "content")?,
            }),
            FrameType::ReadStatus => Request::ReadStatus(conv_seq(f.conv, f.seq)?),
            FrameType::Edit => Request::Edit(Edit {
                conv: need(f.conv, "conv")?,
                seq: need(f.seq, "seq")?,
                content: need(f.content, "content")?,
            }),
            FrameType::React => Request::React(React {
                conv: need(f.conv, "conv")?,
                seq: need(f.seq, "seq")?,
                emoji: need(f.emoji, "emoji")?,
                on: need(f.on, "on")?,
            }),
            FrameType::Search => Request::Search(Search {
                q: need(f.q, "q")?,
                conv: f.conv,
                limit: f.limit,
                before_ts: f.before_ts,
            }),
        })
    }

    /// The frame's `type`; `None` for an HTTP-only command.
    pub fn ty(&self) -> Option<FrameType> {
        Some(match self {
            Request::Auth(_) => FrameType::Auth,
            Request::Ping => FrameType::Ping,
            Request::Send(_) => FrameType::Send,
            Request::Ack(_) => FrameType::Ack,
            Request::Read(_) => FrameType::Read,
            Request::Sync(_) => FrameType::Sync,
            Request::History(_) => FrameType::History,
            Request::Recall(_) => FrameType::Recall,
            Request::Delete(_) => FrameType::Delete,
            Request::Presence(_) => FrameType::Presence,
            Request::Typing(_) => FrameType::Typing,
            Request::State(_) => FrameType::State,
            Request::Join(_) => FrameType::Join,
            Request::Leave(_) => FrameType::Leave,
            Request::RoomSend(_) => FrameType::RoomSend,
            Request::ReadStatus(_) => FrameType::ReadStatus,
            Request::Edit(_) => FrameType::Edit,
            Request::React(_) => FrameType::React,
            Request::Search(_) => FrameType::Search,
            Request::UserGet(_)
            | Request::SessionEnd(_)
            | Request::Friends
            | Request::FriendAdd(_)
            | Request::FriendDelete(_)
            | Request::GroupCreate(_)
            | Request::GroupGet(_)
            | Request::MembersAdd(_)
            | Request::MemberRemove(_) => return None,
            // 5.4 and blocks
            Request::GroupUpdate(_)
            | Request::GroupDissolve(_)
            | Request::AdminAdd(_)
            | Request::AdminRemove(_)
            | Request::MuteAdd(_)
            | Request::MuteRemove(_)
            | Request::Blocks
            | Request::BlockAdd(_)
            | Request::BlockRemove(_) => return None,
            // 5.3
            Request::ProfileUpdate(_)
            | Request::ConvSettingsSet(_)
            | Request::Sessions
            | Request::SessionRevoke(_)
            | Request::SessionsRevokeAll => return None,
            // 5.6
            Request::AccountErase(_) => return None,
        })
    }

    /// The frame that carries this request, with `id` if given: what a
    /// client writes (serialize it; absent fields are left out). An
    /// HTTP-only command has no frame: it gives one without `type`, which
    /// a server refuses.
    pub fn into_frame(self, id: Option<Cow<'a, str>>) -> ClientFrame<'a> {
        let mut f = ClientFrame {
            ty: self.ty().map(|t| Cow::Borrowed(t.as_str())),
            id,
            ..ClientFrame::default()
        };
        match self {
            Request::Auth(a) => {
                f.token = Some(a.token);
                f.device = a.device;
            }
            Request::Ping => {}
            Request::Send(s) => {
                f.to = s.to;
                f.group = s.group;
                f.client_msg_id = Some(s.client_msg_id);
                f.kind = Some(s.kind);
                f.content = Some(s.content);
                f.reply_to = s.reply_to;
                f.mentions = s.mentions;
                f.at = s.at;
                if s.at.is_some() && f.client_msg_id.as_deref() == Some("") {
                    f.client_msg_id = None;
                }
            }
            Request::Edit(e) => {
                f.conv = Some(e.conv);
                f.seq = Some(e.seq);
                f.content = Some(e.content);
            }
            Request::React(r) => {
                f.conv = Some(r.conv);
                f.seq = Some(r.seq);
                f.emoji = Some(r.emoji);
                f.on = Some(r.on);
            }
            Request::Ack(p) | Request::Read(p) | Request::Recall(p) | Request::ReadStatus(p) => {
                f.conv = Some(p.conv);
                f.seq = Some(p.seq);
            }
            Request::Sync(s) => {
                f.since = s.since;
                f.limit = s.limit;
            }
            Request::History(h) => {
                f.conv = Some(h.conv);
                f.before_seq = h.before_seq;
                f.after_seq = h.after_seq;
                f.limit = h.limit;
            }
            Request::Delete(d) => {
                f.conv = Some(d.conv);
                f.seqs = Some(d.seqs);
            }
            Request::Search(s) => {
                f.q = Some(s.q);
                f.conv = s.conv;
                f.limit = s.limit;
                f.before_ts = s.before_ts;
            }
            Request::Presence(p) => f.users = Some(p.users),
            Request::Typing(t) => f.conv = Some(t.conv),
            Request::State(s) => f.active = Some(s.active),
            Request::Join(r) | Request::Leave(r) => f.room = Some(r.room),
            Request::RoomSend(r) => {
                f.room = Some(r.room);
                f.content = Some(r.content);
            }
            Request::UserGet(_)
            | Request::SessionEnd(_)
            | Request::Friends
            | Request::FriendAdd(_)
            | Request::FriendDelete(_)
            | Request::GroupCreate(_)
            | Request::GroupGet(_)
            | Request::MembersAdd(_)
            | Request::MemberRemove(_) => {}
            // 5.4 and blocks
            Request::GroupUpdate(_)
            | Request::GroupDissolve(_)
            | Request::AdminAdd(_)
            | Request::AdminRemove(_)
            | Request::MuteAdd(_)
            | Request::MuteRemove(_)
            | Request::Blocks
            | Request::BlockAdd(_)
            | Request::BlockRemove(_) => {}
            // 5.3
            Request::ProfileUpdate(_)
            | Request::ConvSettingsSet(_)
            | Request::Sessions
            | Request::SessionRevoke(_)
            | Request::SessionsRevokeAll
            | Request::AccountErase(_) => {}
        }
        f
    }

    /// The frame as JSON text, with `id` if given.
    pub fn to_json(&self, id: Option<&str>) -> String {
        let frame = self.clone().into_frame(id.map(Cow::Borrowed));
        serde_json::to_string(&frame).expect("a request frame serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::decode;

    fn parse(text: &str) -> Result<Request<'_>, Missing> {
        Request::parse(decode(text).unwrap())
    }

    #[test]
    fn a_missing_field_is_named() {
        let e = parse(r#"{"type":"ack","conv":"dm:a:b"}"#).unwrap_err();
        assert_eq!(e.to_string(), "seq is required");
        let e = parse(r#"{"type":"send","to":"b","client_msg_id":"c"}"#).unwrap_err();
        assert_eq!(e.to_string(), "kind is required");
        let e = parse(r#"{"type":"room_send","room":"r"}"#).unwrap_err();
        assert_eq!(e, Missing("content"));
        assert!(matches!(
            parse(r#"{"type":"room_send","room":"r","content":null}"#),
            Ok(Request::RoomSend(_))
        ));
    }

    /// Every request written with `frame` parses back to itself.
    #[test]
    fn frames_round_trip() {
        let texts = [
            r#"{"type":"auth","token":"t","device":"d"}"#,
            r#"{"type":"ping","id":"1"}"#,
            r#"{"type":"send","to":"bob","client_msg_id":"c1","kind":"text","content":"hi"}"#,
            r#"{"type":"send","group":"g1","client_msg_id":"c1","kind":"custom","content":{"a":1}}"#,
            r#"{"type":"ack","conv":"dm:a:b","seq":3}"#,
            r#"{"type":"read","conv":"dm:a:b","seq":3}"#,
            r#"{"type":"sync","since":5,"limit":10}"#,
            r#"{"type":"history","conv":"g:g1","before_seq":9,"after_seq":2,"limit":5}"#,
            r#"{"type":"recall","conv":"dm:a:b","seq":1}"#,
            r#"{"type":"delete","conv":"dm:a:b","seqs":[1,2]}"#,
            r#"{"type":"presence","users":["a","b"]}"#,
            r#"{"type":"typing","conv":"dm:a:b"}"#,
            r#"{"type":"state","active":false}"#,
            r#"{"type":"join","room":"r"}"#,
            r#"{"type":"leave","room":"r"}"#,
            r#"{"type":"room_send","room":"r","content":[1]}"#,
            r#"{"type":"read_status","conv":"g:g1","seq":4}"#,
            r#"{"type":"send","group":"g1","client_msg_id":"c2","kind":"text","content":"hi","reply_to":3,"mentions":["bob"]}"#,
            r#"{"type":"edit","id":"5","conv":"dm:a:b","seq":2,"content":"new"}"#,
            r#"{"type":"react","conv":"dm:a:b","seq":2,"emoji":"👍","on":false}"#,
        ];
        for text in texts {
            let d = decode(text).unwrap();
            let id = d.frame.id.as_deref().map(str::to_owned);
            let req = Request::parse(d).unwrap();
            let back = req.to_json(id.as_deref());
            let want: serde_json::Value = serde_json::from_str(text).unwrap();
            let got: serde_json::Value = serde_json::from_str(&back).unwrap();
            assert_eq!(got, want, "{text}");
        }
    }

    pub(super) fn http_only() -> Vec<Request<'static>> {
        let c = Cow::Borrowed;
        vec![
            Request::UserGet(UserGet { user: c("bob") }),
            Request::SessionEnd(SessionEnd { token: c("t") }),
            Request::Friends,
            Request::FriendAdd(FriendAdd { user: c("bob") }),
            Request::FriendDelete(FriendDelete { user: c("bob") }),
            Request::GroupCreate(GroupCreate {
                name: c("team"),
                members: vec![c("bob")],
            }),
            Request::GroupGet(GroupGet { group: c("g1") }),
            Request::MembersAdd(MembersAdd {
                group: c("g1"),
                users: vec![c("bob"), c("carol")],
            }),
            Request::MemberRemove(MemberRemove {
                group: c("g1"),
                user: c("bob"),
            }),
        ]
    }

    /// HTTP-only commands have no frame type, and a frame that names one
    /// is an unknown type as before.
    #[test]
    fn http_only_commands_are_no_frames() {
        for req in http_only() {
            assert_eq!(req.ty(), None, "{req:?}");
            assert!(req.clone().into_frame(None).ty.is_none());
            assert!(req.http().is_some(), "{req:?}");
        }
        for ty in [
            "user_get",
            "session_end",
            "friends",
            "friend_add",
            "friend_delete",
            "group_create",
            "group_get",
            "members_add",
            "member_remove",
        ] {
            let e = decode(&format!(r#"{{"type":"{ty}","user":"b"}}"#)).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::UnknownType, "{ty}");
        }
    }

    #[test]
    fn the_token_is_not_printed() {
        let req = Request::SessionEnd(SessionEnd {
            token: Cow::Borrowed("secret-token"),
        });
        assert!(!format!("{req:?}").contains("secret-token"));
    }
}
