//! The domain rules a store applies while it writes, each written once.
//!
//! A store only stores and queries: it reads the facts a rule needs (inside
//! its transaction, where the answer must stay true until commit) and asks
//! the rule here. Every backend (SQLite, PostgreSQL, MySQL) calls these
//! functions instead of deciding on its own, so they cannot drift apart.
//! The offline cap lives next door, in [`crate::offline`]. The position
//! rules ([`own_message`], [`read_to`], [`ack`]) work on a user's row as
//! the store read it ([`Positions`]); the store writes back what they say.

use crate::store::{MemberChange, Refusal, StoreError, StoredMessage};

/// The group gate: whether a group message may be stored, from the facts
/// the store read in its transaction. `exists` is whether the group
/// existed before this message; `sender_is_member` whether its sender is a
/// current member.
///
/// - Creating a group that exists is a `Conflict` (the whole call fails).
/// - Any other message to a group that does not exist is refused
///   (`NoSuchGroup`).
/// - A membership change (join, leave) needs no membership of its sender:
///   the service checked who may make it.
/// - Any other message needs its sender in the group (`NotMember`).
pub fn gate(
    change: Option<&MemberChange>,
    exists: bool,
    sender_is_member: bool,
) -> Result<Result<(), Refusal>, StoreError> {
    Ok(match change {
        Some(MemberChange::Create { .. }) if exists => return Err(StoreError::Conflict),
        Some(MemberChange::Create { .. }) => Ok(()),
        _ if !exists => Err(Refusal::NoSuchGroup),
        Some(_) => Ok(()),
        None if sender_is_member => Ok(()),
        None => Err(Refusal::NotMember),
    })
}

/// Owner hand-over: who owns the group once `leaving` has left, when its
/// owner was `owner`. `remaining` lists the members left, longest-standing
/// (lowest join order) first; a store may pass only the first of them.
/// `None`: the owner stays (someone else left, or nobody remains).
pub fn next_owner<'a>(
    owner: &str,
    leaving: &str,
    remaining: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if owner != leaving {
        return None;
    }
    remaining.into_iter().find(|m| *m != leaving)
}

/// Diffusion tier: how far a store counts a group's members to decide
/// [`enters_queues`]; `None` when the answer needs no count (write
/// diffusion is off). Counting stops one past the bound, so the cost of the
/// decision is the bound, not the size of a large group.
pub fn members_to_count(up_to: usize) -> Option<u64> {
    (up_to > 0).then(|| up_to as u64 + 1)
}

/// Diffusion tier: whether a group message enters its members' offline
/// queues (write diffusion: groups of at most `up_to` members) or nobody's
/// (read diffusion). `member_count` is the group's member count after the
/// message's own membership change, counted at most to
/// [`members_to_count`]. 1:1 messages always enter the recipient's queue.
pub fn enters_queues(member_count: u64, up_to: usize) -> bool {
    up_to > 0 && member_count <= up_to as u64
}

/// A user's positions in one conversation (a `user_convs` row), as the
/// position rules below read and move them. Seqs count from 1; 0 is
/// "before the first message".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Positions {
    /// Read up to here (unread counts start above it).
    pub read: u64,
    /// Delivered to one of the user's devices up to here (1:1 receipts).
    pub delivered: u64,
    /// When the read position last moved.
    pub read_at: i64,
    /// The offline queue position: what is above it is queued.
    pub inbox: u64,
    /// A former member's last seq; `None` for a current member.
    pub until: Option<u64>,
}

/// Whether the sender's queue position follows their own message. Not in
/// `dm:x:x`: there the message is queued for x's other devices.
pub fn queue_follows(from: &str, to: Option<&str>) -> bool {
    to != Some(from)
}

