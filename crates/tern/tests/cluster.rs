//! Cluster mode end to end: real `tern serve` processes sharing the
//! machine's PostgreSQL (or MariaDB), Redis and NATS, with the two sides of
//! every feature on different nodes.
//!
//! Each test gets its own cluster name (its own Redis keys, JetStream
//! stream and subjects) and its own fresh schema or database, so tests run
//! in parallel without seeing each other. Without a service the tests are
//! skipped with a message, except under CI (`CI` set), where a missing
//! service fails the run.

mod cluster_harness;
#[path = "../../tern-server/tests/it/common.rs"]
#[allow(dead_code)]
mod common;
mod support;
// 5.4 and blocks
#[path = "cluster/moderation.rs"]
mod moderation;
// 5.1
#[path = "cluster/edits.rs"]
mod edits;
// 5.2
#[path = "cluster/search.rs"]
mod search;
// 5.3
#[path = "cluster/settings.rs"]
mod settings;
// 5.5
#[path = "cluster/media.rs"]
mod media;
// 5.6
#[path = "cluster/retention.rs"]
mod retention;
#[path = "cluster/scheduled.rs"]
mod scheduled;
#[path = "cluster/webhooks.rs"]
mod webhooks;
// 5.5 offline push
#[path = "cluster/push.rs"]
mod push;

use cluster_harness::*;
use common::{dm, seqs, Client};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

use std::time::Duration;
use support::{Tern, WAIT};

// ----- the tests -----

/// 1:1 messaging with each party on its own node: push, ack and delivered
/// receipt, read receipt to the reader's other device, the sender's other
/// device, typing, recall, delete, sync and history from a third node,
/// presence of friends, and same-device replacement across nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_across_nodes() {
    let Some(c) = Cluster::start(Sql::Postgres, 3, &[]).await else {
        return;
    };
    let (n0, n1, n2) = (c.node(0), c.node(1), c.node(2));
    let a = n0.user("alice").await;
    let b = n1.user("bob").await;

    // Friends, then presence: bob online on node 1 sees alice arrive on node 0.
    for (node, tok, other) in [(n0, &a, "bob"), (n1, &b, "alice")] {
        let (st, _) = node
            .call(
                reqwest::Method::PUT,
                &format!("/v1/friends/{other}"),
                Some(tok),
                None,
            )
            .await;
        assert_eq!(st, 200);
    }
    let mut bob = connect(n1, &b, "phone").await;
    let mut alice = connect(n0, &a, "laptop").await;
    let p = bob.next_of("presence").await;
    assert_eq!(
        (p["user"].as_str(), p["online"].as_bool()),
        (Some("alice"), Some(true))
    );
    let mut alice_tab = connect(n2, &a, "tablet").await;
    assert!(is_online(n2, &b, "alice").await);

    // Send on node 0, delivered on node 1 and to alice's tablet on node 2.
    let ok = alice.send_text("bob", "m1", "hello").await;
    let conv = dm("alice", "bob");
    assert_eq!(
        (ok["conv"].as_str(), ok["seq"].as_u64()),
        (Some(conv.as_str()), Some(1))
    );
    let m = bob.next_msg().await;
    assert_eq!(
        (m["seq"].as_u64(), m["content"].as_str()),
        (Some(1), Some("hello"))
    );
    assert_eq!(m["msg_id"], ok["msg_id"]);
    assert_eq!(alice_tab.next_msg().await["msg_id"], ok["msg_id"]);

    // Ack on node 1: the delivered receipt reaches both of alice's devices.
    bob.send(json!({"type": "ack", "conv": conv, "seq": 1}))
        .await;
    for d in [&mut alice, &mut alice_tab] {
        let r = d.next_of("receipt").await;
        assert_eq!(
            (r["by"].as_str(), r["delivered_seq"].as_u64()),
            (Some("bob"), Some(1))
        );
    }
    // Read on node 1: alice's devices get the read receipt.
    bob.ok(json!({"type": "read", "conv": conv, "seq": 1}))
        .await;
    let r = alice_tab.next_of("receipt").await;
    assert_eq!(r["read_seq"].as_u64(), Some(1));

    // Typing crosses nodes; recall too.
    alice.send(json!({"type": "typing", "conv": conv})).await;
    let t = bob.next_of("typing").await;
    assert_eq!(t["user"], "alice");
    alice.send_text("bob", "m2", "oops").await;
    assert_eq!(bob.next_msg().await["seq"], 2);
    alice
        .ok(json!({"type": "recall", "conv": conv, "seq": 2}))
        .await;
    let r = bob.next_of("recalled").await;
    assert_eq!(
        (r["seq"].as_u64(), r["by"].as_str()),
        (Some(2), Some("alice"))
    );

    // Bob replies from node 1; delete-for-me, sync and history on node 2.
    bob.send_text("alice", "r1", "hi").await;
    assert_eq!(alice.next_msg().await["seq"], 3);
    bob.ok(json!({"type": "delete", "conv": conv, "seqs": [1]}))
        .await;
    let h = history(n2, &b, &conv).await;
    assert_eq!(seqs(&h), vec![2, 3]);
    assert_eq!(h[0]["recalled"], true);
    let h = history(n2, &a, &conv).await;
    assert_eq!(seqs(&h), vec![1, 2, 3]);
    let (st, s) = n2.get("/v1/conversations", &a).await;
    assert_eq!(st, 200);
    assert_eq!(s["convs"][0]["max_seq"], 3);
    assert_eq!(s["total_unread"], 1, "{s}");

    // The same device logging in on another node replaces the old one.
    let mut bob2 = connect(n2, &b, "phone").await;
    assert_eq!(bob.closed_with().await, 4009);
    alice.send_text("bob", "m3", "still there?").await;
    assert_eq!(bob2.next_msg().await["seq"], 4);

    // Last device gone: bob's friend alice is told, on another node.
    bob2.close().await;
    let p = alice.next_of("presence").await;
    assert_eq!(
        (p["user"].as_str(), p["online"].as_bool()),
        (Some("bob"), Some(false))
    );
    assert!(!is_online(n0, &a, "bob").await);
}

