//! [`Session`]: one WebSocket connection at a time, kept alive.
//!
//! One task owns the socket (a [`raw::Connection`](crate::raw::Connection),
//! which splits batches and keeps the close code). Callers hand it requests through a bounded
//! channel; it gives each an `id`, writes it, and answers the caller when
//! the `ok` or `error` with that id comes back (the caller waits at most
//! `request_timeout`). The same task reads pushes, drops duplicates, fills
//! gaps with `history`, acknowledges cumulatively, pings, and reconnects
//! with jittered exponential backoff when the connection drops.
//!
//! This file is the caller's side: [`Session`], its requests and
//! [`Events`]. The task is `task.rs`; what it knows of each conversation
//! (seen ids, positions, held pushes, acks due) is `crate::convs`, which
//! has no socket.

mod task;

use crate::config::{backoff, ClientConfig};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::raw::Connection;
use crate::OutMessage;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use task::Task;
use tern_proto::request::{self, ConvSeq, Request};
use tern_proto::wire::{
    Empty, HistoryAnswer, OkFrame, PresenceAnswer, ReadAnswer, ScheduledAnswer, SearchAnswer,
    SendAnswer, SyncAnswer,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, timeout, Instant};

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
        let task = Task::new(
            url,
            token,
            device.clone(),
            config.clone(),
            counters.clone(),
            cmds,
            etx,
        );
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

    /// 5.6: `send` with `at` (set by [`OutMessage::at`]): the server
    /// keeps the message until then and answers with its scheduled id.
    /// Not retried: scheduling again with the same `client_msg_id` keeps
    /// a second copy, which dedup turns into a no-op at its time.
    pub async fn schedule(&self, msg: OutMessage) -> Result<ScheduledAnswer<'static>> {
        if msg.scheduled_at().is_none() {
            return Err(Error::Invalid("schedule needs OutMessage::at".into()));
        }
        self.request(msg.request(), ReqKind::Other).await
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

    /// 5.2 `search`: the user's messages holding every word of `q` (the
    /// last also as a prefix), newest first; `before_ts` (ms) pages back.
    pub async fn search(
        &self,
        q: &str,
        conv: Option<&str>,
        limit: Option<u64>,
        before_ts: Option<i64>,
    ) -> Result<SearchAnswer<'static>> {
        let req = Request::Search(request::Search {
            q: q.into(),
            conv: conv.map(Into::into),
            limit,
            before_ts,
        });
        self.request(req, ReqKind::Other).await
    }

    /// `recall`: withdraws one's own message (within the recall window).
    pub async fn recall(&self, conv: &str, seq: u64) -> Result<()> {
        let req = Request::Recall(conv_seq(conv, seq));
        self.request::<Empty>(req, ReqKind::Other).await.map(drop)
    }

    /// `edit` (5.1): new content for one's own message (its kind stays);
    /// answers `edited_at`.
    pub async fn edit(&self, conv: &str, seq: u64, content: &serde_json::Value) -> Result<i64> {
        let content = serde_json::value::RawValue::from_string(content.to_string())
            .map_err(|e| crate::Error::Invalid(e.to_string()))?;
        let req = Request::Edit(request::Edit {
            conv: conv.into(),
            seq,
            content: &content,
        });
        let a: tern_proto::wire::EditAnswer<'static> = self.request(req, ReqKind::Other).await?;
        Ok(a.edited_at)
    }

    /// `react` (5.1): adds (`on`) or takes back a reaction.
    pub async fn react(&self, conv: &str, seq: u64, emoji: &str, on: bool) -> Result<()> {
        let req = Request::React(request::React {
            conv: conv.into(),
            seq,
            emoji: emoji.into(),
            on,
        });
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

/// A conversation position as a request's fields.
fn conv_seq(conv: &str, seq: u64) -> ConvSeq<'_> {
    ConvSeq {
        conv: conv.into(),
        seq,
    }
}
