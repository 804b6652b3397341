//! Each provider against a local server that speaks its protocol and
//! checks what a real provider checks: the signature or token, the
//! headers, the body (for Web Push: that it decrypts with the
//! subscription's keys).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::EncodePrivateKey as _;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tern_push::*;

/// Serves `app` on a free local port (HTTP/1.1 and HTTP/2 with prior
/// knowledge); returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn note() -> Notification {
    Notification {
        conv: "group:g1".into(),
        seq: 42,
        from: "alice".into(),
        title: "Alice".into(),
        preview: Some("lunch at noon?".into()),
        badge: 3,
    }
}

fn device(provider: ProviderKind, token: &str) -> Device {
    Device {
        user: "bob".into(),
        device: "phone".into(),
        provider,
        token: Some(token.into()),
        endpoint: None,
        keys: None,
    }
}

/// What a receiver saw: one entry per request.
type Seen = Arc<Mutex<Vec<Value>>>;

// ---- generic webhook ----

const SECRET: &str = "a webhook secret of at least 32 bytes";

#[tokio::test]
async fn webhook_posts_a_signed_body_and_sorts_failures() {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/push",
            post(
                |State(seen): State<Seen>, headers: HeaderMap, body: Bytes| async move {
                    let sig = headers["tern-signature"].to_str().unwrap().to_owned();
                    let ok = sign::verify(SECRET.as_bytes(), &sig, &body).is_some();
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let token = v["token"].as_str().unwrap_or_default().to_owned();
                    seen.lock().push(json!({ "ok": ok, "body": v }));
                    match token.as_str() {
                        "gone" => (StatusCode::GONE, HeaderMap::new()).into_response(),
                        "busy" => {
                            let mut h = HeaderMap::new();
                            h.insert("retry-after", "7".parse().unwrap());
                            (StatusCode::SERVICE_UNAVAILABLE, h).into_response()
                        }
                        "bad" => StatusCode::BAD_REQUEST.into_response(),
                        _ => StatusCode::NO_CONTENT.into_response(),
                    }
                },
            ),
        )
        .with_state(seen.clone());
    let base = serve(app).await;
    let hook = Webhook::new(&WebhookConfig {
        url: format!("{base}/push"),
        secret: SECRET.into(),
    })
    .unwrap();

    hook.send(&device(ProviderKind::Webhook, "t1"), &note())
        .await
        .unwrap();
    {
        let seen = seen.lock();
        assert_eq!(seen[0]["ok"], true, "signature verifies");
        assert_eq!(
            seen[0]["body"],
            json!({"user":"bob","device":"phone","token":"t1","conv":"group:g1",
                   "seq":42,"from":"alice","preview":"lunch at noon?","badge":3})
        );
    }
    let mut quiet = note();
    quiet.preview = None;
    hook.send(&device(ProviderKind::Webhook, "t1"), &quiet)
        .await
        .unwrap();
    assert!(
        seen.lock()[1]["body"].get("preview").is_none(),
        "no preview when off"
    );

    let gone = hook
        .send(&device(ProviderKind::Webhook, "gone"), &note())
        .await;
    assert!(matches!(gone, Err(PushError::Gone(_))), "{gone:?}");
    let busy = hook
        .send(&device(ProviderKind::Webhook, "busy"), &note())
        .await;
    assert!(
        matches!(busy, Err(PushError::Retry { after: Some(d), .. }) if d == Duration::from_secs(7)),
        "{busy:?}"
    );
    let bad = hook
        .send(&device(ProviderKind::Webhook, "bad"), &note())
        .await;
    assert!(matches!(bad, Err(PushError::Refused(_))), "{bad:?}");

    assert!(Webhook::new(&WebhookConfig {
        url: format!("{base}/push"),
        secret: "short".into()
    })
    .is_err());
}

#[tokio::test]
async fn an_unreachable_receiver_is_a_temporary_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let hook = Webhook::new(&WebhookConfig {
        url: format!("http://{addr}/push"),
        secret: SECRET.into(),
    })
    .unwrap();
    let r = hook
        .send(&device(ProviderKind::Webhook, "t"), &note())
        .await;
    assert!(matches!(r, Err(PushError::Retry { .. })), "{r:?}");
}

