//! The HTTP API (PROTOCOL.md 3). Handlers only decode, call the core and
//! encode; the logic lives in `tern-core`.

use crate::dispatch::execute;
use crate::state::App;
use crate::views::group_answer;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, State,
};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;
use tern_core::store::FriendStatus;
use tern_core::{Actor, CoreError};
use tern_proto::request::{self, Request};
use tern_proto::wire::{
    ErrorBody, FriendAnswer, FriendEntry, FriendState, FriendsList, GroupAnswer, HistoryAnswer,
    SendAnswer, SessionToken, SyncAnswer, UserCreated, UserInfo,
};
use tern_proto::ErrorCode;
use utoipa::openapi::OpenApi;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Every route of the API with its OpenAPI description: the router and
/// `/v1/openapi.json` come from this one list, so neither can miss a route
/// the other has.
pub(crate) fn api() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(crate::ws::upgrade))
        .routes(routes!(create_user))
        .routes(routes!(get_user))
        .routes(routes!(create_session, delete_session))
        .routes(routes!(list_friends))
        .routes(routes!(put_friend, delete_friend))
        .routes(routes!(create_group))
        .routes(routes!(get_group))
        .routes(routes!(add_members))
        .routes(routes!(remove_member))
        .routes(routes!(conversations))
        .routes(routes!(messages))
        .routes(routes!(send_message))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(serve_document))
}

/// The whole document.
pub fn document() -> OpenApi {
    let mut doc = api().into_openapi();
    crate::openapi::add_shared_errors(&mut doc);
    doc
}

/// The document as served, serialized once.
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().unwrap_or_else(|_| "{}".to_owned()))
}

/// This OpenAPI 3 document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "the OpenAPI 3 description of this API", content_type = "application/json", body = Object),
    )
)]
pub(crate) async fn serve_document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

pub fn router(app: Arc<App>) -> Router {
    let body_bytes = app.cfg.http.body_bytes;
    let request_timeout = Duration::from_secs(app.cfg.http.request_timeout_secs);
    let (routes, _) = api().split_for_parts();
    routes
        .merge(crate::web::router())
        .fallback(|| async { ApiError(CoreError::new(ErrorCode::NotFound, "no such endpoint")) })
        .method_not_allowed_fallback(|| async {
            ApiError(CoreError::new(
                ErrorCode::MethodNotAllowed,
                "this endpoint does not take this method",
            ))
        })
        .layer(DefaultBodyLimit::max(body_bytes))
        // Reading the body and answering; a WebSocket session runs after
        // its upgrade answer, outside this.
        .layer(middleware::from_fn(
            move |req, next: middleware::Next| async move {
                match tokio::time::timeout(request_timeout, next.run(req)).await {
                    Ok(r) => r,
                    Err(_) => ApiError(CoreError::new(
                        ErrorCode::Timeout,
                        "request not completed in time",
                    ))
                    .into_response(),
                }
            },
        ))
        .layer(middleware::map_response(json_errors))
        .with_state(app)
}

/// The last word on every answer: an error the framework made itself (a
/// rejection, a missing route) gets the protocol's JSON shape. Answers
/// already in JSON pass as they are.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let code = match status.as_u16() {
        401 => ErrorCode::Unauthenticated,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::Timeout,
        413 => ErrorCode::ContentTooLarge,
        429 => ErrorCode::RateLimited,
        s if s >= 500 => ErrorCode::Unavailable,
        _ => ErrorCode::Invalid,
    };
    if status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        parts.status = StatusCode::BAD_REQUEST;
    }
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.trim().to_owned()
    };
    let body = serde_json::to_vec(&ErrorBody::new(code, &message)).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The request body; one over `http.body_bytes` is 413
/// `content_too_large`, one that cannot be read 400 `invalid`.
pub struct RawBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError(CoreError::new(
                        ErrorCode::ContentTooLarge,
                        "request body is too large",
                    ))
                } else {
                    invalid(format!("cannot read the body: {}", e.body_text()))
                }
            })
    }
}

/// A path parameter; one that does not decode is 400 `invalid`.
pub struct Param<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Param<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Param(t))
            .map_err(|e| invalid(format!("bad path: {}", e.body_text())))
    }
}

/// An error answer: `{"code","message"}` with the code's status.
pub struct ApiError(pub CoreError);

impl ApiError {
    fn with_status(self, status: u16) -> Response {
        let body = Json(ErrorBody::new(self.0.code, &self.0.message));
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            body,
        )
            .into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.code.http_status();
        let mut r = self.with_status(status);
        if status == 503 {
            // Every 503 is worth retrying (a full hashing queue, a backend
            // down): say when.
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(1u64));
        }
        r
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e)
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn invalid(msg: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError(CoreError::invalid(msg))
}

/// Decodes a JSON body; any mistake is `invalid`.
fn body<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        let mut m = e.to_string();
        if let Some(cut) = m.find(" at line ") {
            m.truncate(cut);
        }
        invalid(format!("bad JSON body: {m}"))
    })
}

