//! 5.6 scheduled messages over HTTP: the caller's pending ones and their
//! cancellation. (Scheduling itself is a `send` with `at`, on
//! `POST /v1/messages` or the WebSocket.) HTTP only: the handlers call
//! the core directly.

use super::{ApiResult, Bearer, Param};
use crate::state::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::wire::{ErrorBody, RawJson, ScheduledList, ScheduledView};

#[utoipa::path(
    get,
    path = "/v1/scheduled",
    tag = "messages",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the caller's pending scheduled messages, by `at` (at most `scheduled.max_per_user`)", body = ScheduledList),
    )
)]
pub(super) async fn list_scheduled(State(app): State<Arc<App>>, me: Bearer) -> ApiResult<Response> {
    let list = app.core.scheduled(&me.0).await?;
    let mut views = Vec::with_capacity(list.len());
    for s in &list {
        let content = RawJson::from_string(s.content.clone())
            .map_err(|_| tern_core::CoreError::unavailable())?;
        views.push(ScheduledView {
            id: Cow::Borrowed(&s.id),
            conv: Cow::Borrowed(&s.conv),
            at: s.at,
            kind: Cow::Borrowed(&s.kind),
            content,
            client_msg_id: Cow::Borrowed(&s.client_msg_id),
            reply_to: (s.reply_to > 0).then_some(s.reply_to),
            mentions: s
                .mentions
                .iter()
                .map(|m| Cow::Borrowed(m.as_str()))
                .collect(),
        });
    }
    Ok(Json(ScheduledList { scheduled: views }).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/scheduled/{id}",
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a scheduled message's id, from its `send` answer or `GET /v1/scheduled`")),
    responses(
        (status = 204, description = "cancelled: it will not be sent"),
        (status = 404, description = "`not_found`: no such pending scheduled message of the caller", body = ErrorBody),
    )
)]
pub(super) async fn cancel_scheduled(
    State(app): State<Arc<App>>,
    Param(id): Param<String>,
    me: Bearer,
) -> ApiResult<Response> {
    app.core.cancel_scheduled(&me.0, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