/// Groups with members on different nodes: creation and system messages,
/// sends, adding a member on one node and removing on another (the removed
/// member gets the removal and nothing after), in both diffusion tiers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_across_nodes() {
    // A write limit of 3: the group starts write-diffused and becomes
    // read-diffused when the fourth member joins.
    let Some(c) = Cluster::start(Sql::Postgres, 3, &[("TERN_GROUPS__WRITE_LIMIT", "3")]).await
    else {
        return;
    };
    let names = ["ann", "ben", "cat", "dan"];
    let mut tokens = HashMap::new();
    for (i, u) in names.iter().enumerate() {
        tokens.insert(*u, c.node(i).user(u).await);
    }
    let mut devs = Vec::new();
    for (i, u) in names.iter().enumerate() {
        devs.push(connect(c.node(i), &tokens[u], "d").await);
    }
    let gid = new_group(c.node(0), &tokens["ann"], &["ben", "cat"]).await;
    let conv = format!("group:{gid}");
    // ben (node 1) and cat (node 2) see the system messages in order.
    for d in &mut devs[1..3] {
        let mut got = Vec::new();
        while got.len() < 3 {
            let m = d.next_msg().await;
            got.push((
                m["seq"].as_u64().unwrap(),
                m["kind"].as_str().unwrap().to_owned(),
            ));
        }
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(got.iter().all(|g| g.1 == "system"));
    }
    // A send from node 2 reaches node 0 and node 1 (write diffusion: `msg`).
    devs[2].send_group(&gid, "c1", "from cat").await;
    for i in [0, 1] {
        let m = msg_from(&mut devs[i], "cat").await;
        assert_eq!(m["seq"].as_u64(), Some(4));
    }
    // dan is added on node 1: now 4 members, read diffusion.
    let (st, b) = c
        .node(1)
        .call(
            reqwest::Method::POST,
            &format!("/v1/groups/{gid}/members"),
            Some(&tokens["ben"]),
            Some(json!({"users": ["dan"]})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["size"], 4);
    let joined = devs[3].next_msg().await;
    assert_eq!(joined["seq"], 5);
    devs[0].send_group(&gid, "a1", "hello dan").await;
    // Every member but the sender gets seq 6, on three nodes.
    for i in [1, 2, 3] {
        let m = loop {
            let m = devs[i].next_msg().await;
            if m["seq"] == 6 {
                break m;
            }
        };
        assert_eq!(m["from"], "ann");
    }
    // ann (owner, node 0) removes cat (node 2) through node 2's HTTP API.
    let (st, _) = c
        .node(2)
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/groups/{gid}/members/cat"),
            Some(&tokens["ann"]),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let removed = loop {
        let m = devs[2].next_msg().await;
        if m["content"]["event"] == "member_removed" {
            break m;
        }
    };
    assert_eq!(removed["content"]["user"], "cat");
    devs[1].send_group(&gid, "b1", "after cat").await;
    let m = loop {
        let m = devs[3].next_msg().await;
        if m["from"] == "ben" {
            break m;
        }
    };
    assert_eq!(m["seq"], 8);
    devs[2].quiet(Duration::from_millis(700)).await;
    // History on any node: gap-free.
    let h = history(c.node(1), &tokens["dan"], &conv).await;
    assert_eq!(seqs(&h), (1..=8).collect::<Vec<u64>>());
    let (st, g) = c
        .node(2)
        .get(&format!("/v1/groups/{gid}"), &tokens["ben"])
        .await;
    assert_eq!((st, g["size"].as_u64()), (200, Some(3)));
}

/// Live rooms: a room message goes to members on every node, and each
/// device's delivery cap holds cluster-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_across_nodes() {
    let Some(c) = Cluster::start(Sql::Postgres, 3, &[("TERN_ROOMS__DELIVER_RATE", "5")]).await
    else {
        return;
    };
    let mut devs = Vec::new();
    for i in 0..3 {
        let u = format!("viewer{i}");
        let t = c.node(i).user(&u).await;
        let mut d = connect(c.node(i), &t, "d").await;
        d.ok(json!({"type": "join", "room": "launch"})).await;
        devs.push(d);
    }
    devs[0]
        .ok(json!({"type": "room_send", "room": "launch", "content": "hi"}))
        .await;
    for d in &mut devs[1..] {
        let m = d.next_of("room_msg").await;
        assert_eq!(
            (m["from"].as_str(), m["content"].as_str()),
            (Some("viewer0"), Some("hi"))
        );
    }
    devs[0].quiet(Duration::from_millis(300)).await;
    // Two senders on two nodes, 8 messages each: viewer2 gets at most its
    // cap of 5 in any second. (Deliveries happen while the sends go on and
    // up to a storm window after: count the seconds that spans.)
    let t0 = std::time::Instant::now();
    for i in 0..8 {
        for s in [0, 1] {
            let r = devs[s]
                .request(json!({"type": "room_send", "room": "launch", "content": i}))
                .await;
            assert_eq!(r["type"], "ok", "{r}");
        }
    }
    let seconds = (t0.elapsed().as_secs_f64() + 0.2).ceil() as usize;
    let got = devs[2].drain(Duration::from_millis(800)).await;
    let n = got.iter().filter(|f| f["type"] == "room_msg").count();
    assert!(
        (1..=5 * seconds).contains(&n),
        "viewer2 got {n} room messages over {seconds} s"
    );
    devs[1].drain(Duration::from_millis(100)).await;
    // Leaving on one node: the others still reach the rest.
    devs[1].ok(json!({"type": "leave", "room": "launch"})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    devs[2].drain(Duration::from_millis(200)).await;
    devs[0]
        .ok(json!({"type": "room_send", "room": "launch", "content": "bye"}))
        .await;
    assert_eq!(devs[2].next_of("room_msg").await["content"], "bye");
    devs[1].quiet(Duration::from_millis(500)).await;
}