/// The sender has read their own message `seq` (sent at `ts`): read and
/// delivered positions move to it, never back. Their queue position
/// follows when nothing was queued for them before it (it stood right
/// below `seq`) and `follows` ([`queue_follows`]). A former member's row
/// does not move. Returns whether the rule applied (the row is written).
pub fn own_message(p: &mut Positions, seq: u64, ts: i64, follows: bool) -> bool {
    if p.until.is_some() {
        return false;
    }
    p.read = p.read.max(seq);
    p.delivered = p.delivered.max(seq);
    p.read_at = p.read_at.max(ts);
    if follows && p.inbox.checked_add(1) == Some(seq) {
        p.inbox = seq;
    }
    true
}

/// The read position a read mark at `seq` moves to: at most a former
/// member's last seq. `None` when it does not move (it stands there or
/// beyond already).
pub fn read_to(p: &Positions, seq: u64) -> Option<u64> {
    let target = p.until.map_or(seq, |u| seq.min(u));
    (target > p.read).then_some(target)
}

/// What an ack does to a user's row: see [`ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckMove {
    /// The new queue position (never lower than before).
    pub inbox: u64,
    /// The new delivered position.
    pub delivered: u64,
    /// For a delivered receipt: the seqs `(from, to]` it covers, when the
    /// delivered position moved. The receipt goes out if the peer sent one
    /// of them, and names `to`.
    pub receipt: Option<(u64, u64)>,
}

/// An ack of `seq` on a row with positions `p` in a conversation whose
/// newest seq is `max_seq`. The acked seq is clamped to `max_seq` and to a
/// former member's last seq; the queue position moves to it, never back.
/// The delivered position moves only when a delivered receipt may follow
/// (`receipt`: 1:1 conversations): without a peer to tell, moving the
/// queue position is all an ack does. `None` when nothing changes.
pub fn ack(p: &Positions, max_seq: u64, seq: u64, receipt: bool) -> Option<AckMove> {
    let mut top = seq.min(max_seq);
    if let Some(until) = p.until {
        top = top.min(until);
    }
    let delivered = if receipt && top > p.delivered {
        top
    } else {
        p.delivered
    };
    if top <= p.inbox && delivered == p.delivered {
        return None;
    }
    Some(AckMove {
        inbox: p.inbox.max(top),
        delivered,
        receipt: (delivered != p.delivered).then_some((p.delivered, top)),
    })
}

/// What a recall does to a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recall {
    /// Clear the content and mark the message recalled.
    Clear,
    /// Recalled before: nothing to write, answer the message as stored.
    AlreadyDone,
}

/// The recall window: only the sender recalls, and only while
/// `now - ts <= window_ms`; recalling again is fine whenever it happens.
pub fn may_recall(
    m: &StoredMessage,
    by: &str,
    window_ms: i64,
    now: i64,
) -> Result<Recall, StoreError> {
    if m.from != by {
        return Err(StoreError::Forbidden(
            "only the sender may recall a message",
        ));
    }
    if m.recalled {
        return Ok(Recall::AlreadyDone);
    }
    if now.saturating_sub(m.ts) > window_ms {
        return Err(StoreError::Forbidden("the recall window has passed"));
    }
    Ok(Recall::Clear)
}

// 5.1

/// The edit window: only the sender edits, never a recalled message, and
/// only while `now - ts <= window_ms`. (The kind stays, and the content
/// limit applies: the core checks the new content before it asks.)
pub fn may_edit(m: &StoredMessage, by: &str, window_ms: i64, now: i64) -> Result<(), StoreError> {
    if m.from != by {
        return Err(StoreError::Forbidden("only the sender may edit a message"));
    }
    if m.recalled {
        return Err(StoreError::Forbidden("a recalled message cannot be edited"));
    }
    if m.kind == "system" {
        return Err(StoreError::Forbidden("system messages cannot be edited"));
    }
    if now.saturating_sub(m.ts) > window_ms {
        return Err(StoreError::Forbidden("the edit window has passed"));
    }
    Ok(())
}

