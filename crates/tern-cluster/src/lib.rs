//! Cluster plumbing.

pub mod bus;
pub mod conformance;
pub mod presence;

pub use bus::{BusOptions, NatsBus};
pub use presence::{PresenceOptions, RedisPresence};
