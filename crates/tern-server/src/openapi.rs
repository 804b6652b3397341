//! The OpenAPI 3 description of the HTTP API (`GET /v1/openapi.json`).
//!
//! Each handler in `http/` carries its own `#[utoipa::path]`; the router
//! and the document (`http::document`) are built from the same list
//! (`http::api`). This module adds what every operation shares: the bearer
//! scheme, the error answers any call may get, and the document's header.

use tern_proto::wire::ErrorBody;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi as _};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Tern HTTP API",
        description = "The HTTP API of the Tern instant-messaging server (PROTOCOL.md section 3). \
            Errors are `{\"code\",\"message\"}` with the code's status. `msg_id` is a u64 written \
            as a decimal string; `ts`, `expires_at` and `updated_at` are milliseconds since the \
            Unix epoch. The WebSocket protocol (`GET /v1/ws`) is PROTOCOL.md section 2.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&Shared),
    tags(
        (name = "users"), (name = "sessions"), (name = "friends"), (name = "groups"),
        (name = "messages"), (name = "websocket"), (name = "operations"), (name = "push"),
    )
)]
struct Base;

/// The document's header and shared components, before the routes.
pub(crate) fn base() -> OpenApi {
    Base::openapi()
}

/// The bearer scheme every authenticated call names.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "`Authorization: Bearer <token>` with a token from `POST /v1/sessions` \
                         (or `tern token`)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the answers any call may get where its own description does not
/// name them: 408 `timeout` (every call), 503 `unavailable` (a backend
/// down), 401 `unauthenticated` (calls that take a token), 400 `invalid`
/// (calls with a body or parameters).
pub(crate) fn add_shared_errors(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ];
        for op in ops.into_iter().flatten() {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let takes_input =
                op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let api = path != "/v1/openapi.json" && path != "/metrics" && path != "/healthz";
            if secured {
                add(
                    op,
                    "401",
                    "`unauthenticated`: missing, bad, expired or revoked token",
                );
            }
            if takes_input || secured {
                add(
                    op,
                    "400",
                    "`invalid`: a parameter or the body does not decode",
                );
            }
            if api {
                add(op, "503", "`unavailable`: a backend does not answer");
            }
            add(
                op,
                "408",
                "`timeout`: the request was not read or answered in time",
            );
        }
    }
}

fn add(op: &mut Operation, status: &str, description: &str) {
    if op.responses.responses.contains_key(status) {
        return;
    }
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build();
    op.responses
        .responses
        .insert(status.to_owned(), response.into());
}