// ---- FCM HTTP v1 ----

struct FcmServer {
    public_pem: String,
    token_uri: Mutex<String>,
    issued: Mutex<u32>,
    /// Access tokens the server has revoked (answers 401 once with them).
    revoked: Mutex<Vec<String>>,
    seen: Seen,
}

async fn fcm_token(
    State(s): State<Arc<FcmServer>>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[s.token_uri.lock().clone()]);
    v.set_required_spec_claims(&["exp", "aud", "iss"]);
    let key = DecodingKey::from_rsa_pem(s.public_pem.as_bytes()).unwrap();
    let claims = match jsonwebtoken::decode::<Value>(&form["assertion"], &key, &v) {
        Ok(d) => d.claims,
        Err(_) => return StatusCode::UNAUTHORIZED.into_response(),
    };
    assert_eq!(claims["iss"], "tern@project.iam.example");
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    let mut n = s.issued.lock();
    *n += 1;
    Json(json!({"access_token": format!("at-{n}"), "expires_in": 3600, "token_type": "Bearer"}))
        .into_response()
}

async fn fcm_send(
    State(s): State<Arc<FcmServer>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    let auth = headers["authorization"].to_str().unwrap().to_owned();
    let token = auth.strip_prefix("Bearer ").unwrap_or_default().to_owned();
    if !token.starts_with("at-") || s.revoked.lock().contains(&token) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    s.seen
        .lock()
        .push(json!({"auth": token, "body": body.clone()}));
    if body["message"]["token"] == "dead" {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": 404, "status": "NOT_FOUND",
                "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                             "errorCode": "UNREGISTERED"}]}})),
        )
            .into_response();
    }
    Json(json!({"name": "projects/proj-1/messages/1"})).into_response()
}

#[tokio::test]
async fn fcm_exchanges_a_service_account_jwt_and_sends_v1_messages() {
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let private_pem = rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, Default::default())
        .unwrap()
        .to_string();
    let public_pem =
        rsa::pkcs8::EncodePublicKey::to_public_key_pem(&key.to_public_key(), Default::default())
            .unwrap();
    let server = Arc::new(FcmServer {
        public_pem,
        token_uri: Mutex::new(String::new()),
        issued: Mutex::new(0),
        revoked: Mutex::new(Vec::new()),
        seen: Arc::default(),
    });
    let app = Router::new()
        .route("/token", post(fcm_token))
        .route("/v1/projects/{project}/{call}", post(fcm_send))
        .with_state(server.clone());
    let base = serve(app).await;
    *server.token_uri.lock() = format!("{base}/token");
    let account = json!({
        "type": "service_account",
        "project_id": "proj-1",
        "client_email": "tern@project.iam.example",
        "private_key": private_pem,
        "token_uri": format!("{base}/token"),
    });
    let fcm = Fcm::new(&FcmConfig {
        endpoint: base.clone(),
        credentials: account.to_string(),
    })
    .unwrap();

    fcm.send(&device(ProviderKind::Fcm, "reg-1"), &note())
        .await
        .unwrap();
    fcm.send(&device(ProviderKind::Fcm, "reg-2"), &note())
        .await
        .unwrap();
    assert_eq!(*server.issued.lock(), 1, "the access token is kept");
    {
        let seen = server.seen.lock();
        let m = &seen[0]["body"]["message"];
        assert_eq!(m["token"], "reg-1");
        assert_eq!(
            m["notification"],
            json!({"title": "Alice", "body": "lunch at noon?"})
        );
        assert_eq!(m["data"]["conv"], "group:g1");
        assert_eq!(m["data"]["seq"], "42");
        assert_eq!(m["apns"]["payload"]["aps"]["badge"], 3);
        assert_eq!(seen[1]["body"]["message"]["token"], "reg-2");
    }

    // A revoked access token: a new one is fetched and the send repeated.
    server.revoked.lock().push("at-1".into());
    fcm.send(&device(ProviderKind::Fcm, "reg-3"), &note())
        .await
        .unwrap();
    assert_eq!(*server.issued.lock(), 2);
    assert_eq!(server.seen.lock().last().unwrap()["auth"], "at-2");

    let dead = fcm.send(&device(ProviderKind::Fcm, "dead"), &note()).await;
    assert!(matches!(dead, Err(PushError::Gone(_))), "{dead:?}");

    assert!(Fcm::new(&FcmConfig {
        endpoint: base,
        credentials: "{\"project_id\": \"p\"}".into()
    })
    .is_err());
}