/// Senders on every node write into one conversation and one group at
/// once: stored seqs are gap-free with no duplicate, and every device
/// receives each conversation's pushes in increasing seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_keep_order() {
    let Some(c) = Cluster::start(Sql::Postgres, 3, &[]).await else {
        return;
    };
    const PER: usize = 40;
    let a = c.node(0).user("amy").await;
    let b = c.node(1).user("bo").await;
    let gid = new_group(c.node(0), &a, &["bo"]).await;
    let gconv = format!("group:{gid}");
    let conv = dm("amy", "bo");
    // A listening device of each user on node 2. Its first push of each
    // conversation sets where its order starts.
    let mut listeners = vec![
        (connect(c.node(2), &a, "listen").await, "amy"),
        (connect(c.node(2), &b, "listen").await, "bo"),
    ];
    {
        let mut w = connect(c.node(0), &a, "warm").await;
        w.send_text("bo", "warm-d", "w").await;
        w.send_group(&gid, "warm-g", "w").await;
        for (l, _) in &mut listeners {
            assert_eq!(l.next_msg().await["conv"], conv);
            assert_eq!(l.next_msg().await["seq"], 3);
        }
    }
    // Four sending devices (two per user) on different nodes.
    let mut tasks = Vec::new();
    for (i, (tok, peer)) in [(&a, "bo"), (&b, "amy"), (&a, "bo"), (&b, "amy")]
        .into_iter()
        .enumerate()
    {
        let mut d = connect(c.node(i), tok, &format!("s{i}")).await;
        let (peer, gid) = (peer.to_owned(), gid.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..PER {
                d.send_text(&peer, &format!("d{i}-{k}"), "x").await;
                d.send_group(&gid, &format!("g{i}-{k}"), "y").await;
            }
            d
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Of each conversation a listener gets, in increasing seq order, every
    // message the other user sent (a push that arrives late from another
    // node is filled from the store before the one that overtook it).
    // Its own user's messages from other devices may skip (the client
    // fills such a gap from history).
    let total = 4 * PER;
    for (l, me) in &mut listeners {
        let mut last: HashMap<String, u64> = HashMap::new();
        let mut theirs: HashMap<String, usize> = HashMap::new();
        let want = total / 2;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while theirs.get(&conv).copied().unwrap_or(0) < want
            || theirs.get(&gconv).copied().unwrap_or(0) < want
        {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(f) = l.next_within(left).await else {
                panic!("{me}: got {theirs:?} of {want} per conversation");
            };
            if f["type"] != "msg" {
                continue;
            }
            let m = &f["msg"];
            let cv = m["conv"].as_str().unwrap().to_owned();
            let seq = m["seq"].as_u64().unwrap();
            let prev = last.insert(cv.clone(), seq).unwrap_or(0);
            assert!(seq > prev, "{me}: {cv} seq {seq} pushed after {prev}");
            if m["from"] != *me {
                *theirs.entry(cv).or_default() += 1;
            }
        }
    }
    let total = total + 1;
    // Storage: gap-free, no duplicate, every send stored once.
    let h = history(c.node(1), &a, &conv).await;
    assert_eq!(seqs(&h), (1..=total as u64).collect::<Vec<_>>());
    let cmids: BTreeSet<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["client_msg_id"].as_str().unwrap())
        .collect();
    assert_eq!(cmids.len(), total);
    let h = history(c.node(2), &b, &gconv).await;
    // Group: 2 system messages, then the sends.
    assert_eq!(seqs(&h), (1..=total as u64 + 2).collect::<Vec<_>>());
}

