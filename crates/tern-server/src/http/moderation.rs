//! 5.4 and blocks: a group's settings, admins, mutes and dissolution;
//! blocks. Each handler builds the typed request and runs it through
//! `dispatch::execute`; the rules live in `tern_core::roles`.

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
use tern_proto::wire::{BlocksList, ErrorBody, GroupAnswer};
use utoipa::ToSchema;

/// `PATCH /v1/groups/{group}`: each field optional.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupPatchBody<'a> {
    /// 1-128 characters.
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    /// At most `limits.content_bytes` bytes; empty clears it.
    #[serde(borrow, default)]
    announcement: Option<Cow<'a, str>>,
    /// Only the owner and admins may send while on.
    #[serde(default)]
    muted_all: Option<bool>,
}

/// `PUT /v1/groups/{group}/mutes/{user}`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct MuteBody {
    /// Muted until then (ms since the Unix epoch), a time after now.
    until: i64,
}

/// Runs a request answered with 204.
async fn no_content(app: &App, me: &Bearer, req: Request<'_>) -> ApiResult<Response> {
    execute(app, me.actor(), None, req).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn member(gid: String, user: String) -> request::GroupMember<'static> {
    request::GroupMember {
        group: Cow::Owned(gid),
        user: Cow::Owned(user),
    }
}

#[utoipa::path(
    patch,
    path = "/v1/groups/{group}",
    tag = "groups",
    security(("bearer" = [])),
    params(("group" = String, Path, description = "group id")),
    request_body = GroupPatchBody,
    responses(
        (status = 200, description = "the group after the change; each changed field writes its `system` event", body = GroupAnswer),
        (status = 400, description = "`invalid`: a bad name", body = ErrorBody),
        (status = 403, description = "`not_member`, or `forbidden`: not the owner or an admin, or the group is dissolved", body = ErrorBody),
        (status = 404, description = "`no_such_group`", body = ErrorBody),
        (status = 413, description = "`content_too_large`: the announcement", body = ErrorBody),
    )
)]
pub(super) async fn patch_group(
    State(app): State<Arc<App>>,
    Param(gid): Param<String>,
    me: Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: GroupPatchBody = body(&raw)?;
    let req = Request::GroupUpdate(request::GroupUpdate {
        group: Cow::Owned(gid),
        name: b.name,
        announcement: b.announcement,
        muted_all: b.muted_all,
    });
    Ok(execute(&app, me.actor(), None, req).await?.json())
}

#[utoipa::path(
    delete,
    path = "/v1/groups/{group}",
    tag = "groups",
    security(("bearer" = [])),
    params(("group" = String, Path, description = "group id")),
    responses(
        (status = 204, description = "dissolved (`group_dissolved`): readable by its members, every send `forbidden`"),
        (status = 403, description = "`not_member`, or `forbidden`: not the owner, or dissolved already", body = ErrorBody),
        (status = 404, description = "`no_such_group`", body = ErrorBody),
    )
)]
pub(super) async fn dissolve_group(
    State(app): State<Arc<App>>,
    Param(gid): Param<String>,
    me: Bearer,
) -> ApiResult<Response> {
    let req = Request::GroupDissolve(request::GroupDissolve {
        group: Cow::Owned(gid),
    });
    no_content(&app, &me, req).await
}

#[utoipa::path(
    put,
    path = "/v1/groups/{group}/admins/{user}",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("group" = String, Path, description = "group id"),
        ("user" = String, Path, description = "the member to make admin"),
    ),
    responses(
        (status = 204, description = "an admin (`admin_added`; nothing written if already one)"),
        (status = 403, description = "`not_member`, or `forbidden`: not the owner, the owner named, or dissolved", body = ErrorBody),
        (status = 404, description = "`no_such_group` / `no_such_user`: not a member", body = ErrorBody),
    )
)]
pub(super) async fn put_admin(
    State(app): State<Arc<App>>,
    Param((gid, user)): Param<(String, String)>,
    me: Bearer,
) -> ApiResult<Response> {
    no_content(&app, &me, Request::AdminAdd(member(gid, user))).await
}

