//! WebSocket sessions (PROTOCOL.md 2). One task per connection: it decodes
//! and handles frames strictly in order, one at a time, and while a frame
//! is being handled it keeps draining the connection's bounded queue onto
//! the socket (coalesced writes, storm batches, repeats of unacknowledged
//! pushes).

mod conn;
mod handshake;
mod limits;
mod writer;

use crate::guard::Slot;
use crate::listener::{Linger, Written};
use crate::pending::Pending;
use crate::state::App;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use conn::run;
use handshake::{authenticate, close_msg, close_reason, linger_until_close, push_offline};
use limits::Stall;
use parking_lot::Mutex;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tern_core::service::encode;
use tern_core::Conn;
use tern_proto::wire::ErrorFrame;
use tern_proto::{close, ErrorCode};
use tokio::time::Instant;

#[derive(Deserialize, Default)]
pub struct WsParams {
    token: Option<String>,
    device: Option<String>,
}

/// The WebSocket endpoint (PROTOCOL.md 2): an HTTP upgrade, then JSON
/// text frames. The token comes in the first frame (`auth`) or here as
/// `?token=&device=`; a bad one is refused inside the socket (close 4001).
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "websocket",
    params(
        ("token" = Option<String>, Query, description = "session token, instead of an `auth` frame"),
        ("device" = Option<String>, Query, description = "device name with `token` (default `default`)"),
    ),
    responses(
        (status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, description = "`invalid`: not a WebSocket upgrade request", body = tern_proto::wire::ErrorBody),
        (status = 503, description = "`unavailable`: too many connections opening at once, or the node is full", body = tern_proto::wire::ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait before trying again"))),
    )
)]
pub async fn upgrade(
    State(app): State<Arc<App>>,
    params: Result<Query<WsParams>, axum::extract::rejection::QueryRejection>,
    written: Option<Extension<Written>>,
    linger: Option<Extension<Linger>>,
    ws: WebSocketUpgrade,
) -> Response {
    // Admission at the configured pace, within the node's connection cap:
    // a reconnect storm is spread out by Retry-After instead of stalling
    // the node.
    let slot = match app.guard.admit_upgrade() {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let params = params.map(|q| q.0).unwrap_or_default();
    let max = app.cfg.limits.frame_bytes;
    let stall = Stall {
        written: written.map(|w| w.0),
        after: Duration::from_millis(app.cfg.limits.stall_timeout_ms),
    };
    ws.max_message_size(max)
        .max_frame_size(max)
        // Small buffers that grow on demand keep idle connections cheap.
        .read_buffer_size(256)
        .write_buffer_size(32 * 1024)
        .on_upgrade(move |socket| {
            // However the session ends, its connection then closes
            // gracefully (the listener drains it): the client reads the
            // close frame instead of a reset.
            if let Some(Extension(l)) = linger {
                l.arm();
            }
            session(app, socket, params, slot, stall)
        })
}

/// Counts a session from upgrade to its close frame.
struct SessionGuard(Arc<App>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions.leave();
    }
}

async fn session(
    app: Arc<App>,
    mut socket: WebSocket,
    params: WsParams,
    mut slot: Slot,
    stall: Stall,
) {
    app.sessions.enter();
    let guard = SessionGuard(app.clone());
    // The start-up steps and each frame's handling run boxed: their state
    // is large (it holds the whole core call) and needed only while they
    // run, so an idle connection keeps just the small loop state.
    let Some((session, device)) =
        Box::pin(authenticate(&app, &mut socket, params, &mut slot)).await
    else {
        return;
    };
    let user = session.user;
    let (conn, rx) = Conn::for_session(
        &user,
        &device,
        app.cfg.limits.outbound_queue,
        session.id,
        session.issued_at,
    );
    if let Err(e) = Box::pin(app.core.connect(conn.clone())).await {
        let _ = socket
            .send(text(error_frame(None, e.code, &e.message)))
            .await;
        let _ = socket
            .send(close_msg(close::INTERNAL, "presence unavailable"))
            .await;
        return;
    }
    app.hot.connections.increment(1.0);

    let pending = Mutex::new(Pending::default());
    let offline_max = match Box::pin(push_offline(&app, &mut socket, &user, &pending, &stall)).await
    {
        Ok(m) => m,
        Err(code) => {
            app.hot.connections.decrement(1.0);
            Box::pin(app.core.disconnect(&conn)).await;
            drop(slot);
            drop(guard);
            if code == close::POLICY {
                // A reader that stopped during its offline batch: its
                // 4008 waits for room and lingers, as any cut's does.
                let linger = Duration::from_secs(app.cfg.limits.close_linger_secs);
                let deadline = Instant::now() + linger;
                let bye = close_msg(code, close_reason(code));
                if let Ok(Ok(())) = tokio::time::timeout_at(deadline, socket.send(bye)).await {
                    linger_until_close(&mut socket, deadline).await;
                }
            }
            return;
        }
    };
    let rooms = Mutex::new(Vec::new());
    app.readers.enter();
    let mut reading = ReadingGuard {
        app: &app,
        open: true,
        counted: true,
    };
    let closed = Box::pin(run(
        &app,
        &conn,
        &mut socket,
        rx,
        &pending,
        offline_max,
        &rooms,
        &mut reading,
        session.expires_at,
        &stall,
    ))
    .await;
    drop(reading);
    for room in rooms.into_inner() {
        app.core.room_leave(&conn, &room).await;
    }
    app.hot.connections.decrement(1.0);
    Box::pin(app.core.disconnect(&conn)).await;
    // The session is over: its connection slots are free again.
    drop(slot);
    drop(guard);
    if let Some(deadline) = closed {
        // Our close frame went out: the socket stays open, its frames read
        // and dropped, until the client's close answers it (RFC 6455
        // 7.1.1) or the grace runs out. A client still reading its
        // backlog writes on the way (its pongs); a socket dropped at once
        // would answer those with a reset, and the client would lose the
        // rest of the backlog and the close frame with its code. The
        // socket counts against no limit meanwhile (its file does, within
        // the grace).
        linger_until_close(&mut socket, deadline).await;
    }
}

/// Counts this connection among those still reading (shutdown waits for
/// them to finish the frame in hand) until it stops reading. `open` says
/// whether frames are still read; the loop clears it, and calls
/// [`ReadingGuard::close`] once the frame in hand (if any) is done: only
/// that leaves the count, once.
struct ReadingGuard<'a> {
    app: &'a App,
    open: bool,
    counted: bool,
}

impl ReadingGuard<'_> {
    fn close(&mut self) {
        self.open = false;
        if std::mem::take(&mut self.counted) {
            self.app.readers.leave();
        }
    }
}

impl Drop for ReadingGuard<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

fn text(b: Bytes) -> Message {
    // Frames are built from `serde_json` output: always UTF-8.
    Message::Text(Utf8Bytes::try_from(b).unwrap_or_default())
}

fn error_frame(id: Option<&str>, code: ErrorCode, message: &str) -> Bytes {
    encode(&ErrorFrame::new(id, code, message))
}
