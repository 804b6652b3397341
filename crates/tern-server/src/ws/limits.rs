//! A connection's two limits: client frames per second (a token bucket),
//! and socket writes that must move (a reader that stopped is cut).

use crate::listener::Written;
use futures_util::FutureExt;
use std::future::Future;
use std::time::Duration;
use tern_proto::close;
use tokio::time::Instant;

/// Socket writes that must move: a write of which the socket takes no
/// byte for `limits.stall_timeout_ms` shows a reader that stopped (its
/// receive buffer and our send buffer are full), and the connection is
/// cut with 4008. A slow reader still takes bytes and is not cut by this.
pub(super) struct Stall {
    /// The bytes the connection's socket took so far (from the listener).
    pub(super) written: Option<Written>,
    pub(super) after: Duration,
}

impl Stall {
    /// Awaits a write (a feed, a flush, a send). Err: the close code, 1000
    /// if the socket failed, 4008 if it took nothing for `after`.
    pub(super) async fn guard(
        &self,
        write: impl Future<Output = Result<(), axum::Error>>,
    ) -> Result<(), u16> {
        let mut write = std::pin::pin!(write);
        // Nearly every write completes at once: no timer for those.
        let done = match write.as_mut().now_or_never() {
            Some(done) => done,
            None => match &self.written {
                None => write.await,
                Some(written) => {
                    let mut seen = written.get();
                    loop {
                        match tokio::time::timeout(self.after, write.as_mut()).await {
                            Ok(done) => break done,
                            Err(_) => {
                                let now = written.get();
                                if now == seen {
                                    metrics::counter!("tern_stalled_cuts_total").increment(1);
                                    return Err(close::POLICY);
                                }
                                seen = now;
                            }
                        }
                    }
                }
            },
        };
        done.map_err(|_| 1000)
    }
}

/// Token bucket over every client frame.
pub(super) struct RateLimit {
    pub(super) tokens: f64,
    pub(super) last: Instant,
    pub(super) rate: f64,
    pub(super) burst: f64,
    pub(super) over_since: Option<Instant>,
    pub(super) last_refused: Option<Instant>,
    pub(super) close_after: Duration,
}

pub(super) enum Verdict {
    Allow,
    Refuse,
    Close,
}

impl RateLimit {
    pub(super) fn check(&mut self, now: Instant) -> Verdict {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            // A client stays "over the limit" while refusals keep coming:
            // one allowed frame between refusals does not reset the clock,
            // a quiet second without any refusal does.
            if self
                .last_refused
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                self.over_since = None;
            }
            return Verdict::Allow;
        }
        self.last_refused = Some(now);
        let since = *self.over_since.get_or_insert(now);
        if now.duration_since(since) >= self.close_after {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}
