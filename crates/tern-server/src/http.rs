//! The HTTP API (PROTOCOL.md 3). Handlers only decode, call the core and
//! encode; the logic lives in `tern-core`.

use crate::app::App;
use crate::views::{group_answer, history_answer, send_answer, sync_answer};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, State,
};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tern_core::store::FriendStatus;
use tern_core::{Actor, CoreError, SendRequest};
use tern_proto::wire::{
    ErrorBody, FriendAnswer, FriendEntry, FriendState, FriendsList, SessionToken, UserCreated,
    UserInfo,
};
use tern_proto::ErrorCode;

pub fn router(app: Arc<App>) -> Router {
    let body_bytes = app.cfg.http.body_bytes;
    let request_timeout = Duration::from_secs(app.cfg.http.request_timeout_secs);
    Router::new()
        .route("/v1/ws", get(crate::ws::upgrade))
        .route("/v1/users", post(create_user))
        .route("/v1/users/{user}", get(get_user))
        .route("/v1/sessions", post(create_session).delete(delete_session))
        .route("/v1/friends", get(list_friends))
        .route("/v1/friends/{user}", put(put_friend).delete(delete_friend))
        .route("/v1/groups", post(create_group))
        .route("/v1/groups/{group}", get(get_group))
        .route("/v1/groups/{group}/members", post(add_members))
        .route("/v1/groups/{group}/members/{user}", delete(remove_member))
        .route("/v1/conversations", get(conversations))
        .route("/v1/conversations/{conv}/messages", get(messages))
        .route("/v1/messages", post(send_message))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
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
        self.with_status(status)
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
fn bearer(app: &App, headers: &HeaderMap) -> ApiResult<String> {
    bearer_session(app, headers).map(|s| s.user)
}

/// The session of the bearer token.
fn bearer_session(app: &App, headers: &HeaderMap) -> ApiResult<tern_core::auth::Session> {
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
    Ok(app.core.session(token.trim())?)
}

#[derive(Deserialize)]
struct NewUserBody<'a> {
    #[serde(borrow)]
    user: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    password: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<std::borrow::Cow<'a, str>>,
}

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

#[derive(Deserialize)]
struct SessionBody<'a> {
    #[serde(borrow)]
    user: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    password: std::borrow::Cow<'a, str>,
}

