//! 5.1: editing a message and reactions. Each handler builds the typed
//! request and runs it through `dispatch::execute`; the rules live in
//! `tern_core` (`rules::may_edit`, `rules::may_react`).

use super::{body, ApiResult, Bearer, Param, RawBody};
use crate::dispatch::execute;
use crate::state::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::request::{self, Request};
use tern_proto::wire::{EditAnswer, ErrorBody};
use utoipa::ToSchema;

/// `PATCH /v1/conversations/{conv}/messages/{seq}`: the new content.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditBody<'a> {
    /// Suits the message's kind (a string for `text`, an object for the
    /// others), within `limits.content_bytes`.
    #[schema(value_type = serde_json::Value)]
    #[serde(borrow)]
    content: &'a RawValue,
}

#[utoipa::path(
    patch,
    path = "/v1/conversations/{conv}/messages/{seq}",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("conv" = String, Path, description = "`dm:<a>:<b>` or `group:<gid>`"),
        ("seq" = u64, Path, description = "the message's seq"),
    ),
    request_body = EditBody,
    responses(
        (status = 200, description = "edited; every participant's online devices get `edited`", body = EditAnswer),
        (status = 400, description = "`invalid`: no message with this seq, or content that does not suit its kind", body = ErrorBody),
        (status = 403, description = "`not_member`, or `forbidden`: not the sender, recalled, past `limits.edit_window_secs`, or the group is dissolved", body = ErrorBody),
        (status = 413, description = "`content_too_large`: content over `limits.content_bytes`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's send rate", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait before trying again"))),
    )
)]
pub(super) async fn edit_message(
    State(app): State<Arc<App>>,
    me: Bearer,
    Param((conv, seq)): Param<(String, u64)>,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    if let Err(r) = app.guard.send(&me.0).await {
        return Ok(r.into_response());
    }
    let b: EditBody = body(&raw)?;
    let req = Request::Edit(request::Edit {
        conv: Cow::Owned(conv),
        seq,
        content: b.content,
    });
    Ok(execute(&app, me.actor(), None, req).await?.json())
}

async fn react(
    app: &App,
    me: &Bearer,
    (conv, seq, emoji): (String, u64, String),
    on: bool,
) -> ApiResult<Response> {
    if let Err(r) = app.guard.send(&me.0).await {
        return Ok(r.into_response());
    }
    let req = Request::React(request::React {
        conv: Cow::Owned(conv),
        seq,
        emoji: Cow::Owned(emoji),
        on,
    });
    execute(app, me.actor(), None, req).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    put,
    path = "/v1/conversations/{conv}/messages/{seq}/reactions/{emoji}",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("conv" = String, Path, description = "`dm:<a>:<b>` or `group:<gid>`"),
        ("seq" = u64, Path, description = "the message's seq"),
        ("emoji" = String, Path, description = "1-32 bytes, percent-encoded"),
    ),
    responses(
        (status = 204, description = "reacted (nothing changes if already); participants' online devices get `reaction`"),
        (status = 400, description = "`invalid`: no message with this seq, a bad emoji, or one distinct emoji over `limits.reaction_emoji_max`", body = ErrorBody),
        (status = 403, description = "`not_member`, or `forbidden`: recalled, or the group is dissolved", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's send rate", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait before trying again"))),
    )
)]
pub(super) async fn put_reaction(
    State(app): State<Arc<App>>,
    me: Bearer,
    Param(path): Param<(String, u64, String)>,
) -> ApiResult<Response> {
    react(&app, &me, path, true).await
}

#[utoipa::path(
    delete,
    path = "/v1/conversations/{conv}/messages/{seq}/reactions/{emoji}",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("conv" = String, Path, description = "`dm:<a>:<b>` or `group:<gid>`"),
        ("seq" = u64, Path, description = "the message's seq"),
        ("emoji" = String, Path, description = "1-32 bytes, percent-encoded"),
    ),
    responses(
        (status = 204, description = "taken back; participants' online devices get `reaction` with `on: false`"),
        (status = 400, description = "`invalid`: no message with this seq, or a bad emoji", body = ErrorBody),
        (status = 403, description = "`not_member`, or `forbidden`: the group is dissolved", body = ErrorBody),
        (status = 404, description = "`not_found`: the caller has no such reaction", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's send rate", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait before trying again"))),
    )
)]
pub(super) async fn delete_reaction(
    State(app): State<Arc<App>>,
    me: Bearer,
    Param(path): Param<(String, u64, String)>,
) -> ApiResult<Response> {
    react(&app, &me, path, false).await
}