// ---- APNs ----

struct ApnsServer {
    public_pem: String,
    seen: Seen,
}

async fn apns_send(
    State(s): State<Arc<ApnsServer>>,
    Path(token): Path<String>,
    version: Version,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    assert_eq!(version, Version::HTTP_2, "APNs speaks HTTP/2 only");
    let auth = headers["authorization"].to_str().unwrap();
    let jwt = auth.strip_prefix("bearer ").unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_required_spec_claims(&["iss"]);
    v.validate_exp = false;
    let key = DecodingKey::from_ec_pem(s.public_pem.as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &v).unwrap().claims;
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    s.seen.lock().push(json!({
        "token": token, "kid": header.kid, "iss": claims["iss"], "iat": claims["iat"],
        "topic": h("apns-topic"), "push_type": h("apns-push-type"),
        "collapse": h("apns-collapse-id"), "body": body,
    }));
    if token == "dead0" {
        return (StatusCode::GONE, Json(json!({"reason": "Unregistered"}))).into_response();
    }
    StatusCode::OK.into_response()
}

#[tokio::test]
async fn apns_sends_over_http2_with_a_provider_token() {
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let private_pem = secret.to_pkcs8_pem(Default::default()).unwrap().to_string();
    let public_pem =
        p256::pkcs8::EncodePublicKey::to_public_key_pem(&secret.public_key(), Default::default())
            .unwrap();
    let server = Arc::new(ApnsServer {
        public_pem,
        seen: Arc::default(),
    });
    let app = Router::new()
        .route("/3/device/{token}", post(apns_send))
        .with_state(server.clone());
    let base = serve(app).await;
    let apns = Apns::new(&ApnsConfig {
        endpoint: base,
        key: private_pem,
        key_id: "KEY123ABCD".into(),
        team_id: "TEAM456XYZ".into(),
        topic: "com.example.chat".into(),
    })
    .unwrap();

    apns.send(&device(ProviderKind::Apns, "abc123"), &note())
        .await
        .unwrap();
    apns.send(&device(ProviderKind::Apns, "abc124"), &note())
        .await
        .unwrap();
    {
        let seen = server.seen.lock();
        let s = &seen[0];
        assert_eq!(s["token"], "abc123");
        assert_eq!(s["kid"], "KEY123ABCD");
        assert_eq!(s["iss"], "TEAM456XYZ");
        assert_eq!(s["topic"], "com.example.chat");
        assert_eq!(s["push_type"], "alert");
        assert_eq!(s["collapse"], json!(note().collapse_key()));
        assert!(note().collapse_key().len() <= 64);
        assert_eq!(
            s["body"]["aps"]["alert"],
            json!({"title": "Alice", "body": "lunch at noon?"})
        );
        assert_eq!(s["body"]["aps"]["badge"], 3);
        assert_eq!(s["body"]["conv"], "group:g1");
        assert_eq!(seen[1]["iat"], s["iat"], "the provider token is reused");
    }
    let dead = apns
        .send(&device(ProviderKind::Apns, "dead0"), &note())
        .await;
    assert!(matches!(dead, Err(PushError::Gone(_))), "{dead:?}");
    let junk = apns
        .send(&device(ProviderKind::Apns, "not hex!"), &note())
        .await;
    assert!(matches!(junk, Err(PushError::Gone(_))), "{junk:?}");
}

// ---- Web Push ----

struct PushService {
    origin: Mutex<String>,
    /// The browser's side: its private key and auth secret.
    ua_secret: p256::SecretKey,
    auth: [u8; 16],
    seen: Seen,
}

