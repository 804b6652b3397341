//! 5.6 scheduled messages on two nodes sharing PostgreSQL (and MySQL):
//! messages scheduled through both nodes, all due at about the same time,
//! are each sent once (both schedulers claim; a lease per row and dedup
//! by `client_msg_id` keep them to one), each received once.

use super::*;
use reqwest::Method;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn scheduled_on(sql: Sql) {
    let Some(c) = Cluster::start(sql, 2, &[("TERN_SCHEDULED__POLL_MS", "100")]).await else {
        return;
    };
    let (n0, n1) = (c.node(0), c.node(1));
    let ta = n0.user("sa").await;
    let tb = n1.user("sb").await;
    let mut bob = connect(n1, &tb, "d").await;
    const EACH: usize = 10;
    let at = now_ms() + 1500;
    for i in 0..2 * EACH {
        let node = if i % 2 == 0 { n0 } else { n1 };
        let (st, v) = node
            .call(
                Method::POST,
                "/v1/messages",
                Some(&ta),
                Some(
                    json!({"to":"sb","client_msg_id":format!("k{i}"),"kind":"text",
                            "content":format!("m{i}"),"at": at + (i as i64 % 3)}),
                ),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert!(v["scheduled"].is_string(), "{v}");
    }
    let mut got = Vec::new();
    for _ in 0..2 * EACH {
        got.push(bob.next_msg().await);
    }
    let mut cmids: Vec<String> = got
        .iter()
        .map(|m| m["client_msg_id"].as_str().unwrap().to_owned())
        .collect();
    cmids.sort();
    let mut want: Vec<String> = (0..2 * EACH).map(|i| format!("k{i}")).collect();
    want.sort();
    assert_eq!(cmids, want, "each received once");
    // History holds each once, seqs 1..=N.
    let (st, h) = n0
        .call(
            Method::GET,
            "/v1/conversations/dm:sa:sb/messages?limit=100",
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(seqs(&h["msgs"]), (1..=2 * EACH as u64).collect::<Vec<_>>());
    // Nothing left pending, on either node.
    for node in [n0, n1] {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, l) = node
                .call(Method::GET, "/v1/scheduled", Some(&ta), None)
                .await;
            if l["scheduled"].as_array().is_some_and(|a| a.is_empty()) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "still pending: {l}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_sent_once_across_nodes() {
    scheduled_on(Sql::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_sent_once_across_nodes_mysql() {
    scheduled_on(Sql::MySql).await;
}
