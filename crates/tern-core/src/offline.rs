//! The offline fetch's bounded merge, shared by every store.
//!
//! A user's offline queue spans many conversations; `offline_fetch` returns
//! its newest `cap` messages. Reading every conversation's queue (or `cap`
//! of each) before applying the cap costs memory and reads in proportion to
//! the whole queue: with many conversations, far more than the cap. The
//! merge instead reads each conversation's queue from the newest message
//! down, in small pages, and always takes the newest head among them, so it
//! stops after `cap` messages (and one more, to know whether anything was
//! dropped). A store drives it:
//!
//! ```text
//! let mut merge = OfflineMerge::new(spans, cap);
//! loop {
//!     let fetches = merge.next_fetches();
//!     if fetches.is_empty() { break }
//!     for f in fetches {
//!         // the span's queued messages with seq < f.below, newest first,
//!         // at most f.limit
//!         merge.feed(f, rows);
//!     }
//! }
//! let (batch, moves) = merge.finish();   // moves: queue positions to store
//! ```
//!
//! Rows read: at most `cap + 1` plus one page per conversation that runs
//! dry; memory: the taken messages plus each conversation's current page.
//!
//! Queue order is arrival (`msg_id`) order and seq order within a
//! conversation. Ids from several nodes may disagree with a conversation's
//! seq order; reading down, a message's queue key is the smallest id seen so
//! far in its conversation (never above the key of the message after it),
//! so seq order always holds within a conversation.

use crate::store::{OfflineBatch, StoredMessage};
use std::collections::{BinaryHeap, VecDeque};

/// A conversation with something above the user's queue position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpan {
    pub conv: String,
    /// Acknowledged up to here.
    pub from: u64,
    /// The highest seq the user can see.
    pub to: u64,
    /// `dm:x:x`: the user's own messages are queued too.
    pub own_too: bool,
}

/// A page to read: the queued messages of span `span` with
/// `from < seq < below`, newest first, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    pub span: usize,
    pub below: u64,
    pub limit: u32,
}

/// Largest page read from one conversation at a time.
const MAX_PAGE: u32 = 256;

struct Span {
    span: QueueSpan,
    /// Read but not yet taken, newest first.
    page: VecDeque<StoredMessage>,
    /// The next page ends below this seq.
    below: u64,
    /// Nothing more is queued below `below`.
    done: bool,
    /// Queue key of the last message taken (running minimum of ids).
    key: u64,
    /// Size of the last page asked for.
    last_limit: u32,
    /// Lowest seq taken.
    lowest_taken: Option<u64>,
}

impl Span {
    fn head_key(&self) -> Option<u64> {
        self.page.front().map(|m| m.msg_id.min(self.key))
    }
}

pub struct OfflineMerge {
    cap: usize,
    spans: Vec<Span>,
    /// Spans whose page ran out before they were known to be done.
    pending: Vec<usize>,
    /// `(queue key, span)` of every span with a non-empty page; spans are
    /// sorted by conversation, so ties go by conversation.
    heads: BinaryHeap<(u64, usize)>,
    /// Taken, newest first.
    taken: Vec<StoredMessage>,
    truncated: bool,
    finished: bool,
    /// Spans not known to be done.
    open: usize,
    /// Messages read so far.
    read: usize,
}

impl OfflineMerge {
    pub fn new(mut spans: Vec<QueueSpan>, cap: u32) -> OfflineMerge {
        spans.sort_by(|a, b| a.conv.cmp(&b.conv));
        let cap = cap as usize;
        // The first page of each conversation: an even share of the cap.
        let first = u32::try_from((cap + 1).div_ceil(spans.len().max(1)))
            .unwrap_or(MAX_PAGE)
            .clamp(1, MAX_PAGE);
        let spans: Vec<Span> = spans
            .into_iter()
            .map(|s| Span {
                below: s.to.saturating_add(1),
                done: s.to <= s.from,
                span: s,
                page: VecDeque::new(),
                key: u64::MAX,
                last_limit: first / 2,
                lowest_taken: None,
            })
            .collect();
        let pending: Vec<usize> = (0..spans.len()).rev().filter(|&i| !spans[i].done).collect();
        OfflineMerge {
            cap,
            spans,
            open: pending.len(),
            pending,
            heads: BinaryHeap::new(),
            taken: Vec::new(),
            truncated: false,
            finished: false,
            read: 0,
        }
    }

