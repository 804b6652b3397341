//! The HTTP/1.1 listener: accepts TCP connections and serves each with
//! hyper, as `axum::serve` does, plus what it does not offer: a timeout
//! for the request head (a client that sends half a header, or keeps an
//! idle keep-alive connection, is closed after `http.header_timeout_secs`)
//! and the peer address on every request (`ConnectInfo<SocketAddr>`, the
//! address the rate limits count by).

use crate::config::HttpConfig;
use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Serves `router` on `listener` until `signal` resolves; then stops
/// accepting, lets each connection finish the request in hand (upgraded
/// WebSockets are no longer the listener's) and returns once all closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: &HttpConfig,
    signal: impl Future<Output = ()>,
) {
    let (close_tx, close_rx) = watch::channel(false);
    let header_timeout = Duration::from_secs(cfg.header_timeout_secs);
    tokio::pin!(signal);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut signal => break,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // rather than spin; the connections that end free them.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small frames (an `ok`, a push) must leave at once: without
        // NODELAY, Nagle's algorithm holds them until the client's delayed
        // ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        tokio::spawn(connection(
            tcp,
            peer,
            router.clone(),
            header_timeout,
            close_rx.clone(),
        ));
    }
    drop(listener);
    close_tx.send_replace(true);
    drop(close_rx);
    close_tx.closed().await;
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    mut close: watch::Receiver<bool>,
) {
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        tower_service::Service::call(&mut router, req)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(tcp), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, %peer, "HTTP connection ended");
                }
                break;
            }
            _ = close.wait_for(|c| *c), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
