//! [`Session`]: one WebSocket connection at a time, kept alive.
//!
//! One task owns the socket (a [`raw::Connection`](crate::raw::Connection),
//! which splits batches and keeps the close code). Callers hand it requests through a bounded
//! channel; it gives each an `id`, writes it, and answers the caller when
//! the `ok` or `error` with that id comes back (the caller waits at most
//! `request_timeout`). The same task reads pushes, drops duplicates, fills
//! gaps with `history`, acknowledges cumulatively, pings, and reconnects
//! with jittered exponential backoff when the connection drops.

use crate::config::{backoff, ClientConfig};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::raw::{server_error, Connection, Frame, Incoming};
use crate::OutMessage;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tern_proto::close;
use tern_proto::request::{self, ConvSeq, Request};
use tern_proto::wire::{
    Empty, ErrorFrame, HistoryAnswer, MsgPush, MsgView, OfflineDone, OkFrame, PresenceAnswer,
    ReadAnswer, SendAnswer, SyncAnswer,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, timeout, Instant};

/// The receiving side of a session: its [`Event`]s, through a channel of
/// `ClientConfig::event_queue`. `None` once the session has ended.
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("queued", &self.rx.len())
            .finish()
    }
}

impl Events {
    /// The next event; `None` when the session has ended.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// A live WebSocket session (PROTOCOL.md 2), made by
/// [`Client::connect`](crate::Client::connect). Cheap to clone: every clone
/// talks to the same connection. Dropping every clone (or [`Session::close`])
/// ends it.
///
/// What it does for the application:
/// - [`Session::send`] retries with the same `client_msg_id` until the
///   server answers `ok` (rate limits, timeouts and reconnects included), so
///   a message is stored once.
/// - Pushed messages are acknowledged cumulatively (`ack_delay`), dropped
///   when seen before (by `msg_id` and by seq), and delivered in seq order:
///   a jump in seq is filled with `history` first.
/// - When the connection drops it reconnects with backoff, takes the
///   offline queue, then `sync`s and fills what is still missing; rooms and
///   the background state are restored.
///
/// ```no_run
/// # async fn demo() -> tern_client::Result<()> {
/// use tern_client::{Client, Event, OutMessage};
/// let alice = Client::new("http://127.0.0.1:8080")?
///     .login("alice", "password1")
///     .await?;
/// let (session, mut events) = alice.connect("laptop").await?;
/// session.send(OutMessage::text_to("bob", "hello")).await?;
/// while let Some(ev) = events.recv().await {
///     if let Event::Message(m) = ev {
///         println!("{}: {:?}", m.from, m.content.as_ref().map(|c| c.get()));
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    tx: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    ids: Arc<AtomicU64>,
    user: Arc<str>,
    device: Arc<str>,
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("device", &self.device)
            .finish()
    }
}

/// What a session has done on its own since it opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pushes dropped as seen before (redeliveries, offline repeats).
    pub duplicates_dropped: u64,
    /// `history` calls made to fill a gap in seq.
    pub gap_fills: u64,
    /// Messages handed out that came through a gap fill.
    pub filled_messages: u64,
    /// Connections made after the first.
    pub reconnects: u64,
}

