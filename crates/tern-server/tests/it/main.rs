//! Integration tests: every one drives a real server through real HTTP and
//! WebSocket sockets on 127.0.0.1.

mod common;

mod access;
mod account;
mod accounts;
mod blocks;
mod codes;
mod edits;
mod groups;
mod hooks;
// 5.5 offline push
mod hostile;
mod limits;
mod media;
mod messaging;
mod moderation;
mod openapi;
mod presence;
mod props;
mod push;
mod reading;
mod retention;
mod rooms;
mod scale;
mod scheduled;
mod search;
mod session;
mod settings;
mod silent;
mod store;
mod tls;
mod web;
