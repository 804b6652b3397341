//! Per-connection record of pushed messages not yet acknowledged, for
//! redelivery. The connection task adds entries as it writes pushes and
//! removes them when it handles an `ack`.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::time::Instant;

struct Entry {
    seq: u64,
    frame: Bytes,
    due: Instant,
    tries: u32,
}

#[derive(Default)]
pub struct Pending {
    /// Per conversation, in push order (= seq order).
    convs: HashMap<Arc<str>, VecDeque<Entry>>,
    total: usize,
    /// The frames' bytes, summed.
    bytes: usize,
    /// While pushes await an ack: since when the client has made no
    /// progress (the first push after an empty record, or the last ack that
    /// covered something).
    stalled_since: Option<Instant>,
}

impl Pending {
    /// Records a push; returns how many pushes now await an ack.
    pub fn add(&mut self, conv: Arc<str>, seq: u64, frame: Bytes, due: Instant) -> usize {
        if self.total == 0 {
            self.stalled_since = Some(Instant::now());
        }
        self.bytes += frame.len();
        self.convs.entry(conv).or_default().push_back(Entry {
            seq,
            frame,
            due,
            tries: 0,
        });
        self.total += 1;
        self.total
    }

    /// A cumulative ack: drops every entry of `conv` up to `seq`.
    pub fn ack(&mut self, conv: &str, seq: u64) {
        let Some(q) = self.convs.get_mut(conv) else {
            return;
        };
        let before = q.len();
        let mut freed = 0;
        q.retain(|e| {
            let keep = e.seq > seq;
            if !keep {
                freed += e.frame.len();
            }
            keep
        });
        self.total -= before - q.len();
        self.bytes -= freed;
        if q.is_empty() {
            self.convs.remove(conv);
        }
        if self.total == 0 {
            self.stalled_since = None;
        } else if freed > 0 {
            self.stalled_since = Some(Instant::now());
        }
    }

    /// Frames due for another push at `now`; each is pushed at most
    /// `max_tries` more times, then left to the offline queue.
    pub fn take_due(
        &mut self,
        now: Instant,
        timeout: std::time::Duration,
        max_tries: u32,
    ) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut dropped = 0;
        let mut freed = 0;
        for q in self.convs.values_mut() {
            q.retain_mut(|e| {
                if e.due > now {
                    return true;
                }
                if e.tries >= max_tries {
                    dropped += 1;
                    freed += e.frame.len();
                    return false;
                }
                e.tries += 1;
                e.due = now + timeout;
                out.push(e.frame.clone());
                true
            });
        }
        self.convs.retain(|_, q| !q.is_empty());
        self.total -= dropped;
        self.bytes -= freed;
        if self.total == 0 {
            self.stalled_since = None;
        }
        out
    }

    /// Since when pushes have awaited an ack with no progress.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.stalled_since
    }

    /// Whether pushes have awaited an ack with no progress for `lag` or
    /// longer at `now`.
    pub fn stalled(&self, now: Instant, lag: std::time::Duration) -> bool {
        self.stalled_since
            .is_some_and(|t| now.saturating_duration_since(t) >= lag)
    }

    /// The bytes of the pushes awaiting an ack.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.convs
            .values()
            .flat_map(|q| q.iter().map(|e| e.due))
            .min()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ack_and_redelivery_bounds() {
        let t0 = Instant::now();
        let d = Duration::from_millis(100);
        let mut p = Pending::default();
        for seq in 1..=3 {
            p.add("c".into(), seq, Bytes::from(format!("{seq}")), t0 + d);
        }
        p.add("e".into(), 1, Bytes::from_static(b"e1"), t0 + d);
        assert_eq!(p.bytes(), 5);
        p.ack("c", 2);
        assert_eq!(p.len(), 2);
        assert_eq!(p.bytes(), 3);
        assert!(p.take_due(t0, d, 3).is_empty());
        let mut now = t0 + d;
        for _ in 0..3 {
            assert_eq!(p.take_due(now, d, 3).len(), 2);
            now += d;
        }
        // After three repeats the entries are given up.
        assert!(p.take_due(now, d, 3).is_empty());
        assert_eq!(p.len(), 0);
        assert_eq!(p.bytes(), 0);
        assert_eq!(p.next_due(), None);
    }

    #[test]
    fn stalled_counts_from_the_last_progress() {
        let lag = Duration::from_millis(200);
        let far = Instant::now() + Duration::from_secs(3600);
        let mut p = Pending::default();
        assert_eq!(p.stalled_since(), None);
        assert!(!p.stalled(far, lag));
        p.add("c".into(), 1, Bytes::from_static(b"1"), far);
        let first = p.stalled_since().expect("stalled from the first push");
        assert!(p.stalled(first + lag, lag));
        assert!(!p.stalled(first, lag));
        // A later push does not move it: no progress.
        p.add("c".into(), 2, Bytes::from_static(b"2"), far);
        assert_eq!(p.stalled_since(), Some(first));
        // An ack of nothing pending is no progress either.
        p.ack("c", 0);
        p.ack("other", 5);
        assert_eq!(p.stalled_since(), Some(first));
        // An ack that covers something restarts the count.
        std::thread::sleep(Duration::from_millis(2));
        p.ack("c", 1);
        let since = p.stalled_since().expect("one push still awaits its ack");
        assert!(since > first);
        // All acknowledged: nothing awaits, nothing is stalled.
        p.ack("c", 2);
        assert_eq!(p.stalled_since(), None);
        assert!(!p.stalled(far, lag));
        // Pushes given up after their repeats end it as well.
        let now = Instant::now();
        p.add("c".into(), 3, Bytes::from_static(b"3"), now);
        assert!(p.stalled_since().is_some());
        p.take_due(now, lag, 0);
        assert_eq!(p.stalled_since(), None);
    }
}
