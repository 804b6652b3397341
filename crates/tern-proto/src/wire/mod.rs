//! What the server sends: every WebSocket frame (PROTOCOL.md 2) and every
//! HTTP answer body (PROTOCOL.md 3), one type each, shared by the server,
//! clients and tests. Each serializes to exactly the bytes the server
//! writes and deserializes back from them.
//!
//! - Fields are declared in wire order; optional fields are left out when
//!   empty, as on the wire.
//! - Strings are `Cow`: the server serializes borrowed values without
//!   copying them; deserializing gives owned values, so every type is
//!   `DeserializeOwned` (`T<'static>`) and reads from any source.
//! - Message content is raw JSON ([`RawJson`]), written as stored, never
//!   re-encoded.
//! - `msg_id` is a decimal string on the wire ([`decimal`]).
//! - The `type` field is a unit type of [`tag`] that serializes as its name
//!   and accepts only that name.
//!
//! The types live by kind: `ok.rs` (replies), `push.rs` (pushes),
//! `http.rs` (HTTP bodies), `raw.rs`, `decimal.rs` and `tag.rs` (what they
//! share); all are named from here, as `wire::X`.

pub mod decimal;
mod http;
mod ok;
mod push;
mod raw;
pub mod tag;
// 5.6 scheduled messages
mod sched;

pub use http::*;
pub use ok::*;
pub use push::*;
pub use raw::RawJson;
pub use sched::*;

#[cfg(test)]
mod tests;
