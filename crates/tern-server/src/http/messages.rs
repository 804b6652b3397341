//! Conversations and messages: the conversation list (`sync`), a page of
//! history (`history`) and sending (`send`, rate limited by `[rate]`).

use super::{body, invalid, ApiResult, Bearer, Param, RawBody};
use crate::dispatch::execute;
use crate::state::App;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::request::{self, Request};
use tern_proto::wire::{ErrorBody, HistoryAnswer, SendAnswer, SyncAnswer};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SyncParams {
    /// Only conversations updated after this time (ms).
    since: Option<i64>,
    /// Most conversations in the answer (1-1000).
    limit: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/conversations",
    tag = "messages",
    security(("bearer" = [])),
    params(SyncParams),
    responses(
        (status = 200, description = "the caller's conversations, as `sync` answers", body = SyncAnswer),
    )
)]
pub(super) async fn conversations(
    State(app): State<Arc<App>>,
    me: Bearer,
    q: Result<Query<SyncParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| invalid(format!("bad query parameters: {}", e.body_text())))?;
    let req = Request::Sync(request::Sync {
        since: q.since,
        limit: q.limit,
    });
    Ok(execute(&app, me.actor(), None, req).await?.json())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryParams {
    /// Messages with a `seq` below this one (the newest page when left out).
    before_seq: Option<u64>,
    /// Messages with a `seq` above this one.
    after_seq: Option<u64>,
    /// Most messages in the page (1-1000).
    limit: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/conversations/{conv}/messages",
    tag = "messages",
    security(("bearer" = [])),
    params(("conv" = String, Path, description = "`dm:<a>:<b>` or `group:<gid>`"), HistoryParams),
    responses(
        (status = 200, description = "a page of history, as `history` answers", body = HistoryAnswer),
        (status = 403, description = "`not_member`: not a conversation of the caller", body = ErrorBody),
    )
)]
pub(super) async fn messages(
    State(app): State<Arc<App>>,
    Param(conv): Param<String>,
    me: Bearer,
    q: Result<Query<HistoryParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| invalid(format!("bad query parameters: {}", e.body_text())))?;
    let req = Request::History(request::History {
        conv: Cow::Owned(conv),
        before_seq: q.before_seq,
        after_seq: q.after_seq,
        limit: q.limit,
    });
    Ok(execute(&app, me.actor(), None, req).await?.json())
}

/// `POST /v1/messages`: the `send` frame without `type` and `id`; exactly
/// one of `to` and `group`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct SendBody<'a> {
    /// The recipient of a direct message.
    #[schema(nullable = false)]
    #[serde(borrow)]
    to: Option<std::borrow::Cow<'a, str>>,
    /// The group of a group message.
    #[schema(nullable = false)]
    #[serde(borrow)]
    group: Option<std::borrow::Cow<'a, str>>,
    /// 1-64 characters chosen by the sender: the deduplication key.
    #[schema(required = true, nullable = false)]
    #[serde(borrow)]
    client_msg_id: Option<std::borrow::Cow<'a, str>>,
    /// `text`, `image`, ... (PROTOCOL.md 2.2).
    #[schema(required = true, nullable = false)]
    #[serde(borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    /// Any JSON value within `limits.content_bytes`.
    #[schema(required = true, value_type = serde_json::Value)]
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    /// 5.1: the seq of the message this one answers (same conversation).
    #[schema(nullable = false)]
    #[serde(default)]
    reply_to: Option<u64>,
    /// 5.1, groups: members named, or `["@all"]` (owner and admins).
    #[schema(nullable = false)]
    #[serde(borrow, default)]
    mentions: Option<Vec<Cow<'a, str>>>,
    /// 5.6: send at this time (ms; future, within a year) instead of now:
    /// the answer is then `{"scheduled","conv","at","client_msg_id"}`, and
    /// `client_msg_id` may be left out (the server makes one up).
    #[schema(nullable = false)]
    #[serde(default)]
    at: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    security(("bearer" = [])),
    request_body = SendBody,
    responses(
        (status = 200, description = "stored; `duplicate` when this `client_msg_id` was sent before (with `at`: kept until then, answered with a `ScheduledAnswer`)", body = SendAnswer),
        (status = 403, description = "`not_member`: not a member of the group", body = ErrorBody),
        (status = 404, description = "`no_such_user` / `no_such_group`", body = ErrorBody),
        (status = 413, description = "`content_too_large`: content over `limits.content_bytes`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's send rate", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait before trying again"))),
    )
)]
pub(super) async fn send_message(
    State(app): State<Arc<App>>,
    me: Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    if let Err(r) = app.guard.send(&me.0).await {
        return Ok(r.into_response());
    }
    let b: SendBody = body(&raw)?;
    let req = request::Send {
        reply_to: b.reply_to,
        mentions: b.mentions,
        at: b.at,
        ..request::Send::from_parts(
            b.to,
            b.group,
            request::scheduled_cmid(b.client_msg_id, b.at),
            b.kind,
            b.content,
        )
        .map_err(|m| invalid(m.to_string()))?
    };
    Ok(execute(&app, me.actor(), None, Request::Send(req))
        .await?
        .json())
}
