//! 5.6 retention and account erase across two nodes, on PostgreSQL and
//! on MySQL: both nodes sweep expired messages at once (every second, in
//! small rounds) and each message goes exactly once (the nodes' counters
//! of removed messages add up to the number expired), with history,
//! unread and seq consistent through either node; an account erased
//! through one node has its socket on the other closed with 4001, and the
//! other side sees tombstones through either node.

use super::*;
use reqwest::Method;
use support::PASSWORD;

const DAY_MS: i64 = 86_400_000;

/// Moves the `ts` of messages `1..=upto` of `conv` back by `days`,
/// directly in the cluster's database.
async fn age(c: &Cluster, conv: &str, upto: i64, days: i64) {
    use sqlx::Connection;
    let n = match c.db.sql {
        Sql::Postgres => {
            let mut db = sqlx::PgConnection::connect(&c.db.url).await.unwrap();
            sqlx::query("UPDATE messages SET ts = ts - $1 WHERE conv = $2 AND seq <= $3")
                .bind(days * DAY_MS)
                .bind(conv)
                .bind(upto)
                .execute(&mut db)
                .await
                .unwrap()
                .rows_affected()
        }
        Sql::MySql => {
            let mut db = sqlx::MySqlConnection::connect(&c.db.url).await.unwrap();
            sqlx::query("UPDATE messages SET ts = ts - ? WHERE conv = ? AND seq <= ?")
                .bind(days * DAY_MS)
                .bind(conv)
                .bind(upto)
                .execute(&mut db)
                .await
                .unwrap()
                .rows_affected()
        }
    };
    assert_eq!(n as i64, upto);
}

async fn send(node: &Tern, token: &str, to: &str, cmid: &str) -> Value {
    let (st, b) = node
        .call(
            Method::POST,
            "/v1/messages",
            Some(token),
            Some(json!({"to": to, "client_msg_id": cmid, "kind": "text", "content": cmid})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    b
}

async fn retention_on(sql: Sql) {
    let env = [
        ("TERN_RETENTION__SWEEP_SECS", "1"),
        ("TERN_RETENTION__SWEEP_BATCH", "2"),
    ];
    let Some(c) = Cluster::start(sql, 2, &env).await else {
        return;
    };
    let (n0, n1) = (c.node(0), c.node(1));
    let ta = n0.user("ann").await;
    let tb = n1.user("bob").await;
    let conv = dm("ann", "bob");
    for i in 0..6 {
        send(n0, &ta, "bob", &format!("m{i}")).await;
    }
    let (st, b) = n1
        .call(
            Method::PUT,
            &format!("/v1/conversations/{conv}/settings"),
            Some(&tb),
            Some(json!({"retention_days": 1})),
        )
        .await;
    assert_eq!((st, &b["retention_days"]), (200, &json!(1)), "{b}");
    let before = metric(n0, "tern_retention_expired_total").await
        + metric(n1, "tern_retention_expired_total").await;
    assert_eq!(before, 0);
    age(&c, &conv, 5, 2).await;
    eventually(WAIT, "expired messages leave history", || async {
        seqs(&history(n1, &tb, &conv).await) == vec![6]
    })
    .await;
    assert_eq!(seqs(&history(n0, &ta, &conv).await), vec![6]);
    // Both nodes swept; each message went once.
    let removed = metric(n0, "tern_retention_expired_total").await
        + metric(n1, "tern_retention_expired_total").await;
    assert_eq!(removed, 5);
    for node in [n0, n1] {
        let (_, l) = node.get("/v1/conversations", &tb).await;
        let e = &l["convs"][0];
        assert_eq!((&e["unread"], &e["max_seq"]), (&json!(1), &json!(6)), "{l}");
        assert_eq!(e["retention_days"], 1);
    }
    let ok = send(n1, &tb, "ann", "reply").await;
    assert_eq!(ok["seq"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_sweeps_on_both_nodes() {
    retention_on(Sql::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_sweeps_on_both_nodes_mysql() {
    retention_on(Sql::MySql).await;
}

async fn erase_on(sql: Sql) {
    let Some(c) = Cluster::start(sql, 2, &[]).await else {
        return;
    };
    let (n0, n1) = (c.node(0), c.node(1));
    let ta = n0.user("ann").await;
    let tb = n1.user("bob").await;
    let conv = dm("ann", "bob");
    send(n0, &ta, "bob", "private words").await;
    let mut phone = connect(n1, &ta, "phone").await;
    let (st, b) = n0
        .call(
            Method::DELETE,
            "/v1/users/me",
            Some(&ta),
            Some(json!({"password": "wrong password"})),
        )
        .await;
    assert_eq!((st, &b["code"]), (401, &json!("bad_credentials")));
    let (st, b) = n0
        .call(
            Method::DELETE,
            "/v1/users/me",
            Some(&ta),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(st, 204, "{b}");
    assert_eq!(phone.closed_with().await, 4001);
    for node in [n0, n1] {
        let (st, _) = node.get("/v1/conversations", &ta).await;
        assert_eq!(st, 401);
        let msgs = history(node, &tb, &conv).await;
        assert_eq!(msgs[0]["kind"], "deleted_user", "{msgs}");
        assert!(msgs[0].get("content").is_none(), "{msgs}");
    }
    let (st, _) = n1
        .post("/v1/sessions", json!({"user": "ann", "password": PASSWORD}))
        .await;
    assert_eq!(st, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_across_nodes() {
    erase_on(Sql::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_across_nodes_mysql() {
    erase_on(Sql::MySql).await;
}
