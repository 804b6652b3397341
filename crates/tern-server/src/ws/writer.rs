//! The write side of a connection between socket writes: which queued
//! frames go out now (storm batches, stale pushes skipped, gaps filled),
//! the two windows that stop writes, pings and silence while lagging.

use crate::pending::Pending;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tern_core::{Conn, Outbound};
use tern_proto::close;
use tern_proto::wire::write_batch;
use tokio::time::Instant;

/// Most frames merged into one `batch` frame.
const BATCH_MAX: usize = 256;
/// A lagging connection's probe waits at most `unacked_probe_ms` times
/// 2 to this power.
const PROBE_BACKOFF_MAX: u32 = 6;

/// The connection's write-side bookkeeping between socket writes.
pub(super) struct WriterState<'a> {
    pub(super) pending: &'a Mutex<Pending>,
    /// Per conversation, the highest seq pushed to this connection (the
    /// offline batch included). A message push at or below it is not
    /// written: it was pushed already, or a newer one was (pushes from
    /// different nodes can arrive out of order; the client fills such a
    /// gap from history). So a device never sees a conversation's seqs go
    /// backwards.
    pub(super) pushed: HashMap<Arc<str>, u64>,
    /// Cluster mode: a message push that skipped seqs after a known one
    /// (another node's push for them is late or lost) leaves the range
    /// here, to be filled from the store before it is written.
    pub(super) fill_gaps: bool,
    pub(super) gap: Option<(Arc<str>, u64, u64)>,
    pub(super) ack_timeout: Duration,
    pub(super) max_unacked: usize,
    /// `limits.unacked_bytes`: no more writes while this many bytes of
    /// pushes await an ack (0: no window).
    pub(super) window: usize,
    /// While lagging, `limits.lagging_window_bytes`: no more writes while
    /// this many bytes of pushes written since the last pong await an ack
    /// (0: not lagging, or no such window).
    pub(super) lag_window: usize,
    /// While a window is full: when the next probe (a frame, or a ping for
    /// the lagging window) may go out, one every `probe`.
    pub(super) probe_at: Option<Instant>,
    pub(super) probe: Duration,
    /// While lagging: probes since the window last had room, each one
    /// waiting twice as long as the one before (as TCP's persist timer), so
    /// a reader that stopped is not probed every `probe` until its cut.
    /// `None` (not lagging): every probe waits `probe`.
    ///
    /// A lagging connection's probe is a WebSocket ping, not a queued
    /// frame. Its pong (every WebSocket stack answers pings, RFC 6455)
    /// shows the client reads, and opens the next window's worth: a client
    /// that reads but never acks is written on, one window per round
    /// trip, while one that stopped reading is sent a few bytes of pings
    /// until its cut.
    pub(super) backoff: Option<u32>,
    /// The unacked bytes when the last pong came (lowered as acks come):
    /// the lagging window counts from here.
    pub(super) base: usize,
    /// Pings sent; the payload of the last one, whose pong is awaited.
    pub(super) pings: u64,
    pub(super) awaiting: Option<u64>,
    /// Since when pings have gone out with no pong and no ack at all, and
    /// how long that may last (`limits.stall_timeout_ms`) while more waits
    /// in the queue: a reader that stopped, whose buffers still had room
    /// for the window, is cut with 4008 then.
    pub(super) unanswered_since: Option<Instant>,
    pub(super) silence: Duration,
    pub(super) next_wake: Option<Instant>,
    pub(super) storm: Duration,
    pub(super) batch: Vec<Bytes>,
    pub(super) batch_due: Option<Instant>,
}

/// Which window stops a connection's writes (`WriterState::window_full`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Full {
    /// `limits.unacked_bytes` of pushes await an ack: probe frames go out.
    Acks,
    /// The lagging window: pings go out, and the pong opens it.
    Pong,
}

