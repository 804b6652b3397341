//! Scale, checked for correctness only (no timing assertions): a
//! 2,000-member group with 200 members online, and a live room with 1,000
//! joined connections.

use crate::common::*;
use crate::rooms::{check_capped, counter, until_marker};
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

/// Every online member gets every message exactly once and in order; the
/// offline ones see exact unread counts through `sync`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_2000_with_200_online() {
    let s = Server::start().await;
    let names: Vec<String> = (0..2000).map(|i| format!("m{i:04}")).collect();
    let tokens = s.users(&names).await;
    let first: Vec<&str> = names[1..1000].iter().map(String::as_str).collect();
    let rest: Vec<&str> = names[1000..].iter().map(String::as_str).collect();
    let gid = s.new_group(&tokens[0], "crowd", &first).await;
    let v = s.add_members(&tokens[0], &gid, &rest).await;
    assert_eq!(v.size, Some(2000));
    let conv = format!("group:{gid}");
    // group_created, then one member_joined per member.
    let base = 2000u64;

    // Every tenth member is online (owner included), one device each.
    let online: Vec<usize> = (0..2000).step_by(10).collect();
    let clients: Vec<Client> = stream::iter(&online)
        .map(|&i| {
            let (s, conv, token) = (&s, &conv, &tokens[i]);
            async move {
                let mut c = s.connect(token, "phone").await;
                // Members who joined while the group was small got their
                // queued join messages; acked, they are never repeated.
                c.ok(json!({"type":"ack","conv":conv,"seq":base})).await;
                c
            }
        })
        .buffered(16)
        .collect()
        .await;
    assert_eq!(clients.len(), 200);

    // Five members send from a second device, all at once.
    let per_sender = 20u64;
    let senders = [0usize, 10, 1234, 1500, 1999];
    let mut sends = Vec::new();
    for &i in &senders {
        let mut c = s.connect(&tokens[i], "desk").await;
        let gid = gid.clone();
        sends.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for k in 0..per_sender {
                let v = json!({"type":"send","group":gid,"client_msg_id":format!("{i}-{k}"),"kind":"text","content":format!("{i}/{k}")});
                ids.push(c.submit(v).await);
            }
            let mut out = Vec::new();
            for id in ids {
                let r = c.reply(&id).await;
                assert_eq!(r["type"], "ok", "{r}");
                out.push(r["msg_id"].as_str().unwrap().to_owned());
            }
            (c, out)
        }));
    }
    let mut expected = HashSet::new();
    let mut sender_conns = Vec::new();
    for t in sends {
        let (c, ids) = t.await.unwrap();
        expected.extend(ids);
        sender_conns.push(c);
    }
    let total = per_sender * senders.len() as u64;
    assert_eq!(expected.len() as u64, total);

    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let conv = conv.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while (got.len() as u64) < total {
                    let m = c.next_msg().await;
                    assert_eq!(m["conv"], conv.as_str());
                    got.push((
                        m["seq"].as_u64().unwrap(),
                        m["msg_id"].as_str().unwrap().to_owned(),
                    ));
                }
                // Nothing more: no repeats (read-diffusion pushes are
                // untracked, so none are due later either).
                let more = c.drain(Duration::from_millis(300)).await;
                assert!(more.iter().all(|f| f["type"] != "msg"), "{more:?}");
                got
            })
        })
        .collect();
    for r in readers {
        let got = r.await.unwrap();
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            (base + 1..=base + total).collect::<Vec<_>>(),
            "every message once, in seq order"
        );
        let ids: HashSet<String> = got.into_iter().map(|(_, id)| id).collect();
        assert_eq!(ids, expected);
    }

    // Offline members: unread = max_seq - read_seq, where a member's read
    // position starts just before their own join message (seq i + 1).
    let max = base + total;
    for i in [1usize, 499, 501, 1001, 1998] {
        let (st, v) = s.get("/v1/conversations", Some(&tokens[i])).await;
        assert_eq!(st, 200);
        let e = &v["convs"][0];
        let read = i as u64;
        assert_eq!(
            (
                e["conv"].as_str(),
                e["max_seq"].as_u64(),
                e["read_seq"].as_u64(),
                e["unread"].as_u64(),
                v["total_unread"].as_u64()
            ),
            (
                Some(&*conv),
                Some(max),
                Some(read),
                Some(max - read),
                Some(max - read)
            ),
            "member {i}"
        );
    }
    // A member who joined above the write limit has no offline queue and
    // catches up with history.
    let (mut c, (msgs, done)) = s.connect_offline(&tokens[1001], "phone").await;
    assert_eq!((msgs.len(), done["count"].as_u64()), (0, Some(0)));
    let h = c
        .ok(json!({"type":"history","conv":conv,"after_seq":base,"limit":500}))
        .await;
    assert_eq!(seqs(&h["msgs"]), (base + 1..=max).collect::<Vec<_>>());
    drop(sender_conns);
}

/// 1,000 joined connections and a burst beyond the cap: every member gets
/// the first `cap` messages and never more than `cap` in any second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_of_1000_connections_is_capped() {
    let cap = 20usize;
    let s = Server::start_with(|c| {
        c.rooms.deliver_rate = cap as u32;
        c.rooms.send_rate = 1000;
    })
    .await;
    // 50 users with 20 devices each.
    let names: Vec<String> = (0..50).map(|i| format!("v{i:02}")).collect();
    let tokens = s.users(&names).await;
    let slots: Vec<(usize, usize)> = (0..50).flat_map(|u| (0..20).map(move |d| (u, d))).collect();
    let members: Vec<Client> = stream::iter(slots)
        .map(|(u, d)| {
            let s = &s;
            let token = tokens[u].clone();
            async move {
                let mut c = s.connect(&token, &format!("d{d}")).await;
                c.ok(json!({"type":"join","room":"stage"})).await;
                c
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(members.len(), 1000);

    let host = s.user("host").await;
    let mut h = s.connect(&host, "studio").await;
    h.ok(json!({"type":"join","room":"stage"})).await;
    let dropped_before = counter(&s, "tern_room_dropped_total").await;
    let sent = 3 * cap;
    let mut ids = Vec::new();
    for i in 0..sent {
        ids.push(
            h.submit(json!({"type":"room_send","room":"stage","content":i}))
                .await,
        );
    }
    for id in ids {
        assert_eq!(h.reply(&id).await["type"], "ok");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.ok(json!({"type":"room_send","room":"stage","content":{"end":true}}))
        .await;

    let readers: Vec<_> = members
        .into_iter()
        .map(|mut c| tokio::spawn(async move { until_marker(&mut c).await }))
        .collect();
    let mut dropped = 0;
    for r in readers {
        let got = r.await.unwrap();
        check_capped(&got, sent, cap);
        dropped += sent - got.len();
    }
    let after = counter(&s, "tern_room_dropped_total").await;
    assert!(after - dropped_before >= dropped as f64);
}
