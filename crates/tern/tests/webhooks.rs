//! 5.6 webhooks across a crash: a message acknowledged to its sender is
//! delivered to the webhook after the server is killed (kill -9) before
//! any delivery succeeded, once it runs again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::timeout;

mod support;
use support::{serve_cmd, Tern, WAIT};

#[derive(Clone)]
struct Rx {
    ok: Arc<AtomicBool>,
    posts: mpsc::UnboundedSender<(Value, bool)>,
}

async fn take(State(rx): State<Rx>, body: String) -> StatusCode {
    let ok = rx.ok.load(Ordering::SeqCst);
    let _ = rx.posts.send((serde_json::from_str(&body).unwrap(), ok));
    if ok {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// The `[[webhooks]]` setting as a `TERN_WEBHOOKS` value.
pub fn webhooks_env(url: &str, events: &str) -> String {
    format!(
        "[{{url=\"{url}\",secret=\"0123456789abcdef0123456789abcdef-process\",events=[{events}]}}]"
    )
}

#[tokio::test]
async fn message_created_survives_kill_9() {
    let ok = Arc::new(AtomicBool::new(false));
    let (tx, mut posts) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/events", post(take))
        .with_state(Rx {
            ok: ok.clone(),
            posts: tx,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let cmd = |dir: &std::path::Path| {
        let mut c = serve_cmd(dir);
        c.env("TERN_WEBHOOKS", webhooks_env(&url, "\"message.created\""))
            .env("TERN_HOOKS__DELIVERY__RETRY_BASE_MS", "20")
            .env("TERN_HOOKS__DELIVERY__RETRY_MAX_MS", "100")
            .env("TERN_HOOKS__DELIVERY__POLL_MS", "50");
        c
    };
    let server = Tern::spawn(cmd(dir.path())).await;
    let ta = server.user("kila").await;
    server.user("kilb").await;
    let (st, sent) = server
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&ta),
            Some(json!({"to":"kilb","client_msg_id":"k1","kind":"text","content":"durable"})),
        )
        .await;
    assert_eq!(st, 200, "{sent}");
    // Acknowledged: killed at once, whatever the webhook saw (refused).
    server.kill9().await;
    let mut refused_ids = Vec::new();
    while let Ok((v, delivered)) = posts.try_recv() {
        assert!(!delivered);
        refused_ids.push(v["id"].clone());
    }

    ok.store(true, Ordering::SeqCst);
    let server = Tern::spawn(cmd(dir.path())).await;
    let (v, delivered) = loop {
        let (v, delivered) = timeout(WAIT, posts.recv())
            .await
            .expect("the event after the restart")
            .unwrap();
        if delivered {
            break (v, delivered);
        }
        refused_ids.push(v["id"].clone());
    };
    assert!(delivered);
    assert_eq!(v["event"], "message.created");
    assert_eq!(v["data"]["msg_id"], sent["msg_id"]);
    assert_eq!(v["data"]["content"], "durable");
    assert!(
        refused_ids.iter().all(|i| *i == v["id"]),
        "one id on every attempt: {refused_ids:?} vs {}",
        v["id"]
    );
    drop(server);
}
