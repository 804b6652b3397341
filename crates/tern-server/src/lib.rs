//! The Tern gateway and wiring: axum HTTP API, WebSocket sessions, metrics.
//! The entry point takes a bound listener, a config and a shutdown future,
//! so tests run real servers on port 0.

pub mod admin;
mod app;
mod backends;
pub mod config;
mod dispatch;
mod guard;
mod http;
// 5.6 webhooks and the before-send hook over HTTP
pub mod integrations;
mod listener;
pub mod metrics;
mod openapi;
mod pending;
// 5.5 offline push providers
mod push;
// 5.6
mod retention;
mod state;
mod views;
mod web;
mod ws;

pub use app::{serve, serve_ready};
pub use config::Config;
/// The OpenAPI document of the HTTP API, as `GET /v1/openapi.json` serves it.
pub use http::document as openapi_document;
