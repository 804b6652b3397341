//! Groups (PROTOCOL.md 2.8, 3): management over HTTP, membership `system`
//! messages, group send, both diffusion tiers and the switch between them,
//! storm batching, `notify` for background devices, read positions and
//! `read_status`, removal.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn conv_of(gid: &str) -> String {
    format!("group:{gid}")
}

/// The `(event, user, from)` of a membership message.
fn event(m: &Value) -> (String, String, String) {
    assert_eq!(m["kind"], "system", "{m}");
    let c = &m["content"];
    (
        c["event"].as_str().unwrap().to_owned(),
        c["user"].as_str().unwrap().to_owned(),
        m["from"].as_str().unwrap().to_owned(),
    )
}

fn ev(e: &str, user: &str, from: &str) -> (String, String, String) {
    (e.to_owned(), user.to_owned(), from.to_owned())
}

/// The whole history of `conv` as `user` sees it.
async fn history(s: &Server, token: &str, conv: &str) -> Vec<Value> {
    match s
        .as_user(token)
        .messages(conv, None, Some(0), Some(500))
        .await
    {
        Ok(h) => h
            .msgs
            .iter()
            .map(|m| serde_json::to_value(m).unwrap())
            .collect(),
        Err(e) => panic!("history of {conv}: {e}"),
    }
}

/// The entry of `conv` in the user's `sync` answer, and `total_unread`.
async fn sync_entry(s: &Server, token: &str, conv: &str) -> (Value, u64) {
    let v = match s.as_user(token).conversations().await {
        Ok(v) => v,
        Err(e) => panic!("conversations: {e}"),
    };
    let entry = v
        .convs
        .iter()
        .find(|c| c.conv == conv)
        .map(|c| serde_json::to_value(c).unwrap())
        .unwrap_or(Value::Null);
    (entry, v.total_unread)
}

fn members(v: &Value) -> Vec<&str> {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn create_get_add_and_remove_over_http() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let td = s.user("dave").await;
    let te = s.user("erin").await;

    let (st, v) = s
        .post(
            "/v1/groups",
            Some(&ta),
            json!({"name":"Team","members":["bob","carol"]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let gid = v["group"].as_str().unwrap().to_owned();
    assert!(
        !gid.is_empty()
            && gid.len() <= 64
            && gid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
        "group id charset: {gid}"
    );
    assert_eq!(
        v,
        json!({"group":gid,"name":"Team","owner":"alice","members":["alice","bob","carol"],
               "admins":[],"announcement":"","muted_all":false,"mutes":{},"dissolved":false})
    );

    // Members only: others 403 not_member, unknown groups 404.
    let (st, v) = s.get(&format!("/v1/groups/{gid}"), Some(&tb)).await;
    assert_eq!(st, 200);
    assert_eq!(
        v,
        json!({"group":gid,"name":"Team","owner":"alice","members":["alice","bob","carol"],"size":3,
               "admins":[],"announcement":"","muted_all":false,"mutes":{},"dissolved":false})
    );
    let (st, v) = s.get(&format!("/v1/groups/{gid}"), Some(&td)).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")));
    let (st, v) = s.get("/v1/groups/nosuchgroup", Some(&ta)).await;
    assert_eq!((st, v["code"].as_str()), (404, Some("no_such_group")));
    let (st, v) = s.get(&format!("/v1/groups/{gid}"), None).await;
    assert_eq!((st, v["code"].as_str()), (401, Some("unauthenticated")));

    // Any member may add; non-members may not.
    let v = s.add_members(&tb, &gid, &["dave"]).await;
    assert_eq!(v.members, ["alice", "bob", "carol", "dave"]);
    assert_eq!((v.size, &*v.owner), (Some(4), "alice"));
    let (st, v) = s
        .post(
            &format!("/v1/groups/{gid}/members"),
            Some(&te),
            json!({"users":["erin"]}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")));

    // Only the owner removes others; anyone removes themself.
    let (st, v) = s
        .delete(&format!("/v1/groups/{gid}/members/dave"), Some(&tc))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")));
    let (st, v) = s
        .delete(&format!("/v1/groups/{gid}/members/bob"), Some(&te))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")));
    s.remove_member(&td, &gid, "dave").await;
    s.remove_member(&ta, &gid, "carol").await;
    // Removing someone who is not (or no longer) in the group.
    let (st, v) = s
        .delete(&format!("/v1/groups/{gid}/members/carol"), Some(&ta))
        .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("no_such_user")));
    let (st, v) = s
        .delete(&format!("/v1/groups/{gid}/members/bob"), Some(&tc))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")));
    let (_, v) = s.get(&format!("/v1/groups/{gid}"), Some(&ta)).await;
    assert_eq!(
        (members(&v), v["size"].as_u64()),
        (vec!["alice", "bob"], Some(2))
    );
    let (st, _) = s.get(&format!("/v1/groups/{gid}"), Some(&tc)).await;
    assert_eq!(st, 403, "a removed member is no longer a member");

    // Every change is a system message, in order, from the acting user.
    let h = history(&s, &tb, &conv_of(&gid)).await;
    assert_eq!(seqs(&json!(h)), (1..=6).collect::<Vec<_>>());
    let events: Vec<_> = h.iter().map(event).collect();
    assert_eq!(
        events,
        [
            ev("group_created", "alice", "alice"),
            ev("member_joined", "bob", "alice"),
            ev("member_joined", "carol", "alice"),
            ev("member_joined", "dave", "bob"),
            ev("member_left", "dave", "dave"),
            ev("member_removed", "carol", "alice"),
        ]
    );
    for m in &h {
        assert_eq!(
            (m["conv"].as_str(), m["group"].as_str()),
            (Some(&*conv_of(&gid)), Some(&*gid))
        );
        assert!(m.get("to").is_none() || m["to"].is_null(), "{m}");
    }
}

#[tokio::test]
async fn create_and_add_limits_and_errors() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    s.user("bob").await;
    s.user("carol").await;
    let post = |body: Value| {
        let s = &s;
        let ta = &ta;
        async move { s.post("/v1/groups", Some(ta), body).await }
    };
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let (st, v) = post(json!({"name":"big","members":many})).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")), "{v}");
    let (st, v) = post(json!({"name":"x","members":["bob","ghost"]})).await;
    assert_eq!((st, v["code"].as_str()), (404, Some("no_such_user")), "{v}");
    let (st, v) = post(json!({"name":"","members":["bob"]})).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
    let (st, v) = post(json!({"name":"n".repeat(129)})).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
    let (st, v) = post(json!({"members":["bob"]})).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
    let (st, v) = post(json!({"name":"x","members":"bob"})).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
    let (st, v) = s
        .post("/v1/groups", None, json!({"name":"x","members":[]}))
        .await;
    assert_eq!((st, v["code"].as_str()), (401, Some("unauthenticated")));
    // Refused creations left nothing behind.
    let (_, v) = s.get("/v1/conversations", Some(&ta)).await;
    assert_eq!(v["convs"], json!([]));

    // A group of one; the owner listed again and duplicates count once.
    let (st, v) = post(json!({"name":"solo","members":["alice"]})).await;
    assert_eq!((st, members(&v)), (201, vec!["alice"]));
    let (st, v) = post(json!({"name":"dups","members":["bob","bob","alice"]})).await;
    assert_eq!((st, members(&v)), (201, vec!["alice", "bob"]));
    let gid = v["group"].as_str().unwrap().to_owned();
    let h = history(&s, &ta, &conv_of(&gid)).await;
    assert_eq!(h.len(), 2, "group_created and one member_joined");

    // Adding: the same bounds; members already in are skipped silently.
    let path = format!("/v1/groups/{gid}/members");
    let (st, v) = s.post(&path, Some(&ta), json!({"users":many})).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
    let (st, v) = s
        .post(&path, Some(&ta), json!({"users":["carol","ghost"]}))
        .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("no_such_user")));
    let (st, v) = s.post(&path, Some(&ta), json!({"users":"carol"})).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
    let (st, v) = s
        .post(
            "/v1/groups/nosuchgroup/members",
            Some(&ta),
            json!({"users":["carol"]}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("no_such_group")));
    let v = s.add_members(&ta, &gid, &["bob", "alice"]).await;
    assert_eq!(v.members, ["alice", "bob"]);
    assert_eq!(
        history(&s, &ta, &conv_of(&gid)).await.len(),
        2,
        "nothing written"
    );
    let v = s.add_members(&ta, &gid, &["carol", "carol"]).await;
    assert_eq!(v.members, ["alice", "bob", "carol"]);
    assert_eq!(history(&s, &ta, &conv_of(&gid)).await.len(), 3);
}