/// Group sends go through the conversation's owning node. Senders on the
/// two other nodes send to the group without pause (a send that fails is
/// retried with the same `client_msg_id`); the owner is killed (kill -9)
/// with forwards in flight. Every acknowledged message is stored exactly
/// once, seqs stay gap-free, and a listening member on a surviving node
/// gets the pushes in increasing seq order up to the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_killed_mid_stream_loses_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let Some(mut c) = Cluster::start(Sql::Postgres, 3, &[]).await else {
        return;
    };
    let users = ["ann", "bob", "cy"];
    let mut toks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        toks.push(c.node(i).user(u).await);
    }
    let dan = c.node(0).user("dan").await;
    let gid = new_group(c.node(0), &toks[0], &["bob", "cy", "dan"]).await;
    let conv = format!("group:{gid}");
    // Which node owns the group: one send through each node per round, and
    // the owner is the node that served the other two's forwards. A node
    // that started a moment ago may not see every other node live yet (it
    // then stores the send itself, or forwards elsewhere): rounds repeat
    // until all three agree.
    let served = "tern_forwards_served_total";
    let forwarded = "tern_forwards_total{result=\"ok\"}";
    let mut owner = None;
    for round in 0..40 {
        let mut before = Vec::new();
        for i in 0..3 {
            before.push((
                metric(c.node(i), served).await,
                metric(c.node(i), forwarded).await,
            ));
        }
        for (i, tok) in toks.iter().enumerate() {
            let mut d = connect(c.node(i), tok, "probe").await;
            d.send_group(&gid, &format!("probe{round}-{i}"), "p").await;
        }
        let mut delta = Vec::new();
        for (i, (s0, f0)) in before.iter().enumerate() {
            delta.push((
                metric(c.node(i), served).await - s0,
                metric(c.node(i), forwarded).await - f0,
            ));
        }
        let owners: Vec<usize> = (0..3).filter(|i| delta[*i] == (2, 0)).collect();
        let others_forwarded = (0..3).filter(|i| delta[*i] == (0, 1)).count();
        if owners.len() == 1 && others_forwarded == 2 {
            owner = Some(owners[0]);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let owner = owner.expect("the nodes agree on one owner, which serves the others' forwards");
    let live: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let mut listener = connect(c.node(live[0]), &dan, "listen").await;
    // Three sending devices on each surviving node.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (k, i) in live.iter().flat_map(|i| [*i; 3]).enumerate() {
        let mut d = connect(c.node(i), &toks[i], &format!("s{k}")).await;
        let (gid, stop) = (gid.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let cmid = format!("s{k}-{n}");
                for attempt in 0.. {
                    let r = d
                        .request(json!({"type": "send", "group": gid, "client_msg_id": cmid, "kind": "text", "content": "x"}))
                        .await;
                    if r["type"] == "ok" {
                        if attempt == 0 {
                            // Stored by this request (through the owner or
                            // here after a failed forward): not a retry.
                            assert_eq!(r["duplicate"], json!(null), "{cmid}: {r}");
                        }
                        acked.push((cmid, r["seq"].as_u64().unwrap()));
                        break;
                    }
                    assert_eq!(r["code"], "unavailable", "{cmid}: {r}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                n += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = metric(c.node(live[0]), "tern_forwards_total{result=\"ok\"}").await;
    assert!(before > 1, "sends were forwarded to the owner");
    c.nodes.remove(owner).kill9().await;
    // Past the owner's expiry (1.5 s): the survivors pick a new owner.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("sender stops")
                .unwrap(),
        );
    }
    let survivor = &c.nodes[0];
    let h = full_history(survivor, &dan, &conv).await;
    let total = h.len() as u64;
    let got: Vec<u64> = h.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, (1..=total).collect::<Vec<_>>(), "gap-free seqs");
    let mut by_cmid: HashMap<&str, u64> = HashMap::new();
    for m in &h {
        if let Some(cmid) = m["client_msg_id"].as_str() {
            let seq = m["seq"].as_u64().unwrap();
            assert!(by_cmid.insert(cmid, seq).is_none(), "{cmid} stored twice");
        }
    }
    for (cmid, seq) in &acked {
        assert_eq!(by_cmid.get(cmid.as_str()), Some(seq), "{cmid} acknowledged");
    }
    // The listener got every seq after its first push, in order.
    let mut seen = Vec::new();
    while seen.last() != Some(&total) {
        let Some(f) = listener.next_within(Duration::from_secs(20)).await else {
            panic!("listener got up to {:?} of {total}", seen.last());
        };
        if f["type"] == "msg" && f["msg"]["conv"] == conv {
            seen.push(f["msg"]["seq"].as_u64().unwrap());
        }
    }
    let first = seen[0];
    assert_eq!(seen, (first..=total).collect::<Vec<_>>(), "pushes in order");
    println!(
        "owner_killed_mid_stream: acknowledged={} stored={total} forwarded_before_kill={before} \
         appended_locally_after_failed_forward={}",
        acked.len(),
        metric(survivor, "tern_forwards_total{result=\"local\"}").await
            + metric(&c.nodes[1], "tern_forwards_total{result=\"local\"}").await,
    );
}

/// kill -9 of a node: its clients reconnect to another node and get every
/// acknowledged message (none twice after dedup by msg_id); its routes
/// and presence expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_loss() {
    node_loss_on(Sql::Postgres).await;
}

/// The same on MariaDB/MySQL (`deploy/cluster-mysql.toml`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_loss_mysql() {
    node_loss_on(Sql::MySql).await;
}

async fn node_loss_on(sql: Sql) {
    let Some(mut c) = Cluster::start(sql, 2, &[]).await else {
        return;
    };
    let extra = c.spawn(&[]).await;
    let a = c.node(0).user("ann").await;
    let b = c.node(1).user("bob").await;
    let mut ann = connect(c.node(0), &a, "d").await;
    let mut bob = connect(&extra, &b, "d").await;
    assert!(is_online(c.node(0), &a, "bob").await);
    let mut acked = Vec::new();
    for i in 0..20 {
        let ok = ann.send_text("bob", &format!("k{i}"), "x").await;
        acked.push(ok["msg_id"].as_str().unwrap().to_owned());
    }
    // Bob gets some live, then his node dies before he acks anything.
    let first = bob.next_msg().await;
    assert_eq!(first["seq"], 1);
    extra.kill9().await;
    assert_ne!(bob.closed_with().await, 1000);
    // His route and presence expire (expiry 1.5 s).
    eventually(
        Duration::from_secs(6),
        "bob offline after node loss",
        || async { !is_online(c.node(0), &a, "bob").await },
    )
    .await;
    // More messages while he is away.
    for i in 20..25 {
        let ok = ann.send_text("bob", &format!("k{i}"), "x").await;
        acked.push(ok["msg_id"].as_str().unwrap().to_owned());
    }
    // Bob reconnects to a surviving node and gets every acknowledged message.
    let (mut bob, offline) = connect_offline(c.node(1), &b, "d").await;
    let mut ids: Vec<String> = offline
        .iter()
        .map(|m| m["msg_id"].as_str().unwrap().to_owned())
        .collect();
    ids.dedup();
    assert_eq!(ids, acked);
    bob.send(json!({"type": "ack", "conv": dm("ann", "bob"), "seq": 25}))
        .await;
    bob.barrier().await;
    c.nodes.truncate(2);
}