#[derive(Default)]
struct Counters {
    duplicates_dropped: AtomicU64,
    gap_fills: AtomicU64,
    filled_messages: AtomicU64,
    reconnects: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a request changes in the session's own state once it is `ok`.
#[derive(Debug, Clone)]
enum ReqKind {
    Send,
    Join(String),
    Leave(String),
    State(bool),
    Other,
}

enum Command {
    Request {
        id: String,
        frame: String,
        kind: ReqKind,
        reply: oneshot::Sender<Result<String>>,
    },
    /// A frame with no reply (`typing` without id).
    Fire(String),
    Close,
}

impl Session {
    pub(crate) async fn open(
        url: String,
        token: String,
        device: String,
        config: ClientConfig,
    ) -> Result<(Session, Events)> {
        let (ws, auth) = Connection::connect(&url, &token, &device, &config).await?;
        let (tx, cmds) = mpsc::channel(config.outgoing_queue.max(1));
        let (etx, erx) = mpsc::channel(config.event_queue.max(1));
        let config = Arc::new(config);
        let user: Arc<str> = auth.user.as_ref().into();
        let counters = Arc::new(Counters::default());
        let _ = etx
            .send(Event::Connected {
                user: auth.user.into_owned(),
                device: auth.device.into_owned(),
                resumed: false,
            })
            .await;
        let task = Task {
            url,
            token,
            device: device.clone(),
            config: config.clone(),
            counters: counters.clone(),
            cmds,
            events: etx,
            queued: VecDeque::new(),
            pending: HashMap::new(),
            convs: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            ack_due: None,
            next_id: 0,
            rooms: HashSet::new(),
            active: true,
            last_tx: Instant::now(),
            last_rx: Instant::now(),
        };
        tokio::spawn(task.run(ws));
        Ok((
            Session {
                tx,
                counters,
                ids: Arc::new(AtomicU64::new(1)),
                user,
                device: device.into(),
                config,
            },
            Events { rx: erx },
        ))
    }

    /// The authenticated user.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// What the session has done on its own so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            duplicates_dropped: c.duplicates_dropped.load(Ordering::Relaxed),
            gap_fills: c.gap_fills.load(Ordering::Relaxed),
            filled_messages: c.filled_messages.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Sends a request and waits for its answer (the `ok` frame's text).
    async fn call(&self, req: Request<'_>, kind: ReqKind) -> Result<String> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed).to_string();
        let text = req.to_json(Some(&id));
        let (reply, answer) = oneshot::channel();
        let cmd = Command::Request {
            id: id.clone(),
            frame: text,
            kind,
            reply,
        };
        let wait = self.config.request_timeout;
        let deadline = Instant::now() + wait;
        match timeout(wait, self.tx.send(cmd)).await {
            Err(_) => return Err(Error::QueueFull),
            Ok(Err(_)) => return Err(Error::Closed("session ended".into())),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(Error::Closed("session ended".into())),
            Ok(Ok(r)) => r,
        }
    }

    async fn request<T: DeserializeOwned>(&self, req: Request<'_>, kind: ReqKind) -> Result<T> {
        let text = self.call(req, kind).await?;
        serde_json::from_str::<OkFrame<'static, T>>(&text)
            .map(|f| f.body)
            .map_err(|e| Error::Protocol(format!("{e}: {text}")))
    }

    /// Sends a message and waits until it is stored. Retries with the same
    /// `client_msg_id` on `rate_limited`, `unavailable`, timeouts and
    /// dropped connections (waiting `retry_base`, doubled each time, with
    /// jitter), up to `send_attempts` times: the server stores it once.
    pub async fn send(&self, msg: OutMessage) -> Result<SendAnswer<'static>> {
        let cfg = &self.config;
        let mut attempt = 0;
        loop {
            match self
                .request::<SendAnswer<'static>>(msg.request(), ReqKind::Send)
                .await
            {
                Err(e) if e.is_transient() && attempt + 1 < cfg.send_attempts => {
                    let wait = backoff(cfg.retry_base, cfg.reconnect_max, attempt);
                    tracing::debug!(error = %e, ?wait, "retrying send");
                    sleep(wait).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// `read`: moves the read position of `conv` to `seq`.
    pub async fn read(&self, conv: &str, seq: u64) -> Result<ReadAnswer> {
        self.request(Request::Read(conv_seq(conv, seq)), ReqKind::Other)
            .await
    }

    /// `sync`: conversations updated after `since` (ms), newest first.
    pub async fn sync(
        &self,
        since: Option<i64>,
        limit: Option<u64>,
    ) -> Result<SyncAnswer<'static>> {
        let req = Request::Sync(request::Sync { since, limit });
        self.request(req, ReqKind::Other).await
    }

    /// `history`: a page of `conv`, ascending seq (bounds exclusive).
    pub async fn history(
        &self,
        conv: &str,
        before_seq: Option<u64>,
        after_seq: Option<u64>,
        limit: Option<u64>,
    ) -> Result<HistoryAnswer<'static>> {
        let req = Request::History(request::History {
            conv: conv.into(),
            before_seq,
            after_seq,
            limit,
        });
        self.request(req, ReqKind::Other).await
    }

    /// `recall`: withdraws one's own message (within the recall window).
    pub async fn recall(&self, conv: &str, seq: u64) -> Result<()> {
        let req = Request::Recall(conv_seq(conv, seq));
        self.request::<Empty>(req, ReqKind::Other).await.map(drop)
    }

    /// `delete`: hides messages from one's own history.
    pub async fn delete(&self, conv: &str, seqs: &[u64]) -> Result<()> {
        let req = Request::Delete(request::Delete {
            conv: conv.into(),
            seqs: seqs.to_vec(),
        });
        self.request::<Empty>(req, ReqKind::Other).await.map(drop)
    }

    /// `presence`: which of `users` are online.
    pub async fn presence(&self, users: &[&str]) -> Result<PresenceAnswer<'static>> {
        let req = Request::Presence(request::Presence {
            users: users.iter().map(|u| Cow::Borrowed(*u)).collect(),
        });
        self.request(req, ReqKind::Other).await
    }

    /// `typing`: tells the other participants of `conv` (no answer; a
    /// refusal comes as [`Event::ServerError`]). Dropped when the outgoing
    /// queue is full: typing is best effort.
    pub fn typing(&self, conv: &str) -> Result<()> {
        let text = Request::Typing(request::Typing { conv: conv.into() }).to_json(None);
        self.tx.try_send(Command::Fire(text)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::QueueFull,
            mpsc::error::TrySendError::Closed(_) => Error::Closed("session ended".into()),
        })
    }