async fn push_service(
    State(s): State<Arc<PushService>>,
    Path(sub): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h("content-encoding").as_deref(), Some("aes128gcm"));
    assert!(h("ttl").is_some());
    // Authorization: vapid t=<jwt>, k=<server public key>
    let auth = h("authorization").unwrap();
    let rest = auth.strip_prefix("vapid ").unwrap();
    let mut t = "";
    let mut k = "";
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v,
            Some(("k", v)) => k = v,
            _ => {}
        }
    }
    let point = URL_SAFE_NO_PAD.decode(k).unwrap();
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
    let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
    let key = DecodingKey::from_ec_components(&x, &y).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[s.origin.lock().clone()]);
    v.set_required_spec_claims(&["exp", "aud", "sub"]);
    let claims = match jsonwebtoken::decode::<Value>(t, &key, &v) {
        Ok(d) => d.claims,
        Err(_) => return StatusCode::UNAUTHORIZED.into_response(),
    };
    let mut auth = web_push_native::Auth::default();
    auth.copy_from_slice(&s.auth);
    let plain = web_push_native::decrypt(body.to_vec(), &s.ua_secret, &auth).unwrap();
    let payload: Value = serde_json::from_slice(&plain).unwrap();
    s.seen.lock().push(json!({
        "sub": claims["sub"], "k": k, "topic": h("topic"), "payload": payload,
    }));
    if sub == "expired" {
        return StatusCode::GONE.into_response();
    }
    StatusCode::CREATED.into_response()
}

#[tokio::test]
async fn webpush_encrypts_for_the_subscription_and_signs_with_vapid() {
    let ua_secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let auth: [u8; 16] = rand_bytes();
    let service = Arc::new(PushService {
        origin: Mutex::new(String::new()),
        ua_secret: ua_secret.clone(),
        auth,
        seen: Arc::default(),
    });
    let app = Router::new()
        .route("/push/{sub}", post(push_service))
        .with_state(service.clone());
    let base = serve(app).await;
    *service.origin.lock() = base.clone();

    let vapid_secret: [u8; 32] = p256::SecretKey::random(&mut rand_core::OsRng)
        .to_bytes()
        .into();
    let wp = WebPush::new(&WebPushConfig {
        vapid_key: URL_SAFE_NO_PAD.encode(vapid_secret),
        subject: "mailto:ops@example.com".into(),
    })
    .unwrap();
    let keys = WebPushKeys {
        p256dh: URL_SAFE_NO_PAD.encode(ua_secret.public_key().to_encoded_point(false).as_bytes()),
        auth: URL_SAFE_NO_PAD.encode(auth),
    };
    let sub = |name: &str| Device {
        user: "bob".into(),
        device: "browser".into(),
        provider: ProviderKind::Webpush,
        token: None,
        endpoint: Some(format!("{base}/push/{name}")),
        keys: Some(keys.clone()),
    };
    sub("s1").check().unwrap();

    wp.send(&sub("s1"), &note()).await.unwrap();
    {
        let seen = service.seen.lock();
        let s = &seen[0];
        assert_eq!(s["sub"], "mailto:ops@example.com");
        assert_eq!(s["k"], wp.public_key());
        assert_eq!(s["topic"], json!(note().collapse_key()));
        assert_eq!(
            s["payload"],
            json!({"title":"Alice","body":"lunch at noon?","conv":"group:g1","seq":42,"from":"alice","badge":3})
        );
    }
    let gone = wp.send(&sub("expired"), &note()).await;
    assert!(matches!(gone, Err(PushError::Gone(_))), "{gone:?}");

    let mut bad = sub("s1");
    bad.keys = Some(WebPushKeys {
        p256dh: "AAAA".into(),
        auth: keys.auth.clone(),
    });
    assert!(bad.check().is_err());
    assert!(WebPush::new(&WebPushConfig {
        vapid_key: "not a key".into(),
        subject: "mailto:a@b".into()
    })
    .is_err());
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b
}

#[tokio::test]
async fn providers_refuse_an_unconfigured_kind() {
    let p = Providers::from_config(&ProvidersConfig::default()).unwrap();
    assert!(p.is_empty());
    let r = p.send(&device(ProviderKind::Fcm, "x"), &note()).await;
    assert!(matches!(r, Err(PushError::Refused(_))), "{r:?}");
}
