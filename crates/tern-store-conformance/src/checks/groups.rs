//! Groups: creation, joins and refusals, unread and view bounds around
//! membership, diffusion, owner hand-over, versions, all-or-nothing units.

use super::*;

// ----- groups -----

pub async fn group_create_join_and_refusals(s: &dyn Store) {
    let g = group_conv("team");
    assert_eq!(s.get_group("team").await.unwrap(), None);
    let created = send(s, create("team", "ann", 100)).await;
    assert_eq!(
        (created.seq, created.group.as_deref(), created.kind.as_str()),
        (1, Some("team"), "system")
    );
    assert_eq!(
        s.get_group("team").await.unwrap(),
        Some(GroupRecord {
            gid: "team".into(),
            name: "team name".into(),
            owner: "ann".into(),
            members: vec!["ann".into()],
            created_at: 100,
            ..GroupRecord::default()
        })
    );
    assert_eq!(send(s, join("team", "ann", "bob", 110)).await.seq, 2);
    assert_eq!(send(s, join("team", "ann", "cat", 120)).await.seq, 3);
    let rec = s.get_group("team").await.unwrap().unwrap();
    assert_eq!(rec.members, vec!["ann", "bob", "cat"]);
    assert_eq!(rec.owner, "ann");

    // Not a member: refused, nothing stored.
    assert_eq!(
        append_one(s, gmsg("team", "dan", 130, "d1")).await,
        Appended::Refused(Refusal::NotMember)
    );
    assert_eq!(
        append_one(s, gmsg("nope", "ann", 130, "n1")).await,
        Appended::Refused(Refusal::NoSuchGroup)
    );
    assert_eq!(
        append_one(s, join("nope", "ann", "bob", 130)).await,
        Appended::Refused(Refusal::NoSuchGroup)
    );
    assert_eq!(s.max_seq(&g).await.unwrap(), 3);
    assert_eq!(s.max_seq(&group_conv("nope")).await.unwrap(), 0);
    assert_eq!(s.get_group("nope").await.unwrap(), None);
    // A refused message's client_msg_id stays unused.
    let m = append_one(s, gmsg("team", "bob", 140, "d1")).await;
    assert!(matches!(&m, Appended::New(m) if m.seq == 4), "{m:?}");

    // A refusal inside a batch leaves the rest of the batch alone.
    let out = append(
        s,
        vec![
            gmsg("team", "cat", 150, "c1"),
            gmsg("team", "dan", 151, "d2"),
            gmsg("team", "ann", 152, "a1"),
        ],
    )
    .await;
    assert_eq!(out[1], Appended::Refused(Refusal::NotMember));
    assert_eq!(
        out.iter()
            .map(|a| a.message().map(|m| m.seq))
            .collect::<Vec<_>>(),
        vec![Some(5), None, Some(6)]
    );

    assert_err!(s.history("dan", &g, all()).await, StoreError::NotMember);
    assert_eq!(
        history_seqs(s, "ann", &g, all()).await,
        vec![1, 2, 3, 4, 5, 6]
    );
    // ann's own sends put her at 6; bob sent 4 after joining at 2; cat
    // sent 5 after joining at 3.
    assert_eq!(
        s.read_positions(&g).await.unwrap(),
        vec![
            ("ann".to_owned(), 6),
            ("bob".to_owned(), 4),
            ("cat".to_owned(), 5)
        ]
    );
}