#[tokio::test]
async fn group_size_is_bounded() {
    let s = Server::start_with(|c| {
        c.groups.max_size = 3;
        c.groups.write_limit = 3;
    })
    .await;
    let ta = s.user("alice").await;
    for u in ["bob", "carol", "dave"] {
        s.user(u).await;
    }
    let (st, v) = s
        .post(
            "/v1/groups",
            Some(&ta),
            json!({"name":"g","members":["bob","carol","dave"]}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
    let gid = s.new_group(&ta, "g", &["bob", "carol"]).await;
    let (st, v) = s
        .post(
            &format!("/v1/groups/{gid}/members"),
            Some(&ta),
            json!({"users":["dave"]}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));
}

#[tokio::test]
async fn owner_leaving_passes_ownership_to_the_longest_standing_member() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    s.user("dave").await;
    // Listed order is join order: carol has been in longer than bob.
    let gid = s.new_group(&ta, "g", &["carol", "bob"]).await;
    s.add_members(&tb, &gid, &["dave"]).await;
    s.remove_member(&ta, &gid, "alice").await;
    let (st, v) = s.get(&format!("/v1/groups/{gid}"), Some(&tb)).await;
    assert_eq!(st, 200);
    assert_eq!(
        (v["owner"].as_str(), members(&v)),
        (Some("carol"), vec!["carol", "bob", "dave"])
    );
    // The new owner's powers are real; the old owner's are gone.
    let (st, _) = s
        .delete(&format!("/v1/groups/{gid}/members/dave"), Some(&tb))
        .await;
    assert_eq!(st, 403);
    s.remove_member(&tc, &gid, "dave").await;
    let (st, v) = s
        .delete(&format!("/v1/groups/{gid}/members/bob"), Some(&ta))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")));
    let events: Vec<_> = history(&s, &tb, &conv_of(&gid))
        .await
        .iter()
        .map(event)
        .collect();
    assert_eq!(
        events[4..],
        [
            ev("member_left", "alice", "alice"),
            ev("member_removed", "dave", "carol"),
        ]
    );
}

/// Creation and additions are stored as one unit: every member online at
/// the time gets every message of the unit pushed, in seq order, including
/// the `group_created` and `member_joined` messages before their own join.
#[tokio::test]
async fn online_members_get_the_whole_creation_unit_pushed() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let td = s.user("dave").await;
    let mut b = s.connect(&tb, "b").await;
    let mut c = s.connect(&tc, "c").await;
    let mut d = s.connect(&td, "d").await;
    let gid = s.new_group(&ta, "g", &["bob", "carol"]).await;
    let want = [
        ev("group_created", "alice", "alice"),
        ev("member_joined", "bob", "alice"),
        ev("member_joined", "carol", "alice"),
    ];
    for cl in [&mut b, &mut c] {
        let mut got = Vec::new();
        for seq in 1..=3 {
            let m = cl.next_msg().await;
            assert_eq!(m["seq"].as_u64(), Some(seq), "{m}");
            got.push(event(&m));
        }
        assert_eq!(got, want);
    }
    // An addition is a unit too: dave gets his own join, the members theirs.
    s.add_members(&ta, &gid, &["dave"]).await;
    for cl in [&mut b, &mut c, &mut d] {
        let m = cl.next_msg().await;
        assert_eq!(m["seq"].as_u64(), Some(4), "{m}");
        assert_eq!(event(&m), ev("member_joined", "dave", "alice"));
    }
    d.quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn group_send_reaches_every_member_device_but_the_sending_one() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let td = s.user("dave").await;
    let gid = s.new_group(&ta, "g", &["bob", "carol"]).await;
    let conv = conv_of(&gid);
    let mut a_phone = s.connect(&ta, "phone").await;
    let mut a_laptop = s.connect(&ta, "laptop").await;
    let mut b = s.connect(&tb, "b").await;
    let mut c = s.connect(&tc, "c").await;
    let mut d = s.connect(&td, "d").await;
    // bob and carol got the creation messages from their offline queues;
    // ack them so nothing is repeated.
    for cl in [&mut b, &mut c] {
        cl.ok(json!({"type":"ack","conv":conv,"seq":3})).await;
    }

    let ok = a_phone.send_group(&gid, "g1", "hello group").await;
    assert_eq!(
        (ok["conv"].as_str(), ok["seq"].as_u64()),
        (Some(&*conv), Some(4))
    );
    for cl in [&mut a_laptop, &mut b, &mut c] {
        let m = cl.next_msg().await;
        assert_eq!(m["msg_id"], ok["msg_id"]);
        assert_eq!(
            (
                m["conv"].as_str(),
                m["seq"].as_u64(),
                m["from"].as_str(),
                m["group"].as_str(),
                m["content"].as_str(),
                m["client_msg_id"].as_str()
            ),
            (
                Some(&*conv),
                Some(4),
                Some("alice"),
                Some(&*gid),
                Some("hello group"),
                Some("g1")
            )
        );
        assert!(m.get("to").is_none() || m["to"].is_null(), "{m}");
    }
    a_phone.quiet(Duration::from_millis(300)).await;
    d.quiet(Duration::from_millis(100)).await;

    // Over HTTP there is no sending device: every member device gets it.
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&tb),
            json!({"group":gid,"client_msg_id":"h1","kind":"custom","content":{"x":1}}),
        )
        .await;
    assert_eq!((st, v["seq"].as_u64()), (200, Some(5)));
    for cl in [&mut a_phone, &mut a_laptop, &mut b, &mut c] {
        let m = cl.next_msg().await;
        assert_eq!(
            (m["seq"].as_u64(), m["content"].clone()),
            (Some(5), json!({"x":1}))
        );
    }

    // Only members send; the group must exist; no system messages.
    let g = |gid: &str, kind: &str| json!({"type":"send","group":gid,"client_msg_id":"x1","kind":kind,"content":"x"});
    d.err(g(&gid, "text"), "not_member").await;
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&td),
            json!({"group":gid,"client_msg_id":"x1","kind":"text","content":"x"}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("not_member")));
    d.err(g("nosuchgroup", "text"), "no_such_group").await;
    d.err(g("bad id", "text"), "no_such_group").await;
    a_phone.err(g(&gid, "system"), "invalid").await;
    a_phone
        .err(
            json!({"type":"send","group":gid,"to":"bob","client_msg_id":"x2","kind":"text","content":"x"}),
            "invalid",
        )
        .await;
    // Non-members can neither read nor type in the group.
    d.err(json!({"type":"history","conv":conv}), "not_member")
        .await;
    d.err(json!({"type":"typing","conv":conv}), "not_member")
        .await;
    d.err(json!({"type":"read","conv":conv,"seq":1}), "not_member")
        .await;
    // Typing in a small group reaches the other members.
    a_phone.ok(json!({"type":"typing","conv":conv})).await;
    let t = b.next_of("typing").await;
    assert_eq!(t, json!({"type":"typing","conv":conv,"user":"alice"}));
    let h = history(&s, &tb, &conv).await;
    assert_eq!(
        seqs(&json!(h)),
        (1..=5).collect::<Vec<_>>(),
        "refused sends stored nothing"
    );
}

