//! The connection loop: one task per authenticated connection reads and
//! handles frames one at a time while it writes the queue onto the socket,
//! on one timer armed at the earliest of the loop's deadlines.
//!
//! One concern, the loop of one connection, whatever its length: what it
//! writes is decided in `writer.rs`, what a request does in `dispatch.rs`.

use super::handshake::{close_msg, close_reason};
use super::limits::{RateLimit, Stall, Verdict};
use super::writer::WriterState;
use super::{error_frame, text, ReadingGuard};
use crate::dispatch::{self, Socket};
use crate::pending::Pending;
use crate::state::App;
use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tern_core::{encode_msg_push, now_ms, Actor, Conn, CoreError, Outbound};
use tern_proto::frames::decode;
use tern_proto::ids::is_valid_request_id;
use tern_proto::request::Request;
use tern_proto::{close, ErrorCode};
use tokio::time::{Instant, Sleep};

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
                session: conn.session,
            };
            let socket = Socket {
                conn,
                pending,
                rooms,
            };
            // A backend that stops answering (a store behind a dead
            // network) must not hold the connection: its frames are
            // handled one at a time. Past `http.request_timeout_secs` the
            // request is answered `unavailable`, and the client retries
            // (a `send` with the same `client_msg_id`, so one that was
            // stored meanwhile is not stored twice).
            let limit = Duration::from_secs(app.cfg.http.request_timeout_secs);
            match tokio::time::timeout(limit, dispatch::execute(app, actor, Some(&socket), req))
                .await
            {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::warn!(user = %conn.user, "request not completed in time");
                    Err(CoreError::new(
                        ErrorCode::Unavailable,
                        "not completed in time; try again",
                    ))
                }
            }
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

/// One frame's handling, polled by the connection loop while it keeps
/// writing; resolves to whether it queued a reply.
type Handling<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// The connection loop's own deadlines. With the writer's (`WriterState`)
/// they share the loop's one timer, armed at the earliest that applies
/// (`next_due`).
struct Timers {
    /// While lagging: when the queue is next taken.
    lag_tick: Option<Instant>,
    /// After a write of queued frames, the queue is left alone until this
    /// instant: what arrives meanwhile is written together, with one wake-up
    /// of this task and one socket write instead of one per frame (under a
    /// group's fan-out, most frames). While it holds, the queue's receiver is
    /// not polled, so pushes do not wake the task either.
    write_hold: Option<Instant>,
    /// The idle check is armed lazily: frames move `last_in`, and the check
    /// moves only when it comes early.
    idle_at: Instant,
    /// The connection ends with its token: 4001 once it expires.
    expires: Instant,
    /// What the timer is set to; `None` once it fired, or while nothing is
    /// due.
    armed: Option<Instant>,
}

impl Timers {
    /// The earliest deadline of this turn: the loop's own, the writer's,
    /// and `lag_check` (when the connection turns lagging, if it does not
    /// ack first). A probe counts only while the window stops taking
    /// (`take` false), silence only while more waits in the queue, the idle
    /// check only while reading (`may_read`), the token's expiry only until
    /// a close is under way.
    fn next_due(
        &self,
        st: &WriterState<'_>,
        rx: &flume::Receiver<Outbound>,
        conn: &Conn,
        lag_check: Option<Instant>,
        take: bool,
        may_read: bool,
    ) -> Option<Instant> {
        [
            self.lag_tick,
            lag_check,
            (!take).then_some(st.probe_at).flatten(),
            st.silent_at().filter(|_| !rx.is_empty()),
            st.batch_due,
            st.next_wake,
            self.write_hold,
            may_read.then_some(self.idle_at),
            conn.close_code().is_none().then_some(self.expires),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sets `timer` to `due`, if that moved: the timer entry is reset only
    /// when the deadline changes.
    fn arm(&mut self, due: Option<Instant>, timer: Pin<&mut Sleep>) {
        if due != self.armed {
            if let Some(at) = due {
                timer.reset(at);
            }
            self.armed = due;
        }
    }
}

/// Drives an authenticated connection until it closes, in one task: reads
/// frames and handles them strictly one at a time, and meanwhile drains the
/// connection's queue onto the socket (coalescing writes, holding batchable
/// frames for the storm window, repeating unacknowledged pushes). Ends
/// with the close frame; returns when the client's close is awaited
/// until, if that frame went out.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run<'a>(
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
        fill_gaps: app.core.pushes_may_skip(),
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
    // How long the queue is left alone after a write (`Timers::write_hold`).
    let write_interval = Duration::from_millis(lim.write_interval_ms);
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
    let idle_at = last_in + idle;
    let timer = tokio::time::sleep_until(idle_at);
    tokio::pin!(timer);
    let mut timers = Timers {
        lag_tick: None,
        write_hold: None,
        idle_at,
        expires,
        armed: Some(idle_at),
    };
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
        let due = timers.next_due(&st, &rx, conn, lag_check, take, may_read);
        timers.arm(due, timer.as_mut());
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
                    timers.write_hold = None;
                }
            }
            out = rx.recv_async(), if take && timers.write_hold.is_none() && (!lagging || lag_take) => {
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
            () = &mut timer, if timers.armed.is_some() => {
                timers.armed = None;
                let now = Instant::now();
                if timers.write_hold.is_some_and(|at| at <= now) {
                    timers.write_hold = None;
                }
                if let Some(lag) = lagging_after {
                    let stalled = pending.lock().stalled(now, lag);
                    if !lagging && stalled {
                        lagging = true;
                        app.hot.lagging.increment(1);
                        timers.lag_tick = Some(now + jitter(lagging_interval));
                        // While lagging, writes stop once a window of bytes
                        // awaits an ack or a pong: a reader that stopped
                        // costs that much copying, not its socket's whole
                        // send buffer, before its queue fills and it is
                        // closed.
                        st.set_lagging(Some(lim.lagging_window_bytes));
                    } else if timers.lag_tick.is_some_and(|at| at <= now) {
                        // Still lagging: take the queue, if anything is in
                        // it. An ack since (progress) ends the lag.
                        lagging = stalled;
                        if !lagging {
                            st.set_lagging(None);
                        }
                        lag_take = stalled && !rx.is_empty();
                        // A fresh random phase each time: ticks that a busy
                        // moment bunched up do not stay together.
                        timers.lag_tick = stalled.then(|| now + lagging_interval / 2 + jitter(lagging_interval));
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
                if may_read && timers.idle_at <= now {
                    timers.idle_at = last_in + idle;
                    if timers.idle_at <= now {
                        conn.kick(1000);
                        reading.open = false;
                    }
                }
                if timers.expires <= now {
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
                timers.write_hold = Some(Instant::now() + write_interval);
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
