//! 5.6 webhooks and the before-send hook, against real HTTP receivers in
//! the test (axum on 127.0.0.1:0).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, Mutex, Notify};

use crate::common::{dm, Server, WAIT};
use tern_server::config::{OnError, WebhookConfig};

const SECRET: &str = "0123456789abcdef0123456789abcdef-webhooks";

/// One POST a receiver took.
#[derive(Debug)]
struct Post {
    signature: String,
    content_type: String,
    body: String,
}

impl Post {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Shared {
    posts: mpsc::UnboundedSender<Post>,
    /// Answers 500 while above zero (counting down).
    fails: Arc<AtomicUsize>,
    /// Before-send calls of content "hang" wait for this.
    release: Arc<Notify>,
}

/// A webhook receiver (`/events`) and before-send hook (`/before-send`).
struct Receiver {
    addr: SocketAddr,
    posts: Mutex<mpsc::UnboundedReceiver<Post>>,
    fails: Arc<AtomicUsize>,
    release: Arc<Notify>,
}

async fn take(State(s): State<Shared>, headers: HeaderMap, body: String) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let _ = s.posts.send(Post {
        signature: h("tern-signature"),
        content_type: h("content-type"),
        body,
    });
    let left = s.fails.load(Ordering::SeqCst);
    if left > 0 {
        s.fails.store(left - 1, Ordering::SeqCst);
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// Decides by the message's text: `reject...`, `rewrite...`, `garbage`,
/// `bad-rewrite`, `hang` (until released, then allow); anything else is
/// allowed.
async fn before_send(State(s): State<Shared>, body: String) -> (StatusCode, String) {
    let v: Value = serde_json::from_str(&body).unwrap();
    let text = v["content"].as_str().unwrap_or_default().to_owned();
    let _ = s.posts.send(Post {
        signature: String::new(),
        content_type: String::new(),
        body,
    });
    let answer = match text.as_str() {
        t if t.starts_with("reject") => json!({"action":"reject","reason":"no swearing"}),
        t if t.starts_with("rewrite") => json!({"action":"rewrite","content":"[redacted]"}),
        "bad-rewrite" => json!({"action":"rewrite","content":{"not":"text"}}),
        "garbage" => return (StatusCode::OK, "<html>oops</html>".into()),
        "hang" => {
            s.release.notified().await;
            json!({"action":"allow"})
        }
        _ => json!({"action":"allow"}),
    };
    (StatusCode::OK, answer.to_string())
}

impl Receiver {
    async fn start() -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            posts: tx,
            fails: Arc::new(AtomicUsize::new(0)),
            release: Arc::new(Notify::new()),
        };
        let app = axum::Router::new()
            .route("/events", post(take))
            .route("/other", post(take))
            .route("/before-send", post(before_send))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            addr,
            posts: Mutex::new(rx),
            fails: shared.fails,
            release: shared.release,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next POST, or panics after `WAIT`.
    async fn next(&self) -> Post {
        tokio::time::timeout(WAIT, self.posts.lock().await.recv())
            .await
            .expect("a POST in time")
            .expect("receiver running")
    }

    /// The next POST of `event`, skipping others.
    async fn next_event(&self, event: &str) -> Post {
        loop {
            let p = self.next().await;
            if p.json()["event"] == event {
                return p;
            }
        }
    }
}

/// Checks `Tern-Signature` against the body with the secret.
fn check_signature(p: &Post, secret: &str) {
    let (t, v1) = p
        .signature
        .split_once(",v1=")
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v)))
        .unwrap_or_else(|| panic!("bad Tern-Signature {:?}", p.signature));
    let t: u64 = t.parse().expect("t in seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(t <= now && t + 3600 > now, "t is now, in seconds: {t}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", p.body).as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the signature verifies with the secret");
    assert_eq!(p.content_type, "application/json");
}

fn webhook(url: String, events: &[&str]) -> WebhookConfig {
    WebhookConfig {
        url,
        secret: SECRET.into(),
        events: events.iter().map(|e| e.to_string()).collect(),
    }
}

/// Quick retries for tests (the defaults wait a second and more).
fn quick(cfg: &mut tern_server::Config) {
    cfg.hooks.delivery.retry_base_ms = 20;
    cfg.hooks.delivery.retry_max_ms = 100;
    cfg.hooks.delivery.poll_ms = 50;
}

