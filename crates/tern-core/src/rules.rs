//! The domain rules a store applies while it writes, each written once.
//!
//! A store only stores and queries: it reads the facts a rule needs (inside
//! its transaction, where the answer must stay true until commit) and asks
//! the rule here. Every backend (SQLite, PostgreSQL, MySQL) calls these
//! functions instead of deciding on its own, so they cannot drift apart.
//! The offline cap lives next door, in [`crate::offline`].

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
        }
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
