//! The Tern wire protocol (`PROTOCOL.md`): identifiers, conversation ids,
//! error and close codes, and the JSON frames exchanged over WebSocket and
//! HTTP. This crate does no IO.

pub mod codes;
pub mod conv;
pub mod frames;
pub mod ids;

pub use codes::{close, ErrorCode};
pub use conv::ConvId;
pub use frames::ClientFrame;
