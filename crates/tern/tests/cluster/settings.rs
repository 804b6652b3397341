//! 5.3 across two nodes, on PostgreSQL and on MySQL: a profile change
//! made through one node reaches a friend's device on the other
//! (`profile`); conversation settings set through one node reach the
//! user's device on the other (`conv_settings`); `GET /v1/sessions` on
//! one node lists the devices connected on the other; revoking one
//! session through one node closes its socket on the other with 4001;
//! revoking all also refuses a token no session record names, on every
//! node, one started later included.

use super::*;
use reqwest::Method;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn call(node: &Tern, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
    let (st, b) = node.call(method.clone(), path, Some(token), body).await;
    assert!(st == 200 || st == 204, "{method} {path}: {st} {b}");
    b
}

/// The sessions `token` lists through `node`.
async fn sessions(node: &Tern, token: &str) -> Vec<Value> {
    let b = call(node, Method::GET, "/v1/sessions", token, None).await;
    b["sessions"].as_array().unwrap().clone()
}

async fn settings_on(sql: Sql) {
    let Some(c) = Cluster::start(sql, 2, &[]).await else {
        return;
    };
    let (n0, n1) = (c.node(0), c.node(1));
    let ta = n0.user("ann").await;
    let tb = n1.user("bob").await;
    call(n0, Method::PUT, "/v1/friends/bob", &ta, None).await;
    call(n1, Method::PUT, "/v1/friends/ann", &tb, None).await;
    let mut bob = connect(n1, &tb, "d").await;
    let mut phone = connect(n1, &ta, "phone").await;

    // A profile change through node 0 reaches bob and ann's phone on 1.
    let me = call(
        n0,
        Method::PATCH,
        "/v1/users/me",
        &ta,
        Some(json!({"name": "Ann A.", "avatar": "av-1"})),
    )
    .await;
    assert_eq!(
        (&me["name"], &me["avatar"]),
        (&json!("Ann A."), &json!("av-1"))
    );
    for ws in [&mut bob, &mut phone] {
        let p = ws.next_of("profile").await;
        assert_eq!(
            p,
            json!({"type":"profile","user":"ann","name":"Ann A.","avatar":"av-1"})
        );
    }
    let (st, u) = n1.get("/v1/users/ann", &tb).await;
    assert_eq!((st, &u["name"]), (200, &json!("Ann A.")));

    // Settings set through node 0 reach ann's phone on node 1, and node
    // 1's sync.
    let conv = dm("ann", "bob");
    let until = now_ms() + 3_600_000;
    let s = call(
        n0,
        Method::PUT,
        &format!("/v1/conversations/{conv}/settings"),
        &ta,
        Some(json!({"muted_until": until, "pinned": true})),
    )
    .await;
    assert_eq!(
        s,
        json!({"muted_until": until, "pinned": true, "retention_days": 0})
    );
    let p = phone.next_of("conv_settings").await;
    assert_eq!(
        p,
        json!({"type":"conv_settings","conv":conv,"muted_until":until,"pinned":true})
    );

    // Node 0 lists the phone that is connected on node 1.
    let ta2 = n0.login("ann").await;
    let list = sessions(n0, &ta2).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let with_phone: Vec<&Value> = list
        .iter()
        .filter(|s| s["devices"] == json!(["phone"]))
        .collect();
    assert_eq!(with_phone.len(), 1, "{list:?}");
    assert_eq!(with_phone[0]["current"], false);
    let phone_session = with_phone[0]["session"].as_str().unwrap().to_owned();
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["devices"], json!([]));

    // Revoked through node 0: the phone's socket on node 1 closes 4001.
    call(
        n0,
        Method::DELETE,
        &format!("/v1/sessions/{phone_session}"),
        &ta2,
        None,
    )
    .await;
    assert_eq!(phone.closed_with().await, 4001);
    let (st, _) = n1.get("/v1/sessions", &ta).await;
    assert_eq!(st, 401);
    assert_eq!(sessions(n1, &ta2).await.len(), 1);

    // A token minted by `tern token` is recorded as a session only once
    // used: unused, none names it. A second later, revoking all refuses
    // it too, on both nodes, as every other older token.
    let minted = admin(&c, &["token", "ann"]).await;
    let mut laptop = connect(n1, &ta2, "laptop").await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (st, b) = n0
        .call(Method::DELETE, "/v1/sessions?all=true", Some(&ta2), None)
        .await;
    assert_eq!(st, 204, "{b}");
    assert_eq!(laptop.closed_with().await, 4001);
    for node in [n0, n1] {
        for t in [&minted, &ta2] {
            let (st, _) = node.get("/v1/conversations", t).await;
            assert_eq!(st, 401);
        }
    }
    // A login after it works at once, on either node.
    let fresh = n1.login("ann").await;
    assert_eq!(sessions(n0, &fresh).await.len(), 1);
    let minted_after = admin(&c, &["token", "ann"]).await;
    // A node started afterwards knows it from the store.
    let n2 = c.spawn(&[]).await;
    let (st, _) = n2.get("/v1/conversations", &minted).await;
    assert_eq!(st, 401);
    for t in [&fresh, &minted_after] {
        let (st, b) = n2.get("/v1/conversations", t).await;
        assert_eq!(st, 200, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_across_nodes() {
    settings_on(Sql::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_across_nodes_mysql() {
    settings_on(Sql::MySql).await;
}