#[tokio::test]
async fn concurrent_group_senders_get_gap_free_seqs_and_dedup() {
    let s = Server::start().await;
    let names = ["alice", "bob", "carol", "dave", "erin"];
    let mut tokens = Vec::new();
    for n in names {
        tokens.push(s.user(n).await);
    }
    let gid = s
        .new_group(&tokens[0], "g", &["bob", "carol", "dave", "erin"])
        .await;
    let conv = conv_of(&gid);
    // erin only watches.
    let mut watcher = s.connect(&tokens[4], "w").await;
    watcher.ok(json!({"type":"ack","conv":conv,"seq":5})).await;
    let mut tasks = Vec::new();
    for (i, tok) in tokens[..4].iter().enumerate() {
        let mut c = s.connect(tok, "d").await;
        let gid = gid.clone();
        tasks.push(tokio::spawn(async move {
            // Pipelined: many sends in flight at once on each connection.
            let mut ids = Vec::new();
            for k in 0..25 {
                let v = json!({"type":"send","group":gid,"client_msg_id":format!("s{i}-{k}"),"kind":"text","content":format!("{i}/{k}")});
                ids.push(c.submit(v).await);
            }
            let mut seqs = Vec::new();
            for id in ids {
                let r = c.reply(&id).await;
                assert_eq!(r["type"], "ok", "{r}");
                seqs.push(r["seq"].as_u64().unwrap());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one connection's sends stay in order"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (6..=105).collect::<Vec<u64>>(),
        "gap-free after 5 membership messages"
    );
    let mut got = Vec::new();
    for _ in 0..100 {
        got.push(watcher.next_msg().await["seq"].as_u64().unwrap());
    }
    assert_eq!(
        got,
        (6..=105).collect::<Vec<u64>>(),
        "pushed once each, in seq order"
    );

    // A retry with the same client_msg_id is answered from the original.
    let mut a = s.connect(&tokens[0], "retry").await;
    let again = a.send_group(&gid, "s0-3", "changed").await;
    assert_eq!(again["duplicate"], true);
    let h = history(&s, &tokens[4], &conv).await;
    let orig = h.iter().find(|m| m["client_msg_id"] == "s0-3").unwrap();
    assert_eq!(
        (again["seq"].clone(), again["msg_id"].clone()),
        (orig["seq"].clone(), orig["msg_id"].clone())
    );
    assert_eq!(orig["content"], "0/3");
    watcher
        .ok(json!({"type":"ack","conv":conv,"seq":105}))
        .await;
    watcher.quiet(Duration::from_millis(300)).await;
    assert_eq!(h.len(), 105);
}

/// A group at or below `groups.write_limit` keeps a per-member inbox: an
/// offline member gets every message at `auth`, and unread is exact.
#[tokio::test]
async fn write_diffusion_queues_for_offline_members() {
    let s = Server::start_with(|c| c.groups.write_limit = 3).await;
    let ta = s.user("alice").await;
    s.user("bob").await;
    let tc = s.user("carol").await;
    let gid = s.new_group(&ta, "g", &["bob", "carol"]).await;
    let conv = conv_of(&gid);
    let mut a = s.connect(&ta, "a").await;
    for i in 1..=3 {
        a.send_group(&gid, &format!("m{i}"), &format!("text {i}"))
            .await;
    }
    // carol joined at seq 3: her queue holds her join and the messages.
    let (mut c, (msgs, done)) = s.connect_offline(&tc, "c").await;
    let got: Vec<u64> = msgs
        .iter()
        .map(|f| f["msg"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got, [3, 4, 5, 6]);
    assert_eq!(done["count"], 4);
    assert_eq!(
        event(&msgs[0]["msg"]),
        ev("member_joined", "carol", "alice")
    );
    let (e, total) = sync_entry(&s, &tc, &conv).await;
    assert_eq!(
        (
            e["group"].as_str(),
            e["max_seq"].as_u64(),
            e["read_seq"].as_u64(),
            e["unread"].as_u64(),
            total
        ),
        (Some(&*gid), Some(6), Some(2), Some(4), 4)
    );
    assert_eq!(e["last"]["content"], "text 3");
    // An ack empties the queue: the next auth brings nothing.
    c.ok(json!({"type":"ack","conv":conv,"seq":6})).await;
    drop(c);
    let (_c, (msgs, _)) = s.connect_offline(&tc, "c2").await;
    assert!(msgs.is_empty());
    // The sender has nothing unread.
    let (e, total) = sync_entry(&s, &ta, &conv).await;
    assert_eq!((e["unread"].as_u64(), total), (Some(0), 0));
}

/// Above the limit a message is stored once: nothing is queued, offline
/// members catch up with `sync` and `history`; unread stays positional.
#[tokio::test]
async fn read_diffusion_catches_up_through_sync_and_history() {
    let s = Server::start_with(|c| c.groups.write_limit = 3).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    s.user("dave").await;
    let mut b = s.connect(&tb, "b").await;
    let gid = s.new_group(&ta, "g", &["bob", "carol", "dave"]).await;
    let conv = conv_of(&gid);
    let mut a = s.connect(&ta, "a").await;
    let mut sent = Vec::new();
    for i in 1..=5 {
        sent.push(
            a.send_group(&gid, &format!("m{i}"), &format!("text {i}"))
                .await,
        );
    }
    assert_eq!(sent[4]["seq"], 9);
    // Online bob got every message in order, the creation unit's included.
    let got: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 1..=9 {
            v.push(b.next_msg().await["seq"].as_u64().unwrap());
        }
        v
    };
    assert_eq!(got, (1..=9).collect::<Vec<_>>());
    b.ok(json!({"type":"ack","conv":conv,"seq":9})).await;
    b.quiet(Duration::from_millis(300)).await;

    // carol was offline. Only seq 3 (her join, while the group had 3
    // members) was queued; seq 4 made the group too large for inboxes.
    let (mut c, (msgs, done)) = s.connect_offline(&tc, "c").await;
    let got: Vec<u64> = msgs
        .iter()
        .map(|f| f["msg"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!((got, done["count"].as_u64()), (vec![3], Some(1)));
    let sy = c.ok(json!({"type":"sync"})).await;
    let e = &sy["convs"][0];
    assert_eq!(
        (
            e["max_seq"].as_u64(),
            e["read_seq"].as_u64(),
            e["unread"].as_u64(),
            sy["total_unread"].as_u64()
        ),
        (Some(9), Some(2), Some(7), Some(7))
    );
    assert_eq!(e["last"]["msg_id"], sent[4]["msg_id"]);
    let h = c
        .ok(json!({"type":"history","conv":conv,"after_seq":3}))
        .await;
    assert_eq!(seqs(&h["msgs"]), (4..=9).collect::<Vec<_>>());
    // A new member reads the history from the start.
    let h = c.ok(json!({"type":"history","conv":conv})).await;
    assert_eq!(seqs(&h["msgs"]), (1..=9).collect::<Vec<_>>());
    // Reading works as in any conversation.
    let r = c.ok(json!({"type":"read","conv":conv,"seq":7})).await;
    assert_eq!(r["read_seq"], 7);
    let (e, total) = sync_entry(&s, &tc, &conv).await;
    assert_eq!((e["unread"].as_u64(), total), (Some(2), 2));
    // Sending moves the sender's own position.
    c.send_group(&gid, "c1", "caught up").await;
    let (e, total) = sync_entry(&s, &tc, &conv).await;
    assert_eq!(
        (e["read_seq"].as_u64(), e["unread"].as_u64(), total),
        (Some(10), Some(0), 0)
    );
}

/// The group grows past the limit and shrinks back: every member device
/// sees every seq exactly once, in order, and the offline member's queue
/// plus `history` covers everything without gaps or repeats.
#[tokio::test]
async fn switching_tiers_loses_and_repeats_nothing() {
    // A long storm window holds read-diffusion pushes while the next
    // write-diffusion push is ready: the order must survive that.
    let s = Server::start_with(|c| {
        c.groups.write_limit = 3;
        c.limits.storm_window_ms = 1000;
    })
    .await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    s.user("dave").await;
    let mut b = s.connect(&tb, "b").await;
    let gid = s.new_group(&ta, "g", &["bob"]).await; // seqs 1, 2
    let conv = conv_of(&gid);
    let mut a = s.connect(&ta, "a").await;
    s.add_members(&ta, &gid, &["carol"]).await; // 3, size 3: write diffusion
    a.send_group(&gid, "m1", "1").await; // 4
    a.send_group(&gid, "m2", "2").await; // 5
    s.add_members(&ta, &gid, &["dave"]).await; // 6, size 4: read diffusion
    a.send_group(&gid, "m3", "3").await; // 7
    a.send_group(&gid, "m4", "4").await; // 8
    s.remove_member(&ta, &gid, "dave").await; // 9, pushed to 4 members
    a.send_group(&gid, "m5", "5").await; // 10, size 3 again
    a.send_group(&gid, "m6", "6").await; // 11

    let mut got = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for _ in 1..=11 {
        let m = b.next_msg().await;
        assert!(
            ids.insert(m["msg_id"].as_str().unwrap().to_owned()),
            "repeated: {m}"
        );
        got.push(m["seq"].as_u64().unwrap());
    }
    assert_eq!(
        got,
        (1..=11).collect::<Vec<_>>(),
        "every seq once, in order"
    );
    b.ok(json!({"type":"ack","conv":conv,"seq":11})).await;
    b.quiet(Duration::from_millis(300)).await;

    // carol was offline throughout: queued while the group was small.
    let (mut c, (msgs, _)) = s.connect_offline(&tc, "c").await;
    let queued: Vec<u64> = msgs
        .iter()
        .map(|f| f["msg"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(queued, [3, 4, 5, 10, 11]);
    let mut seen: Vec<u64> = queued.clone();
    let h = c
        .ok(json!({"type":"history","conv":conv,"after_seq":3}))
        .await;
    for s in seqs(&h["msgs"]) {
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (3..=11).collect::<Vec<_>>());
    let (e, _) = sync_entry(&s, &tc, &conv).await;
    assert_eq!(
        (e["max_seq"].as_u64(), e["unread"].as_u64()),
        (Some(11), Some(9))
    );
    let events: Vec<_> = history(&s, &ta, &conv)
        .await
        .iter()
        .filter(|m| m["kind"] == "system")
        .map(event)
        .collect();
    assert_eq!(
        events,
        [
            ev("group_created", "alice", "alice"),
            ev("member_joined", "bob", "alice"),
            ev("member_joined", "carol", "alice"),
            ev("member_joined", "dave", "alice"),
            ev("member_removed", "dave", "alice"),
        ]
    );
}

/// Read-diffusion pushes to one device within the storm window arrive as
/// one `batch` frame; write-diffusion pushes are never batched.
#[tokio::test]
async fn storm_window_batches_large_group_pushes() {
    let s = Server::start_with(|c| {
        c.groups.write_limit = 2;
        c.limits.storm_window_ms = 1000;
    })
    .await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    s.user("carol").await;
    let big = s.new_group(&ta, "big", &["bob", "carol"]).await;
    let small = s.new_group(&ta, "small", &["bob"]).await;
    let mut a = s.connect(&ta, "a").await;
    let mut b = s.connect(&tb, "b").await;
    b.ok(json!({"type":"ack","conv":conv_of(&small),"seq":2}))
        .await;

    let mut ids = Vec::new();
    for i in 0..10 {
        let v = json!({"type":"send","group":big,"client_msg_id":format!("b{i}"),"kind":"text","content":format!("{i}")});
        ids.push(a.submit(v).await);
    }
    for id in ids {
        assert_eq!(a.reply(&id).await["type"], "ok");
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        let m = b.next_msg().await;
        assert_eq!(m["conv"], conv_of(&big));
        got.push(m["content"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    assert!(b.batches() >= 1, "pushes within the window were merged");

    let before = b.batches();
    for i in 0..5 {
        a.send_group(&small, &format!("s{i}"), "x").await;
    }
    for i in 0..5 {
        assert_eq!(b.next_msg().await["seq"], 3 + i);
    }
    assert_eq!(b.batches(), before, "write diffusion is not batched");
}

/// A device in the background gets `notify {conv,max_seq}` for large
/// groups instead of messages, until it says it is active again.
#[tokio::test]
async fn background_device_gets_notify_for_large_groups() {
    let s = Server::start_with(|c| c.groups.write_limit = 2).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    s.user("carol").await;
    let big = s.new_group(&ta, "big", &["bob", "carol"]).await;
    let small = s.new_group(&ta, "small", &["bob"]).await;
    let conv = conv_of(&big);
    let mut a = s.connect(&ta, "a").await;
    let mut phone = s.connect(&tb, "phone").await;
    let mut tablet = s.connect(&tb, "tablet").await;
    for c in [&mut phone, &mut tablet] {
        c.ok(json!({"type":"ack","conv":conv_of(&small),"seq":2}))
            .await;
    }
    phone.ok(json!({"type":"state","active":false})).await;
    for i in 1..=3 {
        a.send_group(&big, &format!("m{i}"), "x").await; // seqs 4, 5, 6
    }
    // The phone sees notices only; the last one names the newest seq.
    loop {
        let f = phone.next().await;
        assert_eq!(f["type"], "notify", "only notices in the background: {f}");
        assert_eq!(f["conv"], conv);
        assert!(f["max_seq"].as_u64().unwrap() >= 4);
        if f["max_seq"] == 6 {
            break;
        }
    }
    // The foreground tablet gets the messages themselves.
    for seq in 4..=6 {
        assert_eq!(tablet.next_msg().await["seq"], seq);
    }
    // Small (write-diffused) groups still push full messages.
    let ok = a.send_group(&small, "s1", "small").await;
    let m = phone.next_msg().await;
    assert_eq!(
        (m["conv"].as_str(), m["seq"].clone()),
        (Some(&*conv_of(&small)), ok["seq"].clone())
    );
    phone
        .ok(json!({"type":"ack","conv":conv_of(&small),"seq":3}))
        .await;
    // Back in the foreground: pull the gap, then full messages again.
    phone.ok(json!({"type":"state","active":true})).await;
    let h = phone
        .ok(json!({"type":"history","conv":conv,"after_seq":3}))
        .await;
    assert_eq!(seqs(&h["msgs"]), [4, 5, 6]);
    a.send_group(&big, "m4", "y").await;
    let m = phone.next_msg().await;
    assert_eq!(
        (m["seq"].as_u64(), m["content"].as_str()),
        (Some(7), Some("y"))
    );
    phone.quiet(Duration::from_millis(300)).await;
    phone.err(json!({"type":"state"}), "invalid").await;
}

#[tokio::test]
async fn group_read_and_read_status() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let td = s.user("dave").await;
    let gid = s.new_group(&ta, "g", &["bob", "carol"]).await;
    let conv = conv_of(&gid);
    let mut a = s.connect(&ta, "a").await;
    let mut b1 = s.connect(&tb, "b1").await;
    let mut b2 = s.connect(&tb, "b2").await;
    let mut c = s.connect(&tc, "c").await;
    let mut d = s.connect(&td, "d").await;
    let m4 = a.send_group(&gid, "m1", "one").await;
    a.send_group(&gid, "m2", "two").await;
    let st = |seq: u64| json!({"type":"read_status","conv":conv,"seq":seq});

    // The sender is left out; members in join order.
    let r = a.ok(st(4)).await;
    assert_eq!(m4["seq"], 4);
    assert_eq!(r["conv"], conv);
    assert_eq!(r["seq"], 4);
    assert_eq!(
        (r["read"].clone(), r["unread"].clone()),
        (json!([]), json!(["bob", "carol"]))
    );

    let r = b1.ok(json!({"type":"read","conv":conv,"seq":4})).await;
    assert_eq!(r["read_seq"], 4);
    // The reader's other device learns it; the group's others do not.
    let want = json!({"type":"receipt","conv":conv,"by":"bob","read_seq":4});
    assert_eq!(b2.next_of("receipt").await, want);
    for cl in [&mut a, &mut c] {
        let frames = cl.drain(Duration::from_millis(200)).await;
        assert!(frames.iter().all(|f| f["type"] != "receipt"), "{frames:?}");
    }
    let r = c.ok(st(4)).await;
    assert_eq!(
        (r["read"].clone(), r["unread"].clone()),
        (json!(["bob"]), json!(["carol"]))
    );
    let r = c.ok(st(5)).await;
    assert_eq!(
        (r["read"].clone(), r["unread"].clone()),
        (json!([]), json!(["bob", "carol"]))
    );
    // Sending is reading: carol's own message moves her position.
    c.send_group(&gid, "c1", "three").await;
    let r = b1.ok(st(5)).await;
    assert_eq!(
        (r["read"].clone(), r["unread"].clone()),
        (json!(["carol"]), json!(["bob"]))
    );
    // carol sent seq 6: she is left out; alice has read up to 5 only.
    let r = a.ok(st(6)).await;
    assert_eq!(
        (r["read"].clone(), r["unread"].clone()),
        (json!([]), json!(["alice", "bob"]))
    );
    // HTTP read is not a thing; positions show in sync.
    let (e, _) = sync_entry(&s, &tb, &conv).await;
    assert_eq!(
        (e["read_seq"].as_u64(), e["unread"].as_u64()),
        (Some(4), Some(2))
    );

    // Deleting a message from one's own history changes nothing here.
    b1.ok(json!({"type":"delete","conv":conv,"seqs":[6]})).await;
    let r = b1.ok(st(6)).await;
    assert_eq!(
        (r["read"].clone(), r["unread"].clone()),
        (json!([]), json!(["alice", "bob"]))
    );

    a.err(st(0), "invalid").await;
    a.err(st(7), "invalid").await;
    a.err(json!({"type":"read_status","conv":conv}), "invalid")
        .await;
    a.err(json!({"type":"read_status","seq":1}), "invalid")
        .await;
    d.err(st(4), "not_member").await;
    a.err(json!({"type":"read","conv":conv,"seq":7}), "invalid")
        .await;
    s.user("erin").await;
    a.send_text("erin", "dm1", "hi").await;
    a.err(
        json!({"type":"read_status","conv":dm("alice","erin"),"seq":1}),
        "invalid",
    )
    .await;
}

#[tokio::test]
async fn read_status_is_only_kept_up_to_the_write_limit() {
    let s = Server::start_with(|c| c.groups.write_limit = 3).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    s.user("carol").await;
    s.user("dave").await;
    let gid = s.new_group(&ta, "g", &["bob", "carol"]).await;
    let conv = conv_of(&gid);
    let mut a = s.connect(&ta, "a").await;
    let mut b = s.connect(&tb, "b").await;
    a.send_group(&gid, "m1", "x").await; // 4
    b.ok(json!({"type":"read","conv":conv,"seq":4})).await;
    let st = json!({"type":"read_status","conv":conv,"seq":4});
    let r = a.ok(st.clone()).await;
    assert_eq!(r["read"], json!(["bob"]));
    // A fourth member: read diffusion, no per-member read lists.
    s.add_members(&ta, &gid, &["dave"]).await;
    a.err(st.clone(), "invalid").await;
    // Read positions themselves are still kept.
    let r = b.ok(json!({"type":"read","conv":conv,"seq":5})).await;
    assert_eq!(r["read_seq"], 5);
    // Back at the limit, the lists return, positions intact.
    s.remove_member(&ta, &gid, "dave").await;
    let r = a
        .ok(json!({"type":"read_status","conv":conv,"seq":5}))
        .await;
    assert_eq!(
        (r["read"].clone(), r["unread"].clone()),
        (json!(["bob"]), json!(["carol"]))
    );
}

/// A removed member gets the removal and nothing after it, and can still
/// read up to it; in both diffusion tiers.
async fn removal_stops_pushes(write_limit: usize) {
    let s = Server::start_with(|c| c.groups.write_limit = write_limit).await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    let tz = s.user("zoe").await;
    let gid = s.new_group(&ta, "g", &["bob", "carol", "zoe"]).await; // 1-4
    let conv = conv_of(&gid);
    let mut a = s.connect(&ta, "a").await;
    let mut b = s.connect(&tb, "b").await;
    let mut c = s.connect(&tc, "c").await;
    b.ok(json!({"type":"ack","conv":conv,"seq":4})).await;
    c.ok(json!({"type":"ack","conv":conv,"seq":4})).await;
    a.send_group(&gid, "m1", "before").await; // 5
    s.remove_member(&ta, &gid, "carol").await; // 6
    s.remove_member(&ta, &gid, "zoe").await; // 7, zoe is offline
    a.send_group(&gid, "m2", "after").await; // 8

    let m = c.next_msg().await;
    assert_eq!(m["seq"], 5);
    let m = c.next_msg().await;
    assert_eq!(m["seq"], 6);
    assert_eq!(event(&m), ev("member_removed", "carol", "alice"));
    c.ok(json!({"type":"ack","conv":conv,"seq":6})).await;
    c.quiet(Duration::from_millis(300)).await;
    let got: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 5..=8 {
            v.push(b.next_msg().await["seq"].as_u64().unwrap());
        }
        v
    };
    assert_eq!(got, [5, 6, 7, 8]);

    // History ends at the removal, whatever the bounds.
    let h = c.ok(json!({"type":"history","conv":conv})).await;
    assert_eq!(seqs(&h["msgs"]), (1..=6).collect::<Vec<_>>());
    let h = c
        .ok(json!({"type":"history","conv":conv,"after_seq":5,"before_seq":100}))
        .await;
    assert_eq!(seqs(&h["msgs"]), [6]);
    let (st, v) = s
        .get(
            &format!("/v1/conversations/{conv}/messages?after_seq=6"),
            Some(&tc),
        )
        .await;
    assert_eq!((st, v["msgs"].clone()), (200, json!([])));
    let (e, total) = sync_entry(&s, &tc, &conv).await;
    assert_eq!(
        (e["max_seq"].as_u64(), e["last"]["seq"].as_u64()),
        (Some(6), Some(6))
    );
    // carol joined at seq 3 and never read: unread up to the removal.
    assert_eq!(
        (e["read_seq"].as_u64(), e["unread"].as_u64(), total),
        (Some(2), Some(4), 4)
    );
    // Reading past the removal stops at it.
    let r = c.ok(json!({"type":"read","conv":conv,"seq":8})).await;
    assert_eq!(r["read_seq"], 6);
    c.err(
        json!({"type":"send","group":gid,"client_msg_id":"c1","kind":"text","content":"x"}),
        "not_member",
    )
    .await;
    c.err(
        json!({"type":"read_status","conv":conv,"seq":5}),
        "not_member",
    )
    .await;
    c.err(json!({"type":"typing","conv":conv}), "not_member")
        .await;

    // zoe, offline all along, finds the removal as her last message.
    let (_z, (msgs, _)) = s.connect_offline(&tz, "z").await;
    let queued: Vec<u64> = msgs
        .iter()
        .map(|f| f["msg"]["seq"].as_u64().unwrap())
        .collect();
    if write_limit >= 4 {
        assert_eq!(queued, [4, 5, 6, 7]);
    } else {
        assert!(queued.iter().all(|s| *s <= 7), "{queued:?}");
    }
    let h = history(&s, &tz, &conv).await;
    assert_eq!(seqs(&json!(h)), (1..=7).collect::<Vec<_>>());
    assert_eq!(event(&h[6]), ev("member_removed", "zoe", "alice"));
}

#[tokio::test]
async fn removal_stops_pushes_write_diffusion() {
    removal_stops_pushes(500).await;
}

#[tokio::test]
async fn removal_stops_pushes_read_diffusion() {
    removal_stops_pushes(2).await;
}

/// A member removed and added again: back in at once, reads the whole
/// history (as a new member does), and starts unread at the rejoin.
#[tokio::test]
async fn re_added_member_starts_unread_at_the_rejoin() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    s.user("bob").await;
    let tc = s.user("carol").await;
    // carol joins before bob, so her return puts her behind him.
    let gid = s.new_group(&ta, "g", &["carol", "bob"]).await; // 1-3
    let conv = conv_of(&gid);
    let mut a = s.connect(&ta, "a").await;
    let mut c = s.connect(&tc, "c").await;
    c.ok(json!({"type":"ack","conv":conv,"seq":3})).await;
    a.send_group(&gid, "m1", "1").await; // 4
    c.next_msg().await;
    s.remove_member(&ta, &gid, "carol").await; // 5
    assert_eq!(c.next_msg().await["seq"], 5);
    c.ok(json!({"type":"ack","conv":conv,"seq":5})).await;
    a.send_group(&gid, "m2", "while away").await; // 6
    a.send_group(&gid, "m3", "while away").await; // 7
    let v = s.add_members(&ta, &gid, &["carol"]).await; // 8
    assert_eq!(
        v.members,
        ["alice", "bob", "carol"],
        "back at the end of the join order"
    );
    // Pushes resume with the join message.
    let m = c.next_msg().await;
    assert_eq!(
        (m["seq"].as_u64(), event(&m)),
        (Some(8), ev("member_joined", "carol", "alice"))
    );
    a.send_group(&gid, "m4", "back").await; // 9
    assert_eq!(c.next_msg().await["seq"], 9);
    // The whole history is visible again, the time away included.
    let h = c.ok(json!({"type":"history","conv":conv})).await;
    assert_eq!(seqs(&h["msgs"]), (1..=9).collect::<Vec<_>>());
    // Unread starts at the rejoin: the join message and what follows.
    let (e, total) = sync_entry(&s, &tc, &conv).await;
    assert_eq!(
        (
            e["max_seq"].as_u64(),
            e["read_seq"].as_u64(),
            e["unread"].as_u64(),
            total
        ),
        (Some(9), Some(7), Some(2), 2)
    );
    c.send_group(&gid, "c1", "hi again").await;
    let (e, _) = sync_entry(&s, &tc, &conv).await;
    assert_eq!(e["unread"], 0);
}