/// A failed-login limit reached through one node holds on the other: the
/// buckets live in Redis, shared by the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_limits_hold_across_nodes() {
    let Some(c) =
        Cluster::start(Sql::Postgres, 2, &[("TERN_RATE__LOGIN_USER_FAILURES", "3")]).await
    else {
        return;
    };
    c.node(0).register("ann").await;
    c.node(0).register("bob").await;
    let wrong = json!({"user": "ann", "password": "not-her-password"});
    for _ in 0..3 {
        let (st, v) = c.node(0).post("/v1/sessions", wrong.clone()).await;
        assert_eq!(
            (st, v["code"].as_str()),
            (401, Some("bad_credentials")),
            "{v}"
        );
    }
    let r = c
        .node(1)
        .http
        .post(c.node(1).url("/v1/sessions"))
        .json(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "rate_limited");
    // Ann's account waits on both nodes; bob, from the same address, not.
    let (st, _) = c
        .node(1)
        .post(
            "/v1/sessions",
            json!({"user": "ann", "password": support::PASSWORD}),
        )
        .await;
    assert_eq!(st, 429);
    c.node(1).login("bob").await;
}

/// `DELETE /v1/sessions` on node 1 revokes the token cluster-wide: its
/// socket on node 2 closes with 4001, HTTP on node 3 gets 401, and a node
/// started afterwards refuses it too (from the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_refused_on_every_node() {
    let Some(c) = Cluster::start(Sql::Postgres, 3, &[]).await else {
        return;
    };
    let (n0, n1, n2) = (c.node(0), c.node(1), c.node(2));
    let t = n0.user("rita").await;
    let other = n0.login("rita").await;
    let mut phone = connect(n1, &t, "phone").await;
    let mut kept = connect(n1, &other, "tablet").await;
    assert_eq!(n2.get("/v1/friends", &t).await.0, 200);
    let (st, b) = n0
        .call(reqwest::Method::DELETE, "/v1/sessions", Some(&t), None)
        .await;
    assert_eq!(st, 204, "{b}");
    assert_eq!(phone.closed_with().await, 4001);
    // Node 3 may have started after node 1 last looked at the live nodes
    // (this cluster is a moment old): it then learns of the revocation
    // from the store once every node counts it live (cluster.expiry_ms).
    eventually(Duration::from_secs(10), "401 on node 3", || async {
        n2.get("/v1/friends", &t).await.0 == 401
    })
    .await;
    let (st, b) = n2.get("/v1/friends", &t).await;
    assert_eq!(
        (st, b["code"].as_str()),
        (401, Some("unauthenticated")),
        "{b}"
    );
    // A WebSocket auth with it fails on another node.
    let mut ws = Client::open(&format!("ws://{}/v1/ws", n2.addr)).await;
    let e = ws.request(json!({"type": "auth", "token": t})).await;
    assert_eq!(e["code"], "unauthenticated");
    assert_eq!(ws.closed_with().await, 4001);
    // The user's other token is untouched.
    assert_eq!(kept.request(json!({"type": "ping"})).await["type"], "pong");
    assert_eq!(n2.get("/v1/friends", &other).await.0, 200);
    // A node that was not there when it happened.
    let late = c.spawn(&[]).await;
    assert_eq!(late.get("/v1/friends", &t).await.0, 401);
    assert_eq!(late.get("/v1/friends", &other).await.0, 200);
}

/// kill -9 of one node of three while four users (on different nodes) send
/// continuously to each other and to their group, retrying with the same
/// `client_msg_id`: the killed node's users move to a surviving node, and
/// afterwards every acknowledged message is in history exactly once,
/// seqs are gap-free, and every application saw exactly the history, in
/// order (docs/RELIABILITY.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_kill_during_continuous_sends_loses_nothing() {
    use support::peer::{make_peers, resume_and_verify, Traffic};
    use support::relay::Relay;
    use tokio::sync::watch;

    let Some(mut c) = Cluster::start(Sql::Postgres, 3, &[]).await else {
        return;
    };
    // Peer i dials its own relay, which forwards to node i mod 3 (and,
    // once that node is dead, wherever the peer's application moves).
    let mut moves = Vec::new();
    let mut relays = Vec::new();
    for i in 0..4 {
        let (tx, rx) = watch::channel(c.node(i).addr);
        moves.push(tx);
        relays.push(Relay::start(rx).await);
    }
    let places = relays.iter().map(Relay::url).collect();
    let peers = make_peers(c.node(0), places, Duration::from_millis(10)).await;
    let traffic = Traffic::start(peers);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.nodes.remove(2).kill9().await;
    // Peer 2's application reconnects to a surviving node.
    moves[2].send(c.node(1).addr).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let peers = traffic.stop().await;
    let total = resume_and_verify(c.node(0), peers).await;
    println!("cluster_node_kill: nodes=3 killed=1 {}", total.line());
    assert!(total.acknowledged > 0);
}

