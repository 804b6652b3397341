//! Every bound and timing of the SDK, with its default.

use std::sync::Arc;
use std::time::Duration;

/// Bounds and timings of a [`crate::Client`] and its sessions. The defaults
/// suit an interactive client against a server with default limits.
#[derive(Clone)]
pub struct ClientConfig {
    /// How long a request (HTTP call, or WebSocket request until its `ok`
    /// or `error`) may take. Default 10 s.
    pub request_timeout: Duration,
    /// Capacity of a session's event channel. When the application does not
    /// read events, the session stops reading the socket once this many are
    /// queued (and the server may then close the connection as a slow
    /// reader; messages are redelivered after the reconnect). Default 1024.
    pub event_queue: usize,
    /// Capacity of a session's outgoing request queue: requests made while
    /// disconnected wait here until the session is back. Full: calls wait
    /// (up to `request_timeout`). Default 256.
    pub outgoing_queue: usize,
    /// Attempts of one `send` (same `client_msg_id` each time) before it
    /// gives up on `rate_limited`, timeouts and reconnects. Default 8.
    pub send_attempts: u32,
    /// First wait before retrying a rate-limited or failed `send`, doubled
    /// each time, up to `reconnect_max`. Default 250 ms.
    pub retry_base: Duration,
    /// First reconnect delay; doubled after each failed attempt, with full
    /// jitter (a random delay between half and all of it). Default 250 ms.
    pub reconnect_base: Duration,
    /// Longest reconnect delay. Default 30 s.
    pub reconnect_max: Duration,
    /// Reconnect attempts in a row before the session gives up (0: never
    /// gives up). Default 0.
    pub reconnect_attempts: u32,
    /// Pushes received are acknowledged (one cumulative `ack` per
    /// conversation) at most this long after they arrive; acks of a burst
    /// are merged. Must stay well under the server's ack timeout (10 s).
    /// Default 50 ms.
    pub ack_delay: Duration,
    /// A `ping` is sent after this long without sending anything; the
    /// connection counts as dead when nothing arrives for this long plus
    /// `request_timeout`. Default 30 s (the server closes after 90 s idle).
    pub ping_interval: Duration,
    /// Messages fetched per `history` call when filling a gap (the server
    /// allows at most 500). Default 200.
    pub gap_page: u64,
    /// Recently delivered `msg_id`s remembered to drop redelivered pushes
    /// (besides the per-conversation seq position). Default 4096.
    pub dedup_window: usize,
    /// TLS configuration for `https://` servers; `None`: the platform's
    /// root certificates.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Source address of HTTP requests (e.g. one of several loopback
    /// addresses, so per-address limits count a test's or a load
    /// generator's users apart); `None`: the system's choice.
    pub local_address: Option<std::net::IpAddr>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(10),
            event_queue: 1024,
            outgoing_queue: 256,
            send_attempts: 8,
            retry_base: Duration::from_millis(250),
            reconnect_base: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(30),
            reconnect_attempts: 0,
            ack_delay: Duration::from_millis(50),
            ping_interval: Duration::from_secs(30),
            gap_page: 200,
            dedup_window: 4096,
            tls: None,
            local_address: None,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("request_timeout", &self.request_timeout)
            .field("event_queue", &self.event_queue)
            .field("outgoing_queue", &self.outgoing_queue)
            .field("send_attempts", &self.send_attempts)
            .field("retry_base", &self.retry_base)
            .field("reconnect_base", &self.reconnect_base)
            .field("reconnect_max", &self.reconnect_max)
            .field("reconnect_attempts", &self.reconnect_attempts)
            .field("ack_delay", &self.ack_delay)
            .field("ping_interval", &self.ping_interval)
            .field("gap_page", &self.gap_page)
            .field("dedup_window", &self.dedup_window)
            .field("tls", &self.tls.is_some())
            .field("local_address", &self.local_address)
            .finish()
    }
}

/// Exponential backoff with jitter: the `n`th delay (from 0) lies between
/// half and all of `base * 2^n`, capped at `max`.
pub(crate) fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let full = base.saturating_mul(1u32 << n.min(16)).min(max);
    let half = full / 2;
    let extra = rand::random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(extra)
}
