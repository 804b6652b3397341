//! Friends: the lists, asking (rate limited by `[rate]`), and ending a
//! friendship or a request.

use super::{ApiResult, Bearer, Param};
use crate::dispatch::execute;
use crate::state::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::request::{self, Request};
use tern_proto::wire::{ErrorBody, FriendAnswer, FriendsList};

#[utoipa::path(
    put,
    path = "/v1/friends/{user}",
    tag = "friends",
    security(("bearer" = [])),
    params(("user" = String, Path, description = "the other user")),
    responses(
        (status = 200, description = "`requested`, or `friends` once both sides asked", body = FriendAnswer),
        (status = 400, description = "`invalid`: oneself", body = ErrorBody),
        (status = 403, description = "`forbidden`: too many outstanding requests", body = ErrorBody),
        (status = 404, description = "`no_such_user`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many friend requests", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait before trying again"))),
    )
)]
pub(super) async fn put_friend(
    State(app): State<Arc<App>>,
    Param(other): Param<String>,
    me: Bearer,
) -> ApiResult<Response> {
    if let Err(r) = app.guard.friend_request(&me.0).await {
        return Ok(r.into_response());
    }
    let req = Request::FriendAdd(request::FriendAdd {
        user: Cow::Owned(other),
    });
    Ok(execute(&app, me.actor(), None, req).await?.json())
}

#[utoipa::path(
    delete,
    path = "/v1/friends/{user}",
    tag = "friends",
    security(("bearer" = [])),
    params(("user" = String, Path, description = "the other user")),
    responses(
        (status = 204, description = "no longer friends; a pending request either way is withdrawn"),
    )
)]
pub(super) async fn delete_friend(
    State(app): State<Arc<App>>,
    Param(other): Param<String>,
    me: Bearer,
) -> ApiResult<Response> {
    let req = Request::FriendDelete(request::FriendDelete {
        user: Cow::Owned(other),
    });
    execute(&app, me.actor(), None, req).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/v1/friends",
    tag = "friends",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "friends with their presence, pending requests both ways", body = FriendsList),
    )
)]
pub(super) async fn list_friends(State(app): State<Arc<App>>, me: Bearer) -> ApiResult<Response> {
    Ok(execute(&app, me.actor(), None, Request::Friends)
        .await?
        .json())
}
