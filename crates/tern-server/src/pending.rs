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
}

impl Pending {
    /// Records a push; returns how many pushes now await an ack.
    pub fn add(&mut self, conv: Arc<str>, seq: u64, frame: Bytes, due: Instant) -> usize {
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
        out
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
}