/// Whether a reaction `emoji` may be added to `m`, whose reactions
/// already use the distinct emojis `used`: never to a recalled message
/// (`Forbidden`), and at most `max_emoji` distinct emojis per message
/// (one more is `Invalid`; a user joining an emoji in use is fine).
pub fn may_react(
    m: &StoredMessage,
    used: &[String],
    emoji: &str,
    max_emoji: usize,
) -> Result<(), StoreError> {
    if m.recalled {
        return Err(StoreError::Forbidden(
            "a recalled message takes no reactions",
        ));
    }
    if !used.iter().any(|e| e == emoji) && used.len() >= max_emoji {
        return Err(StoreError::Invalid(
            "the message has the most distinct reactions it may have",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create() -> MemberChange {
        MemberChange::Create { name: "g".into() }
    }

    #[test]
    fn gate_refuses_missing_groups_and_strangers() {
        assert_eq!(gate(None, false, false).unwrap(), Err(Refusal::NoSuchGroup));
        assert_eq!(gate(None, true, false).unwrap(), Err(Refusal::NotMember));
        assert_eq!(gate(None, true, true).unwrap(), Ok(()));
        let join = MemberChange::Join("b".into());
        let leave = MemberChange::Leave("b".into());
        assert_eq!(
            gate(Some(&join), false, false).unwrap(),
            Err(Refusal::NoSuchGroup)
        );
        assert_eq!(gate(Some(&join), true, false).unwrap(), Ok(()));
        assert_eq!(gate(Some(&leave), true, false).unwrap(), Ok(()));
        assert_eq!(
            gate(Some(&leave), false, true).unwrap(),
            Err(Refusal::NoSuchGroup)
        );
    }

    #[test]
    fn gate_creates_only_new_groups() {
        assert_eq!(gate(Some(&create()), false, false).unwrap(), Ok(()));
        assert!(matches!(
            gate(Some(&create()), true, false),
            Err(StoreError::Conflict)
        ));
    }

    #[test]
    fn owner_passes_to_the_longest_standing_member() {
        assert_eq!(next_owner("a", "a", ["b", "c"]), Some("b"));
        assert_eq!(next_owner("a", "b", ["a", "c"]), None);
        assert_eq!(next_owner("a", "a", []), None);
        // A list that still holds the leaver skips them.
        assert_eq!(next_owner("a", "a", ["a", "c"]), Some("c"));
        assert_eq!(next_owner("a", "a", Some("d")), Some("d"));
    }

    #[test]
    fn diffusion_tier_bound_is_inclusive() {
        assert_eq!(members_to_count(0), None);
        assert_eq!(members_to_count(3), Some(4));
        assert!(enters_queues(3, 3));
        assert!(enters_queues(1, 3));
        assert!(!enters_queues(4, 3));
        assert!(!enters_queues(0, 0));
        assert!(!enters_queues(1, 0));
    }

    #[test]
    fn the_sender_reads_their_own_message_and_the_queue_follows() {
        let mut p = Positions {
            read: 3,
            delivered: 3,
            read_at: 10,
            inbox: 3,
            until: None,
        };
        assert!(own_message(&mut p, 4, 20, true));
        assert_eq!((p.read, p.delivered, p.read_at, p.inbox), (4, 4, 20, 4));
        // Something queued before it: the queue position stays.
        let mut q = Positions { inbox: 1, ..p };
        assert!(own_message(&mut q, 5, 30, true));
        assert_eq!((q.read, q.inbox), (5, 1));
        // `dm:x:x`: queued for the other devices.
        assert!(!queue_follows("x", Some("x")));
        assert!(queue_follows("x", Some("y")));
        assert!(queue_follows("x", None));
        let mut r = p;
        assert!(own_message(&mut r, 5, 30, false));
        assert_eq!((r.read, r.inbox), (5, 4));
        // A former member's row does not move.
        let mut f = Positions {
            until: Some(4),
            ..p
        };
        assert!(!own_message(&mut f, 5, 40, true));
        assert_eq!(
            f,
            Positions {
                until: Some(4),
                ..p
            }
        );
    }

    #[test]
    fn reads_stop_at_a_former_members_end() {
        let p = Positions {
            read: 2,
            ..Positions::default()
        };
        assert_eq!(read_to(&p, 5), Some(5));
        assert_eq!(read_to(&p, 2), None);
        let gone = Positions {
            until: Some(4),
            ..p
        };
        assert_eq!(read_to(&gone, 9), Some(4));
        let done = Positions { read: 4, ..gone };
        assert_eq!(read_to(&done, 9), None);
    }

    #[test]
    fn acks_clamp_and_move_forward_only() {
        let p = Positions {
            delivered: 2,
            inbox: 3,
            ..Positions::default()
        };
        // Clamped to the conversation's newest seq; no receipt wanted.
        assert_eq!(
            ack(&p, 5, 9, false),
            Some(AckMove {
                inbox: 5,
                delivered: 2,
                receipt: None
            })
        );
        // With a receipt the delivered position moves too.
        assert_eq!(
            ack(&p, 5, 4, true),
            Some(AckMove {
                inbox: 4,
                delivered: 4,
                receipt: Some((2, 4))
            })
        );
        // Behind the queue position, without a receipt: nothing.
        assert_eq!(ack(&p, 5, 3, false), None);
        // Behind the queue, but the delivered position moves.
        assert_eq!(
            ack(&p, 5, 3, true),
            Some(AckMove {
                inbox: 3,
                delivered: 3,
                receipt: Some((2, 3))
            })
        );
        // A former member acks at most to their end.
        let gone = Positions {
            until: Some(4),
            ..p
        };
        assert_eq!(ack(&gone, 9, 9, false).map(|m| m.inbox), Some(4));
    }

    fn msg(from: &str, ts: i64, recalled: bool) -> StoredMessage {
        StoredMessage {
            msg_id: 1,
            conv: "dm:a:b".into(),
            seq: 1,
            from: from.into(),
            to: Some("b".into()),
            group: None,
            kind: "text".into(),
            content: (!recalled).then(|| "\"hi\"".into()),
            ts,
            client_msg_id: None,
            recalled,
            reply_to: None,
            mentions: Vec::new(),
            edited_at: None,
            reactions: Vec::new(),
        }
    }

    #[test]
    fn edit_needs_the_sender_within_the_window() {
        let m = msg("a", 1_000, false);
        assert!(may_edit(&m, "a", 500, 1_500).is_ok());
        assert!(matches!(
            may_edit(&m, "a", 500, 1_501),
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            may_edit(&m, "b", 500, 1_000),
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            may_edit(&msg("a", 1_000, true), "a", 500, 1_000),
            Err(StoreError::Forbidden(_))
        ));
    }

    #[test]
    fn reactions_are_bounded_by_distinct_emojis() {
        let m = msg("a", 1_000, false);
        let used = vec!["x".to_owned(), "y".to_owned()];
        assert!(may_react(&m, &used, "x", 2).is_ok());
        assert!(matches!(
            may_react(&m, &used, "z", 2),
            Err(StoreError::Invalid(_))
        ));
        assert!(may_react(&m, &used, "z", 3).is_ok());
        assert!(matches!(
            may_react(&msg("a", 1_000, true), &[], "x", 3),
            Err(StoreError::Forbidden(_))
        ));
    }

    #[test]
    fn recall_needs_the_sender_within_the_window() {
        let m = msg("a", 1_000, false);
        assert_eq!(may_recall(&m, "a", 500, 1_500).unwrap(), Recall::Clear);
        assert!(matches!(
            may_recall(&m, "a", 500, 1_501),
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            may_recall(&m, "b", 500, 1_000),
            Err(StoreError::Forbidden(_))
        ));
        // Recalled before: fine at any time, but still the sender's only.
        let done = msg("a", 1_000, true);
        assert_eq!(
            may_recall(&done, "a", 500, 99_000).unwrap(),
            Recall::AlreadyDone
        );
        assert!(matches!(
            may_recall(&done, "b", 500, 1_000),
            Err(StoreError::Forbidden(_))
        ));
    }
}
