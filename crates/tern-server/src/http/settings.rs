//! 5.3: the caller's profile, its settings of a conversation, its
//! sessions. Each handler builds the typed request and runs it through
//! `dispatch::execute`; the rules live in `tern_core` (service/settings).

use super::{body, ApiResult, Bearer, Param, RawBody};
use crate::dispatch::execute;
use crate::state::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::request::{self, Request};
use tern_proto::wire::{ConvSettingsAnswer, ErrorBody, SessionsList, UserInfo};
use utoipa::ToSchema;

/// `PATCH /v1/users/me`: each field optional.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileBody<'a> {
    /// The display name: 1-128 characters, not only spaces.
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    /// A media id (at most `limits.avatar_bytes` bytes of
    /// `A-Z a-z 0-9 _ . -`); `""` clears it.
    #[serde(borrow, default)]
    avatar: Option<Cow<'a, str>>,
}

/// `PUT /v1/conversations/{conv}/settings`: each field optional.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConvSettingsBody {
    /// Muted until then (ms since the Unix epoch); 0 unmutes. Muting
    /// stops offline push only: unread still counts.
    #[serde(default)]
    muted_until: Option<i64>,
    #[serde(default)]
    pinned: Option<bool>,
    /// 5.6: the conversation's retention in days (1-3650), shared by its
    /// members; 0 or `null` clears it. 1:1: either party; groups: the
    /// owner or an admin.
    #[serde(default, deserialize_with = "nullable_days")]
    retention_days: Option<u32>,
}

/// `retention_days`: absent leaves it, `null` (like 0) clears it.
fn nullable_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(Some(Option::<u32>::deserialize(d)?.unwrap_or(0)))
}

#[utoipa::path(
    patch,
    path = "/v1/users/me",
    tag = "users",
    security(("bearer" = [])),
    request_body = ProfileBody,
    responses(
        (status = 200, description = "the caller's user view after the change; its friends' and its own online devices get `profile`", body = UserInfo),
        (status = 400, description = "`invalid`: a bad name or avatar id, bad JSON", body = ErrorBody),
    )
)]
pub(super) async fn patch_me(
    State(app): State<Arc<App>>,
    me: Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: ProfileBody = body(&raw)?;
    let req = Request::ProfileUpdate(request::ProfileUpdate {
        name: b.name,
        avatar: b.avatar,
    });
    Ok(execute(&app, me.actor(), None, req).await?.json())
}

#[utoipa::path(
    put,
    path = "/v1/conversations/{conv}/settings",
    tag = "conversations",
    security(("bearer" = [])),
    params(("conv" = String, Path, description = "conversation id")),
    request_body = ConvSettingsBody,
    responses(
        (status = 200, description = "the caller's settings of the conversation; its online devices get `conv_settings`", body = ConvSettingsAnswer),
        (status = 400, description = "`invalid`: a bad conversation id, a negative time, a retention outside 1-3650 days, bad JSON", body = ErrorBody),
        (status = 403, description = "`not_member`: a conversation the caller cannot read; `forbidden`: a group's retention set by a plain member", body = ErrorBody),
        (status = 404, description = "`no_such_group` / `no_such_user`", body = ErrorBody),
    )
)]
pub(super) async fn put_conv_settings(
    State(app): State<Arc<App>>,
    Param(conv): Param<String>,
    me: Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: ConvSettingsBody = body(&raw)?;
    let req = Request::ConvSettingsSet(request::ConvSettingsSet {
        conv: Cow::Owned(conv),
        muted_until: b.muted_until,
        pinned: b.pinned,
        retention_days: b.retention_days,
    });
    Ok(execute(&app, me.actor(), None, req).await?.json())
}

#[utoipa::path(
    get,
    path = "/v1/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the caller's unexpired sessions, oldest first (at most `limits.sessions_listed`, the newest)", body = SessionsList),
    )
)]
pub(super) async fn list_sessions(State(app): State<Arc<App>>, me: Bearer) -> ApiResult<Response> {
    Ok(execute(&app, me.actor(), None, Request::Sessions)
        .await?
        .json())
}

#[utoipa::path(
    delete,
    path = "/v1/sessions/{session}",
    tag = "sessions",
    security(("bearer" = [])),
    params(("session" = String, Path, description = "a session id from `GET /v1/sessions`")),
    responses(
        (status = 204, description = "revoked everywhere: later calls with its token get 401, its WebSockets close with 4001"),
        (status = 404, description = "`not_found`: no such session of the caller", body = ErrorBody),
    )
)]
pub(super) async fn delete_one_session(
    State(app): State<Arc<App>>,
    Param(session): Param<String>,
    me: Bearer,
) -> ApiResult<Response> {
    let req = Request::SessionRevoke(request::SessionRevoke {
        session: Cow::Owned(session),
    });
    execute(&app, me.actor(), None, req).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
