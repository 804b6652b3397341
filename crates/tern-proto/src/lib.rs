//! The Tern wire protocol (`PROTOCOL.md`): identifiers, conversation ids,
//! error and close codes, the frames clients send (`frames`, typed per
//! command in `request`) and everything
//! the server sends over WebSocket and HTTP (`wire`). This crate does no IO.

pub mod codes;
pub mod conv;
pub mod frames;
pub mod ids;
pub mod request;
pub mod wire;

pub use codes::{close, ErrorCode};
pub use conv::ConvId;
pub use frames::ClientFrame;
pub use request::Request;