/// Pushes lost between nodes (30% of what a node receives is dropped
/// unconfirmed) still reach the online device, without its help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_pushes_are_redelivered() {
    let Some(c) = Cluster::start(
        Sql::Postgres,
        2,
        &[("TERN_CLUSTER__DROP_INBOUND_PERCENT", "30")],
    )
    .await
    else {
        return;
    };
    let a = c.node(0).user("ann").await;
    let b = c.node(1).user("bob").await;
    let mut ann = connect(c.node(0), &a, "d").await;
    let mut bob = connect(c.node(1), &b, "d").await;
    // One at a time, so that a redelivered push cannot be overtaken (and
    // dropped as stale) by the next one.
    for i in 1..=20u64 {
        ann.send_text("bob", &format!("m{i}"), "x").await;
        let m = bob.next_msg().await;
        assert_eq!(m["seq"].as_u64(), Some(i));
    }
}

/// A backend that goes away. Redis: the node stores, delivers and answers
/// as before (`/healthz` says `degraded`, 200). The store: requests fail
/// fast with 503 `unavailable` and so does `/healthz`. Either way the node
/// stays up and recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_outage_and_recovery() {
    let Some(mut c) = Cluster::start(Sql::Postgres, 1, &[]).await else {
        return;
    };
    let redis = Proxy::start(&host_port(&env_or("TERN_TEST_REDIS_URL", REDIS_URL))).await;
    let store = Proxy::start(&host_port(&c.db.admin_url)).await;
    let store_url =
        c.db.url
            .replacen(&host_port(&c.db.admin_url), &store.addr, 1);
    let node = c
        .spawn(&[
            (
                "TERN_CLUSTER__REDIS_URL",
                &format!("redis://{}", redis.addr),
            ),
            ("TERN_STORE__URL", &store_url),
        ])
        .await;
    let t = node.user("ann").await;
    let (st, h) = healthz(&node).await;
    assert_eq!(st, 200, "{h}");
    assert_eq!(
        h["backends"],
        json!({"store": "ok", "redis": "ok", "bus": "ok"})
    );

    let bob = node.user("bob").await;
    let mut ws = connect(&node, &bob, "d").await;
    redis.cut();
    let started = std::time::Instant::now();
    let (st, h) = healthz(&node).await;
    assert_eq!(st, 200, "{h}");
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h.get("code").is_none(), "{h}");
    assert!(
        h["backends"]["redis"].as_str().unwrap().starts_with("down"),
        "{h}"
    );
    assert_eq!(h["backends"]["store"], "ok");
    let (st, live) = node.get("/livez", "").await;
    assert_eq!((st, live["status"].as_str()), (200, Some("ok")), "{live}");
    // Presence answers from this node's own connections.
    let (st, b) = node.get("/v1/users/bob", &t).await;
    assert_eq!((st, b["online"].as_bool()), (200, Some(true)), "{b}");
    // Sends are stored and pushed, rate limits hold per node.
    for i in 1..=3u64 {
        let (st, b) = node
            .call(
                reqwest::Method::POST,
                "/v1/messages",
                Some(&t),
                Some(json!({"to": "bob", "client_msg_id": format!("r{i}"), "kind": "text", "content": "x"})),
            )
            .await;
        assert_eq!((st, b["seq"].as_u64()), (200, Some(i)), "{b}");
        assert_eq!(ws.next_msg().await["seq"].as_u64(), Some(i));
    }
    // A connection made meanwhile is served.
    let late = connect(&node, &bob, "late").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    redis.restore();
    // The route of the connection made during the outage is written once
    // Redis answers again.
    let routes = format!("{}:r:bob", c.name);
    eventually(Duration::from_secs(15), "bob's routes written back", || {
        let routes = routes.clone();
        async move { redis_hlen(&routes).await == 2 }
    })
    .await;
    late.close().await;
    ws.close().await;
    eventually(
        Duration::from_secs(15),
        "healthz recovers after Redis",
        || async { healthz(&node).await.0 == 200 },
    )
    .await;

    store.cut();
    let (st, h) = healthz(&node).await;
    assert_eq!(st, 503, "{h}");
    assert!(
        h["backends"]["store"].as_str().unwrap().starts_with("down"),
        "{h}"
    );
    let (st, b) = node.get("/v1/conversations", &t).await;
    assert_eq!((st, b["code"].as_str()), (503, Some("unavailable")), "{b}");
    store.restore();
    eventually(
        Duration::from_secs(15),
        "healthz recovers after the store",
        || async { healthz(&node).await.0 == 200 },
    )
    .await;
    let (st, _) = node.get("/v1/conversations", &t).await;
    assert_eq!(st, 200);
    c.nodes.push(node);
}