impl WriterState<'_> {
    /// Turns a queued item into the frames to write now, in queue order:
    /// records message pushes for redelivery, skips pushes the offline
    /// batch already carried, and holds batchable frames for the storm
    /// window. Any other frame first releases the held ones, so nothing
    /// overtakes what was queued before it (a group that shrinks to the
    /// write limit must not push seq n+1 while seq n is held).
    pub(super) fn prepare(&mut self, out: Outbound, conn: &Conn) -> [Option<Bytes>; 2] {
        match out {
            Outbound::Frame(f) => [self.take_batch(), Some(f)],
            Outbound::Batched(f) => [self.hold(f), None],
            Outbound::Msg { conv, seq, frame } => {
                [self.take_batch(), self.track(conv, seq, frame, conn)]
            }
        }
    }

    /// Holds a batchable frame; returns the batch once it is full.
    fn hold(&mut self, f: Bytes) -> Option<Bytes> {
        if self.storm.is_zero() {
            return Some(f);
        }
        if self.batch.is_empty() {
            self.batch_due = Some(Instant::now() + self.storm);
        }
        self.batch.push(f);
        if self.batch.len() >= BATCH_MAX {
            return self.take_batch();
        }
        None
    }

    /// Records a message push until it is acknowledged.
    fn track(&mut self, conv: Arc<str>, seq: u64, frame: Bytes, conn: &Conn) -> Option<Bytes> {
        match self.pushed.get_mut(&conv) {
            Some(last) if seq <= *last => {
                metrics::counter!("tern_stale_pushes_total").increment(1);
                return None;
            }
            Some(last) => {
                if self.fill_gaps && seq > *last + 1 {
                    self.gap = Some((conv.clone(), *last, seq));
                }
                *last = seq;
            }
            None => {
                self.pushed.insert(conv.clone(), seq);
            }
        }
        self.record(conv, seq, frame.clone(), conn);
        Some(frame)
    }

    /// Whether a window is set at all (if not, taking needs no clock).
    pub(super) fn windowed(&self) -> bool {
        self.window != 0 || self.lag_window != 0
    }

    /// Which window the unacked pushes fill, if one: the push window
    /// (only an ack opens it) before the lagging one (a pong opens it).
    fn window_full(&mut self) -> Option<Full> {
        if !self.windowed() {
            return None;
        }
        let bytes = self.pending.lock().bytes();
        self.base = self.base.min(bytes);
        if self.window != 0 && bytes >= self.window {
            Some(Full::Acks)
        } else if self.lag_window != 0 && bytes - self.base >= self.lag_window {
            Some(Full::Pong)
        } else {
            None
        }
    }

    /// Whether the queue may be taken from at `now`: the window has room,
    /// or a probe frame is due. While the window is full, one frame goes
    /// out every `probe` (`limits.unacked_probe_ms`): a client that acks only when a
    /// frame arrives gets one and acks, while one that stopped reading
    /// costs a frame per probe until its queue fills and it is cut off. A
    /// lagging connection is probed with pings instead (`ping_due`).
    pub(super) fn may_take(&mut self, now: Instant) -> bool {
        let full = self.window_full();
        if full.is_none() {
            self.probe_at = None;
            self.unanswered_since = None;
            if let Some(n) = self.backoff.as_mut() {
                *n = 0;
            }
            return true;
        }
        match self.probe_at {
            Some(_) if full == Some(Full::Pong) => false,
            Some(at) => at <= now,
            None => {
                self.probe_at = Some(now + self.probe_wait());
                false
            }
        }
    }

    /// After a write: whether the window is now full (taking stops until
    /// the next probe; a lagging connection's first ping goes out at once).
    pub(super) fn window_closed(&mut self) -> bool {
        let Some(full) = self.window_full() else {
            return false;
        };
        let now = Instant::now();
        self.probe_at = Some(match full {
            Full::Pong => now,
            Full::Acks => now + self.probe_wait(),
        });
        true
    }

    /// While the lagging window (only) is full: the payload of the ping
    /// due at `now`, if one is (the next one is scheduled).
    pub(super) fn ping_due(&mut self, now: Instant) -> Option<Bytes> {
        if self.lag_window == 0
            || self.probe_at.is_none_or(|at| at > now)
            || self.window_full() != Some(Full::Pong)
        {
            return None;
        }
        self.probe_at = Some(now + self.probe_wait());
        self.pings += 1;
        self.awaiting = Some(self.pings);
        self.unanswered_since.get_or_insert(now);
        Some(Bytes::copy_from_slice(&self.pings.to_be_bytes()))
    }

    /// A pong came: if it answers the last ping, the client reads, and the
    /// lagging window opens for the next window's worth (the push window
    /// still needs an ack). Returns whether it did.
    pub(super) fn pong(&mut self, payload: &[u8]) -> bool {
        // The pong of any of our pings shows the client reads (slowly,
        // if not the last one's).
        if <[u8; 8]>::try_from(payload)
            .is_ok_and(|p| (1..=self.pings).contains(&u64::from_be_bytes(p)))
        {
            self.unanswered_since = None;
        }
        let Some(n) = self.awaiting else { return false };
        if payload != n.to_be_bytes() {
            return false;
        }
        self.awaiting = None;
        self.base = self.pending.lock().bytes();
        self.probe_at = None;
        if let Some(b) = self.backoff.as_mut() {
            *b = 0;
        }
        true
    }

    /// The connection turns lagging (`Some`: its lagging window), or stops
    /// lagging (`None`).
    pub(super) fn set_lagging(&mut self, window: Option<usize>) {
        self.probe_at = None;
        self.base = 0;
        self.awaiting = None;
        self.unanswered_since = None;
        self.lag_window = window.unwrap_or(0);
        self.backoff = window.map(|_| 0);
    }

    /// When a reader that answers none of its pings is cut, if more waits
    /// for it than its window let through.
    pub(super) fn silent_at(&self) -> Option<Instant> {
        self.unanswered_since.map(|t| t + self.silence)
    }

    /// The wait before the next probe (counted as sent).
    fn probe_wait(&mut self) -> Duration {
        match self.backoff.as_mut() {
            None => self.probe,
            Some(n) => {
                let wait = self.probe * (1 << (*n).min(PROBE_BACKOFF_MAX));
                *n += 1;
                wait
            }
        }
    }

    /// Tracks a written message push until it is acknowledged.
    pub(super) fn record(&mut self, conv: Arc<str>, seq: u64, frame: Bytes, conn: &Conn) {
        let due = Instant::now() + self.ack_timeout;
        let n = self.pending.lock().add(conv, seq, frame, due);
        if n > self.max_unacked {
            conn.kick(close::POLICY);
        }
        if self.next_wake.is_none_or(|w| due < w) {
            self.next_wake = Some(due);
        }
    }

    /// The held frames as one frame: alone if there is one, else
    /// `{"type":"batch","frames":[...]}` built from the encoded frames
    /// without decoding them again.
    pub(super) fn take_batch(&mut self) -> Option<Bytes> {
        self.batch_due = None;
        match self.batch.len() {
            0 => None,
            1 => self.batch.pop(),
            _ => {
                let len: usize = self.batch.iter().map(|f| f.len() + 1).sum();
                let mut buf = Vec::with_capacity(len + 32);
                write_batch(&mut buf, self.batch.iter().map(|f| &f[..]));
                self.batch.clear();
                Some(Bytes::from(buf))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(pending: &Mutex<Pending>, backoff: Option<u32>) -> WriterState<'_> {
        WriterState {
            pending,
            pushed: HashMap::new(),
            fill_gaps: false,
            gap: None,
            ack_timeout: Duration::from_secs(5),
            max_unacked: 16,
            // Lagging: a lagging window; not: a push window.
            window: if backoff.is_some() { 0 } else { 1024 },
            lag_window: if backoff.is_some() { 1024 } else { 0 },
            probe_at: None,
            probe: Duration::from_millis(100),
            backoff,
            base: 0,
            pings: 0,
            awaiting: None,
            unanswered_since: None,
            silence: Duration::from_secs(5),
            next_wake: None,
            storm: Duration::ZERO,
            batch: Vec::new(),
            batch_due: None,
        }
    }

    fn waits(st: &mut WriterState<'_>, n: usize) -> Vec<u64> {
        (0..n).map(|_| st.probe_wait().as_millis() as u64).collect()
    }

    /// A lagging connection's probes wait twice as long each time, up to
    /// a cap, and start over once the window has room; other connections
    /// probe at the plain interval.
    #[test]
    fn lagging_probes_back_off() {
        let pending = Mutex::new(Pending::default());
        let mut st = writer(&pending, Some(0));
        assert_eq!(
            waits(&mut st, 9),
            [100, 200, 400, 800, 1600, 3200, 6400, 6400, 6400]
        );
        // The window is empty (not full): taking resumes, backoff resets.
        assert!(st.may_take(Instant::now()));
        assert_eq!(waits(&mut st, 2), [100, 200]);
        let mut plain = writer(&pending, None);
        assert_eq!(waits(&mut plain, 4), [100, 100, 100, 100]);
    }

    /// A lagging connection with a full window is probed with pings, the
    /// first at once; only the pong of the last ping opens the next
    /// window's worth, and it does so without any ack.
    #[test]
    fn the_pong_of_the_last_ping_opens_a_lagging_window() {
        let pending = Mutex::new(Pending::default());
        let mut st = writer(&pending, Some(0));
        let conv: Arc<str> = Arc::from("d:a:b");
        let due = Instant::now() + Duration::from_secs(60);
        let push = |seq| {
            pending
                .lock()
                .add(conv.clone(), seq, Bytes::from(vec![b'x'; 600]), due)
        };
        push(1);
        assert!(st.may_take(Instant::now()));
        push(2);
        assert!(st.window_closed(), "1,200 bytes fill a window of 1,024");
        let now = Instant::now();
        assert!(!st.may_take(now), "no frame goes through a full window");
        let first = st.ping_due(now).expect("the first ping is due at once");
        assert!(st.ping_due(now).is_none(), "the next one waits");
        let second = st.ping_due(now + Duration::from_millis(100)).unwrap();
        assert_ne!(first, second);
        assert!(!st.pong(&first), "the pong of an earlier ping");
        assert!(!st.pong(b"other"));
        assert!(!st.may_take(now));
        assert!(st.pong(&second));
        assert!(st.may_take(now), "the pong opened the window");
        assert!(!st.pong(&second), "a pong counts once");
        push(3);
        push(4);
        assert!(st.window_closed(), "the next 1,024 bytes fill it again");
        // Not lagging: no pings (a probe frame goes through instead).
        let mut plain = writer(&pending, None);
        assert!(!plain.may_take(Instant::now()));
        assert!(plain
            .ping_due(Instant::now() + Duration::from_secs(1))
            .is_none());
        assert!(plain.may_take(Instant::now() + Duration::from_secs(1)));
        // Lagging with a full push window too: a pong does not open that
        // one (only an ack does), and its probes are frames, not pings.
        let mut both = writer(&pending, Some(0));
        both.window = 4096;
        push(5);
        push(6);
        push(7);
        assert!(both.window_closed(), "4,200 bytes fill the push window");
        let later = Instant::now() + Duration::from_secs(1);
        assert!(
            both.ping_due(later).is_none(),
            "no ping for the push window"
        );
        assert!(both.may_take(later), "a probe frame instead");
    }

    /// A lagging connection is silent from its first unanswered ping: the
    /// pong of any ping (even an earlier one: a slow reader) or room in its
    /// window ends that, and the cut falls `silence` after it.
    #[test]
    fn silence_counts_from_the_first_unanswered_ping() {
        let pending = Mutex::new(Pending::default());
        let mut st = writer(&pending, Some(0));
        let conv: Arc<str> = Arc::from("d:a:b");
        let due = Instant::now() + Duration::from_secs(60);
        pending
            .lock()
            .add(conv.clone(), 1, Bytes::from(vec![b'x'; 2000]), due);
        assert!(st.window_closed());
        assert_eq!(st.silent_at(), None, "no ping yet");
        let t0 = Instant::now();
        let first = st.ping_due(t0).unwrap();
        assert_eq!(st.silent_at(), Some(t0 + Duration::from_secs(5)));
        let later = t0 + Duration::from_secs(1);
        st.ping_due(later).unwrap();
        assert_eq!(
            st.silent_at(),
            Some(t0 + Duration::from_secs(5)),
            "counted from the first"
        );
        assert!(!st.pong(b"12345678"), "not one of ours");
        assert!(st.silent_at().is_some());
        assert!(!st.pong(&first), "an earlier ping does not open the window");
        assert_eq!(st.silent_at(), None, "but shows the client reads");
        st.ping_due(later + Duration::from_secs(10)).unwrap();
        assert!(st.silent_at().is_some());
        pending.lock().ack(&conv, 1);
        assert!(st.may_take(later), "the ack made room");
        assert_eq!(st.silent_at(), None);
    }
}
