//! [`Connection`]: one WebSocket connection to a Tern server, frame by
//! frame, with nothing done on the caller's behalf.
//!
//! Use it when every frame matters as it is: protocol tests (bad input,
//! close codes, the exact order of pushes), bots that want every frame,
//! and load generators that must not pay for retries, acks or gap fills
//! they do not ask for. Use [`Session`](crate::Session) otherwise: it is
//! built on this connection and adds what an application needs (retried
//! sends, cumulative acks, duplicate drops, gap fills, reconnects, typed
//! events).
//!
//! What the connection does do:
//! - `batch` frames are split: [`Connection::recv`] hands out their frames
//!   one at a time, in order (PROTOCOL.md 2.9), and counts the batches.
//! - [`Connection::reply`] waits for the answer to one request; frames
//!   that arrive meanwhile stay queued, in order, for `recv`.
//! - The close code is kept ([`Connection::closed`]), with RFC 6455's
//!   1005 (no code in the close frame) and 1006 (no close frame at all).
//!
//! ```no_run
//! use tern_client::raw::{Connection, Incoming};
//! use tern_client::wire::{MsgPush, SendAnswer};
//! use tern_client::{ClientConfig, OutMessage};
//!
//! # async fn demo(token: &str) -> tern_client::Result<()> {
//! let config = ClientConfig::default();
//! let (mut conn, me) =
//!     Connection::connect("ws://127.0.0.1:8080/v1/ws", token, "bot", &config).await?;
//! println!("signed in as {}", me.user);
//! // A request and its typed answer; pushes that come meanwhile wait.
//! let hello = OutMessage::text_to("bob", "hello");
//! let sent: SendAnswer = conn.request(hello.send_frame()).await?.answer()?;
//! println!("stored as seq {}", sent.seq);
//! // Bad input on purpose: the server answers `bad_frame` and stays.
//! conn.send_text("not json").await?;
//! loop {
//!     match conn.recv().await {
//!         Incoming::Frame(f) if f.ty() == "msg" => {
//!             let push: MsgPush = f.decode()?;
//!             println!("seq {} in {}", push.msg.seq, push.msg.conv);
//!         }
//!         Incoming::Frame(f) => println!("{f}"),
//!         Incoming::Closed(c) => break println!("closed with {}", c.code),
//!         Incoming::Other | Incoming::Undecodable(_) => {}
//!     }
//! }
//! # Ok(()) }
//! ```

use crate::config::ClientConfig;
use crate::error::{http_error, Error, Result};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Duration;
use tern_proto::wire::{AuthAnswer, Batch, ErrorFrame, OkFrame};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

pub use tern_proto::frames::ClientFrame;
pub use tern_proto::request::{self, Auth, Request};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One server frame: a JSON object with a `type` (a frame of a `batch`
/// included, see [`Frame::in_batch`]).
#[derive(Clone)]
pub struct Frame {
    text: Utf8Bytes,
    ty: Box<str>,
    id: Option<Box<str>>,
    batch: Option<usize>,
}

/// The `type` and `id` of a server frame, read before any full decode.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
}

impl Frame {
    fn parse(text: Utf8Bytes, batch: Option<usize>) -> Result<Frame, Utf8Bytes> {
        if !text.trim_start().starts_with('{') {
            return Err(text);
        }
        let Ok(head) = serde_json::from_str::<Head>(&text) else {
            return Err(text);
        };
        let (ty, id) = (head.ty.into(), head.id.map(Into::into));
        Ok(Frame {
            text,
            ty,
            id,
            batch,
        })
    }

    /// The `type`: `ok`, `error`, `pong`, `msg`, `receipt`, ...
    pub fn ty(&self) -> &str {
        &self.ty
    }

    /// The `id` of the request this frame answers, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The frame's JSON text, as the server wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How many frames the `batch` this frame came in held; `None` when
    /// it came on its own.
    pub fn in_batch(&self) -> Option<usize> {
        self.batch
    }