async fn create_session(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: SessionBody = body(&raw)?;
    if let Err(r) = app.guard.login_attempt(&b.user, peer.ip()).await {
        return Ok(r.into_response());
    }
    let (token, expires_at) = match app.core.login(&b.user, &b.password).await {
        Ok(t) => {
            app.guard.refund_login(&b.user, peer.ip()).await;
            t
        }
        Err(e) => {
            // Only wrong credentials count as failures.
            if e.code != ErrorCode::BadCredentials {
                app.guard.refund_login(&b.user, peer.ip()).await;
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
async fn delete_session(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    let session = bearer_session(&app, &headers)?;
    app.core.revoke(&session).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Param(user): Param<String>,
) -> ApiResult<Response> {
    bearer(&app, &headers)?;
    let (user, name, online) = app.core.user_info(&user).await?;
    Ok(Json(UserInfo {
        name: Cow::Owned(name),
        online,
        user: Cow::Owned(user),
    })
    .into_response())
}

async fn put_friend(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Param(other): Param<String>,
) -> ApiResult<Response> {
    let me = bearer(&app, &headers)?;
    if let Err(r) = app.guard.friend_request(&me).await {
        return Ok(r.into_response());
    }
    let status = match app.core.friend_request(&me, &other).await? {
        FriendStatus::Requested => FriendState::Requested,
        FriendStatus::Friends => FriendState::Friends,
    };
    Ok(Json(FriendAnswer { status }).into_response())
}

async fn delete_friend(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Param(other): Param<String>,
) -> ApiResult<Response> {
    let me = bearer(&app, &headers)?;
    app.core.friend_delete(&me, &other).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_friends(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    let me = bearer(&app, &headers)?;
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

#[derive(Deserialize)]
struct SyncParams {
    since: Option<i64>,
    limit: Option<u64>,
}

async fn conversations(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: Result<Query<SyncParams>, QueryRejection>,
) -> ApiResult<Response> {
    let me = bearer(&app, &headers)?;
    let Query(q) = q.map_err(|e| invalid(format!("bad query parameters: {}", e.body_text())))?;
    let list = app.core.sync(&me, q.since, q.limit).await?;
    Ok(Json(sync_answer(&list)).into_response())
}

#[derive(Deserialize)]
struct HistoryParams {
    before_seq: Option<u64>,
    after_seq: Option<u64>,
    limit: Option<u64>,
}

async fn messages(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Param(conv): Param<String>,
    q: Result<Query<HistoryParams>, QueryRejection>,
) -> ApiResult<Response> {
    let me = bearer(&app, &headers)?;
    let Query(q) = q.map_err(|e| invalid(format!("bad query parameters: {}", e.body_text())))?;
    let msgs = app
        .core
        .history(&me, &conv, q.before_seq, q.after_seq, q.limit)
        .await?;
    Ok(Json(history_answer(&msgs)).into_response())
}

#[derive(Deserialize)]
struct SendBody<'a> {
    #[serde(borrow)]
    to: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    group: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    client_msg_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

async fn send_message(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let me = bearer(&app, &headers)?;
    if let Err(r) = app.guard.send(&me).await {
        return Ok(r.into_response());
    }
    let b: SendBody = body(&raw)?;
    let req = SendRequest {
        to: b.to.as_deref(),
        group: b.group.as_deref(),
        client_msg_id: b.client_msg_id.as_deref(),
        kind: b.kind.as_deref(),
        content: b.content,
    };
    let ok = app
        .core
        .send(
            Actor {
                user: &me,
                device: None,
            },
            req,
        )
        .await?;
    Ok(Json(send_answer(&ok)).into_response())
}

#[derive(Deserialize)]
struct NewGroupBody<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    members: Vec<std::borrow::Cow<'a, str>>,
}

async fn create_group(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let me = bearer(&app, &headers)?;
    let b: NewGroupBody = body(&raw)?;
    let members: Vec<&str> = b.members.iter().map(|m| m.as_ref()).collect();
    let view = app.core.create_group(&me, &b.name, &members).await?;
    Ok((StatusCode::CREATED, Json(group_answer(&view, false))).into_response())
}

async fn get_group(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Param(gid): Param<String>,
) -> ApiResult<Response> {
    let me = bearer(&app, &headers)?;
    let view = app.core.group(&me, &gid).await?;
    Ok(Json(group_answer(&view, true)).into_response())
}

#[derive(Deserialize)]
struct AddMembersBody<'a> {
    #[serde(borrow)]
    users: Vec<std::borrow::Cow<'a, str>>,
}

async fn add_members(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Param(gid): Param<String>,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let me = bearer(&app, &headers)?;
    let b: AddMembersBody = body(&raw)?;
    let users: Vec<&str> = b.users.iter().map(|m| m.as_ref()).collect();
    let view = app.core.add_members(&me, &gid, &users).await?;
    Ok(Json(group_answer(&view, true)).into_response())
}

async fn remove_member(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Param((gid, user)): Param<(String, String)>,
) -> ApiResult<Response> {
    let me = bearer(&app, &headers)?;
    app.core.remove_member(&me, &gid, &user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 200 when every backend answers, else 503; the body names each
/// backend this node uses and its state (and, on 503, carries the usual
/// error fields too).
async fn healthz(State(app): State<Arc<App>>) -> Response {
    let h = app.core.health().await;
    let state = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("down: {e}"),
    };
    let mut backends = serde_json::Map::new();
    backends.insert("store".into(), state(&h.store).into());
    if app.core.is_cluster() {
        backends.insert("redis".into(), state(&h.presence).into());
        backends.insert("bus".into(), state(&h.bus).into());
    }
    if h.ok() {
        return Json(json!({"status": "ok", "node": app.core.node(), "backends": backends}))
            .into_response();
    }
    let down: Vec<&str> = backends
        .iter()
        .filter(|(_, v)| v.as_str() != Some("ok"))
        .map(|(k, _)| k.as_str())
        .collect();
    let body = json!({
        "status": "unavailable",
        "code": "unavailable",
        "message": format!("backend down: {}", down.join(", ")),
        "node": app.core.node(),
        "backends": backends,
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

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