    /// The span `i` (sorted by conversation).
    pub fn span(&self, i: usize) -> &QueueSpan {
        &self.spans[i].span
    }

    /// Messages read so far.
    pub fn read(&self) -> usize {
        self.read
    }

    /// The next pages to read (independent of each other: a store may read
    /// them in one query), or none once the merge is complete.
    pub fn next_fetches(&mut self) -> Vec<Fetch> {
        loop {
            if self.finished {
                return Vec::new();
            }
            // Every span still holding messages must show its head before
            // the newest can be chosen.
            if !self.pending.is_empty() {
                // What is still wanted, shared among the conversations
                // that may hold more; a conversation that keeps running
                // dry doubles its page.
                let want = self.cap + 1 - self.taken.len();
                let share = u32::try_from(want.div_ceil(self.open.max(1))).unwrap_or(MAX_PAGE);
                let mut out = Vec::with_capacity(self.pending.len());
                for i in self.pending.drain(..).rev() {
                    let s = &mut self.spans[i];
                    let limit = s.last_limit.saturating_mul(2).min(share).clamp(1, MAX_PAGE);
                    s.last_limit = limit;
                    out.push(Fetch {
                        span: i,
                        below: s.below,
                        limit,
                    });
                }
                return out;
            }
            let Some((_, i)) = self.heads.pop() else {
                self.finished = true;
                return Vec::new();
            };
            if self.taken.len() == self.cap {
                // One more than the cap is queued: older ones are dropped.
                self.truncated = true;
                self.finished = true;
                return Vec::new();
            }
            let s = &mut self.spans[i];
            let key = s.head_key().expect("a span in the heap has a head");
            let m = s.page.pop_front().expect("a span in the heap has a head");
            s.key = key;
            s.lowest_taken = Some(m.seq);
            self.taken.push(m);
            if let Some(k) = s.head_key() {
                self.heads.push((k, i));
            } else if !s.done {
                self.pending.push(i);
            }
        }
    }

    /// The rows of `f` (as returned by [`Self::next_fetch`]), newest first.
    pub fn feed(&mut self, f: Fetch, rows: Vec<StoredMessage>) {
        self.read += rows.len();
        let s = &mut self.spans[f.span];
        if let Some(last) = rows.last() {
            s.below = last.seq;
        }
        if !s.done && (rows.len() < f.limit as usize || s.below <= s.span.from + 1) {
            s.done = true;
            self.open -= 1;
        }
        s.page.extend(rows);
        if let Some(k) = s.head_key() {
            self.heads.push((k, f.span));
        } else if !s.done {
            self.pending.push(f.span);
        }
    }