    /// The frame as a JSON value (for tests that look at any field).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).expect("a frame is a JSON object, checked on arrival")
    }

    /// The frame as one of the [`wire`](crate::wire) types, e.g.
    /// `MsgPush`, `Receipt`, `OkFrame<SendAnswer>`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.text).map_err(|e| Error::Protocol(format!("{e}: {}", self.text)))
    }

    /// The body of an `ok` (e.g. `SendAnswer`); an `error` frame becomes
    /// [`Error::Server`], anything else [`Error::Protocol`].
    pub fn answer<T: DeserializeOwned>(&self) -> Result<T> {
        match self.ty() {
            "ok" => self.decode::<OkFrame<'static, T>>().map(|ok| ok.body),
            "error" => Err(server_error(self.text())),
            _ => Err(Error::Protocol(format!("not an answer: {}", self.text))),
        }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// An `error` frame's text as an [`Error::Server`].
pub(crate) fn server_error(text: &str) -> Error {
    match serde_json::from_str::<ErrorFrame>(text) {
        Ok(e) => Error::Server {
            code: e.code.into_owned(),
            message: e.message.into_owned(),
            status: None,
            retry_after: None,
        },
        Err(e) => Error::Protocol(format!("{e}: {text}")),
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code the server sent (`tern_proto::close`: 4001, 4008,
    /// 4009, 1009, 1001, ...), or [`Closed::NO_CODE`] / [`Closed::LOST`].
    pub code: u16,
    pub reason: String,
}

impl Closed {
    /// A close frame without a code (RFC 6455 7.1.5).
    pub const NO_CODE: u16 = 1005;
    /// No close frame: the connection broke (RFC 6455 7.1.5).
    pub const LOST: u16 = 1006;

    /// The code, when the server sent one.
    pub fn sent_code(&self) -> Option<u16> {
        (self.code != Closed::NO_CODE && self.code != Closed::LOST).then_some(self.code)
    }
}

/// What [`Connection::recv`] got.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// One server frame (a `batch` arrives as its frames, one by one).
    Frame(Frame),
    /// A WebSocket ping, pong or binary message: no protocol frame, but a
    /// sign of life.
    Other,
    /// A text message that is no frame (not a JSON object with a `type`).
    Undecodable(String),
    /// The connection has ended; every later `recv` says so again.
    Closed(Closed),
}

/// One WebSocket connection, read and written frame by frame. See the
/// [module documentation](self).
pub struct Connection {
    ws: Ws,
    /// Frames read but not handed out yet (the rest of a batch, frames
    /// that came while [`Connection::reply`] waited).
    queued: VecDeque<Frame>,
    closed: Option<Closed>,
    batches: u64,
    next_id: u64,
    request_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("queued", &self.queued.len())
            .field("closed", &self.closed)
            .field("batches", &self.batches)
            .finish()
    }
}

/// A refused upgrade as the HTTP error it is (`503 unavailable` when the
/// server is full, `429 rate_limited`), other failures as they are.
fn upgrade_error(e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Http(r) => {
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let body = r.body().as_deref().unwrap_or_default();
            http_error(r.status().as_u16(), retry, &String::from_utf8_lossy(body))
        }
        e => e.into(),
    }
}

/// Bytes read from the socket at most per read call.
///
/// tungstenite zero-fills its read buffer up to this size before every read
/// (128 KiB by default): with thousands of connections that fill, not the
/// frames, took most of a client's CPU. Frames larger than this still
/// arrive whole, over several reads.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;

/// The WebSocket settings of every client connection (see
/// [`READ_BUFFER_BYTES`]).
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES)
}

impl Connection {
    /// Opens a WebSocket to `url` (`ws://` or `wss://`, `.../v1/ws`, with a
    /// query string if wanted) and sends nothing: the first frame is the
    /// caller's. TLS and the connect timeout come from `config`.
    pub async fn open(url: &str, config: &ClientConfig) -> Result<Connection> {
        let connector = config.tls.clone().map(Connector::Rustls);
        let (ws, _) = timeout(
            config.request_timeout,
            tokio_tungstenite::connect_async_tls_with_config(
                url,
                Some(websocket_config()),
                false,
                connector,
            ),
        )
        .await
        .map_err(|_| Error::Timeout)?
        .map_err(upgrade_error)?;
        Ok(Connection {
            ws,
            queued: VecDeque::new(),
            closed: None,
            batches: 0,
            next_id: 0,
            request_timeout: config.request_timeout,
        })
    }

