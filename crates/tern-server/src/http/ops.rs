//! Operations: `/healthz`, `/metrics` and the OpenAPI document
//! (`/v1/openapi.json`).

use super::api;
use crate::state::App;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use tern_proto::ErrorCode;
use utoipa::openapi::OpenApi;
use utoipa::ToSchema;

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
pub(super) async fn serve_document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

/// The `/healthz` body.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`; `degraded` when a backend other than the store does not
    /// answer (the node still stores and delivers); `unavailable` when the
    /// store does not answer.
    #[schema(value_type = String, pattern = "^(ok|degraded|unavailable)$")]
    status: &'static str,
    /// On 503 only: `unavailable`, as in every error body.
    #[schema(value_type = Option<String>, nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    /// When not `ok`: which backends are down.
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

/// For load balancers: 200 while the node can store (`ok`, or `degraded`
/// when Redis or the bus is down), 503 when its store does not answer;
/// the body names each backend this node uses and its state (and, on 503,
/// carries the usual error fields too).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "the node stores and delivers: every backend answers (`ok`), or all but Redis or the bus (`degraded`)", body = Health),
        (status = 503, description = "the store does not answer (`unavailable`)", body = Health),
    )
)]
pub(super) async fn healthz(State(app): State<Arc<App>>) -> Response {
    let h = app.core.health().await;
    let state = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("down: {e}"),
    };
    let mut backends = BTreeMap::new();
    backends.insert("store", state(&h.store));
    for (name, r) in &h.plumbing {
        backends.insert(name, state(r));
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
    if h.store.is_ok() {
        return Json(Health {
            status: "degraded",
            code: None,
            message: Some(format!("backend down: {}", down.join(", "))),
            node: app.core.node(),
            backends,
        })
        .into_response();
    }
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
pub(super) async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = match &app.prometheus {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The process is up and serving HTTP, whatever its backends do.
#[derive(Serialize, ToSchema)]
pub(super) struct Live {
    /// Always `ok`.
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
    /// This node's number.
    node: u16,
}

/// Liveness for orchestrators: 200 while the process serves HTTP, even
/// with every backend down (restarting it would not bring them back).
#[utoipa::path(
    get,
    path = "/livez",
    tag = "operations",
    responses(
        (status = 200, description = "the process is alive", body = Live),
    )
)]
pub(super) async fn livez(State(app): State<Arc<App>>) -> Json<Live> {
    Json(Live {
        status: "ok",
        node: app.core.node(),
    })
}