#[tokio::test]
async fn message_created_is_signed_and_retried_with_the_same_id() {
    let rx = Receiver::start().await;
    rx.fails.store(2, Ordering::SeqCst);
    let url = rx.url("/events");
    let s = Server::start_with(|c| {
        quick(c);
        c.webhooks = vec![webhook(url, &["message.created"])];
    })
    .await;
    let ta = s.user("wha").await;
    s.user("whb").await;
    let mut a = s.connect(&ta, "d1").await;
    let sent = a.send_text("whb", "c1", "hello hooks").await;

    // Refused twice (500), then taken: three POSTs of one event.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let p = rx.next().await;
        check_signature(&p, SECRET);
        let v = p.json();
        assert_eq!(
            v["event"], "message.created",
            "only the event asked for: {v}"
        );
        ids.push(v["id"].as_str().unwrap().to_owned());
        // The message as history shows it.
        let m = &v["data"];
        assert_eq!(m["msg_id"], sent["msg_id"]);
        assert_eq!(m["conv"], dm("wha", "whb"));
        assert_eq!(m["seq"], 1);
        assert_eq!(m["from"], "wha");
        assert_eq!(m["kind"], "text");
        assert_eq!(m["content"], "hello hooks");
        assert_eq!(m["client_msg_id"], "c1");
        assert!(v["ts"].as_i64().unwrap() > 0);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys.len(), 4, "{{event,id,ts,data}}: {v}");
    }
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one id on every retry: {ids:?}"
    );
    // A resend of the same client_msg_id is no new event.
    a.send_text("whb", "c1", "hello hooks").await;
    a.send_text("whb", "c2", "second").await;
    let next = rx.next().await.json();
    assert_eq!(next["data"]["client_msg_id"], "c2", "{next}");
    assert_ne!(next["id"], ids[0].as_str());
}

#[tokio::test]
async fn every_event_and_the_events_filter() {
    let rx = Receiver::start().await;
    let other = Receiver::start().await;
    let (all, left_only) = (rx.url("/events"), other.url("/other"));
    let s = Server::start_with(|c| {
        quick(c);
        c.webhooks = vec![webhook(all, &[]), webhook(left_only, &["member.left"])];
    })
    .await;
    let ta = s.user("wea").await;
    let tb = s.user("web").await;
    let mut created = Vec::new();
    for _ in 0..2 {
        let p = rx.next_event("user.created").await;
        check_signature(&p, SECRET);
        let v = p.json();
        assert_eq!(v["data"]["bot"], false, "{v}");
        created.push(v["data"]["user"].as_str().unwrap().to_owned());
    }
    created.sort();
    assert_eq!(created, ["wea", "web"]);
    let gid = s.new_group(&ta, "hooks", &["web"]).await;
    let mut joined: Vec<String> = Vec::new();
    for _ in 0..2 {
        let v = rx.next_event("member.joined").await.json();
        assert_eq!(v["data"]["group"], gid.as_str());
        assert_eq!(v["data"]["by"], "wea");
        joined.push(v["data"]["user"].as_str().unwrap().into());
    }
    joined.sort();
    assert_eq!(joined, ["wea", "web"]);

    let mut a = s.connect(&ta, "d1").await;
    let sent = a.send_group(&gid, "g1", "before edit").await;
    let conv = format!("group:{gid}");
    let created = rx.next_event("message.created").await.json();
    assert_eq!(created["data"]["seq"], sent["seq"]);
    a.ok(json!({"type":"edit","conv":conv,"seq":sent["seq"],"content":"after edit"}))
        .await;
    let edited = rx.next_event("message.edited").await.json();
    assert_eq!(edited["data"]["content"], "after edit");
    assert!(edited["data"]["edited_at"].as_i64().is_some());
    a.ok(json!({"type":"recall","conv":conv,"seq":sent["seq"]}))
        .await;
    let recalled = rx.next_event("message.recalled").await.json();
    assert_eq!(recalled["data"]["recalled"], true);
    assert_eq!(recalled["data"]["msg_id"], sent["msg_id"]);
    let ids = [&created["id"], &edited["id"], &recalled["id"]];
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2],
        "each event its id: {ids:?}"
    );

    s.remove_member(&tb, &gid, "web").await;
    let left = rx.next_event("member.left").await.json();
    assert_eq!(left["data"]["user"], "web");
    assert_eq!(left["data"]["by"], "web");
    assert_eq!(left["data"]["group"], gid.as_str());
    // The filtered webhook gets member.left and nothing before it.
    let p = other.next().await;
    check_signature(&p, SECRET);
    let v = p.json();
    assert_eq!(v["event"], "member.left", "{v}");
    assert_eq!(v["id"], left["id"], "one event, one id for every webhook");
}

async fn hooked(
    rx: &Receiver,
    on_error: OnError,
    timeout_ms: u64,
    concurrency: usize,
) -> (Server, crate::common::Client, crate::common::Client) {
    let url = rx.url("/before-send");
    let s = Server::start_with(move |c| {
        c.hooks.before_send.url = url;
        c.hooks.before_send.on_error = on_error;
        c.hooks.before_send.timeout_ms = timeout_ms;
        c.hooks.before_send.concurrency = concurrency;
    })
    .await;
    let ta = s.user("bsa").await;
    let tc = s.user("bsc").await;
    s.user("bsb").await;
    let a = s.connect(&ta, "d1").await;
    let c = s.connect(&tc, "d1").await;
    (s, a, c)
}

fn text(cmid: &str, content: &str) -> Value {
    json!({"type":"send","to":"bsb","client_msg_id":cmid,"kind":"text","content":content})
}

