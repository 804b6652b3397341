//! The WebSocket session: auth, heartbeat, idle timeout, replacement
//! (PROTOCOL.md 2.1).

use crate::common::*;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn auth_frame_then_offline_done() {
    let s = Server::start().await;
    let t = s.user("alice").await;
    let mut c = Client::open(&s.ws_url()).await;
    c.send(json!({"type":"auth","id":"1","token":t,"device":"phone"}))
        .await;
    let ok = c.next().await;
    assert_eq!(ok["type"], "ok");
    assert_eq!(ok["id"], "1");
    assert_eq!(ok["user"], "alice");
    assert_eq!(ok["device"], "phone");
    assert!(ok["ts"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(
        c.next().await,
        json!({"type":"offline_done","count":0,"truncated":false})
    );
    // Auth without a device gets "default".
    let mut d = Client::open(&s.ws_url()).await;
    let ok = d.request(json!({"type":"auth","token":t})).await;
    assert_eq!(ok["device"], "default");
}

#[tokio::test]
async fn token_in_query_string() {
    let s = Server::start().await;
    let t = s.user("alice").await;
    let mut c = Client::open(&format!("{}?token={t}&device=tablet", s.ws_url())).await;
    let ok = c.next().await;
    assert_eq!(ok["type"], "ok");
    assert!(ok.get("id").is_none(), "no id without an auth frame: {ok}");
    assert_eq!(
        (ok["user"].as_str(), ok["device"].as_str()),
        (Some("alice"), Some("tablet"))
    );
    assert_eq!(c.next().await["type"], "offline_done");
    let pong = c.request(json!({"type":"ping"})).await;
    assert_eq!(pong["type"], "pong");
}

#[tokio::test]
async fn bad_token_and_frames_before_auth_close_4001() {
    let s = Server::start().await;
    let t = s.user("alice").await;
    let mut c = Client::open(&s.ws_url()).await;
    let e = c.request(json!({"type":"auth","token":"garbage"})).await;
    assert_eq!(e["code"], "unauthenticated");
    assert_eq!(c.closed_with().await, 4001);

    let mut c = Client::open(&s.ws_url()).await;
    let e = c.request(json!({"type":"ping"})).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("unauthenticated"))
    );
    assert_eq!(c.closed_with().await, 4001);

    let mut c = Client::open(&format!("{}?token=nope", s.ws_url())).await;
    let e = c.next().await;
    assert_eq!(e["code"], "unauthenticated");
    assert_eq!(c.closed_with().await, 4001);

    // A token signed by another server's secret is refused.
    let other = Server::start().await;
    let foreign = other.user("alice").await;
    let mut c = Client::open(&s.ws_url()).await;
    c.err(json!({"type":"auth","token":foreign}), "unauthenticated")
        .await;
    assert_eq!(c.closed_with().await, 4001);
    drop(t);
}

#[tokio::test]
async fn auth_timeout_closes_4001() {
    let s = Server::start_with(|c| c.limits.auth_timeout_secs = 1).await;
    let mut c = Client::open(&s.ws_url()).await;
    let e = c.next().await;
    assert_eq!(e["code"], "unauthenticated");
    assert_eq!(c.closed_with().await, 4001);
}

#[tokio::test]
async fn ping_pong_and_websocket_pings() {
    let s = Server::start().await;
    let t = s.user("alice").await;
    let mut c = s.connect(&t, "d").await;
    assert_eq!(c.request(json!({"type":"ping"})).await["type"], "pong");
    let r = c.request(json!({"type":"ping"})).await;
    assert_eq!(r, json!({"type":"pong","id":r["id"]}));
    // A WebSocket ping is answered with a pong by the server.
    c.send_raw(Message::Ping(b"hi".to_vec().into())).await;
    // (tungstenite consumes the pong; the connection stays usable.)
    assert_eq!(c.request(json!({"type":"ping"})).await["type"], "pong");
}

#[tokio::test]
async fn idle_connection_is_closed_and_pings_keep_it_open() {
    let s = Server::start_with(|c| c.limits.idle_timeout_secs = 2).await;
    let t = s.user("alice").await;
    let mut idle = s.connect(&t, "idle").await;
    let mut busy = s.connect(&t, "busy").await;
    let start = tokio::time::Instant::now();
    // WebSocket pings alone count as activity.
    while start.elapsed() < Duration::from_secs(3) {
        busy.send_raw(Message::Ping(Vec::new().into())).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let code = idle.closed_with().await;
    assert_eq!(code, 1000);
    assert!(busy.closed.is_none());
    assert_eq!(busy.request(json!({"type":"ping"})).await["type"], "pong");
}

#[tokio::test]
async fn same_device_replaces_older_connection_4009() {
    let s = Server::start().await;
    let t = s.user("alice").await;
    let mut first = s.connect(&t, "phone").await;
    let mut other = s.connect(&t, "laptop").await;
    let mut second = s.connect(&t, "phone").await;
    assert_eq!(first.closed_with().await, 4009);
    assert_eq!(second.request(json!({"type":"ping"})).await["type"], "pong");
    assert_eq!(other.request(json!({"type":"ping"})).await["type"], "pong");
}

#[tokio::test]
async fn second_auth_is_invalid() {
    let s = Server::start().await;
    let t = s.user("alice").await;
    let mut c = s.connect(&t, "d").await;
    c.err(json!({"type":"auth","token":t}), "invalid").await;
}
