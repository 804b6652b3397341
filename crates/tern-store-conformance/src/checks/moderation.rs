//! 5.4 and blocks: roles and settings written with their `system`
//! messages and obeyed by the store as it appends (`tern_core::roles`),
//! dissolution, and blocks both ways.

use super::*;

fn change(gid: &str, actor: &str, ts: i64, c: MemberChange) -> NewMessage {
    gsys(gid, actor, ts, c)
}

fn admin(user: &str, on: bool) -> MemberChange {
    MemberChange::Admin {
        user: user.into(),
        on,
    }
}

fn mute(user: &str, until: Option<i64>) -> MemberChange {
    MemberChange::Mute {
        user: user.into(),
        until,
    }
}

pub async fn group_roles_and_settings(s: &dyn Store) {
    send(s, create("mod", "ann", 100)).await;
    for (u, ts) in [("bob", 101), ("cat", 102), ("dan", 103)] {
        send(s, join("mod", "ann", u, ts)).await;
    }
    let rec = s.get_group("mod").await.unwrap().unwrap();
    assert_eq!(
        (
            rec.admins.len(),
            rec.mutes.len(),
            rec.announcement.as_str(),
            rec.muted_all,
            rec.dissolved
        ),
        (0, 0, "", false, false)
    );
    // Only the owner makes admins.
    assert_eq!(
        append_one(s, change("mod", "bob", 110, admin("cat", true))).await,
        Appended::Refused(Refusal::Forbidden)
    );
    let v0 = s.group_version("mod").await.unwrap();
    let made = send(s, change("mod", "ann", 111, admin("bob", true))).await;
    assert_eq!(s.group_version("mod").await.unwrap(), Some(made.seq));
    assert!(Some(made.seq) > v0);
    // An admin mutes a plain member until 500; not the owner, not itself.
    send(s, change("mod", "bob", 120, mute("cat", Some(500)))).await;
    for refused in [
        mute("ann", Some(500)),
        mute("bob", Some(500)),
        admin("dan", true),
    ] {
        assert_eq!(
            append_one(s, change("mod", "bob", 121, refused.clone())).await,
            Appended::Refused(Refusal::Forbidden),
            "{refused:?}"
        );
    }
    // Removing the owner: refused; removing a plain member: fine.
    assert_eq!(
        append_one(s, leave("mod", "bob", "ann", 122)).await,
        Appended::Refused(Refusal::Forbidden)
    );
    assert_eq!(
        append_one(s, leave("mod", "cat", "dan", 122)).await,
        Appended::Refused(Refusal::Forbidden)
    );
    let rec = s.get_group("mod").await.unwrap().unwrap();
    assert_eq!(rec.admins, ["bob"]);
    assert_eq!(rec.mutes, [("cat".to_owned(), 500)]);
    assert!(tern_core::roles::can_moderate(&rec, "bob"));
    assert!(!tern_core::roles::can_moderate(&rec, "cat"));
    // The mute holds until its time, by the message's time.
    assert_eq!(
        append_one(s, gmsg("mod", "cat", 499, "m1")).await,
        Appended::Refused(Refusal::Muted)
    );
    send(s, gmsg("mod", "cat", 500, "m2")).await;
    send(s, change("mod", "bob", 501, mute("cat", Some(10_000)))).await;
    send(s, change("mod", "ann", 502, mute("cat", None))).await;
    send(s, gmsg("mod", "cat", 503, "m3")).await;

    // Settings: owner and admins.
    assert_eq!(
        append_one(
            s,
            change("mod", "cat", 510, MemberChange::Rename("x".into()))
        )
        .await,
        Appended::Refused(Refusal::Forbidden)
    );
    send(
        s,
        change("mod", "bob", 511, MemberChange::Rename("renamed".into())),
    )
    .await;
    send(
        s,
        change("mod", "bob", 512, MemberChange::Announce("rules".into())),
    )
    .await;
    send(s, change("mod", "bob", 513, MemberChange::MutedAll(true))).await;
    assert_eq!(
        append_one(s, gmsg("mod", "cat", 514, "m4")).await,
        Appended::Refused(Refusal::Muted)
    );
    send(s, gmsg("mod", "bob", 515, "m5")).await;
    send(s, gmsg("mod", "ann", 516, "m6")).await;
    let rec = s.get_group("mod").await.unwrap().unwrap();
    assert_eq!(
        (
            rec.name.as_str(),
            rec.announcement.as_str(),
            rec.muted_all,
            rec.mutes.len()
        ),
        ("renamed", "rules", true, 0)
    );
    send(s, change("mod", "ann", 517, admin("bob", false))).await;
    assert_eq!(
        append_one(s, gmsg("mod", "bob", 518, "m7")).await,
        Appended::Refused(Refusal::Muted)
    );
    assert!(s.get_group("mod").await.unwrap().unwrap().admins.is_empty());

    // A member who leaves and comes back starts plain again.
    send(s, change("mod", "ann", 520, admin("dan", true))).await;
    send(s, leave("mod", "dan", "dan", 521)).await;
    send(s, join("mod", "ann", "dan", 522)).await;
    assert!(s.get_group("mod").await.unwrap().unwrap().admins.is_empty());
}