    /// `state`: foreground (`true`) or background. Kept across reconnects.
    pub async fn set_active(&self, active: bool) -> Result<()> {
        let req = Request::State(request::State { active });
        self.request::<Empty>(req, ReqKind::State(active))
            .await
            .map(drop)
    }

    /// `join`: enters a live room. Rooms are joined again after a
    /// reconnect.
    pub async fn join(&self, room: &str) -> Result<()> {
        let req = Request::Join(request::Room { room: room.into() });
        self.request::<Empty>(req, ReqKind::Join(room.to_owned()))
            .await
            .map(drop)
    }

    /// `leave`: leaves a live room.
    pub async fn leave(&self, room: &str) -> Result<()> {
        let req = Request::Leave(request::Room { room: room.into() });
        self.request::<Empty>(req, ReqKind::Leave(room.to_owned()))
            .await
            .map(drop)
    }

    /// `room_send`: broadcasts `content` (any JSON value) to a room's
    /// other members. Not stored, not retried.
    pub async fn room_send(&self, room: &str, content: &serde_json::Value) -> Result<()> {
        let raw = RawValue::from_string(content.to_string())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let req = Request::RoomSend(request::RoomSend {
            room: room.into(),
            content: &raw,
        });
        self.request::<Empty>(req, ReqKind::Other).await.map(drop)
    }

    /// `ping`: a round trip to the server.
    pub async fn ping(&self) -> Result<()> {
        self.call(Request::Ping, ReqKind::Other).await.map(drop)
    }

