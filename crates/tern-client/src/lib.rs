//! `tern-client`: an async Rust SDK for the Tern protocol (PROTOCOL.md 2
//! and 3), on the wire types of `tern-proto`.
//!
//! - [`Client`]: accounts, sessions, friends, groups, conversations and
//!   messages over HTTP.
//! - [`Session`]: a WebSocket session that sends with retries (one
//!   `client_msg_id`, stored once), acknowledges cumulatively, drops
//!   redelivered pushes, fills seq gaps with `history`, and reconnects
//!   with jittered exponential backoff (offline queue, then `sync`).
//! - [`Event`]: what the session reports, typed, through a bounded channel.
//! - [`ClientConfig`]: every bound and timing, with documented defaults.
//! - [`raw::Connection`]: one WebSocket connection, frame by frame, with
//!   nothing done on the caller's behalf; `Session` runs on it. For
//!   protocol tests, bots that want every frame, and load generators.
//!
//! ```no_run
//! use tern_client::{Client, Event, OutMessage};
//!
//! # async fn demo() -> tern_client::Result<()> {
//! let server = Client::new("http://127.0.0.1:8080")?;
//! server.register("bob", "password1", Some("Bob")).await?;
//! let bob = server.login("bob", "password1").await?;
//! let (session, mut events) = bob.connect("phone").await?;
//! while let Some(ev) = events.recv().await {
//!     if let Event::Message(m) = ev {
//!         // Acked by the session; say something back.
//!         session.send(OutMessage::text_to(&m.from, "got it")).await?;
//!     }
//! }
//! # Ok(()) }
//! ```

mod config;
mod convs;
mod error;
mod event;
mod http;
pub mod raw;
mod session;

pub use config::ClientConfig;
pub use error::{Error, Result};
pub use event::Event;
pub use http::{Client, PushProvider};
pub use session::{Events, Session, Stats};
pub use tern_proto::wire;
pub use tern_proto::{close, ConvId, ErrorCode};

use serde_json::value::RawValue;
use std::borrow::Cow;
use tern_proto::frames::ClientFrame;
use tern_proto::request::{self, Request};

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    User(String),
    Group(String),
}

/// A message to send, with the `client_msg_id` that makes retries safe
/// (random unless set with [`OutMessage::with_client_msg_id`]).
///
/// ```
/// use tern_client::OutMessage;
/// let m = OutMessage::text_to("bob", "hello");
/// assert_eq!(m.kind(), "text");
/// assert_eq!(m.content(), r#""hello""#);
/// let img = OutMessage::new_to_group("g1", "image", &serde_json::json!({"url": "https://x/y.png"}))
///     .unwrap()
///     .with_client_msg_id("photo-1");
/// assert_eq!(img.client_msg_id(), "photo-1");
/// ```
#[derive(Debug, Clone)]
pub struct OutMessage {
    target: Target,
    kind: String,
    content: Box<RawValue>,
    client_msg_id: String,
    /// 5.1: the seq this message answers.
    reply_to: Option<u64>,
    /// 5.1, groups: members named, or `@all`.
    mentions: Vec<String>,
    /// 5.6: sent at this time (ms) rather than now.
    at: Option<i64>,
}

/// A fresh client message id: 128 random bits in hex.
pub fn new_client_msg_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl OutMessage {
    /// A message of `kind` with any JSON `content` (`text` takes a string,
    /// `image`, `voice`, `file` and `custom` an object).
    pub fn new(target: Target, kind: &str, content: &serde_json::Value) -> Result<OutMessage> {
        let content = RawValue::from_string(content.to_string())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(OutMessage {
            target,
            kind: kind.to_owned(),
            content,
            client_msg_id: new_client_msg_id(),
            reply_to: None,
            mentions: Vec::new(),
            at: None,
        })
    }

    pub fn new_to_user(user: &str, kind: &str, content: &serde_json::Value) -> Result<OutMessage> {
        OutMessage::new(Target::User(user.to_owned()), kind, content)
    }

    pub fn new_to_group(
        group: &str,
        kind: &str,
        content: &serde_json::Value,
    ) -> Result<OutMessage> {
        OutMessage::new(Target::Group(group.to_owned()), kind, content)
    }

    /// A text message to a user.
    pub fn text_to(user: &str, text: &str) -> OutMessage {
        OutMessage::new_to_user(user, "text", &serde_json::Value::from(text))
            .expect("a string is JSON")
    }

    /// A text message to a group.
    pub fn text_to_group(group: &str, text: &str) -> OutMessage {
        OutMessage::new_to_group(group, "text", &serde_json::Value::from(text))
            .expect("a string is JSON")
    }

    /// Sets the deduplication key (1-64 chars), e.g. to resend a message
    /// after a restart of the application.
    pub fn with_client_msg_id(mut self, id: &str) -> OutMessage {
        self.client_msg_id = id.to_owned();
        self
    }

    /// 5.1: answers message `seq` of the same conversation.
    pub fn reply_to(mut self, seq: u64) -> OutMessage {
        self.reply_to = Some(seq);
        self
    }

    /// 5.1, groups: mentions these members (or `["@all"]`).
    pub fn mentions(mut self, users: &[&str]) -> OutMessage {
        self.mentions = users.iter().map(|u| (*u).to_owned()).collect();
        self
    }

    /// 5.6: to be sent at `ts` (ms; future, within a year) rather than
    /// now: send it with [`Session::schedule`] or
    /// [`Client::schedule_http`].
    pub fn at(mut self, ts: i64) -> OutMessage {
        self.at = Some(ts);
        self
    }

    /// 5.6: when it is to be sent, if scheduled.
    pub fn scheduled_at(&self) -> Option<i64> {
        self.at
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The content as JSON text.
    pub fn content(&self) -> &str {
        self.content.get()
    }

    pub fn client_msg_id(&self) -> &str {
        &self.client_msg_id
    }

    /// The `send` request of this message.
    pub fn request(&self) -> Request<'_> {
        let (to, group) = match &self.target {
            Target::User(u) => (Some(Cow::Borrowed(u.as_str())), None),
            Target::Group(g) => (None, Some(Cow::Borrowed(g.as_str()))),
        };
        Request::Send(request::Send {
            to,
            group,
            client_msg_id: Cow::Borrowed(&self.client_msg_id),
            kind: Cow::Borrowed(&self.kind),
            content: &self.content,
            reply_to: self.reply_to,
            mentions: (!self.mentions.is_empty()).then(|| {
                self.mentions
                    .iter()
                    .map(|m| Cow::Borrowed(m.as_str()))
                    .collect()
            }),
            at: self.at,
        })
    }

    /// The `send` frame, for a [`raw::Connection`] (it has no `id`:
    /// [`raw::Connection::request`] gives it one).
    pub fn send_frame(&self) -> ClientFrame<'_> {
        self.request().into_frame(None)
    }
}