    /// The batch, and the queue positions to move forward (never back):
    /// what was dropped leaves the queue for good, and conversations with
    /// nothing queued (read-diffused groups, the user's own messages) move
    /// to their end so that the next fetch skips them.
    pub fn finish(mut self) -> (OfflineBatch, Vec<(String, u64)>) {
        let mut moves = Vec::new();
        for s in &self.spans {
            match s.lowest_taken {
                None => moves.push((s.span.conv.clone(), s.span.to)),
                Some(low) if self.truncated && low > s.span.from + 1 => {
                    moves.push((s.span.conv.clone(), low - 1));
                }
                Some(_) => {}
            }
        }
        self.taken.reverse();
        (
            OfflineBatch {
                msgs: self.taken,
                truncated: self.truncated,
            },
            moves,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conv: &str, seq: u64, msg_id: u64) -> StoredMessage {
        StoredMessage {
            msg_id,
            conv: conv.into(),
            seq,
            from: "x".into(),
            to: None,
            group: None,
            kind: "text".into(),
            content: Some("1".into()),
            ts: 0,
            client_msg_id: None,
            recalled: false,
            reply_to: None,
            mentions: Vec::new(),
            edited_at: None,
            reactions: Vec::new(),
        }
    }

    /// Runs a merge over in-memory queues (conv -> messages in seq order).
    fn run(
        queues: &[(&str, Vec<StoredMessage>)],
        cap: u32,
    ) -> (OfflineBatch, Vec<(String, u64)>, usize) {
        let spans = queues
            .iter()
            .map(|(c, ms)| QueueSpan {
                conv: (*c).into(),
                from: 0,
                to: ms.last().map_or(0, |m| m.seq),
                own_too: false,
            })
            .collect();
        let mut merge = OfflineMerge::new(spans, cap);
        let mut fetches = Vec::new();
        loop {
            if fetches.is_empty() {
                fetches = merge.next_fetches();
                if fetches.is_empty() {
                    break;
                }
            }
            let f = fetches.pop().unwrap();
            let conv = merge.span(f.span).conv.clone();
            let q = &queues.iter().find(|(c, _)| *c == conv).unwrap().1;
            let rows: Vec<_> = q
                .iter()
                .rev()
                .filter(|m| m.seq < f.below)
                .take(f.limit as usize)
                .cloned()
                .collect();
            merge.feed(f, rows);
        }
        let read = merge.read();
        let (b, moves) = merge.finish();
        (b, moves, read)
    }

    /// 50 conversations of 1,000 interleaved messages, cap 1,000: the newest
    /// 1,000 in id order, and about that many read, not 50,000.
    #[test]
    fn reads_about_the_cap_not_the_queue() {
        let convs: Vec<String> = (0..50).map(|i| format!("dm:a:u{i:02}")).collect();
        let queues: Vec<(&str, Vec<StoredMessage>)> = convs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let ms = (1..=1000u64)
                    .map(|s| msg(c, s, s * 100 + i as u64))
                    .collect();
                (c.as_str(), ms)
            })
            .collect();
        let (b, moves, read) = run(&queues, 1000);
        assert!(b.truncated);
        assert_eq!(b.msgs.len(), 1000);
        assert!(b.msgs.windows(2).all(|w| w[0].msg_id < w[1].msg_id));
        assert_eq!(b.msgs[0].msg_id, 981 * 100);
        assert!(read <= 1000 + 1 + 50 * 2, "read {read}");
        // Every conversation's older part is dropped.
        assert_eq!(moves.len(), 50);
        assert!(moves.iter().all(|(_, s)| *s == 980));
    }

    #[test]
    fn one_busy_conversation_among_quiet_ones() {
        let busy: Vec<_> = (1..=5000).map(|s| msg("dm:a:b", s, s * 10)).collect();
        let quiet = vec![msg("dm:a:c", 1, 5), msg("dm:a:c", 2, 49_995)];
        let empty: Vec<StoredMessage> = vec![];
        let queues = vec![("dm:a:b", busy), ("dm:a:c", quiet), ("dm:a:d", empty)];
        let (b, moves, read) = run(&queues, 10);
        assert!(b.truncated);
        let got: Vec<_> = b.msgs.iter().map(|m| (m.conv.as_str(), m.seq)).collect();
        let mut want: Vec<_> = (4992..=5000).map(|s| ("dm:a:b", s)).collect();
        want.insert(8, ("dm:a:c", 2));
        assert_eq!(got, want);
        assert!(read <= 10 + 1 + 3 * 2, "read {read}");
        let mut moves = moves;
        moves.sort();
        assert_eq!(
            moves,
            vec![
                ("dm:a:b".into(), 4991),
                ("dm:a:c".into(), 1),
                ("dm:a:d".into(), 0)
            ]
        );
    }

    #[test]
    fn under_the_cap_nothing_is_dropped() {
        let queues = vec![
            ("dm:a:b", vec![msg("dm:a:b", 1, 1), msg("dm:a:b", 2, 4)]),
            ("dm:a:c", vec![msg("dm:a:c", 1, 2), msg("dm:a:c", 2, 3)]),
        ];
        let (b, moves, _) = run(&queues, 4);
        assert!(!b.truncated);
        let ids: Vec<_> = b.msgs.iter().map(|m| m.msg_id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        assert!(moves.is_empty());
    }

    /// Ids out of seq order within a conversation (several nodes): seq
    /// order still holds there.
    #[test]
    fn seq_order_holds_when_ids_disagree() {
        let queues = vec![
            (
                "dm:a:b",
                vec![
                    msg("dm:a:b", 1, 50),
                    msg("dm:a:b", 2, 10),
                    msg("dm:a:b", 3, 60),
                ],
            ),
            ("dm:a:c", vec![msg("dm:a:c", 1, 20)]),
        ];
        let (b, _, _) = run(&queues, 10);
        let got: Vec<_> = b.msgs.iter().map(|m| (m.conv.as_str(), m.seq)).collect();
        assert_eq!(
            got,
            [("dm:a:b", 1), ("dm:a:b", 2), ("dm:a:c", 1), ("dm:a:b", 3)]
        );
    }
}