pub async fn group_unread_starts_at_join(s: &dyn Store) {
    let g = group_conv("team");
    send(s, create("team", "ann", 100)).await;
    send(s, gmsg("team", "ann", 110, "a1")).await;
    send(s, gmsg("team", "ann", 120, "a2")).await;
    assert_eq!(send(s, join("team", "ann", "bob", 130)).await.seq, 4);
    send(s, gmsg("team", "ann", 140, "a3")).await;

    // bob did not see 1..3; his join message and later ones are unread.
    let l = convs(s, "bob").await;
    assert_eq!(conv_ids(&l), vec![g.as_str()]);
    let c = &l.convs[0];
    assert_eq!(
        (c.peer.as_deref(), c.group.as_deref()),
        (None, Some("team"))
    );
    assert_eq!(
        (c.max_seq, c.read_seq, c.unread, c.updated_at),
        (5, 3, 2, 140)
    );
    assert_eq!(
        c.last.as_ref().map(|m| (m.seq, m.from.as_str())),
        Some((5, "ann"))
    );
    assert_eq!(l.total_unread, 2);
    let l = convs(s, "ann").await;
    assert_eq!(
        (l.convs[0].read_seq, l.convs[0].unread, l.total_unread),
        (5, 0, 0)
    );
    assert_eq!(
        s.read_positions(&g).await.unwrap(),
        vec![("ann".to_owned(), 5), ("bob".to_owned(), 3)]
    );

    assert_eq!(
        s.mark_read("bob", &g, 5, 200).await.unwrap(),
        ReadOutcome {
            advanced: true,
            read_seq: 5
        }
    );
    assert_eq!(convs(s, "bob").await.total_unread, 0);
    assert_eq!(
        s.read_positions(&g).await.unwrap(),
        vec![("ann".to_owned(), 5), ("bob".to_owned(), 5)]
    );
}