pub async fn group_dissolve_freezes_the_group(s: &dyn Store) {
    let g = group_conv("dis");
    send(s, create("dis", "ann", 100)).await;
    send(s, join("dis", "ann", "bob", 101)).await;
    send(s, change("dis", "ann", 102, admin("bob", true))).await;
    send(s, gmsg("dis", "bob", 103, "d1")).await;
    assert_eq!(
        append_one(s, change("dis", "bob", 104, MemberChange::Dissolve)).await,
        Appended::Refused(Refusal::Forbidden)
    );
    let gone = send(s, change("dis", "ann", 105, MemberChange::Dissolve)).await;
    assert_eq!(s.group_version("dis").await.unwrap(), Some(gone.seq));
    let rec = s.get_group("dis").await.unwrap().unwrap();
    assert!(rec.dissolved);
    assert_eq!(rec.members, ["ann", "bob"]);
    for m in [
        gmsg("dis", "ann", 106, "d2"),
        gmsg("dis", "bob", 106, "d3"),
        join("dis", "ann", "cat", 106),
        leave("dis", "bob", "bob", 106),
        change("dis", "ann", 106, MemberChange::Rename("x".into())),
        change("dis", "ann", 106, MemberChange::Dissolve),
    ] {
        assert_eq!(
            append_one(s, m).await,
            Appended::Refused(Refusal::Dissolved)
        );
    }
    // A dissolved group no longer counts toward its members' groups.
    assert_eq!(s.group_count("bob").await.unwrap(), 0);
    s.create_user(user("cat", 1)).await.unwrap();
    assert_err!(
        s.append_unit(vec![join("dis", "ann", "cat", 107)]).await,
        StoreError::Forbidden(_)
    );
    // Still readable, to the end.
    assert_eq!(history_seqs(s, "bob", &g, all()).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(s.max_seq(&g).await.unwrap(), 5);
}

pub async fn blocks_both_ways(s: &dyn Store) {
    assert_eq!(s.blocks("ann").await.unwrap(), Blocks::default());
    assert!(!s.is_blocked("ann", "bob").await.unwrap());
    s.block("ann", "bob", 10).await.unwrap();
    s.block("ann", "bob", 11).await.unwrap();
    s.block("ann", "cat", 12).await.unwrap();
    s.block("cat", "ann", 13).await.unwrap();
    assert!(s.is_blocked("ann", "bob").await.unwrap());
    assert!(!s.is_blocked("bob", "ann").await.unwrap());
    assert_eq!(
        s.blocks("ann").await.unwrap(),
        Blocks {
            blocked: vec!["bob".into(), "cat".into()],
            blocked_by: vec!["cat".into()],
        }
    );
    assert_eq!(
        s.blocks("bob").await.unwrap(),
        Blocks {
            blocked: vec![],
            blocked_by: vec!["ann".into()],
        }
    );
    s.unblock("ann", "bob").await.unwrap();
    s.unblock("ann", "bob").await.unwrap();
    assert!(!s.is_blocked("ann", "bob").await.unwrap());
    assert_eq!(s.blocks("ann").await.unwrap().blocked, ["cat"]);
}
