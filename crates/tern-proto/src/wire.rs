//! What the server sends: every WebSocket frame (PROTOCOL.md 2) and every
//! HTTP answer body (PROTOCOL.md 3), one type each, shared by the server,
//! clients and tests. Each serializes to exactly the bytes the server
//! writes and deserializes back from them.
//!
//! - Fields are declared in wire order; optional fields are left out when
//!   empty, as on the wire.
//! - Strings are `Cow`: the server serializes borrowed values without
//!   copying them; deserializing gives owned values, so every type is
//!   `DeserializeOwned` (`T<'static>`) and reads from any source.
//! - Message content is raw JSON ([`RawJson`]), written as stored, never
//!   re-encoded.
//! - `msg_id` is a decimal string on the wire ([`decimal`]).
//! - The `type` field is a unit type of [`tag`] that serializes as its name
//!   and accepts only that name.

use crate::codes::ErrorCode;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// A u64 as a decimal string (message ids, so JavaScript keeps every
/// digit); for `#[serde(with = "decimal")]`.
pub mod decimal {
    use serde::de::{self, Unexpected, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_str(DecimalVisitor)
    }

    struct DecimalVisitor;

    impl Visitor<'_> for DecimalVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a u64 as a decimal string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            // `parse` would also take a leading `+`.
            if v.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(n) = v.parse() {
                    return Ok(n);
                }
            }
            Err(E::invalid_value(Unexpected::Str(v), &self))
        }
    }
}

/// Raw JSON text, written out as it is: message and room content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson<'a>(pub Cow<'a, RawValue>);

impl<'a> RawJson<'a> {
    pub fn borrowed(v: &'a RawValue) -> Self {
        RawJson(Cow::Borrowed(v))
    }

    /// Checks that `json` is one JSON value.
    pub fn from_string(json: String) -> Result<RawJson<'static>, serde_json::Error> {
        RawValue::from_string(json).map(|v| RawJson(Cow::Owned(v)))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    pub fn into_owned(self) -> RawJson<'static> {
        RawJson(Cow::Owned(self.0.into_owned()))
    }
}

impl<'a> From<&'a RawValue> for RawJson<'a> {
    fn from(v: &'a RawValue) -> Self {
        RawJson::borrowed(v)
    }
}

impl From<Box<RawValue>> for RawJson<'static> {
    fn from(v: Box<RawValue>) -> Self {
        RawJson(Cow::Owned(v))
    }
}

/// Any JSON value: what the sender gave, passed through as it is.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for RawJson<'_> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .description(Some("any JSON value, stored and passed on as sent"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for RawJson<'_> {}

/// An error `code`: one of the names [`ErrorCode`] knows.
#[cfg(feature = "openapi")]
fn error_code_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
        .build()
}

/// Equal when the JSON text is the same, byte for byte.
impl PartialEq for RawJson<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson<'_> {}

/// The `type` of each server frame: unit types that serialize as the name
/// and deserialize only from it.
pub mod tag {
    use serde::de::{self, Unexpected, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::fmt;

    pub(crate) struct TagVisitor(pub(crate) &'static str);

    impl Visitor<'_> for TagVisitor {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "the string {:?}", self.0)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
            if v == self.0 {
                Result::Ok(())
            } else {
                Err(E::invalid_value(Unexpected::Str(v), &self))
            }
        }
    }

    macro_rules! tags {
        ($($name:ident = $s:literal;)*) => {$(
            #[doc = concat!("`\"type\":\"", $s, "\"`.")]
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
            pub struct $name;

            impl $name {
                pub const NAME: &'static str = $s;
            }

            impl Serialize for $name {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_str($s)
                }
            }

            impl<'de> Deserialize<'de> for $name {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    d.deserialize_str(TagVisitor($s)).map(|()| $name)
                }
            }
        )*

        /// The `type` of every frame the server sends.
        pub const ALL: [&str; [$($s),*].len()] = [$($s),*];
        };
    }

    tags! {
        Ok = "ok";
        Error = "error";
        Msg = "msg";
        Receipt = "receipt";
        Recalled = "recalled";
        Typing = "typing";
        Presence = "presence";
        Notify = "notify";
        RoomMsg = "room_msg";
        Batch = "batch";
        OfflineDone = "offline_done";
        Pong = "pong";
    }
}

// ---------------------------------------------------------------------
// WebSocket: replies

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

// ---------------------------------------------------------------------
// WebSocket: pushes

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

