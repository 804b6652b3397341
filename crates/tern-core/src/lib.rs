//! Tern's IM logic: delivery, seq, dedup, unread and fan-out policy. It
//! depends on the protocol crate and on the storage and bus traits only:
//! no web framework, no database driver.

pub mod acks;
pub mod auth;
pub mod bus;
pub mod error;
pub mod fanout;
pub mod groups;
pub mod hashpool;
pub mod hub;
pub mod ids;
pub mod limits;
pub mod offline;
mod pipeline;
pub mod revoked;
pub mod rooms;
pub mod rules;
pub mod service;
pub mod store;

pub use bus::{Bus, Envelope, LocalBus, LocalPresence, NodeId, PlumbingError, Presence, Route};
pub use error::{CoreError, CoreResult};
pub use hub::{Conn, Hub, Outbound, Push};
pub use limits::{Decision, Limiter, LocalLimiter, Rule};
pub use service::{register_user, Actor, Core, CoreConfig, SendOk};

use bytes::Bytes;
use std::borrow::Cow;
use store::StoredMessage;
use tern_proto::wire::{MsgPush, MsgView, RawJson};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The wire view of a stored message. Content is stored as JSON text and
/// goes out as it is, without re-encoding.
pub fn msg_view(m: &StoredMessage) -> MsgView<'_> {
    MsgView {
        msg_id: m.msg_id,
        conv: Cow::Borrowed(&m.conv),
        seq: m.seq,
        from: Cow::Borrowed(&m.from),
        to: m.to.as_deref().map(Cow::Borrowed),
        group: m.group.as_deref().map(Cow::Borrowed),
        kind: Cow::Borrowed(&m.kind),
        content: m
            .content
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .map(RawJson::borrowed),
        ts: m.ts,
        client_msg_id: m.client_msg_id.as_deref().map(Cow::Borrowed),
        recalled: m.recalled,
    }
}

/// `{"type":"msg","msg":{...}}`, encoded once per message.
pub fn encode_msg_push(m: &StoredMessage) -> Bytes {
    service::encode(&MsgPush::new(msg_view(m)))
}
