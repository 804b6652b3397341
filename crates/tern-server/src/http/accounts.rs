//! Accounts and sessions: registration and login (unauthenticated, with
//! their own guards, so they call the core directly), a user's profile,
//! and ending the caller's own session.

use super::{bearer_token, body, invalid, ApiResult, Bearer, Param, RawBody};
use crate::dispatch::execute;
use crate::state::App;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use tern_proto::request::{self, Request};
use tern_proto::wire::{ErrorBody, SessionToken, UserCreated, UserInfo};
use tern_proto::ErrorCode;
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/users`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct NewUserBody<'a> {
    /// The new user id: 1-64 characters of `A-Z a-z 0-9 _ . -`.
    #[serde(borrow)]
    user: std::borrow::Cow<'a, str>,
    /// At least 8 characters.
    #[serde(borrow)]
    password: std::borrow::Cow<'a, str>,
    /// Display name (at most 128 characters); the user id when left out.
    #[schema(nullable = false)]
    #[serde(borrow, default)]
    name: Option<std::borrow::Cow<'a, str>>,
}

#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    request_body = NewUserBody,
    responses(
        (status = 201, description = "registered", body = UserCreated),
        (status = 400, description = "`invalid`: bad user id, password under 8 characters, bad JSON", body = ErrorBody),
        (status = 409, description = "`user_exists`", body = ErrorBody),
        (status = 413, description = "`content_too_large`: body over `http.body_bytes`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many registrations from this address", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait before trying again"))),
        (status = 503, description = "`unavailable`: too many password hashes at once (`limits.hash_queue`)", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait before trying again"))),
    )
)]
pub(super) async fn create_user(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    if let Err(r) = app.guard.register(peer.ip()).await {
        return Ok(r.into_response());
    }
    let b: NewUserBody = body(&raw)?;
    app.core
        .register(&b.user, &b.password, b.name.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(UserCreated { user: b.user })).into_response())
}

/// `POST /v1/sessions`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct SessionBody<'a> {
    #[serde(borrow)]
    user: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    password: std::borrow::Cow<'a, str>,
}

#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    request_body = SessionBody,
    responses(
        (status = 200, description = "logged in", body = SessionToken),
        (status = 400, description = "`invalid`: bad JSON", body = ErrorBody),
        (status = 401, description = "`bad_credentials`: wrong user or password", body = ErrorBody),
        (status = 413, description = "`content_too_large`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed logins for this user or address", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait before trying again"))),
        (status = 503, description = "`unavailable`: too many password checks at once (`limits.hash_queue`)", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait before trying again"))),
    )
)]
pub(super) async fn create_session(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: SessionBody = body(&raw)?;
    let ticket = match app.guard.login_attempt(&b.user, peer.ip()).await {
        Ok(t) => t,
        Err(r) => return Ok(r.into_response()),
    };
    let (token, expires_at) = match app.core.login(&b.user, &b.password).await {
        Ok(t) => {
            ticket.succeeded().await;
            t
        }
        Err(e) => {
            // Only wrong credentials count as failures.
            if e.code != ErrorCode::BadCredentials {
                ticket.succeeded().await;
            }
            return Err(e.into());
        }
    };
    Ok(Json(SessionToken {
        expires_at,
        token: Cow::Owned(token),
    })
    .into_response())
}

/// `DELETE /v1/sessions`'s query.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EndParams {
    /// `true`: every session of the caller (5.3), not only this token's.
    all: Option<bool>,
}

/// Revokes the bearer token everywhere (PROTOCOL.md 3); with `?all=true`
/// every session of the caller (5.3).
#[utoipa::path(
    delete,
    path = "/v1/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    params(EndParams),
    responses(
        (status = 204, description = "the token (or with `all=true`, every session of the caller) is revoked everywhere: later calls with it get 401, its WebSockets close with 4001"),
        (status = 400, description = "`invalid`: a bad query", body = ErrorBody),
    )
)]
pub(super) async fn delete_session(
    State(app): State<Arc<App>>,
    me: Bearer,
    headers: HeaderMap,
    q: Result<Query<EndParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| invalid(format!("bad query parameters: {}", e.body_text())))?;
    let req = if q.all == Some(true) {
        Request::SessionsRevokeAll
    } else {
        Request::SessionEnd(request::SessionEnd {
            token: Cow::Borrowed(bearer_token(&headers)?),
        })
    };
    execute(&app, me.actor(), None, req).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/v1/users/{user}",
    tag = "users",
    security(("bearer" = [])),
    params(("user" = String, Path, description = "user id")),
    responses(
        (status = 200, description = "the user: `avatar` is `null` when not set; `online` is false across a block", body = UserInfo),
        (status = 404, description = "`no_such_user`", body = ErrorBody),
    )
)]
pub(super) async fn get_user(
    State(app): State<Arc<App>>,
    Param(user): Param<String>,
    me: Bearer,
) -> ApiResult<Response> {
    let req = Request::UserGet(request::UserGet {
        user: Cow::Owned(user),
    });
    Ok(execute(&app, me.actor(), None, req).await?.json())
}
