//! 5.5 offline push across a crash: a message acknowledged to its sender
//! whose push no receiver has taken yet is pushed once after the server
//! was killed (kill -9) and runs again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[tokio::test]
async fn a_push_survives_kill_9_and_goes_out_once() {
    let ok = Arc::new(AtomicBool::new(false));
    let (tx, mut posts) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/push", post(take))
        .with_state(Rx {
            ok: ok.clone(),
            posts: tx,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let cmd = |dir: &std::path::Path| {
        let mut c = serve_cmd(dir);
        c.env("TERN_PUSH__WEBHOOK__URL", &url)
            .env(
                "TERN_PUSH__WEBHOOK__SECRET",
                "0123456789abcdef0123456789abcdef-process",
            )
            .env("TERN_PUSH__RETRY_BASE_MS", "20")
            .env("TERN_PUSH__RETRY_MAX_MS", "100")
            .env("TERN_PUSH__POLL_MS", "50");
        c
    };
    let server = Tern::spawn(cmd(dir.path())).await;
    let ta = server.user("pkila").await;
    let tb = server.user("pkilb").await;
    let (st, b) = server
        .call(
            reqwest::Method::PUT,
            "/v1/push/phone",
            Some(&tb),
            Some(json!({"provider":"webhook","token":"tok-b"})),
        )
        .await;
    assert_eq!(st, 204, "{b}");
    let (st, sent) = server
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&ta),
            Some(json!({"to":"pkilb","client_msg_id":"k1","kind":"text","content":"durable"})),
        )
        .await;
    assert_eq!(st, 200, "{sent}");
    // Acknowledged: killed at once, whatever the receiver saw (refused).
    server.kill9().await;
    while let Ok((_, delivered)) = posts.try_recv() {
        assert!(!delivered);
    }

    ok.store(true, Ordering::SeqCst);
    let server = Tern::spawn(cmd(dir.path())).await;
    let v = loop {
        let (v, delivered) = timeout(WAIT, posts.recv())
            .await
            .expect("the push after the restart")
            .unwrap();
        if delivered {
            break v;
        }
    };
    assert_eq!(
        v,
        json!({"user":"pkilb","device":"phone","token":"tok-b","conv":"dm:pkila:pkilb",
               "seq":sent["seq"],"from":"pkila","preview":"durable","badge":1})
    );
    // Once: nothing more comes.
    if let Ok(Some(more)) = timeout(Duration::from_millis(1500), posts.recv()).await {
        panic!("a second push: {more:?}");
    }
    drop(server);
}
