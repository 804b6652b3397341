//! 5.6 account data over HTTP: `GET /v1/users/me/export`, a zip of JSON
//! documents (HTTP only: the handler calls the core directly), and
//! `DELETE /v1/users/me`, the account's erase.

use super::{body, ApiResult, Bearer, RawBody};
use crate::dispatch::execute;
use crate::state::App;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;
use tern_core::CoreError;
use tern_proto::request::{self, Request};
use tern_proto::wire::ErrorBody;

/// `DELETE /v1/users/me`: the caller's password, again.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EraseBody<'a> {
    #[serde(borrow)]
    password: Cow<'a, str>,
}

#[utoipa::path(
    delete,
    path = "/v1/users/me",
    tag = "accounts",
    security(("bearer" = [])),
    request_body = EraseBody,
    responses(
        (status = 204, description = "the account is erased: every token revoked (sockets close with 4001 on every node), profile, friends, requests and blocks removed, groups left (an owner's passes to the longest-standing member; a group with no other member is dissolved), its media released, its messages kept as `deleted_user` tombstones without content; the id stays taken and cannot log in"),
        (status = 400, description = "`invalid`: bad JSON", body = ErrorBody),
        (status = 401, description = "`bad_credentials`: a wrong password", body = ErrorBody),
        (status = 403, description = "`forbidden`: a bot (it has no password)", body = ErrorBody),
    )
)]
pub(super) async fn erase(
    State(app): State<Arc<App>>,
    me: Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: EraseBody = body(&raw)?;
    let req = Request::AccountErase(request::AccountErase {
        password: b.password,
    });
    execute(&app, me.actor(), None, req).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/v1/users/me/export",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a zip (`application/zip`): `export.json` (an index, with `truncated` when `account.export_max_messages` cut it), `profile.json`, `friends.json`, `groups.json` and one `conversations/<conv>.json` per conversation the caller can read, its messages as history shows them", content_type = "application/zip", body = Vec<u8>),
    )
)]
pub(super) async fn export(State(app): State<Arc<App>>, me: Bearer) -> ApiResult<Response> {
    let data = app
        .core
        .export(&me.0, app.cfg.account.export_max_messages)
        .await?;
    let bytes = tokio::task::spawn_blocking(move || zip_of(&data.files))
        .await
        .map_err(|_| CoreError::unavailable())?
        .map_err(|e| {
            tracing::warn!(error = %e, "building an export failed");
            CoreError::unavailable()
        })?;
    let name = format!("attachment; filename=\"tern-export-{}.zip\"", me.0);
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        bytes,
    )
        .into_response())
}

/// The documents as a zip, each pretty-printed JSON.
fn zip_of(files: &[(String, serde_json::Value)]) -> zip::result::ZipResult<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    for (name, doc) in files {
        w.start_file(name.as_str(), opts)?;
        let text = serde_json::to_vec_pretty(doc).unwrap_or_default();
        w.write_all(&text)?;
    }
    Ok(w.finish()?.into_inner())
}