/// The user of the bearer token.
async fn bearer(app: &App, headers: &HeaderMap) -> ApiResult<String> {
    bearer_session(app, headers).await.map(|s| s.user)
}

/// The caller's user id, from the `Authorization: Bearer` token; a handler
/// that takes it answers 401 `unauthenticated` without one.
pub(crate) struct Bearer(pub String);

impl FromRequestParts<Arc<App>> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        bearer(app, &parts.headers).await.map(Bearer)
    }
}

impl Bearer {
    /// The caller as the core's actor (HTTP requests have no device).
    fn actor(&self) -> Actor<'_> {
        Actor {
            user: &self.0,
            device: None,
        }
    }
}

/// The session of the bearer token.
async fn bearer_session(app: &App, headers: &HeaderMap) -> ApiResult<tern_core::auth::Session> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError(CoreError::new(
                ErrorCode::Unauthenticated,
                "missing bearer token",
            ))
        })?;
    Ok(app.core.session(token.trim()).await?)
}

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
async fn create_user(
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
async fn create_session(
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

/// Revokes the bearer token everywhere (PROTOCOL.md 3).
#[utoipa::path(
    delete,
    path = "/v1/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "the token is revoked everywhere: later calls with it get 401, its WebSockets close with 4001"),
    )
)]
async fn delete_session(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    let session = bearer_session(&app, &headers).await?;
    app.core.revoke(&session).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/v1/users/{user}",
    tag = "users",
    security(("bearer" = [])),
    params(("user" = String, Path, description = "user id")),
    responses(
        (status = 200, description = "the user", body = UserInfo),
        (status = 404, description = "`no_such_user`", body = ErrorBody),
    )
)]
async fn get_user(
    State(app): State<Arc<App>>,
    Param(user): Param<String>,
    _caller: Bearer,
) -> ApiResult<Response> {
    let (user, name, online) = app.core.user_info(&user).await?;
    Ok(Json(UserInfo {
        name: Cow::Owned(name),
        online,
        user: Cow::Owned(user),
    })
    .into_response())
}

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
async fn put_friend(
    State(app): State<Arc<App>>,
    Param(other): Param<String>,
    Bearer(me): Bearer,
) -> ApiResult<Response> {
    if let Err(r) = app.guard.friend_request(&me).await {
        return Ok(r.into_response());
    }
    let status = match app.core.friend_request(&me, &other).await? {
        FriendStatus::Requested => FriendState::Requested,
        FriendStatus::Friends => FriendState::Friends,
    };
    Ok(Json(FriendAnswer { status }).into_response())
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
async fn delete_friend(
    State(app): State<Arc<App>>,
    Param(other): Param<String>,
    Bearer(me): Bearer,
) -> ApiResult<Response> {
    app.core.friend_delete(&me, &other).await?;
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
async fn list_friends(State(app): State<Arc<App>>, Bearer(me): Bearer) -> ApiResult<Response> {
    let (friends, lists) = app.core.friends(&me).await?;
    let owned = |v: Vec<String>| v.into_iter().map(Cow::Owned).collect();
    Ok(Json(FriendsList {
        friends: friends
            .into_iter()
            .map(|(user, online)| FriendEntry {
                online,
                user: Cow::Owned(user),
            })
            .collect(),
        incoming: owned(lists.incoming),
        outgoing: owned(lists.outgoing),
    })
    .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SyncParams {
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
async fn conversations(
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
struct HistoryParams {
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
async fn messages(
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
}

#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    security(("bearer" = [])),
    request_body = SendBody,
    responses(
        (status = 200, description = "stored; `duplicate` when this `client_msg_id` was sent before", body = SendAnswer),
        (status = 403, description = "`not_member`: not a member of the group", body = ErrorBody),
        (status = 404, description = "`no_such_user` / `no_such_group`", body = ErrorBody),
        (status = 413, description = "`content_too_large`: content over `limits.content_bytes`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's send rate", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait before trying again"))),
    )
)]
async fn send_message(
    State(app): State<Arc<App>>,
    me: Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    if let Err(r) = app.guard.send(&me.0).await {
        return Ok(r.into_response());
    }
    let b: SendBody = body(&raw)?;
    let req = request::Send::from_parts(b.to, b.group, b.client_msg_id, b.kind, b.content)
        .map_err(|m| invalid(m.to_string()))?;
    Ok(execute(&app, me.actor(), None, Request::Send(req))
        .await?
        .json())
}

/// `POST /v1/groups`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct NewGroupBody<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    /// User ids besides the caller (at most 1000).
    #[serde(borrow, default)]
    members: Vec<std::borrow::Cow<'a, str>>,
}

#[utoipa::path(
    post,
    path = "/v1/groups",
    tag = "groups",
    security(("bearer" = [])),
    request_body = NewGroupBody,
    responses(
        (status = 201, description = "created; the caller is the owner", body = GroupAnswer),
        (status = 403, description = "`forbidden`: a member is in too many groups", body = ErrorBody),
        (status = 404, description = "`no_such_user`", body = ErrorBody),
        (status = 413, description = "`content_too_large`", body = ErrorBody),
    )
)]
async fn create_group(
    State(app): State<Arc<App>>,
    Bearer(me): Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: NewGroupBody = body(&raw)?;
    let members: Vec<&str> = b.members.iter().map(|m| m.as_ref()).collect();
    let view = app.core.create_group(&me, &b.name, &members).await?;
    Ok((StatusCode::CREATED, Json(group_answer(&view, false))).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/groups/{group}",
    tag = "groups",
    security(("bearer" = [])),
    params(("group" = String, Path, description = "group id")),
    responses(
        (status = 200, description = "the group, with its size", body = GroupAnswer),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_group`", body = ErrorBody),
    )
)]
async fn get_group(
    State(app): State<Arc<App>>,
    Param(gid): Param<String>,
    Bearer(me): Bearer,
) -> ApiResult<Response> {
    let view = app.core.group(&me, &gid).await?;
    Ok(Json(group_answer(&view, true)).into_response())
}

/// `POST /v1/groups/{group}/members`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct AddMembersBody<'a> {
    /// User ids to add (at most 1000).
    #[serde(borrow)]
    users: Vec<std::borrow::Cow<'a, str>>,
}

#[utoipa::path(
    post,
    path = "/v1/groups/{group}/members",
    tag = "groups",
    security(("bearer" = [])),
    params(("group" = String, Path, description = "group id")),
    request_body = AddMembersBody,
    responses(
        (status = 200, description = "the group as `GET /v1/groups/{group}` answers", body = GroupAnswer),
        (status = 403, description = "`not_member`, or `forbidden`: the group or a user is full", body = ErrorBody),
        (status = 404, description = "`no_such_group` / `no_such_user`", body = ErrorBody),
        (status = 413, description = "`content_too_large`", body = ErrorBody),
    )
)]
async fn add_members(
    State(app): State<Arc<App>>,
    Param(gid): Param<String>,
    Bearer(me): Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: AddMembersBody = body(&raw)?;
    let users: Vec<&str> = b.users.iter().map(|m| m.as_ref()).collect();
    let view = app.core.add_members(&me, &gid, &users).await?;
    Ok(Json(group_answer(&view, true)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/groups/{group}/members/{user}",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("group" = String, Path, description = "group id"),
        ("user" = String, Path, description = "the member to remove"),
    ),
    responses(
        (status = 204, description = "removed (the owner removes anyone, anyone removes self)"),
        (status = 403, description = "`forbidden` / `not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_group`", body = ErrorBody),
    )
)]
async fn remove_member(
    State(app): State<Arc<App>>,
    Param((gid, user)): Param<(String, String)>,
    Bearer(me): Bearer,
) -> ApiResult<Response> {
    app.core.remove_member(&me, &gid, &user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The `/healthz` body.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `unavailable` when a backend does not answer.
    #[schema(value_type = String, pattern = "^(ok|unavailable)$")]
    status: &'static str,
    /// On 503 only: `unavailable`, as in every error body.
    #[schema(value_type = Option<String>, nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    /// On 503 only: which backends are down.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// This node's number.
    node: u16,
    /// Each backend this node uses (`store`; in a cluster also `redis`
    /// and `bus`): `ok` or `down: <reason>`.
    #[schema(value_type = BTreeMap<String, String>)]
    backends: BTreeMap<&'static str, String>,
}

/// 200 when every backend answers, else 503; the body names each
/// backend this node uses and its state (and, on 503, carries the usual
/// error fields too).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "the server and every backend it uses answer", body = Health),
        (status = 503, description = "a backend does not answer (`code` is `unavailable`)", body = Health),
    )
)]
async fn healthz(State(app): State<Arc<App>>) -> Response {
    let h = app.core.health().await;
    let state = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("down: {e}"),
    };
    let mut backends = BTreeMap::new();
    backends.insert("store", state(&h.store));
    if app.core.is_cluster() {
        backends.insert("redis", state(&h.presence));
        backends.insert("bus", state(&h.bus));
    }
    if h.ok() {
        return Json(Health {
            status: "ok",
            code: None,
            message: None,
            node: app.core.node(),
            backends,
        })
        .into_response();
    }
    let down: Vec<&str> = backends
        .iter()
        .filter(|(_, v)| v.as_str() != "ok")
        .map(|(k, _)| *k)
        .collect();
    let body = Health {
        status: "unavailable",
        code: Some(ErrorCode::Unavailable.as_str()),
        message: Some(format!("backend down: {}", down.join(", "))),
        node: app.core.node(),
        backends,
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
    )
)]
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = match &app.prometheus {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