    /// Closes the connection (code 1000) and ends the session; the event
    /// stream ends after a last [`Event::Disconnected`].
    pub async fn close(&self) {
        let _ = self.tx.send(Command::Close).await;
    }
}

/// Where the session stands in one conversation.
#[derive(Default)]
struct Conv {
    /// Highest seq delivered with nothing missing below it (since the
    /// session first saw the conversation); `None` before that.
    last: Option<u64>,
    /// Highest seq acknowledged.
    acked: u64,
    /// An ack is due (new messages, or a duplicate that shows the server
    /// missed an earlier ack).
    dirty: bool,
    /// A `history` call is filling a gap: pushes wait in `held`.
    filling: bool,
    held: BTreeMap<u64, MsgView<'static>>,
}

enum Pending {
    User {
        kind: ReqKind,
        reply: oneshot::Sender<Result<String>>,
    },
    Gap {
        conv: String,
        tries: u32,
    },
    Sync,
    Quiet,
}

/// Why a connection ended.
enum End {
    /// The server or the network closed it.
    Dropped { code: Option<u16>, reason: String },
    /// The application closed the session.
    Local,
}

struct Task {
    url: String,
    token: String,
    device: String,
    config: Arc<ClientConfig>,
    counters: Arc<Counters>,
    cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Commands taken while disconnected (at most `outgoing_queue`).
    queued: VecDeque<Command>,
    pending: HashMap<String, Pending>,
    convs: HashMap<String, Conv>,
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
    ack_due: Option<Instant>,
    next_id: u64,
    rooms: HashSet<String>,
    active: bool,
    last_tx: Instant,
    last_rx: Instant,
}

impl Task {
    async fn run(mut self, mut ws: Connection) {
        loop {
            let end = self.connection(&mut ws).await;
            self.drop_pending();
            let (code, reason) = match end {
                End::Local => {
                    ws.close(self.config.request_timeout).await;
                    self.emit(Event::Disconnected {
                        code: Some(1000),
                        reason: "closed by the client".into(),
                        reconnecting: false,
                    })
                    .await;
                    return;
                }
                End::Dropped { code, reason } => (code, reason),
            };
            // A revoked token, or a newer login of this device: dialling
            // again would fail, or take the place back from the newer one.
            let final_ = matches!(code, Some(close::UNAUTHENTICATED | close::REPLACED));
            self.emit(Event::Disconnected {
                code,
                reason,
                reconnecting: !final_,
            })
            .await;
            if final_ {
                return;
            }
            match self.reconnect().await {
                Some(w) => ws = w,
                None => return,
            }
        }
    }

    /// Dials until a connection is authenticated; `None` when the session
    /// ends instead (closed meanwhile, token refused, attempts used up).
    async fn reconnect(&mut self) -> Option<Connection> {
        let mut attempt = 0u32;
        loop {
            let wait = backoff(
                self.config.reconnect_base,
                self.config.reconnect_max,
                attempt,
            );
            let until = Instant::now() + wait;
            // Keep taking commands while waiting, up to the queue bound.
            loop {
                let room = self.queued.len() < self.config.outgoing_queue;
                tokio::select! {
                    _ = sleep_until(until) => break,
                    cmd = self.cmds.recv(), if room => match cmd {
                        None | Some(Command::Close) => {
                            self.emit(Event::Disconnected {
                                code: None,
                                reason: "closed by the client".into(),
                                reconnecting: false,
                            })
                            .await;
                            return None;
                        }
                        Some(c) => self.queued.push_back(c),
                    },
                }
            }
            match Connection::connect(&self.url, &self.token, &self.device, &self.config).await {
                Ok((ws, auth)) => {
                    Counters::bump(&self.counters.reconnects);
                    self.emit(Event::Connected {
                        user: auth.user.into_owned(),
                        device: auth.device.into_owned(),
                        resumed: true,
                    })
                    .await;
                    return Some(ws);
                }
                Err(e) => {
                    let refused = e.code() == Some(tern_proto::ErrorCode::Unauthenticated);
                    attempt += 1;
                    let spent = self.config.reconnect_attempts != 0
                        && attempt >= self.config.reconnect_attempts;
                    tracing::debug!(error = %e, attempt, "reconnect failed");
                    if refused || spent {
                        self.emit(Event::Disconnected {
                            code: None,
                            reason: format!("reconnect failed: {e}"),
                            reconnecting: false,
                        })
                        .await;
                        return None;
                    }
                }
            }
        }
    }

