//! `GET /v1/openapi.json` against the real router and real answers: every
//! documented route is routed, every route the server has is documented,
//! and what the server answers validates against the document's schemas.

use crate::common::Server;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The API as PROTOCOL.md section 3 lists it, plus the WebSocket upgrade.
const API: &[(&str, &str)] = &[
    ("GET", "/v1/ws"),
    ("POST", "/v1/users"),
    ("GET", "/v1/users/{user}"),
    ("POST", "/v1/sessions"),
    ("DELETE", "/v1/sessions"),
    ("GET", "/v1/friends"),
    ("PUT", "/v1/friends/{user}"),
    ("DELETE", "/v1/friends/{user}"),
    ("POST", "/v1/groups"),
    ("GET", "/v1/groups/{group}"),
    ("POST", "/v1/groups/{group}/members"),
    ("DELETE", "/v1/groups/{group}/members/{user}"),
    ("GET", "/v1/conversations"),
    ("GET", "/v1/conversations/{conv}/messages"),
    ("POST", "/v1/messages"),
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
    // 5.4 and blocks
    ("PATCH", "/v1/groups/{group}"),
    ("DELETE", "/v1/groups/{group}"),
    ("PUT", "/v1/groups/{group}/admins/{user}"),
    ("DELETE", "/v1/groups/{group}/admins/{user}"),
    ("PUT", "/v1/groups/{group}/mutes/{user}"),
    ("DELETE", "/v1/groups/{group}/mutes/{user}"),
    ("GET", "/v1/blocks"),
    ("PUT", "/v1/blocks/{user}"),
    ("DELETE", "/v1/blocks/{user}"),
    // 5.1
    ("PATCH", "/v1/conversations/{conv}/messages/{seq}"),
    (
        "PUT",
        "/v1/conversations/{conv}/messages/{seq}/reactions/{emoji}",
    ),
    (
        "DELETE",
        "/v1/conversations/{conv}/messages/{seq}/reactions/{emoji}",
    ),
    // 5.3
    ("PATCH", "/v1/users/me"),
    // 5.6
    ("DELETE", "/v1/users/me"),
    ("PUT", "/v1/conversations/{conv}/settings"),
    ("GET", "/v1/sessions"),
    ("DELETE", "/v1/sessions/{session}"),
    // 5.2
    ("GET", "/v1/search"),
    // 5.5
    ("POST", "/v1/media"),
    ("GET", "/v1/media/{media}"),
    ("PUT", "/v1/push/{device}"),
    ("DELETE", "/v1/push/{device}"),
    ("GET", "/v1/push/webpush-key"),
    // 5.6
    ("GET", "/v1/scheduled"),
    ("DELETE", "/v1/scheduled/{id}"),
    ("GET", "/v1/users/me/export"),
];

/// The web client's pages and assets (`GET /` and what it loads): routed,
/// but not part of the API, so not in the document.
const WEB_CLIENT: &[&str] = &[
    "/",
    "/web/app.js",
    "/web/conn.js",
    "/web/style.css",
    "/web/icon.svg",
];

/// Paths that are no route at all: 404 `not_found`.
const NO_ROUTE: &[&str] = &[
    "/v1",
    "/v1/nope",
    "/v1/users/a/b",
    "/v2/users",
    "/v1/groups/g/x",
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];

