//! 5.1 across two nodes, on PostgreSQL and on MySQL: an edit and a
//! reaction made through one node reach the other node's devices (through
//! the fan-out) and its history; a mention made through one node flags
//! the sync entry of a member on the other.

use super::*;

async fn edits_on(sql: Sql) {
    let Some(c) = Cluster::start(sql, 2, &[]).await else {
        return;
    };
    let (n0, n1) = (c.node(0), c.node(1));
    let ta = n0.user("ann").await;
    let tb = n1.user("bob").await;
    let gid = new_group(n0, &ta, &["bob"]).await;
    let conv = format!("group:{gid}");
    let mut ann = connect(n0, &ta, "d").await;
    let mut bob = connect(n1, &tb, "d").await;

    // A mention through node 0 flags bob's entry read through node 1.
    let ok = ann
        .ok(json!({"type":"send","group":gid,"client_msg_id":"m1","kind":"text","content":"bob?","mentions":["bob"]}))
        .await;
    let seq = ok["seq"].as_u64().unwrap();
    let m = msg_from(&mut bob, "ann").await;
    assert_eq!(m["mentions"], json!(["bob"]));
    let sync = bob.ok(json!({"type":"sync"})).await;
    let entry = sync["convs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["conv"] == conv)
        .cloned()
        .unwrap();
    assert_eq!(entry["mentioned"], true, "{entry}");

    // An edit through node 0 reaches bob on node 1.
    let r = ann
        .ok(json!({"type":"edit","conv":conv,"seq":seq,"content":"bob!"}))
        .await;
    let p = bob.next_of("edited").await;
    assert_eq!(
        (p["seq"].as_u64(), p["content"].as_str()),
        (Some(seq), Some("bob!"))
    );
    assert_eq!(p["edited_at"], r["edited_at"]);

    // A reaction through node 1 reaches ann on node 0.
    bob.ok(json!({"type":"react","conv":conv,"seq":seq,"emoji":"👍","on":true}))
        .await;
    let p = ann.next_of("reaction").await;
    assert_eq!(
        (p["user"].as_str(), p["on"].as_bool()),
        (Some("bob"), Some(true))
    );

    // Both nodes' history shows the edit and the reaction.
    for (node, token) in [(n0, &ta), (n1, &tb)] {
        let h = history(node, token, &conv).await;
        let m = h
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["seq"] == seq)
            .cloned()
            .unwrap();
        assert_eq!(m["content"], "bob!");
        assert_eq!(m["reactions"]["👍"], json!({"count":1,"users":["bob"]}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_across_nodes() {
    edits_on(Sql::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_across_nodes_mysql() {
    edits_on(Sql::MySql).await;
}