    /// Fails what was in flight: the caller may retry (`send` does).
    fn drop_pending(&mut self) {
        for (_, p) in self.pending.drain() {
            if let Pending::User { reply, .. } = p {
                let _ = reply.send(Err(Error::Disconnected));
            }
        }
        for c in self.convs.values_mut() {
            // Held pushes come again (offline queue) or through the gap
            // fill after `sync`.
            c.filling = false;
            c.held.clear();
            c.acked = c.acked.min(c.last.unwrap_or(0));
        }
        self.ack_due = None;
    }

    async fn emit(&mut self, ev: Event) {
        // A dropped `Events` only means nobody listens.
        let _ = self.events.send(ev).await;
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("s{}", self.next_id)
    }

    async fn write(&mut self, ws: &mut Connection, text: String) -> Result<(), End> {
        self.last_tx = Instant::now();
        ws.send_text(text).await.map_err(|e| End::Dropped {
            code: None,
            reason: format!("write failed: {e}"),
        })
    }

    /// Serves one connection until it ends.
    async fn connection(&mut self, ws: &mut Connection) -> End {
        self.last_rx = Instant::now();
        self.last_tx = Instant::now();
        if let Err(end) = self.restore(ws).await {
            return end;
        }
        let tick = (self.config.ping_interval / 3).max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval(tick);
        loop {
            let ack_at = self.ack_due;
            let r = tokio::select! {
                incoming = ws.recv() => match incoming {
                    Incoming::Frame(f) => {
                        self.last_rx = Instant::now();
                        self.on_frame(ws, f).await
                    }
                    Incoming::Other => {
                        self.last_rx = Instant::now();
                        Ok(())
                    }
                    Incoming::Undecodable(t) => {
                        self.last_rx = Instant::now();
                        tracing::debug!(frame = %t, "undecodable frame");
                        Ok(())
                    }
                    Incoming::Closed(c) => Err(End::Dropped { code: c.sent_code(), reason: c.reason }),
                },
                cmd = self.cmds.recv() => match cmd {
                    None | Some(Command::Close) => Err(End::Local),
                    Some(c) => self.on_command(ws, c).await,
                },
                _ = sleep_until(ack_at.unwrap_or_else(Instant::now)), if ack_at.is_some() => {
                    self.flush_acks(ws).await
                }
                _ = ticker.tick() => self.on_tick(ws).await,
            };
            if let Err(end) = r {
                return end;
            }
        }
    }

    /// After a (re)connect: rooms and background state back, then the
    /// commands that waited.
    async fn restore(&mut self, ws: &mut Connection) -> Result<(), End> {
        let mut frames = Vec::new();
        for room in &self.rooms {
            let join = Request::Join(request::Room {
                room: room.as_str().into(),
            });
            frames.push(join.to_json(None));
        }
        if !self.active {
            let state = Request::State(request::State { active: false });
            frames.push(state.to_json(None));
        }
        for f in frames {
            self.write(ws, f).await?;
        }
        while let Some(c) = self.queued.pop_front() {
            self.on_command(ws, c).await?;
        }
        Ok(())
    }

    async fn on_command(&mut self, ws: &mut Connection, cmd: Command) -> Result<(), End> {
        match cmd {
            Command::Request {
                id,
                frame,
                kind,
                reply,
            } => {
                if reply.is_closed() {
                    // The caller gave up (timed out) while it waited.
                    return Ok(());
                }
                self.pending.insert(id, Pending::User { kind, reply });
                self.write(ws, frame).await
            }
            Command::Fire(frame) => self.write(ws, frame).await,
            Command::Close => Err(End::Local),
        }
    }

