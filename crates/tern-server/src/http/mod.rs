//! The HTTP API (PROTOCOL.md 3). Each authenticated handler extracts its
//! path, query and body and the caller (`Bearer`), builds the typed
//! request and runs it through `dispatch::execute`; the logic lives in
//! `tern-core`. This module holds the route list ([`api`]), the router,
//! the error answers and the extractors; the handlers are grouped by
//! concern: `accounts` (users, sessions), `friends`, `groups`,
//! `messages` (conversations, history, send) and `ops` (health, metrics,
//! the OpenAPI document).

mod accounts;
mod friends;
mod groups;
mod messages;
mod ops;
// 5.4 and blocks
mod moderation;
// 5.1
mod edits;
// 5.3 profiles, conversation settings, sessions
mod settings;
// 5.2
mod search;
// 5.5 media
pub(crate) mod media;
// 5.5 offline push registrations
mod push;
// 5.6 scheduled messages
mod scheduled;
// 5.6 account data
mod account;

use crate::state::App;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tern_core::{Actor, CoreError};
use tern_proto::wire::ErrorBody;
use tern_proto::ErrorCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use ops::document;

/// Every route of the API with its OpenAPI description: the router and
/// `/v1/openapi.json` come from this one list, so neither can miss a route
/// the other has.
pub(crate) fn api() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(crate::ws::upgrade))
        .routes(routes!(accounts::create_user))
        .routes(routes!(accounts::get_user))
        .routes(routes!(
            accounts::create_session,
            accounts::delete_session,
            settings::list_sessions
        ))
        .routes(routes!(friends::list_friends))
        .routes(routes!(friends::put_friend, friends::delete_friend))
        .routes(routes!(groups::create_group))
        .routes(routes!(groups::get_group))
        .routes(routes!(groups::add_members))
        .routes(routes!(groups::remove_member))
        .routes(routes!(messages::conversations))
        .routes(routes!(messages::messages))
        .routes(routes!(messages::send_message))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::livez))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::serve_document))
        // 5.4 and blocks
        .routes(routes!(moderation::patch_group, moderation::dissolve_group))
        .routes(routes!(moderation::put_admin, moderation::delete_admin))
        .routes(routes!(moderation::put_mute, moderation::delete_mute))
        .routes(routes!(moderation::list_blocks))
        .routes(routes!(moderation::put_block, moderation::delete_block))
        // 5.1
        .routes(routes!(edits::edit_message))
        .routes(routes!(edits::put_reaction, edits::delete_reaction))
        // 5.3
        .routes(routes!(settings::patch_me, account::erase))
        .routes(routes!(settings::put_conv_settings))
        .routes(routes!(settings::delete_one_session))
        // 5.2
        .routes(routes!(search::search))
        // 5.5
        .routes(routes!(media::upload_media))
        .routes(routes!(media::get_media))
        .routes(routes!(push::put_push, push::delete_push))
        .routes(routes!(push::webpush_key))
        // 5.6
        .routes(routes!(scheduled::list_scheduled))
        .routes(routes!(scheduled::cancel_scheduled))
        .routes(routes!(account::export))
}

pub fn router(app: Arc<App>) -> Router {
    let body_bytes = app.cfg.http.body_bytes;
    let request_timeout = Duration::from_secs(app.cfg.http.request_timeout_secs);
    let (routes, _) = api().split_for_parts();
    routes
        .merge(crate::web::router(crate::web::Settings {
            recall_window_secs: app.cfg.delivery.recall_window_secs,
            edit_window_secs: app.cfg.limits.edit_window_secs,
            media_max_bytes: app.cfg.media.max_bytes,
        }))
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

/// The caller's user id, from the `Authorization: Bearer` token; a handler
/// that takes it answers 401 `unauthenticated` without one.
pub(crate) struct Bearer(pub String, pub u128);

impl FromRequestParts<Arc<App>> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        let s = app.core.session(token).await?;
        Ok(Bearer(s.user, s.id))
    }
}

impl Bearer {
    /// The caller as the core's actor (HTTP requests have no device).
    fn actor(&self) -> Actor<'_> {
        Actor {
            user: &self.0,
            device: None,
            session: self.1,
        }
    }
}

/// The token of the `Authorization: Bearer` header, unchecked.
fn bearer_token(headers: &HeaderMap) -> ApiResult<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError(CoreError::new(
                ErrorCode::Unauthenticated,
                "missing bearer token",
            ))
        })
}
