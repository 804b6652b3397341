//! [`Convs`]: where a session stands in each conversation, without a
//! socket: which pushes were seen (by `msg_id` and by seq), the position
//! below which nothing is missing, the pushes held while a gap is filled,
//! and which conversations owe a cumulative `ack`. The session task
//! (`session/task.rs`) asks it what to do with each push and answer, then does
//! the writing and the telling.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use tern_proto::wire::MsgView;

/// Where the session stands in one conversation.
#[derive(Default)]
struct Conv {
    /// Highest seq delivered with nothing missing below it (since the
    /// session first saw the conversation); `None` before that.
    last: Option<u64>,
    /// Highest seq acknowledged.
    acked: u64,
    /// An ack is due (new messages, or a duplicate that shows the server
    /// missed an earlier ack).
    dirty: bool,
    /// A `history` call is filling a gap: pushes wait in `held`.
    filling: bool,
    held: BTreeMap<u64, MsgView<'static>>,
}

/// What to do with a pushed message. (`Deliver` is the common case, one
/// per message: boxing it would cost an allocation each.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Arrival {
    /// Seen before: dropped, and an ack is due (the server may have
    /// missed one).
    Duplicate,
    /// A fill is running in its conversation: held until it ends.
    Held,
    /// It opens a gap: held; the caller fills the gap with `history`.
    Gap,
    /// Next in line: recorded as delivered; hand it to the application.
    Deliver(MsgView<'static>),
}

/// Every conversation the session has seen, and its memory of message ids.
pub(crate) struct Convs {
    convs: HashMap<String, Conv>,
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
    /// How many message ids `seen` keeps (at least one).
    window: usize,
}

impl Convs {
    /// Remembers up to `window` message ids (at least one).
    pub(crate) fn new(window: usize) -> Self {
        Convs {
            convs: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            window: window.max(1),
        }
    }

    /// Decides what to do with a pushed message.
    pub(crate) fn arrive(&mut self, m: MsgView<'static>) -> Arrival {
        let conv = m.conv.to_string();
        if self.seen.contains(&m.msg_id) {
            self.mark(&conv);
            return Arrival::Duplicate;
        }
        let st = self.convs.entry(conv.clone()).or_default();
        match st.last {
            Some(l) if m.seq <= l => {
                // Seen before this session's memory of ids: a duplicate.
                self.mark(&conv);
                Arrival::Duplicate
            }
            _ if st.filling => {
                st.held.insert(m.seq, m);
                Arrival::Held
            }
            Some(l) if m.seq > l + 1 => {
                let after = l;
                tracing::debug!(conv, after, seq = m.seq, "gap: filling with history");
                st.held.insert(m.seq, m);
                Arrival::Gap
            }
            _ => {
                self.delivered(&m);
                Arrival::Deliver(m)
            }
        }
    }

    /// One's own message was stored at `seq`: no push comes for it on this
    /// device, so move past it when it is next in line.
    pub(crate) fn sent(&mut self, conv: &str, seq: u64) {
        let st = self.convs.entry(conv.to_owned()).or_default();
        match st.last {
            None => st.last = Some(seq),
            Some(l) if !st.filling && seq == l + 1 => st.last = Some(seq),
            _ => {}
        }
    }

    /// Starts (or continues) a gap fill: `None` when the conversation is
    /// unknown, else the seq to ask `history` for messages after (`None`
    /// for from the start).
    pub(crate) fn start_fill(&mut self, conv: &str) -> Option<Option<u64>> {
        let st = self.convs.get_mut(conv)?;
        st.filling = true;
        Some(st.last)
    }

