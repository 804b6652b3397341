//! 5.6 scheduled messages: the answer to a scheduled `send`, and
//! `GET /v1/scheduled`.

use super::RawJson;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The `ok` to a `send` with `at` (and its `POST /v1/messages` answer):
/// the message is kept until then; no `seq` yet.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledAnswer<'a> {
    /// The scheduled message's id (32 hex digits).
    pub scheduled: Cow<'a, str>,
    pub conv: Cow<'a, str>,
    pub at: i64,
    /// The client's, or the one the server made up.
    pub client_msg_id: Cow<'a, str>,
}

/// One pending scheduled message of `GET /v1/scheduled`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledView<'a> {
    pub id: Cow<'a, str>,
    pub conv: Cow<'a, str>,
    pub at: i64,
    pub kind: Cow<'a, str>,
    pub content: RawJson<'a>,
    pub client_msg_id: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<Cow<'a, str>>,
}

/// `GET /v1/scheduled`: the caller's pending scheduled messages, by `at`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledList<'a> {
    pub scheduled: Vec<ScheduledView<'a>>,
}
