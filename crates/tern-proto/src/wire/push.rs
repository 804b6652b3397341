//! Pushes over WebSocket: `msg` with the [`MsgView`] every answer shares,
//! receipts, recalls, typing, presence, notify, room messages, `batch` and
//! `offline_done`.

use super::{decimal, tag, RawJson};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A message as clients see it, in `msg` pushes, `history` and `sync`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgView<'a> {
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, pattern = "^[0-9]{1,20}$", example = "7311845012345678901")
    )]
    #[serde(with = "decimal")]
    pub msg_id: u64,
    pub conv: Cow<'a, str>,
    pub seq: u64,
    pub from: Cow<'a, str>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Cow<'a, str>>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Cow<'a, str>>,
    pub kind: Cow<'a, str>,
    /// Left out for recalled messages.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<RawJson<'a>>,
    pub ts: i64,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recalled: bool,
    /// 5.1: the seq this message answers.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// 5.1: the members named, or `["@all"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<Cow<'a, str>>,
    /// 5.1: when the content was last edited (ms).
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// 5.1, history only: each emoji's count and (some of) its users.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reactions: BTreeMap<Cow<'a, str>, ReactionCount<'a>>,
}

/// One emoji of a message's `reactions`: how many reacted with it, and
/// the first of them (at most `limits.reaction_users_listed`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionCount<'a> {
    pub count: u64,
    pub users: Vec<Cow<'a, str>>,
}

/// 5.1: `{"type":"edited","conv","seq","msg_id","by","content","edited_at"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edited<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Edited,
    pub conv: Cow<'a, str>,
    pub seq: u64,
    #[serde(with = "decimal")]
    pub msg_id: u64,
    pub by: Cow<'a, str>,
    pub content: RawJson<'a>,
    pub edited_at: i64,
}

/// 5.1: `{"type":"reaction","conv","seq","user","emoji","on"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionPush<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Reaction,
    pub conv: Cow<'a, str>,
    pub seq: u64,
    pub user: Cow<'a, str>,
    pub emoji: Cow<'a, str>,
    pub on: bool,
}

/// `{"type":"msg","msg":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgPush<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Msg,
    pub msg: MsgView<'a>,
}

impl<'a> MsgPush<'a> {
    pub fn new(msg: MsgView<'a>) -> Self {
        MsgPush { ty: tag::Msg, msg }
    }
}

/// `{"type":"receipt","conv","by","delivered_seq"|"read_seq"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Receipt,
    pub conv: Cow<'a, str>,
    pub by: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_seq: Option<u64>,
}

/// `{"type":"recalled","conv","seq","msg_id","by"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recalled<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Recalled,
    pub conv: Cow<'a, str>,
    pub seq: u64,
    #[serde(with = "decimal")]
    pub msg_id: u64,
    pub by: Cow<'a, str>,
}

/// `{"type":"typing","conv","user"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Typing,
    pub conv: Cow<'a, str>,
    pub user: Cow<'a, str>,
}

/// `{"type":"presence","user","online","ts"}`: a friend came online or
/// went away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresencePush<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Presence,
    pub user: Cow<'a, str>,
    pub online: bool,
    pub ts: i64,
}

/// `{"type":"friend","user","status"}` (an addition): the friendship with
/// `user` changed, as the receiver's `GET /v1/friends` now lists it:
/// `incoming` (they asked), `outgoing` (you asked, from another device),
/// `friends` or `removed`. Sent to both sides' online devices, so every
/// list stays current without polling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendPush<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Friend,
    pub user: Cow<'a, str>,
    pub status: Cow<'a, str>,
}

/// `{"type":"profile","user","name","avatar"}` (5.3): a friend (or the
/// user itself, on its other devices) changed its profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfilePush<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Profile,
    pub user: Cow<'a, str>,
    pub name: Cow<'a, str>,
    /// `null` when not set.
    #[serde(default)]
    pub avatar: Option<Cow<'a, str>>,
}

/// `{"type":"conv_settings","conv","muted_until","pinned"}` (an
/// addition to 5.3): the user changed its settings of `conv`; sent to its
/// online devices, so each one's list stays current without a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvSettingsPush<'a> {
    #[serde(rename = "type")]
    pub ty: tag::ConvSettings,
    pub conv: Cow<'a, str>,
    pub muted_until: i64,
    pub pinned: bool,
}

/// `{"type":"notify","conv","max_seq"}`: a large group moved on (to
/// background devices, instead of the `msg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Notify,
    pub conv: Cow<'a, str>,
    pub max_seq: u64,
}

/// `{"type":"room_msg","room","from","content","ts"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMsg<'a> {
    #[serde(rename = "type")]
    pub ty: tag::RoomMsg,
    pub room: Cow<'a, str>,
    pub from: Cow<'a, str>,
    pub content: RawJson<'a>,
    pub ts: i64,
}

/// `{"type":"batch","frames":[...]}`: frames merged for one device. The
/// server writes it with [`write_batch`] from frames already encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Batch,
    pub frames: Vec<RawJson<'a>>,
}

/// Appends a [`Batch`] of encoded frames to `out`, byte for byte what
/// serializing it writes, without parsing the frames again.
pub fn write_batch<'f>(out: &mut Vec<u8>, frames: impl IntoIterator<Item = &'f [u8]>) {
    out.extend_from_slice(br#"{"type":"batch","frames":["#);
    for (i, f) in frames.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(f);
    }
    out.extend_from_slice(b"]}");
}

/// `{"type":"offline_done","count","truncated"}`, after the offline
/// messages pushed at `auth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineDone {
    #[serde(rename = "type")]
    pub ty: tag::OfflineDone,
    pub count: u64,
    pub truncated: bool,
}