    async fn on_tick(&mut self, ws: &mut Connection) -> Result<(), End> {
        let every = self.config.ping_interval;
        if self.last_rx.elapsed() > every + self.config.request_timeout {
            return Err(End::Dropped {
                code: None,
                reason: "server silent".into(),
            });
        }
        if self.last_tx.elapsed() >= every || self.last_rx.elapsed() >= every {
            let id = self.id();
            self.pending.insert(id.clone(), Pending::Quiet);
            self.write(ws, Request::Ping.to_json(Some(&id))).await?;
        }
        Ok(())
    }

    async fn on_frame(&mut self, ws: &mut Connection, f: Frame) -> Result<(), End> {
        let text = f.text();
        match f.ty() {
            "ok" | "pong" => {
                let Some(p) = f.id().and_then(|id| self.pending.remove(id)) else {
                    return Ok(());
                };
                self.on_answer(ws, p, Ok(text)).await
            }
            "error" => match f.id().and_then(|id| self.pending.remove(id)) {
                Some(p) => self.on_answer(ws, p, Err(text)).await,
                None => {
                    if let Ok(e) = serde_json::from_str::<ErrorFrame>(text) {
                        self.emit(Event::ServerError(owned_error(e))).await;
                    }
                    Ok(())
                }
            },
            "msg" => match serde_json::from_str::<MsgPush<'static>>(text) {
                Ok(p) => self.on_msg(ws, p.msg).await,
                Err(e) => {
                    tracing::debug!(error = %e, frame = text, "bad msg frame");
                    Ok(())
                }
            },
            "offline_done" => {
                if let Ok(d) = serde_json::from_str::<OfflineDone>(text) {
                    self.emit(Event::OfflineDone {
                        count: d.count,
                        truncated: d.truncated,
                    })
                    .await;
                }
                // Now ask what moved meanwhile that the queue does not
                // hold (one's own sends from other devices, large groups).
                let id = self.id();
                self.pending.insert(id.clone(), Pending::Sync);
                let sync = Request::Sync(request::Sync::default());
                self.write(ws, sync.to_json(Some(&id))).await
            }
            "receipt" => self.push(text, Event::Receipt).await,
            "recalled" => self.push(text, Event::Recalled).await,
            "typing" => self.push(text, Event::Typing).await,
            "presence" => self.push(text, Event::Presence).await,
            "notify" => self.push(text, Event::Notify).await,
            "room_msg" => self.push(text, Event::RoomMessage).await,
            other => {
                tracing::debug!(ty = other, "frame type this client does not know");
                Ok(())
            }
        }
    }

    async fn push<T: DeserializeOwned>(
        &mut self,
        text: &str,
        wrap: fn(T) -> Event,
    ) -> Result<(), End> {
        match serde_json::from_str::<T>(text) {
            Ok(v) => self.emit(wrap(v)).await,
            Err(e) => tracing::debug!(error = %e, frame = text, "bad push"),
        }
        Ok(())
    }

