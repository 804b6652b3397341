//! Group roles and moderation (PROTOCOL.md 5.4): who may send, who may
//! change what, who may act on whom. Written once: the core asks these
//! rules before it writes (with its view of the group), and every store
//! asks them again inside its transaction (with the rows it read there),
//! so a change made on another node an instant before is still obeyed.
//!
//! The ranks: the owner over everyone; admins over plain members; plain
//! members over nobody. Acting on someone (removing, muting, demoting,
//! recalling their message past the sender's own window) needs a rank
//! above theirs.

use crate::store::{GroupRecord, MemberChange, Refusal};

/// A member's rank in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    /// The rank of `user` in a group owned by `owner`, `admin` when the
    /// user's row says so (the owner ranks first whatever it says).
    pub fn of(owner: &str, user: &str, admin: bool) -> Role {
        if owner == user {
            Role::Owner
        } else if admin {
            Role::Admin
        } else {
            Role::Member
        }
    }

    /// Owner and admins moderate: settings, mutes, removals, recalls.
    pub fn moderates(self) -> bool {
        self >= Role::Admin
    }

    /// Whether this rank may act on `target`'s: strictly above it.
    pub fn outranks(self, target: Role) -> bool {
        self > target
    }
}

/// A current member's standing, as a store reads its row (or a node's
/// view holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub role: Role,
    /// Muted until then (ms); a past time is no mute.
    pub muted_until: Option<i64>,
}

impl Standing {
    pub fn muted_at(&self, now: i64) -> bool {
        self.muted_until.is_some_and(|u| u > now)
    }
}

/// The group-wide settings the rules read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupState {
    pub muted_all: bool,
    pub dissolved: bool,
}

/// Whether `user` moderates the group: its owner or one of its admins
/// (and a current member). For callers outside the write path, such as
/// `@all` mentions.
pub fn can_moderate(group: &GroupRecord, user: &str) -> bool {
    standing_in(group, user).is_some_and(|s| s.role.moderates())
}

/// `user`'s standing in `group`; `None` when not a member.
pub fn standing_in(group: &GroupRecord, user: &str) -> Option<Standing> {
    if !group.members.iter().any(|m| m == user) {
        return None;
    }
    let admin = group.admins.iter().any(|a| a == user);
    Some(Standing {
        role: Role::of(&group.owner, user, admin),
        muted_until: group
            .mutes
            .iter()
            .find(|(m, _)| m == user)
            .map(|(_, until)| *until),
    })
}

/// A message to a group by a current member (no change): refused while
/// the group is dissolved, while the sender is muted, and while
/// `muted_all` is on for a plain member. The owner is never muted.
pub fn may_send(g: &GroupState, sender: Standing, now: i64) -> Result<(), Refusal> {
    if g.dissolved {
        return Err(Refusal::Dissolved);
    }
    if sender.role == Role::Owner {
        return Ok(());
    }
    if sender.muted_at(now) || (g.muted_all && sender.role == Role::Member) {
        return Err(Refusal::Muted);
    }
    Ok(())
}

/// The role rule for every message to an existing group, after
/// [`crate::rules::gate`] let it through. `sender` is the standing of the
/// message's sender (`from`), `target` that of the member the change
/// names ([`MemberChange::target`]); `None` for one who is not a member.
///
/// - Nothing is written to a dissolved group (`Dissolved`).
/// - A send: [`may_send`].
/// - Adding members: any member (the service checks membership).
/// - Leaving: anyone, themself; removing someone else needs a rank above
///   theirs.
/// - Making or unmaking an admin, dissolving: the owner only, never on
///   the owner.
/// - Muting and unmuting: a rank above the target's.
/// - Renaming, the announcement, `muted_all`: owner and admins.
pub fn admit(
    g: &GroupState,
    change: Option<&MemberChange>,
    from: &str,
    sender: Option<Standing>,
    target: Option<Standing>,
    now: i64,
) -> Result<(), Refusal> {
    use MemberChange as C;
    if matches!(change, Some(C::Create { .. })) {
        return Ok(());
    }
    if g.dissolved {
        return Err(Refusal::Dissolved);
    }
    let role = sender.map(|s| s.role);
    let over_target = || match (role, target) {
        (Some(r), Some(t)) => r.outranks(t.role),
        _ => false,
    };
    let ok = match change {
        None => return sender.map_or(Err(Refusal::NotMember), |s| may_send(g, s, now)),
        Some(C::Create { .. } | C::Join(_)) => true,
        Some(C::Leave(user)) => user == from || target.is_none() || over_target(),
        Some(C::Admin { .. }) => role == Some(Role::Owner) && over_target(),
        Some(C::Mute { .. }) => over_target(),
        Some(C::Rename(_) | C::Announce(_) | C::MutedAll(_)) => role.is_some_and(Role::moderates),
        Some(C::Dissolve) => role == Some(Role::Owner),
    };
    if ok {
        Ok(())
    } else {
        Err(Refusal::Forbidden)
    }
}