#[tokio::test]
async fn before_send_allows_rejects_and_rewrites() {
    let rx = Receiver::start().await;
    let (s, mut a, _c) = hooked(&rx, OnError::Reject, 5000, 16).await;
    let tb = s.login("bsb").await;

    a.ok(text("k1", "fine")).await;
    let call = rx.next().await.json();
    assert_eq!(call["from"], "bsa");
    assert_eq!(call["to"], "bsb");
    assert_eq!(call["conv"], dm("bsa", "bsb"));
    assert_eq!(call["kind"], "text");
    assert_eq!(call["content"], "fine");
    assert_eq!(call["client_msg_id"], "k1");

    let e = a.err(text("k2", "reject this"), "rejected").await;
    assert_eq!(e["message"], "no swearing");
    let r = a.ok(text("k3", "rewrite this")).await;
    assert_eq!(r["seq"], 2, "the rejected message took no seq");
    // A rewrite that does not suit the kind is refused like any content.
    a.err(text("k4", "bad-rewrite"), "invalid").await;
    // Garbage: on_error (reject here).
    a.err(text("k5", "garbage"), "rejected").await;

    let (_, h) = s
        .get(
            &format!("/v1/conversations/{}/messages", dm("bsa", "bsb")),
            Some(&tb),
        )
        .await;
    let texts: Vec<&Value> = h["msgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["content"])
        .collect();
    assert_eq!(texts, [&json!("fine"), &json!("[redacted]")]);
    // Over HTTP: 403 with the reason.
    let (status, body) = s
        .post(
            "/v1/messages",
            Some(&s.login("bsa").await),
            json!({"to":"bsb","client_msg_id":"k6","kind":"text","content":"reject me"}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("rejected")));
    assert_eq!(body["message"], "no swearing");
}

#[tokio::test]
async fn a_hook_that_never_answers_gets_on_error() {
    let rx = Receiver::start().await;
    let (_s, mut a, _c) = hooked(&rx, OnError::Allow, 200, 16).await;
    // The deadline passes; allowed.
    a.ok(text("h1", "hang")).await;
    rx.release.notify_waiters();

    let rx = Receiver::start().await;
    let (_s, mut a, _c) = hooked(&rx, OnError::Reject, 200, 16).await;
    let e = a.err(text("h1", "hang"), "rejected").await;
    assert!(!e["message"].as_str().unwrap().is_empty());
    rx.release.notify_waiters();
}

#[tokio::test]
async fn a_slow_hook_holds_only_its_own_sender() {
    let rx = Receiver::start().await;
    let (_s, mut a, mut c) = hooked(&rx, OnError::Reject, 10_000, 16).await;
    // a's send waits on the hook...
    let id = a.submit(text("s1", "hang")).await;
    assert_eq!(rx.next().await.json()["content"], "hang");
    // ...while c sends and is answered (the pipeline is not held): c's
    // `ok` comes while a's hook call is still held by the receiver.
    c.ok(text("s2", "quick")).await;
    assert_eq!(rx.next().await.json()["content"], "quick");
    // Only now is a's call answered: allowed and stored.
    rx.release.notify_waiters();
    let r = a.reply(&id).await;
    assert_eq!(r["type"], "ok", "{r}");
}

#[tokio::test]
async fn calls_beyond_the_bound_get_on_error_at_once() {
    let rx = Receiver::start().await;
    let (_s, mut a, mut c) = hooked(&rx, OnError::Reject, 10_000, 1).await;
    let id = a.submit(text("b1", "hang")).await;
    assert_eq!(rx.next().await.json()["content"], "hang");
    // The one slot is taken: c is refused without a call.
    c.err(text("b2", "fine"), "rejected").await;
    rx.release.notify_waiters();
    assert_eq!(a.reply(&id).await["type"], "ok");
    // The slot is free again.
    c.ok(text("b3", "fine")).await;
    assert_eq!(rx.next().await.json()["client_msg_id"], "b3");
}

#[tokio::test]
async fn bad_webhook_settings_are_refused_at_start() {
    let mut cfg = tern_server::Config {
        webhooks: vec![WebhookConfig {
            url: "http://127.0.0.1:9/x".into(),
            secret: "short".into(),
            events: vec![],
        }],
        ..Default::default()
    };
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("webhooks.secret"), "{e}");
    cfg.webhooks[0].secret = SECRET.into();
    cfg.webhooks[0].events = vec!["message.deleted".into()];
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("unknown event"), "{e}");
    cfg.webhooks[0].events = vec![];
    cfg.webhooks[0].url = "ftp://x".into();
    assert!(cfg.validate().is_err());
    cfg.webhooks[0].url = "http://127.0.0.1:9/x".into();
    cfg.hooks.delivery.max_age_secs = 3600;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("max_age_secs"), "{e}");
    cfg.hooks.delivery.max_age_secs = 86_400;
    cfg.hooks.before_send.timeout_ms = 0;
    assert!(cfg.validate().is_err());
    cfg.hooks.before_send.timeout_ms = 500;
    cfg.validate().unwrap();
}