/// Redis loses everything it held (a restart without persistence, a
/// failover to an empty replica, `FLUSHALL`): each node writes its routes
/// back within a few seconds, and a receiver that stayed connected gets
/// every later message, live or by the catch-up of what it missed, without
/// reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_its_data_loses_no_push() {
    let Some(redis) = OwnRedis::start().await else {
        return;
    };
    let Some(mut c) =
        Cluster::start(Sql::Postgres, 0, &[("TERN_CLUSTER__REDIS_URL", &redis.url)]).await
    else {
        return;
    };
    for _ in 0..2 {
        let n = c.spawn(&[]).await;
        c.nodes.push(n);
    }
    let a = c.node(0).user("ann").await;
    let b = c.node(1).user("bob").await;
    let mut ann = connect(c.node(0), &a, "d").await;
    let mut bob = connect(c.node(1), &b, "d").await;
    for i in 1..=3u64 {
        ann.send_text("bob", &format!("m{i}"), "x").await;
        assert_eq!(bob.next_msg().await["seq"].as_u64(), Some(i));
    }
    redis.command("FLUSHALL").await;
    // Sends go on being stored and acknowledged meanwhile.
    for i in 4..=30u64 {
        let ok = ann.send_text("bob", &format!("m{i}"), "x").await;
        assert_eq!(ok["seq"].as_u64(), Some(i), "{ok}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut got = Vec::new();
    while got.len() < 27 {
        got.push(bob.next_msg().await["seq"].as_u64().unwrap());
    }
    assert_eq!(got, (4..=30).collect::<Vec<u64>>());
    // And the pushes are live again: each arrives before the next is sent.
    for i in 31..=35u64 {
        ann.send_text("bob", &format!("m{i}"), "x").await;
        assert_eq!(bob.next_msg().await["seq"].as_u64(), Some(i));
    }
    assert!(is_online(c.node(0), &a, "bob").await);
}

/// On a three-server NATS cluster with the stream kept in three copies,
/// one NATS server killed under load loses nothing: every acknowledged
/// message reaches the receiver on the other node, live or by catch-up,
/// in order, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_lost_from_a_three_server_cluster_loses_nothing() {
    let Some(mut nats) = OwnNats::start(3).await else {
        return;
    };
    let urls = nats.urls.join(",");
    let env = [
        ("TERN_CLUSTER__NATS_URL", urls.as_str()),
        ("TERN_CLUSTER__STREAM_REPLICAS", "3"),
    ];
    let Some(mut c) = Cluster::start(Sql::Postgres, 0, &env).await else {
        return;
    };
    for _ in 0..2 {
        let n = c.spawn(&[]).await;
        c.nodes.push(n);
    }
    let a = c.node(0).user("ann").await;
    let b = c.node(1).user("bob").await;
    let mut ann = connect(c.node(0), &a, "d").await;
    let mut bob = connect(c.node(1), &b, "d").await;
    for i in 1..=10u64 {
        ann.send_text("bob", &format!("m{i}"), "x").await;
        assert_eq!(bob.next_msg().await["seq"].as_u64(), Some(i));
    }
    let (st, h) = healthz(c.node(0)).await;
    assert_eq!((st, h["status"].as_str()), (200, Some("ok")), "{h}");
    for i in 11..=60u64 {
        if i == 20 {
            nats.kill(0);
        }
        let ok = ann.send_text("bob", &format!("m{i}"), "x").await;
        assert_eq!(ok["seq"].as_u64(), Some(i), "{ok}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = Vec::new();
    while got.len() < 50 {
        got.push(bob.next_msg().await["seq"].as_u64().unwrap());
    }
    assert_eq!(got, (11..=60).collect::<Vec<u64>>());
    let all = full_history(c.node(1), &b, &dm("ann", "bob")).await;
    let seqs: Vec<u64> = all.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=60).collect::<Vec<u64>>());
}

/// The store goes away under an open WebSocket, refusing connections
/// (cut) and then answering nothing (stalled): a `send` is answered
/// `unavailable` within a few seconds (no hang), the socket stays open,
/// and once the store is back a retry on the same socket succeeds with the
/// next seq. History then holds each acknowledged message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_over_websocket() {
    let Some(mut c) = Cluster::start(Sql::Postgres, 1, &[]).await else {
        return;
    };
    let store = Proxy::start(&host_port(&c.db.admin_url)).await;
    let store_url =
        c.db.url
            .replacen(&host_port(&c.db.admin_url), &store.addr, 1);
    let node = c
        .spawn(&[
            ("TERN_STORE__URL", &store_url),
            ("TERN_HTTP__REQUEST_TIMEOUT_SECS", "2"),
        ])
        .await;
    let ann = node.user("ann").await;
    node.user("bob").await;
    let mut ws = connect(&node, &ann, "d").await;
    let r = ws.ok(text_to_bob("w1")).await;
    assert_eq!(r["seq"].as_u64(), Some(1), "{r}");

    store.cut();
    outage_then_retry(&mut ws, &store, "w2", 2).await;
    store.stall();
    outage_then_retry(&mut ws, &store, "w3", 3).await;
    let r = ws.ok(text_to_bob("w4")).await;
    assert_eq!(r["seq"].as_u64(), Some(4), "{r}");
    assert_eq!(ws.closed(), None);

    let h = full_history(&node, &ann, &dm("ann", "bob")).await;
    let ids: Vec<(u64, &str)> = h
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["client_msg_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        vec![(1, "w1"), (2, "w2"), (3, "w3"), (4, "w4")],
        "{h:?}"
    );
    c.nodes.push(node);
}

/// A text `send` of ann to bob, its content its client_msg_id.
fn text_to_bob(cmid: &str) -> Value {
    json!({"type": "send", "to": "bob", "client_msg_id": cmid, "kind": "text", "content": cmid})
}

