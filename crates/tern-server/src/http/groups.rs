//! Groups: creating one, reading it, adding and removing members.

use super::{body, ApiResult, Bearer, Param, RawBody};
use crate::dispatch::execute;
use crate::state::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::request::{self, Request};
use tern_proto::wire::{ErrorBody, GroupAnswer};
use utoipa::ToSchema;

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
pub(super) async fn create_group(
    State(app): State<Arc<App>>,
    me: Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: NewGroupBody = body(&raw)?;
    let req = Request::GroupCreate(request::GroupCreate {
        name: b.name,
        members: b.members,
    });
    Ok(execute(&app, me.actor(), None, req)
        .await?
        .json_with(StatusCode::CREATED))
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
pub(super) async fn get_group(
    State(app): State<Arc<App>>,
    Param(gid): Param<String>,
    me: Bearer,
) -> ApiResult<Response> {
    let req = Request::GroupGet(request::GroupGet {
        group: Cow::Owned(gid),
    });
    Ok(execute(&app, me.actor(), None, req).await?.json())
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
pub(super) async fn add_members(
    State(app): State<Arc<App>>,
    Param(gid): Param<String>,
    me: Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: AddMembersBody = body(&raw)?;
    let req = Request::MembersAdd(request::MembersAdd {
        group: Cow::Owned(gid),
        users: b.users,
    });
    Ok(execute(&app, me.actor(), None, req).await?.json())
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
        (status = 204, description = "removed (the owner removes anyone, admins plain members, anyone removes self)"),
        (status = 403, description = "`forbidden` / `not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_group`", body = ErrorBody),
    )
)]
pub(super) async fn remove_member(
    State(app): State<Arc<App>>,
    Param((gid, user)): Param<(String, String)>,
    me: Bearer,
) -> ApiResult<Response> {
    let req = Request::MemberRemove(request::MemberRemove {
        group: Cow::Owned(gid),
        user: Cow::Owned(user),
    });
    execute(&app, me.actor(), None, req).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