// ---------------------------------------------------------------------
// HTTP bodies. Fields in name order: that is how the server wrote them
// before they had types, and what it still writes.

/// An HTTP error: `{"code","message"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    #[cfg_attr(feature = "openapi", schema(schema_with = error_code_schema))]
    pub code: Cow<'a, str>,
    pub message: Cow<'a, str>,
}

impl<'a> ErrorBody<'a> {
    pub fn new(code: ErrorCode, message: &'a str) -> Self {
        ErrorBody {
            code: Cow::Borrowed(code.as_str()),
            message: Cow::Borrowed(message),
        }
    }

    /// The code, if this version knows it.
    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code)
    }
}

/// `POST /v1/users` -> 201.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated<'a> {
    pub user: Cow<'a, str>,
}

/// `POST /v1/sessions`: a token and when it expires (ms).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionToken<'a> {
    pub expires_at: i64,
    pub token: Cow<'a, str>,
}

/// `GET /v1/users/{user}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo<'a> {
    pub name: Cow<'a, str>,
    pub online: bool,
    pub user: Cow<'a, str>,
}

/// Where a friend request stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FriendState {
    /// Asked; the other side has not asked back.
    Requested,
    /// Both sides asked.
    Friends,
}

/// `PUT /v1/friends/{user}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendAnswer {
    pub status: FriendState,
}

/// One friend of a [`FriendsList`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendEntry<'a> {
    pub online: bool,
    pub user: Cow<'a, str>,
}

/// `GET /v1/friends`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendsList<'a> {
    pub friends: Vec<FriendEntry<'a>>,
    pub incoming: Vec<Cow<'a, str>>,
    pub outgoing: Vec<Cow<'a, str>>,
}

/// `POST /v1/groups` (without `size`), `GET /v1/groups/{group}` and
/// `POST /v1/groups/{group}/members` (with it).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAnswer<'a> {
    pub group: Cow<'a, str>,
    pub members: Vec<Cow<'a, str>>,
    pub name: Cow<'a, str>,
    pub owner: Cow<'a, str>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[cfg(test)]
mod tests {
    //! Each type: serialized to the exact text (PROTOCOL.md's examples, with
    //! their `...` filled in), and deserialized back to an equal value.

    use super::*;
    use std::fmt::Debug;

