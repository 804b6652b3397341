//! The WebSocket session: auth, heartbeat, idle timeout, replacement
//! (PROTOCOL.md 2.1).

use crate::common::*;
use serde_json::json;
use std::time::Duration;

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
    c.ws_ping(b"hi").await;
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
        busy.ws_ping(b"").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let code = idle.closed_with().await;
    assert_eq!(code, 1000);
    assert!(busy.closed().is_none());
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

#[tokio::test]
async fn delete_session_revokes_the_token_everywhere() {
    let s = Server::start().await;
    let t = s.user("alice").await;
    let other = s.login("alice").await;
    let mut phone = s.connect(&t, "phone").await;
    let mut laptop = s.connect(&t, "laptop").await;
    let mut kept = s.connect(&other, "tablet").await;
    let (st, _) = s.get("/v1/friends", Some(&t)).await;
    assert_eq!(st, 200);
    let (st, v) = s.delete("/v1/sessions", Some(&t)).await;
    assert_eq!((st, v.clone()), (204, serde_json::Value::Null), "{v}");
    // Its open sockets close with 4001; another token's stays open.
    assert_eq!(phone.closed_with().await, 4001);
    assert_eq!(laptop.closed_with().await, 4001);
    assert_eq!(kept.request(json!({"type":"ping"})).await["type"], "pong");
    // Later HTTP calls get 401, revoking again included.
    for (st, v) in [
        s.get("/v1/friends", Some(&t)).await,
        s.delete("/v1/sessions", Some(&t)).await,
    ] {
        assert_eq!(
            (st, v["code"].as_str()),
            (401, Some("unauthenticated")),
            "{v}"
        );
    }
    // A WebSocket auth with it fails, by frame and by query string.
    let mut c = Client::open(&s.ws_url()).await;
    c.err(json!({"type":"auth","token":t}), "unauthenticated")
        .await;
    assert_eq!(c.closed_with().await, 4001);
    let mut c = Client::open(&format!("{}?token={t}", s.ws_url())).await;
    assert_eq!(c.next().await["code"], "unauthenticated");
    assert_eq!(c.closed_with().await, 4001);
    // The other token still works over HTTP; no token at all is 401.
    assert_eq!(s.get("/v1/friends", Some(&other)).await.0, 200);
    assert_eq!(s.delete("/v1/sessions", None).await.0, 401);
}

#[tokio::test]
async fn revocation_survives_a_restart() {
    let s = Server::start().await;
    let t = s.user("alice").await;
    assert_eq!(s.delete("/v1/sessions", Some(&t)).await.0, 204);
    let dir = s.stop().await;
    let s = Server::start_in(dir, |_| {}).await;
    let (st, v) = s.get("/v1/friends", Some(&t)).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    let fresh = s.login("alice").await;
    assert_eq!(s.get("/v1/friends", Some(&fresh)).await.0, 200);
}

#[tokio::test]
async fn socket_closes_4001_when_its_token_expires() {
    let s = Server::start_with(|c| c.auth.token_ttl_secs = 3).await;
    let t = s.user("alice").await;
    let mut c = s.connect(&t, "phone").await;
    // Busy or not, the connection ends with its token.
    let start = tokio::time::Instant::now();
    let code = loop {
        if let Some(code) = c.closed() {
            break code;
        }
        assert!(start.elapsed() < WAIT, "not closed at expiry");
        if !c.try_send(json!({"type":"ping"})).await {
            break c.closed_with().await;
        }
        let _ = c.next_within(Duration::from_millis(200)).await;
    };
    assert_eq!(code, 4001);
    // The token is refused now; a new login works.
    let (st, _) = s.get("/v1/friends", Some(&t)).await;
    assert_eq!(st, 401);
    let fresh = s.login("alice").await;
    let mut c = s.connect(&fresh, "phone").await;
    assert_eq!(c.request(json!({"type":"ping"})).await["type"], "pong");
}
