//! Tern's IM logic: delivery, seq, dedup, unread and fan-out policy. It
//! depends on the protocol crate and on the storage and bus traits only:
//! no web framework, no database driver.

pub mod acks;
pub mod auth;
pub mod bus;
pub mod error;
pub mod fanout;
pub mod frame;
pub mod groups;
pub mod hashpool;
pub mod hub;
pub mod ids;
pub mod indexer;
pub mod integrations;
pub mod jobs;
pub mod keeper;
pub mod limits;
pub mod media;
pub mod notifications;
pub mod offline;
pub mod order;
mod pipeline;
pub mod presence;
pub mod push;
pub mod revoked;
pub mod roles;
pub mod rooms;
pub mod rules;
pub mod scheduler;
pub mod search;
pub mod service;
pub mod store;
mod views;

pub use bus::{Bus, Envelope, LocalBus, NodeId, PlumbingError};
pub use error::{CoreError, CoreResult};
pub use frame::{encode_msg_push, msg_view};
pub use hub::{Conn, Hub};
pub use limits::{Decision, FallbackLimiter, Limiter, LocalLimiter, Rule};
pub use presence::{LocalPresence, Presence, Route};
pub use push::{Outbound, Push};
pub use service::{
    register_bot, register_user, Actor, Core, CoreConfig, PushTarget, SendOk, RETENTION_DAYS_MAX,
};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