    fn round_trip<'a, T>(value: &T, json: &'a str)
    where
        T: Serialize + Deserialize<'a> + PartialEq + Debug,
    {
        assert_eq!(serde_json::to_string(value).unwrap(), json);
        let back: T = serde_json::from_str(json).unwrap();
        assert_eq!(&back, value);
    }

    fn raw(json: &str) -> RawJson<'static> {
        RawJson::from_string(json.to_owned()).unwrap()
    }

    fn c(s: &str) -> Cow<'_, str> {
        Cow::Borrowed(s)
    }

    fn msg() -> MsgView<'static> {
        MsgView {
            msg_id: 7311845012345678901,
            conv: c("dm:alice:bob"),
            seq: 41,
            from: c("alice"),
            to: Some(c("bob")),
            group: None,
            kind: c("text"),
            content: Some(raw(r#""hello""#)),
            ts: 1795000000000,
            client_msg_id: Some(c("6f1c")),
            recalled: false,
        }
    }

    #[test]
    fn ok_auth() {
        round_trip(
            &OkFrame::new(
                Some("1"),
                AuthAnswer {
                    user: c("alice"),
                    device: c("phone"),
                    ts: 1795000000000,
                },
            ),
            r#"{"type":"ok","id":"1","user":"alice","device":"phone","ts":1795000000000}"#,
        );
        // With the token on the upgrade URL: the same, without `id`.
        round_trip(
            &OkFrame::new(
                None,
                AuthAnswer {
                    user: c("alice"),
                    device: c("default"),
                    ts: 5,
                },
            ),
            r#"{"type":"ok","user":"alice","device":"default","ts":5}"#,
        );
    }

    #[test]
    fn ok_send() {
        let mut answer = SendAnswer {
            msg_id: 7311845012345678901,
            conv: c("dm:alice:bob"),
            seq: 41,
            ts: 1795000000000,
            duplicate: false,
        };
        round_trip(
            &OkFrame::new(Some("2"), answer.clone()),
            r#"{"type":"ok","id":"2","msg_id":"7311845012345678901","conv":"dm:alice:bob","seq":41,"ts":1795000000000}"#,
        );
        answer.duplicate = true;
        round_trip(
            &OkFrame::new(Some("2"), answer.clone()),
            r#"{"type":"ok","id":"2","msg_id":"7311845012345678901","conv":"dm:alice:bob","seq":41,"ts":1795000000000,"duplicate":true}"#,
        );
        // `POST /v1/messages`: the same fields, no `type` or `id`.
        round_trip(
            &answer,
            r#"{"msg_id":"7311845012345678901","conv":"dm:alice:bob","seq":41,"ts":1795000000000,"duplicate":true}"#,
        );
    }

    #[test]
    fn ok_empty_and_read() {
        round_trip(
            &OkFrame::new(Some("8"), Empty {}),
            r#"{"type":"ok","id":"8"}"#,
        );
        round_trip(
            &OkFrame::new(Some("4"), ReadAnswer { read_seq: 41 }),
            r#"{"type":"ok","id":"4","read_seq":41}"#,
        );
    }

    #[test]
    fn ok_sync() {
        let answer = SyncAnswer {
            convs: vec![
                ConvView {
                    conv: c("dm:alice:bob"),
                    peer: Some(c("bob")),
                    group: None,
                    max_seq: 41,
                    read_seq: 40,
                    unread: 1,
                    last: Some(msg()),
                    updated_at: 1795000000000,
                },
                ConvView {
                    conv: c("group:g8x2k"),
                    peer: None,
                    group: Some(c("g8x2k")),
                    max_seq: 0,
                    read_seq: 0,
                    unread: 0,
                    last: None,
                    updated_at: 1794000000000,
                },
            ],
            total_unread: 1,
        };
        let convs = concat!(
            r#""convs":[{"conv":"dm:alice:bob","peer":"bob","max_seq":41,"read_seq":40,"unread":1,"#,
            r#""last":{"msg_id":"7311845012345678901","conv":"dm:alice:bob","seq":41,"from":"alice","to":"bob","kind":"text","content":"hello","ts":1795000000000,"client_msg_id":"6f1c"},"#,
            r#""updated_at":1795000000000},"#,
            r#"{"conv":"group:g8x2k","group":"g8x2k","max_seq":0,"read_seq":0,"unread":0,"last":null,"updated_at":1794000000000}],"total_unread":1"#
        );
        round_trip(
            &OkFrame::new(Some("5"), answer.clone()),
            &format!(r#"{{"type":"ok","id":"5",{convs}}}"#),
        );
        round_trip(&answer, &format!("{{{convs}}}"));
    }

    #[test]
    fn ok_history() {
        let recalled = MsgView {
            msg_id: 7311845012345678902,
            conv: c("group:g8x2k"),
            seq: 42,
            from: c("alice"),
            to: None,
            group: Some(c("g8x2k")),
            kind: c("image"),
            content: None,
            ts: 1795000000001,
            client_msg_id: Some(c("a9e0")),
            recalled: true,
        };
        let image = MsgView {
            seq: 43,
            content: Some(raw(r#"{"url":"https://x/y.png","w":640,"h":480}"#)),
            recalled: false,
            ..recalled.clone()
        };
        let answer = HistoryAnswer {
            msgs: vec![recalled, image],
        };
        let msgs = concat!(
            r#""msgs":[{"msg_id":"7311845012345678902","conv":"group:g8x2k","seq":42,"from":"alice","group":"g8x2k","kind":"image","ts":1795000000001,"client_msg_id":"a9e0","recalled":true},"#,
            r#"{"msg_id":"7311845012345678902","conv":"group:g8x2k","seq":43,"from":"alice","group":"g8x2k","kind":"image","content":{"url":"https://x/y.png","w":640,"h":480},"ts":1795000000001,"client_msg_id":"a9e0"}]"#
        );
        round_trip(
            &OkFrame::new(Some("6"), answer.clone()),
            &format!(r#"{{"type":"ok","id":"6",{msgs}}}"#),
        );
        round_trip(&answer, &format!("{{{msgs}}}"));
    }

    #[test]
    fn ok_presence_and_read_status() {
        let online = [(c("bob"), true), (c("carol"), false)]
            .into_iter()
            .collect();
        round_trip(
            &OkFrame::new(Some("9"), PresenceAnswer { online }),
            r#"{"type":"ok","id":"9","online":{"bob":true,"carol":false}}"#,
        );
        round_trip(
            &OkFrame::new(
                Some("13"),
                ReadStatusAnswer {
                    conv: c("group:g8x2k"),
                    seq: 41,
                    read: vec![c("bob")],
                    unread: vec![c("carol"), c("dave")],
                },
            ),
            r#"{"type":"ok","id":"13","conv":"group:g8x2k","seq":41,"read":["bob"],"unread":["carol","dave"]}"#,
        );
    }

    #[test]
    fn ok_frame_checks_its_type() {
        let r = serde_json::from_str::<OkFrame<Empty>>(r#"{"type":"error","id":"1"}"#);
        assert!(r.is_err());
        let r = serde_json::from_str::<OkFrame<Empty>>(r#"{"id":"1"}"#);
        assert!(r.is_err());
        // Fields in any order; the id may be escaped.
        let f: OkFrame<ReadAnswer> =
            serde_json::from_str(r#"{"read_seq":3,"id":"a\"b","type":"ok"}"#).unwrap();
        assert_eq!((f.id.as_deref(), f.body.read_seq), (Some("a\"b"), 3));
        // Not only from borrowed text.
        let f: OkFrame<'static, HistoryAnswer<'static>> =
            serde_json::from_reader(&br#"{"type":"ok","msgs":[]}"#[..]).unwrap();
        assert!(f.id.is_none() && f.body.msgs.is_empty());
    }

    #[test]
    fn error_and_pong() {
        round_trip(
            &ErrorFrame::new(Some("2"), ErrorCode::NoSuchUser, "no user \"zed\""),
            r#"{"type":"error","id":"2","code":"no_such_user","message":"no user \"zed\""}"#,
        );
        let e = ErrorFrame::new(None, ErrorCode::BadFrame, "frame is not JSON");
        round_trip(
            &e,
            r#"{"type":"error","code":"bad_frame","message":"frame is not JSON"}"#,
        );
        assert_eq!(e.code(), Some(ErrorCode::BadFrame));
        round_trip(&Pong::new(Some("7")), r#"{"type":"pong","id":"7"}"#);
        round_trip(&Pong::new(None), r#"{"type":"pong"}"#);
    }

    #[test]
    fn msg_push() {
        round_trip(
            &MsgPush::new(msg()),
            r#"{"type":"msg","msg":{"msg_id":"7311845012345678901","conv":"dm:alice:bob","seq":41,"from":"alice","to":"bob","kind":"text","content":"hello","ts":1795000000000,"client_msg_id":"6f1c"}}"#,
        );
        let mut m = msg();
        m.msg_id = u64::MAX;
        m.client_msg_id = None;
        m.content = Some(raw(r#""hi \"x\" \u00e9""#));
        round_trip(
            &MsgPush::new(m),
            r#"{"type":"msg","msg":{"msg_id":"18446744073709551615","conv":"dm:alice:bob","seq":41,"from":"alice","to":"bob","kind":"text","content":"hi \"x\" \u00e9","ts":1795000000000}}"#,
        );
    }

    #[test]
    fn msg_id_is_a_decimal_string() {
        let push = |id: &str| {
            format!(
                r#"{{"type":"msg","msg":{{"msg_id":{id},"conv":"c","seq":1,"from":"a","kind":"text","ts":1}}}}"#
            )
        };
        assert!(serde_json::from_str::<MsgPush>(&push(r#""12""#)).is_ok());
        for bad in [
            "12",
            r#""+12""#,
            r#""-1""#,
            r#""""#,
            r#""18446744073709551616""#,
        ] {
            assert!(
                serde_json::from_str::<MsgPush>(&push(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn wrong_type_is_refused() {
        let r = serde_json::from_str::<Typing>(r#"{"type":"typo","conv":"c","user":"u"}"#);
        assert!(r.is_err());
    }

    #[test]
    fn receipts() {
        round_trip(
            &Receipt {
                ty: tag::Receipt,
                conv: c("dm:alice:bob"),
                by: c("bob"),
                delivered_seq: Some(41),
                read_seq: None,
            },
            r#"{"type":"receipt","conv":"dm:alice:bob","by":"bob","delivered_seq":41}"#,
        );
        round_trip(
            &Receipt {
                ty: tag::Receipt,
                conv: c("dm:alice:bob"),
                by: c("bob"),
                delivered_seq: None,
                read_seq: Some(41),
            },
            r#"{"type":"receipt","conv":"dm:alice:bob","by":"bob","read_seq":41}"#,
        );
    }

    #[test]
    fn other_pushes() {
        round_trip(
            &Recalled {
                ty: tag::Recalled,
                conv: c("dm:alice:bob"),
                seq: 41,
                msg_id: 7311845012345678901,
                by: c("alice"),
            },
            r#"{"type":"recalled","conv":"dm:alice:bob","seq":41,"msg_id":"7311845012345678901","by":"alice"}"#,
        );
        round_trip(
            &Typing {
                ty: tag::Typing,
                conv: c("dm:alice:bob"),
                user: c("alice"),
            },
            r#"{"type":"typing","conv":"dm:alice:bob","user":"alice"}"#,
        );
        round_trip(
            &PresencePush {
                ty: tag::Presence,
                user: c("bob"),
                online: true,
                ts: 1795000000000,
            },
            r#"{"type":"presence","user":"bob","online":true,"ts":1795000000000}"#,
        );
        round_trip(
            &Notify {
                ty: tag::Notify,
                conv: c("group:g8x2k"),
                max_seq: 41,
            },
            r#"{"type":"notify","conv":"group:g8x2k","max_seq":41}"#,
        );
        round_trip(
            &RoomMsg {
                ty: tag::RoomMsg,
                room: c("launch"),
                from: c("alice"),
                content: raw(r#""hi""#),
                ts: 1795000000000,
            },
            r#"{"type":"room_msg","room":"launch","from":"alice","content":"hi","ts":1795000000000}"#,
        );
        round_trip(
            &OfflineDone {
                ty: tag::OfflineDone,
                count: 0,
                truncated: false,
            },
            r#"{"type":"offline_done","count":0,"truncated":false}"#,
        );
    }

    #[test]
    fn room_content_may_be_null() {
        let json = r#"{"type":"room_msg","room":"r","from":"a","content":null,"ts":1}"#;
        let m: RoomMsg = serde_json::from_str(json).unwrap();
        assert_eq!(m.content.get(), "null");
        assert_eq!(serde_json::to_string(&m).unwrap(), json);
    }

    #[test]
    fn batch() {
        let a = r#"{"type":"room_msg","room":"launch","from":"alice","content":"hi","ts":1}"#;
        let b = r#"{"type":"notify","conv":"group:g8x2k","max_seq":41}"#;
        let json = format!(r#"{{"type":"batch","frames":[{a},{b}]}}"#);
        round_trip(
            &Batch {
                ty: tag::Batch,
                frames: vec![raw(a), raw(b)],
            },
            &json,
        );
        let mut out = Vec::new();
        write_batch(&mut out, [a.as_bytes(), b.as_bytes()]);
        assert_eq!(String::from_utf8(out).unwrap(), json);
    }

    #[test]
    fn http_bodies() {
        round_trip(
            &ErrorBody::new(ErrorCode::UserExists, "user exists"),
            r#"{"code":"user_exists","message":"user exists"}"#,
        );
        round_trip(&UserCreated { user: c("alice") }, r#"{"user":"alice"}"#);
        round_trip(
            &SessionToken {
                expires_at: 1795000000000,
                token: c("eyJ0.x.y"),
            },
            r#"{"expires_at":1795000000000,"token":"eyJ0.x.y"}"#,
        );
        round_trip(
            &UserInfo {
                name: c("Alice"),
                online: false,
                user: c("alice"),
            },
            r#"{"name":"Alice","online":false,"user":"alice"}"#,
        );
        round_trip(
            &FriendAnswer {
                status: FriendState::Requested,
            },
            r#"{"status":"requested"}"#,
        );
        round_trip(
            &FriendAnswer {
                status: FriendState::Friends,
            },
            r#"{"status":"friends"}"#,
        );
        round_trip(
            &FriendsList {
                friends: vec![FriendEntry {
                    online: true,
                    user: c("bob"),
                }],
                incoming: vec![c("carol")],
                outgoing: vec![],
            },
            r#"{"friends":[{"online":true,"user":"bob"}],"incoming":["carol"],"outgoing":[]}"#,
        );
        let mut group = GroupAnswer {
            group: c("g8x2k"),
            members: vec![c("alice"), c("bob")],
            name: c("team"),
            owner: c("alice"),
            size: None,
        };
        round_trip(
            &group,
            r#"{"group":"g8x2k","members":["alice","bob"],"name":"team","owner":"alice"}"#,
        );
        group.size = Some(2);
        round_trip(
            &group,
            r#"{"group":"g8x2k","members":["alice","bob"],"name":"team","owner":"alice","size":2}"#,
        );
    }
}