    /// Opens and authenticates with the `auth` frame (never the token in
    /// the URL, which proxies may log). What the server pushes next (the
    /// offline messages, `offline_done`) is left for [`Connection::recv`].
    pub async fn connect(
        url: &str,
        token: &str,
        device: &str,
        config: &ClientConfig,
    ) -> Result<(Connection, AuthAnswer<'static>)> {
        let mut conn = Connection::open(url, config).await?;
        let auth = conn.auth(token, device).await?;
        Ok((conn, auth))
    }

    /// Sends `auth` and waits for its answer.
    pub async fn auth(&mut self, token: &str, device: &str) -> Result<AuthAnswer<'static>> {
        let frame = Request::Auth(Auth {
            token: token.into(),
            device: Some(device.into()),
        })
        .into_frame(None);
        self.request(frame).await?.answer()
    }

    /// A fresh request id for this connection (`r1`, `r2`, ...).
    pub fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("r{}", self.next_id)
    }

    /// Sends a request with a fresh `id` and returns its answer (`ok`,
    /// `error` or `pong`), waiting at most `ClientConfig::request_timeout`.
    /// Decode it with [`Frame::answer`].
    pub async fn request(&mut self, mut frame: ClientFrame<'_>) -> Result<Frame> {
        let id = self.next_id();
        frame.id = Some(Cow::Borrowed(&id));
        self.send(&frame).await?;
        self.reply(&id, self.request_timeout).await
    }

    /// Sends a frame as it is (with its `id`, if it has one).
    pub async fn send(&mut self, frame: &ClientFrame<'_>) -> Result<()> {
        let text = serde_json::to_string(frame).map_err(|e| Error::Invalid(e.to_string()))?;
        self.send_text(text).await
    }

    /// Sends any text, valid frame or not.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<()> {
        Ok(self.ws.send(Message::text(text.into())).await?)
    }

    /// Sends a binary message (the protocol has none).
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<()> {
        Ok(self.ws.send(Message::binary(bytes)).await?)
    }

    /// Sends a WebSocket ping (the server answers with a pong, which
    /// [`Connection::recv`] reports as [`Incoming::Other`]).
    pub async fn ping(&mut self, payload: Vec<u8>) -> Result<()> {
        Ok(self.ws.send(Message::Ping(payload.into())).await?)
    }

    /// The next thing that arrives: queued frames first. Cancel-safe (for
    /// `select!`): nothing is lost when the future is dropped.
    pub async fn recv(&mut self) -> Incoming {
        loop {
            if let Some(f) = self.queued.pop_front() {
                return Incoming::Frame(f);
            }
            if let Some(c) = &self.closed {
                return Incoming::Closed(c.clone());
            }
            if let Some(other) = self.read().await {
                return other;
            }
        }
    }

    /// The next frame within `wait`: [`Error::Timeout`] when none came,
    /// [`Error::Closed`] once the server has closed the connection, or
    /// [`Error::Disconnected`] when it was lost without a close frame (see
    /// [`Connection::closed`] for the code), [`Error::Protocol`] for a
    /// message that is no frame.
    pub async fn next_frame(&mut self, wait: Duration) -> Result<Frame> {
        self.recv_until(wait, |i| match i {
            Incoming::Frame(f) => Some(Ok(f)),
            Incoming::Other => None,
            Incoming::Undecodable(t) => Some(Err(Error::Protocol(format!("not a frame: {t}")))),
            Incoming::Closed(c) => Some(Err(closed_error(&c))),
        })
        .await
    }

    /// Receives until `pick` has an outcome; [`Error::Timeout`] after
    /// `wait`.
    async fn recv_until<T>(
        &mut self,
        wait: Duration,
        mut pick: impl FnMut(Incoming) -> Option<Result<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + wait;
        loop {
            let Ok(incoming) = timeout_at(deadline, self.recv()).await else {
                return Err(Error::Timeout);
            };
            if let Some(outcome) = pick(incoming) {
                return outcome;
            }
        }
    }

    /// The answer (`ok`, `error` or `pong`) that carries `id`, waiting at
    /// most `wait`. Other frames stay queued, in order, for `recv`.
    pub async fn reply(&mut self, id: &str, wait: Duration) -> Result<Frame> {
        let deadline = Instant::now() + wait;
        let mut checked = 0;
        loop {
            let hit = self
                .queued
                .iter()
                .skip(checked)
                .position(|f| f.id() == Some(id) && matches!(f.ty(), "ok" | "error" | "pong"));
            if let Some(i) = hit {
                return Ok(self.queued.remove(checked + i).expect("found"));
            }
            checked = self.queued.len();
            if let Some(c) = &self.closed {
                return Err(closed_error(c));
            }
            match timeout_at(deadline, self.read()).await {
                Err(_) => return Err(Error::Timeout),
                Ok(Some(Incoming::Undecodable(t))) => {
                    tracing::debug!(frame = %t, "undecodable frame");
                }
                Ok(_) => {}
            }
        }
    }

    /// Waits until the server closes the connection (frames meanwhile are
    /// dropped); [`Error::Timeout`] after `wait`.
    pub async fn wait_closed(&mut self, wait: Duration) -> Result<Closed> {
        self.recv_until(wait, |i| match i {
            Incoming::Closed(c) => Some(Ok(c)),
            _ => None,
        })
        .await
    }

    /// How the connection ended, once that has been read.
    pub fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }

    /// How many `batch` frames have arrived.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Frames read and not handed out yet.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Closes with 1000 and waits up to `wait` for the server's close.
    pub async fn close(mut self, wait: Duration) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if self.ws.close(Some(frame)).await.is_ok() {
            let _ = self.wait_closed(wait).await;
        }
    }

    /// Reads one WebSocket message. Its frames go to the queue (`None`);
    /// anything else is returned. The only await is the read itself, so a
    /// dropped call loses nothing.
    async fn read(&mut self) -> Option<Incoming> {
        let m = match self.ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Some(self.end(Closed::LOST, e.to_string())),
            None => return Some(self.end(Closed::LOST, "connection lost".into())),
        };
        match m {
            Message::Text(t) => self.take(t),
            Message::Close(c) => Some(match c {
                Some(c) => self.end(u16::from(c.code), c.reason.to_string()),
                None => self.end(Closed::NO_CODE, String::new()),
            }),
            _ => Some(Incoming::Other),
        }
    }

    fn end(&mut self, code: u16, reason: String) -> Incoming {
        let c = self.closed.get_or_insert(Closed { code, reason });
        Incoming::Closed(c.clone())
    }

    /// Queues the frames of one text message.
    fn take(&mut self, text: Utf8Bytes) -> Option<Incoming> {
        let f = match Frame::parse(text, None) {
            Ok(f) => f,
            Err(t) => return Some(Incoming::Undecodable(t.to_string())),
        };
        if f.ty() != "batch" {
            self.queued.push_back(f);
            return None;
        }
        let Ok(b) = serde_json::from_str::<Batch>(f.text()) else {
            return Some(Incoming::Undecodable(f.text().to_owned()));
        };
        self.batches += 1;
        let n = b.frames.len();
        for inner in b.frames {
            match Frame::parse(inner.get().to_owned().into(), Some(n)) {
                Ok(f) => self.queued.push_back(f),
                Err(t) => tracing::debug!(frame = t.as_str(), "undecodable frame in a batch"),
            }
        }
        None
    }
}

/// A connection lost without a close frame is a dropped connection (a
/// retry may cure it); a close the server sent ends it.
fn closed_error(c: &Closed) -> Error {
    if c.code == Closed::LOST {
        return Error::Disconnected;
    }
    Error::Closed(format!("closed with {} {}", c.code, c.reason))
}