    async fn on_answer(
        &mut self,
        ws: &mut Connection,
        p: Pending,
        r: Result<&str, &str>,
    ) -> Result<(), End> {
        match p {
            Pending::Quiet => Ok(()),
            Pending::User { kind, reply } => {
                if let Ok(text) = r {
                    self.on_ok(&kind, text);
                }
                let _ = reply.send(r.map(str::to_owned).map_err(server_error));
                Ok(())
            }
            Pending::Sync => {
                let Ok(text) = r else {
                    return Ok(());
                };
                let Ok(ok) = serde_json::from_str::<OkFrame<'static, SyncAnswer<'static>>>(text)
                else {
                    return Ok(());
                };
                let mut behind = Vec::new();
                for c in &ok.body.convs {
                    if let Some(st) = self.convs.get(c.conv.as_ref()) {
                        if !st.filling && st.last.is_some_and(|l| c.max_seq > l) {
                            behind.push(c.conv.to_string());
                        }
                    }
                }
                self.emit(Event::Synced(ok.body)).await;
                for conv in behind {
                    self.fill(ws, &conv, 0).await?;
                }
                Ok(())
            }
            Pending::Gap { conv, tries } => match r {
                Ok(text) => {
                    match serde_json::from_str::<OkFrame<'static, HistoryAnswer<'static>>>(text) {
                        Ok(ok) => self.on_fill(ws, &conv, ok.body.msgs).await,
                        Err(e) => {
                            tracing::debug!(error = %e, "bad history answer");
                            self.give_up_fill(ws, &conv).await
                        }
                    }
                }
                Err(text) => {
                    let e = server_error(text);
                    if e.is_transient() && tries + 1 < self.config.send_attempts {
                        // Rate limited: ask again a little later (the
                        // pushes wait in `held` meanwhile).
                        sleep(backoff(
                            self.config.retry_base,
                            self.config.reconnect_max,
                            tries,
                        ))
                        .await;
                        self.fill(ws, &conv, tries + 1).await
                    } else {
                        self.give_up_fill(ws, &conv).await
                    }
                }
            },
        }
    }

    /// What an `ok` changes in the session's own state.
    fn on_ok(&mut self, kind: &ReqKind, text: &str) {
        match kind {
            ReqKind::Send => {
                let Ok(ok) = serde_json::from_str::<OkFrame<SendAnswer>>(text) else {
                    return;
                };
                // One's own message: no push comes for it on this device,
                // so move past it when it is next in line.
                let st = self.convs.entry(ok.body.conv.into_owned()).or_default();
                match st.last {
                    None => st.last = Some(ok.body.seq),
                    Some(l) if !st.filling && ok.body.seq == l + 1 => st.last = Some(ok.body.seq),
                    _ => {}
                }
            }
            ReqKind::Join(room) => {
                self.rooms.insert(room.clone());
            }
            ReqKind::Leave(room) => {
                self.rooms.remove(room);
            }
            ReqKind::State(active) => self.active = *active,
            ReqKind::Other => {}
        }
    }

    async fn on_msg(&mut self, ws: &mut Connection, m: MsgView<'static>) -> Result<(), End> {
        let conv = m.conv.to_string();
        if self.seen.contains(&m.msg_id) {
            Counters::bump(&self.counters.duplicates_dropped);
            self.mark_ack(&conv);
            return Ok(());
        }
        let st = self.convs.entry(conv.clone()).or_default();
        match st.last {
            Some(l) if m.seq <= l => {
                // Seen before this session's memory of ids: a duplicate.
                Counters::bump(&self.counters.duplicates_dropped);
                self.mark_ack(&conv);
                Ok(())
            }
            _ if st.filling => {
                st.held.insert(m.seq, m);
                Ok(())
            }
            Some(l) if m.seq > l + 1 => {
                let after = l;
                tracing::debug!(conv, after, seq = m.seq, "gap: filling with history");
                st.held.insert(m.seq, m);
                self.fill(ws, &conv, 0).await
            }
            _ => {
                self.deliver(m).await;
                Ok(())
            }
        }
    }

    /// Asks for the messages after the conversation's position.
    async fn fill(&mut self, ws: &mut Connection, conv: &str, tries: u32) -> Result<(), End> {
        let Some(st) = self.convs.get_mut(conv) else {
            return Ok(());
        };
        st.filling = true;
        let after = st.last;
        Counters::bump(&self.counters.gap_fills);
        let id = self.id();
        self.pending.insert(
            id.clone(),
            Pending::Gap {
                conv: conv.to_owned(),
                tries,
            },
        );
        let page = Request::History(request::History {
            conv: conv.into(),
            before_seq: None,
            after_seq: after,
            limit: Some(self.config.gap_page.clamp(1, 500)),
        });
        self.write(ws, page.to_json(Some(&id))).await
    }

