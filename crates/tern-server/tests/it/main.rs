//! Integration tests: every one drives a real server through real HTTP and
//! WebSocket sockets on 127.0.0.1.

mod common;

mod accounts;
mod messaging;
mod reading;
mod presence;
mod limits;
mod session;
