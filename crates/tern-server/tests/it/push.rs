//! 5.5 offline push through real servers and real HTTP receivers started
//! by the test (axum on 127.0.0.1:0): the generic webhook provider (signed
//! POSTs) and a Web Push service that decrypts what it is sent with the
//! subscription's keys.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, Mutex};

use crate::common::{dm, Server, WAIT};

const SECRET: &str = "0123456789abcdef0123456789abcdef-push";

/// One push a receiver took.
#[derive(Debug)]
struct Got {
    /// `Tern-Signature` (webhook) or the VAPID `k` (Web Push).
    auth: String,
    /// The webhook body, or the decrypted Web Push payload.
    body: Value,
    raw: String,
    /// What the receiver answered.
    status: u16,
}

#[derive(Clone)]
struct Shared {
    got: mpsc::UnboundedSender<Got>,
    /// Answer 500 while set.
    failing: Arc<AtomicBool>,
    /// The browser's side of the Web Push subscription.
    ua_secret: p256::SecretKey,
    ua_auth: [u8; 16],
}

/// The generic provider's receiver: 410 for tokens starting `gone`.
async fn webhook(State(s): State<Shared>, headers: HeaderMap, raw: String) -> StatusCode {
    let body: Value = serde_json::from_str(&raw).unwrap();
    let status = if s.failing.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if body["token"].as_str().unwrap_or("").starts_with("gone") {
        StatusCode::GONE
    } else {
        StatusCode::OK
    };
    let auth = headers
        .get("tern-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let _ = s.got.send(Got {
        auth,
        body,
        raw,
        status: status.as_u16(),
    });
    status
}

/// A Web Push service: decrypts the body (RFC 8291) for the subscription.
async fn webpush(
    State(s): State<Shared>,
    Path(_sub): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let k = auth
        .split(',')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| *n == "k")
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    let mut secret = web_push_native::Auth::default();
    secret.copy_from_slice(&s.ua_auth);
    let plain = web_push_native::decrypt(body.to_vec(), &s.ua_secret, &secret)
        .expect("the payload decrypts with the subscription's keys");
    let raw = String::from_utf8(plain).unwrap();
    let _ = s.got.send(Got {
        auth: k,
        body: serde_json::from_str(&raw).unwrap(),
        raw,
        status: 201,
    });
    StatusCode::CREATED
}

struct Receiver {
    addr: SocketAddr,
    got: Mutex<mpsc::UnboundedReceiver<Got>>,
    failing: Arc<AtomicBool>,
    ua_secret: p256::SecretKey,
    ua_auth: [u8; 16],
}

impl Receiver {
    async fn start() -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut ua_auth = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut ua_auth);
        let shared = Shared {
            got: tx,
            failing: Arc::new(AtomicBool::new(false)),
            ua_secret: p256::SecretKey::random(&mut rand_core::OsRng),
            ua_auth,
        };
        let app = axum::Router::new()
            .route("/push", post(webhook))
            .route("/wp/{sub}", post(webpush))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            addr,
            got: Mutex::new(rx),
            failing: shared.failing,
            ua_secret: shared.ua_secret,
            ua_auth,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next push, or panics after `WAIT`.
    async fn next(&self) -> Got {
        tokio::time::timeout(WAIT, self.got.lock().await.recv())
            .await
            .expect("a push in time")
            .expect("receiver running")
    }

    /// Nothing more arrives within `d`.
    async fn quiet(&self, d: Duration) {
        if let Ok(Some(g)) = tokio::time::timeout(d, self.got.lock().await.recv()).await {
            panic!("no push expected, got {g:?}");
        }
    }

    /// The subscription's keys, as a browser gives them.
    fn keys(&self) -> Value {
        json!({
            "p256dh": URL_SAFE_NO_PAD.encode(self.ua_secret.public_key().to_encoded_point(false).as_bytes()),
            "auth": URL_SAFE_NO_PAD.encode(self.ua_auth),
        })
    }
}