async fn document(s: &Server) -> Value {
    let r = s.http.get(s.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200, "openapi.json is served without a token");
    assert!(r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json")));
    r.json().await.unwrap()
}

/// (method, path) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().unwrap() {
            if METHODS.contains(&method.to_uppercase().as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// A concrete path for a template: each `{param}` becomes `x`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

async fn request(s: &Server, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = s.http.request(m, s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn document_and_router_list_the_same_routes() {
    let s = Server::start().await;
    let doc = document(&s).await;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document"
    );
    let documented = operations(&doc);
    let listed: BTreeSet<(String, String)> = API
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, listed, "document vs the API list");
    for web in WEB_CLIENT {
        assert!(doc["paths"].get(*web).is_none(), "{web} is documented");
        let r = s.http.get(s.url(web)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{web} is the web client's");
    }

    // Both directions on the real router, for every path it has: each
    // documented method is routed, every other one is 405.
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = concrete(path);
        for method in METHODS {
            let (st, body) = request(&s, method, &url, None).await;
            let code = body["code"].as_str();
            if documented.contains(&(method.to_string(), path.clone())) {
                assert!(
                    !(st == 404 && code == Some("not_found")) && st != 405,
                    "{method} {path} is documented but not routed: {st} {body}"
                );
                // What the document says about the token holds.
                let op = &doc["paths"][path][method.to_lowercase()];
                let secured = op["security"].as_array().is_some_and(|a| !a.is_empty());
                if secured {
                    assert_eq!(
                        (st, code),
                        (401, Some("unauthenticated")),
                        "{method} {path} without a token"
                    );
                } else {
                    assert_ne!(
                        code,
                        Some("unauthenticated"),
                        "{method} {path} asks for a token the document does not name"
                    );
                }
            } else {
                assert_eq!(
                    (st, code),
                    (405, Some("method_not_allowed")),
                    "{method} {path} is routed but not documented: {body}"
                );
            }
        }
    }
    // And no route outside the document (the web client's aside).
    for path in NO_ROUTE {
        for method in METHODS {
            let (st, body) = request(&s, method, path, None).await;
            assert_eq!(
                (st, body["code"].as_str()),
                (404, Some("not_found")),
                "{method} {path} is routed but not documented"
            );
        }
    }
    s.stop().await;
}

/// Validates answers against the operation's documented response.
struct Checker {
    doc: Value,
}

impl Checker {
    /// Checks that `status` is documented for `method path` and that
    /// `body` and `headers` are what the document says.
    fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &Value,
    ) {
        let op = &self.doc["paths"][path][method.to_lowercase()];
        assert!(op.is_object(), "{method} {path} not documented");
        let resp = &op["responses"][status.to_string()];
        assert!(
            resp.is_object(),
            "{method} {path}: status {status} not documented (body {body})"
        );
        for (name, _) in resp["headers"].as_object().into_iter().flatten() {
            assert!(
                headers.contains_key(name.as_str()),
                "{method} {path} {status}: documented header {name} missing"
            );
        }
        let Some(content) = resp["content"].as_object() else {
            assert!(
                body.is_null(),
                "{method} {path} {status}: undocumented body {body}"
            );
            return;
        };
        let Some(media) = content.get("application/json") else {
            return;
        };
        let mut schema = media["schema"].clone();
        schema["components"] = self.doc["components"].clone();
        schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{method} {path} {status}: bad schema: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: {body} does not match the document: {errors:?}"
        );
    }
}

/// Sends a request and checks the answer against the document; returns
/// the status and body.
async fn call(
    c: &Checker,
    s: &Server,
    method: &str,
    template: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = s.http.request(m, s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"))
    };
    c.check(method, template, st, &headers, &v);
    (st, v)
}

