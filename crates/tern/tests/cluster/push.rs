//! 5.5 offline push in a cluster: two nodes on PostgreSQL, and two on
//! MySQL, share the durable push jobs; each offline recipient of a message
//! sent through either node gets its push once.

use super::*;
use axum::extract::State;
use axum::routing::post;
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<Value>>>;

async fn take(State(seen): State<Seen>, body: String) -> axum::http::StatusCode {
    seen.lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap());
    axum::http::StatusCode::OK
}

/// Jobs left in the cluster's store.
async fn jobs_left(db: &Db) -> i64 {
    use sqlx::Connection;
    match db.sql {
        Sql::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT count(*) FROM jobs")
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
        Sql::MySql => {
            let mut c = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT count(*) FROM jobs")
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
    }
}

async fn each_push_once(sql: Sql) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/push", post(take))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let env = [
        ("TERN_PUSH__WEBHOOK__URL", url.as_str()),
        (
            "TERN_PUSH__WEBHOOK__SECRET",
            "0123456789abcdef0123456789abcdef-cluster",
        ),
        ("TERN_PUSH__POLL_MS", "50"),
    ];
    let Some(c) = Cluster::start(sql, 2, &env).await else {
        return;
    };
    let nodes = [c.node(0), c.node(1)];
    let ta = nodes[0].user("pusha").await;
    let tz = nodes[1].user("pushz").await;
    // Recipients registered through either node, none of them online.
    const N: usize = 12;
    let mut expected = BTreeSet::new();
    for i in 0..N {
        let node = nodes[i % 2];
        let name = format!("pr{i}");
        let t = node.user(&name).await;
        let (st, b) = node
            .call(
                reqwest::Method::PUT,
                "/v1/push/phone",
                Some(&t),
                Some(json!({"provider":"webhook","token":format!("tok-{i}")})),
            )
            .await;
        assert_eq!(st, 204, "{b}");
        // One message to each from each sender, through both nodes: two
        // conversations, so two pushes (no collapsing between them).
        for (k, (sender, tok)) in [("pusha", &ta), ("pushz", &tz)].into_iter().enumerate() {
            let (st, b) = nodes[(i + k) % 2]
                .call(
                    reqwest::Method::POST,
                    "/v1/messages",
                    Some(tok),
                    Some(json!({"to":name,"client_msg_id":format!("m{i}"),"kind":"text","content":"hi"})),
                )
                .await;
            assert_eq!(st, 200, "{b}");
            expected.insert((name.clone(), sender.to_owned()));
        }
    }
    eventually(WAIT, "every push sent", || {
        let seen = seen.clone();
        let expected = expected.clone();
        async move {
            let got: BTreeSet<(String, String)> = seen
                .lock()
                .unwrap()
                .iter()
                .map(|v| {
                    (
                        v["user"].as_str().unwrap().to_owned(),
                        v["from"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            got == expected
        }
    })
    .await;
    let db = &c.db;
    eventually(
        WAIT,
        "no job left",
        || async move { jobs_left(db).await == 0 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = seen.lock().unwrap().clone();
    assert_eq!(all.len(), expected.len(), "a push sent twice: {all:?}");
}

#[tokio::test]
async fn each_push_once_across_nodes_postgres() {
    each_push_once(Sql::Postgres).await;
}

#[tokio::test]
async fn each_push_once_across_nodes_mysql() {
    each_push_once(Sql::MySql).await;
}
