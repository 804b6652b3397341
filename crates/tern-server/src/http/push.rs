//! 5.5 offline push registrations over HTTP (HTTP only): a device
//! registers with a provider this server has configured, or removes its
//! registration; a browser fetches the key it subscribes with. The shape
//! each provider needs is checked here (where the providers are); the
//! rest (device id, lengths, the bound per user) by the core.

use super::{body, invalid, ApiError, ApiResult, Bearer, Param, RawBody};
use crate::state::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use tern_core::{CoreError, PushTarget};
use tern_proto::wire::{ErrorBody, WebPushKey};
use tern_proto::ErrorCode;
use tern_push::{Device, ProviderKind, WebPushKeys};
use utoipa::ToSchema;

/// A Web Push subscription's keys, as `PushSubscription.toJSON()` gives
/// them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeysBody {
    /// The browser's P-256 public key (base64url).
    p256dh: String,
    /// The 16-byte auth secret (base64url).
    auth: String,
}

/// `PUT /v1/push/{device}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushBody {
    /// `fcm`, `apns`, `webpush` or `webhook`: one this server has
    /// configured.
    provider: String,
    /// The device token (`fcm`, `apns`, `webhook`; at most 4096 bytes).
    #[serde(default)]
    token: Option<String>,
    /// `webpush`: the subscription's endpoint (`https://` or `http://`,
    /// at most 2048 bytes).
    #[serde(default)]
    endpoint: Option<String>,
    /// `webpush`: the subscription's keys.
    #[serde(default)]
    keys: Option<KeysBody>,
}

#[utoipa::path(
    put,
    path = "/v1/push/{device}",
    tag = "push",
    security(("bearer" = [])),
    params(("device" = String, Path, description = "the device id (1-64 of `[A-Za-z0-9_.-]`); registering it again replaces its registration")),
    request_body = PushBody,
    responses(
        (status = 204, description = "registered: while the caller has no device online, each message that reaches it is pushed here"),
        (status = 400, description = "`invalid`: a provider this server has not configured, a missing token, endpoint or keys, keys that do not decode, a value too long, or more devices than `push.max_devices`", body = ErrorBody),
    )
)]
pub(super) async fn put_push(
    State(app): State<Arc<App>>,
    Param(device): Param<String>,
    me: Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: PushBody = body(&raw)?;
    let Some(provider) = ProviderKind::parse(&b.provider) else {
        return Err(invalid(
            "provider must be one of fcm, apns, webpush, webhook",
        ));
    };
    let keys = b.keys.map(|k| WebPushKeys {
        p256dh: k.p256dh,
        auth: k.auth,
    });
    // What the provider needs: a token, or an endpoint and keys that
    // decode.
    let check = Device {
        user: me.0.clone(),
        device: device.clone(),
        provider,
        token: b.token.clone(),
        endpoint: b.endpoint.clone(),
        keys: keys.clone(),
    };
    check.check().map_err(invalid)?;
    let webpush = provider == ProviderKind::Webpush;
    let target = PushTarget {
        provider: provider.as_str().to_owned(),
        token: if webpush {
            String::new()
        } else {
            b.token.unwrap_or_default()
        },
        endpoint: if webpush {
            b.endpoint.unwrap_or_default()
        } else {
            String::new()
        },
        p256dh: keys
            .as_ref()
            .filter(|_| webpush)
            .map(|k| k.p256dh.clone())
            .unwrap_or_default(),
        auth: keys.filter(|_| webpush).map(|k| k.auth).unwrap_or_default(),
    };
    app.core.push_register(&me.0, me.1, &device, target).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/push/{device}",
    tag = "push",
    security(("bearer" = [])),
    params(("device" = String, Path, description = "a device id the caller registered")),
    responses(
        (status = 204, description = "removed: the device gets no more pushes"),
        (status = 404, description = "`not_found`: the caller has no registration of this device", body = ErrorBody),
    )
)]
pub(super) async fn delete_push(
    State(app): State<Arc<App>>,
    Param(device): Param<String>,
    me: Bearer,
) -> ApiResult<Response> {
    app.core.push_unregister(&me.0, &device).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/v1/push/webpush-key",
    tag = "push",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the VAPID public key a browser subscribes with", body = WebPushKey),
        (status = 404, description = "`not_found`: Web Push is not configured on this server", body = ErrorBody),
    )
)]
pub(super) async fn webpush_key(State(app): State<Arc<App>>, _me: Bearer) -> ApiResult<Response> {
    match &app.webpush_key {
        Some(k) => Ok(Json(WebPushKey {
            public_key: k.clone(),
        })
        .into_response()),
        None => Err(ApiError(CoreError::new(
            ErrorCode::NotFound,
            "web push is not configured on this server",
        ))),
    }
}
