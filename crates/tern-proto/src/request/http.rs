//! The HTTP form of a request (PROTOCOL.md 3): the method, path, query
//! and body a client sends for a command an HTTP route carries. The
//! server's routes take the same shapes (a test checks each route against
//! the OpenAPI document).

use super::Request;
use serde::Serialize;

/// A request as an HTTP call: what a client sends besides its
/// `Authorization: Bearer` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// `GET`, `PUT`, `POST`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The route as the API documents it, a `{name}` for each path
    /// parameter: `/v1/friends/{user}`.
    pub route: &'static str,
    /// The route with its parameters filled in.
    pub path: String,
    /// The query parameters that are set, in order.
    pub query: Vec<(&'static str, String)>,
    /// The JSON body, for a route that takes one.
    pub body: Option<String>,
}

/// A request body as JSON text.
fn json<T: Serialize>(body: &T) -> String {
    serde_json::to_string(body).expect("a request body serializes")
}

/// A path segment with every byte but the unreserved ones percent-encoded
/// (an emoji in a reaction's path).
pub fn percent(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() * 3);
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Request<'_> {
    /// The HTTP call that carries this request (PROTOCOL.md 3), the
    /// caller's bearer token aside; `None` for a command only WebSocket
    /// carries.
    pub fn http(&self) -> Option<HttpCall> {
        let call = |method, route, path: String| HttpCall {
            method,
            route,
            path,
            query: Vec::new(),
            body: None,
        };
        let mut query = Vec::new();
        let mut opt = |name: &'static str, v: Option<String>| {
            if let Some(v) = v {
                query.push((name, v));
            }
        };
        Some(match self {
            Request::Send(_) => {
                let mut frame = self.clone().into_frame(None);
                frame.ty = None;
                HttpCall {
                    body: Some(json(&frame)),
                    ..call("POST", "/v1/messages", "/v1/messages".into())
                }
            }
            Request::Sync(s) => {
                opt("since", s.since.map(|v| v.to_string()));
                opt("limit", s.limit.map(|v| v.to_string()));
                HttpCall {
                    query,
                    ..call("GET", "/v1/conversations", "/v1/conversations".into())
                }
            }
            Request::History(h) => {
                opt("before_seq", h.before_seq.map(|v| v.to_string()));
                opt("after_seq", h.after_seq.map(|v| v.to_string()));
                opt("limit", h.limit.map(|v| v.to_string()));
                let path = format!("/v1/conversations/{}/messages", h.conv);
                HttpCall {
                    query,
                    ..call("GET", "/v1/conversations/{conv}/messages", path)
                }
            }
            Request::Search(q) => {
                opt("q", Some(q.q.to_string()));
                opt("conv", q.conv.as_ref().map(|c| c.to_string()));
                opt("limit", q.limit.map(|v| v.to_string()));
                opt("before_ts", q.before_ts.map(|v| v.to_string()));
                HttpCall {
                    query,
                    ..call("GET", "/v1/search", "/v1/search".into())
                }
            }
            Request::UserGet(u) => call("GET", "/v1/users/{user}", format!("/v1/users/{}", u.user)),
            Request::SessionEnd(_) => call("DELETE", "/v1/sessions", "/v1/sessions".into()),
            Request::Friends => call("GET", "/v1/friends", "/v1/friends".into()),
            Request::FriendAdd(f) => call(
                "PUT",
                "/v1/friends/{user}",
                format!("/v1/friends/{}", f.user),
            ),
            Request::FriendDelete(f) => call(
                "DELETE",
                "/v1/friends/{user}",
                format!("/v1/friends/{}", f.user),
            ),
            Request::GroupCreate(g) => HttpCall {
                body: Some(json(g)),
                ..call("POST", "/v1/groups", "/v1/groups".into())
            },
            Request::GroupGet(g) => call(
                "GET",
                "/v1/groups/{group}",
                format!("/v1/groups/{}", g.group),
            ),
            Request::MembersAdd(m) => HttpCall {
                body: Some(json(m)),
                ..call(
                    "POST",
                    "/v1/groups/{group}/members",
                    format!("/v1/groups/{}/members", m.group),
                )
            },
            Request::MemberRemove(m) => call(
                "DELETE",
                "/v1/groups/{group}/members/{user}",
                format!("/v1/groups/{}/members/{}", m.group, m.user),
            ),
            // 5.4 and blocks
            Request::GroupUpdate(g) => HttpCall {
                body: Some(json(g)),
                ..call(
                    "PATCH",
                    "/v1/groups/{group}",
                    format!("/v1/groups/{}", g.group),
                )
            },
            Request::GroupDissolve(g) => call(
                "DELETE",
                "/v1/groups/{group}",
                format!("/v1/groups/{}", g.group),
            ),
            Request::AdminAdd(m) => call(
                "PUT",
                "/v1/groups/{group}/admins/{user}",
                format!("/v1/groups/{}/admins/{}", m.group, m.user),
            ),
            Request::AdminRemove(m) => call(
                "DELETE",
                "/v1/groups/{group}/admins/{user}",
                format!("/v1/groups/{}/admins/{}", m.group, m.user),
            ),
            Request::MuteAdd(m) => HttpCall {
                body: Some(json(m)),
                ..call(
                    "PUT",
                    "/v1/groups/{group}/mutes/{user}",
                    format!("/v1/groups/{}/mutes/{}", m.group, m.user),
                )
            },
            Request::MuteRemove(m) => call(
                "DELETE",
                "/v1/groups/{group}/mutes/{user}",
                format!("/v1/groups/{}/mutes/{}", m.group, m.user),
            ),
            Request::Blocks => call("GET", "/v1/blocks", "/v1/blocks".into()),
            Request::BlockAdd(b) => {
                call("PUT", "/v1/blocks/{user}", format!("/v1/blocks/{}", b.user))
            }
            Request::BlockRemove(b) => call(
                "DELETE",
                "/v1/blocks/{user}",
                format!("/v1/blocks/{}", b.user),
            ),
            // 5.1
            Request::Edit(e) => HttpCall {
                body: Some(json(&serde_json::json!({ "content": e.content }))),
                ..call(
                    "PATCH",
                    "/v1/conversations/{conv}/messages/{seq}",
                    format!("/v1/conversations/{}/messages/{}", e.conv, e.seq),
                )
            },
            Request::React(r) => call(
                if r.on { "PUT" } else { "DELETE" },
                "/v1/conversations/{conv}/messages/{seq}/reactions/{emoji}",
                format!(
                    "/v1/conversations/{}/messages/{}/reactions/{}",
                    r.conv,
                    r.seq,
                    percent(&r.emoji)
                ),
            ),
            // 5.3
            Request::ProfileUpdate(p) => HttpCall {
                body: Some(json(p)),
                ..call("PATCH", "/v1/users/me", "/v1/users/me".into())
            },
            Request::ConvSettingsSet(c) => HttpCall {
                body: Some(json(c)),
                ..call(
                    "PUT",
                    "/v1/conversations/{conv}/settings",
                    format!("/v1/conversations/{}/settings", c.conv),
                )
            },
            Request::Sessions => call("GET", "/v1/sessions", "/v1/sessions".into()),
            Request::SessionRevoke(r) => call(
                "DELETE",
                "/v1/sessions/{session}",
                format!("/v1/sessions/{}", r.session),
            ),
            Request::SessionsRevokeAll => HttpCall {
                query: vec![("all", "true".to_owned())],
                ..call("DELETE", "/v1/sessions", "/v1/sessions".into())
            },
            // 5.6
            Request::AccountErase(a) => HttpCall {
                body: Some(json(a)),
                ..call("DELETE", "/v1/users/me", "/v1/users/me".into())
            },
            Request::Auth(_)
            | Request::Ping
            | Request::Ack(_)
            | Request::Read(_)
            | Request::Recall(_)
            | Request::Delete(_)
            | Request::Presence(_)
            | Request::Typing(_)
            | Request::State(_)
            | Request::Join(_)
            | Request::Leave(_)
            | Request::RoomSend(_)
            | Request::ReadStatus(_) => return None,
        })
    }
}

