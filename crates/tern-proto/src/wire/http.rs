//! HTTP answer bodies. Fields in name order: that is how the server wrote
//! them before they had types, and what it still writes.

use crate::codes::ErrorCode;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// An error `code`: one of the names [`ErrorCode`] knows.
#[cfg(feature = "openapi")]
fn error_code_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
        .build()
}

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
    /// A media id (5.3); `null` when not set.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub avatar: Option<Cow<'a, str>>,
    /// 5.6: present (`true`) for a bot account only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
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
    // 5.4 and blocks
    /// Members made admin by the owner (the owner is not listed).
    #[serde(default)]
    pub admins: Vec<Cow<'a, str>>,
    /// Empty when none.
    #[serde(default)]
    pub announcement: Cow<'a, str>,
    /// Only the owner and admins may send while on.
    #[serde(default)]
    pub muted_all: bool,
    /// Members muted now, each with the time (ms) their mute ends.
    #[serde(default)]
    pub mutes: BTreeMap<Cow<'a, str>, i64>,
    /// Dissolved by its owner: readable, never written again.
    #[serde(default)]
    pub dissolved: bool,
}

// 5.4 and blocks

/// `GET /v1/blocks`: whom the caller blocked, sorted.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocksList<'a> {
    pub blocked: Vec<Cow<'a, str>>,
}

// 5.3 profiles, conversation settings, sessions

/// `PUT /v1/conversations/{conv}/settings`: the caller's settings of the
/// conversation after the change.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvSettingsAnswer {
    /// Muted until then (ms); 0: not muted.
    pub muted_until: i64,
    pub pinned: bool,
    /// 5.6: the conversation's retention in days, shared by its members;
    /// 0: none set (the server's default applies).
    #[serde(default)]
    pub retention_days: u32,
}

/// One session of `GET /v1/sessions`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView<'a> {
    pub created_at: i64,
    /// Whether this is the session of the token that asked.
    pub current: bool,
    /// Its online devices (connected with this session's token).
    pub devices: Vec<Cow<'a, str>>,
    pub expires_at: i64,
    /// When it was last used (recorded at most every
    /// `limits.session_seen_secs`).
    pub last_seen: i64,
    /// The session id: what `DELETE /v1/sessions/{session}` names.
    pub session: Cow<'a, str>,
}

/// `GET /v1/sessions`: the caller's unexpired sessions, oldest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsList<'a> {
    pub sessions: Vec<SessionView<'a>>,
}

/// 5.5 `POST /v1/media`: the stored upload.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaUploaded {
    /// The media id (32 hex digits, 128 random bits): what a `send`'s
    /// content names as `"media"`.
    pub media: String,
    /// Where it is served: `/v1/media/{media}`.
    pub url: String,
    pub size: u64,
    pub mime: String,
    /// Hex SHA-256 of the bytes (also the download's `ETag`).
    pub sha256: String,
}

/// 5.5 `GET /v1/push/webpush-key`: the VAPID application server key a
/// browser subscribes with.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebPushKey {
    /// base64url (no padding) of the uncompressed P-256 point (65 bytes):
    /// `applicationServerKey` of `pushManager.subscribe`.
    pub public_key: String,
}
