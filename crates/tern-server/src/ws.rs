//! WebSocket sessions (PROTOCOL.md 2). One task per connection: it decodes
//! and handles frames strictly in order, one at a time, and while a frame
//! is being handled it keeps draining the connection's bounded queue onto
//! the socket (coalesced writes, storm batches, repeats of unacknowledged
//! pushes).

use crate::app::App;
use crate::dispatch::{self, Socket};
use crate::guard::Slot;
use crate::listener::{Linger, Written};
use crate::pending::Pending;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt};
use parking_lot::Mutex;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tern_core::auth::Session;
use tern_core::service::encode;
use tern_core::{encode_msg_push, now_ms, Actor, Conn, CoreError, Outbound};
use tern_proto::frames::{decode, FrameType};
use tern_proto::ids::{is_valid_request_id, is_valid_token};
use tern_proto::request::Request;
use tern_proto::wire::{tag, write_batch, AuthAnswer, ErrorFrame, OfflineDone, OkFrame};
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

/// Socket writes that must move: a write of which the socket takes no
/// byte for `limits.stall_timeout_ms` shows a reader that stopped (its
/// receive buffer and our send buffer are full), and the connection is
/// cut with 4008. A slow reader still takes bytes and is not cut by this.
struct Stall {
    /// The bytes the connection's socket took so far (from the listener).
    written: Option<Written>,
    after: Duration,
}

