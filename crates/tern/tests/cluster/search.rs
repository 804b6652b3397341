//! 5.2 search across two nodes, on PostgreSQL and on MySQL: a message
//! sent through node 0 is found through node 1 within a second (whichever
//! node's indexer takes it), and a group message too, by a CJK pair.

use super::*;
use std::time::Instant;

/// The contents of the hits of `q` for the user of `token`, as `node`
/// answers over WebSocket.
async fn found(c: &mut Client, q: &str) -> Vec<String> {
    let v = c.ok(json!({"type":"search","q":q})).await;
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Waits until `q` finds `n` hits, at most a second after `since`.
async fn within_a_second(c: &mut Client, q: &str, n: usize, since: Instant) -> Vec<String> {
    loop {
        let hits = found(c, q).await;
        if hits.len() >= n {
            return hits;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "{q:?} not found within a second: {hits:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn search_on(sql: Sql) {
    let Some(c) = Cluster::start(sql, 2, &[]).await else {
        return;
    };
    let (n0, n1) = (c.node(0), c.node(1));
    let ta = n0.user("ann").await;
    let tb = n1.user("bob").await;
    for (node, tok, other) in [(n0, &ta, "bob"), (n1, &tb, "ann")] {
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
    let gid = new_group(n0, &ta, &["bob"]).await;
    let mut ann = connect(n0, &ta, "d").await;
    let mut bob = connect(n1, &tb, "d").await;
    ann.send_text("bob", "a1", "Let's go home").await;
    let sent = Instant::now();
    assert_eq!(
        within_a_second(&mut bob, "GO hom", 1, sent).await,
        ["Let's go home"]
    );
    ann.send_group(&gid, "g1", "我们去北京").await;
    let sent = Instant::now();
    assert_eq!(
        within_a_second(&mut bob, "北京", 1, sent).await,
        ["我们去北京"]
    );
    // Each message is indexed once, whichever node took it.
    assert_eq!(found(&mut ann, "go").await.len(), 1);
    assert!(found(&mut bob, "go world").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_across_nodes() {
    search_on(Sql::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_across_nodes_mysql() {
    search_on(Sql::MySql).await;
}