    async fn on_fill(
        &mut self,
        ws: &mut Connection,
        conv: &str,
        msgs: Vec<MsgView<'static>>,
    ) -> Result<(), End> {
        let full = msgs.len() as u64 >= self.config.gap_page.clamp(1, 500);
        for m in msgs {
            let last = self.convs.get(conv).and_then(|s| s.last);
            if last.is_none_or(|l| m.seq > l) && !self.seen.contains(&m.msg_id) {
                Counters::bump(&self.counters.filled_messages);
                self.deliver(m).await;
            } else if let Some(st) = self.convs.get_mut(conv) {
                // Known (e.g. one's own, answered by `ok`): move past it.
                if last.is_none_or(|l| m.seq > l) {
                    st.last = Some(m.seq);
                }
            }
        }
        if full {
            // More may lie between: next page.
            return self.fill(ws, conv, 0).await;
        }
        // History has nothing more below the held pushes (what is missing
        // was deleted by this user): hand them out in order.
        self.release(conv).await;
        Ok(())
    }

    async fn give_up_fill(&mut self, _ws: &mut Connection, conv: &str) -> Result<(), End> {
        tracing::debug!(conv, "gap fill failed; delivering what arrived");
        self.release(conv).await;
        Ok(())
    }

    /// Ends a fill: the held pushes above the position, in seq order.
    async fn release(&mut self, conv: &str) {
        let Some(st) = self.convs.get_mut(conv) else {
            return;
        };
        st.filling = false;
        let held = std::mem::take(&mut st.held);
        for (_, m) in held {
            let last = self.convs.get(conv).and_then(|s| s.last);
            if last.is_none_or(|l| m.seq > l) && !self.seen.contains(&m.msg_id) {
                self.deliver(m).await;
            }
        }
    }

    /// Hands a message to the application and schedules its ack.
    async fn deliver(&mut self, m: MsgView<'static>) {
        let conv = m.conv.to_string();
        let st = self.convs.entry(conv.clone()).or_default();
        st.last = Some(st.last.map_or(m.seq, |l| l.max(m.seq)));
        self.seen.insert(m.msg_id);
        self.seen_order.push_back(m.msg_id);
        while self.seen_order.len() > self.config.dedup_window.max(1) {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.mark_ack(&conv);
        self.emit(Event::Message(m)).await;
    }

    fn mark_ack(&mut self, conv: &str) {
        if let Some(st) = self.convs.get_mut(conv) {
            st.dirty = true;
        }
        if self.ack_due.is_none() {
            self.ack_due = Some(Instant::now() + self.config.ack_delay);
        }
    }

    /// One cumulative `ack` per conversation that has news: up to the
    /// highest seq held with nothing missing below it.
    async fn flush_acks(&mut self, ws: &mut Connection) -> Result<(), End> {
        self.ack_due = None;
        let mut frames = Vec::new();
        for (conv, st) in &mut self.convs {
            if !st.dirty {
                continue;
            }
            st.dirty = false;
            let Some(last) = st.last else { continue };
            st.acked = st.acked.max(last);
            frames.push(Request::Ack(conv_seq(conv, last)).to_json(None));
        }
        for f in frames {
            self.write(ws, f).await?;
        }
        Ok(())
    }
}

fn owned_error(e: ErrorFrame<'_>) -> ErrorFrame<'static> {
    ErrorFrame {
        ty: e.ty,
        id: e.id.map(|i| Cow::Owned(i.into_owned())),
        code: Cow::Owned(e.code.into_owned()),
        message: Cow::Owned(e.message.into_owned()),
    }
}

/// A conversation position as a request's fields.
fn conv_seq(conv: &str, seq: u64) -> ConvSeq<'_> {
    ConvSeq {
        conv: conv.into(),
        seq,
    }
}
