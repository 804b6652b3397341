//! 5.2: `GET /v1/search`, the same command as the `search` frame.

use super::{invalid, ApiResult, Bearer};
use crate::dispatch::execute;
use crate::state::App;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::request::{self, Request};
use tern_proto::wire::{ErrorBody, SearchAnswer};
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SearchParams {
    /// The words to find, all of them (the last also as a prefix); at most
    /// `limits.search_query_bytes` bytes.
    q: Option<String>,
    /// Only this conversation.
    conv: Option<String>,
    /// Most hits (1 to `limits.search_limit_max`, default 20).
    limit: Option<u64>,
    /// Only messages sent before this time (ms, exclusive).
    before_ts: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/search",
    tag = "messages",
    security(("bearer" = [])),
    params(SearchParams),
    responses(
        (status = 200, description = "the caller's messages that hold every word, newest first, as `search` answers", body = SearchAnswer),
        (status = 400, description = "`invalid`: `q` missing, blank or too long, or `limit` out of range", body = ErrorBody),
        (status = 403, description = "`not_member`: `conv` is not a conversation of the caller", body = ErrorBody),
    )
)]
pub(super) async fn search(
    State(app): State<Arc<App>>,
    me: Bearer,
    q: Result<Query<SearchParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = q.map_err(|e| invalid(format!("bad query parameters: {}", e.body_text())))?;
    let req = Request::Search(request::Search {
        q: Cow::Owned(p.q.ok_or_else(|| invalid("q is required"))?),
        conv: p.conv.map(Cow::Owned),
        limit: p.limit,
        before_ts: p.before_ts,
    });
    Ok(execute(&app, me.actor(), None, req).await?.json())
}