fn check_signature(g: &Got) {
    let (t, v1) = g
        .auth
        .split_once(",v1=")
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v)))
        .unwrap_or_else(|| panic!("bad Tern-Signature {:?}", g.auth));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", g.raw).as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the signature verifies with push.webhook.secret");
}

/// Push through the receiver's generic provider, retried quickly.
fn with_webhook(rx: &Receiver) -> impl FnOnce(&mut tern_server::Config) {
    let url = rx.url("/push");
    move |c| {
        c.push.webhook = Some(tern_push::WebhookConfig {
            url,
            secret: SECRET.into(),
        });
        c.push.retry_base_ms = 20;
        c.push.retry_max_ms = 100;
        c.push.poll_ms = 50;
    }
}

/// A VAPID private key (32 bytes, base64url).
fn vapid_key() -> String {
    let k = p256::SecretKey::random(&mut rand_core::OsRng);
    URL_SAFE_NO_PAD.encode(k.to_bytes())
}

/// `PUT /v1/push/{device}`: the status and body.
async fn put_push(s: &Server, token: &str, device: &str, body: Value) -> (u16, Value) {
    let r = s
        .http
        .put(s.url(&format!("/v1/push/{device}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn register(s: &Server, token: &str, device: &str, push_token: &str) {
    let (st, b) = put_push(
        s,
        token,
        device,
        json!({"provider":"webhook","token":push_token}),
    )
    .await;
    assert_eq!(st, 204, "{b}");
}

/// Sends over HTTP (the sender has no device online either).
async fn send(s: &Server, token: &str, to: &str, cmid: &str, text: &str) -> Value {
    let (st, b) = s
        .post(
            "/v1/messages",
            Some(token),
            json!({"to":to,"client_msg_id":cmid,"kind":"text","content":text}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    b
}

#[tokio::test]
async fn registrations_are_checked_bounded_and_removed() {
    let rx = Receiver::start().await;
    let wp = rx.url("/wp/sub1");
    let s = Server::start_with(|c| {
        with_webhook(&rx)(c);
        c.push.max_devices = 2;
        c.push.webpush = Some(tern_push::WebPushConfig {
            vapid_key: vapid_key(),
            subject: "mailto:ops@example.com".into(),
        });
    })
    .await;
    let t = s.user("prega").await;
    let bad = |body: Value, why: &'static str| {
        let (s, t) = (&s, t.clone());
        async move {
            let (st, b) = put_push(s, &t, "phone", body).await;
            assert_eq!(
                (st, b["code"].as_str()),
                (400, Some("invalid")),
                "{why}: {b}"
            );
            b["message"].as_str().unwrap().to_owned()
        }
    };
    let m = bad(json!({"provider":"fcm","token":"x"}), "fcm not configured").await;
    assert!(
        m.contains("configured") && m.contains("webpush") && m.contains("webhook"),
        "{m}"
    );
    bad(
        json!({"provider":"carrier-pigeon","token":"x"}),
        "no such provider",
    )
    .await;
    bad(json!({"provider":"webhook"}), "no token").await;
    bad(json!({"provider":"webhook","token":""}), "empty token").await;
    bad(
        json!({"provider":"webhook","token":"x".repeat(4097)}),
        "long token",
    )
    .await;
    bad(json!({"provider":"webpush","endpoint":wp}), "no keys").await;
    bad(
        json!({"provider":"webpush","endpoint":"ftp://x/y","keys":rx.keys()}),
        "scheme",
    )
    .await;
    bad(
        json!({"provider":"webpush","endpoint":wp,"keys":{"p256dh":"AAAA","auth":rx.keys()["auth"]}}),
        "keys that do not decode",
    )
    .await;
    bad(
        json!({"provider":"webhook","token":"x","extra":1}),
        "unknown field",
    )
    .await;
    let (st, b) = put_push(
        &s,
        &t,
        &"d".repeat(65),
        json!({"provider":"webhook","token":"x"}),
    )
    .await;
    assert_eq!(st, 400, "a long device id: {b}");

    // Two devices; a third is over push.max_devices, the same one again
    // replaces its registration.
    let (st, b) = put_push(
        &s,
        &t,
        "browser",
        json!({"provider":"webpush","endpoint":wp,"keys":rx.keys()}),
    )
    .await;
    assert_eq!(st, 204, "{b}");
    register(&s, &t, "phone", "tok1").await;
    let (st, b) = put_push(
        &s,
        &t,
        "tablet",
        json!({"provider":"webhook","token":"tok3"}),
    )
    .await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("at most 2"), "{b}");
    register(&s, &t, "phone", "tok2").await;

    let (st, _) = s.delete("/v1/push/phone", Some(&t)).await;
    assert_eq!(st, 204);
    let (st, b) = s.delete("/v1/push/phone", Some(&t)).await;
    assert_eq!((st, b["code"].as_str()), (404, Some("not_found")), "{b}");
    let (st, _) = s.delete("/v1/push/phone", None).await;
    assert_eq!(st, 401);
    // With a slot free, the third device fits.
    register(&s, &t, "tablet", "tok3").await;

    // The key a browser subscribes with, through the SDK too.
    let (st, b) = s.get("/v1/push/webpush-key", Some(&t)).await;
    assert_eq!(st, 200, "{b}");
    let key = b["public_key"].as_str().unwrap();
    let point = URL_SAFE_NO_PAD.decode(key).unwrap();
    assert_eq!(
        (point.len(), point[0]),
        (65, 4),
        "an uncompressed P-256 point"
    );
    assert_eq!(s.as_user(&t).webpush_key().await.unwrap(), key);
    s.as_user(&t).unregister_push("tablet").await.unwrap();
    let e = s.as_user(&t).unregister_push("tablet").await.unwrap_err();
    assert_eq!(e.code(), Some(tern_client::ErrorCode::NotFound), "{e}");
    s.as_user(&t)
        .register_push(
            "tablet",
            &tern_client::PushProvider::Webhook {
                token: "tok4".into(),
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn without_web_push_or_any_provider() {
    let rx = Receiver::start().await;
    let s = Server::start_with(with_webhook(&rx)).await;
    let t = s.user("pnoa").await;
    let (st, b) = s.get("/v1/push/webpush-key", Some(&t)).await;
    assert_eq!((st, b["code"].as_str()), (404, Some("not_found")), "{b}");
    drop(s);

    let s = Server::start().await;
    let t = s.user("pnob").await;
    let (st, b) = put_push(&s, &t, "phone", json!({"provider":"webhook","token":"x"})).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid")), "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("not configured"),
        "{b}"
    );
}

#[tokio::test]
async fn an_offline_receiver_gets_one_signed_push_and_the_sender_none() {
    let rx = Receiver::start().await;
    let s = Server::start_with(with_webhook(&rx)).await;
    let ta = s.user("pofa").await;
    let tb = s.user("pofb").await;
    // Both registered; only the receiver of each message gets a push.
    register(&s, &ta, "aphone", "tok-a").await;
    register(&s, &tb, "bphone", "tok-b").await;
    let sent = send(&s, &ta, "pofb", "c1", "hello there").await;
    let g = rx.next().await;
    check_signature(&g);
    assert_eq!(
        g.body,
        json!({"user":"pofb","device":"bphone","token":"tok-b","conv":dm("pofa","pofb"),
               "seq":sent["seq"],"from":"pofa","preview":"hello there","badge":1})
    );
    rx.quiet(Duration::from_millis(500)).await;
    // A second unread message: badge 2 (total_unread when pushed).
    send(&s, &ta, "pofb", "c2", "still there?").await;
    let g = rx.next().await;
    assert_eq!(
        (g.body["seq"].as_u64(), g.body["badge"].as_u64()),
        (Some(2), Some(2)),
        "{:?}",
        g.body
    );
    // Their answer goes to the other side's device.
    send(&s, &tb, "pofa", "c3", "yes").await;
    let g = rx.next().await;
    assert_eq!(g.body["user"], "pofa");
    assert_eq!(g.body["device"], "aphone");
    assert_eq!(g.body["badge"], 1);
    rx.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn previews_can_be_turned_off() {
    let rx = Receiver::start().await;
    let s = Server::start_with(|c| {
        with_webhook(&rx)(c);
        c.push.preview = false;
    })
    .await;
    let ta = s.user("pnpa").await;
    let tb = s.user("pnpb").await;
    register(&s, &tb, "bphone", "tok-b").await;
    send(&s, &ta, "pnpb", "c1", "secret plans").await;
    let g = rx.next().await;
    assert!(g.body.get("preview").is_none(), "{:?}", g.body);
    assert!(!g.raw.contains("secret plans"));
}

#[tokio::test]
async fn an_online_receiver_gets_none_until_it_goes() {
    let rx = Receiver::start().await;
    let s = Server::start_with(with_webhook(&rx)).await;
    let ta = s.user("ponla").await;
    let tb = s.user("ponlb").await;
    register(&s, &tb, "bphone", "tok-b").await;
    let mut b = s.connect(&tb, "bweb").await;
    send(&s, &ta, "ponlb", "c1", "you are here").await;
    b.next_msg().await;
    rx.quiet(Duration::from_millis(700)).await;
    b.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&s, &ta, "ponlb", "c2", "gone now?").await;
    let g = rx.next().await;
    assert_eq!(g.body["seq"], 2, "{:?}", g.body);
    assert_eq!(g.body["badge"], 2);
}

#[tokio::test]
async fn a_muted_conversation_gets_none() {
    let rx = Receiver::start().await;
    let s = Server::start_with(with_webhook(&rx)).await;
    let ta = s.user("pmua").await;
    let tb = s.user("pmub").await;
    let tc = s.user("pmuc").await;
    register(&s, &tb, "bphone", "tok-b").await;
    let until = tern_core::now_ms() + 3_600_000;
    s.as_user(&tb)
        .set_conv_settings(&dm("pmua", "pmub"), Some(until), None)
        .await
        .unwrap();
    send(&s, &ta, "pmub", "c1", "muted").await;
    // The unmuted conversation's push comes, and it is the only one.
    send(&s, &tc, "pmub", "c2", "not muted").await;
    let g = rx.next().await;
    assert_eq!(g.body["from"], "pmuc", "{:?}", g.body);
    assert_eq!(g.body["badge"], 2, "unread still counts the muted one");
    rx.quiet(Duration::from_millis(500)).await;
    // A mute that has ended stops nothing.
    s.as_user(&tb)
        .set_conv_settings(&dm("pmua", "pmub"), Some(0), None)
        .await
        .unwrap();
    send(&s, &ta, "pmub", "c3", "unmuted").await;
    assert_eq!(rx.next().await.body["from"], "pmua");
}

#[tokio::test]
async fn a_large_group_pushes_only_the_mentioned() {
    let rx = Receiver::start().await;
    let s = Server::start_with(|c| {
        with_webhook(&rx)(c);
        c.groups.write_limit = 2;
    })
    .await;
    let names = ["plga", "plgb", "plgc", "plgd"];
    let mut tokens = Vec::new();
    for n in names {
        let t = s.user(n).await;
        register(&s, &t, "phone", &format!("tok-{n}")).await;
        tokens.push(t);
    }
    let gid = s.new_group(&tokens[0], "big", &names[1..]).await;
    // Four members over a write limit of 2: read-diffused.
    let (st, b) = s
        .post(
            "/v1/messages",
            Some(&tokens[0]),
            json!({"group":gid,"client_msg_id":"g1","kind":"text","content":"nobody named"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = s
        .post(
            "/v1/messages",
            Some(&tokens[0]),
            json!({"group":gid,"client_msg_id":"g2","kind":"text","content":"hey @plgc","mentions":["plgc"]}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let g = rx.next().await;
    assert_eq!(g.body["user"], "plgc", "{:?}", g.body);
    assert_eq!(g.body["conv"], format!("group:{gid}"));
    assert_eq!(g.body["seq"], b["seq"]);
    rx.quiet(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn a_small_group_pushes_every_offline_member_but_the_sender() {
    let rx = Receiver::start().await;
    let s = Server::start_with(with_webhook(&rx)).await;
    let names = ["psga", "psgb", "psgc"];
    let mut tokens = Vec::new();
    for n in names {
        let t = s.user(n).await;
        register(&s, &t, "phone", &format!("tok-{n}")).await;
        tokens.push(t);
    }
    let gid = s.new_group(&tokens[0], "small", &names[1..]).await;
    let (st, b) = s
        .post(
            "/v1/messages",
            Some(&tokens[0]),
            json!({"group":gid,"client_msg_id":"g1","kind":"text","content":"hi all"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let mut users = Vec::new();
    for _ in 0..2 {
        let g = rx.next().await;
        assert_eq!(g.body["seq"], b["seq"], "{:?}", g.body);
        users.push(g.body["user"].as_str().unwrap().to_owned());
    }
    users.sort();
    assert_eq!(users, ["psgb", "psgc"]);
    rx.quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn pushes_collapse_while_one_is_pending() {
    let rx = Receiver::start().await;
    let s = Server::start_with(with_webhook(&rx)).await;
    let ta = s.user("pcoa").await;
    let tb = s.user("pcob").await;
    register(&s, &tb, "bphone", "tok-b").await;
    rx.failing.store(true, Ordering::SeqCst);
    send(&s, &ta, "pcob", "c1", "one").await;
    let g = rx.next().await;
    assert_eq!((g.status, g.body["seq"].as_u64()), (500, Some(1)));
    send(&s, &ta, "pcob", "c2", "two").await;
    send(&s, &ta, "pcob", "c3", "three").await;
    // Retried with the newest content, still one pending push.
    loop {
        let g = rx.next().await;
        assert_eq!(g.status, 500);
        if g.body["seq"] == 3 {
            break;
        }
    }
    rx.failing.store(false, Ordering::SeqCst);
    let ok = loop {
        let g = rx.next().await;
        if g.status == 200 {
            break g;
        }
    };
    check_signature(&ok);
    assert_eq!(ok.body["seq"], 3, "{:?}", ok.body);
    assert_eq!(ok.body["preview"], "three");
    assert_eq!(ok.body["badge"], 3);
    rx.quiet(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn gone_removes_the_registration() {
    let rx = Receiver::start().await;
    let s = Server::start_with(with_webhook(&rx)).await;
    let ta = s.user("pgoa").await;
    let tb = s.user("pgob").await;
    register(&s, &tb, "old", "gone-1").await;
    send(&s, &ta, "pgob", "c1", "anyone?").await;
    let g = rx.next().await;
    assert_eq!(g.status, 410);
    // Not retried, and removed: later messages reach nobody.
    rx.quiet(Duration::from_millis(500)).await;
    send(&s, &ta, "pgob", "c2", "hello?").await;
    rx.quiet(Duration::from_millis(500)).await;
    let (st, b) = s.delete("/v1/push/old", Some(&tb)).await;
    assert_eq!((st, b["code"].as_str()), (404, Some("not_found")), "{b}");
}

#[tokio::test]
async fn signing_out_removes_the_sessions_registrations() {
    let rx = Receiver::start().await;
    let s = Server::start_with(with_webhook(&rx)).await;
    let ta = s.user("psoa").await;
    let tb = s.user("psob").await;
    let tb2 = s.login("psob").await;
    register(&s, &tb, "phone", "tok-phone").await;
    register(&s, &tb2, "tablet", "tok-tablet").await;
    // Signing out the phone's session: its registration goes, the tablet's
    // stays.
    s.as_user(&tb).logout().await.unwrap();
    send(&s, &ta, "psob", "c1", "hi").await;
    let g = rx.next().await;
    assert_eq!(g.body["device"], "tablet", "{:?}", g.body);
    rx.quiet(Duration::from_millis(500)).await;
    // Revoking every session: none left.
    s.as_user(&tb2).revoke_all_sessions().await.unwrap();
    let tb3 = s.login("psob").await;
    let (st, _) = s.delete("/v1/push/tablet", Some(&tb3)).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn web_push_end_to_end_decrypts_with_the_subscription() {
    let rx = Receiver::start().await;
    let s = Server::start_with(|c| {
        c.push.webpush = Some(tern_push::WebPushConfig {
            vapid_key: vapid_key(),
            subject: "mailto:ops@example.com".into(),
        });
    })
    .await;
    let ta = s.user("pwpa").await;
    let tb = s.user("pwpb").await;
    s.as_user(&ta)
        .update_profile(Some("Alice W."), None)
        .await
        .unwrap();
    let key = s.as_user(&tb).webpush_key().await.unwrap();
    let k = rx.keys();
    s.as_user(&tb)
        .register_push(
            "browser",
            &tern_client::PushProvider::WebPush {
                endpoint: rx.url("/wp/b1"),
                p256dh: k["p256dh"].as_str().unwrap().into(),
                auth: k["auth"].as_str().unwrap().into(),
            },
        )
        .await
        .unwrap();
    send(&s, &ta, "pwpb", "c1", "hi from the web").await;
    let g = rx.next().await;
    assert_eq!(
        g.auth, key,
        "signed with the key the browser subscribed with"
    );
    assert_eq!(
        g.body,
        json!({"title":"Alice W.","body":"hi from the web","conv":dm("pwpa","pwpb"),
               "seq":1,"from":"pwpa","badge":1})
    );
}

/// How many pushes one node sends per second to a local generic receiver:
/// `M` registered members, none online, in `G` groups; one message to each
/// group makes `G * (M - 1)` pushes of distinct (user, conversation).
/// `cargo test -p tern-server --test it push_throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it on its own"]
async fn push_throughput() {
    const M: usize = 400;
    const G: usize = 10;
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let target = G * (M - 1);
    let app = {
        let (count, done) = (count.clone(), done.clone());
        axum::Router::new().route(
            "/push",
            post(move || {
                let (count, done) = (count.clone(), done.clone());
                async move {
                    if count.fetch_add(1, Ordering::SeqCst) + 1 == target {
                        done.notify_one();
                    }
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let s = Server::start_with(|c| {
        c.push.webhook = Some(tern_push::WebhookConfig {
            url,
            secret: SECRET.into(),
        });
        c.groups.max_size = M;
        c.groups.write_limit = M;
    })
    .await;
    let names: Vec<String> = (0..M).map(|i| format!("pt{i}")).collect();
    let tokens = s.users(&names).await;
    for (i, t) in tokens.iter().enumerate() {
        register(&s, t, "phone", &format!("tok-{i}")).await;
    }
    let members: Vec<&str> = names[1..].iter().map(String::as_str).collect();
    let mut groups = Vec::new();
    for g in 0..G {
        groups.push(
            s.new_group(&tokens[0], &format!("bench{g}"), &members)
                .await,
        );
    }
    let started = std::time::Instant::now();
    for (g, gid) in groups.iter().enumerate() {
        let (st, b) = s
            .post(
                "/v1/messages",
                Some(&tokens[0]),
                json!({"group":gid,"client_msg_id":format!("b{g}"),"kind":"text","content":"bench"}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
    }
    tokio::time::timeout(Duration::from_secs(300), done.notified())
        .await
        .expect("every push in time");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "push_throughput: {target} pushes in {secs:.2} s = {:.0} pushes/s",
        target as f64 / secs
    );
    assert_eq!(count.load(Ordering::SeqCst), target);
}