/// Whether `actor` may recall a message `sender` sent, past the sender's
/// own recall window: a moderator ranking above the sender (a sender no
/// longer in the group ranks as a plain member).
pub fn may_recall_any(actor: Option<Standing>, sender: Option<Standing>) -> bool {
    let Some(actor) = actor else { return false };
    actor.role.moderates() && actor.role.outranks(sender.map_or(Role::Member, |s| s.role))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(role: Role) -> Option<Standing> {
        Some(Standing {
            role,
            muted_until: None,
        })
    }

    const OPEN: GroupState = GroupState {
        muted_all: false,
        dissolved: false,
    };

    #[test]
    fn ranks() {
        assert_eq!(Role::of("o", "o", false), Role::Owner);
        assert_eq!(Role::of("o", "o", true), Role::Owner);
        assert_eq!(Role::of("o", "a", true), Role::Admin);
        assert_eq!(Role::of("o", "m", false), Role::Member);
        assert!(Role::Owner.outranks(Role::Admin) && Role::Admin.outranks(Role::Member));
        assert!(!Role::Admin.outranks(Role::Admin) && !Role::Admin.outranks(Role::Owner));
        assert!(!Role::Member.moderates() && Role::Admin.moderates());
    }

    #[test]
    fn sends_obey_mutes_and_dissolution() {
        let now = 1_000;
        let muted = Standing {
            role: Role::Member,
            muted_until: Some(now + 1),
        };
        assert_eq!(may_send(&OPEN, muted, now), Err(Refusal::Muted));
        // A mute that has ended is none.
        assert_eq!(may_send(&OPEN, muted, now + 1), Ok(()));
        let all = GroupState {
            muted_all: true,
            ..OPEN
        };
        assert_eq!(
            may_send(&all, st(Role::Member).unwrap(), now),
            Err(Refusal::Muted)
        );
        assert_eq!(may_send(&all, st(Role::Admin).unwrap(), now), Ok(()));
        // An admin muted by the owner is muted; the owner never is.
        let muted_admin = Standing {
            role: Role::Admin,
            ..muted
        };
        assert_eq!(may_send(&all, muted_admin, now), Err(Refusal::Muted));
        let owner = Standing {
            role: Role::Owner,
            ..muted
        };
        assert_eq!(may_send(&all, owner, now), Ok(()));
        let gone = GroupState {
            dissolved: true,
            ..OPEN
        };
        assert_eq!(may_send(&gone, owner, now), Err(Refusal::Dissolved));
        assert_eq!(
            admit(&OPEN, None, "x", None, None, now),
            Err(Refusal::NotMember)
        );
    }

    #[test]
    fn who_changes_what() {
        use MemberChange as C;
        let adm = |on| C::Admin {
            user: "t".into(),
            on,
        };
        let mute = C::Mute {
            user: "t".into(),
            until: Some(5),
        };
        let ok = |c: &C, s, t| admit(&OPEN, Some(c), "s", st(s), st(t), 0).is_ok();
        // Admins: the owner only, on anyone but the owner.
        assert!(ok(&adm(true), Role::Owner, Role::Member));
        assert!(ok(&adm(false), Role::Owner, Role::Admin));
        assert!(!ok(&adm(true), Role::Admin, Role::Member));
        assert!(!ok(&adm(false), Role::Admin, Role::Admin));
        // Mutes and removals: a rank above the target's.
        for c in [mute.clone(), C::Leave("t".into())] {
            assert!(ok(&c, Role::Owner, Role::Admin), "{c:?}");
            assert!(ok(&c, Role::Admin, Role::Member), "{c:?}");
            assert!(!ok(&c, Role::Admin, Role::Admin), "{c:?}");
            assert!(!ok(&c, Role::Admin, Role::Owner), "{c:?}");
            assert!(!ok(&c, Role::Member, Role::Member), "{c:?}");
        }
        // Leaving oneself is anyone's; removing a non-member changes nothing.
        let leave_self = C::Leave("s".into());
        assert!(admit(
            &OPEN,
            Some(&leave_self),
            "s",
            st(Role::Owner),
            st(Role::Owner),
            0
        )
        .is_ok());
        assert!(admit(
            &OPEN,
            Some(&C::Leave("t".into())),
            "s",
            st(Role::Member),
            None,
            0
        )
        .is_ok());
        // Settings: owner and admins.
        for c in [
            C::Rename("n".into()),
            C::Announce("a".into()),
            C::MutedAll(true),
        ] {
            assert!(ok(&c, Role::Admin, Role::Member));
            assert!(!ok(&c, Role::Member, Role::Member));
            assert!(admit(&OPEN, Some(&c), "s", None, None, 0).is_err());
        }
        // Dissolving: the owner.
        assert!(ok(&C::Dissolve, Role::Owner, Role::Member));
        assert!(!ok(&C::Dissolve, Role::Admin, Role::Member));
        // A dissolved group takes no change at all.
        let gone = GroupState {
            dissolved: true,
            ..OPEN
        };
        for c in [
            C::Join("t".into()),
            leave_self,
            C::Rename("n".into()),
            C::Dissolve,
        ] {
            assert_eq!(
                admit(&gone, Some(&c), "s", st(Role::Owner), st(Role::Member), 0),
                Err(Refusal::Dissolved)
            );
        }
    }

    #[test]
    fn moderators_from_a_record() {
        let g = GroupRecord {
            gid: "g".into(),
            owner: "o".into(),
            members: vec!["o".into(), "a".into(), "m".into()],
            admins: vec!["a".into(), "gone".into()],
            mutes: vec![("m".into(), 9)],
            ..GroupRecord::default()
        };
        assert!(can_moderate(&g, "o") && can_moderate(&g, "a"));
        assert!(!can_moderate(&g, "m") && !can_moderate(&g, "gone"));
        assert_eq!(standing_in(&g, "m").unwrap().muted_until, Some(9));
        assert_eq!(standing_in(&g, "x"), None);
    }

    #[test]
    fn recalls_by_rank() {
        assert!(may_recall_any(st(Role::Owner), st(Role::Admin)));
        assert!(may_recall_any(st(Role::Admin), st(Role::Member)));
        assert!(may_recall_any(st(Role::Admin), None));
        assert!(!may_recall_any(st(Role::Admin), st(Role::Admin)));
        assert!(!may_recall_any(st(Role::Admin), st(Role::Owner)));
        assert!(!may_recall_any(st(Role::Member), st(Role::Member)));
        assert!(!may_recall_any(None, st(Role::Member)));
    }
}