impl Stall {
    /// Awaits a write (a feed, a flush, a send). Err: the close code, 1000
    /// if the socket failed, 4008 if it took nothing for `after`.
    async fn guard(&self, write: impl Future<Output = Result<(), axum::Error>>) -> Result<(), u16> {
        let mut write = std::pin::pin!(write);
        // Nearly every write completes at once: no timer for those.
        let done = match write.as_mut().now_or_never() {
            Some(done) => done,
            None => match &self.written {
                None => write.await,
                Some(written) => {
                    let mut seen = written.get();
                    loop {
                        match tokio::time::timeout(self.after, write.as_mut()).await {
                            Ok(done) => break done,
                            Err(_) => {
                                let now = written.get();
                                if now == seen {
                                    metrics::counter!("tern_stalled_cuts_total").increment(1);
                                    return Err(close::POLICY);
                                }
                                seen = now;
                            }
                        }
                    }
                }
            },
        };
        done.map_err(|_| 1000)
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
    let (conn, rx) = Conn::for_session(&user, &device, app.cfg.limits.outbound_queue, session.id);
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

/// After our close frame: reads and drops the client's frames until its
/// close comes, or `deadline`.
async fn linger_until_close(socket: &mut WebSocket, deadline: Instant) {
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Counts this connection among those still reading (shutdown waits for
/// them to finish the frame in hand) until it stops reading.
struct ReadingGuard<'a> {
    app: &'a App,
    open: bool,
}

impl ReadingGuard<'_> {
    fn close(&mut self) {
        if std::mem::take(&mut self.open) {
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

fn close_msg(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

fn error_frame(id: Option<&str>, code: ErrorCode, message: &str) -> Bytes {
    encode(&ErrorFrame::new(id, code, message))
}

/// Runs the `auth` step; on failure sends `unauthenticated` and closes
/// with 4001. A user at `rate.connections_per_user` on this node gets
/// `rate_limited` and 4008 instead of `ok`. Returns the token's session and
/// the device.
async fn authenticate(
    app: &App,
    socket: &mut WebSocket,
    params: WsParams,
    slot: &mut Slot,
) -> Option<(Session, String)> {
    let reject = |id: Option<&str>, msg: &str| {
        (
            error_frame(id, ErrorCode::Unauthenticated, msg),
            close_msg(close::UNAUTHENTICATED, "unauthenticated"),
        )
    };
    // A token that could not be checked (the store did not answer whether
    // its user exists) is no reason to log the client out: 1011, and it
    // reconnects.
    let refuse = |id: Option<&str>, e: &tern_core::CoreError| {
        if e.code == ErrorCode::Unavailable {
            (
                error_frame(id, e.code, &e.message),
                close_msg(close::INTERNAL, "service unavailable"),
            )
        } else {
            reject(id, &e.message)
        }
    };
    let (session, device, id) = if let Some(token) = params.token {
        match app.core.session(&token).await {
            Ok(session) => (session, params.device, None),
            Err(e) => {
                let (err, bye) = refuse(None, &e);
                let _ = socket.send(text(err)).await;
                let _ = socket.send(bye).await;
                return None;
            }
        }
    } else {
        let deadline = Instant::now() + Duration::from_secs(app.cfg.limits.auth_timeout_secs);
        loop {
            let msg = match tokio::time::timeout_at(deadline, socket.recv()).await {
                Err(_) => {
                    let (err, bye) = reject(None, "auth timed out");
                    let _ = socket.send(text(err)).await;
                    let _ = socket.send(bye).await;
                    return None;
                }
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(m))) => m,
            };
            let t = match msg {
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => return None,
                Message::Text(t) => t,
                Message::Binary(_) => Utf8Bytes::from_static(""),
            };
            let outcome = match decode(t.as_str()) {
                Ok(d) if d.ty == FrameType::Auth => {
                    let id = d.frame.id.as_deref().map(str::to_owned);
                    match d.frame.token.as_deref() {
                        Some(tok) => match app.core.session(tok).await {
                            Ok(session) => {
                                Ok((session, d.frame.device.as_deref().map(str::to_owned), id))
                            }
                            Err(e) => Err((id, e)),
                        },
                        None => Err((
                            id,
                            tern_core::CoreError::new(
                                ErrorCode::Unauthenticated,
                                "auth needs a token",
                            ),
                        )),
                    }
                }
                Ok(d) => Err((
                    d.frame.id.as_deref().map(str::to_owned),
                    tern_core::CoreError::new(
                        ErrorCode::Unauthenticated,
                        "the first frame must be auth",
                    ),
                )),
                Err(e) => Err((
                    e.id,
                    tern_core::CoreError::new(
                        ErrorCode::Unauthenticated,
                        "the first frame must be auth",
                    ),
                )),
            };
            match outcome {
                Ok(found) => break found,
                Err((id, e)) => {
                    let (err, bye) = refuse(id.as_deref(), &e);
                    let _ = socket.send(text(err)).await;
                    let _ = socket.send(bye).await;
                    return None;
                }
            }
        }
    };
    let device = device.unwrap_or_else(|| "default".to_owned());
    if !is_valid_token(&device) {
        let _ = socket
            .send(text(error_frame(
                id.as_deref(),
                ErrorCode::Invalid,
                "device must be 1-64 characters",
            )))
            .await;
        let _ = socket
            .send(close_msg(close::UNAUTHENTICATED, "bad device"))
            .await;
        return None;
    }
    // A device that reconnects replaces its older connection: never
    // refused for the older one still being counted.
    let replacing = app
        .core
        .hub()
        .devices(&session.user)
        .iter()
        .any(|c| *c.device == *device);
    if !app.guard.connect_user(slot, &session.user, replacing) {
        metrics::counter!("tern_upgrades_refused_total").increment(1);
        let _ = socket
            .send(text(error_frame(
                id.as_deref(),
                ErrorCode::RateLimited,
                "too many connections of this user",
            )))
            .await;
        let _ = socket
            .send(close_msg(close::POLICY, "too many connections"))
            .await;
        return None;
    }
    let ok = encode(&OkFrame::new(
        id.as_deref(),
        AuthAnswer {
            user: Cow::Borrowed(&session.user),
            device: Cow::Borrowed(&device),
            ts: now_ms(),
        },
    ));
    socket.send(text(ok)).await.ok()?;
    Some((session, device))
}

/// Pushes the offline queue, then `offline_done`. Returns, per
/// conversation, the highest seq pushed, so the connection can skip live pushes
/// of the same messages that were queued meanwhile.
async fn push_offline(
    app: &App,
    socket: &mut WebSocket,
    user: &str,
    pending: &Mutex<Pending>,
    stall: &Stall,
) -> Result<HashMap<Arc<str>, u64>, u16> {
    let batch = match app.core.offline(user).await {
        Ok(b) => b,
        Err(e) => {
            let _ = socket
                .send(text(error_frame(None, e.code, &e.message)))
                .await;
            let _ = socket
                .send(close_msg(1011, "offline queue unavailable"))
                .await;
            return Err(1011);
        }
    };
    let timeout = Duration::from_millis(app.cfg.delivery.ack_timeout_ms);
    let mut max: HashMap<Arc<str>, u64> = HashMap::new();
    let count = batch.msgs.len();
    for m in &batch.msgs {
        let frame = encode_msg_push(m);
        let conv: Arc<str> = m.conv.as_str().into();
        let e = max.entry(conv.clone()).or_default();
        *e = (*e).max(m.seq);
        pending
            .lock()
            .add(conv, m.seq, frame.clone(), Instant::now() + timeout);
        stall.guard(socket.feed(text(frame))).await?;
    }
    let done = encode(&OfflineDone {
        ty: tag::OfflineDone,
        count: count as u64,
        truncated: batch.truncated,
    });
    stall.guard(socket.send(text(done))).await?;
    app.hot.frames_out.increment(count as u64 + 1);
    Ok(max)
}

/// Token bucket over every client frame.
struct RateLimit {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
    over_since: Option<Instant>,
    last_refused: Option<Instant>,
    close_after: Duration,
}

enum Verdict {
    Allow,
    Refuse,
    Close,
}

impl RateLimit {
    fn check(&mut self, now: Instant) -> Verdict {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            // A client stays "over the limit" while refusals keep coming:
            // one allowed frame between refusals does not reset the clock,
            // a quiet second without any refusal does.
            if self
                .last_refused
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                self.over_since = None;
            }
            return Verdict::Allow;
        }
        self.last_refused = Some(now);
        let since = *self.over_since.get_or_insert(now);
        if now.duration_since(since) >= self.close_after {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

/// The close code a failed read calls for (RFC 6455 7.4.1), or `None`
/// when the client just went away (the connection dropped, a reset). The
/// error is tungstenite's, inside axum's.
fn read_error_close(e: &axum::Error) -> Option<u16> {
    use tungstenite::error::{Error as WsError, ProtocolError};
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(ws) = err.downcast_ref::<WsError>() {
            return match ws {
                // A message or frame over `limits.frame_bytes`.
                WsError::Capacity(_) => Some(close::TOO_BIG),
                // A text frame (or fragmented text message) that is not
                // UTF-8.
                WsError::Utf8(_) => Some(close::INVALID_DATA),
                WsError::Protocol(
                    ProtocolError::ResetWithoutClosingHandshake
                    | ProtocolError::ReceivedAfterClosing
                    | ProtocolError::SendAfterClosing,
                ) => None,
                // Unmasked frames, RSV bits, reserved opcodes, control
                // frames over 125 bytes or fragmented, a continuation with
                // nothing to continue, a bad close frame.
                WsError::Protocol(_) => Some(close::PROTOCOL),
                _ => None,
            };
        }
        src = err.source();
    }
    None
}

/// Handles one text frame: decodes it into its typed request, runs it
/// (`dispatch::execute`) and queues the answer; returns whether a reply was
/// queued.
async fn handle_text(
    app: &App,
    conn: &Arc<Conn>,
    text: &str,
    pending: &Mutex<Pending>,
    rooms: &Mutex<Vec<String>>,
) -> bool {
    let d = match decode(text) {
        Ok(d) => d,
        Err(e) => {
            conn.reply(error_frame(e.id.as_deref(), e.code, &e.message))
                .await;
            return true;
        }
    };
    let id = d.frame.id.clone();
    let id = id.as_deref();
    if id.is_some_and(|i| !is_valid_request_id(i)) {
        conn.reply(error_frame(
            None,
            ErrorCode::Invalid,
            "id must be at most 64 characters",
        ))
        .await;
        return true;
    }
    let answer = match Request::parse(d) {
        Ok(req) => {
            let actor = Actor {
                user: &conn.user,
                device: Some(&conn.device),
            };
            let socket = Socket {
                conn,
                pending,
                rooms,
            };
            dispatch::execute(app, actor, Some(&socket), req).await
        }
        Err(missing) => Err(CoreError::invalid(missing.to_string())),
    };
    let frame = match answer {
        Ok(answer) => match answer.frame(id) {
            Some(frame) => frame,
            None => return false,
        },
        Err(e) => error_frame(id, e.code, &e.message),
    };
    conn.reply(frame).await;
    true
}

/// How long a closing connection may take to flush its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// A lagging connection that is cut closes at a random moment within
/// this: a thousand readers that stopped, cut by one push, do not tear
/// down in one burst.
const CUT_SPREAD: Duration = Duration::from_secs(1);
/// Frames written before one flush.
const COALESCE: usize = 64;
/// Most frames merged into one `batch` frame.
const BATCH_MAX: usize = 256;
/// A lagging connection's probe waits at most `unacked_probe_ms` times
/// 2 to this power.
const PROBE_BACKOFF_MAX: u32 = 6;

/// The connection's write-side bookkeeping between socket writes.
struct WriterState<'a> {
    pending: &'a Mutex<Pending>,
    /// Per conversation, the highest seq pushed to this connection (the
    /// offline batch included). A message push at or below it is not
    /// written: it was pushed already, or a newer one was (pushes from
    /// different nodes can arrive out of order; the client fills such a
    /// gap from history). So a device never sees a conversation's seqs go
    /// backwards.
    pushed: HashMap<Arc<str>, u64>,
    /// Cluster mode: a message push that skipped seqs after a known one
    /// (another node's push for them is late or lost) leaves the range
    /// here, to be filled from the store before it is written.
    fill_gaps: bool,
    gap: Option<(Arc<str>, u64, u64)>,
    ack_timeout: Duration,
    max_unacked: usize,
    /// `limits.unacked_bytes`: no more writes while this many bytes of
    /// pushes await an ack (0: no window).
    window: usize,
    /// While lagging, `limits.lagging_window_bytes`: no more writes while
    /// this many bytes of pushes written since the last pong await an ack
    /// (0: not lagging, or no such window).
    lag_window: usize,
    /// While a window is full: when the next probe (a frame, or a ping for
    /// the lagging window) may go out, one every `probe`.
    probe_at: Option<Instant>,
    probe: Duration,
    /// While lagging: probes since the window last had room, each one
    /// waiting twice as long as the one before (as TCP's persist timer), so
    /// a reader that stopped is not probed every `probe` until its cut.
    /// `None` (not lagging): every probe waits `probe`.
    ///
    /// A lagging connection's probe is a WebSocket ping, not a queued
    /// frame. Its pong (every WebSocket stack answers pings, RFC 6455)
    /// shows the client reads, and opens the next window's worth: a client
    /// that reads but never acks is written on, one window per round
    /// trip, while one that stopped reading is sent a few bytes of pings
    /// until its cut.
    backoff: Option<u32>,
    /// The unacked bytes when the last pong came (lowered as acks come):
    /// the lagging window counts from here.
    base: usize,
    /// Pings sent; the payload of the last one, whose pong is awaited.
    pings: u64,
    awaiting: Option<u64>,
    /// Since when pings have gone out with no pong and no ack at all, and
    /// how long that may last (`limits.stall_timeout_ms`) while more waits
    /// in the queue: a reader that stopped, whose buffers still had room
    /// for the window, is cut with 4008 then.
    unanswered_since: Option<Instant>,
    silence: Duration,
    next_wake: Option<Instant>,
    storm: Duration,
    batch: Vec<Bytes>,
    batch_due: Option<Instant>,
}

/// Which window stops a connection's writes (`WriterState::window_full`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Full {
    /// `limits.unacked_bytes` of pushes await an ack: probe frames go out.
    Acks,
    /// The lagging window: pings go out, and the pong opens it.
    Pong,
}

impl WriterState<'_> {
    /// Turns a queued item into the frames to write now, in queue order:
    /// records message pushes for redelivery, skips pushes the offline
    /// batch already carried, and holds batchable frames for the storm
    /// window. Any other frame first releases the held ones, so nothing
    /// overtakes what was queued before it (a group that shrinks to the
    /// write limit must not push seq n+1 while seq n is held).
    fn prepare(&mut self, out: Outbound, conn: &Conn) -> [Option<Bytes>; 2] {
        match out {
            Outbound::Frame(f) => [self.take_batch(), Some(f)],
            Outbound::Batched(f) => [self.hold(f), None],
            Outbound::Msg { conv, seq, frame } => {
                [self.take_batch(), self.track(conv, seq, frame, conn)]
            }
        }
    }

    /// Holds a batchable frame; returns the batch once it is full.
    fn hold(&mut self, f: Bytes) -> Option<Bytes> {
        if self.storm.is_zero() {
            return Some(f);
        }
        if self.batch.is_empty() {
            self.batch_due = Some(Instant::now() + self.storm);
        }
        self.batch.push(f);
        if self.batch.len() >= BATCH_MAX {
            return self.take_batch();
        }
        None
    }

    /// Records a message push until it is acknowledged.
    fn track(&mut self, conv: Arc<str>, seq: u64, frame: Bytes, conn: &Conn) -> Option<Bytes> {
        match self.pushed.get_mut(&conv) {
            Some(last) if seq <= *last => {
                metrics::counter!("tern_stale_pushes_total").increment(1);
                return None;
            }
            Some(last) => {
                if self.fill_gaps && seq > *last + 1 {
                    self.gap = Some((conv.clone(), *last, seq));
                }
                *last = seq;
            }
            None => {
                self.pushed.insert(conv.clone(), seq);
            }
        }
        self.record(conv, seq, frame.clone(), conn);
        Some(frame)
    }

    /// Whether a window is set at all (if not, taking needs no clock).
    fn windowed(&self) -> bool {
        self.window != 0 || self.lag_window != 0
    }

    /// Which window the unacked pushes fill, if one: the push window
    /// (only an ack opens it) before the lagging one (a pong opens it).
    fn window_full(&mut self) -> Option<Full> {
        if !self.windowed() {
            return None;
        }
        let bytes = self.pending.lock().bytes();
        self.base = self.base.min(bytes);
        if self.window != 0 && bytes >= self.window {
            Some(Full::Acks)
        } else if self.lag_window != 0 && bytes - self.base >= self.lag_window {
            Some(Full::Pong)
        } else {
            None
        }
    }

    /// Whether the queue may be taken from at `now`: the window has room,
    /// or a probe frame is due. While the window is full, one frame goes
    /// out every `probe` (`limits.unacked_probe_ms`): a client that acks only when a
    /// frame arrives gets one and acks, while one that stopped reading
    /// costs a frame per probe until its queue fills and it is cut off. A
    /// lagging connection is probed with pings instead (`ping_due`).
    fn may_take(&mut self, now: Instant) -> bool {
        let full = self.window_full();
        if full.is_none() {
            self.probe_at = None;
            self.unanswered_since = None;
            if let Some(n) = self.backoff.as_mut() {
                *n = 0;
            }
            return true;
        }
        match self.probe_at {
            Some(_) if full == Some(Full::Pong) => false,
            Some(at) => at <= now,
            None => {
                self.probe_at = Some(now + self.probe_wait());
                false
            }
        }
    }

    /// After a write: whether the window is now full (taking stops until
    /// the next probe; a lagging connection's first ping goes out at once).
    fn window_closed(&mut self) -> bool {
        let Some(full) = self.window_full() else {
            return false;
        };
        let now = Instant::now();
        self.probe_at = Some(match full {
            Full::Pong => now,
            Full::Acks => now + self.probe_wait(),
        });
        true
    }

    /// While the lagging window (only) is full: the payload of the ping
    /// due at `now`, if one is (the next one is scheduled).
    fn ping_due(&mut self, now: Instant) -> Option<Bytes> {
        if self.lag_window == 0
            || self.probe_at.is_none_or(|at| at > now)
            || self.window_full() != Some(Full::Pong)
        {
            return None;
        }
        self.probe_at = Some(now + self.probe_wait());
        self.pings += 1;
        self.awaiting = Some(self.pings);
        self.unanswered_since.get_or_insert(now);
        Some(Bytes::copy_from_slice(&self.pings.to_be_bytes()))
    }

    /// A pong came: if it answers the last ping, the client reads, and the
    /// lagging window opens for the next window's worth (the push window
    /// still needs an ack). Returns whether it did.
    fn pong(&mut self, payload: &[u8]) -> bool {
        // The pong of any of our pings shows the client reads (slowly,
        // if not the last one's).
        if <[u8; 8]>::try_from(payload)
            .is_ok_and(|p| (1..=self.pings).contains(&u64::from_be_bytes(p)))
        {
            self.unanswered_since = None;
        }
        let Some(n) = self.awaiting else { return false };
        if payload != n.to_be_bytes() {
            return false;
        }
        self.awaiting = None;
        self.base = self.pending.lock().bytes();
        self.probe_at = None;
        if let Some(b) = self.backoff.as_mut() {
            *b = 0;
        }
        true
    }

    /// The connection turns lagging (`Some`: its lagging window), or stops
    /// lagging (`None`).
    fn set_lagging(&mut self, window: Option<usize>) {
        self.probe_at = None;
        self.base = 0;
        self.awaiting = None;
        self.unanswered_since = None;
        self.lag_window = window.unwrap_or(0);
        self.backoff = window.map(|_| 0);
    }

    /// When a reader that answers none of its pings is cut, if more waits
    /// for it than its window let through.
    fn silent_at(&self) -> Option<Instant> {
        self.unanswered_since.map(|t| t + self.silence)
    }

    /// The wait before the next probe (counted as sent).
    fn probe_wait(&mut self) -> Duration {
        match self.backoff.as_mut() {
            None => self.probe,
            Some(n) => {
                let wait = self.probe * (1 << (*n).min(PROBE_BACKOFF_MAX));
                *n += 1;
                wait
            }
        }
    }

    /// Tracks a written message push until it is acknowledged.
    fn record(&mut self, conv: Arc<str>, seq: u64, frame: Bytes, conn: &Conn) {
        let due = Instant::now() + self.ack_timeout;
        let n = self.pending.lock().add(conv, seq, frame, due);
        if n > self.max_unacked {
            conn.kick(close::POLICY);
        }
        if self.next_wake.is_none_or(|w| due < w) {
            self.next_wake = Some(due);
        }
    }

    /// The held frames as one frame: alone if there is one, else
    /// `{"type":"batch","frames":[...]}` built from the encoded frames
    /// without decoding them again.
    fn take_batch(&mut self) -> Option<Bytes> {
        self.batch_due = None;
        match self.batch.len() {
            0 => None,
            1 => self.batch.pop(),
            _ => {
                let len: usize = self.batch.iter().map(|f| f.len() + 1).sum();
                let mut buf = Vec::with_capacity(len + 32);
                write_batch(&mut buf, self.batch.iter().map(|f| &f[..]));
                self.batch.clear();
                Some(Bytes::from(buf))
            }
        }
    }
}

/// One frame's handling, polled by the connection loop while it keeps
/// writing; resolves to whether it queued a reply.
type Handling<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// Drives an authenticated connection until it closes, in one task: reads
/// frames and handles them strictly one at a time, and meanwhile drains the
/// connection's queue onto the socket (coalescing writes, holding batchable
/// frames for the storm window, repeating unacknowledged pushes). Ends
/// with the close frame; returns when the client's close is awaited
/// until, if that frame went out.
#[allow(clippy::too_many_arguments)]
async fn run<'a>(
    app: &'a App,
    conn: &'a Arc<Conn>,
    socket: &mut WebSocket,
    rx: flume::Receiver<Outbound>,
    pending: &'a Mutex<Pending>,
    offline_max: HashMap<Arc<str>, u64>,
    rooms: &'a Mutex<Vec<String>>,
    reading: &mut ReadingGuard<'_>,
    token_expires_at: i64,
    stall: &Stall,
) -> Option<tokio::time::Instant> {
    let lim = &app.cfg.limits;
    // The connection ends with its token: 4001 once it expires.
    let expires = Instant::now()
        + Duration::from_millis(u64::try_from(token_expires_at - now_ms()).unwrap_or(0));
    let idle = Duration::from_secs(lim.idle_timeout_secs);
    let mut rate = RateLimit {
        tokens: f64::from(lim.frame_burst),
        last: Instant::now(),
        rate: f64::from(lim.frame_rate),
        burst: f64::from(lim.frame_burst),
        over_since: None,
        last_refused: None,
        close_after: Duration::from_secs(lim.rate_close_secs),
    };
    let max_tries = app.cfg.delivery.redeliveries;
    let next_wake = pending.lock().next_due();
    let mut st = WriterState {
        pending,
        pushed: offline_max,
        fill_gaps: app.core.is_cluster(),
        gap: None,
        ack_timeout: Duration::from_millis(app.cfg.delivery.ack_timeout_ms),
        max_unacked: lim.max_unacked,
        window: lim.unacked_bytes,
        lag_window: 0,
        probe_at: None,
        probe: Duration::from_millis(lim.unacked_probe_ms),
        backoff: None,
        base: 0,
        pings: 0,
        awaiting: None,
        unanswered_since: None,
        silence: Duration::from_millis(lim.stall_timeout_ms),
        next_wake,
        storm: Duration::from_millis(lim.storm_window_ms),
        batch: Vec::new(),
        batch_due: None,
    };
    // After a write of queued frames, the queue is left alone until this
    // instant: what arrives meanwhile is written together, with one wake-up
    // of this task and one socket write instead of one per frame (under a
    // group's fan-out, most frames). While it holds, the queue's receiver is
    // not polled, so pushes do not wake the task either.
    let write_interval = Duration::from_millis(lim.write_interval_ms);
    let mut write_hold: Option<Instant> = None;
    // A client that has left pushes unacknowledged this long with no ack
    // in between is lagging: its queue is taken on a timer of its own
    // (`limits.lagging_interval_ms` on average, each wait drawn at random),
    // not on every push, until an ack shows progress. Under a fan-out only
    // the connections that keep up are then woken and written at once; a
    // thousand readers that stopped, whose socket buffers still take bytes,
    // do their copying spread over time instead of ahead of every fast
    // reader. `lag_take`: the timer came, the queue is taken this turn.
    let lagging_after =
        (lim.lagging_after_ms > 0).then(|| Duration::from_millis(lim.lagging_after_ms));
    let lagging_interval = Duration::from_millis(lim.lagging_interval_ms);
    let mut lagging = false;
    let mut lag_tick: Option<Instant> = None;
    let mut lag_take = false;
    let mut handling: Option<Handling<'a>> = None;
    let mut stopping = app.stopping.clone();
    let mut last_in = Instant::now();
    // One kick future and one timer for the connection's whole life:
    // re-creating them on every wake-up (a timer entry, a waiter
    // registration) is most of the cost of a push under heavy fan-out. The
    // timer serves the storm window, redelivery and the idle check, armed
    // at the earliest of them.
    let kicked = conn.kicked();
    tokio::pin!(kicked);
    // The idle check is armed lazily: frames move `last_in`, and the check
    // moves only when it comes early.
    let mut idle_at = last_in + idle;
    let timer = tokio::time::sleep_until(idle_at);
    tokio::pin!(timer);
    let mut armed = Some(idle_at);
    let code = 'run: loop {
        // Reading has stopped: done once the frame in hand (if any) is.
        if !reading.open && handling.is_none() {
            reading.close();
        }
        let may_read = reading.open && handling.is_none();
        let mut written = 0u64;
        // No clock read on this path while the window is off (the default).
        let take = !st.windowed() || st.may_take(Instant::now());
        // Whether the queue was drained in this turn (then the hold starts).
        let mut drained = false;
        // When this connection turns lagging, if it does not ack first.
        let lag_check = match lagging_after {
            Some(lag) if !lagging => pending.lock().stalled_since().map(|t| t + lag),
            _ => None,
        };
        let due = [
            lag_tick,
            lag_check,
            (!take).then_some(st.probe_at).flatten(),
            st.silent_at().filter(|_| !rx.is_empty()),
            st.batch_due,
            st.next_wake,
            write_hold,
            may_read.then_some(idle_at),
            conn.close_code().is_none().then_some(expires),
        ]
        .into_iter()
        .flatten()
        .min();
        if due != armed {
            if let Some(at) = due {
                timer.as_mut().reset(at);
            }
            armed = due;
        }
        // Not biased: a steady stream of pushes must not starve reading,
        // nor a flood of frames the writes.
        tokio::select! {
            code = &mut kicked => break 'run code,
            () = async { let _ = stopping.wait_for(|s| *s).await; }, if reading.open => {
                // Shutdown: no new frames; writing goes on until the 1001
                // that comes once every connection stopped reading.
                reading.open = false;
            }
            replied = async { handling.as_mut().expect("guarded").await }, if handling.is_some() => {
                handling = None;
                // A reply ends the hold: a client waiting for an answer
                // gets it at once (after what was queued before it).
                if replied {
                    write_hold = None;
                }
            }
            out = rx.recv_async(), if take && write_hold.is_none() && (!lagging || lag_take) => {
                let Ok(mut out) = out else { break 'run 1000 };
                loop {
                    let [held, frame] = st.prepare(out, conn);
                    // Empty (no allocation) unless a gap is filled.
                    let mut filled = Vec::new();
                    if let Some((conv, after, before)) = st.gap.take() {
                        // Written before `frame`: the device sees the
                        // conversation in seq order.
                        for m in app.core.gap_fill(&conn.user, &conv, after, before).await {
                            let f = encode_msg_push(&m);
                            st.record(conv.clone(), m.seq, f.clone(), conn);
                            filled.push(f);
                        }
                    }
                    for frame in held.into_iter().chain(filled).chain(frame) {
                        if let Err(code) = stall.guard(socket.feed(text(frame))).await {
                            break 'run code;
                        }
                        written += 1;
                    }
                    if written as usize >= COALESCE || st.window_closed() {
                        // More may be queued: no hold, the next turn
                        // writes on (once the window has room).
                        break;
                    }
                    match rx.try_recv() {
                        Ok(o) => out = o,
                        Err(_) => {
                            drained = true;
                            break;
                        }
                    }
                }
                // A lagging connection takes on until its queue is empty.
                lag_take = !drained;
            }
            () = &mut timer, if armed.is_some() => {
                armed = None;
                let now = Instant::now();
                if write_hold.is_some_and(|at| at <= now) {
                    write_hold = None;
                }
                if let Some(lag) = lagging_after {
                    let stalled = pending.lock().stalled(now, lag);
                    if !lagging && stalled {
                        lagging = true;
                        app.hot.lagging.increment(1);
                        lag_tick = Some(now + jitter(lagging_interval));
                        // While lagging, writes stop once a window of bytes
                        // awaits an ack or a pong: a reader that stopped
                        // costs that much copying, not its socket's whole
                        // send buffer, before its queue fills and it is
                        // closed.
                        st.set_lagging(Some(lim.lagging_window_bytes));
                    } else if lag_tick.is_some_and(|at| at <= now) {
                        // Still lagging: take the queue, if anything is in
                        // it. An ack since (progress) ends the lag.
                        lagging = stalled;
                        if !lagging {
                            st.set_lagging(None);
                        }
                        lag_take = stalled && !rx.is_empty();
                        // A fresh random phase each time: ticks that a busy
                        // moment bunched up do not stay together.
                        lag_tick = stalled.then(|| now + lagging_interval / 2 + jitter(lagging_interval));
                    }
                }
                if let Some(ping) = st.ping_due(now) {
                    if let Err(code) = stall.guard(socket.feed(Message::Ping(ping))).await {
                        break 'run code;
                    }
                    written += 1;
                }
                if st.silent_at().is_some_and(|at| at <= now) && !rx.is_empty() {
                    // Lagging, its window full, none of its pings answered
                    // for `limits.stall_timeout_ms`, and more waiting: a
                    // reader that stopped. Its messages stay queued.
                    metrics::counter!("tern_silent_cuts_total").increment(1);
                    conn.kick(close::POLICY);
                }
                if st.batch_due.is_some_and(|at| at <= now) {
                    if let Some(frame) = st.take_batch() {
                        if let Err(code) = stall.guard(socket.feed(text(frame))).await {
                            break 'run code;
                        }
                        written += 1;
                    }
                }
                if st.next_wake.is_some_and(|at| at <= now) {
                    let due = st.pending.lock().take_due(now, st.ack_timeout, max_tries);
                    app.hot.redeliveries.increment(due.len() as u64);
                    for frame in due {
                        if let Err(code) = stall.guard(socket.feed(text(frame))).await {
                            break 'run code;
                        }
                        written += 1;
                    }
                    st.next_wake = st.pending.lock().next_due();
                }
                if may_read && idle_at <= now {
                    idle_at = last_in + idle;
                    if idle_at <= now {
                        conn.kick(1000);
                        reading.open = false;
                    }
                }
                if expires <= now {
                    conn.kick(close::UNAUTHENTICATED);
                    reading.open = false;
                }
            }
            msg = socket.recv(), if may_read => {
                if let Some(Ok(Message::Pong(p))) = &msg {
                    // The answer to a lagging connection's ping: it reads,
                    // so its queue is taken now, up to the next window.
                    if st.pong(p) {
                        lag_take = lagging && !rx.is_empty();
                    }
                }
                match read_frame(app, conn, msg, &mut rate, pending, rooms) {
                    Read::Handle(h) => handling = Some(h),
                    Read::Skip => {}
                    Read::Stop => reading.open = false,
                }
                last_in = Instant::now();
            }
        }
        if written > 0 {
            app.hot.frames_out.increment(written);
            // A client too slow to take our bytes must not stall a kick.
            tokio::select! {
                biased;
                r = stall.guard(socket.flush()) => if let Err(code) = r { break 'run code },
                code = &mut kicked => break 'run code,
            }
            if drained && !lagging && !write_interval.is_zero() {
                write_hold = Some(Instant::now() + write_interval);
            }
        }
    };
    // The frame in hand finishes (its effects are the client's due; its
    // reply, if any, is no longer written).
    if let Some(h) = handling {
        let _ = tokio::time::timeout(CLOSE_GRACE, h).await;
    }
    reading.close();
    if code == close::GOING_AWAY {
        // Shutdown: everything stored is pushed before the close.
        st.max_unacked = usize::MAX;
        st.window = 0;
        st.lag_window = 0;
        while let Ok(out) = rx.try_recv() {
            for frame in st.prepare(out, conn).into_iter().flatten() {
                if stall.guard(socket.feed(text(frame))).await.is_err() {
                    return None;
                }
            }
        }
        if let Some(frame) = st.take_batch() {
            if stall.guard(socket.feed(text(frame))).await.is_err() {
                return None;
            }
        }
    }
    if lagging && code == close::POLICY {
        // Readers that stopped are cut by the same push, all at once:
        // their closes (and the teardown after) are spread over
        // `CUT_SPREAD` rather than queued ahead of every other connection.
        tokio::time::sleep(jitter(CUT_SPREAD)).await;
    }
    // A cut reader's close waits for room in its socket, and the socket
    // then stays open for the client's close, up to
    // `limits.close_linger_secs`: one that stopped and reads again within
    // it finds everything written to it, then the 4008 (a socket dropped
    // sooner would answer its late pongs with a reset, which discards what
    // it had not read). Shutdown ends the wait.
    let linger = if code == close::POLICY {
        Duration::from_secs(lim.close_linger_secs)
    } else {
        CLOSE_GRACE
    };
    let deadline = Instant::now() + linger;
    let bye = async {
        if socket
            .send(close_msg(code, close_reason(code)))
            .await
            .is_ok()
        {
            return true;
        }
        // The client closed first: the WebSocket layer queued the echo of
        // its close frame (RFC 6455 5.5.1), written on the next flush, not
        // by a send after the close.
        let _ = socket.flush().await;
        false
    };
    tokio::select! {
        r = tokio::time::timeout_at(deadline, bye) => r.unwrap_or(false).then_some(deadline),
        _ = stopping.wait_for(|s| *s), if code != close::GOING_AWAY => None,
    }
}

/// The reason sent with a close code.
fn close_reason(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "server shutting down",
        close::TOO_BIG => "frame too large",
        close::PROTOCOL => "protocol error",
        close::INVALID_DATA => "invalid UTF-8 in a text frame",
        close::POLICY => "rate limit or slow reader",
        close::REPLACED => "replaced by a newer login of this device",
        close::UNAUTHENTICATED => "token expired or revoked",
        1000 => "idle timeout or closed",
        _ => "",
    }
}