#[tokio::test]
async fn real_answers_match_the_document() {
    let s = Server::start_with(|cfg| cfg.rate.login_user_failures = 2).await;
    let c = Checker {
        doc: document(&s).await,
    };
    let new_user = |u: &str| json!({"user": u, "password": "password1", "name": format!("{u}!")});
    for u in ["alice", "bob", "carol"] {
        let (st, _) = call(
            &c,
            &s,
            "POST",
            "/v1/users",
            "/v1/users",
            None,
            Some(new_user(u)),
        )
        .await;
        assert_eq!(st, 201);
    }
    let (st, _) = call(
        &c,
        &s,
        "POST",
        "/v1/users",
        "/v1/users",
        None,
        Some(new_user("alice")),
    )
    .await;
    assert_eq!(st, 409);
    let short = json!({"user": "dave", "password": "short"});
    let (st, _) = call(&c, &s, "POST", "/v1/users", "/v1/users", None, Some(short)).await;
    assert_eq!(st, 400);

    let login = |u: &str, p: &str| json!({"user": u, "password": p});
    let (st, v) = call(
        &c,
        &s,
        "POST",
        "/v1/sessions",
        "/v1/sessions",
        None,
        Some(login("alice", "password1")),
    )
    .await;
    assert_eq!(st, 200);
    let alice = v["token"].as_str().unwrap().to_owned();
    let (_, v) = call(
        &c,
        &s,
        "POST",
        "/v1/sessions",
        "/v1/sessions",
        None,
        Some(login("bob", "password1")),
    )
    .await;
    let bob = v["token"].as_str().unwrap().to_owned();
    // Failed logins, then 429 with Retry-After.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (st, _) = call(
            &c,
            &s,
            "POST",
            "/v1/sessions",
            "/v1/sessions",
            None,
            Some(login("carol", "wrong-password")),
        )
        .await;
        statuses.push(st);
    }
    assert_eq!(statuses, [401, 401, 429]);

    let (st, v) = call(
        &c,
        &s,
        "GET",
        "/v1/users/{user}",
        "/v1/users/bob",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!((st, v["name"].as_str()), (200, Some("bob!")));
    let (st, _) = call(
        &c,
        &s,
        "GET",
        "/v1/users/{user}",
        "/v1/users/nobody",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = call(
        &c,
        &s,
        "GET",
        "/v1/users/{user}",
        "/v1/users/bob",
        Some("bad-token"),
        None,
    )
    .await;
    assert_eq!(st, 401);

    let (st, _) = call(
        &c,
        &s,
        "PUT",
        "/v1/friends/{user}",
        "/v1/friends/bob",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, v) = call(
        &c,
        &s,
        "PUT",
        "/v1/friends/{user}",
        "/v1/friends/alice",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("friends")));
    let (st, _) = call(
        &c,
        &s,
        "PUT",
        "/v1/friends/{user}",
        "/v1/friends/carol",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, v) = call(
        &c,
        &s,
        "GET",
        "/v1/friends",
        "/v1/friends",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!((st, v["outgoing"][0].as_str()), (200, Some("carol")));
    let (st, _) = call(
        &c,
        &s,
        "DELETE",
        "/v1/friends/{user}",
        "/v1/friends/carol",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(st, 204);

    let group = json!({"name": "launch", "members": ["bob", "carol"]});
    let (st, v) = call(
        &c,
        &s,
        "POST",
        "/v1/groups",
        "/v1/groups",
        Some(&alice),
        Some(group),
    )
    .await;
    assert_eq!(st, 201);
    let gid = v["group"].as_str().unwrap().to_owned();
    let (st, _) = call(
        &c,
        &s,
        "GET",
        "/v1/groups/{group}",
        &format!("/v1/groups/{gid}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = call(
        &c,
        &s,
        "GET",
        "/v1/groups/{group}",
        "/v1/groups/nope",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = call(
        &c,
        &s,
        "DELETE",
        "/v1/groups/{group}/members/{user}",
        &format!("/v1/groups/{gid}/members/carol"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = call(
        &c,
        &s,
        "POST",
        "/v1/groups/{group}/members",
        &format!("/v1/groups/{gid}/members"),
        Some(&bob),
        Some(json!({"users": ["carol"]})),
    )
    .await;
    assert_eq!(st, 200);

    let dm = json!({"to": "bob", "client_msg_id": "m1", "kind": "text", "content": "hello"});
    let (st, v) = call(
        &c,
        &s,
        "POST",
        "/v1/messages",
        "/v1/messages",
        Some(&alice),
        Some(dm.clone()),
    )
    .await;
    assert_eq!(st, 200);
    assert!(v["msg_id"].is_string(), "msg_id is a decimal string: {v}");
    let (st, v) = call(
        &c,
        &s,
        "POST",
        "/v1/messages",
        "/v1/messages",
        Some(&alice),
        Some(dm),
    )
    .await;
    assert_eq!((st, v["duplicate"].as_bool()), (200, Some(true)));
    let gm = json!({"group": gid, "client_msg_id": "m2", "kind": "image", "content": {"url": "https://x/y.png", "w": 640, "h": 480}});
    let (st, _) = call(
        &c,
        &s,
        "POST",
        "/v1/messages",
        "/v1/messages",
        Some(&bob),
        Some(gm),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = call(
        &c,
        &s,
        "POST",
        "/v1/messages",
        "/v1/messages",
        Some(&bob),
        Some(json!({"to": "bob"})),
    )
    .await;
    assert_eq!(st, 400);

    let (st, v) = call(
        &c,
        &s,
        "GET",
        "/v1/conversations",
        "/v1/conversations",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!((st, v["convs"].as_array().map(Vec::len)), (200, Some(2)));
    let (st, v) = call(
        &c,
        &s,
        "GET",
        "/v1/conversations",
        "/v1/conversations?limit=abc",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = call(
        &c,
        &s,
        "GET",
        "/v1/conversations/{conv}/messages",
        "/v1/conversations/dm:alice:bob/messages?limit=10",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!((st, v["msgs"].as_array().map(Vec::len)), (200, Some(1)));
    let history = format!("/v1/conversations/group:{gid}/messages");
    let (st, v) = call(
        &c,
        &s,
        "GET",
        "/v1/conversations/{conv}/messages",
        &history,
        Some(&bob),
        None,
    )
    .await;
    let image = v["msgs"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["kind"] == "image"));
    assert_eq!(
        (st, image.map(|m| m["content"]["w"].as_u64())),
        (200, Some(Some(640))),
        "{v}"
    );
    let erin = s.user("erin").await;
    let (st, _) = call(
        &c,
        &s,
        "GET",
        "/v1/conversations/{conv}/messages",
        &history,
        Some(&erin),
        None,
    )
    .await;
    assert_eq!(st, 403);

    let (st, _) = call(&c, &s, "GET", "/healthz", "/healthz", None, None).await;
    assert_eq!(st, 200);
    let (st, _) = call(&c, &s, "GET", "/livez", "/livez", None, None).await;
    assert_eq!(st, 200);
    let (st, _) = call(
        &c,
        &s,
        "DELETE",
        "/v1/sessions",
        "/v1/sessions",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = call(
        &c,
        &s,
        "GET",
        "/v1/friends",
        "/v1/friends",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(st, 401);
    s.stop().await;
}

/// Every operation of the served document is in docs/PROTOCOL.md's table
/// of section 3, as `` `METHOD /path` ``: a route added without its line
/// there fails here.
#[test]
fn every_operation_is_in_the_protocol_reference() {
    let doc = serde_json::to_value(tern_server::openapi_document()).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PROTOCOL.md");
    let text = std::fs::read_to_string(path).expect("docs/PROTOCOL.md");
    let missing: Vec<String> = operations(&doc)
        .into_iter()
        .map(|(method, path)| format!("| `{method} {path}`"))
        .filter(|row| !text.contains(row.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/PROTOCOL.md section 3 lacks rows {missing:#?}"
    );
}

/// Each typed request that HTTP carries names, in `Request::http`, an
/// operation of the document, with every path parameter filled in: what
/// the SDK sends is what the server routes.
#[test]
fn request_calls_are_documented_operations() {
    use std::borrow::Cow::Borrowed as c;
    use tern_proto::request::{self as r, Request};
    let doc = serde_json::to_value(tern_server::openapi_document()).unwrap();
    let documented = operations(&doc);
    let requests = [
        Request::UserGet(r::UserGet { user: c("u") }),
        Request::SessionEnd(r::SessionEnd { token: c("t") }),
        Request::Friends,
        Request::FriendAdd(r::FriendAdd { user: c("u") }),
        Request::FriendDelete(r::FriendDelete { user: c("u") }),
        Request::GroupCreate(r::GroupCreate {
            name: c("n"),
            members: vec![],
        }),
        Request::GroupGet(r::GroupGet { group: c("g") }),
        Request::MembersAdd(r::MembersAdd {
            group: c("g"),
            users: vec![c("u")],
        }),
        Request::MemberRemove(r::MemberRemove {
            group: c("g"),
            user: c("u"),
        }),
        Request::Sync(r::Sync::default()),
        Request::History(r::History {
            conv: c("dm:u:v"),
            before_seq: None,
            after_seq: None,
            limit: None,
        }),
        Request::Send(r::Send {
            to: Some(c("u")),
            group: None,
            client_msg_id: c("m"),
            kind: c("text"),
            content: Box::leak(serde_json::value::RawValue::from_string("1".into()).unwrap()),
            reply_to: Some(1),
            mentions: None,
            at: Some(2),
        }),
        Request::Edit(r::Edit {
            conv: c("dm:u:v"),
            seq: 1,
            content: Box::leak(serde_json::value::RawValue::from_string("\"x\"".into()).unwrap()),
        }),
        Request::React(r::React {
            conv: c("dm:u:v"),
            seq: 1,
            emoji: c("👍"),
            on: true,
        }),
        Request::React(r::React {
            conv: c("dm:u:v"),
            seq: 1,
            emoji: c("👍"),
            on: false,
        }),
    ];
    for req in requests {
        let call = req.http().expect("an HTTP request");
        let op = (call.method.to_owned(), call.route.to_owned());
        assert!(documented.contains(&op), "{op:?} is not documented");
        assert!(!call.path.contains('{'), "{}", call.path);
        let segs = |p: &str| p.split('/').count();
        assert_eq!(segs(&call.path), segs(call.route), "{}", call.path);
        let op = &doc["paths"][call.route][call.method.to_lowercase()];
        assert_eq!(
            call.body.is_some(),
            op.get("requestBody").is_some(),
            "{} {}",
            call.method,
            call.route
        );
    }
}
