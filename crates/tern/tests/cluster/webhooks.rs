//! 5.6 webhooks in a cluster: two nodes on PostgreSQL share the durable
//! jobs; every `message.created` of messages sent through either node is
//! delivered, each event once (the healthy case: no node dies).

use super::*;
use axum::extract::State;
use axum::routing::post;
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<String>>>;

async fn take(State(seen): State<Seen>, body: String) -> axum::http::StatusCode {
    let v: Value = serde_json::from_str(&body).unwrap();
    seen.lock()
        .unwrap()
        .push(v["id"].as_str().unwrap().to_owned());
    axum::http::StatusCode::OK
}

/// A message id as the `ok` spells it (a decimal string or a number).
fn id_of(ok: &Value) -> String {
    match &ok["msg_id"] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Jobs left in the cluster's store.
async fn jobs_left(db: &Db) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn webhook_events_once_per_event_across_nodes() {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/events", post(take))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let hooks = format!(
        "[{{url=\"{url}\",secret=\"0123456789abcdef0123456789abcdef-cluster\",events=[\"message.created\"]}}]"
    );
    let env = [
        ("TERN_WEBHOOKS", hooks.as_str()),
        ("TERN_HOOKS__DELIVERY__POLL_MS", "50"),
    ];
    let Some(c) = Cluster::start(cluster_harness::Sql::Postgres, 2, &env).await else {
        return;
    };
    let (n0, n1) = (c.node(0), c.node(1));
    let ta = n0.user("wha").await;
    let tb = n1.user("whb").await;
    let mut ann = connect(n0, &ta, "d").await;
    let mut bob = connect(n1, &tb, "d").await;
    const N: usize = 20;
    let mut ids = BTreeSet::new();
    for i in 0..N {
        let a = ann.send_text("whb", &format!("a{i}"), "from node 0").await;
        let b = bob.send_text("wha", &format!("b{i}"), "from node 1").await;
        ids.insert(format!("message.created-{}", id_of(&a)));
        ids.insert(format!("message.created-{}", id_of(&b)));
    }
    assert_eq!(ids.len(), 2 * N);
    eventually(WAIT, "every event delivered", || {
        let seen = seen.clone();
        let ids = ids.clone();
        async move {
            let got: BTreeSet<String> = seen.lock().unwrap().iter().cloned().collect();
            got == ids
        }
    })
    .await;
    // Every job is done (deleted after its delivery): nothing more comes.
    let db = &c.db;
    eventually(
        WAIT,
        "no job left",
        || async move { jobs_left(db).await == 0 },
    )
    .await;
    let all = seen.lock().unwrap().clone();
    assert_eq!(all.len(), 2 * N, "an event delivered twice: {all:?}");
}