#[utoipa::path(
    delete,
    path = "/v1/groups/{group}/admins/{user}",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("group" = String, Path, description = "group id"),
        ("user" = String, Path, description = "the admin to make a plain member"),
    ),
    responses(
        (status = 204, description = "a plain member (`admin_removed`; nothing written if not an admin)"),
        (status = 403, description = "`not_member`, or `forbidden`: not the owner, the owner named, or dissolved", body = ErrorBody),
        (status = 404, description = "`no_such_group` / `no_such_user`: not a member", body = ErrorBody),
    )
)]
pub(super) async fn delete_admin(
    State(app): State<Arc<App>>,
    Param((gid, user)): Param<(String, String)>,
    me: Bearer,
) -> ApiResult<Response> {
    no_content(&app, &me, Request::AdminRemove(member(gid, user))).await
}

#[utoipa::path(
    put,
    path = "/v1/groups/{group}/mutes/{user}",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("group" = String, Path, description = "group id"),
        ("user" = String, Path, description = "the member to mute"),
    ),
    request_body = MuteBody,
    responses(
        (status = 204, description = "muted until `until` (`member_muted`): the member's sends get `muted`"),
        (status = 400, description = "`invalid`: `until` not after now", body = ErrorBody),
        (status = 403, description = "`not_member`, or `forbidden`: not owner or admin, the owner or an admin named by an admin, or dissolved", body = ErrorBody),
        (status = 404, description = "`no_such_group` / `no_such_user`: not a member", body = ErrorBody),
    )
)]
pub(super) async fn put_mute(
    State(app): State<Arc<App>>,
    Param((gid, user)): Param<(String, String)>,
    me: Bearer,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let b: MuteBody = body(&raw)?;
    let req = Request::MuteAdd(request::MuteAdd {
        group: Cow::Owned(gid),
        user: Cow::Owned(user),
        until: b.until,
    });
    no_content(&app, &me, req).await
}

#[utoipa::path(
    delete,
    path = "/v1/groups/{group}/mutes/{user}",
    tag = "groups",
    security(("bearer" = [])),
    params(
        ("group" = String, Path, description = "group id"),
        ("user" = String, Path, description = "the member to unmute"),
    ),
    responses(
        (status = 204, description = "unmuted (`member_unmuted`; nothing written if not muted)"),
        (status = 403, description = "`not_member`, or `forbidden`: as for muting", body = ErrorBody),
        (status = 404, description = "`no_such_group` / `no_such_user`: not a member", body = ErrorBody),
    )
)]
pub(super) async fn delete_mute(
    State(app): State<Arc<App>>,
    Param((gid, user)): Param<(String, String)>,
    me: Bearer,
) -> ApiResult<Response> {
    no_content(&app, &me, Request::MuteRemove(member(gid, user))).await
}

#[utoipa::path(
    get,
    path = "/v1/blocks",
    tag = "friends",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "whom the caller blocked, sorted", body = BlocksList),
    )
)]
pub(super) async fn list_blocks(State(app): State<Arc<App>>, me: Bearer) -> ApiResult<Response> {
    Ok(execute(&app, me.actor(), None, Request::Blocks)
        .await?
        .json())
}

#[utoipa::path(
    put,
    path = "/v1/blocks/{user}",
    tag = "friends",
    security(("bearer" = [])),
    params(("user" = String, Path, description = "the user to block")),
    responses(
        (status = 204, description = "blocked: its 1:1 sends and friend requests to the caller get `blocked`, presence is hidden both ways"),
        (status = 400, description = "`invalid`: oneself", body = ErrorBody),
        (status = 403, description = "`forbidden`: `limits.blocks_max` users blocked already", body = ErrorBody),
        (status = 404, description = "`no_such_user`", body = ErrorBody),
    )
)]
pub(super) async fn put_block(
    State(app): State<Arc<App>>,
    Param(user): Param<String>,
    me: Bearer,
) -> ApiResult<Response> {
    let req = Request::BlockAdd(request::Block {
        user: Cow::Owned(user),
    });
    no_content(&app, &me, req).await
}

#[utoipa::path(
    delete,
    path = "/v1/blocks/{user}",
    tag = "friends",
    security(("bearer" = [])),
    params(("user" = String, Path, description = "the user to unblock")),
    responses(
        (status = 204, description = "not blocked (again is harmless)"),
        (status = 404, description = "`no_such_user`", body = ErrorBody),
    )
)]
pub(super) async fn delete_block(
    State(app): State<Arc<App>>,
    Param(user): Param<String>,
    me: Bearer,
) -> ApiResult<Response> {
    let req = Request::BlockRemove(request::Block {
        user: Cow::Owned(user),
    });
    no_content(&app, &me, req).await
}