pub async fn group_leave_bounds_view(s: &dyn Store) {
    let g = group_conv("team");
    send(s, diffused(create("team", "ann", 100))).await;
    send(s, diffused(join("team", "ann", "bob", 110))).await;
    send(s, diffused(join("team", "ann", "cat", 120))).await;
    send(s, diffused(gmsg("team", "bob", 130, "b1"))).await;
    assert_eq!(
        send(s, diffused(leave("team", "ann", "cat", 140)))
            .await
            .seq,
        5
    );
    send(s, diffused(gmsg("team", "ann", 150, "a1"))).await;
    send(s, diffused(gmsg("team", "bob", 160, "b2"))).await;

    let rec = s.get_group("team").await.unwrap().unwrap();
    assert_eq!(
        (rec.owner.as_str(), rec.members),
        ("ann", vec!["ann".to_owned(), "bob".to_owned()])
    );
    assert_eq!(
        s.read_positions(&g).await.unwrap(),
        vec![("ann".to_owned(), 6), ("bob".to_owned(), 7)]
    );

    // Write diffusion: members but the sender; a joiner gets their join
    // message, a removed member their removal message and nothing after.
    assert_eq!(queue_seqs(s, "ann", &g).await, vec![4, 7]);
    assert_eq!(queue_seqs(s, "bob", &g).await, vec![2, 3, 5, 6]);
    assert_eq!(queue_seqs(s, "cat", &g).await, vec![3, 4, 5]);

    // cat's view ends at the removal message.
    assert_eq!(history_seqs(s, "cat", &g, all()).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(
        history_seqs(s, "cat", &g, page(None, Some(3), 10)).await,
        vec![4, 5]
    );
    assert_eq!(
        history_seqs(s, "cat", &g, page(None, None, 2)).await,
        vec![4, 5]
    );
    assert_eq!(
        history_seqs(s, "cat", &g, page(Some(7), None, 10)).await,
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        history_seqs(s, "bob", &g, all()).await,
        vec![1, 2, 3, 4, 5, 6, 7]
    );
    let l = convs(s, "cat").await;
    let c = &l.convs[0];
    assert_eq!(
        (c.max_seq, c.read_seq, c.unread, c.updated_at),
        (5, 2, 3, 140)
    );
    assert_eq!(c.last.as_ref().map(|m| m.seq), Some(5));
    assert_eq!(l.total_unread, 3);

    // No longer a member.
    assert_eq!(
        append_one(s, gmsg("team", "cat", 170, "c1")).await,
        Appended::Refused(Refusal::NotMember)
    );
    assert_eq!(s.max_seq(&g).await.unwrap(), 7);
    // Reading past the end stops at the removal.
    assert_eq!(
        s.mark_read("cat", &g, 7, 200).await.unwrap(),
        ReadOutcome {
            advanced: true,
            read_seq: 5
        }
    );
    assert_eq!(convs(s, "cat").await.total_unread, 0);
}

pub async fn group_diffusion_threshold(s: &dyn Store) {
    let g = group_conv("team");
    let up_to = |m: NewMessage, n: usize| NewMessage {
        inbox_members_up_to: n,
        ..m
    };
    send(s, up_to(create("team", "ann", 100), 3)).await;
    send(s, up_to(join("team", "ann", "bob", 110), 3)).await;
    send(s, up_to(join("team", "ann", "cat", 120), 3)).await;
    // 3 members, at most 3: write diffusion.
    send(s, up_to(gmsg("team", "ann", 130, "a1"), 3)).await;
    // 3 members, at most 2: read diffusion, nobody queued.
    send(s, up_to(gmsg("team", "ann", 140, "a2"), 2)).await;
    send(s, up_to(gmsg("team", "bob", 150, "b1"), 0)).await;
    assert_eq!(queue_seqs(s, "bob", &g).await, vec![2, 3, 4]);
    assert_eq!(queue_seqs(s, "cat", &g).await, vec![3, 4]);
    assert_eq!(queue_seqs(s, "ann", &g).await, Vec::<u64>::new());
    // Read diffusion still counts as unread.
    assert_eq!(convs(s, "cat").await.total_unread, 4);
}

pub async fn group_owner_transfer(s: &dyn Store) {
    let g = group_conv("team");
    send(s, create("team", "ann", 100)).await;
    send(s, join("team", "ann", "bob", 110)).await;
    send(s, join("team", "ann", "cat", 120)).await;
    let members = |r: GroupRecord| (r.owner, r.members);
    let strs = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();

    // The owner leaves: the longest-standing member takes over.
    send(s, leave("team", "ann", "ann", 130)).await;
    assert_eq!(
        members(s.get_group("team").await.unwrap().unwrap()),
        ("bob".into(), strs(&["bob", "cat"]))
    );
    assert_eq!(
        append_one(s, gmsg("team", "ann", 135, "a0")).await,
        Appended::Refused(Refusal::NotMember)
    );

    // Re-added, ann is the newest member.
    send(s, join("team", "bob", "ann", 140)).await;
    assert_eq!(
        members(s.get_group("team").await.unwrap().unwrap()),
        ("bob".into(), strs(&["bob", "cat", "ann"]))
    );
    assert_eq!(send(s, gmsg("team", "ann", 150, "a1")).await.seq, 6);

    send(s, leave("team", "bob", "bob", 160)).await;
    assert_eq!(
        members(s.get_group("team").await.unwrap().unwrap()),
        ("cat".into(), strs(&["cat", "ann"]))
    );

    // A member other than the owner leaving keeps the owner.
    assert_eq!(send(s, leave("team", "cat", "ann", 170)).await.seq, 8);
    assert_eq!(
        members(s.get_group("team").await.unwrap().unwrap()),
        ("cat".into(), strs(&["cat"]))
    );
    assert_eq!(
        s.read_positions(&g).await.unwrap(),
        vec![("cat".to_owned(), 8)]
    );
    // ann's view now ends at her second removal.
    send(s, gmsg("team", "cat", 180, "c1")).await;
    assert_eq!(
        history_seqs(s, "ann", &g, all()).await,
        (1..=8).collect::<Vec<u64>>()
    );
    assert_eq!(
        history_seqs(s, "cat", &g, all()).await,
        (1..=9).collect::<Vec<u64>>()
    );
}

pub async fn group_version_follows_changes(s: &dyn Store) {
    assert_eq!(s.group_version("vg").await.unwrap(), None);
    send(s, create("vg", "ann", 100)).await;
    assert_eq!(s.group_version("vg").await.unwrap(), Some(1));
    send(s, join("vg", "ann", "bob", 101)).await;
    send(s, gmsg("vg", "ann", 102, "v1")).await;
    assert_eq!(s.group_version("vg").await.unwrap(), Some(2));
    send(s, leave("vg", "ann", "bob", 103)).await;
    send(s, gmsg("vg", "ann", 104, "v2")).await;
    assert_eq!(s.group_version("vg").await.unwrap(), Some(4));
    // A refused message changes nothing.
    let refused = append_one(s, gmsg("vg", "bob", 105, "v3")).await;
    assert_eq!(refused, Appended::Refused(Refusal::NotMember));
    assert_eq!(s.group_version("vg").await.unwrap(), Some(4));
}

// ----- membership units -----

/// A group's creation with its first members, and members added, are one
/// unit each: all stored, or (when a user to add does not exist, the group
/// exists already, or is missing) nothing at all.
pub async fn group_units_are_all_or_nothing(s: &dyn Store) {
    for u in ["ann", "bob", "cat", "dan"] {
        s.create_user(user(u, 1)).await.unwrap();
    }
    let g = group_conv("unit");
    // A missing member: nothing of the creation is stored.
    let r = s
        .append_unit(vec![
            create("unit", "ann", 100),
            join("unit", "ann", "bob", 100),
            join("unit", "ann", "ghost", 100),
        ])
        .await;
    assert!(matches!(r, Err(StoreError::NoSuchUser)), "{r:?}");
    assert_eq!(s.get_group("unit").await.unwrap(), None);
    assert_eq!(s.group_version("unit").await.unwrap(), None);
    assert_eq!(s.max_seq(&g).await.unwrap(), 0);
    for u in ["ann", "bob"] {
        assert!(convs(s, u).await.convs.is_empty(), "{u} has a conversation");
        assert_eq!(queue(s, u).await, (vec![], false));
    }

    let made = s
        .append_unit(vec![
            diffused(create("unit", "ann", 110)),
            diffused(join("unit", "ann", "bob", 110)),
            diffused(join("unit", "ann", "cat", 110)),
        ])
        .await
        .unwrap();
    assert_eq!(made.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let rec = s.get_group("unit").await.unwrap().unwrap();
    assert_eq!(rec.members, ["ann", "bob", "cat"]);
    assert_eq!(s.group_version("unit").await.unwrap(), Some(3));
    // Each member's queue starts at their own join.
    assert_eq!(queue_seqs(s, "cat", &g).await, vec![3]);

    // Created again: refused, nothing changes.
    let r = s.append_unit(vec![create("unit", "bob", 120)]).await;
    assert!(matches!(r, Err(StoreError::Conflict)), "{r:?}");
    // Adding with one unknown user: none of them is added.
    let r = s
        .append_unit(vec![
            diffused(join("unit", "bob", "dan", 130)),
            diffused(join("unit", "bob", "nobody", 130)),
        ])
        .await;
    assert!(matches!(r, Err(StoreError::NoSuchUser)), "{r:?}");
    assert_eq!(s.max_seq(&g).await.unwrap(), 3);
    assert_eq!(
        s.get_group("unit").await.unwrap().unwrap().members,
        ["ann", "bob", "cat"]
    );
    assert!(convs(s, "dan").await.convs.is_empty());
    // A missing group: refused.
    let r = s.append_unit(vec![join("none", "bob", "dan", 140)]).await;
    assert!(matches!(r, Err(StoreError::NoSuchGroup)), "{r:?}");
    assert_eq!(s.get_group("none").await.unwrap(), None);

    // A unit beside ordinary messages in the same moment: both stored.
    let (unit, plain) = tokio::join!(
        s.append_unit(vec![diffused(join("unit", "bob", "dan", 150))]),
        s.append_messages(vec![dm("ann", "bob", 150, "beside")])
    );
    assert_eq!(unit.unwrap()[0].seq, 4);
    assert!(matches!(plain.unwrap()[0], Appended::New(_)));
    assert_eq!(
        s.get_group("unit").await.unwrap().unwrap().members,
        ["ann", "bob", "cat", "dan"]
    );
}