/// A random duration within `d` (at least 1 ms): lagging connections
/// that wait together spread their writes over the interval.
fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis().max(1) as u64;
    Duration::from_millis(rand::random_range(1..=ms))
}

/// What the connection loop does with a frame read from the socket.
enum Read<'a> {
    /// Handle it (the loop polls this while it keeps writing).
    Handle(Handling<'a>),
    /// Nothing more to do (a pong, a refused frame).
    Skip,
    /// Stop reading: the client went away or is being closed.
    Stop,
}

/// Checks one socket read: end of stream, size and rate limits; turns a
/// frame into its handling.
fn read_frame<'a>(
    app: &'a App,
    conn: &'a Arc<Conn>,
    msg: Option<Result<Message, axum::Error>>,
    rate: &mut RateLimit,
    pending: &'a Mutex<Pending>,
    rooms: &'a Mutex<Vec<String>>,
) -> Read<'a> {
    let gone = || {
        // The client went away: close (during shutdown, the 1001 that
        // follows does).
        if !*app.stopping.borrow() {
            conn.kick(1000);
        }
        Read::Stop
    };
    let msg = match msg {
        None => return gone(),
        Some(Err(e)) => {
            if let Some(code) = read_error_close(&e) {
                conn.kick(code);
            }
            return gone();
        }
        Some(Ok(m)) => m,
    };
    match msg {
        Message::Pong(_) => return Read::Skip,
        Message::Close(_) => return gone(),
        _ => {}
    }
    app.hot.frames_in.increment(1);
    match rate.check(Instant::now()) {
        Verdict::Allow => {}
        Verdict::Refuse => {
            app.hot.rate_limited.increment(1);
            if let Message::Text(t) = &msg {
                let id = decode(t.as_str())
                    .ok()
                    .and_then(|d| d.frame.id.map(|s| s.into_owned()));
                // Never waits: a client that floods and does not read
                // fills its queue and is closed as a slow reader.
                conn.push(Outbound::Frame(error_frame(
                    id.as_deref(),
                    ErrorCode::RateLimited,
                    "too many frames",
                )));
            }
            return Read::Skip;
        }
        Verdict::Close => {
            app.hot.rate_limited.increment(1);
            conn.kick(close::POLICY);
            return Read::Stop;
        }
    }
    match msg {
        Message::Text(t) => Read::Handle(Box::pin(async move {
            handle_text(app, conn, t.as_str(), pending, rooms).await
        })),
        Message::Binary(_) => Read::Handle(Box::pin(async move {
            conn.reply(error_frame(
                None,
                ErrorCode::BadFrame,
                "frames are JSON text",
            ))
            .await;
            true
        })),
        // Answered by the WebSocket layer; counted above as activity.
        _ => Read::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(pending: &Mutex<Pending>, backoff: Option<u32>) -> WriterState<'_> {
        WriterState {
            pending,
            pushed: HashMap::new(),
            fill_gaps: false,
            gap: None,
            ack_timeout: Duration::from_secs(5),
            max_unacked: 16,
            // Lagging: a lagging window; not: a push window.
            window: if backoff.is_some() { 0 } else { 1024 },
            lag_window: if backoff.is_some() { 1024 } else { 0 },
            probe_at: None,
            probe: Duration::from_millis(100),
            backoff,
            base: 0,
            pings: 0,
            awaiting: None,
            unanswered_since: None,
            silence: Duration::from_secs(5),
            next_wake: None,
            storm: Duration::ZERO,
            batch: Vec::new(),
            batch_due: None,
        }
    }

    fn waits(st: &mut WriterState<'_>, n: usize) -> Vec<u64> {
        (0..n).map(|_| st.probe_wait().as_millis() as u64).collect()
    }

    /// A lagging connection's probes wait twice as long each time, up to
    /// a cap, and start over once the window has room; other connections
    /// probe at the plain interval.
    #[test]
    fn lagging_probes_back_off() {
        let pending = Mutex::new(Pending::default());
        let mut st = writer(&pending, Some(0));
        assert_eq!(
            waits(&mut st, 9),
            [100, 200, 400, 800, 1600, 3200, 6400, 6400, 6400]
        );
        // The window is empty (not full): taking resumes, backoff resets.
        assert!(st.may_take(Instant::now()));
        assert_eq!(waits(&mut st, 2), [100, 200]);
        let mut plain = writer(&pending, None);
        assert_eq!(waits(&mut plain, 4), [100, 100, 100, 100]);
    }

    /// A lagging connection with a full window is probed with pings, the
    /// first at once; only the pong of the last ping opens the next
    /// window's worth, and it does so without any ack.
    #[test]
    fn the_pong_of_the_last_ping_opens_a_lagging_window() {
        let pending = Mutex::new(Pending::default());
        let mut st = writer(&pending, Some(0));
        let conv: Arc<str> = Arc::from("d:a:b");
        let due = Instant::now() + Duration::from_secs(60);
        let push = |seq| {
            pending
                .lock()
                .add(conv.clone(), seq, Bytes::from(vec![b'x'; 600]), due)
        };
        push(1);
        assert!(st.may_take(Instant::now()));
        push(2);
        assert!(st.window_closed(), "1,200 bytes fill a window of 1,024");
        let now = Instant::now();
        assert!(!st.may_take(now), "no frame goes through a full window");
        let first = st.ping_due(now).expect("the first ping is due at once");
        assert!(st.ping_due(now).is_none(), "the next one waits");
        let second = st.ping_due(now + Duration::from_millis(100)).unwrap();
        assert_ne!(first, second);
        assert!(!st.pong(&first), "the pong of an earlier ping");
        assert!(!st.pong(b"other"));
        assert!(!st.may_take(now));
        assert!(st.pong(&second));
        assert!(st.may_take(now), "the pong opened the window");
        assert!(!st.pong(&second), "a pong counts once");
        push(3);
        push(4);
        assert!(st.window_closed(), "the next 1,024 bytes fill it again");
        // Not lagging: no pings (a probe frame goes through instead).
        let mut plain = writer(&pending, None);
        assert!(!plain.may_take(Instant::now()));
        assert!(plain
            .ping_due(Instant::now() + Duration::from_secs(1))
            .is_none());
        assert!(plain.may_take(Instant::now() + Duration::from_secs(1)));
        // Lagging with a full push window too: a pong does not open that
        // one (only an ack does), and its probes are frames, not pings.
        let mut both = writer(&pending, Some(0));
        both.window = 4096;
        push(5);
        push(6);
        push(7);
        assert!(both.window_closed(), "4,200 bytes fill the push window");
        let later = Instant::now() + Duration::from_secs(1);
        assert!(
            both.ping_due(later).is_none(),
            "no ping for the push window"
        );
        assert!(both.may_take(later), "a probe frame instead");
    }

    /// A lagging connection is silent from its first unanswered ping: the
    /// pong of any ping (even an earlier one: a slow reader) or room in its
    /// window ends that, and the cut falls `silence` after it.
    #[test]
    fn silence_counts_from_the_first_unanswered_ping() {
        let pending = Mutex::new(Pending::default());
        let mut st = writer(&pending, Some(0));
        let conv: Arc<str> = Arc::from("d:a:b");
        let due = Instant::now() + Duration::from_secs(60);
        pending
            .lock()
            .add(conv.clone(), 1, Bytes::from(vec![b'x'; 2000]), due);
        assert!(st.window_closed());
        assert_eq!(st.silent_at(), None, "no ping yet");
        let t0 = Instant::now();
        let first = st.ping_due(t0).unwrap();
        assert_eq!(st.silent_at(), Some(t0 + Duration::from_secs(5)));
        let later = t0 + Duration::from_secs(1);
        st.ping_due(later).unwrap();
        assert_eq!(
            st.silent_at(),
            Some(t0 + Duration::from_secs(5)),
            "counted from the first"
        );
        assert!(!st.pong(b"12345678"), "not one of ours");
        assert!(st.silent_at().is_some());
        assert!(!st.pong(&first), "an earlier ping does not open the window");
        assert_eq!(st.silent_at(), None, "but shows the client reads");
        st.ping_due(later + Duration::from_secs(10)).unwrap();
        assert!(st.silent_at().is_some());
        pending.lock().ack(&conv, 1);
        assert!(st.may_take(later), "the ack made room");
        assert_eq!(st.silent_at(), None);
    }
}