    /// A page of `history` for a fill came back: the messages of it to hand
    /// out, in order, already recorded as delivered. Known ones (one's
    /// own, answered by `ok`) only move the position.
    pub(crate) fn filled(
        &mut self,
        conv: &str,
        msgs: Vec<MsgView<'static>>,
    ) -> Vec<MsgView<'static>> {
        let mut out = Vec::new();
        for m in msgs {
            let last = self.last(conv);
            if last.is_none_or(|l| m.seq > l) && !self.seen.contains(&m.msg_id) {
                self.delivered(&m);
                out.push(m);
            } else if let Some(st) = self.convs.get_mut(conv) {
                if last.is_none_or(|l| m.seq > l) {
                    st.last = Some(m.seq);
                }
            }
        }
        out
    }

    /// Ends a fill: the held pushes above the position, in seq order,
    /// already recorded as delivered.
    pub(crate) fn release(&mut self, conv: &str) -> Vec<MsgView<'static>> {
        let Some(st) = self.convs.get_mut(conv) else {
            return Vec::new();
        };
        st.filling = false;
        let held = std::mem::take(&mut st.held);
        let mut out = Vec::new();
        for (_, m) in held {
            let last = self.last(conv);
            if last.is_none_or(|l| m.seq > l) && !self.seen.contains(&m.msg_id) {
                self.delivered(&m);
                out.push(m);
            }
        }
        out
    }

    /// Whether `sync` shows `conv` past what the session holds (and no fill
    /// is already running for it).
    pub(crate) fn behind(&self, conv: &str, max_seq: u64) -> bool {
        self.convs
            .get(conv)
            .is_some_and(|st| !st.filling && st.last.is_some_and(|l| max_seq > l))
    }

    /// The connection dropped: held pushes come again (offline queue) or
    /// through the gap fill after `sync`.
    pub(crate) fn disconnected(&mut self) {
        for c in self.convs.values_mut() {
            c.filling = false;
            c.held.clear();
            c.acked = c.acked.min(c.last.unwrap_or(0));
        }
    }

    /// One cumulative ack per conversation that has news: up to the
    /// highest seq held with nothing missing below it.
    pub(crate) fn take_acks(&mut self) -> Vec<(String, u64)> {
        let mut acks = Vec::new();
        for (conv, st) in &mut self.convs {
            if !st.dirty {
                continue;
            }
            st.dirty = false;
            let Some(last) = st.last else { continue };
            st.acked = st.acked.max(last);
            acks.push((conv.clone(), last));
        }
        acks
    }

    fn last(&self, conv: &str) -> Option<u64> {
        self.convs.get(conv).and_then(|s| s.last)
    }

    /// Records a message as handed out: the position, the id, an ack due.
    fn delivered(&mut self, m: &MsgView<'_>) {
        let conv = m.conv.to_string();
        let st = self.convs.entry(conv.clone()).or_default();
        st.last = Some(st.last.map_or(m.seq, |l| l.max(m.seq)));
        self.seen.insert(m.msg_id);
        self.seen_order.push_back(m.msg_id);
        while self.seen_order.len() > self.window {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.mark(&conv);
    }

    fn mark(&mut self, conv: &str) {
        if let Some(st) = self.convs.get_mut(conv) {
            st.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn msg(conv: &str, seq: u64, msg_id: u64) -> MsgView<'static> {
        MsgView {
            msg_id,
            conv: Cow::Owned(conv.to_owned()),
            seq,
            from: Cow::Borrowed("bob"),
            to: Some(Cow::Borrowed("alice")),
            group: None,
            kind: Cow::Borrowed("text"),
            content: None,
            ts: 0,
            client_msg_id: None,
            recalled: false,
            reply_to: None,
            mentions: Vec::new(),
            edited_at: None,
            reactions: Default::default(),
        }
    }

    fn seqs(ms: &[MsgView<'_>]) -> Vec<u64> {
        ms.iter().map(|m| m.seq).collect()
    }

    const C: &str = "dm:alice:bob";

    #[test]
    fn in_order_pushes_are_delivered_and_acked_cumulatively() {
        let mut c = Convs::new(16);
        assert!(matches!(c.arrive(msg(C, 1, 11)), Arrival::Deliver(_)));
        assert!(matches!(c.arrive(msg(C, 2, 12)), Arrival::Deliver(_)));
        assert_eq!(c.take_acks(), vec![(C.to_owned(), 2)]);
        assert!(c.take_acks().is_empty(), "nothing new, no ack");
    }

    #[test]
    fn repeats_are_dropped_by_id_and_by_seq_and_ask_for_an_ack() {
        let mut c = Convs::new(1);
        assert!(matches!(c.arrive(msg(C, 1, 11)), Arrival::Deliver(_)));
        assert!(matches!(c.arrive(msg(C, 2, 12)), Arrival::Deliver(_)));
        c.take_acks();
        // Id 12 is remembered.
        assert!(matches!(c.arrive(msg(C, 2, 12)), Arrival::Duplicate));
        assert_eq!(c.take_acks(), vec![(C.to_owned(), 2)]);
        // Id 11 fell out of the window of one; its seq still tells.
        assert!(matches!(c.arrive(msg(C, 1, 11)), Arrival::Duplicate));
        assert_eq!(c.take_acks(), vec![(C.to_owned(), 2)]);
    }

    #[test]
    fn a_gap_holds_pushes_until_the_fill_hands_them_out_in_order() {
        let mut c = Convs::new(16);
        assert!(matches!(c.arrive(msg(C, 1, 11)), Arrival::Deliver(_)));
        assert!(matches!(c.arrive(msg(C, 4, 14)), Arrival::Gap));
        assert_eq!(c.start_fill(C), Some(Some(1)));
        assert!(matches!(c.arrive(msg(C, 5, 15)), Arrival::Held));
        assert!(!c.behind(C, 9), "a running fill is not asked again");
        // History answers 2..=4: 4 is held too, but handed out once.
        let got = c.filled(C, vec![msg(C, 2, 12), msg(C, 3, 13), msg(C, 4, 14)]);
        assert_eq!(seqs(&got), [2, 3, 4]);
        let rest = c.release(C);
        assert_eq!(seqs(&rest), [5]);
        assert!(matches!(c.arrive(msg(C, 6, 16)), Arrival::Deliver(_)));
        assert_eq!(c.take_acks(), vec![(C.to_owned(), 6)]);
    }

    #[test]
    fn a_fill_moves_past_known_messages_without_handing_them_out() {
        let mut c = Convs::new(16);
        assert!(matches!(c.arrive(msg(C, 1, 11)), Arrival::Deliver(_)));
        c.take_acks();
        // Id 11 (seen) at a higher seq only moves the position.
        assert!(c.filled(C, vec![msg(C, 3, 11)]).is_empty());
        assert!(!c.behind(C, 3));
        assert!(c.take_acks().is_empty());
    }

    #[test]
    fn own_sends_move_the_position_only_when_next_in_line() {
        let mut c = Convs::new(16);
        c.sent(C, 5);
        assert!(!c.behind(C, 5));
        c.sent(C, 6);
        assert!(!c.behind(C, 6));
        c.sent(C, 8);
        assert!(c.behind(C, 8), "7 is missing, so 8 is not passed");
        // While a fill runs, the fill decides.
        assert_eq!(c.start_fill(C), Some(Some(6)));
        c.sent(C, 7);
        assert_eq!(c.start_fill(C), Some(Some(6)));
    }

    #[test]
    fn unknown_conversations_are_not_filled() {
        let mut c = Convs::new(16);
        assert_eq!(c.start_fill(C), None);
        assert!(c.release(C).is_empty());
        assert!(!c.behind(C, 1));
    }

    #[test]
    fn a_drop_forgets_held_pushes_and_ends_fills() {
        let mut c = Convs::new(16);
        assert!(matches!(c.arrive(msg(C, 1, 11)), Arrival::Deliver(_)));
        assert!(matches!(c.arrive(msg(C, 3, 13)), Arrival::Gap));
        c.start_fill(C);
        c.disconnected();
        assert!(c.release(C).is_empty(), "held pushes come again");
        assert!(c.behind(C, 3), "sync after the reconnect fills it");
        // The pushes that come again are handled as new.
        assert!(matches!(c.arrive(msg(C, 2, 12)), Arrival::Deliver(_)));
        assert!(matches!(c.arrive(msg(C, 3, 13)), Arrival::Deliver(_)));
    }
}