/// With the store down: `send` of `cmid` is answered `unavailable` within
/// a few seconds and the socket is still served. Then the store is
/// restored, and the client retries the same message on the same socket
/// until it is stored, as seq `seq`; meanwhile every answer is
/// `unavailable`.
async fn outage_then_retry(ws: &mut Client, store: &Proxy, cmid: &str, seq: u64) {
    let started = std::time::Instant::now();
    let r = ws.request(text_to_bob(cmid)).await;
    let took = started.elapsed();
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{r}"
    );
    assert!(took < Duration::from_secs(6), "answered after {took:?}");
    ws.barrier().await;
    assert_eq!(ws.closed(), None);

    store.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let ok = loop {
        let r = ws.request(text_to_bob(cmid)).await;
        match (r["type"].as_str(), r["code"].as_str()) {
            (Some("ok"), _) => break r,
            (Some("error"), Some("unavailable")) => {}
            _ => panic!("retry of {cmid}: {r}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{cmid} not stored after the store came back: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ok["seq"].as_u64(), Some(seq), "{ok}");
}

/// Runs an admin command (`tern token`, `tern secret rotate`) against the
/// cluster's store, configured as its nodes are; its standard output.
async fn admin(c: &Cluster, args: &[&str]) -> String {
    let mut cmd = support::tern_cmd(args);
    cmd.env("TERN_STORE__URL", &c.db.url)
        .env(
            "TERN_CLUSTER__REDIS_URL",
            env_or("TERN_TEST_REDIS_URL", REDIS_URL),
        )
        .env(
            "TERN_CLUSTER__NATS_URL",
            env_or("TERN_TEST_NATS_URL", NATS_URL),
        )
        .env("TERN_CLUSTER__NAME", &c.name);
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("the admin command exits in time")
        .expect("run tern");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "tern {args:?}: {stdout} {stderr}");
    stdout.trim().to_owned()
}

/// The kid a token's header names.
fn kid_of(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).expect("a JWT").kid
}

/// Whether `token` is accepted by `node`.
async fn accepted(node: &Tern, token: &str) -> bool {
    let (st, b) = node.get("/v1/conversations", token).await;
    assert!(st == 200 || st == 401, "{st} {b}");
    st == 200
}

/// The signing keys live in the store, not in Redis: a cluster upgraded
/// from the days Redis held the secret carries that secret over as its
/// first key (tokens of before stay valid), and when Redis then loses its
/// data, a node started afterwards signs and verifies with the same key
/// as the nodes before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_its_data_keeps_the_token_secret() {
    let Some(redis) = OwnRedis::start().await else {
        return;
    };
    let Some(mut c) =
        Cluster::start(Sql::Postgres, 0, &[("TERN_CLUSTER__REDIS_URL", &redis.url)]).await
    else {
        return;
    };
    // The secret a cluster of before made in Redis.
    let former = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00112233445566778899aabbccddeeff";
    {
        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let () = redis::cmd("SET")
            .arg(format!("{}:secret", c.name))
            .arg(former)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let n0 = c.spawn(&[]).await;
    c.nodes.push(n0);
    let a = c.node(0).user("ann").await;
    assert_eq!(kid_of(&a).as_deref(), Some("1"));
    // A token of before: no kid, signed with the Redis secret.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let legacy = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({
            "sub": "ann",
            "exp": now + 3600,
            "iat": now,
            "jti": "0123456789abcdef0123456789abcdef",
        }),
        &jsonwebtoken::EncodingKey::from_secret(former.as_bytes()),
    )
    .unwrap();
    assert!(accepted(c.node(0), &legacy).await);

    redis.command("FLUSHALL").await;
    let n1 = c.spawn(&[]).await;
    c.nodes.push(n1);
    let b = c.node(1).user("bob").await;
    assert_eq!(kid_of(&b).as_deref(), Some("1"));
    for t in [&a, &b, &legacy] {
        assert!(accepted(c.node(0), t).await, "refused on node 0");
        assert!(accepted(c.node(1), t).await, "refused on node 1");
    }
}

/// `tern secret rotate` while the nodes run: a token from before still
/// works on every node; a token made after carries the new kid and works
/// on every node at once (a node reads the keys again when a token names
/// a kid it does not know).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_rotation_while_nodes_run() {
    let Some(c) = Cluster::start(Sql::Postgres, 2, &[]).await else {
        return;
    };
    let before = c.node(0).user("ann").await;
    assert_eq!(kid_of(&before).as_deref(), Some("1"));
    assert_eq!(admin(&c, &["secret", "rotate"]).await, "new signing key 2");
    let after = admin(&c, &["token", "ann"]).await;
    assert_eq!(kid_of(&after).as_deref(), Some("2"));
    for i in 0..2 {
        assert!(
            accepted(c.node(i), &before).await,
            "old token refused on {i}"
        );
        assert!(
            accepted(c.node(i), &after).await,
            "new token refused on {i}"
        );
    }
}

/// The same story on MariaDB/MySQL: messages and a group across two nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cluster() {
    let Some(c) = Cluster::start(Sql::MySql, 2, &[]).await else {
        return;
    };
    let a = c.node(0).user("ann").await;
    let b = c.node(1).user("bob").await;
    let mut ann = connect(c.node(0), &a, "d").await;
    let mut bob = connect(c.node(1), &b, "d").await;
    for i in 1..=5u64 {
        ann.send_text("bob", &format!("m{i}"), "x").await;
        assert_eq!(bob.next_msg().await["seq"].as_u64(), Some(i));
    }
    let gid = new_group(c.node(1), &b, &["ann"]).await;
    let m = ann.next_msg().await;
    assert_eq!(m["conv"], format!("group:{gid}"));
    ann.next_msg().await;
    ann.send_group(&gid, "g1", "hi").await;
    assert_eq!(msg_from(&mut bob, "ann").await["seq"], 3);
    let h = history(c.node(0), &b, &dm("ann", "bob")).await;
    assert_eq!(seqs(&h), vec![1, 2, 3, 4, 5]);
}

// ----- a TCP proxy that can cut a backend off -----

#[test]
fn urls_split_into_host_and_port() {
    assert_eq!(host_port(PG_URL), "127.0.0.1:5432");
    assert_eq!(host_port("redis://127.0.0.1:6379"), "127.0.0.1:6379");
    assert_eq!(host_port("postgres://u:p@db:5432/x?options=-c"), "db:5432");
    let _ = WAIT;
}
