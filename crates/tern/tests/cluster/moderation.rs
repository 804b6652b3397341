//! 5.4 and blocks across two nodes, on PostgreSQL and on MySQL: a change
//! of roles made through one node is obeyed by the next send through the
//! other (each node caches the group; the change moves its version), and
//! a block made through one node stops the blocked user on the other.

use super::*;
use reqwest::Method;

fn text(to_group: &str, cmid: &str) -> Value {
    json!({"type":"send","group":to_group,"client_msg_id":cmid,"kind":"text","content":cmid})
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn status(
    node: &Tern,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    node.call(method, path, Some(token), body).await
}

/// The `system` events of a group's history as one node answers it.
async fn events(node: &Tern, token: &str, gid: &str) -> Vec<String> {
    history(node, token, &format!("group:{gid}"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "system")
        .map(|m| m["content"]["event"].as_str().unwrap().to_owned())
        .collect()
}

async fn moderation_on(sql: Sql) {
    let Some(c) = Cluster::start(sql, 2, &[]).await else {
        return;
    };
    let (n0, n1) = (c.node(0), c.node(1));
    let ta = n0.user("ann").await;
    let tb = n1.user("bob").await;
    let tc = n1.user("cat").await;
    let gid = new_group(n0, &ta, &["bob", "cat"]).await;
    let g = format!("/v1/groups/{gid}");
    let mut cat = connect(n1, &tc, "d").await;
    let mut bob = connect(n1, &tb, "d").await;
    // node 1 has the group cached now.
    cat.send_group(&gid, "c1", "hello").await;

    // A mute through node 0 holds on node 1's very next send.
    let until = now_ms() + 3_600_000;
    let (st, b) = status(
        n0,
        Method::PUT,
        &format!("{g}/mutes/cat"),
        &ta,
        Some(json!({"until": until})),
    )
    .await;
    assert_eq!(st, 204, "{b}");
    cat.err(text(&gid, "c2"), "muted").await;
    let (st, _) = status(n0, Method::DELETE, &format!("{g}/mutes/cat"), &ta, None).await;
    assert_eq!(st, 204);
    cat.send_group(&gid, "c3", "unmuted").await;

    // An admin made through node 0 acts through node 1.
    let (st, _) = status(n0, Method::PUT, &format!("{g}/admins/bob"), &ta, None).await;
    assert_eq!(st, 204);
    let (st, v) = status(
        n1,
        Method::PATCH,
        &g,
        &tb,
        Some(json!({"muted_all": true, "name": "quiet"})),
    )
    .await;
    assert_eq!(
        (st, &v["muted_all"], &v["admins"]),
        (200, &json!(true), &json!(["bob"])),
        "{v}"
    );
    let (st, v) = n0
        .call(
            Method::POST,
            "/v1/messages",
            Some(&tc),
            Some(json!({"group": gid, "client_msg_id": "c4", "kind": "text", "content": "x"})),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("muted")), "{v}");
    bob.send_group(&gid, "b1", "admins may").await;
    // Admins cannot act on the owner.
    let (st, v) = status(
        n1,
        Method::PUT,
        &format!("{g}/mutes/ann"),
        &tb,
        Some(json!({"until": until})),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    // Demoted through node 0: bob is a plain member on node 1 again.
    let (st, _) = status(n0, Method::DELETE, &format!("{g}/admins/bob"), &ta, None).await;
    assert_eq!(st, 204);
    bob.err(text(&gid, "b2"), "muted").await;
    let (st, v) = status(
        n1,
        Method::PATCH,
        &g,
        &tb,
        Some(json!({"muted_all": false})),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");

    // Each event reached node 1's members, in order with the others.
    let want = [
        "group_created",
        "member_joined",
        "member_joined",
        "member_muted",
        "member_unmuted",
        "admin_added",
        "group_renamed",
        "muted_all_changed",
        "admin_removed",
    ];
    assert_eq!(events(n1, &tc, &gid).await, want);
    let mut seen = Vec::new();
    while seen.len() < want.len() - 3 {
        let m = cat.next_msg().await;
        if m["kind"] == "system" {
            seen.push(m["content"]["event"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, want[3..]);

    // Dissolved through node 0: node 1 refuses sends, keeps history.
    let (st, _) = status(n0, Method::DELETE, &g, &ta, None).await;
    assert_eq!(st, 204);
    cat.err(text(&gid, "c5"), "forbidden").await;
    let (st, v) = n1.get(&g, &tc).await;
    assert_eq!(
        (st, &v["dissolved"], &v["name"]),
        (200, &json!(true), &json!("quiet")),
        "{v}"
    );
    assert_eq!(
        events(n1, &tb, &gid).await.last().map(String::as_str),
        Some("group_dissolved")
    );
}

async fn blocks_on(sql: Sql) {
    let Some(c) = Cluster::start(sql, 2, &[]).await else {
        return;
    };
    let (n0, n1) = (c.node(0), c.node(1));
    let ta = n0.user("ann").await;
    let tb = n1.user("bob").await;
    for (node, token, other) in [(n1, &tb, "ann"), (n0, &ta, "bob")] {
        let (st, v) = status(
            node,
            Method::PUT,
            &format!("/v1/friends/{other}"),
            token,
            None,
        )
        .await;
        assert_eq!(st, 200, "{v}");
    }
    let gid = new_group(n0, &ta, &["bob"]).await;
    let mut ann = connect(n0, &ta, "d").await;
    let mut bob = connect(n1, &tb, "d").await;
    assert!(is_online(n1, &tb, "ann").await);

    // Blocked through node 0; every path from bob on node 1 is stopped.
    let (st, _) = status(n0, Method::PUT, "/v1/blocks/bob", &ta, None).await;
    assert_eq!(st, 204);
    let (_, v) = n1.get("/v1/blocks", &ta).await;
    assert_eq!(v, json!({"blocked": ["bob"]}));
    bob.err(
        json!({"type":"send","to":"ann","client_msg_id":"b1","kind":"text","content":"hi"}),
        "blocked",
    )
    .await;
    let (st, v) = status(n1, Method::PUT, "/v1/friends/ann", &tb, None).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("blocked")), "{v}");
    assert!(!is_online(n1, &tb, "ann").await);
    assert!(!is_online(n0, &ta, "bob").await);
    let q = bob.ok(json!({"type":"presence","users":["ann"]})).await;
    assert_eq!(q["online"], json!({"ann": false}));
    // Typing is not delivered; the group message after it is.
    bob.ok(json!({"type":"typing","id":"t","conv":dm("ann","bob")}))
        .await;
    bob.send_group(&gid, "g1", "groups are unaffected").await;
    loop {
        let f = ann.next().await;
        assert_ne!(f["type"], "typing", "{f}");
        if f["type"] == "msg" && f["msg"]["from"] == "bob" {
            break;
        }
    }
    let h = history(n0, &ta, &dm("ann", "bob")).await;
    assert_eq!(h.as_array().map(Vec::len), Some(0), "{h}");

    // Unblocked through node 1: bob's message reaches ann on node 0.
    let (st, _) = status(n1, Method::DELETE, "/v1/blocks/bob", &ta, None).await;
    assert_eq!(st, 204);
    bob.send_text("ann", "b2", "hello again").await;
    assert_eq!(msg_from(&mut ann, "bob").await["content"], "hello again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_across_nodes() {
    moderation_on(Sql::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_across_nodes_mysql() {
    moderation_on(Sql::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_across_nodes() {
    blocks_on(Sql::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_across_nodes_mysql() {
    blocks_on(Sql::MySql).await;
}