#[cfg(test)]
mod moderation_tests {
    use super::super::*;
    use std::borrow::Cow::Borrowed as c;

    /// 5.4 and blocks: each call's method, route, path and body; none has
    /// a frame.
    #[test]
    fn moderation_and_block_calls() {
        let gm = || GroupMember {
            group: c("g1"),
            user: c("bob"),
        };
        let reqs = vec![
            Request::GroupUpdate(GroupUpdate {
                group: c("g1"),
                name: Some(c("new")),
                muted_all: Some(true),
                ..GroupUpdate::default()
            }),
            Request::GroupDissolve(GroupDissolve { group: c("g1") }),
            Request::AdminAdd(gm()),
            Request::AdminRemove(gm()),
            Request::MuteAdd(MuteAdd {
                group: c("g1"),
                user: c("bob"),
                until: 5,
            }),
            Request::MuteRemove(gm()),
            Request::Blocks,
            Request::BlockAdd(Block { user: c("bob") }),
            Request::BlockRemove(Block { user: c("bob") }),
        ];
        let calls: Vec<_> = reqs
            .iter()
            .map(|r| {
                assert_eq!(r.ty(), None, "{r:?}");
                let h = r.http().unwrap();
                (h.method, h.route, h.path, h.body)
            })
            .collect();
        let s = |v: &str| v.to_owned();
        assert_eq!(
            calls,
            [
                (
                    "PATCH",
                    "/v1/groups/{group}",
                    s("/v1/groups/g1"),
                    Some(s(r#"{"name":"new","muted_all":true}"#))
                ),
                ("DELETE", "/v1/groups/{group}", s("/v1/groups/g1"), None),
                (
                    "PUT",
                    "/v1/groups/{group}/admins/{user}",
                    s("/v1/groups/g1/admins/bob"),
                    None
                ),
                (
                    "DELETE",
                    "/v1/groups/{group}/admins/{user}",
                    s("/v1/groups/g1/admins/bob"),
                    None
                ),
                (
                    "PUT",
                    "/v1/groups/{group}/mutes/{user}",
                    s("/v1/groups/g1/mutes/bob"),
                    Some(s(r#"{"until":5}"#))
                ),
                (
                    "DELETE",
                    "/v1/groups/{group}/mutes/{user}",
                    s("/v1/groups/g1/mutes/bob"),
                    None
                ),
                ("GET", "/v1/blocks", s("/v1/blocks"), None),
                ("PUT", "/v1/blocks/{user}", s("/v1/blocks/bob"), None),
                ("DELETE", "/v1/blocks/{user}", s("/v1/blocks/bob"), None),
            ]
        );
    }
}

#[cfg(test)]
mod settings_tests {
    use super::super::*;
    use std::borrow::Cow::Borrowed as c;

    /// 5.3: each call's method, route, path, query and body; none has a
    /// frame.
    #[test]
    fn profile_settings_and_session_calls() {
        let reqs = [
            Request::ProfileUpdate(ProfileUpdate {
                name: Some(c("Al")),
                avatar: None,
            }),
            Request::ConvSettingsSet(ConvSettingsSet {
                conv: c("dm:a:b"),
                muted_until: Some(0),
                pinned: Some(true),
                retention_days: None,
            }),
            Request::Sessions,
            Request::SessionRevoke(SessionRevoke { session: c("00ff") }),
            Request::SessionsRevokeAll,
        ];
        let calls: Vec<_> = reqs
            .iter()
            .map(|r| {
                assert_eq!(r.ty(), None, "{r:?}");
                let h = r.http().unwrap();
                (h.method, h.route, h.path, h.query, h.body)
            })
            .collect();
        let s = |v: &str| v.to_owned();
        assert_eq!(
            calls,
            [
                (
                    "PATCH",
                    "/v1/users/me",
                    s("/v1/users/me"),
                    vec![],
                    Some(s(r#"{"name":"Al"}"#))
                ),
                (
                    "PUT",
                    "/v1/conversations/{conv}/settings",
                    s("/v1/conversations/dm:a:b/settings"),
                    vec![],
                    Some(s(r#"{"muted_until":0,"pinned":true}"#))
                ),
                ("GET", "/v1/sessions", s("/v1/sessions"), vec![], None),
                (
                    "DELETE",
                    "/v1/sessions/{session}",
                    s("/v1/sessions/00ff"),
                    vec![],
                    None
                ),
                (
                    "DELETE",
                    "/v1/sessions",
                    s("/v1/sessions"),
                    vec![("all", s("true"))],
                    None
                ),
            ]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::http_only;
    use super::*;
    use crate::frames::decode;

    fn parse(text: &str) -> Request<'_> {
        Request::parse(decode(text).unwrap()).unwrap()
    }

    /// Each HTTP call: method, route, path, query and body.
    #[test]
    fn http_calls() {
        let calls: Vec<_> = http_only().iter().map(|r| r.http().unwrap()).collect();
        let lines: Vec<_> = calls
            .iter()
            .map(|c| (c.method, c.route, c.path.as_str(), c.body.as_deref()))
            .collect();
        assert_eq!(
            lines,
            [
                ("GET", "/v1/users/{user}", "/v1/users/bob", None),
                ("DELETE", "/v1/sessions", "/v1/sessions", None),
                ("GET", "/v1/friends", "/v1/friends", None),
                ("PUT", "/v1/friends/{user}", "/v1/friends/bob", None),
                ("DELETE", "/v1/friends/{user}", "/v1/friends/bob", None),
                (
                    "POST",
                    "/v1/groups",
                    "/v1/groups",
                    Some(r#"{"name":"team","members":["bob"]}"#)
                ),
                ("GET", "/v1/groups/{group}", "/v1/groups/g1", None),
                (
                    "POST",
                    "/v1/groups/{group}/members",
                    "/v1/groups/g1/members",
                    Some(r#"{"users":["bob","carol"]}"#)
                ),
                (
                    "DELETE",
                    "/v1/groups/{group}/members/{user}",
                    "/v1/groups/g1/members/bob",
                    None
                ),
            ]
        );
        assert!(calls.iter().all(|c| c.query.is_empty()));

        let send =
            r#"{"type":"send","to":"bob","client_msg_id":"c1","kind":"text","content":{"a":1}}"#;
        let call = parse(send).http().unwrap();
        assert_eq!((call.method, call.path.as_str()), ("POST", "/v1/messages"));
        let body: serde_json::Value = serde_json::from_str(&call.body.unwrap()).unwrap();
        let want = r#"{"to":"bob","client_msg_id":"c1","kind":"text","content":{"a":1}}"#;
        assert_eq!(
            body,
            serde_json::from_str::<serde_json::Value>(want).unwrap()
        );

        let call = Request::Sync(super::super::Sync::default()).http().unwrap();
        assert_eq!(
            (call.method, call.path.as_str()),
            ("GET", "/v1/conversations")
        );
        assert!(call.query.is_empty() && call.body.is_none());
        let call = parse(r#"{"type":"sync","limit":5}"#).http().unwrap();
        assert_eq!(call.query, [("limit", "5".to_owned())]);

        let call = parse(r#"{"type":"history","conv":"dm:a:b","limit":5,"before_seq":9}"#)
            .http()
            .unwrap();
        assert_eq!(call.route, "/v1/conversations/{conv}/messages");
        assert_eq!(call.path, "/v1/conversations/dm:a:b/messages");
        assert_eq!(
            call.query,
            [("before_seq", "9".to_owned()), ("limit", "5".to_owned())]
        );

        for ws_only in [
            r#"{"type":"auth","token":"t"}"#,
            r#"{"type":"ack","conv":"dm:a:b","seq":3}"#,
            r#"{"type":"join","room":"r"}"#,
        ] {
            assert!(parse(ws_only).http().is_none(), "{ws_only}");
        }
    }
}
