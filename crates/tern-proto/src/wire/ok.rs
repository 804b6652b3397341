//! Replies over WebSocket: the `ok` frame around each command's answer
//! body, `error` and `pong`.

use super::{decimal, tag, MsgView};
use crate::codes::ErrorCode;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// `{"type":"ok","id":...,<the fields of body>}`: the reply to a request
/// that carries an `id` (and to `auth`, with or without one).
///
/// Deserializes without buffering the body (as `#[serde(flatten)]` would),
/// so a body holding raw content ([`HistoryAnswer`], [`SyncAnswer`])
/// deserializes too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OkFrame<'a, T> {
    #[serde(rename = "type")]
    pub ty: tag::Ok,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub body: T,
}

impl<'a, T> OkFrame<'a, T> {
    pub fn new(id: Option<&'a str>, body: T) -> Self {
        OkFrame {
            ty: tag::Ok,
            id: id.map(Cow::Borrowed),
            body,
        }
    }
}

impl<'de, 'a, T: Deserialize<'de>> Deserialize<'de> for OkFrame<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OkVisitor(PhantomData))
    }
}

struct OkVisitor<'a, T>(PhantomData<(Cow<'a, str>, T)>);

impl<'de, 'a, T: Deserialize<'de>> Visitor<'de> for OkVisitor<'a, T> {
    type Value = OkFrame<'a, T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ok frame")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut head = OkHead {
            map,
            ty: false,
            id: None,
        };
        let body = T::deserialize(de::value::MapAccessDeserializer::new(&mut head))?;
        if !head.ty {
            return Err(de::Error::missing_field("type"));
        }
        Ok(OkFrame {
            ty: tag::Ok,
            id: head.id,
            body,
        })
    }
}

/// The frame's map as the body sees it: `type` and `id` taken out, every
/// other entry passed through as it comes (raw values keep working).
struct OkHead<'a, A> {
    map: A,
    ty: bool,
    id: Option<Cow<'a, str>>,
}

/// A map key, borrowed from the input when it has no escapes.
#[derive(Deserialize)]
struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de, 'a, A: MapAccess<'de>> MapAccess<'de> for &mut OkHead<'a, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(Borrowed(key)) = self.map.next_key::<Borrowed<'de>>()? else {
                return Ok(None);
            };
            match &*key {
                "type" => {
                    self.map.next_value::<tag::Ok>()?;
                    self.ty = true;
                }
                "id" => self.id = self.map.next_value::<Option<String>>()?.map(Cow::Owned),
                _ => {
                    let key: de::value::CowStrDeserializer<'_, A::Error> = key.into_deserializer();
                    return seed.deserialize(key).map(Some);
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// The body of an `ok` with no fields: `{"type":"ok","id":"4"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The `ok` to `auth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthAnswer<'a> {
    pub user: Cow<'a, str>,
    pub device: Cow<'a, str>,
    pub ts: i64,
}

/// The answer to `send` (WebSocket `ok`) and `POST /v1/messages`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAnswer<'a> {
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, pattern = "^[0-9]{1,20}$", example = "7311845012345678901")
    )]
    #[serde(with = "decimal")]
    pub msg_id: u64,
    pub conv: Cow<'a, str>,
    pub seq: u64,
    pub ts: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// 5.1: the answer to `edit` and `PATCH
/// /v1/conversations/{conv}/messages/{seq}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditAnswer<'a> {
    pub conv: Cow<'a, str>,
    pub seq: u64,
    pub edited_at: i64,
}

/// The `ok` to `read`: the read position now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAnswer {
    pub read_seq: u64,
}

/// One conversation of a [`SyncAnswer`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvView<'a> {
    pub conv: Cow<'a, str>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<Cow<'a, str>>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Cow<'a, str>>,
    pub max_seq: u64,
    pub read_seq: u64,
    pub unread: u64,
    /// `null` when the conversation has no message.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last: Option<MsgView<'a>>,
    pub updated_at: i64,
    /// 1:1 only (an addition): how far the other party's devices have
    /// received and read, the positions their `receipt` pushes carry.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_delivered_seq: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_read_seq: Option<u64>,
    /// 5.1, groups: a message above the read position mentions the user.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mentioned: bool,
    /// 5.3: the caller's settings of the conversation; muted until then
    /// (ms), 0 when not muted.
    #[serde(default)]
    pub muted_until: i64,
    #[serde(default)]
    pub pinned: bool,
    /// 5.6: the conversation's retention in days, shared by its members;
    /// left out when none is set (the server's default applies).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retention_days: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The answer to `sync` (WebSocket `ok`) and `GET /v1/conversations`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAnswer<'a> {
    pub convs: Vec<ConvView<'a>>,
    pub total_unread: u64,
}

/// A page of history: the answer to `history` (WebSocket `ok`) and
/// `GET /v1/conversations/{conv}/messages`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryAnswer<'a> {
    pub msgs: Vec<MsgView<'a>>,
}

/// 5.2: the answer to `search` (WebSocket `ok`) and `GET /v1/search`:
/// the matching messages, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchAnswer<'a> {
    pub hits: Vec<MsgView<'a>>,
}

/// The `ok` to `presence`: each user asked about, online or not (in user
/// id order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceAnswer<'a> {
    pub online: BTreeMap<Cow<'a, str>, bool>,
}

/// The `ok` to `read_status`: who in a group has read up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadStatusAnswer<'a> {
    pub conv: Cow<'a, str>,
    pub seq: u64,
    pub read: Vec<Cow<'a, str>>,
    pub unread: Vec<Cow<'a, str>>,
}

/// `{"type":"error","id":...,"code":...,"message":...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Error,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    pub code: Cow<'a, str>,
    pub message: Cow<'a, str>,
}

impl<'a> ErrorFrame<'a> {
    pub fn new(id: Option<&'a str>, code: ErrorCode, message: &'a str) -> Self {
        ErrorFrame {
            ty: tag::Error,
            id: id.map(Cow::Borrowed),
            code: Cow::Borrowed(code.as_str()),
            message: Cow::Borrowed(message),
        }
    }

    /// The code, if this version knows it.
    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code)
    }
}

/// `{"type":"pong","id":...}`, the answer to `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong<'a> {
    #[serde(rename = "type")]
    pub ty: tag::Pong,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
}

impl<'a> Pong<'a> {
    pub fn new(id: Option<&'a str>) -> Self {
        Pong {
            ty: tag::Pong,
            id: id.map(Cow::Borrowed),
        }
    }
}
